"""Recorded histories of real bookings replay on today's BookingWorkflow without nondeterminism.

A change to the workflow that would break a booking already running fails here. One history per
path of today's workflow (recorded on a dev server with update-with-start by ``make
record-histories``), and the ``pre_<patch>_*`` histories, recorded before a ``workflow.patched``
change and never recorded again: they prove the patched change still replays the bookings that
were running before it. A new patch that nobody recorded a history for fails here too.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from common import payload_codec
from common.payload_codec import EncryptionCodec, new_key_entry, parse_keys
from orders.workflow_contract import Activities
from temporal_worker import workflows
from temporal_worker.workflows import (
    FEWER_ROUND_TRIPS,
    HOLD_LIFE_CAP,
    PATCHES,
    REFUND_BEFORE_PAYMENT,
    SEARCH_ATTRIBUTES,
    BookingWorkflow,
)
from tests.test_workflow import SANDBOX

FOLDER = Path(__file__).parent / "histories"
HISTORIES = sorted(FOLDER.glob("*.json"))
PATHS = {
    "confirmed_00000",
    "seat_change_confirmed",
    "cancelled",
    "first_hold_refused",
    "expired",
    "failed_99999",
    "failed_88888_timeouts",
    "seat_sold_meanwhile",
    "same_seats_changed_then_confirmed",
}
# The histories kept from before each patch (never recorded again), by the patch they predate.
BEFORE = {
    REFUND_BEFORE_PAYMENT: "pre_refund_patch_",
    FEWER_ROUND_TRIPS: "pre_local_activities_",
    # The hold's cap and the search attributes landed together: one set of histories predates both.
    HOLD_LIFE_CAP: "pre_search_attributes_",
    SEARCH_ATTRIBUTES: "pre_search_attributes_",
}


def load(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"booking-{name}", json.loads((FOLDER / f"{name}.json").read_text()))


def activities_scheduled(history: WorkflowHistory) -> list[str]:
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


def markers(history: WorkflowHistory, name: str) -> list[dict[str, object]]:
    return [
        event.marker_recorded_event_attributes.details
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and event.marker_recorded_event_attributes.marker_name == name
    ]


def patches_marked(history: WorkflowHistory) -> list[str]:
    return [
        json.loads(details["patch-data"].payloads[0].data)["id"] for details in markers(history, "core_patch")
    ]


def local_activities(history: WorkflowHistory) -> int:
    return len(markers(history, "core_local_activity"))


def test_every_path_has_a_history_and_every_patch_its_histories_from_before_it():
    names = {path.stem for path in HISTORIES}
    assert names >= PATHS
    for patch in PATCHES:
        assert any(name.startswith(BEFORE[patch]) for name in names), f"no history from before {patch}"


def test_every_patch_the_workflow_checks_is_listed_oldest_first():
    # workflow.patched(ID) anywhere in the workflow names a constant that PATCHES lists, so that
    # the test below knows which patch is the newest.
    tree = ast.parse(Path(workflows.__file__).read_text())
    checked = {
        getattr(workflows, call.args[0].id)
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr in ("patched", "deprecate_patch")
        and isinstance(call.args[0], ast.Name)
    }
    assert checked == set(PATCHES)
    assert len(set(PATCHES)) == len(PATCHES)


def test_todays_histories_took_the_newest_patch():
    # A change of the workflow's shape goes behind a new patch; until a history of the new path is
    # recorded, replay does not cover what running bookings do today, and this fails.
    newest = PATCHES[-1]
    assert any(newest in patches_marked(load(name)) for name in PATHS), (
        f"no history of today's paths carries the newest patch {newest!r}: run make record-histories"
    )


def test_every_path_started_with_update_with_start():
    for name in PATHS:
        first_task = [event.event_type for event in load(name).events[:5]]
        assert first_task[0] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, name
        assert first_task[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED, name


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_a_recorded_history_replays(path: Path):
    history = load(path.stem)

    replayer = Replayer(workflows=[BookingWorkflow], workflow_runner=SANDBOX)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)

    assert result.replay_failure is None


def test_the_refund_patch_has_a_branch_for_bookings_from_before_it():
    # Recorded before the patch: no marker, and a failed payment released the seats unrefunded.
    # It replays (test above) because workflow.patched answers False for it.
    before = load("pre_refund_patch_failed_99999")
    assert patches_marked(before) == []
    assert Activities.REFUND_PAYMENT not in activities_scheduled(before)
    # Recorded since: the marker, then the refund registered before the charge runs first.
    since = load("pre_local_activities_failed_99999")
    assert REFUND_BEFORE_PAYMENT in patches_marked(since)
    assert activities_scheduled(since)[-3:] == [
        Activities.REFUND_PAYMENT,
        Activities.RELEASE_SEATS,
        Activities.RECORD_ORDER,
    ]


def test_the_local_activities_patch_has_a_branch_for_bookings_from_before_it():
    # Recorded before it: every bookkeeping step a regular activity, no local-activity marker.
    before = load("pre_local_activities_confirmed_00000")
    assert FEWER_ROUND_TRIPS not in patches_marked(before)
    assert local_activities(before) == 0
    assert Activities.HOLD_SEATS in activities_scheduled(before)
    # Today: the marker, the bookkeeping as local activities, and the payment the one regular
    # activity (its timeout, attempts and backoff stay visible in the Temporal UI).
    today = load("confirmed_00000")
    assert FEWER_ROUND_TRIPS in patches_marked(today)
    assert activities_scheduled(today) == [Activities.VALIDATE_PAYMENT]
    assert local_activities(today) == 4, "the hold, PAYMENT_PENDING, the hold over the payment, the sale"


def upserts(history: WorkflowHistory) -> int:
    kind = EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    return sum(event.event_type == kind for event in history.events)


def test_the_search_attributes_patch_has_a_branch_for_bookings_from_before_it():
    # Before it: one upsert only, the patch marker's own; since: one more at each transition.
    before, today = load("pre_search_attributes_confirmed_00000"), load("confirmed_00000")
    assert SEARCH_ATTRIBUTES not in patches_marked(before)
    assert upserts(before) == 1
    assert SEARCH_ATTRIBUTES in patches_marked(today)
    assert upserts(today) > 4, "SEATS_RESERVED, PAYMENT_PENDING, PAYMENT_PROCESSING, CONFIRMED"


def test_the_hold_cap_patch_is_taken_by_a_change_to_the_same_seats():
    # Only a change to the seats already held asks for the patch (it then runs no activity).
    same = load("same_seats_changed_then_confirmed")
    assert HOLD_LIFE_CAP in patches_marked(same)
    assert local_activities(same) == local_activities(load("confirmed_00000")), "the no-change ran nothing"
    assert HOLD_LIFE_CAP not in patches_marked(load("seat_change_confirmed"))


# --- With the payload codec, as production runs ----------------------------------------------
# The recorded histories are in plain text (recorded without the codec, and kept so). Production
# workers replay encrypted ones: the same histories, sealed as the codec writes them, replay on a
# Replayer with the project's data converter, and fail on one without it.
# Not sealed: what the SDK never puts through the codec (search attributes, headers) and the
# markers, whose data Temporal's core reads itself (a plain payload passes the codec untouched).
UNSEALED = {"search_attributes", "header", "marker_recorded_event_attributes"}


def _seal(message: Message, codec: EncryptionCodec) -> None:
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE or field.name in UNSEALED:
            continue
        if field.message_type.GetOptions().map_entry:
            entry_type = field.message_type.fields_by_name["value"].message_type
            for key in list(value):
                if entry_type is not None and entry_type.full_name == Payload.DESCRIPTOR.full_name:
                    value[key].CopyFrom(codec.encrypt(value[key]))
                elif entry_type is not None:
                    _seal(value[key], codec)
        elif field.message_type.full_name == Payload.DESCRIPTOR.full_name:
            if field.is_repeated:
                sealed = [codec.encrypt(payload) for payload in value]
                del value[:]
                value.extend(sealed)
            else:
                value.CopyFrom(codec.encrypt(value))
        elif field.is_repeated:
            for item in value:
                _seal(item, codec)
        else:
            _seal(value, codec)


@pytest.mark.parametrize("name", sorted(PATHS))
async def test_a_history_written_with_the_codec_replays_with_it(name: str):
    keys = parse_keys(new_key_entry("replay"))
    assert keys is not None
    history = load(name)
    for event in history.events:
        _seal(event, EncryptionCodec(keys))
    assert b"binary/encrypted" in b"".join(event.SerializeToString() for event in history.events)

    converter = payload_codec.data_converter(keys)
    with_codec = Replayer(workflows=[BookingWorkflow], workflow_runner=SANDBOX, data_converter=converter)
    assert (await with_codec.replay_workflow(history, raise_on_replay_failure=False)).replay_failure is None
    without = Replayer(workflows=[BookingWorkflow], workflow_runner=SANDBOX)
    assert (await without.replay_workflow(history, raise_on_replay_failure=False)).replay_failure is not None

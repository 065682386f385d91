"""Recorded histories of real bookings replay on today's BookingWorkflow without nondeterminism.

A change to the workflow that would break a booking already running fails here. One history per
path (recorded on a dev server with update-with-start by ``python -m tests.histories.record``),
and the ``pre_*`` histories, recorded before a ``workflow.patched`` change and never recorded
again: they prove the patched change still replays the bookings that were running before it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from orders.booking import Activities
from temporal_worker.workflows import REFUND_BEFORE_PAYMENT, BookingWorkflow
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
}


def load(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"booking-{name}", json.loads((FOLDER / f"{name}.json").read_text()))


def activities_scheduled(history: WorkflowHistory) -> list[str]:
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


def patches_marked(history: WorkflowHistory) -> list[str]:
    return [
        json.loads(event.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]


def test_every_path_has_a_history_and_one_predates_the_patch():
    names = {path.stem for path in HISTORIES}
    assert names >= PATHS
    assert "pre_refund_patch_failed_99999" in names


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
    since = load("failed_99999")
    assert REFUND_BEFORE_PAYMENT in patches_marked(since)
    assert activities_scheduled(since)[-3:] == [
        Activities.REFUND_PAYMENT,
        Activities.RELEASE_SEATS,
        Activities.RECORD_ORDER,
    ]

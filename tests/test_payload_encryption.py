"""Payment codes never reach Temporal in plain text: every payload the web and the worker hand it
is AES-GCM encrypted under a key id (common/payload_codec.py), and keys rotate."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from common import temporal_client
from common.payload_codec import (
    ENCODING,
    KEY_ID,
    EncryptionCodec,
    KeyConfigError,
    UnknownKeyError,
    encrypted,
    new_key_entry,
    parse_keys,
)
from orders.workflow_contract import Activities, Updates
from tests.conftest import Stack

CODE = "24680"  # approved (no failure rate in the tests), and found nowhere else in a history


def _codec(*entries: str, current: str = "") -> EncryptionCodec:
    keys = parse_keys(",".join(entries), current)
    assert keys is not None
    return EncryptionCodec(keys)


def _payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


def test_a_payload_is_encrypted_under_the_current_key_id():
    codec = _codec(new_key_entry("2026-12"))
    [sealed] = asyncio.run(codec.encode([_payload(CODE)]))
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID] == b"2026-12"
    assert CODE.encode() not in sealed.SerializeToString()
    assert asyncio.run(codec.decode([sealed])) == [_payload(CODE)]


def test_after_rotation_a_payload_of_the_old_key_still_decrypts():
    old, new = new_key_entry("2026-11"), new_key_entry("2026-12")
    [sealed_before] = asyncio.run(_codec(old).encode([_payload(CODE)]))
    rotated = _codec(new, old)  # the new key first: it encrypts; the old one only decrypts
    [sealed_after] = asyncio.run(rotated.encode([_payload(CODE)]))
    assert sealed_after.metadata[KEY_ID] == b"2026-12"
    assert asyncio.run(rotated.decode([sealed_before, sealed_after])) == [_payload(CODE)] * 2
    # Once the old key is dropped, its payloads are refused with a message naming it.
    with pytest.raises(UnknownKeyError, match="key '2026-11', which PAYLOAD_ENCRYPTION_KEYS does not hold"):
        asyncio.run(_codec(new).decode([sealed_before]))


def test_a_plain_payload_written_before_encryption_was_on_passes_through():
    assert asyncio.run(_codec(new_key_entry("k")).decode([_payload(CODE)])) == [_payload(CODE)]


def test_the_current_key_may_be_named():
    first, second = new_key_entry("a"), new_key_entry("b")
    [sealed] = asyncio.run(_codec(first, second, current="b").encode([_payload(CODE)]))
    assert sealed.metadata[KEY_ID] == b"b"


@pytest.mark.parametrize(
    ("keys", "current", "message"),
    [
        ("k1", "", "expected id:base64key entries"),
        ("k1:c2hvcnQ=", "", "key 'k1' is not valid: expected 32 bytes"),
        ("k1:not base64!", "", "key 'k1' is not valid"),
        (f"{new_key_entry('k1')},{new_key_entry('k1')}", "", "key id 'k1' is listed twice"),
        (new_key_entry("k1"), "k2", "PAYLOAD_ENCRYPTION_KEY_ID='k2' is not valid"),
        ("", "k1", "PAYLOAD_ENCRYPTION_KEY_ID is set but PAYLOAD_ENCRYPTION_KEYS is empty"),
    ],
)
def test_a_wrong_key_setting_is_named(keys: str, current: str, message: str):
    with pytest.raises(KeyConfigError, match=message):
        parse_keys(keys, current)


def _payloads_with_the_code(history: WorkflowHistory) -> dict[str, list[Payload]]:
    """The payment update's argument and the payment activity's input, as stored."""
    found: dict[str, list[Payload]] = {"payment update": [], "payment activity": []}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            if request.input.name == Updates.SUBMIT_PAYMENT:
                found["payment update"] += request.input.args.payloads
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            if attributes.activity_type.name == Activities.VALIDATE_PAYMENT:
                found["payment activity"] += attributes.input.payloads
    return found


def test_a_finished_bookings_history_holds_no_payment_code(stack: Stack):
    customer = stack.customer()
    order_id = customer.create_order("fl-101", ["1A"]).json["orderId"]
    assert customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": CODE}).status == 202
    assert customer.wait_for_status(order_id, "CONFIRMED")["status"] == "CONFIRMED"

    # Straight from the server, as the UI or `temporal workflow show` would read it: no codec.
    handle = f"booking-{order_id}"
    history = temporal_client.call(lambda client: client.get_workflow_handle(handle).fetch_history())
    raw = b"".join(event.SerializeToString() for event in history.events)
    assert CODE.encode() not in raw

    # The code did travel through Temporal, sealed: the staff's codec reads it back.
    carried = _payloads_with_the_code(history)
    assert carried["payment update"], "the payment update's argument is in the history"
    assert carried["payment activity"], "the payment activity's input is in the history"
    codec = EncryptionCodec(settings.PAYLOAD_KEYS)
    for where, payloads in carried.items():
        assert encrypted(payloads), f"the {where} is stored encrypted"
        assert any(CODE.encode() in codec.decrypt(payload).data for payload in payloads), where

"""A restart of the Temporal server loses no booking: the workflow resumes from its history.

This test runs its own Temporal dev server persisted to a file (``temporal_of_its_own``: the
suite's shared one keeps nothing on disk), stops it mid-booking and starts it again on the same
file.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_booking_survives_a_temporal_restart(stack, temporal_of_its_own):
    customer = stack.customer()
    order_id = customer.create_order("fl-606", ["10A", "10B"]).json["orderId"]
    customer.wait_for_status(order_id, "SEATS_RESERVED")  # a new worker's first answer may be late (202)

    temporal_of_its_own.stop()
    assert customer.status(order_id)["status"] == "SEATS_RESERVED", "the row answers while Temporal is away"
    temporal_of_its_own.start()

    paid = customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": "00000"})
    assert paid.status == 202, paid.text
    final = customer.wait_for_status(order_id, "CONFIRMED", "FAILED", timeout=60)
    assert final["status"] == "CONFIRMED"
    assert final["seats"] == ["10A", "10B"]

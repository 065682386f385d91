"""A restart of the Temporal server loses no booking: the workflow resumes from its history.

This test runs its own Temporal dev server persisted to a file (``own_temporal``: the suite's
shared one keeps nothing on disk), stops it mid-booking and starts it again on the same file.
"""

from __future__ import annotations

import signal

import pytest

from tests.conftest import WorkerProcess

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_booking_survives_a_temporal_restart(stack, own_temporal, settings):
    suite_temporal = settings.TEMPORAL_HOST
    settings.TEMPORAL_HOST = own_temporal.address
    worker = WorkerProcess(
        env={**stack.worker.env, "TEMPORAL_HOST": own_temporal.address},
        log=stack.worker.log.with_name("restart-worker.log"),
    )
    worker.start()
    try:
        customer = stack.customer()
        order_id = customer.create_order("fl-606", ["10A", "10B"]).json["orderId"]

        own_temporal.stop()
        while_down = customer.create_order("fl-606", ["11A"])
        assert while_down.status == 503
        assert while_down.json["error"] == "SERVICE_UNAVAILABLE"
        assert customer.status(order_id)["status"] == "SEATS_RESERVED", (
            "the row answers while Temporal is away"
        )
        own_temporal.start()

        paid = customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": "00000"})
        assert paid.status == 202, paid.text
        final = customer.wait_for_status(order_id, "CONFIRMED", "FAILED", timeout=60)
        assert final["status"] == "CONFIRMED"
        assert final["seats"] == ["10A", "10B"]
    finally:
        worker.stop(signal.SIGTERM)
        settings.TEMPORAL_HOST = suite_temporal

"""Workers scale out: two worker processes share one task queue, and when one of them is killed
(SIGKILL, no goodbye) in the middle of bookings, the other finishes every one of them, and none
is charged or confirmed twice (docs/SCALING.md)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from flights.models import BookedSeat
from orders.models import OrderEvent
from payments.models import Charge, ChargeStatus, PaymentAttempt
from tests.conftest import Stack, WorkerProcess
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SEATS = [f"{row}C" for row in range(10, 18)]
CODE = "13579"  # approved after the workers' payment latency (3 s): long enough to die mid-way


def _mentions(worker: WorkerProcess, order_ids: list[str]) -> set[str]:
    text = worker.log.read_text(errors="replace")
    return {order_id for order_id in order_ids if order_id in text}


def test_two_workers_share_the_bookings_and_one_killed_mid_way_loses_none(
    stack: Stack, settings: object, tmp_path: Path
):
    # A queue of their own, which the suite's worker does not poll: only these two serve it.
    queue = f"scale-{uuid.uuid4().hex[:8]}"
    settings.TEMPORAL_TASK_QUEUE = queue  # type: ignore[attr-defined]
    env = {**stack.worker.env, "TEMPORAL_TASK_QUEUE": queue}
    doomed, survivor = (WorkerProcess(env=env, log=tmp_path / f"worker-{n}.log") for n in (1, 2))
    doomed.start()
    survivor.start()
    try:
        customer = stack.customer()
        orders = [customer.create_order("fl-101", [seat]).json["orderId"] for seat in SEATS]
        for order_id in orders:
            assert customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": CODE}).status == 202
        # Both share the work, and payments are under way when one of them dies.
        wait_for(
            lambda: _mentions(doomed, orders) and _mentions(survivor, orders),
            timeout=30,
            what="both workers to take bookings",
        )
        wait_for(
            lambda: PaymentAttempt.objects.filter(order_id__in=orders).count() >= len(orders) // 2,
            timeout=30,
            what="payments under way",
        )
        doomed.kill()

        finals = {
            order_id: customer.wait_for_status(order_id, "CONFIRMED", "FAILED", timeout=90)["status"]
            for order_id in orders
        }
    finally:
        survivor.stop()
        if doomed.process is not None:
            doomed.stop()

    assert finals == dict.fromkeys(orders, "CONFIRMED")
    for order_id, seat in zip(orders, SEATS, strict=True):
        charges = Charge.objects.filter(order_id=order_id)
        assert [charge.status for charge in charges] == [ChargeStatus.CHARGED], f"{order_id}: charged once"
        sold = BookedSeat.objects.filter(order_id=order_id).values_list("seat__code", flat=True)
        assert list(sold) == [seat]
        confirmations = OrderEvent.objects.filter(order_id=order_id, state="CONFIRMED").count()
        assert confirmations == 1, f"{order_id} confirmed {confirmations} times"

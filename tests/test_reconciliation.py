"""The reconciliation, on the real stack: drift made by hand is repaired, healthy bookings in the
same run are left alone, and the worker keeps one Temporal Schedule for it."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from temporalio.client import Client, ScheduleOverlapPolicy

from common import temporal_client
from flights import holds
from flights.models import BookedSeat
from orders.models import Order, ReconcileRun
from orders.order_rows import new_order_id
from orders.reconciliation import BATCH, KEEP_DETAILS, Repair, Report, reconcile
from orders.workflow_contract import Messages, reconcile_schedule_id
from payments.ledger import charge_key
from payments.models import Charge, ChargeStatus
from tests.conftest import WorkerProcess
from tests.helpers import wait_for

FLIGHT = "fl-101"


def _holder(seat: str) -> str | None:
    return holds.holders(flight_id=FLIGHT, seats=[seat]).get(seat)


def _terminate(order_id: str) -> None:
    temporal_client.call(lambda c: c.get_workflow_handle(f"booking-{order_id}").terminate("by hand"))


def test_drift_is_repaired_and_healthy_bookings_in_the_same_run_are_left_alone(stack):
    customer = stack.customer()
    # Healthy: a live hold, a payment under way (99999 declines three times, slowly), a sale.
    held = customer.create_order(FLIGHT, ["15A"]).json["orderId"]
    paying = customer.create_order(FLIGHT, ["15B"]).json["orderId"]
    assert customer.post(f"/api/orders/{paying}/pay", {"paymentCode": "99999"}).status == 202
    confirmed = customer.create_order(FLIGHT, ["15C"]).json["orderId"]
    assert customer.post(f"/api/orders/{confirmed}/pay", {"paymentCode": "00000"}).status == 202
    customer.wait_for_status(confirmed, "CONFIRMED")
    wait_for(lambda: _holder("15C") is None, what="the sale to let its hold go")
    # Drift, by hand: a workflow terminated (its compensations skipped), a hold Redis lost, and
    # a hold whose order never existed.
    stopped = customer.create_order(FLIGHT, ["16A"]).json["orderId"]
    _terminate(stopped)
    lost = customer.create_order(FLIGHT, ["16B"]).json["orderId"]
    holds.connection().delete(holds.hold_key(FLIGHT, "16B"))
    stranger = new_order_id()
    holds.connection().set(holds.hold_key(FLIGHT, "20A"), stranger, px=600_000)
    held_before = Order.objects.get(id=held)

    run = reconcile(grace=timedelta(0))

    assert run.repairs == {"workflow_gone": 1, "hold_lost": 1, "hold_without_order": 1}, run.details
    assert ReconcileRun.objects.latest("started_at") == run
    assert run.finished_at is not None
    # The drift, repaired.
    closed = customer.status(stopped)
    assert (closed["status"], closed["lastError"]) == ("FAILED", Messages.STOPPED)
    assert _holder("16A") is None
    assert _holder("16B") == lost
    assert _holder("20A") is None
    # The healthy bookings, untouched.
    held_after = Order.objects.get(id=held)
    assert (held_after.state, held_after.version) == (held_before.state, held_before.version)
    assert _holder("15A") == held
    assert customer.status(confirmed)["status"] == "CONFIRMED"
    assert BookedSeat.objects.filter(order_id=confirmed, seat__code="15C").exists()
    ended = customer.wait_for_status(paying, "FAILED", timeout=60)
    assert ended["lastError"] == Messages.PAYMENT_FAILED_FINAL.format(attempts=3), "ended by its workflow"
    assert not [line for line in run.details if any(o in line for o in (held, paying, confirmed))]

    # Idempotent: the next run finds nothing left to repair.
    assert reconcile(grace=timedelta(0)).repairs == {}


def test_drift_younger_than_the_grace_is_left_to_a_later_run(stack):
    customer = stack.customer()
    order_id = customer.create_order(FLIGHT, ["17A"]).json["orderId"]
    _terminate(order_id)

    assert reconcile(grace=timedelta(hours=1)).repairs == {}
    assert customer.status(order_id)["status"] == "SEATS_RESERVED"
    assert _holder("17A") == order_id

    # Later, past its hold: closed as its timer would have closed it.
    Order.objects.filter(id=order_id).update(hold_expires_at=timezone.now() - timedelta(seconds=1))
    assert reconcile(grace=timedelta(0)).repairs == {"workflow_gone": 1}
    expired = customer.status(order_id)
    assert (expired["status"], expired["lastError"]) == ("EXPIRED", Messages.EXPIRED)
    assert _holder("17A") is None


def test_the_worker_keeps_one_reconciliation_schedule_and_it_runs_the_reconciliation(stack):
    queue = f"reconcile-test-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(
        env={**stack.worker.env, "TEMPORAL_TASK_QUEUE": queue, "RECONCILE_EVERY": "1m"},
        log=stack.worker.log.with_name("reconcile-worker.log"),
    )
    schedule_id = reconcile_schedule_id(queue)

    async def describe(client: Client):  # type: ignore[no-untyped-def]
        return await client.get_schedule_handle(schedule_id).describe()

    async def listed(client: Client) -> list[str]:
        return [s.id async for s in await client.list_schedules() if s.id == schedule_id]

    try:
        worker.log.write_bytes(b"")
        worker.start()
        temporal_client.call(lambda c: c.get_schedule_handle(schedule_id).pause(note="paused by an operator"))
        worker.restart()  # a second start: the same schedule, still paused

        schedule = temporal_client.call(describe).schedule
        assert wait_for(lambda: temporal_client.call(listed), timeout=30, what="the schedule listed") == [
            schedule_id
        ]
        assert [spec.every for spec in schedule.spec.intervals] == [timedelta(minutes=1)]
        assert schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        assert schedule.state.paused, "a worker's start leaves an operator's pause alone"

        finished = ReconcileRun.objects.filter(finished_at__isnull=False, error="")
        before = finished.count()
        temporal_client.call(lambda c: c.get_schedule_handle(schedule_id).trigger())
        wait_for(lambda: finished.count() > before, timeout=30, what="a reconciliation run to finish")
    finally:
        if worker.process is not None:
            worker.stop()
        temporal_client.call(lambda c: c.get_schedule_handle(schedule_id).delete())


BROKEN_REFUND = """
CREATE OR REPLACE FUNCTION test_refuse_refund() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'the ledger refuses this refund';
END $$ LANGUAGE plpgsql;
CREATE TRIGGER test_refuse_refund BEFORE UPDATE ON payments_charge
  FOR EACH ROW WHEN (OLD.order_id = '%(order_id)s') EXECUTE FUNCTION test_refuse_refund();
"""


@pytest.mark.django_db(transaction=True)
def test_a_run_pages_through_thousands_of_stale_orders_and_one_failure_does_not_stop_it(
    demo_flights, clean_redis
):
    # 2,000 orders that ended FAILED with their charge still live (sagas that never refunded),
    # and one among them whose refund the database refuses.
    now = timezone.now()
    stale = Order.objects.bulk_create(
        Order(id=new_order_id(), flight_id=FLIGHT, state="FAILED", seats=["1A"], payment_attempts=1)
        for _ in range(2000)
    )
    Charge.objects.bulk_create(
        Charge(
            id=f"ch_{n:024x}",
            idempotency_key=charge_key(order.id),
            order=order,
            attempt=1,
            status=ChargeStatus.CHARGED,
            charged_at=now,
        )
        for n, order in enumerate(stale)
    )
    broken = stale[1234].id
    with connection.cursor() as cursor:
        cursor.execute(BROKEN_REFUND % {"order_id": broken})
    beats: list[str] = []
    try:
        run = reconcile(grace=timedelta(0), heartbeat=beats.append)
        again = reconcile(grace=timedelta(0))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS test_refuse_refund ON payments_charge")

    assert (run.repairs, run.failures, run.error) == ({"charge_refunded": 1999}, 1, "")
    failed = [line for line in run.details if line.startswith("failed:")]
    assert len(failed) == 1 and failed[0].startswith(f"failed: refunding {broken}: ")
    assert "the ledger refuses this refund" in failed[0]
    assert list(Charge.objects.filter(status=ChargeStatus.CHARGED).values_list("order_id", flat=True)) == [
        broken
    ]
    assert len([beat for beat in beats if beat.startswith("charges of ended orders")]) == 2000 // BATCH
    assert len(run.details) == KEEP_DETAILS + 2, "a page of repairs, the line that says so, the failure"
    assert (again.repairs, again.failures) == ({}, 1), "the next run tries the one that failed again"


def test_a_failure_early_in_a_run_does_not_shorten_the_page_of_repairs_kept():
    # Pure logic: the failure's line is kept apart from the page of repairs, wherever it falls.
    report = Report()
    report.failed("refunding ord-x", RuntimeError("refused"))
    for n in range(KEEP_DETAILS + 10):
        report.add(Repair.CHARGE_REFUNDED, f"ord-{n}")
    assert report.failures == 1 and report.repairs == {"charge_refunded": KEEP_DETAILS + 10}
    assert len(report.details) == KEEP_DETAILS + 2
    assert report.details[0] == "failed: refunding ord-x: RuntimeError: refused"
    assert report.details[-1].startswith("… and more")

"""Exactly-once money: one charge per order whatever fails, refunds that cannot be lost.

The gateway's ledger (``payments.ledger``) is checked on real PostgreSQL; the faults are aimed at
the exact moment they matter, on the real stack: the worker killed right after the gateway
approved (a failpoint), PostgreSQL stalled past the attempt timeout while the approval is being
recorded (a trigger), a workflow terminated after the approval.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from common import temporal_client
from flights import holds
from flights.models import BookedSeat
from orders.activity_writes import NotCharged, confirm_booking, refund_payment
from orders.models import Order
from orders.order_rows import new_order
from orders.reconciliation import reconcile
from orders.workflow_contract import Messages, OrderRecord, State
from payments import ledger
from payments.gateway import Gateway
from payments.models import Charge, ChargeStatus, PaymentAttempt, PaymentOutcome
from tests.conftest import ROOT, Stack
from tests.helpers import ApiClient, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

GATEWAY = Gateway(failure_rate=0, latency_min_seconds=0, latency_max_seconds=0, timeout_seconds=1)


def no_wait(seconds: float) -> bool:
    return False  # the gateway answers at once, and nothing cuts the request off


@pytest.fixture
def order(demo_flights) -> Order:  # type: ignore[no-untyped-def]
    return new_order(flight=demo_flights["fl-101"], seats=["1A"])


def charge(order: Order, *, attempt: int = 1, code: str = "00000") -> ledger.Answer:
    return ledger.request_charge(
        key=ledger.charge_key(order.id),
        order_id=order.id,
        attempt=attempt,
        code=code,
        gateway=GATEWAY,
        wait=no_wait,
    )


# --- The ledger: one charge per key ----------------------------------------------------------


def test_a_repeated_charge_request_gets_the_first_charge_back_and_charges_nothing_more(order):
    first = charge(order, attempt=1)
    again = charge(order, attempt=2)

    assert first.outcome is ledger.Outcome.APPROVED
    assert again.outcome is ledger.Outcome.REPLAYED
    assert again.charge is not None and first.charge is not None
    assert (again.charge.id, again.charge.attempt) == (first.charge.id, 1)
    assert Charge.objects.filter(order=order).count() == 1


def test_a_declined_request_moves_no_money_and_leaves_the_key_for_the_next_attempt(order):
    declined = charge(order, attempt=1, code="99999")
    approved = charge(order, attempt=2, code="00000")

    assert declined.outcome is ledger.Outcome.DECLINED
    assert approved.outcome is ledger.Outcome.APPROVED
    assert [(c.attempt, c.status) for c in Charge.objects.filter(order=order)] == [(2, ChargeStatus.CHARGED)]


def test_a_request_cut_off_by_its_timeout_charges_nothing(order):
    answer = ledger.request_charge(
        key=ledger.charge_key(order.id),
        order_id=order.id,
        attempt=1,
        code="00000",
        gateway=GATEWAY,
        wait=lambda seconds: True,
    )

    assert answer.outcome is ledger.Outcome.TIMED_OUT
    assert not Charge.objects.exists()


def test_two_requests_racing_with_one_key_make_one_charge(order):
    start = threading.Barrier(2)
    answers: list[ledger.Answer] = []

    def request(attempt: int) -> None:
        try:
            start.wait()
            answers.append(charge(order, attempt=attempt))
        finally:
            connection.close()

    threads = [threading.Thread(target=request, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(answer.outcome for answer in answers) == [ledger.Outcome.APPROVED, ledger.Outcome.REPLAYED]
    assert len({answer.charge.id for answer in answers if answer.charge}) == 1
    assert Charge.objects.filter(order=order).count() == 1


def test_the_database_refuses_a_second_live_charge_for_one_order(order):
    charge(order)

    with pytest.raises(IntegrityError), transaction.atomic():
        Charge.objects.create(
            id="ch_" + "0" * 24,
            idempotency_key="another-key",
            order=order,
            attempt=2,
            status=ChargeStatus.CHARGED,
            charged_at=timezone.now(),
        )


def test_a_refund_is_made_once(order):
    charge(order)

    assert refund_payment(order_id=order.id) is True
    assert refund_payment(order_id=order.id) is False, "the second refund finds it refunded"
    refunded = Charge.objects.get(order=order)
    assert refunded.status == ChargeStatus.REFUNDED
    assert refunded.refunded_at is not None


def test_a_refund_before_any_charge_voids_the_key_so_a_late_attempt_charges_nothing(order):
    # The booking failed while an attempt was still on its way (cut off by its timeout, its
    # thread running on): the saga's refund comes first, and the attempt arrives late.
    assert refund_payment(order_id=order.id) is False

    late = charge(order, attempt=3)

    assert late.outcome is ledger.Outcome.VOIDED
    assert not late.approved
    assert Charge.objects.get(order=order).status == ChargeStatus.VOIDED
    assert ledger.charges_of(order.id) == [], "a voided key moved no money: it is no charge"


# --- The order's side: confirmed with exactly one charge, or refunded ---------------------------


def _confirming(order: Order) -> OrderRecord:
    return OrderRecord(
        order_id=order.id,
        flight_id=order.flight_id,
        version=order.version + 1,
        state=State.CONFIRMED,
        seats=list(order.seats),
        at=timezone.now(),
    )


def test_an_order_without_a_live_charge_is_never_confirmed(order):
    with pytest.raises(NotCharged):
        confirm_booking(record=_confirming(order))
    charge(order)
    refund_payment(order_id=order.id)

    with pytest.raises(NotCharged, match="refunded"):
        confirm_booking(record=_confirming(order))

    order.refresh_from_db()
    assert order.state == State.CREATED
    assert not BookedSeat.objects.filter(order=order).exists()


def test_the_charge_of_a_confirmed_order_is_never_refunded(order):
    charge(order)
    confirm_booking(record=_confirming(order))

    assert refund_payment(order_id=order.id) is False
    assert Charge.objects.get(order=order).status == ChargeStatus.CHARGED
    assert Order.objects.get(id=order.id).state == State.CONFIRMED


def test_the_reconciliation_refunds_a_live_charge_of_an_order_that_ended_without_its_seats(
    order, clean_redis
):
    charge(order)  # a saga that never ran its refund
    Order.objects.filter(id=order.id).update(state=State.FAILED, payment_attempts=1)

    run = reconcile(grace=timedelta(0))

    assert run.repairs == {"charge_refunded": 1}, run.details
    assert Charge.objects.get(order=order).status == ChargeStatus.REFUNDED
    assert reconcile(grace=timedelta(0)).repairs == {}, "a second run finds nothing to repair"


# --- Failpoints exist only under test settings --------------------------------------------------


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("STACK_MODE", "FAILPOINTS")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_failpoint_cannot_be_switched_on_outside_the_test_stack():
    refused = _manage("check", FAILPOINTS="payment.after_charge=kill")

    assert refused.returncode != 0
    assert "FAILPOINTS is for the test stack only" in refused.stderr
    unknown = _manage("check", FAILPOINTS="payment.nowhere=kill", STACK_MODE="test")
    assert unknown.returncode != 0
    assert "unknown failpoint 'payment.nowhere'" in unknown.stderr


def test_check_deploy_fails_while_a_failpoint_is_on():
    deploy = _manage("check", "--deploy", FAILPOINTS="payment.after_charge=kill", STACK_MODE="test")

    assert deploy.returncode != 0
    assert "payments.E001" in deploy.stderr + deploy.stdout


# --- Faults at the exact moment, on the real stack -----------------------------------------------


@contextmanager
def worker_with(stack: Stack, **env: str) -> Iterator[None]:
    """The stack's worker restarted with ``env`` (failpoints), and restarted as it was after."""
    plain = dict(stack.worker.env)
    stack.worker.env = {**plain, **env}
    stack.worker.restart()
    try:
        yield
    finally:
        stack.worker.env = plain
        stack.worker.restart()


def _worker_died(stack: Stack) -> bool:
    process = stack.worker.process
    return process is not None and process.poll() is not None


def _paid(stack: Stack, seats: list[str]) -> tuple[ApiClient, str]:
    customer = stack.customer()
    order_id = customer.create_order("fl-101", seats).json["orderId"]
    assert customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": "00000"}).status == 202
    return customer, order_id


def _outcomes(order_id: str) -> list[tuple[int, str]]:
    return list(PaymentAttempt.objects.filter(order_id=order_id).values_list("attempt", "outcome"))


def test_the_worker_killed_right_after_the_gateway_approved_charges_once_and_confirms(stack):
    with worker_with(stack, FAILPOINTS="payment.after_charge=kill"):
        customer, order_id = _paid(stack, ["8A"])
        wait_for(lambda: _worker_died(stack), timeout=30, what="the failpoint to kill the worker")
        assert Charge.objects.filter(order_id=order_id, status=ChargeStatus.CHARGED).count() == 1
        stack.worker.env.pop("FAILPOINTS")
        stack.worker.restart()  # Temporal times attempt 1 out, and attempt 2 runs here

        final = customer.wait_for_status(order_id, "CONFIRMED", "FAILED", timeout=60)

    assert final["status"] == "CONFIRMED"
    assert [(c["attempt"], c["status"]) for c in final["charges"]] == [(1, "CHARGED")]
    assert final["paymentAttempts"] == 2
    assert _outcomes(order_id)[-1] == (2, PaymentOutcome.ALREADY_APPROVED), (
        "attempt 2 got attempt 1's approval"
    )
    assert PaymentAttempt.objects.get(order_id=order_id, attempt=2).error == Messages.approved_by(1)
    assert Charge.objects.filter(order_id=order_id).count() == 1


STALL_APPROVAL_RECORD = """
CREATE OR REPLACE FUNCTION test_stall_approval() RETURNS trigger AS $$
BEGIN
  PERFORM pg_sleep(%(seconds)s);
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER test_stall_approval BEFORE UPDATE ON payments_paymentattempt
  FOR EACH ROW WHEN (NEW.outcome = 'SUCCEEDED' AND NEW.attempt = 1) EXECUTE FUNCTION test_stall_approval();
"""


@contextmanager
def approval_record_stalled(seconds: float) -> Iterator[None]:
    """PostgreSQL takes ``seconds`` to record attempt 1's approval (a lock wait, a failover, a
    slow disk): the stall the issue reproduced by hand."""
    with connection.cursor() as cursor:
        cursor.execute(STALL_APPROVAL_RECORD % {"seconds": float(seconds)})
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS test_stall_approval ON payments_paymentattempt")
            cursor.execute("DROP FUNCTION IF EXISTS test_stall_approval()")


def test_postgresql_stalled_past_the_attempt_timeout_while_the_approval_is_recorded_charges_once(
    stack, settings
):
    timeout = settings.PAYMENT_VALIDATION_TIMEOUT.total_seconds()
    with approval_record_stalled(timeout + 3):
        customer, order_id = _paid(stack, ["8B"])
        final = customer.wait_for_status(order_id, "CONFIRMED", "FAILED", timeout=60)

    assert final["status"] == "CONFIRMED"
    assert [(c["attempt"], c["status"]) for c in final["charges"]] == [(1, "CHARGED")]
    assert final["paymentAttempts"] == 2, "Temporal timed attempt 1 out and retried"
    assert _outcomes(order_id) == [(1, PaymentOutcome.SUCCEEDED), (2, PaymentOutcome.ALREADY_APPROVED)]
    assert Charge.objects.filter(order_id=order_id).count() == 1


def test_a_workflow_terminated_after_the_approval_is_closed_and_refunded_by_the_reconciliation(stack):
    with worker_with(stack, FAILPOINTS="payment.after_charge=kill"):
        customer, order_id = _paid(stack, ["8C"])
        wait_for(lambda: _worker_died(stack), timeout=30, what="the failpoint to kill the worker")
        temporal_client.call(
            lambda client: client.get_workflow_handle(f"booking-{order_id}").terminate("by hand")
        )

        run = reconcile(grace=timedelta(0))

    assert run.repairs == {"workflow_gone": 1, "charge_refunded": 1}, run.details
    final = customer.status(order_id)
    assert (final["status"], final["lastError"]) == ("FAILED", Messages.STOPPED_REFUNDED)
    assert [(c["attempt"], c["status"]) for c in final["charges"]] == [(1, "REFUNDED")]
    assert final["charges"][0]["refundedAt"] is not None
    total = {"amount": 19900, "currency": "USD"}  # 8C, economy on FL101
    assert final["total"] == final["charges"][0]["amount"] == final["charges"][0]["refunded"] == total
    assert holds.holders(flight_id="fl-101", seats=["8C"]) == {}

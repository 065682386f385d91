"""The activities: each a thin wrapper over a service (``orders.activity_writes``,
``payments.services``, ``flights.inventory``), run on the worker's thread pool.

Sync functions, because the services use the ORM: every call closes stale connections before
and after (a thread must never reuse a connection another test or task broke), and each one is
idempotent, because Temporal runs an activity at least once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import close_old_connections, transaction
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from common import failpoints
from flights import inventory
from orders import activity_writes, reconciliation, retention
from orders.workflow_contract import (
    Activities,
    ErrorType,
    HoldSeatsInput,
    HoldSeatsResult,
    Messages,
    OrderRecord,
    PaymentInput,
    PaymentResult,
    ReleaseSeatsInput,
)
from payments import gateway, ledger
from payments import services as payment_services
from payments.models import PaymentOutcome
from temporal_worker.reconcile import RECONCILE_ACTIVITY, ReconcileResult
from temporal_worker.retention import PURGE_ACTIVITY, PurgeResult

logger = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def _database() -> Iterator[None]:
    close_old_connections()
    try:
        yield
    finally:
        close_old_connections()


def _with_database(function: Callable[P, R]) -> Callable[P, R]:
    @wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _database():
            return function(*args, **kwargs)

    return wrapper


@activity.defn(name=Activities.HOLD_SEATS)
@_with_database
def hold_seats(request: HoldSeatsInput) -> HoldSeatsResult:
    """Hold all the seats or none, release the dropped ones, record the order. Idempotent."""
    try:
        taken = activity_writes.hold_seats(
            record=request.record, ttl_ms=int(request.ttl_seconds * 1000), release=request.release
        )
    except inventory.UnknownSeats as error:
        raise ApplicationError(
            str(error), error.seats, type=ErrorType.UNKNOWN_SEATS, non_retryable=True
        ) from error
    if taken:
        logger.info(
            "seats %s taken by others",
            ", ".join(taken),
            extra={"order_id": request.record.order_id},
        )
    return HoldSeatsResult(taken=taken)


@activity.defn(name=Activities.RELEASE_SEATS)
@_with_database
def release_seats(request: ReleaseSeatsInput) -> int:
    """Release what the order still holds (never another order's hold), then record the order if
    asked. Idempotent."""
    released = activity_writes.release_seats(
        order_id=request.order_id, flight_id=request.flight_id, seats=request.seats, record=request.record
    )
    logger.info("released %d seat holds", released, extra={"order_id": request.order_id})
    return released


@activity.defn(name=Activities.RECORD_ORDER)
@_with_database
def record_order(record: OrderRecord) -> bool:
    """Record a state transition on the order's row, at most once per version."""
    changed = activity_writes.record_order(record=record)
    logger.info("order %s (v%d)", record.state.value, record.version, extra={"order_id": record.order_id})
    return changed


@activity.defn(name=Activities.CONFIRM_BOOKING)
@_with_database
def confirm_booking(record: OrderRecord) -> None:
    """Sell the seats and confirm in one transaction, with the order's charge locked and live:
    the (flight, seat) constraint decides the seats, the ledger the money."""
    try:
        activity_writes.confirm_booking(record=record)
    except inventory.SeatsAlreadySold as error:
        raise ApplicationError(
            str(error), error.seats, type=ErrorType.SEAT_ALREADY_BOOKED, non_retryable=True
        ) from error
    except activity_writes.NotCharged as error:
        raise ApplicationError(str(error), type=ErrorType.PAYMENT_NOT_CHARGED, non_retryable=True) from error


@activity.defn(name=Activities.REFUND_PAYMENT)
@_with_database
def refund_payment(order_id: str) -> int:
    """Refund the order's charge at the gateway (or void its key, so that nothing is ever charged
    under it), unless the order is confirmed. Idempotent; returns the charges refunded now."""
    return int(activity_writes.refund_payment(order_id=order_id))


@activity.defn(name=Activities.VALIDATE_PAYMENT)
def validate_payment(request: PaymentInput) -> PaymentResult:
    """One attempt at the simulated gateway. Temporal times each attempt out and retries.

    Idempotent, as a charge must be: the request carries the order's idempotency key, so a retry
    after an approval whose answer was lost (the worker killed, PostgreSQL stalled past the
    timeout) gets that approval back from the gateway's ledger and charges nothing more
    (``payments.ledger``). The attempt is recorded as it starts and as it ends, so the customer
    sees every retry. The charge is for the order's total, as fixed when its seats were held. A
    decline raises a retryable error; a timeout is Temporal's to enforce:
    while waiting for the gateway this heartbeats, and stops as soon as the attempt is cancelled.
    """
    order_id, attempt = request.order_id, activity.info().attempt
    with _database():
        cut_off = payment_services.start_attempt(
            order_id=order_id, attempt=attempt, code=request.payment_code
        )
        error = payment_services.TIMED_OUT_MESSAGE if cut_off else None
        activity_writes.show_payment_attempt(order_id=order_id, attempt=attempt, error=error)
        answer = ledger.request_charge(
            key=ledger.charge_key(order_id),
            order_id=order_id,
            attempt=attempt,
            code=request.payment_code,
            gateway=gateway.from_settings(),
            wait=_wait_for_gateway,
            # The total fixed when the seats were held: the seats cannot change once paying.
            amount=activity_writes.order_total(order_id=order_id),
        )
    if answer.outcome is ledger.Outcome.APPROVED:
        failpoints.hit("payment.after_charge")
    if answer.outcome is ledger.Outcome.TIMED_OUT:
        _finish_attempt(order_id, attempt, PaymentOutcome.TIMED_OUT, payment_services.TIMED_OUT_MESSAGE)
        raise ApplicationError(payment_services.TIMED_OUT_MESSAGE, type="PAYMENT_TIMED_OUT")
    if answer.outcome is ledger.Outcome.VOIDED:  # the booking ended while this attempt ran late
        _finish_attempt(order_id, attempt, PaymentOutcome.FAILED, Messages.PAYMENT_VOIDED)
        raise ApplicationError(Messages.PAYMENT_VOIDED, type=ErrorType.PAYMENT_DECLINED, non_retryable=True)
    if not answer.approved:
        _finish_attempt(order_id, attempt, PaymentOutcome.FAILED, Messages.PAYMENT_FAILED)
        logger.info("payment attempt %d declined", attempt, extra={"order_id": order_id})
        # Expected (the gateway said no): benign, so the SDK logs it at DEBUG, not as a WARNING
        # with a traceback per attempt; the line above is the one the operator reads.
        raise ApplicationError(
            Messages.PAYMENT_FAILED, type=ErrorType.PAYMENT_DECLINED, category=ApplicationErrorCategory.BENIGN
        )
    assert answer.charge is not None
    assert answer.charge.attempt is not None
    approved_by = answer.charge.attempt
    if answer.outcome is ledger.Outcome.REPLAYED:
        _finish_attempt(
            order_id, attempt, PaymentOutcome.ALREADY_APPROVED, "", note=Messages.approved_by(approved_by)
        )
        logger.info(
            "payment attempt %d: approved by attempt %d", attempt, approved_by, extra={"order_id": order_id}
        )
    else:
        _finish_attempt(order_id, attempt, PaymentOutcome.SUCCEEDED, "")
        logger.info("payment attempt %d approved", attempt, extra={"order_id": order_id})
    return PaymentResult(attempt=attempt, approved_attempt=approved_by, charge_id=answer.charge.id)


def _finish_attempt(
    order_id: str, attempt: int, outcome: PaymentOutcome, error: str, *, note: str = ""
) -> None:
    """Record how the attempt ended, and show its error on the order (once: never a late answer)."""
    with _database(), transaction.atomic():
        finished = payment_services.finish_attempt(
            order_id=order_id, attempt=attempt, outcome=outcome, error=error or note
        )
        if finished and error:
            activity_writes.show_payment_attempt(order_id=order_id, attempt=attempt, error=error)


def _wait_for_gateway(seconds: float) -> bool:
    """Sleep for the gateway's latency; True if the attempt was cancelled (timed out) meanwhile."""
    remaining = seconds
    while remaining > 0:
        step = min(0.5, remaining)
        activity.heartbeat()  # how a sync activity learns that it was cancelled
        activity.wait_for_cancelled_sync(timeout=step)
        if activity.is_cancelled():
            return True
        remaining -= step
    return False


@activity.defn(name=RECONCILE_ACTIVITY)
@_with_database
def reconcile() -> ReconcileResult:
    """One run of the reconciliation (``orders.reconciliation.reconcile``), kept as a
    ``ReconcileRun``; it heartbeats after every batch of candidates. Idempotent: a second run
    finds nothing left to repair."""
    run = reconciliation.reconcile(grace=settings.RECONCILE_GRACE, heartbeat=activity.heartbeat)
    return ReconcileResult(run_id=run.pk, repairs=dict(run.repairs), failures=run.failures)


@activity.defn(name=PURGE_ACTIVITY)
@_with_database
def purge_expired() -> PurgeResult:
    """Delete expired sessions and idempotency records (``orders.retention``), heartbeating
    after each batch. Idempotent: what is deleted is gone, a retry deletes the rest."""
    purged = retention.purge_expired(
        keep_requests=settings.IDEMPOTENCY_KEY_RETENTION,
        batch_size=settings.RETENTION_BATCH_SIZE,
        on_batch=activity.heartbeat,
    )
    return PurgeResult(deleted=purged.deleted, batches=purged.batches)


ALL: list[Callable[..., object]] = [
    hold_seats,
    release_seats,
    record_order,
    confirm_booking,
    refund_payment,
    validate_payment,
    reconcile,
    purge_expired,
]

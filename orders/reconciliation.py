"""Reconciliation: finds where Redis, PostgreSQL and the workflows disagree, and repairs it.

One implementation, run every minute by a Temporal Schedule (``ReconcileWorkflow``, created when
the worker starts) and by ``manage.py reconcile_orders``. Each run is kept as a ``ReconcileRun``
(the admin's overview shows the last), logged, and counted in
``booking_reconcile_repairs_total{kind}``.

What it repairs (``Repair``):

- a request answered "still confirming" that nobody looked at since: its outcome is learnt, and
  the create of an order whose start was lost (a restart of Temporal) is sent again;
- a live order whose workflow is gone (terminated by hand, say, which skips its compensations):
  what it holds is released and the row closed as the workflow ended it, or EXPIRED when its hold
  ran out, or FAILED ("stopped before it could finish");
- a completed workflow whose order's row is still live (its last record lost): its result is recorded;
- a live order that lost its Redis holds (a Redis restart): they are taken again for it, where
  nobody else has taken the seat;
- a hold in Redis for an order that does not exist or has ended: released;
- money: an order it closes without its seats has its charge refunded (or its key voided), and a
  live charge of an order that ended without its seats (a saga that never ran its refund) is
  refunded.

It never touches a healthy booking: a running workflow whose row and holds agree with it is left
as it is. Against races (a booking that moves on while the run looks at it), an order is repaired
only when it has not changed for ``grace``, and a hold is released only while it still belongs
to the order that was found ended (compare-and-delete in Redis).

It pages: candidates are read ``BATCH`` at a time (keyset on the primary key, so that a row that
changes meanwhile never makes another one skipped or seen twice), and ``heartbeat`` is called
after each batch (the activity's heartbeat: a run that stops moving is noticed within its
heartbeat timeout). One candidate's failure is logged with its traceback, counted
(``booking_reconcile_failures_total``) and kept with the run, and the run goes on with the next.
A repair is counted only when it happened.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from django.conf import settings
from django.db.models import Model, Q, QuerySet
from django.utils import timezone
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from common import metrics, temporal_client
from common.errors import Refused
from flights import inventory
from orders import settling, workflow_calls
from orders.activity_writes import record_order, refund_payment, release_seats
from orders.errors import ServiceUnavailable, StillConfirming
from orders.models import OPEN_REQUEST_STATES, Order, OrderRequest, ReconcileRun, charged_unconfirmed
from orders.workflow_contract import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    BookingStatus,
    Messages,
    OrderRecord,
    Queries,
    State,
)

logger = logging.getLogger(__name__)


# Runs are kept this long (one a minute: about 10,000).
KEEP_RUNS = timedelta(days=7)
# A running workflow answers its query within this, or the run leaves its order for the next one.
QUERY_TIMEOUT = timedelta(seconds=5)
# Candidates read at once, and between two heartbeats.
BATCH = 200
# Lines kept with a run (its counts are always whole): one that repairs thousands keeps a page.
KEEP_DETAILS = 500
M = TypeVar("M", bound=Model)
Heartbeat = Callable[[str], None]


class Repair(StrEnum):
    REQUEST_SETTLED = "request_settled"
    CREATE_RESENT = "create_resent"
    WORKFLOW_GONE = "workflow_gone"
    HOLD_LOST = "hold_lost"
    HOLD_WITHOUT_ORDER = "hold_without_order"
    CHARGE_REFUNDED = "charge_refunded"


@dataclass
class Report:
    repairs: Tally[str] = field(default_factory=Tally)
    details: list[str] = field(default_factory=list)
    failures: int = 0
    kept: int = 0  # repair and "seen" lines kept so far; failure lines are kept apart, however many

    def add(self, kind: Repair, detail: str, *, order_id: str | None = None) -> None:
        self.repairs[kind.value] += 1
        self._keep(f"{kind.value}: {detail}")
        metrics.RECONCILE_REPAIRS.labels(kind=kind.value).inc()
        logger.warning("reconciliation: %s: %s", kind.value, detail, extra={"order_id": order_id or "-"})

    def note(self, detail: str) -> None:
        """Something seen and left alone (not counted as a repair)."""
        self._keep(f"seen: {detail}")
        logger.info("reconciliation: seen: %s", detail)

    def failed(self, what: str, error: Exception, *, order_id: str | None = None) -> None:
        """A candidate whose repair raised: logged with its traceback, counted, kept with the run."""
        self.failures += 1
        self.details.append(f"failed: {what}: {type(error).__name__}: {error}")  # kept, however many
        metrics.RECONCILE_FAILURES.inc()
        logger.error("reconciliation: failed: %s", what, exc_info=error, extra={"order_id": order_id or "-"})

    def _keep(self, line: str) -> None:
        if self.kept < KEEP_DETAILS:
            self.details.append(line)
        elif self.kept == KEEP_DETAILS:
            self.details.append("… and more: the counts are whole, and the worker's log has every line")
        self.kept += 1


@contextmanager
def one_candidate(report: Report, what: str, order_id: str | None = None) -> Iterator[None]:
    """Around one candidate's repair: its failure is kept with the run (``Report.failed``), and
    the run goes on with the next candidate instead of stopping (a KeyboardInterrupt or a
    SystemExit still stops it)."""
    try:
        yield
    except Exception as error:
        report.failed(what, error, order_id=order_id)


@dataclass(frozen=True)
class WorkflowView:
    """What Temporal says of an order's workflow: running, ended with a status, or gone."""

    running: bool
    status: BookingStatus | None = None  # its get_status (running) or its result (completed)


def reconcile(
    *, grace: timedelta | None = None, heartbeat: Heartbeat = lambda progress: None
) -> ReconcileRun:
    """Run the reconciliation once, keep its run, and return it. Idempotent: a second run right
    after the first finds nothing to do. Drift younger than ``grace`` (``RECONCILE_GRACE`` unless
    given) is left to a later run; ``heartbeat`` is called after each batch of candidates."""
    run = ReconcileRun.objects.create(started_at=timezone.now())
    report = Report()
    try:
        _reconcile(report, grace=settings.RECONCILE_GRACE if grace is None else grace, heartbeat=heartbeat)
    except Exception as error:
        run.error = f"{type(error).__name__}: {error}"
        logger.exception("reconciliation stopped early")
        raise
    finally:
        run.finished_at = timezone.now()
        run.repairs, run.details, run.failures = dict(report.repairs), report.details, report.failures
        run.save()
        ReconcileRun.objects.filter(started_at__lt=run.started_at - KEEP_RUNS).delete()
    logger.info("reconciliation: %d repairs %s, %d failed", run.repaired, run.repairs or "", run.failures)
    return run


def _reconcile(report: Report, *, grace: timedelta, heartbeat: Heartbeat) -> None:
    now = timezone.now()
    settled = now - grace

    def each(candidates: QuerySet[M], what: str) -> Iterator[M]:
        return in_batches(candidates, heartbeat=lambda last: heartbeat(f"{what}: through {last}"))

    for request in each(_open_requests(older_than=grace), "requests"):
        with one_candidate(report, f"settling the {request.kind} of {request.order_id}", request.order_id):
            if settling.settle(request):
                detail = f"{request.kind} of {request.order_id}"
                report.add(Repair.REQUEST_SETTLED, detail, order_id=request.order_id)
    for order in each(_unconfirmed_orders(older_than=grace), "unconfirmed orders"):
        with one_candidate(report, f"resending the create of {order.id}", order.id):
            _resend_create(order, report)
    live = Order.objects.filter(state__in=[s.value for s in ACTIVE_STATES], updated_at__lt=settled)
    for order in each(live, "live orders"):
        with one_candidate(report, f"checking {order.id}", order.id):
            _reconcile_live_order(order, report, now=now)
    _release_holds_of_ended_orders(report, settled=settled, heartbeat=heartbeat)
    charged = Order.objects.filter(charged_unconfirmed()).filter(_ended_before(settled)).distinct()
    for order in each(charged, "charges of ended orders"):
        # Their workflow's saga should have refunded them: it refunds before it records the end.
        with one_candidate(report, f"refunding {order.id}", order.id):
            if refund_payment(order_id=order.id):
                report.add(Repair.CHARGE_REFUNDED, f"{order.id} ({order.state})", order_id=order.id)


def in_batches(candidates: QuerySet[M], *, heartbeat: Callable[[object], None]) -> Iterator[M]:
    """Every candidate, ``BATCH`` at a time by primary key (keyset: a row that changes meanwhile
    never makes another one skipped or seen twice); ``heartbeat(last key)`` after each batch."""
    last = None
    while True:
        page = candidates.order_by("pk")
        batch = list((page if last is None else page.filter(pk__gt=last))[:BATCH])
        if not batch:
            return
        yield from batch
        last = batch[-1].pk
        heartbeat(last)


def _resend_create(order: Order, report: Report) -> None:
    """Send the first hold of an order whose create never answered, with its own ids (Temporal
    runs it at most once). Counted when it reached Temporal, whatever its outcome."""
    try:
        workflow_calls.hold_first_seats(order=order)  # what its customer asked for
    except ServiceUnavailable:
        report.note(f"{order.id}: its create could not be sent again (Temporal out of reach)")
        return
    except (Refused, StillConfirming):
        pass  # sent: refused, or its outcome is for its request's next look
    report.add(Repair.CREATE_RESENT, order.id, order_id=order.id)


def _reconcile_live_order(order: Order, report: Report, *, now: datetime) -> None:
    workflow = _workflow_of(order)
    if not workflow.running:
        order.refresh_from_db()
        if order.is_active:  # not closed by its workflow's last record since the row was read
            _close(order, workflow.status, report, now=now)
        return
    status = workflow.status
    if status is None:
        return  # no worker answered: nothing to compare the row with
    if status.version != order.version:
        # A write of the workflow's may be under way (its version counts it before the store
        # has it): only reported. The workflow's next record, newer, overrides the row anyway.
        report.note(
            f"{order.id}: row v{order.version} {order.state}, workflow v{status.version} "
            f"{status.state.value} (left to the workflow)"
        )
        return
    _retake_lost_holds(order, status, report, now=now)


def _close(order: Order, ended: BookingStatus | None, report: Report, *, now: datetime) -> None:
    """An order whose workflow no longer runs: let its seats go, refund what it paid, and close
    its row (its compensations, which a terminated workflow never ran)."""
    release_seats(order_id=order.id, flight_id=order.flight_id, seats=list(order.seats))
    paying = order.state in (State.PAYMENT_PENDING, State.PAYMENT_PROCESSING)
    if ended is not None and ended.state in TERMINAL_STATES and ended.version > order.version:
        record = _record_of(order, ended, now=now)  # as its workflow ended it
    else:
        expired = order.hold_expires_at is not None and order.hold_expires_at <= now
        state, message = (
            (State.EXPIRED, Messages.EXPIRED) if expired and not paying else (State.FAILED, Messages.STOPPED)
        )
        record = OrderRecord(
            order_id=order.id,
            flight_id=order.flight_id,
            version=order.version + 1,
            state=state,
            seats=list(order.seats),
            at=now,
            hold_expires_at=order.hold_expires_at,
            payment_attempts=order.payment_attempts,
            last_error=message,
        )
    # A paying order may have been charged (or be charged late, by an attempt still running):
    # refunded, or its key voided. An order that never reached payment has nothing to refund.
    refunded = paying and record.state != State.CONFIRMED and refund_payment(order_id=order.id)
    if refunded and record.last_error == Messages.STOPPED:
        record.last_error = Messages.STOPPED_REFUNDED
    if record_order(record=record):  # not closed meanwhile by a record of its own
        detail = f"{order.id} {order.state} -> {record.state.value}"
        report.add(Repair.WORKFLOW_GONE, detail, order_id=order.id)
    if refunded:
        report.add(Repair.CHARGE_REFUNDED, f"{order.id} (its workflow is gone)", order_id=order.id)


def _retake_lost_holds(order: Order, status: BookingStatus, report: Report, *, now: datetime) -> None:
    """Seats a live order holds by its row and by its workflow (at the same version), but not in
    Redis (which lost them): taken again for it until its deadline, where nobody else holds or
    has bought the seat. Without this, another customer could take a seat this one still sees
    as theirs; the workflow itself re-takes its holds only when the payment starts."""
    if order.state != State.SEATS_RESERVED or order.hold_expires_at is None or order.hold_expires_at <= now:
        return  # a paying order re-took its holds for the whole payment window
    holders = inventory.holders(flight_id=order.flight_id, seats=list(order.seats))
    lost = [seat for seat in order.seats if seat not in holders and seat in status.seats]
    if not lost:
        return
    ttl = order.hold_expires_at - now + settings.SEAT_HOLD_TTL_MARGIN
    taken = inventory.hold(
        flight_id=order.flight_id,
        order_id=order.id,
        seats=lost,
        ttl_ms=int(ttl.total_seconds() * 1000),
        release=[],
    )
    if taken:  # another customer has them now: nothing was repaired (its payment will say so)
        report.note(f"{order.id} lost {', '.join(lost)}, taken by another order meanwhile")
    else:
        report.add(Repair.HOLD_LOST, f"{order.id} {', '.join(lost)} (held again)", order_id=order.id)


def _release_holds_of_ended_orders(report: Report, *, settled: datetime, heartbeat: Heartbeat) -> None:
    """Holds whose order does not exist, or ended more than ``grace`` ago (an order's row exists
    before anything is held for it, and its workflow lets its holds go before it ends)."""
    for found in _batches(inventory.every_hold(), BATCH):
        owners = {order_id for _, _, order_id in found}
        alive = set(
            Order.objects.filter(id__in=owners).filter(~_ended_before(settled)).values_list("id", flat=True)
        )
        for flight_id, seat, order_id in found:
            if order_id in alive:
                continue
            with one_candidate(report, f"releasing {flight_id} {seat} of {order_id}", order_id):
                # Compare-and-delete: a hold taken by another order since the scan stays.
                if inventory.release(flight_id=flight_id, order_id=order_id, seats=[seat]):
                    detail = f"{flight_id} {seat} of {order_id}"
                    report.add(Repair.HOLD_WITHOUT_ORDER, detail, order_id=order_id)
        heartbeat(f"holds: {len(found)} more")


def _batches(items: Iterable[tuple[str, str, str]], size: int) -> Iterator[list[tuple[str, str, str]]]:
    batch: list[tuple[str, str, str]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _ended_before(moment: datetime) -> Q:
    return Q(state__in=[s.value for s in TERMINAL_STATES], updated_at__lt=moment)


def _record_of(order: Order, status: BookingStatus, *, now: datetime) -> OrderRecord:
    return OrderRecord(
        order_id=order.id,
        flight_id=order.flight_id,
        version=status.version,
        state=status.state,
        seats=list(status.seats),
        at=now,
        hold_expires_at=status.hold_expires_at,
        payment_attempts=status.payment_attempts,
        last_error=status.last_error,
    )


def _workflow_of(order: Order) -> WorkflowView:
    async def operation(client: Client) -> WorkflowView:
        handle = client.get_workflow_handle(order.workflow_id, result_type=BookingStatus)
        try:
            description = await handle.describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return WorkflowView(running=False)
            raise
        if description.status == WorkflowExecutionStatus.RUNNING:
            try:
                status = await handle.query(
                    Queries.GET_STATUS, result_type=BookingStatus, rpc_timeout=QUERY_TIMEOUT
                )
            except (RPCError, TimeoutError):  # no worker answers now: nothing to compare with
                return WorkflowView(running=True)
            return WorkflowView(running=True, status=status)
        if description.status == WorkflowExecutionStatus.COMPLETED:
            return WorkflowView(running=False, status=await handle.result())
        return WorkflowView(running=False)

    return temporal_client.call(operation, timeout=30)


def _unconfirmed_orders(*, older_than: timedelta) -> QuerySet[Order]:
    """Orders still CREATED, with no request left to settle (their first hold never answered)."""
    return Order.objects.filter(state=State.CREATED, created_at__lt=timezone.now() - older_than).exclude(
        requests__state__in=OPEN_REQUEST_STATES
    )


def _open_requests(*, older_than: timedelta) -> QuerySet[OrderRequest]:
    """Requests answered "still confirming" that nobody has looked at since."""
    return OrderRequest.objects.select_related("order").filter(
        state__in=OPEN_REQUEST_STATES,
        lease_until__lt=timezone.now(),
        created_at__lt=timezone.now() - older_than,
        order__isnull=False,
    )

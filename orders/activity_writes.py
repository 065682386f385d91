"""The writes the workflow's activities make on orders: the order's row and its history, and the
order's side of holding, releasing and selling seats (the seats themselves are the inventory's:
``flights.inventory``).

Each function is idempotent: activities run at least once, and a retry must change nothing the
first run already changed. Every change of the row is a versioned record of the workflow's,
written once; the one exception is the attempt a payment is at, which the workflow cannot know
while Temporal retries it (``show_payment_attempt``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TypedDict

from django.db import transaction
from django.db.models import Count, Max, Min, Q

from common import events, failpoints, metrics
from common.money import Money
from flights import inventory
from orders.models import Order, OrderEvent
from orders.workflow_contract import TERMINAL_STATES, Messages, OrderRecord, State
from payments import ledger
from payments import services as payment_services
from payments.models import ChargeStatus

logger = logging.getLogger(__name__)
RECORDED_FIELDS = ["state", "seats", "hold_expires_at", "payment_attempts", "last_error", "version"]


def record_order(*, record: OrderRecord) -> bool:
    """Write a state transition on the order's row and its history, once per version.

    Records are ordered by when the workflow made them, then by version: a record older than
    what the row shows is ignored (an activity retried late never moves an order backwards).
    The time comes first because of local activities, which run before their workflow task is
    complete: when that task is lost (the worker killed, Temporal restarted, the task timed
    out), what they wrote stays, though the history never kept it, and the task that replaces
    it may decide otherwise with the same version numbers (the first hold's update lost with
    the task: the booking ends, as version 1, where the lost task had held seats as version 1).
    The replacement always runs later, so its records win, and the history rows of the lost
    task are dropped. On an ending, any hold the order still has on the seats its row showed is
    let go (a lost task may have taken them); a hold is only ever released by its own order.

    The row is never created here: the web writes it before it starts the workflow, and removes
    it when Temporal refused the order at once (the customer was told, and nothing may remain);
    a record for a removed order is dropped. Returns whether the row changed.
    """
    return _record(record) is not None


def _record(record: OrderRecord) -> State | None:
    """``record_order``; returns the state the row had before, or None when nothing changed."""
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(id=record.order_id).first()
        if order is None:
            return None
        history = _history(order, record)
        if not _is_newer(record, order, history):
            return None
        before, shown_seats = State(order.state), list(order.seats)
        order.state = record.state
        order.seats = list(record.seats)
        order.hold_expires_at = record.hold_expires_at
        order.payment_attempts = max(order.payment_attempts, record.payment_attempts)
        order.last_error = record.last_error
        order.version = record.version
        priced = record.state == State.SEATS_RESERVED and _price_seats(order, list(record.seats))
        order.save(update_fields=[*RECORDED_FIELDS, *(PRICE_FIELDS if priced else []), "updated_at"])
        if history["lost_rows"]:  # rows from this version on can only be a lost task's
            OrderEvent.objects.filter(order=order, version__gte=record.version).delete()
        OrderEvent.objects.create(
            order=order,
            version=record.version,
            state=record.state,
            at=record.at,
            seats=list(record.seats),
            detail=record.last_error,
        )
        if record.state in TERMINAL_STATES:
            payment_services.close_open_attempts(order_id=order.id)
        _count_transition(before, record, history)
        events.order_changed(order.id, version=record.version, state=record.state)
    if record.state in TERMINAL_STATES and record.state != State.CONFIRMED:
        stray = sorted(set(shown_seats) | set(record.seats))
        inventory.release(flight_id=record.flight_id, order_id=record.order_id, seats=stray)
    return before


PRICE_FIELDS = ["seat_prices", "total_amount", "currency"]


def _price_seats(order: Order, seats: list[str]) -> bool:
    """Fix the prices of a hold on the order: a seat it held already keeps the price it was held
    at; a seat new to it costs what it costs now. The total is their sum: what the payment will
    charge, whatever an operator does to the prices meanwhile. Returns whether anything changed."""
    flight = order.flight
    kept = order.seat_prices if order.currency == flight.currency else {}
    new = [seat for seat in seats if seat not in kept]
    now = {code: price.amount for code, price in inventory.prices_now(flight=flight, seats=new).items()}
    prices = {
        seat: kept[seat] if seat in kept else now[seat] for seat in seats if seat in kept or seat in now
    }
    total = sum(prices.values())
    if (prices, total, flight.currency) == (order.seat_prices, order.total_amount, order.currency):
        return False
    order.seat_prices, order.total_amount, order.currency = prices, total, flight.currency
    return True


def order_total(*, order_id: str) -> Money | None:
    """What the order's seats cost, as fixed when they were held: the amount its payment charges."""
    order = Order.objects.filter(id=order_id).only("total_amount", "currency").first()
    return order.total if order is not None else None


class History(TypedDict):
    """What a record needs to know of the order's history."""

    shown_at: datetime | None  # when the version the row shows was recorded
    lost_rows: int  # rows from the record's version on: a lost task's, which never happened
    first_hold_at: datetime | None  # when the seats were first held, among the rows that stay


def _history(order: Order, record: OrderRecord) -> History:
    """``History``, in one query. Read once the row is locked, never in the locking statement:
    a statement sees the rows committed when it began, and its wait for the lock may end with
    another writer's rows committed (PostgreSQL returns the row as that writer left it, but its
    subqueries would not see that writer's history rows)."""
    found = OrderEvent.objects.filter(order=order).aggregate(
        shown_at=Max("at", filter=Q(version=order.version)),
        lost_rows=Count("pk", filter=Q(version__gte=record.version)),
        first_hold_at=Min("at", filter=Q(state=State.SEATS_RESERVED, version__lt=record.version)),
    )
    return History(
        shown_at=found["shown_at"], lost_rows=found["lost_rows"], first_hold_at=found["first_hold_at"]
    )


def _count_transition(before: State, record: OrderRecord, history: History) -> None:
    """The metrics of a transition the row has just taken, counted once the transaction commits
    (a retried activity finds the version written, and counts nothing again)."""
    after = State(record.state)
    never_held = before is State.CREATED and history["first_hold_at"] is None
    if after is State.FAILED and never_held:
        # A first hold refused (most often a seat race lost): no booking existed, and the web
        # removes the row; counting it FAILED would read as bookings failing.
        reason = "not_started" if record.last_error == Messages.NOT_STARTED else "seats_taken"
        transaction.on_commit(metrics.FIRST_HOLDS_REFUSED.labels(reason=reason).inc)
    elif after in TERMINAL_STATES and before not in TERMINAL_STATES:  # a lost task may have ended it
        transaction.on_commit(metrics.ORDERS_FINISHED.labels(state=after.value).inc)
    # The hold ends when the payment is submitted, or when the order ends without one.
    hold_ended = after is State.PAYMENT_PENDING or after in TERMINAL_STATES
    first_hold = history["first_hold_at"]
    if before is State.SEATS_RESERVED and hold_ended and first_hold is not None:
        ended = "payment" if after is State.PAYMENT_PENDING else after.value
        seconds = max(0.0, (record.at - first_hold).total_seconds())
        observe = metrics.HOLD_DURATION.labels(ended=ended).observe
        transaction.on_commit(lambda: observe(seconds))


def _is_newer(record: OrderRecord, order: Order, history: History) -> bool:
    shown = history["shown_at"]
    if shown is None:  # as the web created it (version 0), or written before the history rows
        return record.version > order.version
    return (record.at, record.version) > (shown, order.version)


def hold_seats(*, record: OrderRecord, ttl_ms: int, release: list[str]) -> list[str]:
    """Hold all of ``record.seats`` for the order or none, let ``release`` go, and record.

    Returns the seats another order holds or has bought (nothing changed then). Raises
    ``inventory.UnknownSeats`` for a seat that is not on the flight.
    """
    taken = inventory.hold(
        flight_id=record.flight_id,
        order_id=record.order_id,
        seats=list(record.seats),
        ttl_ms=ttl_ms,
        release=release,
    )
    if not taken:
        before = _record(record)
        if before is State.SEATS_RESERVED and record.state == State.SEATS_RESERVED:
            transaction.on_commit(metrics.SEAT_CHANGES.inc)
    return taken


def release_seats(
    *, order_id: str, flight_id: str, seats: list[str], record: OrderRecord | None = None
) -> int:
    """Release the seats this order still holds, then record ``record`` if given (how the workflow
    undoes a seat change the stores did not confirm). Never touches another order's hold."""
    released = inventory.release(flight_id=flight_id, order_id=order_id, seats=seats)
    if record is not None:
        record_order(record=record)
    return released


class NotCharged(Exception):
    """The order has no live charge in the gateway's ledger, so it cannot be confirmed."""


def confirm_booking(*, record: OrderRecord) -> None:
    """Sell the order's seats and mark it CONFIRMED, in one transaction; then let their Redis
    holds go (the sale is the database's now).

    Two things decide. The order's charge in the gateway's ledger, locked for the transaction,
    must be live: a confirmed order has exactly one charge, and a refund cannot slip in between
    (``NotCharged`` otherwise). The (flight, seat) unique constraint: if any seat is sold already,
    nothing is written and ``inventory.SeatsAlreadySold`` names the seats. A retry after a commit
    whose answer was lost finds the order confirmed, and only lets the holds go.
    """
    seats = list(record.seats)
    if not Order.objects.filter(id=record.order_id, state=State.CONFIRMED).exists():
        with transaction.atomic():
            charge = ledger.locked(key=ledger.charge_key(record.order_id))
            if charge is None or charge.status != ChargeStatus.CHARGED:
                found = charge.get_status_display().lower() if charge else "none"
                raise NotCharged(f"order {record.order_id} has no live charge to confirm (found: {found})")
            inventory.sell(flight_id=record.flight_id, order_id=record.order_id, seats=seats)
            record_order(record=record)
            failpoints.hit("confirm.before_commit")
    inventory.release(flight_id=record.flight_id, order_id=record.order_id, seats=seats)


def refund_payment(*, order_id: str) -> bool:
    """Refund the order's charge at the gateway, or void its key if nothing was charged yet (an
    attempt still running late then charges nothing). Never the charge of a confirmed order: with
    the charge locked, as ``confirm_booking`` locks it, an order is either confirmed with its
    charge or refunded, never both. Idempotent; returns whether money was refunded now."""
    key = ledger.charge_key(order_id)
    with transaction.atomic():
        ledger.locked(key=key)
        if Order.objects.filter(id=order_id, state=State.CONFIRMED).exists():
            logger.warning("not refunding: the order is confirmed", extra={"order_id": order_id})
            return False
        _, refunded = ledger.refund(key=key, order_id=order_id)
        payment_services.refund(order_id=order_id)  # what the page shows of the attempts
        events.order_changed(order_id)
    return refunded


def show_payment_attempt(*, order_id: str, attempt: int, error: str | None = None) -> None:
    """Show on the order, at once, the attempt its payment is at (and the last attempt's error):
    how "Retrying (attempt 2 of 3)..." reaches the page while Temporal retries. Never lowers the
    count; the workflow's next record carries the final one."""
    with transaction.atomic():
        if error:
            Order.objects.filter(id=order_id).update(last_error=error)
        Order.objects.filter(id=order_id, payment_attempts__lt=attempt).update(payment_attempts=attempt)
        events.order_changed(order_id)

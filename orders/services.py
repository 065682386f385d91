"""The writes the workflow's activities make: holds, the order's row and its history, sales.

Each function is idempotent: activities run at least once, and a retry must change nothing the
first run already changed.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from flights.models import Seat
from orders import holds
from orders.models import BookedSeat, Order, OrderEvent, OrderState
from payments import services as payment_services
from temporal_worker.shared import TERMINAL_STATES, OrderRecord

logger = logging.getLogger(__name__)


class UnknownSeats(Exception):
    """Seats that are not on the flight."""

    def __init__(self, seats: list[str]) -> None:
        super().__init__(f"{'Seat' if len(seats) == 1 else 'Seats'} {', '.join(seats)} not on this flight")
        self.seats = seats


class SeatsAlreadyBooked(Exception):
    """The (flight, seat) constraint refused a sale: another order bought a seat first."""

    def __init__(self, seats: list[str]) -> None:
        super().__init__(f"{', '.join(seats)} already booked")
        self.seats = seats


def record_order(*, record: OrderRecord) -> bool:
    """Write a state transition on the order's row and its history, once per version.

    A record older than what the row shows is ignored (an activity retried late never moves
    an order backwards). The row is never created here: the web writes it before it starts the
    workflow, and removes it when Temporal refused the order at once (the customer was told, and
    nothing may remain); a record for a removed order is dropped. Returns whether the row changed.
    """
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(id=record.order_id).first()
        if order is None or order.version >= record.version:
            return False
        order.state = record.state
        order.seats = list(record.seats)
        order.hold_expires_at = record.hold_expires_at
        order.payment_attempts = max(order.payment_attempts, record.payment_attempts)
        order.last_error = record.last_error
        order.version = record.version
        order.save()
        OrderEvent.objects.get_or_create(
            order=order,
            version=record.version,
            defaults={
                "state": record.state,
                "at": record.at,
                "seats": list(record.seats),
                "detail": record.last_error,
            },
        )
        if record.state in TERMINAL_STATES:
            payment_services.close_open_attempts(order_id=order.id)
    return True


def hold_seats(*, record: OrderRecord, ttl_ms: int, release: list[str]) -> list[str]:
    """Hold all of ``record.seats`` for the order or none; release ``release``; record.

    Returns the seats another order holds or has bought (nothing changed then). Raises
    UnknownSeats for a seat that is not on the flight.
    """
    seats = list(record.seats)
    known = set(
        Seat.objects.filter(flight_id=record.flight_id, code__in=seats).values_list("code", flat=True)
    )
    if unknown := [seat for seat in seats if seat not in known]:
        raise UnknownSeats(unknown)
    sold = set(
        BookedSeat.objects.filter(flight_id=record.flight_id, seat__code__in=seats)
        .exclude(order_id=record.order_id)
        .values_list("seat__code", flat=True)
    )
    if sold:
        return [seat for seat in seats if seat in sold]
    taken = holds.acquire(flight_id=record.flight_id, seats=seats, order_id=record.order_id, ttl_ms=ttl_ms)
    if taken:
        return taken
    holds.release(flight_id=record.flight_id, seats=release, order_id=record.order_id)
    record_order(record=record)
    return []


def release_seats(
    *, order_id: str, flight_id: str, seats: list[str], record: OrderRecord | None = None
) -> int:
    """Release the seats this order still holds, then record ``record`` if given (how the workflow
    undoes a seat change the stores did not confirm). Idempotent; never touches another's hold."""
    released = holds.release(flight_id=flight_id, seats=seats, order_id=order_id)
    if record is not None:
        record_order(record=record)
    return released


def confirm_booking(*, record: OrderRecord) -> None:
    """Sell the order's seats and mark it CONFIRMED, in one transaction.

    The (flight, seat) unique constraint decides: if any seat is sold already, nothing is
    written and SeatsAlreadyBooked names the seats. Idempotent: a retry after a commit whose
    answer was lost finds the order confirmed and returns.
    """
    if Order.objects.filter(id=record.order_id, state=OrderState.CONFIRMED).exists():
        return
    seats = list(Seat.objects.filter(flight_id=record.flight_id, code__in=record.seats))
    try:
        with transaction.atomic():
            BookedSeat.objects.bulk_create(
                [
                    BookedSeat(flight_id=record.flight_id, seat=seat, order_id=record.order_id)
                    for seat in seats
                ]
            )
            record_order(record=record)
    except IntegrityError:
        sold = BookedSeat.objects.filter(flight_id=record.flight_id, seat__code__in=record.seats)
        raise SeatsAlreadyBooked(sorted(sold.values_list("seat__code", flat=True))) from None

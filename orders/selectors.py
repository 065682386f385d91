"""What an order's page shows, computed in one place so that templates hold no rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from flights.selectors import SeatMap, seat_map
from orders.models import Order, OrderState


@dataclass(frozen=True)
class Banner:
    kind: str  # info | progress | retry | success | error | expired
    text: str
    busy: bool = False  # shows a spinner


@dataclass(frozen=True)
class OrderPage:
    order: Order
    seat_map: SeatMap
    banner: Banner | None
    can_change_seats: bool
    can_pay: bool
    polling: bool  # False once the order is final: the poll answers 286 and stops
    expires_at: datetime | None
    server_time: datetime
    max_attempts: int

    @property
    def countdown_running(self) -> bool:
        return self.can_change_seats and self.expires_at is not None

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything the page shows does (a poll sending it back gets 204)."""
        order = self.order
        parts = (
            order.version,
            order.payment_attempts,
            self.seat_map.fingerprint,
            int(self.countdown_running),
        )
        return ".".join(map(str, parts))

    @property
    def seats_text(self) -> str:
        return ", ".join(self.order.seats)


def _hold_passed(order: Order) -> bool:
    return order.hold_expires_at is not None and order.hold_expires_at <= timezone.now()


def banner_for(order: Order) -> Banner | None:
    """The payment banner of PRD section 5, for the order's state."""
    state = order.state
    if state == OrderState.SEATS_RESERVED and _hold_passed(order):
        return Banner("expired", "Time is up: releasing your seats…", busy=True)
    if state in (OrderState.PAYMENT_PENDING, OrderState.PAYMENT_PROCESSING):
        attempt = order.payment_attempts
        if attempt >= 2:
            of = settings.PAYMENT_MAX_RETRIES
            return Banner(
                "retry", f"Payment validation failed. Retrying (attempt {attempt} of {of})...", busy=True
            )
        return Banner("progress", "Validating payment...", busy=True)
    if state == OrderState.CONFIRMED:
        seats, number = ", ".join(order.seats), order.flight.number
        return Banner(
            "success", f"Booking confirmed! Order #{order.display_id}. Seats {seats} on Flight {number}"
        )
    if state == OrderState.FAILED:
        return Banner("error", order.last_error or "The booking failed. Your seats have been released.")
    if state == OrderState.EXPIRED:
        return Banner("expired", "Your seat hold expired and the seats were released.")
    if state == OrderState.CANCELLED:
        return Banner("expired", order.last_error or "This order was cancelled and its seats released.")
    return None


def order_page(*, order: Order) -> OrderPage:
    live = order.state == OrderState.SEATS_RESERVED and not _hold_passed(order)
    return OrderPage(
        order=order,
        seat_map=seat_map(flight=order.flight, order_id=order.id if order.is_active else None),
        banner=banner_for(order),
        can_change_seats=live,
        can_pay=live,
        polling=not order.is_terminal,
        expires_at=order.hold_expires_at,
        server_time=timezone.now(),
        max_attempts=settings.PAYMENT_MAX_RETRIES,
    )


def toggled(seats: list[str], seat: str) -> list[str]:
    """The selection after clicking ``seat``: added if it was not chosen, dropped if it was."""
    return [s for s in seats if s != seat] if seat in seats else [*seats, seat]

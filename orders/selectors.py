"""What an order's page shows, computed in one place so that templates hold no rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from flights.selectors import SeatMap, seat_map
from orders import requests
from orders.models import Order, OrderRequest, OrderState, RequestKind, RequestState

# While a request's outcome is not known yet (it was answered "still confirming"), the page
# says so, instead of showing an error or pretending nothing happened.
PENDING_TEXT = {
    RequestKind.CREATE: (
        "We are still confirming your seats with the booking service. This page updates by itself."
    ),
    RequestKind.SEATS: "We are still confirming your seat change. This page updates by itself.",
    RequestKind.PAY: "We are still confirming your payment request. This page updates by itself.",
    RequestKind.CANCEL: "We are releasing your seats. This page updates by itself.",
}
LOST_TEXT = "Your last request did not reach the booking service, so nothing was changed. Please try again."


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
    waiting_for: str | None = None  # the kind of request still being confirmed
    can_cancel: bool = False

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
            self.waiting_for or "-",
            self.banner.text if self.banner else "-",
        )
        return ".".join(map(str, parts))

    @property
    def seats_text(self) -> str:
        return ", ".join(self.order.seats)


def _hold_passed(order: Order) -> bool:
    return order.hold_expires_at is not None and order.hold_expires_at <= timezone.now()


def banner_for(
    order: Order, waiting: OrderRequest | None = None, last: OrderRequest | None = None
) -> Banner | None:
    """The payment banner of PRD section 5, for the order's state and its requests."""
    state = order.state
    if waiting is not None and not order.is_terminal:
        return Banner("progress", PENDING_TEXT[RequestKind(waiting.kind)], busy=True)
    if state == OrderState.CREATED:
        return Banner("progress", PENDING_TEXT[RequestKind.CREATE], busy=True)
    if last is not None and last.state == RequestState.LOST and not order.is_terminal:
        return Banner("error", LOST_TEXT)
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
    waiting = requests.open_request(order)
    last = requests.last_request(order) if waiting is None else waiting
    live = order.state == OrderState.SEATS_RESERVED and not _hold_passed(order) and waiting is None
    return OrderPage(
        order=order,
        seat_map=seat_map(flight=order.flight, order_id=order.id if order.is_active else None),
        banner=banner_for(order, waiting, last),
        can_change_seats=live,
        can_pay=live,
        polling=not order.is_terminal,
        expires_at=order.hold_expires_at,
        server_time=timezone.now(),
        max_attempts=settings.PAYMENT_MAX_RETRIES,
        waiting_for=waiting.kind if waiting else None,
        can_cancel=live
        or (order.state == OrderState.CREATED and (waiting is None or waiting.kind != RequestKind.CANCEL)),
    )


def toggled(seats: list[str], seat: str) -> list[str]:
    """The selection after clicking ``seat``: added if it was not chosen, dropped if it was."""
    return [s for s in seats if s != seat] if seat in seats else [*seats, seat]

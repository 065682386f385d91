"""What an order's page shows, computed in one place so that templates hold no rules: every flag
and every text the template prints is decided here, from the order's row and its requests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils import timezone

from common.money import Money
from flights.inventory import SeatMap, seat_map
from orders import idempotency
from orders.models import Order, OrderRequest, RequestKind, RequestState
from orders.ownership import booking_token
from orders.workflow_contract import PAYING_STATES, State
from payments import ledger
from payments.models import Charge

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
class Countdown:
    running: bool  # the browser ticks it, from expires_at and the server's time
    note: str  # what it says when it does not run (or before the first tick)
    shows_zero: bool  # the hold has just run out: 00:00 while the seats are released


class PaymentPanel:
    """What the payment panel offers."""

    FORM = "form"  # the code form, and "Release my seats"
    CANCEL_ONLY = "cancel-only"  # the order is still being confirmed: it can only be abandoned
    NOTE = "note"  # a sentence: validating, paid, nothing to pay


@dataclass(frozen=True)
class ChargeLine:
    """One charge of the order at the gateway, as the payment panel says it."""

    status: str  # CHARGED | REFUNDED
    text: str


def charge_lines(charges: list[Charge]) -> tuple[ChargeLine, ...]:
    def at(moment: datetime | None) -> str:
        return f"{moment.astimezone(UTC):%H:%M:%S} UTC" if moment else ""

    lines = []
    for charge in charges:
        what = f"{charge.money.format()} charged" if charge.money else "Charged"
        text = f"{what} at {at(charge.charged_at)} (payment attempt {charge.attempt})"
        if charge.refunded_at is not None:
            refunded = f"{charge.refunded_money.format()} refunded" if charge.refunded_money else "refunded"
            text += f", {refunded} at {at(charge.refunded_at)}"
        lines.append(ChargeLine(status=charge.status, text=text))
    return tuple(lines)


@dataclass(frozen=True)
class SeatLine:
    """One seat of the order with its cabin and the price it was held at."""

    code: str
    cabin: str
    price: Money | None


def seat_lines(order: Order, plan: SeatMap) -> tuple[SeatLine, ...]:
    cabins = {seat.code: seat.cabin for seat in plan.seats}
    names = {section.cabin.cabin_class: section.name for section in plan.cabins}
    return tuple(
        SeatLine(code, names.get(cabins.get(code, ""), ""), order.price_of(code)) for code in order.seats
    )


@dataclass(frozen=True)
class OrderPage:
    order: Order
    seat_map: SeatMap
    banner: Banner | None
    countdown: Countdown
    can_change_seats: bool
    payment_panel: str
    payment_note: str
    polling: bool  # False once the order is final: the poll answers 286 and stops
    expires_at: datetime | None
    server_time: datetime
    seats_title: str
    offer_choose_again: bool  # it ended without a sale: back to the seat map
    offer_book_another: bool  # it is booked: back to the flights
    waiting: OrderRequest | None = None  # the request still being confirmed
    charges: tuple[ChargeLine, ...] = ()  # what the gateway charged, and refunded
    hold_limit_at: datetime | None = None  # the latest the hold can last (SEAT_HOLD_MAX_LIFE)
    booking_token: str | None = None  # once booked: the private link's token (booking_token)
    seat_lines: tuple[SeatLine, ...] = ()  # each seat, its cabin and the price it was held at

    @property
    def total(self) -> Money | None:
        """What the seats cost as they were held: what the payment charges."""
        return self.order.total

    @property
    def money_fingerprint(self) -> str:
        return "+".join(line.status for line in self.charges) or "-"

    @property
    def waiting_for(self) -> str | None:
        return self.waiting.kind if self.waiting else None

    @property
    def can_pay(self) -> bool:
        return self.payment_panel == PaymentPanel.FORM

    @property
    def can_cancel(self) -> bool:
        return self.payment_panel in (PaymentPanel.FORM, PaymentPanel.CANCEL_ONLY)

    @property
    def cancel_label(self) -> str:
        return "Release my seats" if self.can_pay else "Cancel this booking"

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything the page shows does (a poll sending it back gets 204)."""
        order = self.order
        parts = (
            order.version,
            order.payment_attempts,
            self.seat_map.fingerprint,
            int(self.countdown.running),
            self.waiting_for or "-",
            self.banner.text if self.banner else "-",
            self.money_fingerprint,
            self.order.total_amount,
        )
        return ".".join(map(str, parts))

    @property
    def seats_text(self) -> str:
        return ", ".join(self.order.seats)

    @property
    def seats_label(self) -> str:
        return seats_text(self.order.seats)


def seats_text(seats: list[str]) -> str:
    """ "Seat 14K", "Seats 12A, 12B"."""
    return f"{'Seat' if len(seats) == 1 else 'Seats'} {', '.join(seats)}"


def _hold_passed(order: Order) -> bool:
    return order.hold_expires_at is not None and order.hold_expires_at <= timezone.now()


def banner_for(
    order: Order, waiting: OrderRequest | None = None, last: OrderRequest | None = None
) -> Banner | None:
    """The payment banner of PRD section 5, for the order's state and its requests."""
    state = order.state
    if waiting is not None and not order.is_terminal:
        return Banner("progress", PENDING_TEXT[RequestKind(waiting.kind)], busy=True)
    if state == State.CREATED:
        return Banner("progress", PENDING_TEXT[RequestKind.CREATE], busy=True)
    if last is not None and last.state == RequestState.LOST and not order.is_terminal:
        return Banner("error", LOST_TEXT)
    if state == State.SEATS_RESERVED and _hold_passed(order):
        return Banner("expired", "Time is up: releasing your seats…", busy=True)
    if state in PAYING_STATES:
        attempt = order.payment_attempts
        if attempt >= 2:
            of = order.payment_max_attempts
            return Banner(
                "retry", f"Payment validation failed. Retrying (attempt {attempt} of {of})...", busy=True
            )
        return Banner("progress", "Validating payment...", busy=True)
    if state == State.CONFIRMED:
        seats, number = seats_text(order.seats), order.flight.number
        return Banner("success", f"Booking confirmed! Order #{order.display_id}. {seats} on Flight {number}")
    if state == State.FAILED:
        return Banner("error", order.last_error or "The booking failed. Your seats have been released.")
    if state == State.EXPIRED:
        return Banner("expired", "Your seat hold expired and the seats were released.")
    if state == State.CANCELLED:
        return Banner("expired", order.last_error or "This order was cancelled and its seats released.")
    return None


def countdown_for(order: Order, *, live: bool) -> Countdown:
    state = order.state
    if live and order.hold_expires_at is not None:
        return Countdown(running=True, note="Your seats are held until the timer runs out.", shows_zero=False)
    if state == State.SEATS_RESERVED and _hold_passed(order):
        return Countdown(running=False, note="Time is up: your seats are being released.", shows_zero=True)
    notes = {
        State.CREATED: "The timer starts once your seats are confirmed.",
        State.SEATS_RESERVED: "The timer restarts once your change is confirmed.",
        State.CONFIRMED: "Your seats are booked.",
    }
    if state in PAYING_STATES:
        return Countdown(False, "The hold is paused while your payment is validated.", False)
    return Countdown(False, notes.get(State(state), "No seats are held."), False)


def payment_panel_for(order: Order, *, live: bool, waiting: OrderRequest | None) -> tuple[str, str]:
    """What the payment panel offers, and the sentence it says when it offers no form."""
    if live:
        return PaymentPanel.FORM, ""
    if order.state == State.CREATED and (waiting is None or waiting.kind != RequestKind.CANCEL):
        return PaymentPanel.CANCEL_ONLY, "You can pay once your seats are confirmed."
    if order.state in PAYING_STATES or (waiting is not None and waiting.kind == RequestKind.PAY):
        return PaymentPanel.NOTE, "Validating your code. You can leave this page open; it updates by itself."
    if order.state == State.CONFIRMED:
        return PaymentPanel.NOTE, "Paid."
    return PaymentPanel.NOTE, "Nothing to pay."


def order_page(*, order: Order) -> OrderPage:
    waiting = idempotency.open_request(order)
    last = idempotency.last_request(order) if waiting is None else waiting
    live = order.why_unchangeable() is None and waiting is None
    panel, note = payment_panel_for(order, live=live, waiting=waiting)
    ended_unsold = order.is_terminal and order.state != State.CONFIRMED
    booked = order.state == State.CONFIRMED
    fixed = {seat: price for seat in order.seats if (price := order.price_of(seat)) is not None}
    plan = seat_map(
        flight=order.flight, order_id=order.id if order.is_active or booked else None, fixed=fixed
    )
    return OrderPage(
        order=order,
        seat_map=plan,
        banner=banner_for(order, waiting, last),
        countdown=countdown_for(order, live=live),
        can_change_seats=live,
        payment_panel=panel,
        payment_note=note,
        polling=not order.is_terminal,
        expires_at=order.hold_expires_at,
        server_time=timezone.now(),
        seats_title="Seats you had chosen" if ended_unsold else "Your seats",
        offer_choose_again=ended_unsold,
        offer_book_another=booked,
        waiting=waiting,
        charges=charge_lines(charges_of(order)),
        hold_limit_at=order.hold_life_ends_at,
        booking_token=booking_token(order) if booked else None,
        seat_lines=seat_lines(order, plan),
    )


@dataclass(frozen=True)
class OrderOnFlight:
    """What a flight's seat map says of the order this session has on it."""

    order: Order
    note: str
    link_text: str


def order_on_flight(order: Order | None) -> OrderOnFlight | None:
    if order is None:
        return None
    seats = ", ".join(order.seats)
    if order.state == State.CREATED:
        return OrderOnFlight(
            order, f"We are still confirming {seats} for you on this flight.", "See your booking"
        )
    note = f"You are holding {seats} on this flight. Seats you pick here are added to that order."
    return OrderOnFlight(order, note, "Continue your booking")


def flight_map_version(*, plan: SeatMap, yours: OrderOnFlight | None) -> str:
    """What a flight's polled seat map shows: its seats, and the note on this session's order. A
    poll that sends it back unchanged gets 204, so the note is part of it: the seats of a
    cancelled order can be released before its row says so, and "You are holding 17C" must not
    outlive the hold behind "180 of 180 available"."""
    note = f"{yours.order.id}|{yours.note}|{yours.link_text}" if yours else "-"
    return f"{plan.fingerprint}.{hashlib.blake2s(note.encode(), digest_size=6).hexdigest()}"


def charges_of(order: Order) -> list[Charge]:
    """What the gateway charged for the order (and refunded), from its ledger. No query before the
    first payment attempt: nothing can have been charged."""
    return ledger.charges_of(order.id) if order.payment_attempts else []

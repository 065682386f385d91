"""The booking pages. Every view checks that the order belongs to this browser session; every
form works as a plain POST (redirect back) and, under HTMX, answers with the fragments it changed.

Every form carries its own idempotency key (``{% idempotency_field %}``), so a double click or a
browser's retry acts once; a click whose outcome Temporal has not confirmed yet shows the order
as "still confirming", never an error page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling

from common import events, inputs
from common.htmx import HtmxHttpRequest
from flights.inventory import seat_map
from flights.models import Flight
from orders import hoarding, idempotency, ownership, settling, validation, workflow_calls
from orders.idempotency import Result
from orders.models import Order, OrderRequest, RequestKind
from orders.presenters import flight_map_version, order_on_flight, order_page
from orders.streams import events_url
from orders.templatetags.booking_forms import FIELD as KEY_FIELD
from orders.workflow_contract import BookingStatus

PAGE = "orders/order_detail.html"
SEAT_MAP_PAGE = "orders/choose_seats.html"
BOOKING_PAGE = "orders/booking.html"
UNREACHABLE = (
    "The booking service cannot be reached right now, so nothing was changed. Please try again in a moment."
)
STALE_FORM = "This page was out of date, so nothing was changed. Please try again."


class FormRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _go(request: HtmxHttpRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _claim(request: HtmxHttpRequest, kind: RequestKind, order: Order | None = None) -> OrderRequest:
    """The OrderRequest for this form post, under the form's own key (see orders.idempotency)."""
    fields = {
        name: value for name, value in request.POST.items() if name not in ("csrfmiddlewaretoken", KEY_FIELD)
    }
    try:
        key = inputs.idempotency_key(request.POST.get(KEY_FIELD) or None)
        return idempotency.claim(
            session_key=ownership.session_key(request),
            key=key,
            fingerprint=idempotency.fingerprint("POST", request.path, fields),
            kind=kind,
            order=order,
        )
    except (inputs.InvalidInput, idempotency.KeyReused):
        raise FormRefused(STALE_FORM) from None
    except idempotency.KeyInUse as failure:
        raise FormRefused(
            failure.message.replace("A request with this Idempotency-Key", "Your click")
        ) from None


def _problem(result: Result) -> str | None:
    """What to tell the customer next to the form; None when the page itself shows the outcome
    (answered, or still being confirmed)."""
    if result.refusal is not None:
        return result.refusal.message
    if result.unavailable:
        return UNREACHABLE
    return None


def _answer(request: HtmxHttpRequest, order: Order, *, error: str | None, **context: object) -> HttpResponse:
    """Answer a form on the order's page: a plain post goes back to the page (the error, if any,
    as a message); under HTMX, the page's live part, rendered from the fresh row and its open
    request (a post answered "still confirming" shows so at once, its forms put away)."""
    order = ownership.reread(order)
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect("orders:detail", order_id=order.id)
    return render(request, f"{PAGE}#live", {"page": order_page(order=order), **context})


UNCHANGED = 204  # htmx swaps nothing: the seat map (and the keyboard focus in it) stays


@require_GET
def choose_seats(request: HtmxHttpRequest, flight_id: str) -> HttpResponse:
    """A flight's seat map, where a booking starts: full page, or the polled map under HTMX. A
    customer who already holds seats on it sees them as theirs, and the seats they click are
    added to that order."""
    flight = get_object_or_404(Flight, id=flight_id)
    context = _seat_map_context(flight, ownership.live_order_on(request, flight))
    if request.htmx and request.GET.get("v") == context["version"]:
        return HttpResponse(status=UNCHANGED)
    if request.htmx:
        return render(request, f"{SEAT_MAP_PAGE}#seat-map", context)
    # The whole page opens the flight's event stream: a push re-renders the map at once.
    stream = events_url(request, events.FLIGHT, flight.id) if context["plan"].bookable else ""
    return render(request, SEAT_MAP_PAGE, {**context, "events_url": stream})


def _seat_map_context(flight: Flight, order: Order | None) -> dict[str, Any]:
    """What a flight's seat map shows this session: the seats, and the note on its order there."""
    plan, yours = seat_map(flight=flight, order_id=order.id if order else None), order_on_flight(order)
    return {
        "flight": flight,
        "plan": plan,
        "yours": yours,
        "version": flight_map_version(plan=plan, yours=yours),
    }


@require_POST
def start(request: HtmxHttpRequest, flight_id: str) -> HttpResponse:
    """Click a seat on a flight's map: hold it, and go to the order's page. The seat joins the
    order this session already holds seats with on the flight, else a new order starts: one
    customer never ends up with two live orders on one flight by going back to its map."""
    flight = get_object_or_404(Flight, id=flight_id)
    order = ownership.live_order_on(request, flight)
    held = list(order.seats) if order else []
    seat = request.POST.get("seat", "").strip().upper()

    def hold(order_request: OrderRequest) -> Callable[[], BookingStatus]:
        def action() -> BookingStatus:
            validation.bookable(flight)
            seats = validation.seat_list(held if seat in held else [*held, seat], flight=flight)
            if order_request.kind == RequestKind.CREATE:  # a new order, or a retry of the click that made one
                return workflow_calls.create_order(
                    order_request=order_request,
                    flight=flight,
                    seats=seats,
                    client=hoarding.client_of(request),
                )
            assert order is not None  # a seat change is of an order this session holds
            if seats == held:
                return workflow_calls.status_of(order)
            return workflow_calls.change_seats(
                order=order, seats=seats, request=order_request, client=hoarding.client_of(request)
            )

        return action

    try:
        order_request = _claim(request, RequestKind.CREATE if order is None else RequestKind.SEATS, order)
        result = idempotency.carry_out(order_request, hold(order_request))
        if problem := _problem(result):
            raise FormRefused(problem)
    except FormRefused as refusal:
        if request.htmx:
            context = {
                **_seat_map_context(flight, order),
                "message": refusal.message,
                "message_row": flight.row_of(seat),
            }
            return render(request, f"{SEAT_MAP_PAGE}#seat-map", context)
        messages.error(request, refusal.message)
        return redirect("orders:choose-seats", flight_id=flight.id)
    target = result.order or order
    assert target is not None  # a create made one; a change had one
    return _go(request, reverse("orders:detail", args=[target.id]))


@require_GET
def detail(request: HtmxHttpRequest, order_id: str) -> HttpResponse:
    """The order's page; with ?poll, its live part when anything in it changed (204 when nothing
    did, 286 once the order is final)."""
    order = ownership.get_owned_order(request, order_id)
    page = order_page(order=order)
    settling.settle_soon(order, page.waiting)
    if not (request.htmx and "poll" in request.GET):
        # The whole page opens the order's event stream while the order can still change.
        stream = ""
        if page.polling:
            stream = events_url(request, events.ORDER, order.id, flight_id=order.flight_id)
        return render(request, PAGE, {"page": page, "events_url": stream})
    if page.polling and request.GET.get("v") == page.fingerprint:
        return HttpResponse(status=204)
    live = render_to_string(f"{PAGE}#live", {"page": page, "polled": True}, request=request)
    return HttpResponse(live) if page.polling else HttpResponseStopPolling(live)


@require_POST
def toggle_seat(request: HtmxHttpRequest, order_id: str) -> HttpResponse:
    """Click a seat on the order's map: add it, or drop it; every change resets the hold. Dropping
    the last seat abandons the order."""
    order = ownership.get_owned_order(request, order_id)
    selection = validation.toggled(order.seats, request.POST.get("seat", "").strip().upper())
    try:
        if not selection:
            result = idempotency.carry_out(
                _claim(request, RequestKind.CANCEL, order), lambda: workflow_calls.cancel_order(order=order)
            )
            if problem := _problem(result):
                raise FormRefused(problem)
            if result.pending:
                return _go(request, reverse("orders:detail", args=[order.id]))
            messages.info(
                request, "You dropped your last seat: the order was cancelled and the seat released."
            )
            return _go(request, reverse("orders:choose-seats", args=[order.flight_id]))
        order_request = _claim(request, RequestKind.SEATS, order)

        def change() -> BookingStatus:
            seats = validation.seat_list(selection, flight=order.flight)
            return workflow_calls.change_seats(
                order=order, seats=seats, request=order_request, client=hoarding.client_of(request)
            )

        message = _problem(idempotency.carry_out(order_request, change))
    except FormRefused as refusal:
        message = refusal.message
    seat_row = order.flight.row_of(request.POST.get("seat", "").strip().upper())
    return _answer(request, order, error=message, message=message, message_row=seat_row)


@require_POST
def pay(request: HtmxHttpRequest, order_id: str) -> HttpResponse:
    """Submit the 5-digit code; the workflow validates it in the background."""
    order = ownership.get_owned_order(request, order_id)
    code = request.POST.get("payment_code", "").strip()
    try:
        order_request = _claim(request, RequestKind.PAY, order)

        def submit() -> BookingStatus:
            checked = inputs.payment_code(code)
            return workflow_calls.submit_payment(order=order, payment_code=checked, request=order_request)

        error = _problem(idempotency.carry_out(order_request, submit))
    except FormRefused as refusal:
        error = refusal.message
    return _answer(request, order, error=error, payment_error=error, payment_code=code)


@require_POST
def cancel(request: HtmxHttpRequest, order_id: str) -> HttpResponse:
    """Let the seats go."""
    order = ownership.get_owned_order(request, order_id)
    try:
        result = idempotency.carry_out(
            _claim(request, RequestKind.CANCEL, order), lambda: workflow_calls.cancel_order(order=order)
        )
        if problem := _problem(result):
            raise FormRefused(problem)
    except FormRefused as refusal:  # a refusal from the workflow comes back as the result
        messages.error(request, refusal.message)
        return _go(request, reverse("orders:detail", args=[order.id]))
    if result.pending:
        return _go(request, reverse("orders:detail", args=[order.id]))
    messages.info(request, "Your order was cancelled and its seats released.")
    return _go(request, reverse("orders:choose-seats", args=[order.flight_id]))


@require_GET
def booking(request: HtmxHttpRequest, token: str) -> HttpResponse:
    """The read-only page a booking's private link opens, in any browser (404 for a wrong link)."""
    order = ownership.order_by_token(token)
    return render(request, BOOKING_PAGE, {"page": order_page(order=order)})

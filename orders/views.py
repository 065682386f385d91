"""The booking pages. Every view checks that the order belongs to this browser session; every
form works as a plain POST (redirect back) and, under HTMX, answers with the fragments it changed.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling

from flights.models import Flight
from flights.selectors import seat_map
from orders import ownership, services, validation
from orders.models import Order
from orders.selectors import order_page, toggled
from orders.services import BookingError

PAGE = "orders/order_detail.html"


def _go(request: HttpRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _answer(
    request: HttpRequest, order: Order, *, error: str | None, fragment: str, **context: object
) -> HttpResponse:
    """Answer a form on the order's page: a plain post goes back to the page (the error, if any,
    as a message); under HTMX, the fragment the action changed, rendered from the fresh row."""
    order.refresh_from_db()
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect("orders:detail", order_id=order.id)
    return render(request, f"{PAGE}#{fragment}", {"page": order_page(order=order), **context})


@require_POST
def start(request: HttpRequest, flight_id: str) -> HttpResponse:
    """Click a seat on a flight's map: hold it, and go to the order's page. The seat joins the
    order this session already holds seats with on the flight, else a new order starts: one
    customer never ends up with two live orders on one flight by going back to its map."""
    flight = get_object_or_404(Flight, id=flight_id)
    order = ownership.live_order_on(request, flight)
    held = list(order.seats) if order else []
    seat = request.POST.get("seat", "").strip().upper()
    try:
        validation.bookable(flight)
        seats = validation.seat_list(held if seat in held else [*held, seat], flight=flight)
        if order is None:
            order_id = services.start_order(flight_id=flight.id, seats=seats).order_id
            ownership.remember(request, order_id)
        else:
            if seats != held:
                services.change_seats(order=order, seats=seats)
            order_id = order.id
    except BookingError as failure:
        if request.htmx:
            plan = seat_map(flight=flight, order_id=order.id if order else None)
            context = {"flight": flight, "plan": plan, "order": order, "message": failure.message}
            return render(request, "flights/flight_detail.html#seat-map", context)
        messages.error(request, failure.message)
        return redirect("flights:detail", flight_id=flight.id)
    return _go(request, reverse("orders:detail", args=[order_id]))


@require_GET
def detail(request: HttpRequest, order_id: str) -> HttpResponse:
    """The order's page; with ?poll, the fragments that changed (286 once the order is final)."""
    page = order_page(order=ownership.get_owned_order(request, order_id))
    if not (request.htmx and "poll" in request.GET):
        return render(request, PAGE, {"page": page})
    if page.polling and request.GET.get("v") == page.fingerprint:
        return HttpResponse(status=204)
    live = render_to_string(f"{PAGE}#live", {"page": page, "oob": True}, request=request)
    return HttpResponse(live) if page.polling else HttpResponseStopPolling(live)


@require_POST
def toggle_seat(request: HttpRequest, order_id: str) -> HttpResponse:
    """Click a seat on the order's map: add it, or drop it; every change resets the hold."""
    order = ownership.get_owned_order(request, order_id)
    selection = toggled(order.seats, request.POST.get("seat", "").strip().upper())
    try:
        if not selection:
            services.cancel_order(order=order)
            messages.info(
                request, "You dropped your last seat: the order was cancelled and the seat released."
            )
            return _go(request, reverse("flights:detail", args=[order.flight_id]))
        services.change_seats(order=order, seats=validation.seat_list(selection, flight=order.flight))
        message = None
    except BookingError as failure:
        message = failure.message
    return _answer(request, order, error=message, fragment="seat-panel", message=message, oob_countdown=True)


@require_POST
def pay(request: HttpRequest, order_id: str) -> HttpResponse:
    """Submit the 5-digit code; the workflow validates it in the background."""
    order = ownership.get_owned_order(request, order_id)
    code = request.POST.get("payment_code", "").strip()
    error = None
    try:
        services.submit_payment(order=order, payment_code=validation.payment_code(code))
    except BookingError as failure:
        error = failure.message
    return _answer(
        request, order, error=error, fragment="after-payment", payment_error=error, payment_code=code
    )


@require_POST
def cancel(request: HttpRequest, order_id: str) -> HttpResponse:
    """Let the seats go."""
    order = ownership.get_owned_order(request, order_id)
    try:
        services.cancel_order(order=order)
        messages.info(request, "Your order was cancelled and its seats released.")
    except BookingError as failure:
        messages.error(request, failure.message)
        return _go(request, reverse("orders:detail", args=[order.id]))
    return _go(request, reverse("flights:detail", args=[order.flight_id]))

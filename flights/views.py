"""The flight list and a flight's seat map: full pages, or the polled fragment under HTMX."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from flights.models import Flight
from flights.selectors import availability, seat_map, upcoming_flights
from orders import ownership

UNCHANGED = 204  # htmx swaps nothing: the seat map (and the keyboard focus in it) stays


def flight_list(request: HttpRequest) -> HttpResponse:
    rows = availability(list(upcoming_flights()))
    template = "flights/flight_list.html#flight-rows" if request.htmx else "flights/flight_list.html"
    return render(request, template, {"rows": rows})


def flight_detail(request: HttpRequest, flight_id: str) -> HttpResponse:
    """A flight's seat map. A customer who already holds seats on it sees them as theirs, and the
    seats they click are added to that order."""
    flight = get_object_or_404(Flight, id=flight_id)
    order = ownership.live_order_on(request, flight)
    plan = seat_map(flight=flight, order_id=order.id if order else None)
    if request.htmx and request.GET.get("v") == plan.fingerprint:
        return HttpResponse(status=UNCHANGED)
    template = "flights/flight_detail.html#seat-map" if request.htmx else "flights/flight_detail.html"
    return render(request, template, {"flight": flight, "plan": plan, "order": order})

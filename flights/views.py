"""The flight list: the full page, or its polled rows under HTMX. (A flight's seat map, where a
booking starts, is the orders app's: ``orders.views.choose_seats``.)"""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render

from common.htmx import HtmxHttpRequest
from flights.inventory import availability
from flights.models import Flight


def flight_list(request: HtmxHttpRequest) -> HttpResponse:
    rows = availability(list(Flight.objects.upcoming().prefetch_related("cabins")))
    template = "flights/flight_list.html#flight-rows" if request.htmx else "flights/flight_list.html"
    return render(request, template, {"rows": rows})

"""The flights' JSON API (PRD section 10): the list with free seats, and one flight's seat map."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

from common.api import api_view, error, iso
from common.errors import ErrorCode
from flights.inventory import availability, seat_map
from flights.models import Flight


def flight_json(flight: Flight) -> dict[str, Any]:
    return {
        "id": flight.id,
        "flightNumber": flight.number,
        "origin": flight.origin,
        "destination": flight.destination,
        "departureTime": iso(flight.departure_time),
    }


@api_view("GET")
def flight_list(request: HttpRequest) -> JsonResponse:
    rows = availability(list(Flight.objects.upcoming()))
    return JsonResponse(
        {
            "flights": [
                {**flight_json(a.flight), "totalSeats": a.total, "availableSeats": a.available} for a in rows
            ]
        }
    )


@api_view("GET")
def flight_detail(request: HttpRequest, flight_id: str) -> JsonResponse:
    flight = Flight.objects.filter(id=flight_id).first()
    if flight is None:
        return error(ErrorCode.FLIGHT_NOT_FOUND, f"Flight {flight_id} not found", status=404)
    plan = seat_map(flight=flight)
    return JsonResponse(
        {
            **flight_json(flight),
            "totalSeats": flight.total_seats,
            "availableSeats": plan.available,
            "seatMap": {
                "rows": flight.rows,
                "seatsPerRow": flight.seats_per_row,
                "layout": flight.cabin_layout,
                "seats": [
                    {"id": s.code, "row": s.row, "column": s.column, "status": s.status.value}
                    for s in plan.seats
                ],
            },
        }
    )

"""The flights' JSON API (PRD section 10): the list with free seats, and one flight's seat map."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

from common.api import api_view, error, iso
from common.errors import ErrorCode
from common.money import Money
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
    rows = availability(list(Flight.objects.upcoming().prefetch_related("cabins")))
    return JsonResponse(
        {
            "flights": [
                {
                    **flight_json(a.flight),
                    "totalSeats": a.total,
                    "availableSeats": a.available,
                    "fromPrice": a.lowest_price.as_json(),
                }
                for a in rows
            ]
        }
    )


@api_view("GET")
def flight_detail(request: HttpRequest, flight_id: str) -> JsonResponse:
    flight = Flight.objects.filter(id=flight_id).prefetch_related("cabins").first()
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
                "cabins": [
                    {
                        "cabin": section.cabin.cabin_class,
                        "name": section.name,
                        "firstRow": section.cabin.first_row,
                        "lastRow": section.cabin.last_row,
                        "layout": section.cabin.layout,
                        "seatsPerRow": section.cabin.seats_across,
                        "price": section.price.as_json(),
                    }
                    for section in plan.cabins
                ],
                "exitRows": sorted(flight.exit_rows),
                "exitRowExtra": Money(flight.exit_row_extra, flight.currency).as_json(),
                "seats": [
                    {
                        "id": s.code,
                        "row": s.row,
                        "column": s.column,
                        "status": s.status.value,
                        "cabin": s.cabin,
                        "exitRow": s.exit_row,
                        "price": s.price.as_json() if s.price else None,
                    }
                    for s in plan.seats
                ],
            },
        }
    )

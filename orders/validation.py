"""Checks on what a customer asks for, shared by the JSON API and the pages: the values come
from ``common.inputs``; these are the rules of the booking (the flight exists and has not
left, the seats are on it)."""

from __future__ import annotations

from django.conf import settings

from common import inputs
from common.errors import ErrorCode, Refused
from common.formats import CHOOSE_A_SEAT, duplicates_in, listed_twice, seats_named
from flights.inventory import not_on_flight
from flights.models import Flight


def bookable(flight: Flight) -> None:
    """A flight that has departed takes no new order."""
    if flight.has_departed:
        raise Refused(ErrorCode.FLIGHT_DEPARTED, f"Flight {flight.number} has already departed")


def seat_list(value: object, *, flight: Flight) -> list[str]:
    """A non-empty list of distinct seat codes of this flight, normalised to upper case."""
    if not isinstance(value, list):
        raise Refused(
            ErrorCode.VALIDATION_ERROR, '"seats" must be a list of seat codes such as ["12A", "12B"]'
        )
    seats = [inputs.seat_text(item) for item in value]
    if not seats:
        raise Refused(ErrorCode.VALIDATION_ERROR, CHOOSE_A_SEAT)
    if len(seats) > settings.MAX_SEATS_PER_ORDER:
        raise Refused(ErrorCode.VALIDATION_ERROR, f"At most {settings.MAX_SEATS_PER_ORDER} seats per order")
    if duplicates := duplicates_in(seats):
        raise Refused(ErrorCode.VALIDATION_ERROR, listed_twice(duplicates))
    malformed = [seat for seat in seats if not inputs.is_seat_code(seat)]
    unknown = malformed or not_on_flight(flight=flight, seats=seats)
    if unknown:
        raise Refused(
            ErrorCode.UNKNOWN_SEATS,
            f"{seats_named(unknown)} not on flight {flight.number}",
            seats=unknown,
        )
    return seats


def new_order(body: dict[str, object]) -> tuple[Flight, list[str]]:
    """The flight and seats of a new order, as the API's body names them."""
    flight_id = inputs.flight_id(body.get("flightId"))
    flight = Flight.objects.filter(id=flight_id).first()
    if flight is None:
        raise Refused(ErrorCode.FLIGHT_NOT_FOUND, f"Flight {flight_id} not found")
    bookable(flight)
    if "seats" not in body:
        raise Refused(ErrorCode.VALIDATION_ERROR, '"seats" is required')
    return flight, seat_list(body["seats"], flight=flight)


def toggled(seats: list[str], seat: str) -> list[str]:
    """The selection after clicking ``seat``: added if it was not chosen, dropped if it was."""
    return [s for s in seats if s != seat] if seat in seats else [*seats, seat]

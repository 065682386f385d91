"""Checks on what a customer sends, shared by the JSON API and the pages."""

from __future__ import annotations

import re

from django.conf import settings

from flights.models import Flight
from flights.selectors import seat_codes
from orders.services import BookingError
from payments.gateway import is_valid_code

SEAT_CODE = re.compile(r"[1-9][0-9]{0,2}[A-Z]")


def bookable(flight: Flight) -> None:
    """A flight that has departed takes no new order."""
    if flight.has_departed:
        raise BookingError(400, "FLIGHT_DEPARTED", f"Flight {flight.number} has already departed")


def seat_list(value: object, *, flight: Flight) -> list[str]:
    """A non-empty list of distinct seat codes of this flight, normalised to upper case."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BookingError(
            400, "VALIDATION_ERROR", '"seats" must be a list of seat codes such as ["12A", "12B"]'
        )
    seats = [item.strip().upper() for item in value]
    if not seats:
        raise BookingError(400, "VALIDATION_ERROR", "Choose at least one seat")
    if len(seats) > settings.MAX_SEATS_PER_ORDER:
        raise BookingError(400, "VALIDATION_ERROR", f"At most {settings.MAX_SEATS_PER_ORDER} seats per order")
    if duplicates := sorted({seat for seat in seats if seats.count(seat) > 1}):
        raise BookingError(400, "VALIDATION_ERROR", f"Seat {', '.join(duplicates)} is listed more than once")
    malformed = [seat for seat in seats if not SEAT_CODE.fullmatch(seat)]
    unknown = malformed or [seat for seat in seats if seat not in seat_codes(flight=flight)]
    if unknown:
        noun = "Seat" if len(unknown) == 1 else "Seats"
        raise BookingError(
            400,
            "UNKNOWN_SEATS",
            f"{noun} {', '.join(unknown)} not on flight {flight.number}",
            seats=unknown,
        )
    return seats


def payment_code(value: object) -> str:
    if not is_valid_code(value):
        raise BookingError(
            400, "INVALID_PAYMENT_CODE", "The payment code must be exactly 5 digits, such as 12345"
        )
    assert isinstance(value, str)
    return value

"""Reads about flights and seats. The one place that decides a seat's status:
booked (PostgreSQL) > held (Redis) > available."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum

import redis
from django.db.models import QuerySet
from django.utils import timezone

from flights.models import Flight, Seat
from orders import holds
from orders.models import BookedSeat


class SeatStatus(StrEnum):
    AVAILABLE = "available"
    RESERVED = "reserved"  # held by another order (the PRD's word)
    SELECTED = "selected"  # held by the order being viewed
    BOOKED = "booked"


@dataclass(frozen=True)
class SeatView:
    code: str
    row: int
    column: str
    position: int
    status: SeatStatus

    @property
    def taken(self) -> bool:
        return self.status in (SeatStatus.BOOKED, SeatStatus.RESERVED)

    @property
    def label(self) -> str:
        words = {
            SeatStatus.AVAILABLE: "available",
            SeatStatus.RESERVED: "held by another customer",
            SeatStatus.SELECTED: "selected",
            SeatStatus.BOOKED: "booked",
        }
        return f"Seat {self.code}, {words[self.status]}"


@dataclass(frozen=True)
class SeatMap:
    flight: Flight
    rows: list[list[SeatView | None]]  # each row left to right, None where an aisle runs
    seats: list[SeatView]
    holds_known: bool  # False while Redis cannot be read: held seats may show as available

    @property
    def bookable(self) -> bool:
        return not self.flight.has_departed

    @property
    def available(self) -> int:
        return sum(seat.status is SeatStatus.AVAILABLE for seat in self.seats)

    @property
    def fingerprint(self) -> str:
        """Changes whenever any seat's status does: a poll that sends it back unchanged gets 204."""
        statuses = "".join(seat.status.value[0] for seat in self.seats)
        return hashlib.blake2s(f"{statuses}{self.holds_known}".encode(), digest_size=8).hexdigest()

    @property
    def column_headers(self) -> list[str]:
        return [" " if letter == "-" else letter for letter in self.flight.cabin_layout]

    def status_of(self, code: str) -> SeatStatus | None:
        return next((seat.status for seat in self.seats if seat.code == code), None)


def upcoming_flights() -> QuerySet[Flight]:
    """The flights that can still be booked, soonest first."""
    return Flight.objects.filter(departure_time__gt=timezone.now()).order_by("departure_time", "number")


def _holders(flight: Flight, codes: list[str]) -> tuple[dict[str, str], bool]:
    try:
        return holds.holders(flight_id=flight.id, seats=codes), True
    except redis.RedisError:
        return {}, False


def seat_map(*, flight: Flight, order_id: str | None = None) -> SeatMap:
    seats = list(
        Seat.objects.filter(flight=flight)
        .order_by("row", "position")
        .values_list("code", "row", "column", "position")
    )
    booked = set(BookedSeat.objects.filter(flight=flight).values_list("seat__code", flat=True))
    holders, holds_known = _holders(flight, [code for code, *_ in seats])
    views = []
    for code, row, column, position in seats:
        if code in booked:
            status = SeatStatus.BOOKED
        elif code in holders:
            status = SeatStatus.SELECTED if order_id and holders[code] == order_id else SeatStatus.RESERVED
        else:
            status = SeatStatus.AVAILABLE
        views.append(SeatView(code, row, column, position, status))
    width = len(flight.cabin_layout)
    grid: list[list[SeatView | None]] = [[None] * width for _ in range(flight.rows)]
    for view in views:
        grid[view.row - 1][view.position] = view
    return SeatMap(flight=flight, rows=grid, seats=views, holds_known=holds_known)


@dataclass(frozen=True)
class FlightAvailability:
    flight: Flight
    total: int
    available: int


def availability(flight_list: list[Flight]) -> list[FlightAvailability]:
    """Seats free on each flight: neither booked (one query for all flights) nor held (one
    MGET per flight)."""
    booked: dict[str, set[str]] = defaultdict(set)
    rows = BookedSeat.objects.filter(flight__in=flight_list).values_list("flight_id", "seat__code")
    for flight_id, code in rows:
        booked[flight_id].add(code)
    result = []
    for flight in flight_list:
        codes = [f"{row}{column}" for row in range(1, flight.rows + 1) for column in flight.columns]
        held, _ = _holders(flight, codes)
        taken = booked[flight.id] | set(held)
        result.append(FlightAvailability(flight, flight.total_seats, flight.total_seats - len(taken)))
    return result


def seat_codes(*, flight: Flight) -> set[str]:
    return set(Seat.objects.filter(flight=flight).values_list("code", flat=True))

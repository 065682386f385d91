"""The seat inventory: which seats are sold, held or free, and the only writes that change that.

Sold seats live in PostgreSQL (``BookedSeat``, whose unique (flight, seat) constraint makes a
double sale impossible); held seats in Redis (``flights.holds``). A seat's status is decided in
one place, ``seat_map``: booked (PostgreSQL) > held (Redis) > available. Both the flights pages
and the orders (through the workflow's activities) use this module, and nothing else touches
``BookedSeat`` or the holds.

Every write is idempotent: the activities that call them run at least once.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

import redis
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef

from common import events
from common.money import Money
from flights import holds
from flights.models import BookedSeat, Cabin, CabinClass, Flight, Seat


class SeatStatus(StrEnum):
    AVAILABLE = "available"
    RESERVED = "reserved"  # held by another order (the PRD's word)
    SELECTED = "selected"  # held by the order being viewed
    BOOKED = "booked"
    MINE = "mine"  # booked by the order being viewed


@dataclass(frozen=True)
class SeatView:
    code: str
    row: int
    column: str
    position: int
    status: SeatStatus
    cabin: str = CabinClass.ECONOMY.value  # its CabinClass
    price: Money | None = None  # what it costs now (or what the viewed order holds it at)
    exit_row: bool = False

    @property
    def taken(self) -> bool:
        return self.status in (SeatStatus.BOOKED, SeatStatus.RESERVED, SeatStatus.MINE)

    @property
    def label(self) -> str:
        words = {
            SeatStatus.AVAILABLE: "available",
            SeatStatus.RESERVED: "held by another customer",
            SeatStatus.SELECTED: "selected",
            SeatStatus.BOOKED: "booked",
            SeatStatus.MINE: "booked for you",
        }
        # The status first, as before cabins and prices: what a seat is now matters most.
        parts = [f"Seat {self.code}", words[self.status], CabinClass(self.cabin).label]
        if self.exit_row:
            parts.append("exit row")
        if self.price is not None:
            parts.append(self.price.format())
        return ", ".join(parts)


@dataclass(frozen=True)
class Cell:
    """One place across a cabin's row: a seat, an aisle, or a place with no seat in this cabin."""

    kind: str  # seat | aisle | gap
    seat: SeatView | None = None
    letter: str = ""  # over a seat's column, in a cabin's header


@dataclass(frozen=True)
class CabinRow:
    number: int
    cells: list[Cell]
    exit_row: bool


@dataclass(frozen=True)
class CabinSection:
    """One cabin as the map draws it: its name, its price from, its letters and its rows."""

    cabin: Cabin
    price: Money  # its seats' price outside the exit rows
    headers: list[Cell]  # the column letters over its seats
    letters: list[str]
    rows: list[CabinRow]

    @property
    def name(self) -> str:
        return self.cabin.name

    @property
    def css(self) -> str:
        return self.cabin.cabin_class.replace("_", "-")

    @property
    def title(self) -> str:
        """For example "Business · rows 3 to 9 · 2-2-2 · $3,200.00"."""
        rows = self.cabin.first_row, self.cabin.last_row
        span = f"row {rows[0]}" if rows[0] == rows[1] else f"rows {rows[0]}\N{EN DASH}{rows[1]}"
        return f"{self.name} · {span} · {self.cabin.arrangement} · {self.price.format()}"


@dataclass(frozen=True)
class SeatMap:
    flight: Flight
    rows: list[list[SeatView | None]]  # each row left to right, None where an aisle runs
    seats: list[SeatView]
    holds_known: bool  # False while Redis cannot be read: held seats may show as available
    cabins: list[CabinSection] = dataclasses.field(default_factory=list)

    @property
    def exit_row_extra(self) -> Money | None:
        if not self.flight.exit_rows or not self.flight.exit_row_extra:
            return None
        return Money(self.flight.exit_row_extra, self.flight.currency)

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
        # An operator's new price shows at the next poll.
        prices = ",".join(str(section.price.amount) for section in self.cabins)
        extra = self.exit_row_extra
        key = f"{statuses}{self.holds_known}{prices}{extra}"
        return hashlib.blake2s(key.encode(), digest_size=8).hexdigest()

    @property
    def has_mine(self) -> bool:
        return any(seat.status is SeatStatus.MINE for seat in self.seats)

    @property
    def seats_across(self) -> int:
        return self.flight.seats_per_row

    @property
    def aisles(self) -> int:
        """How many aisles a row crosses (with ``seats_across``, what the page scales the seats by,
        so that a whole row fits a phone)."""
        return self.flight.cabin_layout.count("-")

    @property
    def column_headers(self) -> list[str]:
        return [" " if letter == "-" else letter for letter in self.flight.cabin_layout]

    def status_of(self, code: str) -> SeatStatus | None:
        return next((seat.status for seat in self.seats if seat.code == code), None)


def _holders(flight: Flight, codes: list[str]) -> tuple[dict[str, str], bool]:
    try:
        return holds.holders(flight_id=flight.id, seats=codes), True
    except redis.RedisError:
        return {}, False


def seat_map(
    *, flight: Flight, order_id: str | None = None, fixed: dict[str, Money] | None = None
) -> SeatMap:
    """Every seat of the flight with its status, cabin and price, by cabin. ``fixed``: the prices
    the viewed order holds its seats at (fixed when they were held), shown on its own seats."""
    seats = list(
        Seat.objects.filter(flight=flight)
        .order_by("row", "position")
        .values_list("code", "row", "column", "position")
    )
    booked = dict(BookedSeat.objects.filter(flight=flight).values_list("seat__code", "order_id"))
    holders, holds_known = _holders(flight, [code for code, *_ in seats])
    fixed = fixed or {}
    views = []
    for code, row, column, position in seats:
        if code in booked:
            status = SeatStatus.MINE if order_id and booked[code] == order_id else SeatStatus.BOOKED
        elif code in holders:
            status = SeatStatus.SELECTED if order_id and holders[code] == order_id else SeatStatus.RESERVED
        else:
            status = SeatStatus.AVAILABLE
        cabin = flight.cabin_of_row(row)
        price = flight.seat_price(cabin=cabin, row=row) if cabin else None
        if status in (SeatStatus.SELECTED, SeatStatus.MINE) and code in fixed:
            price = fixed[code]
        cabin_class = cabin.cabin_class if cabin else CabinClass.ECONOMY.value
        views.append(
            SeatView(code, row, column, position, status, cabin_class, price, row in flight.exit_rows)
        )
    width = len(flight.cabin_layout)
    grid: list[list[SeatView | None]] = [[None] * width for _ in range(flight.rows)]
    for view in views:
        grid[view.row - 1][view.position] = view
    sections = [_section(flight, cabin, grid) for cabin in flight.cabin_list]
    return SeatMap(flight=flight, rows=grid, seats=views, holds_known=holds_known, cabins=sections)


def _section(flight: Flight, cabin: Cabin, grid: list[list[SeatView | None]]) -> CabinSection:
    def place(letter: str) -> str:
        if letter == "-":
            return "aisle"
        return "seat" if letter in cabin.columns else "gap"

    kinds = [place(letter) for letter in flight.cabin_layout]
    rows = []
    for number in range(cabin.first_row, min(cabin.last_row, flight.rows) + 1):
        cells = [
            Cell("seat", seat)
            if kind == "seat" and (seat := grid[number - 1][index])
            else Cell("aisle" if kind == "aisle" else "gap")
            for index, kind in enumerate(kinds)
        ]
        rows.append(CabinRow(number, cells, number in flight.exit_rows))
    headers = [
        Cell(kind, letter=letter if kind == "seat" else "")
        for kind, letter in zip(kinds, flight.cabin_layout, strict=True)
    ]
    return CabinSection(cabin, Money(cabin.price, flight.currency), headers, cabin.columns, rows)


@dataclass(frozen=True)
class FlightAvailability:
    flight: Flight
    total: int
    booked: int
    held: int  # by an order, and not booked

    @property
    def lowest_price(self) -> Money:
        """What its cheapest seat costs ("from $199.00")."""
        return self.flight.lowest_price

    @property
    def available(self) -> int:
        return self.total - self.booked - self.held


def availability(flight_list: list[Flight]) -> list[FlightAvailability]:
    """How many seats of each flight are booked, held and free: one query for the sold seats of
    all the flights, one MGET per flight for the holds."""
    booked: dict[str, set[str]] = defaultdict(set)
    rows = BookedSeat.objects.filter(flight__in=flight_list).values_list("flight_id", "seat__code")
    for flight_id, code in rows:
        booked[flight_id].add(code)
    result = []
    for flight in flight_list:
        codes = [
            f"{row}{column}"
            for cabin in flight.cabin_list
            for row in range(cabin.first_row, cabin.last_row + 1)
            for column in cabin.columns
        ]
        held, _ = _holders(flight, codes)
        held_only = set(held) - booked[flight.id]
        result.append(FlightAvailability(flight, flight.total_seats, len(booked[flight.id]), len(held_only)))
    return result


def prices_now(*, flight: Flight, seats: list[str]) -> dict[str, Money]:
    """What each of ``seats`` costs now (its cabin's price, plus the exit-row extra); seats that are
    not on the flight are left out. One query."""
    rows = dict(Seat.objects.filter(flight=flight, code__in=seats).values_list("code", "row"))
    prices = {}
    for code, row in rows.items():
        cabin = flight.cabin_of_row(row)
        if cabin is not None:
            prices[code] = flight.seat_price(cabin=cabin, row=row)
    return prices


def not_on_flight(*, flight: Flight, seats: list[str]) -> list[str]:
    """Those of ``seats`` that are not seats of the flight, in the order given (one query)."""
    found = set(Seat.objects.filter(flight=flight, code__in=seats).values_list("code", flat=True))
    return [seat for seat in seats if seat not in found]


# --- Writes -------------------------------------------------------------------------------


class UnknownSeats(Exception):
    """Seats that are not on the flight."""

    def __init__(self, seats: list[str]) -> None:
        super().__init__(f"{'Seat' if len(seats) == 1 else 'Seats'} {', '.join(seats)} not on this flight")
        self.seats = seats


class SeatsAlreadySold(Exception):
    """The (flight, seat) constraint refused a sale: another order bought a seat first."""

    def __init__(self, seats: list[str]) -> None:
        super().__init__(f"{', '.join(seats)} already booked")
        self.seats = seats


def hold(*, flight_id: str, order_id: str, seats: list[str], ttl_ms: int, release: list[str]) -> list[str]:
    """Hold every one of ``seats`` for the order, or none of them, and let ``release`` go.

    Returns the seats another order holds or has bought (nothing changed then). Seats the order
    holds already count as free and get the new TTL. Raises UnknownSeats for a seat that is not
    on the flight.
    """
    # One query: each asked-for seat of the flight, and whether another order has bought it.
    sold_to_another = BookedSeat.objects.filter(seat=OuterRef("pk")).exclude(order_id=order_id)
    on_flight = dict(
        Seat.objects.filter(flight_id=flight_id, code__in=seats)
        .annotate(sold=Exists(sold_to_another))
        .values_list("code", "sold")
    )
    if unknown := [seat for seat in seats if seat not in on_flight]:
        raise UnknownSeats(unknown)
    if sold := [seat for seat in seats if on_flight[seat]]:
        return sold
    if taken := holds.acquire(flight_id=flight_id, seats=seats, order_id=order_id, ttl_ms=ttl_ms):
        return taken
    holds.release(flight_id=flight_id, seats=release, order_id=order_id)
    events.flight_changed(flight_id, seats=[*seats, *release])
    return []


def holders(*, flight_id: str, seats: list[str]) -> dict[str, str]:
    """Which order holds each of ``seats`` in Redis (seats nobody holds are left out)."""
    return holds.holders(flight_id=flight_id, seats=seats)


def every_hold() -> Iterator[tuple[str, str, str]]:
    """Every seat held in Redis, as (flight id, seat, order id) (for the reconciliation)."""
    return holds.every_hold()


def release(*, flight_id: str, order_id: str, seats: list[str]) -> int:
    """Let go of the seats the order still holds; never another order's hold."""
    released = holds.release(flight_id=flight_id, seats=seats, order_id=order_id)
    if released:
        events.flight_changed(flight_id, seats=seats)
    return released


def sell(*, flight_id: str, order_id: str, seats: list[str]) -> None:
    """Sell the seats to the order. Call it inside the transaction that confirms the order: the
    (flight, seat) constraint decides, and SeatsAlreadySold names the seats sold before."""
    rows = Seat.objects.filter(flight_id=flight_id, code__in=seats)
    try:
        # A savepoint of its own: a refused insert aborts only it, so the caller's transaction
        # can still ask which seats were sold (PostgreSQL refuses every statement of a
        # transaction after an error until it rolls back, and Django every query).
        with transaction.atomic():
            BookedSeat.objects.bulk_create(
                [BookedSeat(flight_id=flight_id, seat=seat, order_id=order_id) for seat in rows]
            )
            events.flight_changed(flight_id, seats=seats)
    except IntegrityError:
        sold = BookedSeat.objects.filter(flight_id=flight_id, seat__code__in=seats)
        raise SeatsAlreadySold(sorted(sold.values_list("seat__code", flat=True))) from None

"""Changes to flights: the demo schedule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.db import transaction
from django.utils import timezone

from flights.models import Cabin, CabinClass, Flight, Seat


@dataclass(frozen=True)
class CabinPlan:
    cabin_class: CabinClass
    first_row: int
    last_row: int
    layout: str  # the places of the flight's layout that have a seat in this cabin
    price: int  # minor units of the flight's currency


@dataclass(frozen=True)
class FlightPlan:
    id: str
    number: str
    origin: str
    destination: str
    days_ahead: int
    departs: time
    aircraft: str
    cabin_layout: str
    cabins: tuple[CabinPlan, ...]
    currency: str = "USD"
    exit_rows: tuple[int, ...] = ()
    exit_row_extra: int = 0

    @property
    def rows(self) -> int:
        return max(cabin.last_row for cabin in self.cabins)


FIRST, BUSINESS = CabinClass.FIRST, CabinClass.BUSINESS
PREMIUM, ECONOMY = CabinClass.PREMIUM_ECONOMY, CabinClass.ECONOMY

# Layouts as the airlines fly these types (seat counts rounded to whole rows): a premium cabin
# drops seats from the economy row (``AC-DF`` is 2-2 in a 3-3 fuselage). Prices in cents.
DEMO_FLIGHTS = [
    FlightPlan(
        "fl-101",
        "FL101",
        "NYC",
        "LAX",
        1,
        time(10, 0),
        "Airbus A320",
        "ABC-DEF",
        (CabinPlan(PREMIUM, 1, 5, "ABC-DEF", 32900), CabinPlan(ECONOMY, 6, 20, "ABC-DEF", 19900)),
        exit_rows=(10, 11),
        exit_row_extra=3500,
    ),
    FlightPlan(
        "fl-202",
        "FL202",
        "LAX",
        "SFO",
        1,
        time(14, 30),
        "Embraer E175",
        "AB-CD",
        (CabinPlan(PREMIUM, 1, 4, "AB-CD", 14900), CabinPlan(ECONOMY, 5, 19, "AB-CD", 8900)),
        exit_rows=(10,),
        exit_row_extra=2000,
    ),
    FlightPlan(
        "fl-303",
        "FL303",
        "SFO",
        "SEA",
        2,
        time(8, 15),
        "Airbus A220-300",
        "AB-CDE",
        (
            CabinPlan(FIRST, 1, 3, "AB-DE", 39900),
            CabinPlan(PREMIUM, 4, 7, "AB-CDE", 21900),
            CabinPlan(ECONOMY, 8, 27, "AB-CDE", 12900),
        ),
        exit_rows=(10,),
        exit_row_extra=2500,
    ),
    FlightPlan(
        "fl-404",
        "FL404",
        "BOS",
        "ORD",
        2,
        time(17, 45),
        "Boeing 737-800",
        "ABC-DEF",
        (
            CabinPlan(FIRST, 1, 4, "AC-DF", 45900),
            CabinPlan(PREMIUM, 5, 9, "ABC-DEF", 22900),
            CabinPlan(ECONOMY, 10, 30, "ABC-DEF", 14900),
        ),
        exit_rows=(14, 15),
        exit_row_extra=3000,
    ),
    FlightPlan(
        "fl-505",
        "FL505",
        "JFK",
        "LHR",
        3,
        time(19, 0),
        "Boeing 777-300ER",
        "ABC-DEFG-HJK",
        (
            CabinPlan(FIRST, 1, 2, "A-EF-K", 650000),
            CabinPlan(BUSINESS, 3, 9, "AC-EF-HK", 320000),
            CabinPlan(PREMIUM, 10, 13, "AC-DEFG-HK", 140000),
            CabinPlan(ECONOMY, 14, 40, "ABC-DEFG-HJK", 69900),
        ),
        exit_rows=(14, 30),
        exit_row_extra=9000,
    ),
    FlightPlan(
        "fl-606",
        "FL606",
        "MIA",
        "MAD",
        4,
        time(21, 20),
        "Airbus A330-300",
        "AB-DEFG-JK",
        (
            CabinPlan(BUSINESS, 1, 7, "A-EF-K", 280000),
            CabinPlan(PREMIUM, 8, 11, "AB-DEFG-JK", 110000),
            CabinPlan(ECONOMY, 12, 36, "AB-DEFG-JK", 54900),
        ),
        currency="EUR",
        exit_rows=(12, 27),
        exit_row_extra=7500,
    ),
]


def seats_for(flight: Flight) -> list[Seat]:
    """The seats of the flight's cabins: each letter of a cabin's layout at its place in the
    flight's (so that ``C`` is over ``C`` from the first row to the last)."""
    return [
        Seat(
            flight=flight,
            code=f"{row}{letter}",
            row=row,
            column=letter,
            position=flight.cabin_layout.index(letter),
            cabin_class=cabin.cabin_class,
        )
        for cabin in flight.cabin_list
        for row in range(cabin.first_row, cabin.last_row + 1)
        for letter in cabin.columns
    ]


def _shape(cabins: list[Cabin] | tuple[CabinPlan, ...]) -> set[tuple[str, int, int, str]]:
    return {(str(c.cabin_class), c.first_row, c.last_row, c.layout) for c in cabins}


def _rebuild(flight: Flight, plan: FlightPlan) -> None:
    """Give a demo flight that was never ordered on the plan's cabins, prices and seats (a database
    seeded before cabins existed); one with orders keeps its seats, which bookings point at."""
    Seat.objects.filter(flight=flight).delete()
    Cabin.objects.filter(flight=flight).delete()
    for field in ("aircraft", "cabin_layout", "rows", "currency", "exit_row_extra"):
        setattr(flight, field, getattr(plan, field))
    flight.exit_rows = list(plan.exit_rows)
    flight.save()
    _add_cabins(flight, plan)


def _one_cabin(flight: Flight, plan: FlightPlan) -> None:
    """A flight seeded before cabins, with orders: its seats stay as they are (bookings point at
    them), in one economy cabin at the plan's economy price."""
    economy = next(cabin for cabin in plan.cabins if cabin.cabin_class == CabinClass.ECONOMY)
    Cabin.objects.create(
        flight=flight,
        cabin_class=CabinClass.ECONOMY,
        first_row=1,
        last_row=flight.rows,
        layout=flight.cabin_layout,
        price=economy.price,
    )
    flight.currency = plan.currency
    flight.save(update_fields=["currency"])
    flight.__dict__.pop("cabin_list", None)


def _add_cabins(flight: Flight, plan: FlightPlan) -> None:
    Cabin.objects.bulk_create(
        [
            Cabin(
                flight=flight,
                cabin_class=c.cabin_class,
                first_row=c.first_row,
                last_row=c.last_row,
                layout=c.layout,
                price=c.price,
            )
            for c in plan.cabins
        ]
    )
    flight.__dict__.pop("cabin_list", None)  # read again, with the cabins just made


@transaction.atomic
def seed_demo_flights(*, today: datetime | None = None) -> tuple[int, int]:
    """Create or refresh the demo flights so that each departs in the future.

    Idempotent: running it again moves past departures forward and adds no duplicate seat; the
    prices operators set (in the admin) stay. A flight whose cabins differ from the plan gets the
    plan's if nobody ever ordered on it, and otherwise keeps its seats (bookings may point at
    them), in one economy cabin if it had none. Returns (flights created, seats created).
    """
    base = (today or timezone.now()).astimezone(timezone.get_current_timezone())
    flights_created = seats_created = 0
    for plan in DEMO_FLIGHTS:
        departure = datetime.combine(
            base.date() + timedelta(days=plan.days_ahead), plan.departs, tzinfo=base.tzinfo
        )
        flight, created = Flight.objects.get_or_create(
            id=plan.id,
            defaults=dict(
                number=plan.number,
                origin=plan.origin,
                destination=plan.destination,
                departure_time=departure,
                aircraft=plan.aircraft,
                rows=plan.rows,
                cabin_layout=plan.cabin_layout,
                currency=plan.currency,
                exit_rows=list(plan.exit_rows),
                exit_row_extra=plan.exit_row_extra,
            ),
        )
        flights_created += created
        if created:
            _add_cabins(flight, plan)
        elif _shape(cabins := list(flight.cabins.all())) != _shape(plan.cabins):
            if not flight.orders.exists():
                _rebuild(flight, plan)
            elif not cabins:
                _one_cabin(flight, plan)
        if not created and flight.departure_time <= base:
            flight.departure_time = departure
            flight.save(update_fields=["departure_time"])
        existing = set(Seat.objects.filter(flight=flight).values_list("code", flat=True))
        missing = [seat for seat in seats_for(flight) if seat.code not in existing]
        Seat.objects.bulk_create(missing)
        seats_created += len(missing)
    return flights_created, seats_created

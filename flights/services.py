"""Changes to flights: the demo schedule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.db import transaction
from django.utils import timezone

from flights.models import Flight, Seat


@dataclass(frozen=True)
class FlightPlan:
    id: str
    number: str
    origin: str
    destination: str
    days_ahead: int
    departs: time
    aircraft: str
    rows: int
    cabin_layout: str


DEMO_FLIGHTS = [
    FlightPlan("fl-101", "FL101", "NYC", "LAX", 1, time(10, 0), "Airbus A320", 20, "ABC-DEF"),
    FlightPlan("fl-202", "FL202", "LAX", "SFO", 1, time(14, 30), "Embraer E175", 19, "AB-CD"),
    FlightPlan("fl-303", "FL303", "SFO", "SEA", 2, time(8, 15), "Airbus A220-300", 27, "AB-CDE"),
    FlightPlan("fl-404", "FL404", "BOS", "ORD", 2, time(17, 45), "Boeing 737-800", 30, "ABC-DEF"),
    FlightPlan("fl-505", "FL505", "JFK", "LHR", 3, time(19, 0), "Boeing 777-300ER", 33, "ABC-DEFG-HJK"),
    FlightPlan("fl-606", "FL606", "MIA", "MAD", 4, time(21, 20), "Airbus A330-300", 36, "AB-DEFG-JK"),
]


def seats_for(flight: Flight) -> list[Seat]:
    return [
        Seat(flight=flight, code=f"{row}{letter}", row=row, column=letter, position=position)
        for row in range(1, flight.rows + 1)
        for position, letter in enumerate(flight.cabin_layout)
        if letter != "-"
    ]


@transaction.atomic
def seed_demo_flights(*, today: datetime | None = None) -> tuple[int, int]:
    """Create or refresh the demo flights so that each departs in the future.

    Idempotent: running it again moves past departures forward and adds no duplicate seat.
    A flight whose layout changed keeps its seats (bookings may point at them). Returns
    (flights created, seats created).
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
            ),
        )
        flights_created += created
        if not created and flight.departure_time <= base:
            flight.departure_time = departure
            flight.save(update_fields=["departure_time"])
        existing = set(Seat.objects.filter(flight=flight).values_list("code", flat=True))
        missing = [seat for seat in seats_for(flight) if seat.code not in existing]
        Seat.objects.bulk_create(missing)
        seats_created += len(missing)
    return flights_created, seats_created

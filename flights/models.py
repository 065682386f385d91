from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from common.formats import FLIGHT_ID


class FlightQuerySet(models.QuerySet["Flight"]):
    def upcoming(self) -> FlightQuerySet:
        """The flights that can still be booked, soonest first."""
        return self.filter(departure_time__gt=timezone.now()).order_by("departure_time", "number")


class Flight(models.Model):
    """A scheduled flight and the shape of its cabin.

    ``cabin_layout`` spells one row from the left window to the right, with ``-`` for an aisle:
    ``ABC-DEF`` is a narrow-body, ``ABC-DEFG-HJK`` a wide-body with two aisles.
    """

    id = models.CharField(primary_key=True, max_length=20)
    number = models.CharField(max_length=10, unique=True)
    origin = models.CharField(max_length=3)
    destination = models.CharField(max_length=3)
    departure_time = models.DateTimeField(db_index=True)
    aircraft = models.CharField(max_length=60, blank=True)
    rows = models.PositiveSmallIntegerField()
    cabin_layout = models.CharField(max_length=20)

    objects = FlightQuerySet.as_manager()

    class Meta:
        ordering = ["departure_time", "number"]
        constraints = [
            models.CheckConstraint(condition=Q(id__regex=f"^{FLIGHT_ID}$"), name="flight_id_format"),
            models.CheckConstraint(
                condition=Q(number__regex=r"^[A-Z]{2}[0-9]{1,4}$"), name="flight_number_format"
            ),
            models.CheckConstraint(condition=Q(origin__regex=r"^[A-Z]{3}$"), name="flight_origin_iata"),
            models.CheckConstraint(
                condition=Q(destination__regex=r"^[A-Z]{3}$"), name="flight_destination_iata"
            ),
            models.CheckConstraint(
                condition=~Q(origin=models.F("destination")), name="flight_goes_somewhere"
            ),
            models.CheckConstraint(condition=Q(rows__gte=1), name="flight_has_rows"),
            models.CheckConstraint(
                condition=Q(cabin_layout__regex=r"^[A-Z]+(-[A-Z]+)*$"), name="flight_layout_format"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.origin} → {self.destination}"

    @property
    def has_departed(self) -> bool:
        """A flight that has left can no longer be booked."""
        return self.departure_time <= timezone.now()

    @property
    def columns(self) -> list[str]:
        """The seat letters of a row, left to right, without aisles."""
        return [letter for letter in self.cabin_layout if letter != "-"]

    def row_of(self, code: str) -> int | None:
        """The row of seat ``code`` (``14K`` -> 14), None if it is no seat of this flight."""
        row, letter = code[:-1], code[-1:]
        if row.isdigit() and letter in self.columns and 1 <= int(row) <= self.rows:
            return int(row)
        return None

    @property
    def seats_per_row(self) -> int:
        return len(self.columns)

    @property
    def total_seats(self) -> int:
        return self.rows * self.seats_per_row


class Seat(models.Model):
    """One seat of a flight. ``position`` is its place across the row, aisles counted."""

    flight = models.ForeignKey(Flight, on_delete=models.CASCADE, related_name="seats")
    code = models.CharField(max_length=4)
    row = models.PositiveSmallIntegerField()
    column = models.CharField(max_length=1)
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["flight", "row", "position"]
        constraints = [
            models.UniqueConstraint(fields=["flight", "code"], name="seat_code_unique_per_flight"),
            models.UniqueConstraint(
                fields=["flight", "row", "position"], name="seat_place_unique_per_flight"
            ),
            models.CheckConstraint(condition=Q(row__gte=1), name="seat_row_positive"),
            models.CheckConstraint(condition=Q(column__regex=r"^[A-Z]$"), name="seat_column_letter"),
            models.CheckConstraint(
                condition=Q(code=Concat(Cast("row", models.CharField()), "column")),
                name="seat_code_is_row_and_column",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.flight_id} {self.code}"


class BookedSeat(models.Model):
    """A sold seat. The unique (flight, seat) constraint is what makes a double booking
    impossible, whatever happens to the Redis holds (``flights.holds``)."""

    flight = models.ForeignKey(Flight, on_delete=models.PROTECT, related_name="booked_seats")
    seat = models.ForeignKey(Seat, on_delete=models.PROTECT, related_name="bookings")
    # By name: the order that bought it lives in the orders app, above this one.
    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="booked_seats")
    booked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["flight", "seat"], name="one_booking_per_seat")]

    def __str__(self) -> str:
        return f"{self.flight_id} {self.seat.code} → {self.order_id}"

from __future__ import annotations

from functools import cached_property

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from common.formats import FLIGHT_ID
from common.money import Money

CURRENCY_FORMAT = r"^[A-Z]{3}$"


class CabinClass(models.TextChoices):
    """The cabins of an airliner, front to back."""

    FIRST = "first", "First"
    BUSINESS = "business", "Business"
    PREMIUM_ECONOMY = "premium_economy", "Premium economy"
    ECONOMY = "economy", "Economy"


class FlightQuerySet(models.QuerySet["Flight"]):
    def upcoming(self) -> FlightQuerySet:
        """The flights that can still be booked, soonest first."""
        return self.filter(departure_time__gt=timezone.now()).order_by("departure_time", "number")


class Flight(models.Model):
    """A scheduled flight, the shape of its fuselage and its prices.

    ``cabin_layout`` spells the widest row from the left window to the right, with ``-`` for an
    aisle: ``ABC-DEF`` is a narrow-body, ``ABC-DEFG-HJK`` a wide-body with two aisles. Its cabins
    (``Cabin``: first, business, ...) each use some of those places over a range of rows; a
    flight without cabins is one economy cabin over all its rows. Prices are whole minor units of
    ``currency``: each cabin's, plus ``exit_row_extra`` for a seat in one of ``exit_rows``.
    """

    id = models.CharField(primary_key=True, max_length=20)
    number = models.CharField(max_length=10, unique=True)
    origin = models.CharField(max_length=3)
    destination = models.CharField(max_length=3)
    departure_time = models.DateTimeField(db_index=True)
    aircraft = models.CharField(max_length=60, blank=True)
    rows = models.PositiveSmallIntegerField()
    cabin_layout = models.CharField(max_length=20)
    currency = models.CharField(max_length=3, default="USD", help_text="ISO 4217, e.g. USD, EUR, GBP")
    exit_rows = ArrayField(models.PositiveSmallIntegerField(), default=list, blank=True)
    exit_row_extra = models.PositiveIntegerField(
        default=0, help_text="Added to the cabin's price for an exit-row seat, in minor units (cents)"
    )

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
            models.CheckConstraint(condition=Q(currency__regex=CURRENCY_FORMAT), name="flight_currency_iso"),
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
        if not row.isdigit():
            return None
        cabin = self.cabin_of_row(int(row))
        return int(row) if cabin is not None and letter in cabin.columns else None

    @property
    def seats_per_row(self) -> int:
        """The most seats a row has (its widest cabin's)."""
        return len(self.columns)

    @property
    def total_seats(self) -> int:
        return sum(cabin.seat_count for cabin in self.cabin_list)

    @cached_property
    def cabin_list(self) -> list[Cabin]:
        """The cabins front to back (read once; ``prefetch_related("cabins")`` reads them for many
        flights in one query). A flight without any is one economy cabin over all its rows."""
        cabins = sorted(self.cabins.all(), key=lambda cabin: cabin.first_row)
        if cabins:
            return cabins
        return [
            Cabin(
                flight=self,
                cabin_class=CabinClass.ECONOMY,
                first_row=1,
                last_row=self.rows,
                layout=self.cabin_layout,
                price=0,
            )
        ]

    def cabin_of_row(self, row: int) -> Cabin | None:
        return next((c for c in self.cabin_list if c.first_row <= row <= c.last_row), None)

    def seat_price(self, *, cabin: Cabin, row: int) -> Money:
        """What a seat in ``row`` of ``cabin`` costs now."""
        extra = self.exit_row_extra if row in self.exit_rows else 0
        return Money(cabin.price + extra, self.currency)

    @property
    def lowest_price(self) -> Money:
        """The cheapest seat's price ("from ..."): the cheapest cabin, outside an exit row."""
        return Money(min(cabin.price for cabin in self.cabin_list), self.currency)


class Cabin(models.Model):
    """One cabin of a flight: its class, its rows (``first_row`` to ``last_row``), which places of
    the flight's ``cabin_layout`` have a seat in it (``AC-DF`` in an ``ABC-DEF`` fuselage: two
    and two, no middle seats), and its price, in whole minor units of the flight's currency."""

    flight = models.ForeignKey(Flight, on_delete=models.CASCADE, related_name="cabins")
    cabin_class = models.CharField(max_length=16, choices=CabinClass.choices)
    first_row = models.PositiveSmallIntegerField()
    last_row = models.PositiveSmallIntegerField()
    layout = models.CharField(max_length=20)
    price = models.PositiveIntegerField(help_text="In minor units of the flight's currency (cents)")

    class Meta:
        ordering = ["flight", "first_row"]
        constraints = [
            models.UniqueConstraint(fields=["flight", "cabin_class"], name="one_cabin_per_class"),
            models.CheckConstraint(condition=Q(first_row__gte=1), name="cabin_rows_positive"),
            models.CheckConstraint(
                condition=Q(last_row__gte=models.F("first_row")), name="cabin_rows_ordered"
            ),
            models.CheckConstraint(
                condition=Q(layout__regex=r"^[A-Z]+(-[A-Z]+)*$"), name="cabin_layout_format"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_cabin_class_display()}, rows {self.first_row} to {self.last_row}"

    @property
    def name(self) -> str:
        return CabinClass(self.cabin_class).label

    @property
    def columns(self) -> list[str]:
        return [letter for letter in self.layout if letter != "-"]

    @property
    def seats_across(self) -> int:
        return len(self.columns)

    @property
    def seat_count(self) -> int:
        return (self.last_row - self.first_row + 1) * self.seats_across

    @property
    def arrangement(self) -> str:
        """Seats per block between the aisles, as airlines write it: ``2-4-2``."""
        return "-".join(str(len(block)) for block in self.layout.split("-"))

    @property
    def money(self) -> Money:
        return Money(self.price, self.flight.currency)


class Seat(models.Model):
    """One seat of a flight. ``position`` is its place across the row, aisles counted."""

    flight = models.ForeignKey(Flight, on_delete=models.CASCADE, related_name="seats")
    code = models.CharField(max_length=4)
    row = models.PositiveSmallIntegerField()
    column = models.CharField(max_length=1)
    position = models.PositiveSmallIntegerField()
    cabin_class = models.CharField(max_length=16, choices=CabinClass.choices, default=CabinClass.ECONOMY)

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

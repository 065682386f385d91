"""The flights for operators: the catalog is editable; seat counts and the seat map are read from
the seat inventory (``flights.inventory``), once per flight shown."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from flights import inventory
from flights.models import Cabin, Flight


class CabinInline(admin.TabularInline):
    """A flight's cabins. Their prices are the operators' to set (whole minor units: 19900 is
    $199.00); their rows and seats are fixed once the seats exist, since bookings point at them.
    A new price applies to seats held from then on: an order keeps the prices its seats were
    held at."""

    model = Cabin
    extra = 0
    fields = ("cabin_class", "first_row", "last_row", "layout", "price", "price_shown")
    readonly_fields = ("price_shown",)

    def get_readonly_fields(self, request: HttpRequest, obj: Flight | None = None):  # type: ignore[no-untyped-def]
        if obj is not None and obj.seats.exists():
            return ("cabin_class", "first_row", "last_row", "layout", "price_shown")
        return ("price_shown",)

    def has_add_permission(self, request: HttpRequest, obj: Flight | None = None) -> bool:  # type: ignore[override]
        return obj is None or not obj.seats.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Flight | None = None) -> bool:  # type: ignore[override]
        return obj is None or not obj.seats.exists()

    @admin.display(description="Price")
    def price_shown(self, cabin: Cabin) -> str:
        return cabin.money.format() if cabin.pk else "-"


class FlightChangeList(ChangeList):
    """Reads the seat counts of the page's flights in one go (not once per column and row)."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        for counts in inventory.availability(list(self.result_list)):
            counts.flight.seat_counts = counts  # type: ignore[attr-defined]


@admin.register(Flight)
class FlightAdmin(admin.ModelAdmin):
    list_display = (
        "number",
        "route",
        "departure_time",
        "aircraft",
        "total",
        "booked",
        "held",
        "available",
        "from_price",
    )
    inlines = [CabinInline]
    list_filter = ("origin", "destination", "aircraft")
    search_fields = ("id", "number", "origin", "destination")
    date_hierarchy = "departure_time"
    ordering = ("departure_time",)
    readonly_fields = ("cabin",)

    def get_changelist(self, request: HttpRequest, **kwargs: object) -> type[ChangeList]:
        return FlightChangeList

    def get_readonly_fields(self, request: HttpRequest, obj: Flight | None = None):  # type: ignore[no-untyped-def]
        # A flight's cabin cannot change once its seats exist: bookings point at them.
        # Nor its currency: the orders on it hold prices in it.
        if obj:
            return ("id", "rows", "cabin_layout", "currency", "exit_rows", "seats_now", "cabin")
        return ("cabin",)

    def get_queryset(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).prefetch_related("cabins")

    @staticmethod
    def _counts(flight: Flight) -> inventory.FlightAvailability:
        counts = getattr(flight, "seat_counts", None)
        return counts if counts is not None else inventory.availability([flight])[0]

    @admin.display(description="Route")
    def route(self, flight: Flight) -> str:
        return f"{flight.origin} → {flight.destination}"

    @admin.display(description="Seats now")
    def seats_now(self, flight: Flight) -> str:
        counts = self._counts(flight)
        return (
            f"{counts.total} seats: {counts.booked} booked, {counts.held} held, {counts.available} available"
        )

    @admin.display(description="Seats")
    def total(self, flight: Flight) -> int:
        return flight.total_seats

    @admin.display(description="Booked")
    def booked(self, flight: Flight) -> int:
        return self._counts(flight).booked

    @admin.display(description="Held")
    def held(self, flight: Flight) -> int:
        return self._counts(flight).held

    @admin.display(description="Available")
    def available(self, flight: Flight) -> int:
        return self._counts(flight).available

    @admin.display(description="From")
    def from_price(self, flight: Flight) -> str:
        return flight.lowest_price.format()

    @admin.display(description="Seat map (read-only)")
    def cabin(self, flight: Flight) -> SafeString:
        if not flight.pk:
            return SafeString("Saved flights show their seat map here.")
        plan = inventory.seat_map(flight=flight)
        return SafeString(render_to_string("admin/flights/seat_map.html", {"plan": plan}))

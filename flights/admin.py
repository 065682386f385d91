from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from flights.models import Flight
from flights.selectors import SeatStatus, availability, seat_map


@admin.register(Flight)
class FlightAdmin(admin.ModelAdmin):
    list_display = ("number", "route", "departure_time", "aircraft", "total", "booked", "held", "available")
    list_filter = ("origin", "destination", "aircraft")
    search_fields = ("id", "number", "origin", "destination")
    date_hierarchy = "departure_time"
    ordering = ("departure_time",)
    readonly_fields = ("seat_map",)

    def get_readonly_fields(self, request: HttpRequest, obj: Flight | None = None):  # type: ignore[no-untyped-def]
        # A flight's cabin cannot change once its seats exist: bookings point at them.
        return ("id", "rows", "cabin_layout", "seats_now", "seat_map") if obj else ("seat_map",)

    @admin.display(description="Route")
    def route(self, flight: Flight) -> str:
        return f"{flight.origin} → {flight.destination}"

    def _counts(self, flight: Flight) -> dict[SeatStatus, int]:
        plan = seat_map(flight=flight)
        counts = dict.fromkeys(SeatStatus, 0)
        for seat in plan.seats:
            counts[seat.status] += 1
        return counts

    @admin.display(description="Seats now")
    def seats_now(self, flight: Flight) -> str:
        counts = self._counts(flight)
        return (
            f"{flight.total_seats} seats: {counts[SeatStatus.BOOKED]} booked, "
            f"{counts[SeatStatus.RESERVED]} held, {counts[SeatStatus.AVAILABLE]} available"
        )

    @admin.display(description="Seats")
    def total(self, flight: Flight) -> int:
        return flight.total_seats

    @admin.display(description="Booked")
    def booked(self, flight: Flight) -> int:
        return self._counts(flight)[SeatStatus.BOOKED]

    @admin.display(description="Held")
    def held(self, flight: Flight) -> int:
        return self._counts(flight)[SeatStatus.RESERVED]

    @admin.display(description="Available")
    def available(self, flight: Flight) -> int:
        return availability([flight])[0].available

    @admin.display(description="Seat map (read-only)")
    def seat_map(self, flight: Flight) -> SafeString:
        if not flight.pk:
            return SafeString("Saved flights show their seat map here.")
        return SafeString(render_to_string("admin/flights/seat_map.html", {"plan": seat_map(flight=flight)}))

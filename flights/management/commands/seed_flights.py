from django.core.management.base import BaseCommand

from flights.models import Flight, Seat
from flights.services import seed_demo_flights


class Command(BaseCommand):
    help = "Create the demo flights and their seats (idempotent: safe to run on every start)."

    def handle(self, *args: object, **options: object) -> None:
        flights, seats = seed_demo_flights()
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo flights ready: {Flight.objects.count()} flights, {Seat.objects.count()} seats "
                f"({flights} flights and {seats} seats created now)."
            )
        )

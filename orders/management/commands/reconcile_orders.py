from datetime import timedelta

from django.core.management.base import BaseCommand, CommandParser

from orders.reconciliation import reconcile_orders


class Command(BaseCommand):
    help = (
        "Close active orders whose workflow no longer runs (e.g. terminated from the Temporal UI): "
        "release their seats and mark them FAILED. Safe to run from cron at any time."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--idle-minutes",
            type=float,
            default=5.0,
            help="Only orders untouched for this long (default 5).",
        )

    def handle(self, *args: object, **options: object) -> None:
        minutes = float(options["idle_minutes"])  # type: ignore[arg-type]
        closed = reconcile_orders(idle_for=timedelta(minutes=minutes))
        for order_id in closed:
            self.stdout.write(f"closed {order_id}")
        self.stdout.write(self.style.SUCCESS(f"{len(closed)} orders reconciled"))

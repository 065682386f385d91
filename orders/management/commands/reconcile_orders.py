from datetime import timedelta

from django.core.management.base import BaseCommand, CommandParser

from orders.reconciliation import reconcile


class Command(BaseCommand):
    help = (
        "Run the reconciliation once (the worker's Temporal Schedule runs it every minute): close "
        "live orders whose workflow no longer runs, catch rows up with their workflow, take again "
        "holds Redis lost, release holds of ended orders. Safe to run at any time."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--idle-minutes",
            type=float,
            default=5.0,
            help="Leave drift younger than this to a later run (default 5).",
        )

    def handle(self, *args: object, **options: object) -> None:
        minutes = float(options["idle_minutes"])  # type: ignore[arg-type]
        run = reconcile(grace=timedelta(minutes=minutes))
        for line in run.details:
            self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS(f"{run.repaired} repairs"))

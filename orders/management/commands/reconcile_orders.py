from datetime import timedelta

from django.conf import settings
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
            default=None,
            help="Leave drift younger than this to a later run (default: RECONCILE_GRACE).",
        )

    def handle(self, *args: object, **options: object) -> None:
        minutes = options["idle_minutes"]
        grace = settings.RECONCILE_GRACE if minutes is None else timedelta(minutes=float(minutes))  # type: ignore[arg-type]
        run = reconcile(grace=grace)
        for line in run.details:
            self.stdout.write(line)
        summary = f"{run.repaired} repairs, {run.failures} failed"
        self.stdout.write(self.style.ERROR(summary) if run.failures else self.style.SUCCESS(summary))

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from orders.retention import purge_expired


class Command(BaseCommand):
    help = (
        "Delete expired sessions and idempotency records once, in batches (the worker's Temporal "
        "Schedule does it every RETENTION_EVERY). Safe to run at any time."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=settings.RETENTION_BATCH_SIZE,
            help=f"Rows deleted per batch (default RETENTION_BATCH_SIZE, {settings.RETENTION_BATCH_SIZE}).",
        )

    def handle(self, *args: object, **options: object) -> None:
        batch_size = int(options["batch_size"])  # type: ignore[call-overload]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        keep: timedelta = settings.IDEMPOTENCY_KEY_RETENTION
        purged = purge_expired(keep_requests=keep, batch_size=batch_size)
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted {purged.deleted['session']} expired sessions and "
                f"{purged.deleted['order_request']} idempotency records older than {keep} "
                f"in {purged.batches} batches"
            )
        )

"""manage.py runworker: serve BookingWorkflow and its activities until SIGINT or SIGTERM.

On a signal the worker stops polling, lets running activities finish (up to the payment
timeout) and exits. It leaves with ``os._exit`` after a clean shutdown: a process that ran a
Temporal worker can crash at interpreter exit (sdk-python #300), which would hide the real
exit code. SIGUSR1 writes every thread's stack to stderr and changes nothing else: where a
worker that seems stuck is (an activity blocked on a lock, say).
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import sys

from django.conf import settings
from django.core.management.base import BaseCommand
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import RPCError

from common import tracing
from common.temporal_client import TemporalMisconfigured, connect
from temporal_worker import metrics, search_attributes
from temporal_worker.schedules import ensure_reconcile_schedule, ensure_retention_schedule
from temporal_worker.worker import build_worker

logger = logging.getLogger("temporal_worker")


class Command(BaseCommand):
    help = "Run the Temporal worker for bookings until SIGINT or SIGTERM."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--task-queue", default=None, help="Task queue (default: TEMPORAL_TASK_QUEUE).")

    def handle(self, *args: object, **options: object) -> None:
        code = 0
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        tracing.setup(service="booking-worker", endpoint=settings.OTEL_EXPORTER_OTLP_ENDPOINT)
        try:
            asyncio.run(self.serve(task_queue=options.get("task_queue")))  # type: ignore[arg-type]
        except metrics.MetricsPortTaken as error:
            logger.error("configuration error: %s", error)
            code = 2
        except TemporalMisconfigured as error:  # a TLS refusal: retrying would not mend it
            logger.error("configuration error: %s", error)
            print(f"configuration error: {error}", file=sys.stderr)
            code = 2
        except Exception:
            logger.exception("worker stopped on an error")
            code = 1
        tracing.shutdown()  # os._exit skips the exporter's own flush at exit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    async def serve(self, *, task_queue: str | None) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        # Both ports are bound before anything else: one that is taken stops start-up (an error).
        metrics.serve_product_metrics()
        runtime = metrics.sdk_runtime()
        client = await self.connect_with_retry(stop, runtime)
        if client is None:
            return
        await self.check_search_attributes(client)
        worker = build_worker(client, task_queue=task_queue)
        queue = task_queue or settings.TEMPORAL_TASK_QUEUE
        await self.schedule_reconciliation(client, queue)
        await self.schedule_retention(client, queue)
        where = f"{settings.TEMPORAL_HOST} ({settings.TEMPORAL_CONNECTION.secured})"
        logger.info("worker polling task queue %s on %s", queue, where)
        self.stdout.write(f"Worker ready: task queue {queue!r} on {where}")
        async with worker:
            await stop.wait()
            logger.info("shutting down: finishing running activities")
        logger.info("worker stopped")

    async def check_search_attributes(self, client: Client) -> None:
        """Bookings stall on a namespace without the booking search attributes: say so at start,
        with the commands that register them (a Temporal that cannot list them is only noted)."""
        try:
            absent = await search_attributes.missing(client)
        except RPCError as error:
            logger.warning("could not check the booking search attributes: %s", error)
            return
        if absent:
            logger.error(
                "Temporal namespace %s lacks the search attributes %s: bookings cannot progress "
                "until they are registered: %s",
                client.namespace,
                ", ".join(absent),
                search_attributes.how_to_register(absent, client.namespace),
            )

    async def schedule_reconciliation(self, client: Client, queue: str) -> None:
        """The reconciliation's Temporal Schedule (RECONCILE_EVERY; 0 leaves it as it is). A
        Temporal that refuses it is logged: the bookings are served all the same."""
        every = settings.RECONCILE_EVERY
        if not every:
            return
        try:
            schedule_id = await ensure_reconcile_schedule(client, task_queue=queue, every=every)
        except RPCError as error:
            logger.error("could not create the reconciliation schedule: %s", error)
            return
        self.stdout.write(f"Reconciliation: schedule {schedule_id!r}, every {every}")

    async def schedule_retention(self, client: Client, queue: str) -> None:
        """The retention's Temporal Schedule (RETENTION_EVERY; 0 leaves it as it is)."""
        every = settings.RETENTION_EVERY
        if not every:
            return
        try:
            schedule_id = await ensure_retention_schedule(client, task_queue=queue, every=every)
        except RPCError as error:
            logger.error("could not create the retention schedule: %s", error)
            return
        self.stdout.write(f"Retention: schedule {schedule_id!r}, every {every}")

    async def connect_with_retry(self, stop: asyncio.Event, runtime: Runtime | None):  # type: ignore[no-untyped-def]
        """Temporal may still be starting: keep trying until it answers or we are stopped."""
        delay = 0.5
        while not stop.is_set():
            try:
                return await connect(runtime=runtime)
            except TemporalMisconfigured:
                raise
            except RuntimeError as error:
                logger.warning(
                    "Temporal at %s not reachable yet (%s); retrying", settings.TEMPORAL_HOST, error
                )
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                delay = min(delay * 2, 5)
        return None

"""The worker: which workflows and activities it serves, built in one place."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from temporal_worker import activities
from temporal_worker.reconcile import ReconcileWorkflow
from temporal_worker.retention import RetentionWorkflow
from temporal_worker.workflows import BookingWorkflow

# Sync activities run on these threads; the payment activity sleeps through the gateway's
# simulated latency, so there are enough of them for many payments at once.
MAX_CONCURRENT_ACTIVITIES = 64

# The sandbox imports a workflow's modules afresh for every booking it starts, so that no state
# leaks between runs. The booking's contract and the identifier formats are pure, immutable
# definitions: imported once and shared, they cost nothing per booking (docs/PERFORMANCE.md).
# OpenTelemetry is passed through as Temporal's tracing interceptor needs: its context and tracer
# provider must be the process's own, not a copy per workflow.
SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "orders.workflow_contract", "common.errors", "common.formats", "opentelemetry"
    )
)


def build_worker(client: Client, *, task_queue: str | None = None) -> Worker:
    return Worker(
        client,
        task_queue=task_queue or settings.TEMPORAL_TASK_QUEUE,
        workflows=[BookingWorkflow, ReconcileWorkflow, RetentionWorkflow],
        workflow_runner=SANDBOX,
        activities=list(activities.ALL),
        activity_executor=ThreadPoolExecutor(
            max_workers=MAX_CONCURRENT_ACTIVITIES, thread_name_prefix="activity"
        ),
        max_concurrent_activities=MAX_CONCURRENT_ACTIVITIES,
        graceful_shutdown_timeout=settings.PAYMENT_VALIDATION_TIMEOUT,
    )

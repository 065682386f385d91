"""ReconcileWorkflow: the reconciliation, run every minute by a Temporal Schedule.

The workflow only calls the ``reconcile`` activity, which does the work (``orders.reconciliation``)
and keeps its run for the admin. The Schedule, created when a worker starts
(``temporal_worker.schedules``), never runs two at once (overlap SKIP), shows every run in the
Temporal UI, and can be paused there or with ``temporal schedule toggle --pause``.

Deterministic by construction, like the booking: no I/O, no clock, no Django here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

RECONCILE_WORKFLOW = "ReconcileWorkflow"
RECONCILE_ACTIVITY = "reconcile"
# A run that fails is tried once more; after that, the next scheduled run is the retry.
RECONCILE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=2)
# The activity heartbeats after every batch of candidates: one that stops moving for this long
# is cut off and tried again, long before the run's own timeout.
RECONCILE_HEARTBEAT = timedelta(minutes=1)


@dataclass
class ReconcileResult:
    """What one run repaired: the id of its ``ReconcileRun`` row, and how many of each kind."""

    run_id: int
    repairs: dict[str, int] = field(default_factory=dict)
    failures: int = 0  # candidates whose repair raised (logged, kept with the run)


@workflow.defn(name=RECONCILE_WORKFLOW)
class ReconcileWorkflow:
    @workflow.run
    async def run(self) -> ReconcileResult:
        return await workflow.execute_activity(
            RECONCILE_ACTIVITY,
            result_type=ReconcileResult,
            start_to_close_timeout=timedelta(minutes=4),
            heartbeat_timeout=RECONCILE_HEARTBEAT,
            retry_policy=RECONCILE_RETRY,
        )

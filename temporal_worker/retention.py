"""RetentionWorkflow: deletes expired sessions and idempotency records (``orders.retention``),
run by a Temporal Schedule of its own beside the reconciliation's (``temporal_worker.schedules``).

The workflow only calls the ``purge_expired`` activity, which deletes in batches and heartbeats
after each: a worker that dies mid-purge is noticed within the heartbeat timeout, and the retry
(or the next scheduled run) carries on with what is left.

Deterministic by construction: no I/O, no clock, no Django here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

RETENTION_WORKFLOW = "RetentionWorkflow"
PURGE_ACTIVITY = "purge_expired"
PURGE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=10), maximum_attempts=3)


@dataclass
class PurgeResult:
    """How many rows of each kind one run deleted, and in how many batches."""

    deleted: dict[str, int] = field(default_factory=dict)
    batches: int = 0


@workflow.defn(name=RETENTION_WORKFLOW)
class RetentionWorkflow:
    @workflow.run
    async def run(self) -> PurgeResult:
        return await workflow.execute_activity(
            PURGE_ACTIVITY,
            result_type=PurgeResult,
            # A large backlog takes many batches: the heartbeat, not the total, says it is alive.
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=PURGE_RETRY,
        )

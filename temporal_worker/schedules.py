"""The worker's Temporal Schedules, created (or brought up to date) as it starts."""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from orders.workflow_contract import reconcile_schedule_id
from temporal_worker.reconcile import RECONCILE_WORKFLOW
from temporal_worker.retention import RETENTION_WORKFLOW

logger = logging.getLogger(__name__)
NOTE = "Reconciles Redis, PostgreSQL and the booking workflows (docs/OPERATIONS.md)"


def every_interval(
    workflow: str, *, schedule_id: str, task_queue: str, every: timedelta, runs_at_most: timedelta, note: str
) -> Schedule:
    """A schedule that starts ``workflow`` every ``every``; a run still going when the next is due
    makes the next one skipped, never run beside it (overlap SKIP)."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            workflow,
            id=schedule_id,  # Temporal adds each run's time to it
            task_queue=task_queue,
            execution_timeout=runs_at_most,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note=note),
    )


def reconcile_schedule(*, task_queue: str, every: timedelta) -> Schedule:
    return every_interval(
        RECONCILE_WORKFLOW,
        schedule_id=reconcile_schedule_id(task_queue),
        task_queue=task_queue,
        every=every,
        runs_at_most=timedelta(minutes=10),
        note=NOTE,
    )


async def ensure_reconcile_schedule(client: Client, *, task_queue: str, every: timedelta) -> str:
    """Create the reconciliation's schedule, or bring an existing one up to date (its interval,
    its action) while keeping its state (``ensure_schedule``). Returns the schedule's id."""
    schedule_id = reconcile_schedule_id(task_queue)
    await ensure_schedule(
        client, schedule_id=schedule_id, wanted=reconcile_schedule(task_queue=task_queue, every=every)
    )
    return schedule_id


# --- Retention (temporal_worker.retention): a schedule of its own, beside the reconciliation's.
RETENTION_NOTE = "Deletes expired sessions and idempotency records (docs/OPERATIONS.md, Retention)"


def retention_schedule_id(task_queue: str) -> str:
    return f"retention-{task_queue}"


def retention_schedule(*, task_queue: str, every: timedelta) -> Schedule:
    return every_interval(
        RETENTION_WORKFLOW,
        schedule_id=retention_schedule_id(task_queue),
        task_queue=task_queue,
        every=every,
        runs_at_most=timedelta(hours=2),
        note=RETENTION_NOTE,
    )


async def ensure_schedule(client: Client, *, schedule_id: str, wanted: Schedule) -> None:
    """Create a schedule, or bring an existing one up to date while keeping its state (a schedule
    an operator paused stays paused). Idempotent: every worker calls it as it starts."""
    try:
        await client.create_schedule(schedule_id, wanted)
        logger.info("created schedule %s", schedule_id)
    except ScheduleAlreadyRunningError:

        def keep_state(current: ScheduleUpdateInput) -> ScheduleUpdate:
            state = current.description.schedule.state
            return ScheduleUpdate(schedule=dataclasses.replace(wanted, state=state))

        await client.get_schedule_handle(schedule_id).update(keep_state)
        logger.info("schedule %s already there: brought up to date", schedule_id)


async def ensure_retention_schedule(client: Client, *, task_queue: str, every: timedelta) -> str:
    schedule_id = retention_schedule_id(task_queue)
    wanted = retention_schedule(task_queue=task_queue, every=every)
    await ensure_schedule(client, schedule_id=schedule_id, wanted=wanted)
    return schedule_id

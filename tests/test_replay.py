"""Recorded histories of real bookings replay on today's BookingWorkflow without nondeterminism.

A change to the workflow that would break a booking already running fails here. Regenerate the
histories (python -m tests.histories.record) only for a deliberate change that is guarded with
``workflow.patched``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from temporal_worker.workflows import BookingWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_histories_to_replay():
    names = {path.stem for path in HISTORIES}
    assert {"confirmed_after_seat_change", "failed_after_three_attempts", "expired"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_a_recorded_history_replays(path: Path):
    history = WorkflowHistory.from_json(f"booking-{path.stem}", json.loads(path.read_text()))  # noqa: ASYNC240

    result = await Replayer(workflows=[BookingWorkflow]).replay_workflow(
        history, raise_on_replay_failure=True
    )

    assert result.replay_failure is None

"""Record the workflow histories that tests/test_replay.py replays.

    python -m tests.histories.record

Run it only when BookingWorkflow changes on purpose, and only together with
``workflow.patched`` for any change to the commands it issues: the histories stand for bookings
already running in production, which the new code must still replay.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from temporal_worker.shared import BookingInput, PaymentRequest, SeatSelection
from temporal_worker.workflows import BookingWorkflow
from tests.test_workflow import TEST_SERVER, FakeStores

HERE = Path(__file__).resolve().parent


async def record(name: str, *, payment: str | None, code: str = "00000", change: bool = False) -> None:
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=TEST_SERVER)
    stores = FakeStores(payment=payment or "approve")
    task_queue = f"record-{uuid.uuid4().hex[:6]}"
    async with Worker(
        env.client, task_queue=task_queue, workflows=[BookingWorkflow], activities=stores.activities()
    ):
        order_id = f"ord-{uuid.uuid4().hex[:20]}"
        handle = await env.client.start_workflow(
            BookingWorkflow.run,
            BookingInput(order_id, "fl-101", 900, 60, 10, 3),
            id=f"booking-{order_id}",
            task_queue=task_queue,
        )
        await handle.execute_update(BookingWorkflow.hold_seats, SeatSelection(seats=["12A", "12B"]))
        if change:
            await handle.execute_update(BookingWorkflow.hold_seats, SeatSelection(seats=["12B", "14C"]))
        if payment:
            await handle.execute_update(BookingWorkflow.submit_payment, PaymentRequest(code))
        await handle.result()
        history = await handle.fetch_history()
    (HERE / f"{name}.json").write_text(history.to_json())
    await env.shutdown()
    print(f"recorded {name}.json")


async def main() -> None:
    await record("confirmed_after_seat_change", payment="approve", change=True)
    await record("failed_after_three_attempts", payment="decline", code="99999")
    await record("expired", payment=None)


if __name__ == "__main__":
    asyncio.run(main())

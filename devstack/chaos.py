"""`make chaos`: customers book while the stack is broken on purpose; then check that nothing was
lost, nothing invented, and every answer told the truth.

    python -m devstack.chaos [--short] [--seconds S] [--customers N] [--seed N]

It starts a stack of its own, every part a separate process (gunicorn, `manage.py runworker`,
the Temporal dev server persisted to a file, PostgreSQL, Redis without persistence), with short
rules (a 20 s hold, a quick simulated gateway). Customers create orders (some racing for the
same seats), change seats, pay with 00000, 99999 and other codes, abandon or walk away, always
with an Idempotency-Key, and retry as a careful client would (the same key, after Retry-After).
Meanwhile it injects faults: `kill -9` of the worker (several times), `kill -9` of Temporal and a
restart on the same file, a Redis FLUSHALL, a Redis stop and start (it comes back empty), and
PostgreSQL frozen (SIGSTOP of the server and its backends) for a few seconds, and once for longer
than a payment attempt's timeout while an attempt is under way (Temporal times it out and retries,
and the retry must not charge again).

After each fault, and at the end once every order has settled, it checks, from PostgreSQL,
Redis, Temporal and the API:
  - no seat sold twice, and every sold seat belongs to a CONFIRMED order;
  - no order stuck: every order final (or, during the run, live with a future deadline);
  - no seat still held by an order that has ended (how late each release came is reported);
  - every order that exists was answered to its customer (201 or 202 with its id): no phantom;
  - every request answered 4xx/5xx changed nothing (no payment attempt, cancellation or seat
    change that only a refused request asked for);
  - no 5xx outside a fault's window (a 500 anywhere is a violation), and the stack recovers by
    itself: a new booking confirms, and /healthz answers 200;
  - the money, from the gateway's ledger: at most one live charge per order, exactly one for a
    CONFIRMED order, none for an order that ended without its seats; every charge is its order's
    total (fixed when its seats were held) and every refund the whole charge, so that, per
    currency, charged - refunded = the CONFIRMED orders' totals; the report prints the amounts,
    charges, refunds and voided keys.
It prints a table and exits 1 on any violation. Every loop is bounded in count and time, and it
talks only to 127.0.0.1. `--short` (about a minute of load) is part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import psycopg
import redis

from common.money import Money as MoneyAmount
from common.payload_codec import new_key_entry
from devstack.bench import percentile
from devstack.ports import free_port
from devstack.postgres_server import start_postgres
from devstack.redis_server import start_redis
from devstack.supervisor import ROOT, Supervisor, log

if TYPE_CHECKING:
    from temporalio.client import Client as TemporalClient
from devstack.temporal_server import start_temporal

PYTHON = sys.executable
BIN = Path(PYTHON).parent
TERMINAL = {"CONFIRMED", "FAILED", "EXPIRED", "CANCELLED"}
HOLD_SECONDS = 20
PAYMENT_WINDOW_SECONDS = 3 * 2 + 1 + 1.5  # three 2 s attempts and their backoff
# The last line of a Python traceback: the exception's qualified name and its message.
ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit)\b.*$", re.M)
FAULT_GRACE_SECONDS = 8.0  # how long after a fault is over its effects may still show
# Seats the customers want: few enough that they race for them, enough that booking goes on
# for the whole run (a sold seat is gone).
WANTED = [("fl-101", f"{row}{letter}") for row in range(1, 21) for letter in "ABCDEF"] + [
    ("fl-202", f"{row}{letter}") for row in range(1, 20) for letter in "ABCD"
]
CODES = [("00000", 35), ("99999", 15), ("88888", 5), ("random", 25), ("abandon", 10), ("walk away", 10)]


# --- The stack: every part its own process ---------------------------------------------------


class ChaosStack:
    """PostgreSQL, Redis, Temporal, the worker and gunicorn, each of which can be broken alone."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.processes = Supervisor()  # its servers die with this process, however it ends
        self.web_port, self.redis_port, self.temporal_port = free_port(), free_port(), free_port()
        self.env = dict(
            os.environ,
            STACK_MODE="test",
            SECRET_KEY=secrets.token_urlsafe(50),
            DEBUG="false",
            HTTPS="false",
            LOG_FORMAT="text",
            LOG_LEVEL="WARNING",
            STATIC_MANIFEST="false",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            SERVER_HOST="127.0.0.1",
            SERVER_PORT=str(self.web_port),
            METRICS_HOST="127.0.0.1",
            METRICS_PORT=str(free_port()),
            WORKER_METRICS_PORT=str(free_port()),
            TEMPORAL_METRICS_PORT=str(free_port()),
            WEB_CONCURRENCY="2",
            GUNICORN_THREADS="8",
            SEAT_RESERVATION_TIMEOUT=f"{HOLD_SECONDS}s",
            SEAT_HOLD_TTL_MARGIN="10s",
            PAYMENT_VALIDATION_TIMEOUT="2s",
            PAYMENT_LATENCY_MIN="0.2s",
            PAYMENT_LATENCY_MAX="1s",
            PAYMENT_FAILURE_RATE="0.15",
            TEMPORAL_ANSWER_TIMEOUT="3s",
            TEMPORAL_TASK_QUEUE="chaos",
            # Payloads encrypted, as in production: the faults meet the codec too.
            PAYLOAD_ENCRYPTION_KEYS=new_key_entry("chaos-1"),
            PAYLOAD_ENCRYPTION_KEY_ID="",
            # Its customers all come from 127.0.0.1: the limits on one client would refuse them.
            RATE_LIMITS="off",
        )
        for name in ("DATABASE_URL", "REDIS_URL", "TEMPORAL_HOST", "TEMPORAL_ADDRESS", "TEMPORAL_PROFILE"):
            self.env.pop(name, None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> None:
        env = self.env
        env["DATABASE_URL"] = start_postgres(self.processes, self.data, free_port(), env)
        self.start_redis()
        self.start_temporal()
        for command in (["migrate", "--noinput"], ["seed_flights"]):
            _run([PYTHON, "manage.py", *command], env=env)
        self.start_worker()
        self.processes.start(
            "web",
            [str(BIN / "gunicorn"), "-c", "booking_site/gunicorn.py", "booking_site.wsgi"],
            env=env,
            logfile=self.data / "web.log",
        )
        self.processes.wait_until(lambda: _answers(self.url, "/healthz"), what="the web server", timeout=60)

    def start_worker(self) -> None:
        self.processes.start(
            "worker", [PYTHON, "manage.py", "runworker"], env=self.env, logfile=self.data / "worker.log"
        )

    def start_redis(self) -> None:  # no persistence: a restart comes back empty
        self.env["REDIS_URL"] = start_redis(
            self.processes, self.data, self.redis_port, self.env, persist=False
        )

    def start_temporal(self) -> None:  # persisted to a file: a restart keeps every history
        self.env["TEMPORAL_HOST"] = start_temporal(
            self.processes, self.data, self.temporal_port, self.env, ui_port=None, persist=True
        )

    def signal(self, name: str, signum: int) -> None:
        """Signal the live process called ``name`` (its whole process group)."""
        for process in self.processes.processes:
            if process.name == name and process.popen.poll() is None:
                os.killpg(process.popen.pid, signum)
                if signum in (signal.SIGKILL, signal.SIGTERM):
                    process.popen.wait(timeout=30)

    def postgres_pids(self) -> list[int]:
        postmaster = int((self.data / "postgres" / "postmaster.pid").read_text().split()[0])
        parent = psutil.Process(postmaster)
        return [postmaster, *(child.pid for child in parent.children(recursive=True))]

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.env["REDIS_URL"], socket_timeout=2, socket_connect_timeout=2)

    def stop(self) -> None:
        self.processes.stop()


def _run(argv: list[str], *, env: dict[str, str]) -> None:
    subprocess.run(argv, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def _answers(base_url: str, path: str) -> bool:
    try:
        status, _, _ = Client(base_url).call("GET", path)
    except OSError:
        return False
    return status in (200, 503)


# --- The faults ----------------------------------------------------------------------------


@dataclass
class Fault:
    at: float  # seconds into the load
    name: str
    inject: Callable[[ChaosStack], None]
    recover: Callable[[ChaosStack], None] | None = None
    lasts: float = 0.0  # seconds between inject and recover
    started: float = 0.0  # monotonic, when injected
    over: float = 0.0  # monotonic, when recovered

    def window(self) -> tuple[float, float]:
        return self.started, self.over + FAULT_GRACE_SECONDS


def _freeze_postgres(stack: ChaosStack) -> None:
    stack.frozen = stack.postgres_pids()  # type: ignore[attr-defined]
    for pid in stack.frozen:  # type: ignore[attr-defined]
        os.kill(pid, signal.SIGSTOP)


def _thaw_postgres(stack: ChaosStack) -> None:
    for pid in stack.frozen:  # type: ignore[attr-defined]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


# Longer than a payment attempt's timeout (PAYMENT_VALIDATION_TIMEOUT, 2 s here) and its backoff:
# Temporal times the attempt out and retries it while PostgreSQL is still frozen.
PAYMENT_STALL_SECONDS = 7


def _stall_postgres_during_payment(stack: ChaosStack) -> None:
    """Freeze PostgreSQL while a payment attempt is under way (waits up to 10 s for one)."""
    deadline = time.monotonic() + 10
    with contextlib.suppress(psycopg.Error), _db(stack) as db:
        query = "SELECT count(*) FROM payments_paymentattempt WHERE outcome = 'PENDING'"
        while time.monotonic() < deadline and not db.execute(query).fetchone()[0]:  # type: ignore[index]
            time.sleep(0.05)
    _freeze_postgres(stack)


def _flush_redis(stack: ChaosStack) -> None:
    stack.redis().flushall()


def plan(short: bool) -> list[Fault]:
    kill_worker = (lambda s: s.signal("worker", signal.SIGKILL), lambda s: s.start_worker())
    kill_temporal = (lambda s: s.signal("temporal", signal.SIGKILL), lambda s: s.start_temporal())
    stop_redis = (lambda s: s.signal("redis", signal.SIGTERM), lambda s: s.start_redis())
    stall_mid_payment = ("PostgreSQL stalled mid-payment", _stall_postgres_during_payment, _thaw_postgres)
    if short:
        return [
            Fault(5, "worker kill -9", *kill_worker, lasts=2),
            Fault(12, "PostgreSQL frozen", _freeze_postgres, _thaw_postgres, lasts=3),
            Fault(19, "Redis FLUSHALL", _flush_redis),
            Fault(24, "Temporal kill -9 + restart", *kill_temporal, lasts=2),
            Fault(29, *stall_mid_payment, lasts=PAYMENT_STALL_SECONDS),
            Fault(38, "Redis stop + start", *stop_redis, lasts=2),
            Fault(43, "worker kill -9", *kill_worker, lasts=1),
        ]
    return [
        Fault(8, "worker kill -9", *kill_worker, lasts=2),
        Fault(20, "PostgreSQL frozen", _freeze_postgres, _thaw_postgres, lasts=4),
        Fault(34, "Redis FLUSHALL", _flush_redis),
        Fault(42, "worker kill -9", *kill_worker, lasts=3),
        Fault(55, "Temporal kill -9 + restart", *kill_temporal, lasts=3),
        Fault(75, "Redis stop + start", *stop_redis, lasts=3),
        Fault(88, "worker kill -9", *kill_worker, lasts=1),
        Fault(96, "PostgreSQL frozen", _freeze_postgres, _thaw_postgres, lasts=2),
        Fault(105, "Temporal kill -9 + restart", *kill_temporal, lasts=2),
        Fault(115, "Redis FLUSHALL", _flush_redis),
        Fault(
            120,
            "PostgreSQL stalled mid-payment",
            _stall_postgres_during_payment,
            _thaw_postgres,
            lasts=PAYMENT_STALL_SECONDS,
        ),
    ]


# --- Customers -----------------------------------------------------------------------------


@dataclass
class Call:
    customer: int
    method: str
    path: str
    body: object
    key: str | None
    status: int  # 0: no answer (the connection failed or timed out)
    reply: dict
    started: float
    ended: float


class Client:
    """One customer's browser session over one keep-alive connection (its own cookie)."""

    def __init__(
        self,
        url: str,
        timeout: float = 20,
        *,
        headers: dict[str, str] | None = None,
        keep_cookie: bool = True,
    ) -> None:
        self.url, self.timeout, self.cookie = url, timeout, ""
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.headers, self.keep_cookie = dict(headers or {}), keep_cookie  # sent with every request
        self.connection: http.client.HTTPConnection | None = None

    def call(
        self, method: str, path: str, body: object = None, key: str | None = None
    ) -> tuple[int, dict, dict]:
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.cookie and self.keep_cookie:
            headers["Cookie"] = self.cookie
        if key:
            headers["Idempotency-Key"] = key
        for attempt in range(2):  # one reconnect if the server closed an idle keep-alive
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.connection.request(
                    method, path, body=json.dumps(body) if body is not None else None, headers=headers
                )
                reply = self.connection.getresponse()
                data = reply.read()
                break
            except (http.client.HTTPException, OSError):
                self.connection.close()
                self.connection = None
                if attempt:
                    raise
        if cookie := reply.getheader("Set-Cookie"):
            self.cookie = cookie.split(";", 1)[0]
        try:
            parsed = json.loads(data) if data else {}
        except ValueError:
            parsed = {"raw": data[:200].decode(errors="replace")}
        return reply.status, parsed, dict(reply.getheaders())


class Journal:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.owner: dict[str, int] = {}  # order id -> customer that was told of it

    def add(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)
            order_id = call.reply.get("orderId") if isinstance(call.reply, dict) else None
            if call.status in (200, 201, 202) and order_id:
                self.owner.setdefault(order_id, call.customer)


class Shopper(threading.Thread):
    """A customer who books again and again until ``deadline``, retrying as a careful client does."""

    def __init__(self, number: int, url: str, journal: Journal, seed: int, deadline: float) -> None:
        super().__init__(name=f"customer-{number}", daemon=True)
        self.number, self.journal, self.deadline = number, journal, deadline
        self.client = Client(url)
        self.rng = random.Random(seed * 1000 + number)  # noqa: S311 (a reproducible load, not secrets)

    def send(self, method: str, path: str, body: object = None, *, retries: int = 6) -> Call:
        """One request, retried with the same key while its answer is not final."""
        key = str(uuid.uuid4()) if method != "GET" else None
        for attempt in range(retries):
            started = time.monotonic()
            try:
                status, reply, headers = self.client.call(method, path, body, key)
            except OSError:
                status, reply, headers = 0, {}, {}
            call = Call(self.number, method, path, body, key, status, reply, started, time.monotonic())
            self.journal.add(call)
            pending = status == 202 and reply.get("pending")
            if status not in (0, 409, 503) and not pending:
                return call
            if status == 409 and reply.get("error") != "IDEMPOTENCY_KEY_IN_USE":
                return call
            if pending and attempt >= 1:  # handed over; follow the order instead
                return call
            time.sleep(min(float(headers.get("Retry-After", 1)), 3) * (1 + attempt / 2))
        return call

    def status(self, order_id: str) -> dict:
        call = self.send("GET", f"/api/orders/{order_id}/status", retries=3)
        return call.reply if call.status == 200 else {}

    def follow(self, order_id: str, until: set[str], seconds: float) -> dict:
        end = time.monotonic() + seconds
        state: dict = {}
        while time.monotonic() < end:
            state = self.status(order_id)
            if state.get("status") in until:
                return state
            time.sleep(0.5)
        return state

    def run(self) -> None:
        for _ in range(200):  # bounded in count as well as in time
            if time.monotonic() > self.deadline:
                return
            self.book_once()

    def book_once(self) -> None:
        flight = self.rng.choice(["fl-101", "fl-202"])
        # Half the customers aim at the first rows, where they race each other.
        wanted = [(f, seat) for f, seat in WANTED if f == flight]
        if self.rng.random() < 0.5:
            wanted = wanted[:12]
        seats = [seat for _, seat in self.rng.sample(wanted, self.rng.choice([1, 1, 2]))]
        created = self.send("POST", "/api/orders", {"flightId": flight, "seats": seats})
        order_id = created.reply.get("orderId") if created.status in (201, 202) else None
        if not order_id:
            time.sleep(0.3)
            return
        state = self.follow(order_id, {"SEATS_RESERVED", *TERMINAL}, 15)
        if state.get("status") != "SEATS_RESERVED":
            return
        if self.rng.random() < 0.3:
            others = [seat for f, seat in WANTED[:200] if f == flight and seat not in seats]
            self.send("PUT", f"/api/orders/{order_id}/seats", {"seats": [self.rng.choice(others)]})
        choice = self.rng.choices([c for c, _ in CODES], [w for _, w in CODES])[0]
        if choice == "walk away":
            return
        if choice == "abandon":
            self.send("DELETE", f"/api/orders/{order_id}")
        else:
            code = f"{self.rng.randrange(1, 88888):05d}" if choice == "random" else choice
            self.send("POST", f"/api/orders/{order_id}/pay", {"paymentCode": code})
        self.follow(order_id, TERMINAL, HOLD_SECONDS + PAYMENT_WINDOW_SECONDS + 5)


class HoldSampler(threading.Thread):
    """Watches Redis: when was each order last seen holding a seat (for the release lateness)."""

    def __init__(self, stack: ChaosStack, stop: threading.Event) -> None:
        super().__init__(name="hold-sampler", daemon=True)
        self.stack, self.stop = stack, stop
        self.last_seen: dict[str, float] = {}  # order id -> wall-clock seconds

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                client = self.stack.redis()
                keys = list(client.scan_iter("hold:*", count=500))
                owners = client.mget(keys) if keys else []
            except redis.RedisError:
                continue
            now = time.time()
            for owner in owners:
                if owner:
                    self.last_seen[owner.decode()] = now


# --- The checks ------------------------------------------------------------------------------


@dataclass
class Findings:
    violations: list[str] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)  # ids of orders that never ended
    diagnosis: list[str] = field(default_factory=list)  # what the stores and Temporal say of them

    def fail(self, message: str) -> None:
        self.violations.append(message)


def _db(stack: ChaosStack) -> psycopg.Connection:
    return psycopg.connect(
        stack.env["DATABASE_URL"].replace("postgres://", "postgresql://"), connect_timeout=5
    )


def check_sales(stack: ChaosStack, findings: Findings, when: str) -> None:
    with _db(stack) as db:
        doubles = db.execute(
            "SELECT b.flight_id, s.code, count(*) FROM flights_bookedseat b "
            "JOIN flights_seat s ON s.id = b.seat_id GROUP BY b.flight_id, s.code HAVING count(*) > 1"
        ).fetchall()
        for flight, seat, count in doubles:
            findings.fail(f"{when}: seat {flight} {seat} sold {count} times")
        unconfirmed = db.execute(
            "SELECT b.order_id, o.state FROM flights_bookedseat b JOIN orders_order o ON o.id = b.order_id "
            "WHERE o.state <> 'CONFIRMED'"
        ).fetchall()
        for order_id, state in unconfirmed:
            findings.fail(f"{when}: a seat is sold to {order_id}, which is {state}")
        overlap = db.execute(
            "SELECT a.id, b.id FROM orders_order a JOIN orders_order b "
            "ON a.flight_id = b.flight_id AND a.id < b.id "
            "WHERE a.state = 'CONFIRMED' AND b.state = 'CONFIRMED' AND a.seats && b.seats"
        ).fetchall()
        for first, second in overlap:
            findings.fail(f"{when}: confirmed orders {first} and {second} share a seat")


def check_phantoms(
    stack: ChaosStack, journal: Journal, findings: Findings, when: str, *, grace: float
) -> None:
    """Every order that exists was answered to its customer (orders younger than ``grace``
    seconds may still be waiting for their answer)."""
    with _db(stack) as db:
        rows = db.execute(
            "SELECT id FROM orders_order WHERE created_at < now() - make_interval(secs => %s)", (grace,)
        ).fetchall()
    with journal.lock:
        told = set(journal.owner)
    for (order_id,) in rows:
        if order_id not in told:
            findings.fail(f"{when}: order {order_id} exists, but no customer was ever given its id")


@dataclass
class Money:
    """The gateway's ledger at the end, the three invariants of exactly-once money, and its amounts."""

    charges: int = 0  # charges made (live or refunded since)
    live: int = 0
    refunded: int = 0
    voided: int = 0  # keys given up before anything was charged
    confirmed: int = 0
    several_live: list[str] = field(default_factory=list)  # orders with more than one live charge
    confirmed_without_one: list[str] = field(default_factory=list)  # CONFIRMED, not exactly one
    ended_with_money: list[str] = field(default_factory=list)  # ended without seats, still charged
    approvals_shown: int = 0  # attempts the pages showed as approved (SUCCEEDED or REFUNDED)
    replayed: int = 0  # retries the gateway answered with an earlier attempt's approval
    # Amounts, per currency, in minor units: charged, refunded, and the CONFIRMED orders' totals.
    amounts: list[tuple[str, int, int, int]] = field(default_factory=list)
    wrong_amount: list[str] = field(default_factory=list)  # charged other than the order's total
    unbalanced: list[str] = field(default_factory=list)  # currencies where charged - refunded != sold

    def lines(self) -> list[str]:
        def verdict(found: list[str]) -> str:
            return "ok" if not found else f"VIOLATED by {len(found)}: {', '.join(found[:5])}"

        def shown(amount: int, currency: str) -> str:
            return MoneyAmount(amount, currency).format() if currency else f"{amount} (no currency)"

        sums = "; ".join(
            f"charged {shown(charged, currency)}, refunded {shown(refunded, currency)}, "
            f"CONFIRMED orders' totals {shown(sold, currency)}"
            for currency, charged, refunded, sold in self.amounts
        )
        return [
            f"\nmoney: {self.charges} charges ({self.live} live, {self.refunded} refunded), "
            f"{self.voided} keys voided before any charge, {self.approvals_shown} attempts shown approved, "
            f"{self.replayed} retries answered with an earlier approval (charged once)",
            f"  amounts: {sums or 'nothing charged'}",
            f"  at most one live charge per order: {verdict(self.several_live)}",
            f"  every CONFIRMED order has exactly one ({self.confirmed} orders): "
            + verdict(self.confirmed_without_one),
            f"  an order that ended without its seats has none: {verdict(self.ended_with_money)}",
            f"  every charge is its order's total, every refund its charge: {verdict(self.wrong_amount)}",
            f"  charged - refunded = the CONFIRMED orders' totals: {verdict(self.unbalanced)}",
        ]


def check_money(stack: ChaosStack, findings: Findings) -> Money:
    with _db(stack) as db:
        money = Money(
            *db.execute(
                "SELECT count(*) FILTER (WHERE status <> 'VOIDED'), "
                "count(*) FILTER (WHERE status = 'CHARGED'), count(*) FILTER (WHERE status = 'REFUNDED'), "
                "count(*) FILTER (WHERE status = 'VOIDED') FROM payments_charge"
            ).fetchone()  # type: ignore[misc]
        )
        money.several_live = [
            row[0]
            for row in db.execute(
                "SELECT order_id FROM payments_charge WHERE status = 'CHARGED' "
                "GROUP BY order_id HAVING count(*) > 1"
            )
        ]
        confirmed = db.execute(
            "SELECT o.id, count(c.id) FROM orders_order o LEFT JOIN payments_charge c "
            "ON c.order_id = o.id AND c.status = 'CHARGED' WHERE o.state = 'CONFIRMED' GROUP BY o.id"
        ).fetchall()
        money.confirmed = len(confirmed)
        money.confirmed_without_one = [order_id for order_id, live in confirmed if live != 1]
        money.ended_with_money = [
            f"{order_id} ({state})"
            for order_id, state in db.execute(
                "SELECT DISTINCT o.id, o.state FROM orders_order o "
                "JOIN payments_charge c ON c.order_id = o.id "
                "WHERE c.status = 'CHARGED' AND o.state IN ('FAILED', 'EXPIRED', 'CANCELLED')"
            )
        ]
        money.wrong_amount = [
            f"{charge_id} ({amount} {currency}, order {order_id} {total} {order_currency})"
            for charge_id, amount, currency, order_id, total, order_currency in db.execute(
                "SELECT c.id, c.amount, c.currency, o.id, o.total_amount, o.currency FROM payments_charge c "
                "JOIN orders_order o ON o.id = c.order_id WHERE c.status <> 'VOIDED' AND ("
                "c.amount IS DISTINCT FROM o.total_amount OR c.currency <> o.currency "
                "OR (c.status = 'REFUNDED' AND c.refunded_amount <> c.amount))"
            )
        ]
        money.amounts = [
            (currency, int(charged), int(refunded), int(sold))
            for currency, charged, refunded, sold in db.execute(
                "WITH money AS ("
                "  SELECT currency, amount AS charged, refunded_amount AS refunded, 0 AS sold "
                "  FROM payments_charge WHERE status <> 'VOIDED' "
                "  UNION ALL SELECT currency, 0, 0, total_amount FROM orders_order WHERE state = 'CONFIRMED'"
                ") SELECT currency, sum(charged), sum(refunded), sum(sold) FROM money "
                "GROUP BY currency ORDER BY currency"
            )
        ]
        money.unbalanced = [
            f"{currency or '(none)'} {charged} - {refunded} != {sold}"
            for currency, charged, refunded, sold in money.amounts
            if charged - refunded != sold
        ]
        money.approvals_shown, money.replayed = db.execute(
            "SELECT count(*) FILTER (WHERE outcome IN ('SUCCEEDED', 'REFUNDED')), "
            "count(*) FILTER (WHERE outcome = 'ALREADY_APPROVED') FROM payments_paymentattempt"
        ).fetchone()  # type: ignore[misc]
    for order_id in money.several_live:
        findings.fail(f"end: order {order_id} has more than one live charge")
    for order_id in money.confirmed_without_one:
        findings.fail(f"end: CONFIRMED order {order_id} does not have exactly one live charge")
    for order in money.ended_with_money:
        findings.fail(f"end: order {order} ended without its seats, and its charge was not refunded")
    for charge in money.wrong_amount:
        findings.fail(f"end: charge {charge} is not what the order's total says")
    for line in money.unbalanced:
        findings.fail(f"end: the money does not balance: {line}")
    return money


def orders(stack: ChaosStack) -> list[dict]:
    with _db(stack) as db:
        cursor = db.execute(
            "SELECT id, flight_id, state, seats, hold_expires_at, last_error, version, updated_at "
            "FROM orders_order"
        )
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def check_final(stack: ChaosStack, journal: Journal, sampler: HoldSampler, findings: Findings) -> None:
    all_orders = orders(stack)
    by_id = {order["id"]: order for order in all_orders}
    for order in all_orders:
        if order["state"] not in TERMINAL:
            findings.fail(f"end: order {order['id']} is stuck in {order['state']}")
            findings.stuck.append(order["id"])
    # No seat held for an order that has ended.
    client = stack.redis()
    keys = list(client.scan_iter("hold:*", count=500))
    for key, owner in zip(keys, client.mget(keys) if keys else [], strict=True):
        owner_id = owner.decode() if owner else ""
        if by_id.get(owner_id, {}).get("state") in TERMINAL:
            findings.fail(f"end: {key.decode()} is still held by {owner_id}, which has ended")
    # How late each ended order's seats came free (not asserted: these machines are noisy).
    with _db(stack) as db:
        ended = dict(
            db.execute(
                "SELECT order_id, max(at) FROM orders_orderevent WHERE state IN "
                "('FAILED', 'EXPIRED', 'CANCELLED') GROUP BY order_id"
            ).fetchall()
        )
    for order_id, at in ended.items():
        order = by_id.get(order_id)
        if order is None or order_id not in sampler.last_seen:
            continue
        due = order["hold_expires_at"] if order["state"] == "EXPIRED" and order["hold_expires_at"] else at
        findings.lateness.append(max(0.0, sampler.last_seen[order_id] - due.timestamp()))
    check_refusals_changed_nothing(stack, journal, findings)
    asyncio.run(check_workflows(stack, by_id, findings))
    for order_id in findings.stuck[:3]:
        findings.diagnosis += asyncio.run(explain(stack, by_id[order_id]))
    if findings.stuck:
        findings.diagnosis += worker_errors(stack) + busy_worker_threads(stack)


def check_refusals_changed_nothing(stack: ChaosStack, journal: Journal, findings: Findings) -> None:
    """A payment attempt, a cancellation or a seat change only when some request for it got a 2xx."""
    accepted: dict[tuple[str, str], list[object]] = defaultdict(list)
    for call in journal.calls:
        parts = call.path.strip("/").split("/")
        if len(parts) >= 3 and parts[1] == "orders" and 200 <= call.status < 300:
            accepted[(parts[2], f"{call.method} {'/'.join(parts[3:])}")].append(call.body)
    with _db(stack) as db:
        paid = [row[0] for row in db.execute("SELECT DISTINCT order_id FROM payments_paymentattempt")]
        cancelled = [
            row[0]
            for row in db.execute(
                "SELECT id FROM orders_order WHERE state = 'CANCELLED' AND last_error LIKE 'You cancelled%%'"
            )
        ]
        changes = db.execute(
            "SELECT order_id, seats FROM orders_orderevent e WHERE state = 'SEATS_RESERVED' AND version > "
            "(SELECT min(version) FROM orders_orderevent f WHERE f.order_id = e.order_id "
            "AND f.state = 'SEATS_RESERVED')"
        ).fetchall()
    for order_id in paid:
        if not accepted.get((order_id, "POST pay")):
            findings.fail(f"end: {order_id} has payment attempts, but no payment request was accepted")
    for order_id in cancelled:
        if not accepted.get((order_id, "DELETE ")):
            findings.fail(f"end: {order_id} was cancelled, but no cancellation was accepted")
    for order_id, seats in changes:
        asked = [
            body.get("seats") for body in accepted.get((order_id, "PUT seats"), []) if isinstance(body, dict)
        ]
        if seats not in asked:
            findings.fail(f"end: {order_id} changed to {seats}, which no accepted request asked for")


async def _temporal(stack: ChaosStack) -> TemporalClient:
    """A client on the chaos stack's Temporal, with its payload key, as its web and worker have."""
    from common import payload_codec, temporal_connection

    connection = temporal_connection.load(stack.env)
    return await temporal_connection.connect(connection, keys=payload_codec.from_environ(stack.env))


async def check_workflows(stack: ChaosStack, by_id: dict[str, dict], findings: Findings) -> None:
    client = await _temporal(stack)
    running = [
        execution.id.removeprefix("booking-")
        async for execution in client.list_workflows('ExecutionStatus="Running"')
    ]
    for order_id in running:
        if by_id.get(order_id, {}).get("state") in TERMINAL:
            findings.fail(f"end: the workflow of {order_id} still runs, but its order has ended")


async def explain(stack: ChaosStack, order: dict) -> list[str]:
    """What the row, the history rows, Temporal and the logs say of an order that never ended:
    the report carries it, because CI keeps nothing of the run but what it prints."""
    from temporalio.api.enums.v1 import PendingActivityState, PendingWorkflowTaskState

    order_id = order["id"]
    lines = [f"\n{order_id}: row {order['state']} v{order.get('version')}, updated {order['updated_at']}"]
    with _db(stack) as db:
        for version, state, at, detail in db.execute(
            "SELECT version, state, at, detail FROM orders_orderevent WHERE order_id = %s ORDER BY id",
            (order_id,),
        ):
            lines.append(f"  event v{version} {state} at {at:%H:%M:%S.%f} {detail}")
        for attempt, outcome, started, finished in db.execute(
            "SELECT attempt, outcome, started_at, finished_at FROM payments_paymentattempt "
            "WHERE order_id = %s ORDER BY attempt",
            (order_id,),
        ):
            lines.append(f"  payment attempt {attempt} {outcome} {started:%H:%M:%S.%f} .. {finished}")
    try:
        client = await _temporal(stack)
        handle = client.get_workflow_handle(f"booking-{order_id}")
        described = await handle.describe()
        raw = described.raw_description
        lines.append(f"  workflow {described.status.name if described.status else '?'}")
        if raw.HasField("pending_workflow_task"):
            task = raw.pending_workflow_task
            state = PendingWorkflowTaskState.Name(task.state)
            lines.append(f"  pending workflow task: {state}, attempt {task.attempt}")
        for pending in raw.pending_activities:
            lines.append(
                f"  pending activity {pending.activity_type.name}: "
                f"{PendingActivityState.Name(pending.state)}, attempt "
                f"{pending.attempt}, last failure {pending.last_failure.message!r}"
            )
        events = [event async for event in handle.fetch_history_events()]
        for event in events[-20:]:
            kind = event.WhichOneof("attributes") or ""
            failure = getattr(getattr(event, kind, None), "failure", None)
            why = f" {failure.message!r}" if failure is not None and failure.message else ""
            at = event.event_time.ToDatetime()
            what = kind.removesuffix("_event_attributes")
            lines.append(f"  history {event.event_id} {at:%H:%M:%S.%f} {what}{why}")
    except Exception as error:  # a diagnosis never hides the finding it explains
        lines.append(f"  Temporal: {type(error).__name__}: {error}")
    for name in ("worker.log", "web.log", "temporal.log"):
        path = stack.data / name
        mentions = [line for line in path.read_text(errors="replace").splitlines() if order_id in line]
        lines += [f"  {name}: {line[:300]}" for line in mentions[-15:]]
    return lines


def worker_errors(stack: ChaosStack) -> list[str]:
    """The unexpected errors the worker's tracebacks end with, most frequent first (refusals and
    declines, ``ApplicationError``, left out): an activity retried without end shows as the same
    error again and again, and its traceback does not name the order."""
    text = (stack.data / "worker.log").read_text(errors="replace")
    errors = Counter(
        match.group(0)[:200]
        for match in ERROR_LINE.finditer(text)
        if not match.group(0).startswith("temporalio.exceptions.ApplicationError")
    )
    lines = ["\nunexpected errors in the worker's log (count):"]
    return lines + [f"  {n:4} {line}" for line, n in errors.most_common(8)]


def busy_worker_threads(stack: ChaosStack) -> list[str]:
    """The stacks of the worker's threads that are in the project's code (runworker dumps every
    thread on SIGUSR1): an activity blocked for good shows where."""
    log_file = stack.data / "worker.log"
    before = log_file.stat().st_size
    stack.signal("worker", signal.SIGUSR1)
    dump = ""
    deadline = time.monotonic() + 10
    while "Current thread" not in dump and time.monotonic() < deadline:  # the dump's last thread
        time.sleep(0.1)
        with log_file.open("rb") as file:
            file.seek(before)
            dump = file.read().decode(errors="replace")
    lines = ["\nworker threads in the project's code (SIGUSR1):"]
    for thread in dump.split("\n\n"):
        frames = thread.strip().splitlines()
        ours = any(str(ROOT) in frame and ".venv" not in frame for frame in frames[1:])
        if frames and frames[0].startswith("Thread") and ours:  # not the main thread's loop
            lines += [f"  {frame}" for frame in frames[:14]]
    return lines


# --- The run -----------------------------------------------------------------------------------


def inject(
    stack: ChaosStack, faults: list[Fault], started: float, journal: Journal, findings: Findings
) -> None:
    for fault in faults:
        delay = started + fault.at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        log(f"fault: {fault.name}")
        fault.started = time.monotonic()
        try:
            fault.inject(stack)
            if fault.recover is not None:
                time.sleep(fault.lasts)
                fault.recover(stack)
        except Exception as error:  # a fault that could not be injected is reported, not hidden
            findings.fail(f"could not inject '{fault.name}': {type(error).__name__}: {error}")
        fault.over = time.monotonic()


def check_after_faults(
    stack: ChaosStack, faults: list[Fault], journal: Journal, findings: Findings, stop: threading.Event
) -> None:
    """Once each fault's window is over: no double sale, no phantom (the stack has recovered)."""
    for fault in faults:
        while not stop.is_set() and (not fault.over or time.monotonic() < fault.window()[1]):
            time.sleep(0.5)
        if stop.is_set():
            return
        try:
            check_sales(stack, findings, f"after {fault.name}")
            check_phantoms(stack, journal, findings, f"after {fault.name}", grace=30)
        except psycopg.Error as error:
            findings.fail(f"after {fault.name}: PostgreSQL did not answer ({error})")


def settle(stack: ChaosStack, journal: Journal, shoppers: list[Shopper], seconds: float) -> None:
    """Follow every order to its end, each as its own customer would (that is also what settles
    a request whose answer was late)."""
    clients = {shopper.number: shopper.client for shopper in shoppers}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        live = [order for order in orders(stack) if order["state"] not in TERMINAL]
        if not live:
            return
        for order in live:
            client = clients.get(journal.owner.get(order["id"], -1))
            if client is None:
                continue
            with contextlib.suppress(OSError):
                client.call("GET", f"/api/orders/{order['id']}/status")
        time.sleep(1)


def recovers(stack: ChaosStack, findings: Findings) -> None:
    """After everything: a new customer books a free seat and it confirms; health is 200."""
    client = Client(stack.url)
    status, health, _ = client.call("GET", "/healthz")
    if status != 200:
        findings.fail(f"end: /healthz is {status}: {health}")
    _, flight, _ = client.call("GET", "/api/flights/fl-303")
    free = [
        seat["id"] for seat in flight.get("seatMap", {}).get("seats", []) if seat["status"] == "available"
    ]
    status, created, _ = client.call(
        "POST", "/api/orders", {"flightId": "fl-303", "seats": free[:1]}, str(uuid.uuid4())
    )
    order_id = created.get("orderId")
    if status not in (201, 202) or not order_id:
        findings.fail(f"end: a new booking was refused after the run: {status} {created}")
        return
    for _ in range(60):
        _, state, _ = client.call("GET", f"/api/orders/{order_id}/status")
        if state.get("status") == "SEATS_RESERVED":
            break
        time.sleep(0.5)
    client.call("POST", f"/api/orders/{order_id}/pay", {"paymentCode": "00000"}, str(uuid.uuid4()))
    for _ in range(60):
        _, state, _ = client.call("GET", f"/api/orders/{order_id}/status")
        if state.get("status") in TERMINAL:
            break
        time.sleep(0.5)
    if state.get("status") != "CONFIRMED":
        findings.fail(f"end: a new booking after the run did not confirm: {state}")


def report(
    journal: Journal, faults: list[Fault], stack: ChaosStack, findings: Findings, seconds: float, money: Money
) -> str:
    lines = [f"\nchaos: {len(journal.calls)} requests in {seconds:.0f} s of load"]
    by_endpoint: dict[str, Counter[int]] = defaultdict(Counter)
    for call in journal.calls:
        parts = call.path.strip("/").split("/")
        endpoint = f"{call.method} /api/orders" + ("/{id}/" + "/".join(parts[3:]) if len(parts) > 2 else "")
        by_endpoint[endpoint.rstrip("/")][call.status] += 1
    lines.append(f"\n{'request':32} {'answers (status: count)'}")
    for endpoint, statuses in sorted(by_endpoint.items()):
        lines.append(
            f"{endpoint:32} "
            + "  ".join(f"{status or 'none'}: {n}" for status, n in sorted(statuses.items()))
        )
    outcome = Counter(order["state"] for order in orders(stack))
    lines.append("\norders by outcome: " + ", ".join(f"{state} {n}" for state, n in sorted(outcome.items())))
    lines.append(f"\n{'fault':30} {'window s':>9} {'5xx':>5} {'202 pending':>12}")
    for fault in faults:
        low, high = fault.window()
        in_window = [c for c in journal.calls if low <= c.ended <= high]
        errors = sum(c.status >= 500 for c in in_window)
        pending = sum(c.status == 202 and bool(c.reply.get("pending")) for c in in_window)
        lines.append(f"{fault.name:30} {high - low:9.1f} {errors:5} {pending:12}")
    late = findings.lateness
    lines.append(
        f"\nhold release after the order ended (sampled every 0.5 s): p50 {percentile(late, 50):.1f} s, "
        f"max {max(late, default=0):.1f} s ({len(late)} orders)"
    )
    lines += money.lines()
    lines.append(f"invariant violations: {len(findings.violations)}")
    lines += [f"  - {violation}" for violation in findings.violations[:50]]
    lines += findings.diagnosis
    return "\n".join(lines)


def check_five_hundreds(journal: Journal, faults: list[Fault], findings: Findings) -> None:
    windows = [fault.window() for fault in faults]
    for call in journal.calls:
        if call.status == 500:
            findings.fail(f"{call.method} {call.path} answered 500: {call.reply}")
        elif call.status >= 500 and not any(
            low <= call.ended <= high or low <= call.started <= high for low, high in windows
        ):
            nearest = min(faults, key=lambda fault: abs(fault.started - call.started), default=None)
            where = (
                f" ({call.reply.get('error')}, {call.ended - nearest.over:+.1f} s after {nearest.name}"
                f" was over, {call.ended - call.started:.1f} s to answer)"
                if nearest
                else ""
            )
            outside = f"{call.method} {call.path} answered {call.status} outside every fault's window"
            findings.fail(outside + where)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="about a minute of load (part of make test)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds of load (default 130, short 48)")
    parser.add_argument("--customers", type=int, default=6)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
    seconds = args.seconds or (48.0 if args.short else 130.0)
    faults = [fault for fault in plan(args.short) if fault.at < seconds - 3]
    log(f"chaos: seed {seed} (rerun with --seed {seed}), {args.customers} customers, {seconds:.0f} s")
    data = Path(tempfile.mkdtemp(prefix="booking-chaos-"))
    os.chmod(data, 0o755)
    stack = ChaosStack(data)
    findings, journal, stop = Findings(), Journal(), threading.Event()
    try:
        stack.start()
        sampler = HoldSampler(stack, stop)
        sampler.start()
        started = time.monotonic()
        shoppers = [Shopper(n, stack.url, journal, seed, started + seconds) for n in range(args.customers)]
        for shopper in shoppers:
            shopper.start()
        checker = threading.Thread(
            target=check_after_faults, args=(stack, faults, journal, findings, stop), daemon=True
        )
        checker.start()
        inject(stack, faults, started, journal, findings)
        for shopper in shoppers:
            shopper.join(timeout=max(1.0, started + seconds + 60 - time.monotonic()))
        checker.join(timeout=30)
        log("chaos: load over; following every order to its end")
        settle(stack, journal, shoppers, HOLD_SECONDS + PAYMENT_WINDOW_SECONDS + 40)
        stop.set()
        sampler.join(timeout=5)
        check_sales(stack, findings, "end")
        check_phantoms(stack, journal, findings, "end", grace=0)
        check_final(stack, journal, sampler, findings)
        check_five_hundreds(journal, faults, findings)
        money = check_money(stack, findings)
        recovers(stack, findings)
        print(report(journal, faults, stack, findings, seconds, money), flush=True)
    finally:
        stop.set()
        stack.stop()
        if findings.violations:
            log(f"chaos: logs kept in {data}")
        else:
            shutil.rmtree(data, ignore_errors=True)
    log(f"chaos: {'FAILED' if findings.violations else 'passed'} (seed {seed})")
    return 1 if findings.violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

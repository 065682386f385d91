"""The chaos suite's stack: PostgreSQL, Redis, Temporal, the worker and gunicorn, every part its
own process, so that each can be broken alone; with short rules (a 20 s hold, a quick simulated
gateway). The hoarding check (tools/abuse.py) starts the same stack with its own rules."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import psycopg
import redis

from common.payload_codec import new_key_entry
from devstack.ports import free_port
from devstack.postgres_server import start_postgres
from devstack.redis_server import start_redis
from devstack.supervisor import ROOT, Supervisor, log
from devstack.temporal_server import start_temporal
from orders.workflow_contract import PAYMENT_BACKOFF_CAP
from temporal_worker.workflows import PAYMENT_RETRY
from tools.http_client import Session

if TYPE_CHECKING:
    from temporalio.client import Client as TemporalClient

PYTHON = sys.executable
BIN = Path(PYTHON).parent
HOLD_SECONDS = 20
PAYMENT_TIMEOUT_SECONDS = 2  # each attempt's
PAYMENT_ATTEMPTS = 3  # a booking's, under the default settings
# The longest a payment can take: every attempt's timeout and the workflow's backoffs between them.
PAYMENT_WINDOW_SECONDS = PAYMENT_ATTEMPTS * PAYMENT_TIMEOUT_SECONDS + sum(
    min(
        PAYMENT_RETRY.initial_interval * PAYMENT_RETRY.backoff_coefficient**n, PAYMENT_BACKOFF_CAP
    ).total_seconds()
    for n in range(PAYMENT_ATTEMPTS - 1)
)


class ChaosStack:
    """PostgreSQL, Redis, Temporal, the worker and gunicorn, each of which can be broken alone."""

    def __init__(self, tool: str = "chaos") -> None:
        """``tool`` names the run: its data and logs go to a new folder, booking-<tool>-*, which
        the servers can read when they run as another user (as PostgreSQL does under root)."""
        self.tool = tool
        self.data = Path(tempfile.mkdtemp(prefix=f"booking-{tool}-"))
        os.chmod(self.data, 0o755)
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
            PAYMENT_VALIDATION_TIMEOUT=f"{PAYMENT_TIMEOUT_SECONDS}s",
            PAYMENT_LATENCY_MIN="0.2s",
            PAYMENT_LATENCY_MAX="1s",
            PAYMENT_FAILURE_RATE="0.15",
            TEMPORAL_ANSWER_TIMEOUT="3s",
            TEMPORAL_TASK_QUEUE=tool,
            # Payloads encrypted, as in production: the faults meet the codec too.
            PAYLOAD_ENCRYPTION_KEYS=new_key_entry("chaos-1"),
            PAYLOAD_ENCRYPTION_KEY_ID="",
            # Its customers all come from 127.0.0.1: the limits on one client would refuse them.
            RATE_LIMITS="off",
        )
        for name in ("DATABASE_URL", "REDIS_URL", "TEMPORAL_HOST", "TEMPORAL_ADDRESS", "TEMPORAL_PROFILE"):
            self.env.pop(name, None)
        self.frozen: list[int] = []  # the PostgreSQL processes a fault has stopped

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

    def holds(self, flight: str = "*") -> dict[str, str]:
        """The seat holds in Redis (of one flight, or all): each key, and the order holding it."""
        client = self.redis()
        keys = list(client.scan_iter(match=f"hold:{{{flight}}}:*" if flight != "*" else "hold:*", count=500))
        owners = client.mget(keys) if keys else []
        return {_text(key): _text(owner) for key, owner in zip(keys, owners, strict=True) if owner}

    def database(self) -> psycopg.Connection:
        return psycopg.connect(
            self.env["DATABASE_URL"].replace("postgres://", "postgresql://"), connect_timeout=5
        )

    def orders(self) -> list[dict]:
        """Every order row, as a dict by column."""
        with self.database() as db:
            cursor = db.execute(
                "SELECT id, flight_id, state, seats, hold_expires_at, last_error, version, updated_at "
                "FROM orders_order"
            )
            names = [column.name for column in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    async def temporal(self) -> TemporalClient:
        """A client on the stack's Temporal, with its payload key, as its web and worker have."""
        from common import payload_codec, temporal_connection

        connection = temporal_connection.load(self.env)
        return await temporal_connection.connect(connection, keys=payload_codec.from_environ(self.env))

    def verdict(self, violations: list[str], note: str = "") -> int:
        """Say how the run went; its exit code: 1 on any violation."""
        log(f"{self.tool}: {'FAILED' if violations else 'passed'}{f' ({note})' if note else ''}")
        return 1 if violations else 0

    def stop(self, *, keep_logs: bool = False) -> None:
        """Stop every part, and throw its folder away unless ``keep_logs`` (a run that failed)."""
        self.processes.stop()
        if keep_logs:
            log(f"{self.tool}: logs kept in {self.data}")
        else:
            shutil.rmtree(self.data, ignore_errors=True)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _run(argv: list[str], *, env: dict[str, str]) -> None:
    subprocess.run(argv, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def _answers(base_url: str, path: str) -> bool:
    try:
        status = Session(base_url).request("GET", path).status
    except OSError:
        return False
    return status in (200, 503)

"""Shared fixtures. Integration tests run on the real services that ``make test`` starts
(PostgreSQL, Redis, the Temporal dev server), with a real worker process on the test database
and short timeouts set through the settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.servers.basehttp import ThreadedWSGIServer
from django.db import connection
from django.test import override_settings
from temporalio.service import RPCError, RPCStatusCode

from devstack.ports import free_port
from devstack.redis_server import start_redis
from devstack.supervisor import Supervisor, command_for
from devstack.temporal_server import start_temporal
from flights import holds
from flights.models import Flight
from flights.services import seed_demo_flights
from tests import contract
from tests.helpers import ApiClient, wait_for

ROOT = Path(__file__).resolve().parent.parent

# The live server is Django's threaded test server, whose listen backlog (10) resets the 11th
# simultaneous connection before any request runs; gunicorn's is 2048. The race tests open 30.
ThreadedWSGIServer.request_queue_size = 128
TASK_QUEUE = f"booking-test-{uuid.uuid4().hex[:8]}"

# What the worker process of the tests runs with (its own settings, from its environment).
WORKER_ENV = {
    "PAYMENT_FAILURE_RATE": "0",
    # 99999 declines after this latency: long enough that each retry shows on a page polled
    # every 2 s; 00000 stays instant.
    "PAYMENT_LATENCY_MIN": "3s",
    "PAYMENT_LATENCY_MAX": "3s",
    "PAYMENT_VALIDATION_TIMEOUT": "2s",
    "TEMPORAL_TASK_QUEUE": TASK_QUEUE,
    # No reconciliation schedule running under the tests: they run it when they mean to
    # (tests/test_reconciliation.py starts a worker with one).
    "RECONCILE_EVERY": "0",
    "RETENTION_EVERY": "0",  # nor a retention one (tests/test_retention.py runs it)
}
# What the web side (the live server in this process) runs with: the rules each new order
# carries into its workflow.
SHORT_TIMEOUTS = {
    # The web waits this long before it answers 202 "still confirming": long, so that a test on a
    # busy machine still sees the workflow's own answer (tests/test_exactly_once.py sets 1.5 s).
    "TEMPORAL_ANSWER_TIMEOUT": timedelta(seconds=20),
    "SEAT_RESERVATION_TIMEOUT": timedelta(seconds=30),
    "PAYMENT_VALIDATION_TIMEOUT": timedelta(seconds=5),
    "PAYMENT_MAX_ATTEMPTS": 3,
    "TEMPORAL_TASK_QUEUE": TASK_QUEUE,
}


def _database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@dataclass
class WorkerProcess:
    """``manage.py runworker`` on the test database, as its own process."""

    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log: Path = ROOT / ".data" / "test-worker.log"

    @property
    def metrics_url(self) -> str:
        """The product's metrics this worker serves (its activities' counts, the live holds)."""
        return f"http://127.0.0.1:{self.env['WORKER_METRICS_PORT']}/metrics"

    @property
    def sdk_metrics_url(self) -> str:
        """The Temporal SDK's own metrics of this worker."""
        return f"http://127.0.0.1:{self.env['TEMPORAL_METRICS_PORT']}/metrics"

    def start(self) -> None:
        # Ports of its own each time: tests run beside `make run`, and beside other workers.
        self.env = {
            **self.env,
            "METRICS_HOST": "127.0.0.1",
            "WORKER_METRICS_PORT": str(free_port()),
            "TEMPORAL_METRICS_PORT": str(free_port()),
        }
        self.log.parent.mkdir(exist_ok=True)
        out = open(self.log, "ab")  # noqa: SIM115 (the child owns it)
        self.process = subprocess.Popen(
            command_for([sys.executable, "manage.py", "runworker"]),  # dies with the test run
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: b"Worker ready" in self.log.read_bytes(), timeout=30, what="the worker to start")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        self.process = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """The worker stopped in its tracks (SIGSTOP), as a stalled or overloaded host would; it
        carries on where it was when the block ends."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        if self.process is not None:
            self.stop()
        self.log.write_bytes(b"")
        self.start()


@pytest.fixture(scope="session", autouse=True)
def api_contract_checked() -> Iterator[None]:
    """Every answer of the API, to every test, is checked against its OpenAPI document
    (tests/contract.py), in the live server and the test client alike."""
    with override_settings(MIDDLEWARE=["tests.contract.ContractMiddleware", *django_settings.MIDDLEWARE]):
        yield


@pytest.fixture(autouse=True)
def answers_as_documented() -> Iterator[None]:
    """A test whose requests got an answer the OpenAPI document does not describe fails."""
    contract.VIOLATIONS.clear()
    contract.CHECKED.clear()
    yield
    found = list(contract.VIOLATIONS)
    assert not found, "answers that booking_site/openapi.yaml does not describe:\n" + "\n".join(found)


@pytest.fixture(scope="session")
def worker(django_db_setup: None, django_db_blocker: object) -> Iterator[WorkerProcess]:
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        url = _database_url()
    env = dict(os.environ, DATABASE_URL=url, **WORKER_ENV)
    process = WorkerProcess(env=env)
    process.log.write_bytes(b"") if process.log.exists() else None
    process.start()
    yield process
    if process.process is not None:
        process.stop()


@pytest.fixture
def demo_flights(db: None) -> dict[str, Flight]:
    seed_demo_flights()
    return {flight.id: flight for flight in Flight.objects.all()}


@pytest.fixture
def clean_redis() -> None:
    holds.connection().flushdb()


@dataclass
class Stack:
    url: str
    worker: WorkerProcess
    flights: dict[str, Flight]

    def customer(self) -> ApiClient:
        return ApiClient(self.url)


@pytest.fixture
def stack(
    transactional_db: None, live_server: object, worker: WorkerProcess, settings: object, clean_redis: None
) -> Iterator[Stack]:
    """The whole system on real services: live server, worker process, demo flights."""
    for name, value in SHORT_TIMEOUTS.items():
        setattr(settings, name, value)
    seed_demo_flights()
    yield Stack(url=str(live_server), worker=worker, flights={f.id: f for f in Flight.objects.all()})
    _terminate_running_workflows()


@dataclass
class GunicornWeb:
    """The web as production runs it: gunicorn, several worker processes, metrics served by the
    master on their own port."""

    url: str
    metrics_url: str
    process: subprocess.Popen[bytes]
    log: Path


def start_gunicorn(env: dict[str, str], data: Path, *, ready_path: str = "/api/flights") -> GunicornWeb:
    """``ready_path``: what must answer 200 (/livez for a production configuration, whose host
    validation and https redirect refuse a plain request to 127.0.0.1)."""
    web_port, metrics_port = free_port(), free_port()
    log = data / "gunicorn.log"
    process = subprocess.Popen(
        command_for(  # dies with the test run
            [
                str(Path(sys.executable).parent / "gunicorn"),
                *("-c", "booking_site/gunicorn.py", "--no-control-socket", "booking_site.wsgi"),
            ]
        ),
        cwd=ROOT,
        env={
            **env,
            "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": str(web_port),
            "METRICS_HOST": "127.0.0.1",
            "METRICS_PORT": str(metrics_port),
            "PROMETHEUS_MULTIPROC_DIR": str(data / "web-metrics"),
            "WEB_CONCURRENCY": "2",
        },
        stdout=open(log, "ab"),  # noqa: SIM115 (the child owns it)
        stderr=subprocess.STDOUT,
    )
    web = GunicornWeb(
        url=f"http://127.0.0.1:{web_port}",
        metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
        process=process,
        log=log,
    )
    probe = ApiClient(web.url)

    def answering() -> bool:
        assert process.poll() is None, f"gunicorn exited with {process.returncode}: {log.read_text()}"
        try:
            return probe.get(ready_path).status == 200
        except OSError:
            return False

    wait_for(answering, timeout=60, interval=0.2, what=f"gunicorn to answer ({log})")
    return web


@pytest.fixture(scope="session")
def session_gunicorn(
    worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornWeb]:
    """One gunicorn for the session (it starts in seconds, and keeps no state of its own between
    tests: the database and Redis are cleaned for each), stopped before the test database goes."""
    env = dict(worker.env)
    env.update(
        SEAT_RESERVATION_TIMEOUT="30s",
        PAYMENT_VALIDATION_TIMEOUT="5s",
        PAYMENT_MAX_ATTEMPTS="3",
        TEMPORAL_ANSWER_TIMEOUT="20s",
    )
    web = start_gunicorn(env, tmp_path_factory.mktemp("gunicorn"))
    yield web
    web.process.terminate()
    web.process.wait(timeout=30)


@pytest.fixture
def gunicorn_web(stack: Stack, session_gunicorn: GunicornWeb) -> GunicornWeb:
    """The stack's web served by gunicorn (not the live server), on the test database and the
    stack's worker, with the same rules as the live server."""
    assert session_gunicorn.process.poll() is None, session_gunicorn.log.read_text()
    return session_gunicorn


@dataclass
class EventsServer:
    """The event streams' own process (``python -m booking_site.events_server``, uvicorn) on the
    test database and Redis, as `make run` and compose run it beside the web."""

    port: int
    metrics_url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# What the streams' process of the tests runs with: caps low enough to reach, a quick heartbeat;
# the customers of a test that names no address all come from 127.0.0.1.
EVENTS_ENV = {
    "EVENTS_HEARTBEAT": "1s",
    "EVENTS_RETRY": "500ms",
    "RATE_LIMITS": "on",
    "ADDRESS_MAX_REQUESTS_PER_SECOND": "1000",
    "EVENTS_MAX_STREAMS_PER_SESSION": "3",
    "EVENTS_MAX_STREAMS_PER_ADDRESS": "20",
    "TRUSTED_PROXIES": "127.0.0.1/32",
}


def start_events_server(env: dict[str, str], data: Path) -> EventsServer:
    port, metrics_port = free_port(), free_port()
    log = data / "events.log"
    env = {
        **env,
        "SERVER_HOST": "127.0.0.1",
        "EVENTS_SERVER_PORT": str(port),
        "METRICS_HOST": "127.0.0.1",
        "EVENTS_METRICS_PORT": str(metrics_port),
    }
    process = subprocess.Popen(
        command_for([sys.executable, "-m", "booking_site.events_server"]),  # dies with the test run
        cwd=ROOT,
        env=env,
        stdout=open(log, "ab"),  # noqa: SIM115 (the child owns it)
        stderr=subprocess.STDOUT,
    )
    server = EventsServer(port, f"http://127.0.0.1:{metrics_port}/metrics", process, log)

    def answering() -> bool:
        exited = process.poll()
        assert exited is None, f"the streams' server exited with {exited}: {log.read_text()}"
        try:
            return ApiClient(server.url, headers={"Host": "localhost"}).get("/livez").status == 200
        except OSError:
            return False

    wait_for(answering, timeout=60, interval=0.2, what=f"the streams' server to answer ({log})")
    return server


@pytest.fixture(scope="session")
def events_server(worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventsServer]:
    server = start_events_server({**worker.env, **EVENTS_ENV}, tmp_path_factory.mktemp("events"))
    yield server
    server.process.terminate()
    server.process.wait(timeout=30)


@pytest.fixture
def event_streams(stack: Stack, events_server: EventsServer, settings: object) -> EventsServer:
    """The stack with its streams: the live server's pages open them on the streams' server."""
    assert events_server.process.poll() is None, events_server.log.read_text()
    settings.EVENTS_PUBLIC_PORT = events_server.port  # type: ignore[attr-defined]
    return events_server


def _terminate_running_workflows() -> None:
    """Stop the bookings a test left running, so that none writes into the next test."""
    from common import temporal_client

    async def terminate_all(client):  # type: ignore[no-untyped-def]
        query = f'TaskQueue="{TASK_QUEUE}" AND ExecutionStatus="Running"'
        async for execution in client.list_workflows(query):
            try:
                await client.get_workflow_handle(execution.id).terminate("test finished")
            except RPCError as error:  # visibility lags: it may have completed meanwhile
                if error.status != RPCStatusCode.NOT_FOUND:
                    raise

    temporal_client.call(terminate_all, timeout=30)


class OwnServer:
    """A Temporal or Redis server of a test's own, which the test may stop and start again on the
    same port and data (the suite's shared servers must stay up for every other test)."""

    def __init__(self, kind: str, data: Path) -> None:
        self.kind, self.data, self.port, self.processes = kind, data, free_port(), Supervisor()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.kind == "temporal":  # persisted to a file, so that a restart keeps the histories
            start_temporal(self.processes, self.data, self.port, dict(os.environ), ui_port=None, persist=True)
        else:  # comes back empty, as a Redis without persistence does
            start_redis(self.processes, self.data, self.port, dict(os.environ), persist=False)

    def stop(self) -> None:
        self.processes.stop()


def _own_server(kind: str, data: Path) -> Iterator[OwnServer]:
    server = OwnServer(kind, data)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_temporal(tmp_path: Path) -> Iterator[OwnServer]:
    yield from _own_server("temporal", tmp_path)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnServer]:
    yield from _own_server("redis", tmp_path)


@pytest.fixture
def temporal_of_its_own(stack: Stack, own_temporal: OwnServer, settings: object) -> Iterator[OwnServer]:
    """The stack, with the web and a worker of its own on a Temporal server that the test may stop
    and start again (persisted to a file, so a restart keeps the histories)."""
    suite_temporal = settings.TEMPORAL_HOST  # type: ignore[attr-defined]
    settings.TEMPORAL_HOST = own_temporal.address  # type: ignore[attr-defined]
    worker = WorkerProcess(
        env={**stack.worker.env, "TEMPORAL_HOST": own_temporal.address},
        log=stack.worker.log.with_name("own-temporal-worker.log"),
    )
    worker.start()
    yield own_temporal
    worker.stop()
    settings.TEMPORAL_HOST = suite_temporal  # type: ignore[attr-defined]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests that use the whole stack are marked, so `-m "not stack"` runs only fast ones.
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)


__all__ = ["django_settings"]

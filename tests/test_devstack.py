"""`make run`'s launcher: it starts the whole system, keeps its data across runs, and leaves no
process behind on SIGTERM (or Ctrl-C)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from devstack.__main__ import free_port
from tests.helpers import ApiClient, wait_for

ROOT = Path(__file__).resolve().parent.parent
SERVICE_VARIABLES = {
    "DATABASE_URL",
    "REDIS_URL",
    "TEMPORAL_HOST",
    "SECRET_KEY",
    "DEBUG",
    "HTTPS",
    "STACK_MODE",
}


class RunningStack:
    def __init__(self, data: Path) -> None:
        self.web_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
        self.env.update(
            STACK_DATA_DIR=str(data),
            SERVER_PORT=str(self.web_port),
            WEB_CONCURRENCY="2",
            STACK_POSTGRES_PORT=str(free_port()),
            STACK_REDIS_PORT=str(free_port()),
            STACK_TEMPORAL_PORT=str(free_port()),
            STACK_TEMPORAL_UI_PORT=str(free_port()),
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data / "launcher.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "run"],
            cwd=ROOT,
            env=self.env,
            stdout=open(self.log, "ab"),  # noqa: SIM115 (the child owns it)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        probe = ApiClient(self.url)
        wait_for(
            lambda: _healthy(probe), timeout=120, interval=0.5, what=f"the stack to be healthy ({self.log})"
        )

    def descendants(self) -> list[psutil.Process]:
        assert self.process is not None
        return psutil.Process(self.process.pid).children(recursive=True)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.process = None
        return code


def _healthy(client: ApiClient) -> bool:
    try:
        return client.get("/healthz").status == 200
    except OSError:
        return False


@pytest.fixture
def launcher(tmp_path):
    tmp_path.chmod(0o755)
    stack = RunningStack(tmp_path)
    yield stack
    if stack.process is not None:
        os.killpg(stack.process.pid, signal.SIGKILL)


def test_make_run_starts_everything_keeps_data_and_leaves_no_orphan(launcher):
    launcher.start()
    processes = launcher.descendants()
    names = " ".join(" ".join(p.cmdline()) for p in processes)
    for part in ("postgres", "redis-server", "temporal", "runworker", "gunicorn"):
        assert part in names
    customer = ApiClient(launcher.url)
    order_id = customer.create_order("fl-101", ["12A"]).json["orderId"]
    assert customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": "00000"}).status == 202
    customer.wait_for_status(order_id, "CONFIRMED", timeout=30)

    assert launcher.terminate() == 0, "a requested stop is a clean end"

    _, alive = psutil.wait_procs(processes, timeout=10)
    assert alive == [], f"left running: {[p.cmdline() for p in alive]}"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", launcher.web_port), timeout=2)

    launcher.start()  # a second run finds the bookings of the first
    assert customer.status(order_id)["status"] == "CONFIRMED"
    seats = customer.get("/api/flights/fl-101").json["seatMap"]["seats"]
    assert next(s for s in seats if s["id"] == "12A")["status"] == "booked"
    launcher.terminate()


@pytest.mark.parametrize(
    ("server_port", "words"),
    [
        ("taken", "for the web server is taken: stop what uses it, or set SERVER_PORT"),
        ("abc", "SERVER_PORT='abc'"),
    ],
)
def test_make_run_refuses_a_bad_web_port_before_starting_anything(tmp_path, server_port, words):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1]) if server_port == "taken" else server_port
        env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
        result = subprocess.run(
            [sys.executable, "-m", "devstack", "run"],
            cwd=ROOT,
            env={**env, "STACK_DATA_DIR": str(tmp_path), "SERVER_PORT": port},
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 1
    assert words in result.stderr
    assert not (tmp_path / "postgres").exists(), "nothing was started"

"""`make run`'s launcher: it starts the whole system, keeps its data across runs, and leaves no
process or port behind, however it ends: SIGTERM (twice, as `make` passes it on), Ctrl-C in the
background, SIGKILL. It works as root from a private (mode-700) directory and changes no
permission outside the checkout."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from devstack import postgres_server
from devstack.ports import free_port, port_is_free
from devstack.supervisor import BIN, command_for, stop_leftovers, write_record
from tests.helpers import ApiClient, wait_for

ROOT = Path(__file__).resolve().parent.parent
SERVICE_VARIABLES = {
    "DATABASE_URL",
    "REDIS_URL",
    "TEMPORAL_HOST",
    "TEMPORAL_ADDRESS",
    "PAYLOAD_ENCRYPTION_KEYS",
    "SECRET_KEY",
    "DEBUG",
    "HTTPS",
    "STACK_MODE",
}
LAUNCHER = [sys.executable, "-m", "devstack", "run"]
# As `make run &` in a script: a background job starts with SIGINT ignored.
IN_THE_BACKGROUND = ["sh", "-c", 'trap "" INT; exec "$@"', "sh"]


def _outside_env() -> dict[str, str]:
    """The environment of a shell, without the services `make test` started for this suite."""
    return {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}


class RunningStack:
    """`make run` on free ports and its own data folder, started by a test."""

    def __init__(self, data: Path, **env: str) -> None:
        data.mkdir(exist_ok=True)
        self.data = data
        self.ports = {
            "SERVER_PORT": free_port(),
            "STACK_POSTGRES_PORT": free_port(),
            "STACK_REDIS_PORT": free_port(),
            "STACK_TEMPORAL_PORT": free_port(),
            "STACK_TEMPORAL_UI_PORT": free_port(),
            "METRICS_PORT": free_port(),
            "WORKER_METRICS_PORT": free_port(),
            "TEMPORAL_METRICS_PORT": free_port(),
            "EVENTS_SERVER_PORT": free_port(),
            "EVENTS_METRICS_PORT": free_port(),
        }
        self.env = _outside_env()
        self.env.update(STACK_DATA_DIR=str(data), WEB_CONCURRENCY="2", **env)
        self.env.update({name: str(port) for name, port in self.ports.items()})
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data / "launcher.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['SERVER_PORT']}"

    def start(self, command: list[str] = LAUNCHER) -> None:
        self.launch(command)
        self.wait_until_healthy()

    def launch(self, command: list[str] = LAUNCHER) -> None:
        self.process = subprocess.Popen(
            command_for(command),  # never outlives this test run
            cwd=ROOT,
            env=self.env,
            stdout=open(self.log, "ab"),  # noqa: SIM115 (the child owns it)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_until_healthy(self) -> None:
        probe = ApiClient(self.url)
        wait_for(
            lambda: _healthy(probe), timeout=120, interval=0.5, what=f"the stack to be healthy ({self.log})"
        )

    def descendants(self) -> list[psutil.Process]:
        assert self.process is not None
        return psutil.Process(self.process.pid).children(recursive=True)

    def signal_group(self, signum: int) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signum)

    def wait(self, timeout: float = 90) -> int:
        assert self.process is not None
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def assert_nothing_left(self, processes: list[psutil.Process]) -> None:
        alive = _still_running(processes, timeout=15)
        assert alive == [], f"left running: {[p.cmdline() for p in alive]}"
        taken = {name: port for name, port in self.ports.items() if not port_is_free(port)}
        assert taken == {}, f"ports still taken: {taken}"


def _healthy(client: ApiClient) -> bool:
    try:
        return client.get("/healthz").status == 200
    except OSError:
        return False


def _still_running(processes: list[psutil.Process], *, timeout: float) -> list[psutil.Process]:
    """Those of the processes still running after ``timeout`` s. A zombie has ended: it holds no
    port, and only waits for this machine's init to reap it."""

    def running(process: psutil.Process) -> bool:
        try:
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + timeout
    while (alive := [process for process in processes if running(process)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


@pytest.fixture
def launcher(tmp_path):
    stack = RunningStack(tmp_path / "data")
    yield stack
    if stack.process is not None:
        stack.process.kill()


def test_the_launcher_has_compiled_the_workflow_so_the_sandbox_need_not_for_each_booking():
    """This suite runs under the launcher (`make test`), as the worker of `make run` does. Where
    PYTHONDONTWRITEBYTECODE is set nothing else writes bytecode, and Temporal's sandbox, which
    imports the workflow's module afresh for every booking, would compile it every time."""
    source = ROOT / "temporal_worker" / "workflows.py"
    cached = Path(importlib.util.cache_from_source(str(source)))

    assert cached.exists(), f"no bytecode for {source.name}"
    assert cached.stat().st_mtime >= source.stat().st_mtime, "its bytecode is older than the source"


def test_make_run_stopped_mid_payment_finishes_the_attempt_and_the_next_run_confirms_it(tmp_path):
    launcher = RunningStack(
        tmp_path / "data", PAYMENT_FAILURE_RATE="0", PAYMENT_LATENCY_MIN="3s", PAYMENT_LATENCY_MAX="3s"
    )
    launcher.start()
    processes = launcher.descendants()
    names = " ".join(" ".join(p.cmdline()) for p in processes)
    for part in ("postgres", "redis-server", "temporal", "runworker", "gunicorn"):
        assert part in names
    customer = ApiClient(launcher.url)
    order_id = customer.create_order("fl-101", ["12A"]).json["orderId"]
    customer.wait_for_status(order_id, "SEATS_RESERVED", timeout=30)  # a busy machine may answer 202
    assert customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": "12345"}).status == 202
    wait_for(lambda: customer.status(order_id)["paymentAttempts"] == 1, timeout=30, what="the attempt")

    # The worker gets PAYMENT_VALIDATION_TIMEOUT (10 s) + 10 s to finish it (docs/OPERATIONS.md).
    assert launcher.terminate() == 0, "a requested stop is a clean end"

    launcher.assert_nothing_left(processes)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", launcher.ports["SERVER_PORT"]), timeout=2)

    launcher.start()  # a second run finds the order of the first, and completes it
    final = customer.wait_for_status(order_id, "CONFIRMED", timeout=30)
    assert final["paymentAttempts"] == 1, "the attempt under way finished; it was not retried"
    seats = customer.get("/api/flights/fl-101").json["seatMap"]["seats"]
    assert next(s for s in seats if s["id"] == "12A")["status"] == "booked"
    launcher.terminate()


def test_a_launcher_killed_with_sigkill_leaves_nothing_and_the_next_run_starts(launcher):
    launcher.start()
    assert_prints_where_the_metrics_are_and_serves_them(launcher)  # and they go with the rest
    processes = launcher.descendants()
    second = subprocess.run(LAUNCHER, cwd=ROOT, env=launcher.env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert f"another launcher (pid {launcher.process.pid}) is using {launcher.data}" in second.stderr

    launcher.process.kill()  # no code of the launcher runs: only the kernel can stop its servers
    launcher.wait()

    launcher.assert_nothing_left(processes)
    launcher.start()  # same data folder, same ports
    assert launcher.terminate() == 0


def test_sigterm_twice_to_make_run_s_process_group_stops_everything(launcher):
    launcher.start(["make", "--no-print-directory", "run"])
    processes = launcher.descendants()

    # A process manager stops `make run` with SIGTERM to its group: make passes it on, so the
    # launcher gets it twice; and a third comes while it stops.
    launcher.signal_group(signal.SIGTERM)
    wait_for(lambda: "stopping web" in launcher.log_text(), timeout=30, what="the stop to begin")
    launcher.signal_group(signal.SIGTERM)
    launcher.wait()

    launcher.assert_nothing_left(processes)
    log = launcher.log_text()
    assert "SIGTERM: already stopping; ignored" in log
    assert "stopping postgres" in log, "the stop went on to the end"


def test_make_run_in_the_background_stops_on_sigint(launcher):
    launcher.start([*IN_THE_BACKGROUND, *LAUNCHER])
    processes = launcher.descendants()

    launcher.signal_group(signal.SIGINT)  # Ctrl-C

    assert launcher.wait(timeout=60) == 128 + signal.SIGINT
    launcher.assert_nothing_left(processes)


def test_two_stacks_side_by_side_keep_their_own_gunicorn_control_socket(tmp_path):
    first, second = RunningStack(tmp_path / "first"), RunningStack(tmp_path / "second")
    try:
        first.launch()  # both at once: the second starts while the first does
        second.launch()
        first.wait_until_healthy()
        second.wait_until_healthy()
        sockets = [first.data / "gunicorn.ctl", second.data / "gunicorn.ctl"]
        assert all(stat.S_ISSOCK(path.stat().st_mode) for path in sockets)

        assert second.terminate() == 0

        assert not sockets[1].exists()
        assert stat.S_ISSOCK(sockets[0].stat().st_mode), "stopping one stack left the other's alone"
        assert _healthy(ApiClient(first.url))
        assert first.terminate() == 0
    finally:
        for stack in (first, second):
            if stack.process is not None:
                stack.process.kill()


def _modes(path: Path) -> dict[str, str]:
    return {str(p): oct(p.stat().st_mode & 0o7777) for p in [path, *path.parents]}


def test_make_test_as_root_from_a_private_directory_changes_no_permission(tmp_path):
    """`git clone … ~/app && cd ~/app && make test` as root, with a home of mode 700."""
    private = tmp_path / "home"
    private.mkdir()
    private.chmod(0o700)
    checkout = private / "app"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(checkout)], check=True)
    _copy_working_tree(checkout)  # what this run tests, committed or not
    env = {k: v for k, v in _outside_env().items() if not k.startswith(("VIRTUAL_ENV", "UV_", "PYTEST_"))}
    # The clone's own virtualenv, from the packages `make install` already cached for this one.
    subprocess.run(
        [str(BIN / "uv"), "sync", "--frozen", "--offline", "--quiet", "--no-install-package", "uv"],
        cwd=checkout,
        env=env,
        check=True,
    )
    before = _modes(checkout)

    result = subprocess.run(
        command_for([str(checkout / ".venv/bin/python"), "-m", "devstack", "test", "tests/test_health.py"]),
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"\b\d+ passed", result.stdout) and " failed" not in result.stdout  # (any count)
    assert _modes(checkout) == before
    assert private.stat().st_mode & 0o7777 == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs another way to run PostgreSQL")
def test_root_without_user_namespaces_is_told_what_to_do_and_nothing_is_chmod_ed(tmp_path, monkeypatch):
    monkeypatch.setattr(postgres_server, "_user_namespace_refused", lambda *_: "Operation not permitted")
    private = tmp_path / "home"
    private.mkdir()
    private.chmod(0o700)

    with pytest.raises(SystemExit) as stopped:
        postgres_server.run_as(private / "bin", private / "app" / ".data" / "postgres")

    message = str(stopped.value)
    assert "user namespaces (Operation not permitted)" in message
    assert f"{private} is closed to other users" in message
    assert "Run make as a non-root user" in message and "set DATABASE_URL" in message
    assert private.stat().st_mode & 0o7777 == 0o700


def _copy_working_tree(checkout: Path) -> None:
    def git(*args: str) -> list[str]:
        out = subprocess.run(["git", *args, "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        return [name.decode() for name in out.split(b"\0") if name]

    for name in git("diff", "--name-only", "HEAD") + git("ls-files", "--others", "--exclude-standard"):
        source, target = ROOT / name, checkout / name
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
        else:
            target.unlink(missing_ok=True)


def test_a_later_launcher_stops_what_an_earlier_one_left_running(tmp_path):
    # A server that the kernel's signal did not reach (say, started by an older launcher).
    port = free_port()
    leftover = subprocess.Popen(
        [str(BIN / "redis-server"), "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for(lambda: not port_is_free(port), timeout=10, what="the leftover to listen")
    _record(tmp_path / "pids", "redis", leftover.pid)

    assert stop_leftovers(tmp_path / "pids") == ["redis"]

    assert leftover.wait(timeout=5) is not None
    assert port_is_free(port)
    assert list((tmp_path / "pids").iterdir()) == []


def test_a_pid_file_whose_pid_now_belongs_to_another_process_is_only_forgotten(tmp_path):
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        _record(tmp_path / "pids", "redis", other.pid, start_time_shift=-1)  # an older process's

        assert stop_leftovers(tmp_path / "pids") == []

        assert other.poll() is None, "a process that only reuses the pid is left alone"
        assert list((tmp_path / "pids").iterdir()) == []
    finally:
        other.kill()
        other.wait()


def test_lock_files_of_a_killed_postgresql_are_removed_even_while_it_is_a_zombie(tmp_path):
    # A postmaster killed with its launcher may stay a zombie until this machine's init reaps
    # it; PostgreSQL would take its pid, which still answers kill(pid, 0), for a live server.
    zombie = subprocess.Popen(["true"])
    wait_for(lambda: psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE, timeout=10)
    pgdata = tmp_path / "postgres"
    pgdata.mkdir()
    for name in ("postmaster.pid", ".s.PGSQL.5432.lock", ".s.PGSQL.5432"):
        (pgdata / name).write_text(f"{zombie.pid}\n{pgdata}\n")
    try:
        postgres_server.forget_killed_server(pgdata)
    finally:
        zombie.wait()

    assert list(pgdata.iterdir()) == []


def _record(pids: Path, name: str, pid: int, *, start_time_shift: int = 0) -> None:
    """Write the pid file a launcher writes for a server it started."""
    record = write_record(pids.parent, name, pid, signal.SIGTERM, 5.0)
    assert record is not None
    if start_time_shift:
        fields = json.loads(record.read_text())
        fields["start_time"] += start_time_shift
        record.write_text(json.dumps(fields))


@pytest.mark.parametrize(
    ("server_port", "words"),
    [
        ("taken", "for the web server is taken by pid "),
        ("abc", "SERVER_PORT='abc'"),
    ],
)
def test_make_run_refuses_a_bad_web_port_before_starting_anything(tmp_path, server_port, words):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1]) if server_port == "taken" else server_port
        result = subprocess.run(
            LAUNCHER,
            cwd=ROOT,
            env={**_outside_env(), "STACK_DATA_DIR": str(tmp_path), "SERVER_PORT": port},
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 1
    assert words in result.stderr
    if server_port == "taken":
        assert f"(kill {os.getpid()}), or set SERVER_PORT" in result.stderr, "it names who holds the port"
    assert not (tmp_path / "postgres").exists(), "nothing was started"


def assert_prints_where_the_metrics_are_and_serves_them(launcher: RunningStack) -> None:
    printed = lambda: "Ctrl-C stops everything" in (text := launcher.log_text()) and text  # noqa: E731
    log = wait_for(printed, timeout=30, what="the launcher to print its URLs")

    served = {
        "Web metrics": ("METRICS_PORT", "booking_unavailable_responses_total"),
        "Worker metrics": ("WORKER_METRICS_PORT", "booking_orders_finished_total"),
        "SDK metrics": ("TEMPORAL_METRICS_PORT", "temporal_"),
        "Streams metrics": ("EVENTS_METRICS_PORT", "booking_streams_open"),
    }
    for label, (variable, family) in served.items():
        url = f"http://localhost:{launcher.ports[variable]}/metrics"
        assert re.search(rf"{label}\s+{re.escape(url)}\n", log), log
        wait_for(lambda url=url, family=family: family in _get(url), timeout=30, what=f"{family} at {url}")


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.read().decode()
    except OSError:
        return ""


def test_make_run_refuses_a_taken_metrics_port_before_starting_anything(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = subprocess.run(
            LAUNCHER,
            cwd=ROOT,
            env={
                **_outside_env(),
                "STACK_DATA_DIR": str(tmp_path),
                "SERVER_PORT": str(free_port()),
                "METRICS_PORT": str(free_port()),
                "WORKER_METRICS_PORT": port,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 1
    assert "set WORKER_METRICS_PORT (0 turns them off)" in result.stderr
    assert not (tmp_path / "postgres").exists(), "nothing was started"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TEMPORAL_ADDRESS", "temporal.internal:7233"),
        ("TEMPORAL_HOST", "temporal:7233"),
        ("TEMPORAL_PROFILE", "prod"),
    ],
)
def test_make_run_uses_the_temporal_the_environment_names_and_starts_none(variable, value, tmp_path):
    from devstack.modes import services
    from devstack.supervisor import Supervisor

    env = {"DATABASE_URL": "postgres://x@127.0.0.1:1/db", "REDIS_URL": "redis://127.0.0.1:1/0"}
    env[variable] = value
    processes = Supervisor()
    assert services(processes, tmp_path, env, mode="run") == {}
    assert processes.processes == []

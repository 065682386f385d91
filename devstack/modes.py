"""The two modes: ``run`` (the whole system, data kept in ``.data/``) and ``test`` (throw-away
servers on free ports, then the suite)."""

from __future__ import annotations

import compileall
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from common.payload_codec import new_key_entry
from devstack.ports import ensure_free, free_port, port_is_free
from devstack.postgres_server import start_postgres
from devstack.redis_server import start_redis
from devstack.supervisor import PYTHON, ROOT, Supervisor, log
from devstack.temporal_server import start_temporal

# How long each process of `make run` may take to stop before it is killed (docs/OPERATIONS.md).
WEB_STOP_SECONDS = 25.0  # gunicorn's graceful_timeout (20 s) for requests under way, and a margin
EVENTS_STOP_SECONDS = 5.0  # the streams' server ends its streams within 2 s (browsers reconnect)
WORKER_STOP_MARGIN_SECONDS = 10.0  # on top of PAYMENT_VALIDATION_TIMEOUT, for a running payment
# Any of these names a Temporal to use: the launcher starts none.
TEMPORAL_GIVEN = ("TEMPORAL_ADDRESS", "TEMPORAL_HOST", "TEMPORAL_PROFILE")
# What .data/stack.env keeps for `make worker`, `make superuser` and `make bench`.
STACK_ENV = {
    *("DATABASE_URL", "REDIS_URL", "TEMPORAL_HOST", "TEMPORAL_ADDRESS", "TEMPORAL_UI_URL", "DEBUG", "HTTPS"),
    *("PAYLOAD_ENCRYPTION_KEYS", "PAYLOAD_ENCRYPTION_KEY_ID"),
}
# A unix socket's path holds at most 107 bytes.
MAX_SOCKET_PATH = 100


# The project's own packages, this one, and the tools (the bench's floor workflow is sandboxed too).
PACKAGES = ("booking_site", "common", "flights", "orders", "payments", "temporal_worker", "devstack", "tools")


def compile_bytecode() -> None:
    """Compile the project's modules to bytecode (only those changed since the last time).
    Where PYTHONDONTWRITEBYTECODE is set (many shells, and our image) nothing else writes it,
    and Temporal's workflow sandbox, which imports the workflow's module afresh for every
    booking, would compile its source each time: 4.3 ms of CPU a booking instead of 1.8 ms
    (docs/PERFORMANCE.md)."""
    for package in PACKAGES:
        compileall.compile_dir(ROOT / package, quiet=1)


def services(
    supervisor: Supervisor, data: Path, env: dict[str, str], *, mode: str, codec_endpoint: str | None = None
) -> dict[str, str]:
    """Start whatever of PostgreSQL, Redis and Temporal the environment does not already name."""
    from booking_site.env import integer  # a bad port: SettingsError, one line (see run())

    persist = mode == "run"
    urls: dict[str, str] = {}
    if "DATABASE_URL" not in env:
        port = integer("STACK_POSTGRES_PORT", 55432, minimum=1, maximum=65535) if persist else free_port()
        ensure_free(port, what="PostgreSQL", variable="STACK_POSTGRES_PORT (or DATABASE_URL)")
        urls["DATABASE_URL"] = start_postgres(supervisor, data, port, env)
        log(f"PostgreSQL {urls['DATABASE_URL']}")
    if "REDIS_URL" not in env:
        port = integer("STACK_REDIS_PORT", 56379, minimum=1, maximum=65535) if persist else free_port()
        ensure_free(port, what="Redis", variable="STACK_REDIS_PORT (or REDIS_URL)")
        urls["REDIS_URL"] = start_redis(supervisor, data, port, env, persist=persist)
        log(f"Redis {urls['REDIS_URL']}")
    # TEMPORAL_ADDRESS (the SDK's and the CLI's name), TEMPORAL_HOST (its older alias) or a
    # TEMPORAL_PROFILE: use that Temporal, start none (docs/CONFIGURATION.md, "Temporal").
    if not any(env.get(name) for name in TEMPORAL_GIVEN):
        port = integer("STACK_TEMPORAL_PORT", 7233, minimum=1, maximum=65535) if persist else free_port()
        ensure_free(port, what="Temporal", variable="TEMPORAL_ADDRESS to use the server already there")
        ui_port = (
            integer("STACK_TEMPORAL_UI_PORT", port + 1000, minimum=1, maximum=65535) if persist else None
        )
        if ui_port:
            ensure_free(ui_port, what="the Temporal UI", variable="STACK_TEMPORAL_UI_PORT")
        urls["TEMPORAL_HOST"] = start_temporal(
            supervisor, data, port, env, ui_port=ui_port, persist=persist, codec_endpoint=codec_endpoint
        )
        if ui_port:
            urls["TEMPORAL_UI_URL"] = f"http://localhost:{ui_port}"
        log(f"Temporal {urls['TEMPORAL_HOST']}")
    return urls


def payload_keys(data: Path) -> str:
    """`make run`'s payload encryption key: made once, kept in .data/ (readable by its owner only),
    so the histories of earlier runs still decrypt (docs/CONFIGURATION.md, "Payload encryption")."""
    path = data / "payload-keys"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(new_key_entry("local-1") + "\n")
        log(f"payload encryption key made: {path}")
    return path.read_text().strip()


def manage(supervisor: Supervisor, *args: str, env: dict[str, str]) -> None:
    code = supervisor.run(f"manage.py {args[0]}", [PYTHON, "manage.py", *args], env=env)
    if code != 0:
        raise SystemExit(f"[stack] manage.py {' '.join(args)} failed with exit code {code}")


def worker_stop_seconds() -> float:
    """The worker finishes a running payment attempt (it waits PAYMENT_VALIDATION_TIMEOUT for
    running activities, then cancels them) before it exits; give it that, and a margin."""
    from booking_site.env import duration

    return duration("PAYMENT_VALIDATION_TIMEOUT", "10s").total_seconds() + WORKER_STOP_MARGIN_SECONDS


def gunicorn_control_socket(data: Path) -> list[str]:
    """gunicorn's control socket defaults to one path in the home directory, so a second stack
    replaced (and, stopping, removed) the first one's: each stack keeps its own in its data."""
    path = data.resolve() / "gunicorn.ctl"
    if len(str(path)) > MAX_SOCKET_PATH:
        log(f"no gunicorn control socket: {path} is too long for a unix socket")
        return ["--no-control-socket"]
    return ["--control-socket", str(path)]


# The metrics' ports (docs/OPERATIONS.md, "Metrics"): the web's, the worker's own, the Temporal
# SDK's in the worker. Defaults as in booking_site/settings.py.
METRICS_PORTS = (
    ("METRICS_PORT", 9180),
    ("WORKER_METRICS_PORT", 9181),
    ("TEMPORAL_METRICS_PORT", 9182),
    ("EVENTS_METRICS_PORT", 9183),
)
METRICS_LABELS = {
    "METRICS_PORT": "Web metrics",
    "WORKER_METRICS_PORT": "Worker metrics",
    "TEMPORAL_METRICS_PORT": "SDK metrics",
    "EVENTS_METRICS_PORT": "Streams metrics",
}


def metrics_urls(ports: dict[str, int]) -> list[tuple[str, str]]:
    """Where each metrics endpoint is (served on the loopback interface only, by default)."""
    host = os.environ.get("METRICS_HOST", "127.0.0.1")
    host = "localhost" if host in {"127.0.0.1", "0.0.0.0", "::"} else host  # noqa: S104
    return [(METRICS_LABELS[name], f"http://{host}:{port}/metrics") for name, port in ports.items() if port]


def run(supervisor: Supervisor) -> int:
    data = Path(os.environ.get("STACK_DATA_DIR", ROOT / ".data"))
    data.mkdir(exist_ok=True)
    supervisor.data = data
    env = dict(os.environ, STACK_MODE="run")
    env.setdefault("DEBUG", "true")
    env.setdefault("HTTPS", "false")
    from booking_site.env import SettingsError, integer

    try:  # the web server's own settings check would come only after every service started
        web_port = integer("SERVER_PORT", 8000, minimum=1, maximum=65535)
        events_port = integer("EVENTS_SERVER_PORT", 8001, minimum=1, maximum=65535)
        worker_stop = worker_stop_seconds()
        metrics_ports = {name: integer(name, port, minimum=0, maximum=65535) for name, port in METRICS_PORTS}
    except SettingsError as error:
        raise SystemExit(f"[stack] {error}") from None
    supervisor.claim()  # before the ports: leftovers of an earlier run may hold them
    compile_bytecode()
    ensure_free(web_port, what="the web server", variable="SERVER_PORT")
    ensure_free(events_port, what="the event streams' server", variable="EVENTS_SERVER_PORT")
    # No proxy in front: the pages open their streams on the streams' own port of their host.
    env.setdefault("EVENTS_PUBLIC_PORT", str(events_port))
    for name, port in metrics_ports.items():
        if port:
            ensure_free(port, what=f"metrics ({name})", variable=f"{name} (0 turns them off)")
    env.setdefault("PAYLOAD_ENCRYPTION_KEYS", payload_keys(data))
    try:
        env.update(
            services(supervisor, data, env, mode="run", codec_endpoint=f"http://localhost:{web_port}/codec")
        )
    except SettingsError as error:  # a bad STACK_*_PORT
        raise SystemExit(f"[stack] {error}") from None
    stack_env = data / "stack.env"
    stack_env.touch(mode=0o600)  # it holds the payload key
    stack_env.chmod(0o600)
    stack_env.write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items()) if k in STACK_ENV))
    manage(supervisor, "migrate", "--noinput", env=env)
    manage(supervisor, "seed_flights", env=env)
    supervisor.start("worker", [PYTHON, "manage.py", "runworker"], env=env, stop_timeout=worker_stop)
    supervisor.start(
        "web",
        # booking_site/gunicorn.py checks its settings, then becomes gunicorn with itself as config.
        [PYTHON, "-m", "booking_site.gunicorn", *gunicorn_control_socket(data)],
        env=env,
        stop_timeout=WEB_STOP_SECONDS,
    )
    # The event streams (orders/streams.py): an ASGI process of their own, never gunicorn's workers.
    supervisor.start(
        "events", [PYTHON, "-m", "booking_site.events_server"], env=env, stop_timeout=EVENTS_STOP_SECONDS
    )
    supervisor.wait_until(lambda: not port_is_free(web_port), what="web server", timeout=60)
    supervisor.wait_until(lambda: not port_is_free(events_port), what="event streams' server", timeout=60)
    ui = env.get("TEMPORAL_UI_URL", "(your Temporal server's UI)")
    places = [
        ("Site", f"http://localhost:{web_port}/"),
        ("Admin", f"http://localhost:{web_port}/admin/   (create a user: make superuser)"),
        ("Temporal UI", ui),
        ("Health", f"http://localhost:{web_port}/readyz"),
        *metrics_urls(metrics_ports),
    ]
    lines = "".join(f"  {name:<16}{where}\n" for name, where in places)
    print(f"\n{lines}\n  Ctrl-C stops everything.\n", flush=True)
    while True:
        dead = supervisor.check_alive()
        if dead:
            log(f"{dead.name} exited with {dead.popen.returncode}; stopping the stack")
            return 1
        supervisor.sleep(0.5)


def test(supervisor: Supervisor, pytest_args: list[str]) -> int:
    data = Path(tempfile.mkdtemp(prefix="booking-test-"))
    supervisor.data = data
    try:
        supervisor.claim()
        compile_bytecode()
        env = dict(os.environ, STACK_MODE="test")
        env.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
        env.setdefault("DEBUG", "false")
        env.setdefault("HTTPS", "false")
        env.setdefault("LOG_FORMAT", "text")
        env.setdefault("STATIC_MANIFEST", "false")  # see settings.STATIC_MANIFEST
        # Payloads encrypted in the tests as in production: a key of this run's own.
        env.setdefault("PAYLOAD_ENCRYPTION_KEYS", new_key_entry("test-1"))
        # Every test customer comes from 127.0.0.1 (30 buyers racing, the fuzzer): the limits on
        # one client are off, and tests/test_limits.py turns them on with its own numbers.
        env.setdefault("RATE_LIMITS", "off")
        env.update(services(supervisor, data, env, mode="test"))
        # In the launcher's own process group, so that Ctrl-C and --pdb reach pytest as before.
        tests = [PYTHON, "-m", "tests.run", *pytest_args]
        return supervisor.run("the tests", tests, env=env, own_session=False)
    finally:
        supervisor.stop()
        shutil.rmtree(data, ignore_errors=True)

"""gunicorn configuration: sized from the CPU count, settings validated before forking, metrics
served by the master on their own port.

Start the web with ``python -m booking_site.gunicorn [gunicorn options]`` (the image and `make
run` do): it checks these settings, then becomes ``gunicorn -c booking_site/gunicorn.py
booking_site.wsgi``. gunicorn itself reads ``WEB_CONCURRENCY`` with a bare ``int()`` as it
starts, before it loads this file: started directly, a value that is not a number gets its
traceback instead of our one line."""

import gc
import multiprocessing
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from booking_site import env


def _configuration_error(error: Exception) -> NoReturn:
    print(f"configuration error: {error}", file=sys.stderr)
    sys.exit(2)


# gunicorn's own settings, through the typed readers of booking_site/settings.py: a bad value
# stops start-up with one line naming it, not gunicorn's "Failed to read config file" traceback.
try:
    _host = env.string("SERVER_HOST", "0.0.0.0")  # noqa: S104 (every interface, as in a container)
    _port = env.integer("SERVER_PORT", 8000, minimum=1, maximum=65535)
    _workers = env.integer("WEB_CONCURRENCY", min(multiprocessing.cpu_count(), 8), minimum=1)
    _threads = env.integer("GUNICORN_THREADS", 8, minimum=1)
    _access_log = env.boolean("ACCESS_LOG", False)
    _forwarded_allow_ips = env.string("FORWARDED_ALLOW_IPS", "127.0.0.1")
except env.SettingsError as error:
    _configuration_error(error)

bind = f"{_host}:{_port}"
# Threads, not processes, carry the concurrency: a request mostly waits on PostgreSQL, Redis or
# Temporal, and a process (~95 MB with Django and the Temporal client's runtime) can keep at most
# one core busy. One process per core, eight threads each: on 2 cores, 2 processes and the arbiter
# are ~290 MB and still saturate the CPU before the threads run out (docs/PERFORMANCE.md).
workers = _workers
worker_class = "gthread"
threads = _threads
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = "-" if _access_log else None
errorlog = "-"
forwarded_allow_ips = _forwarded_allow_ips


def on_starting(server: object) -> None:
    """Load the settings once in the arbiter: a bad variable stops start-up with one line."""
    _prepare_metrics_dir()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booking_site.settings")
    import django

    try:
        django.setup()
    except env.SettingsError as error:
        _configuration_error(error)


def pre_fork(server: object, worker: object) -> None:
    """Move what the master has loaded (Django, the apps) out of the garbage collector's reach
    before it forks a worker (the gc module's advice for a fork without exec): a worker's
    collections then never write to those shared pages, so they stay shared (less memory), and
    each collection walks only the worker's own objects (shorter pauses in a request)."""
    gc.freeze()


def post_worker_init(worker: object) -> None:
    """Connect to Temporal as each worker process starts, not on its first request (1.5 s);
    then freeze what the worker loaded for good, as the master did before the fork."""
    from common.temporal_client import connect_soon

    connect_soon()
    gc.freeze()


# --- Metrics -------------------------------------------------------------------------------
# Each worker process counts in its own files in PROMETHEUS_MULTIPROC_DIR (prometheus_client's
# multiprocess mode); the master serves their sum on METRICS_PORT, apart from the public site.


_own_metrics_dir: list[str] = []  # the folder made for this run, removed when it ends


def _prepare_metrics_dir() -> None:
    """Before anything imports prometheus_client (it reads the variable then): a fresh folder of
    our own, or the one given, emptied of an earlier run's files."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not given:
        _own_metrics_dir.append(tempfile.mkdtemp(prefix="booking-web-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir[0]
        return
    folder = Path(given)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


_metrics_server: list[object] = []  # the master's metrics server, once it listens


def when_ready(server: object) -> None:
    """Serve the metrics of every worker process, summed, from the master."""
    from django.conf import settings
    from prometheus_client import CollectorRegistry, multiprocess

    from booking_site.metrics import serve_or_exit
    from common import metrics

    if not settings.METRICS_PORT:
        return
    metrics.start_web_series()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    _metrics_server.append(serve_or_exit(settings.METRICS_PORT, "METRICS_PORT", registry))


def post_fork(server: object, worker: object) -> None:
    """A worker process is forked with a copy of the master's metrics socket: close it, so that
    only the master listens there, and the port is free the moment the master is gone (a worker
    outlives a killed master for a moment, until it notices)."""
    for httpd in _metrics_server:
        httpd.socket.close()  # type: ignore[attr-defined]


def child_exit(server: object, worker: object) -> None:
    """A worker process that ended: its counts stay in the sum, its live gauges leave it."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


def on_exit(server: object) -> None:
    """Remove the metrics folder this run made (one given by PROMETHEUS_MULTIPROC_DIR stays)."""
    for folder in _own_metrics_dir:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    # The settings above are read (a bad one has exited with its line): become gunicorn, same pid.
    executable = Path(sys.executable).parent / "gunicorn"
    config = str(Path(__file__).resolve())
    os.execv(executable, [str(executable), "-c", config, *sys.argv[1:], "booking_site.wsgi"])  # noqa: S606

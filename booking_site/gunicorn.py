"""gunicorn configuration: sized from the CPU count, settings validated before forking."""

import multiprocessing
import os
import sys

bind = f"{os.environ.get('SERVER_HOST', '0.0.0.0')}:{os.environ.get('SERVER_PORT', '8000')}"  # noqa: S104
# Threads, not processes, carry the concurrency: a request mostly waits on PostgreSQL, Redis or
# Temporal, and a process (~95 MB with Django and the Temporal client's runtime) can keep at most
# one core busy. One process per core, eight threads each: on 2 cores, 2 processes and the arbiter
# are ~290 MB and still saturate the CPU before the threads run out (docs/PERFORMANCE.md).
workers = int(os.environ.get("WEB_CONCURRENCY", min(multiprocessing.cpu_count(), 8)))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 8))
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = "-" if os.environ.get("ACCESS_LOG", "false").lower() in {"1", "true", "yes"} else None
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server: object) -> None:
    """Load the settings once in the arbiter: a bad variable stops start-up with one line."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booking_site.settings")
    import django

    from booking_site.env import SettingsError

    try:
        django.setup()
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        sys.exit(2)


def post_worker_init(worker: object) -> None:
    """Connect to Temporal as each worker process starts, not on its first request (1.5 s)."""
    from orders.temporal_client import connect_soon

    connect_soon()

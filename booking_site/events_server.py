"""The event streams' own process: ``python -m booking_site.events_server``.

One uvicorn process (asyncio) serves every open stream of orders/streams.py; gunicorn's sync
workers keep the pages, so that a page left open never holds one of their threads (the
measurement behind this choice: docs/PERFORMANCE.md, "Event streams"). It checks the settings
first (one line and exit code 2 on a bad one), serves its metrics on ``EVENTS_METRICS_PORT``,
then listens on ``SERVER_HOST``:``EVENTS_SERVER_PORT``. uvicorn's own reading of
``X-Forwarded-For`` is off: the client address is the project's (``common.clients``, behind
``TRUSTED_PROXIES``), as on every other path.
"""

from __future__ import annotations

import os
import resource
import signal
import sys

# A stream ends at once when the process stops: browsers reconnect (with Last-Event-ID) and their
# pages poll meanwhile; nothing is lost.
GRACEFUL_SHUTDOWN_SECONDS = 2


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booking_site.settings")
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # one process: its own registry
    import django

    from booking_site.env import SettingsError

    try:
        django.setup()
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        sys.exit(2)
    import uvicorn
    from django.conf import settings

    from booking_site.metrics import serve_or_exit
    from common import metrics, tracing

    # uvicorn stops gracefully on SIGTERM, then raises the signal again with the handler that was
    # there before it: this one sends the spans the exporter still holds, then dies by the signal.
    def send_spans_then_stop(signum: int, frame: object) -> None:
        tracing.shutdown()
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, send_spans_then_stop)

    metrics.start_stream_series()
    if settings.EVENTS_METRICS_PORT:
        serve_or_exit(settings.EVENTS_METRICS_PORT, "EVENTS_METRICS_PORT")
    # A stream is a socket: as many as the system lets this process have.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    uvicorn.run(
        "booking_site.asgi:application",
        host=settings.SERVER_HOST,
        port=settings.EVENTS_SERVER_PORT,
        workers=1,  # uvicorn would read WEB_CONCURRENCY (gunicorn's) and fork that many: one loop is enough
        proxy_headers=False,
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        backlog=2048,
    )


if __name__ == "__main__":
    main()

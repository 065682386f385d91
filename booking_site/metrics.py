"""The web's metrics: the status endpoints' latency, timed around the whole request.

The web serves its metrics on ``METRICS_PORT``, never on the public site: gunicorn's master
process serves them there (``booking_site/gunicorn.py``), summed over its worker processes,
which each write theirs to ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from common import metrics

# The status a customer's client polls: the API's (two URLs answer it) and the order page's live
# fragment, which the page polls every 2 s.
API_STATUS_VIEWS = {"api:order-status", "api:order"}
PAGE_STATUS_VIEW = "orders:detail"


def status_view(request: HttpRequest) -> str | None:
    """Which status endpoint the request was for, if any: "api" or "page"."""
    match = request.resolver_match
    if match is None or request.method != "GET":
        return None
    if match.view_name in API_STATUS_VIEWS:
        return "api"
    if match.view_name == PAGE_STATUS_VIEW and "poll" in request.GET:
        return "page"
    return None


class StatusLatencyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        view = status_view(request)
        if view is not None:
            metrics.STATUS_REQUEST_DURATION.labels(view=view).observe(time.perf_counter() - started)
        return response


def serve_or_exit(port: int, setting: str, registry: CollectorRegistry = REGISTRY) -> object:
    """Serve ``registry`` on ``METRICS_HOST:port`` (the web's master process, the streams'
    process); a port that cannot be had stops the process with one line naming its setting."""
    from django.conf import settings

    try:
        server, _ = start_http_server(port, addr=settings.METRICS_HOST, registry=registry)
    except OSError as error:
        print(
            f"configuration error: cannot serve metrics on {settings.METRICS_HOST}:{port} ({error}): "
            f"set {setting} (0 turns them off)",
            file=sys.stderr,
        )
        sys.exit(2)
    return server

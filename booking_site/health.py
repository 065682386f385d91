"""The probes: ``/livez`` (the process answers) and ``/readyz`` (it can serve: PostgreSQL, Redis
and Temporal answer). ``/healthz`` is the old name of ``/readyz``.

Kubernetes semantics (docs/OPERATIONS.md, "Probes"): a failed liveness probe restarts the process,
a failed readiness probe only takes it out of traffic. So ``/livez`` checks no dependency: a
Temporal restart must never restart every healthy web process.

An orchestrator probes a container by its IP, with whatever ``Host`` that gives, which
``ALLOWED_HOSTS`` (the real domain) refuses. ``ProbeMiddleware`` answers these paths before
``CommonMiddleware`` (the first caller of ``request.get_host()``), so no probe path ever reads the
host, and every other path keeps Django's host validation.

Which dependency is down, and why, is told only to loopback clients (the container's own probe, an
operator on the machine) and to staff: the error text names internal hosts and ports.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

from django.contrib.auth import get_user
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache

from common import metrics, temporal_client
from common.api import api_view
from flights import holds

CHECK_TIMEOUT_SECONDS = 3.0


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    holds.connection().ping()


def _temporal() -> None:
    temporal_client.call(lambda client: client.service_client.check_health(), timeout=CHECK_TIMEOUT_SECONDS)


CHECKS: dict[str, Callable[[], None]] = {
    "database": _database,
    "redis": _redis,
    "temporal": _temporal,
}


def _run(check: Callable[[], None]) -> dict[str, object]:
    started = time.perf_counter()
    try:
        check()
    except Exception as error:
        return {"status": "down", "error": f"{type(error).__name__}: {error}"[:300]}
    return {"status": "up", "latencyMs": round((time.perf_counter() - started) * 1000, 1)}


def _from_loopback(request: HttpRequest) -> bool:
    # A request a proxy forwarded comes from the proxy's address, loopback when it runs on the same
    # machine: its X-Forwarded-For says the client is someone else. (A client can add the header,
    # never remove one a proxy sets, so it can only lose the details by it.)
    if "HTTP_X_FORWARDED_FOR" in request.META or "HTTP_FORWARDED" in request.META:
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def _staff(request: HttpRequest) -> bool:
    session = getattr(request, "session", None)
    if session is None or session.session_key is None:
        return False  # no session cookie: no query, so a probe without one never reads the database
    try:
        user = get_user(request)  # type: ignore[arg-type]
    except Exception:  # the session's stores are down: no details, the checks below say why
        return False
    return bool(user.is_active and user.is_staff)


def sees_details(request: HttpRequest) -> bool:
    return _from_loopback(request) or _staff(request)


@never_cache
@api_view("GET")  # JSON in and out, as the API: a wrong method is a JSON 405, never a CSRF 403
def livez(request: HttpRequest) -> JsonResponse:
    """The process answers requests. Nothing else: restarting it would mend nothing more."""
    return JsonResponse({"status": "ok"})


@never_cache
@api_view("GET")
def readyz(request: HttpRequest) -> JsonResponse:
    results = {name: _run(check) for name, check in CHECKS.items()}
    down = [name for name, result in results.items() if result["status"] != "up"]
    body: dict[str, object] = {"status": "ok" if not down else "unavailable"}
    if sees_details(request):
        body |= {"down": down, "checks": results}
    if down:
        metrics.unavailable("healthz")
    return JsonResponse(body, status=503 if down else 200)


healthz = readyz  # the old name, kept for probes and scripts that still call it

PROBES: dict[str, Callable[[HttpRequest], JsonResponse]] = {
    "/livez": livez,
    "/readyz": readyz,
    "/healthz": readyz,
}


class ProbeMiddleware:
    """Answers the probe paths before ``CommonMiddleware`` reads the ``Host`` (see the module's
    docstring). After the session middleware, so that ``/readyz`` can tell staff apart."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        if probe is None:
            return self.get_response(request)
        return probe(request)

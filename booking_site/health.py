"""GET /healthz: 200 when PostgreSQL, Redis and Temporal all answer, 503 naming those that don't."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from common import metrics
from common.api import api_view
from flights import holds
from orders import temporal_client

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


@never_cache
@api_view("GET")  # JSON in and out, as the API: a wrong method is a JSON 405, never a CSRF 403
def healthz(request: HttpRequest) -> JsonResponse:
    results = {name: _run(check) for name, check in CHECKS.items()}
    down = [name for name, result in results.items() if result["status"] != "up"]
    body = {"status": "ok" if not down else "unavailable", "down": down, "checks": results}
    if down:
        metrics.unavailable("healthz")
    return JsonResponse(body, status=503 if down else 200)

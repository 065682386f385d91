"""What every JSON endpoint shares: one error shape, one table from error codes to HTTP statuses,
and the decorator that answers a wrong method and a refusal in that shape.

Errors are ``{"error": "CODE", "message": "..."}`` (plus ``seats`` when seats are at fault). The
domain's errors (``common.errors.Refused``) carry no HTTP status: ``STATUS_OF`` gives it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from common import metrics
from common.errors import ErrorCode, Refused
from common.ratelimit import Limited

View = Callable[..., JsonResponse]
RETRY_AFTER_SECONDS = 2

# The HTTP status of each code, as a table (read from ``ErrorCode``, where each is written once).
STATUS_OF = {code.value: code.status for code in ErrorCode}


def status_of(code: str) -> int:
    """The HTTP status of a refusal's code; 400 for a code the table does not know."""
    return STATUS_OF.get(code, 400)


class ApiError(Exception):
    """An answer decided before any domain code runs (an unknown order, a key misused)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def error(
    code: str, message: str, *, status: int | None = None, seats: list[str] | None = None
) -> JsonResponse:
    """The error answer for ``code``, at its status (``status`` only where one code has two: an
    unknown flight in a body is 400, in a path 404)."""
    status = status or status_of(code)
    body: dict[str, Any] = {"error": code, "message": message}
    if seats:
        body["seats"] = seats
    reply = JsonResponse(body, status=status)
    if status == 503 or code == ErrorCode.IDEMPOTENCY_KEY_IN_USE:
        reply["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return reply


def refused(refusal: Refused) -> JsonResponse:
    if status_of(refusal.code) == 503:  # the workflow could not carry it out: its stores did not answer
        metrics.unavailable("update_failed")
    reply = error(refusal.code, refusal.message, seats=refusal.seats)
    if isinstance(refusal, Limited):
        reply["Retry-After"] = str(refusal.retry_after)
    return reply


def api_view(*methods: str) -> Callable[[View], View]:
    """JSON in, JSON out. CSRF-exempt because it takes only application/json bodies, which a
    cross-site form cannot send, and its session cookie is SameSite=Lax."""

    def decorate(view: View) -> View:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
            if request.method not in methods:
                reply = error(ErrorCode.METHOD_NOT_ALLOWED, f"Use {' or '.join(methods)} here")
                reply["Allow"] = ", ".join(methods)
                return reply
            try:
                return view(request, *args, **kwargs)
            except ApiError as failure:
                return error(failure.code, failure.message)
            except Refused as refusal:
                return refused(refusal)

        wrapper.allowed_methods = methods  # type: ignore[attr-defined]  # read by the contract test
        return wrapper

    return decorate


@csrf_exempt
def unknown_endpoint(request: HttpRequest, **_: Any) -> JsonResponse:
    """Every path under /api/ that no endpoint takes, whatever the method and DEBUG: a JSON 404
    (Django's own 404 page is HTML, and under DEBUG does not call handler404)."""
    return error(ErrorCode.NOT_FOUND, f"No such endpoint: {request.path}")


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None

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
from common.errors import Refused
from common.ratelimit import Limited

View = Callable[..., JsonResponse]
RETRY_AFTER_SECONDS = 2

# The HTTP status of each refusal code (orders.booking.ErrorType and the input checks' codes).
STATUS_OF = {
    "INVALID_JSON": 400,
    "VALIDATION_ERROR": 400,
    "FLIGHT_DEPARTED": 400,
    "FLIGHT_NOT_FOUND": 400,  # in a body (a path's unknown flight is answered 404 by its view)
    "INVALID_IDEMPOTENCY_KEY": 400,
    "UNKNOWN_SEATS": 400,
    "INVALID_SEATS": 400,
    "INVALID_PAYMENT_CODE": 400,
    "ORDER_NOT_FOUND": 404,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "ORDER_EXPIRED": 409,
    "ORDER_NOT_EDITABLE": 409,
    "ORDER_PENDING": 409,
    "TOO_MANY_CHANGES": 409,
    "IDEMPOTENCY_KEY_IN_USE": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "IDEMPOTENCY_KEY_REUSED": 422,
    # Over a limit on one client (orders.hoarding, common.ratelimit), with Retry-After.
    "RATE_LIMITED": 429,
    "TOO_MANY_SEATS_HELD": 429,
    "ORDER_ALREADY_OPEN": 429,
    "SERVICE_UNAVAILABLE": 503,
}


class ApiError(Exception):
    """An answer decided before any domain code runs (an unknown order, a key misused)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status: int, code: str, message: str, **extra: Any) -> JsonResponse:
    reply = JsonResponse({"error": code, "message": message, **extra}, status=status)
    if status == 503 or code == "IDEMPOTENCY_KEY_IN_USE":
        reply["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return reply


def refused(refusal: Refused) -> JsonResponse:
    extra = {"seats": refusal.seats} if refusal.seats else {}
    status = STATUS_OF.get(refusal.code, 400)
    if status == 503:  # the workflow could not carry the request out: its stores did not answer
        metrics.unavailable("update_failed")
    reply = error(status, refusal.code, refusal.message, **extra)
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
                reply = error(405, "METHOD_NOT_ALLOWED", f"Use {' or '.join(methods)} here")
                reply["Allow"] = ", ".join(methods)
                return reply
            try:
                return view(request, *args, **kwargs)
            except ApiError as failure:
                return error(failure.status, failure.code, failure.message)
            except Refused as refusal:
                return refused(refusal)

        wrapper.allowed_methods = methods  # type: ignore[attr-defined]  # read by the contract test
        return wrapper

    return decorate


@csrf_exempt
def unknown_endpoint(request: HttpRequest, **_: Any) -> JsonResponse:
    """Every path under /api/ that no endpoint takes, whatever the method and DEBUG: a JSON 404
    (Django's own 404 page is HTML, and under DEBUG does not call handler404)."""
    return error(404, "NOT_FOUND", f"No such endpoint: {request.path}")


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None

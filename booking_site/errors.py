"""Error pages: JSON with an error code under /api/, the site's templates elsewhere."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views.defaults import bad_request as bad_request_page
from django.views.defaults import page_not_found, server_error

from common import metrics
from common.api import error
from common.errors import ErrorCode
from orders.errors import SERVICE_UNAVAILABLE

logger = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """A request Django itself refused (SuspiciousOperation): a body over
    DATA_UPLOAD_MAX_MEMORY_SIZE, a disallowed host, a malformed multipart body."""
    if _is_api(request):
        if isinstance(exception, RequestDataTooBig):
            return error(ErrorCode.PAYLOAD_TOO_LARGE, "The body is too large")
        return error(ErrorCode.BAD_REQUEST, "The request is malformed")
    return bad_request_page(request, exception)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return error(ErrorCode.NOT_FOUND, f"No such endpoint: {request.path}")
    return page_not_found(request, exception)


def internal_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        message = "Something went wrong on our side; nothing was changed. Please try again."
        return error(ErrorCode.INTERNAL_ERROR, message)
    return server_error(request)


class DatabaseUnavailableMiddleware:
    """PostgreSQL out of reach is an outage, not a bug: answer 503 with Retry-After, as when
    Temporal does not answer (JSON under /api/), instead of a 500. The workflows wait it out."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError):
            return None
        logger.error("database unavailable for %s: %s", request.path, exception)
        metrics.unavailable("database_unavailable")
        response: HttpResponse
        if _is_api(request):
            response = JsonResponse(
                {"error": "SERVICE_UNAVAILABLE", "message": SERVICE_UNAVAILABLE}, status=503
            )
        else:
            # Rendered without the request: its context (session, messages) needs the database.
            response = HttpResponse(render_to_string("503.html"), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

"""Requests per second per client address, on every page and endpoint but the health check.

Placed after WhiteNoise (static files are not counted) and before the session (a refused
request costs no database read). Over the limit: ``429`` with ``Retry-After``, as JSON
(``RATE_LIMITED``) under /api/, else a short page. The default is generous enough for a whole
office behind one address polling its pages every 2 s (docs/CONFIGURATION.md, "Limits").
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

from common import clients, ratelimit

EXEMPT = ("/healthz",)  # the load balancer's probes come from one address, often


class RequestRateMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path not in EXEMPT:
            try:
                ratelimit.requests_per_second(clients.client_address(request))
            except ratelimit.Limited as limited:
                return too_many_requests(request, limited)
        return self.get_response(request)


def too_many_requests(request: HttpRequest, limited: ratelimit.Limited) -> HttpResponse:
    response: HttpResponse
    if request.path.startswith("/api/") or request.path == "/api":
        response = JsonResponse({"error": limited.code, "message": limited.message}, status=429)
    else:
        # Rendered without the request: its context (session, messages) is not read for it.
        page = render_to_string("429.html", {"message": limited.message})
        response = HttpResponse(page, status=429)
    response["Retry-After"] = str(limited.retry_after)
    return response

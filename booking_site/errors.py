"""Error pages: JSON with an error code under /api/, the site's templates elsewhere."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found, server_error


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(
            {"error": "NOT_FOUND", "message": f"No such endpoint: {request.path}"}, status=404
        )
    return page_not_found(request, exception)


def internal_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        message = "Something went wrong on our side; nothing was changed. Please try again."
        return JsonResponse({"error": "INTERNAL_ERROR", "message": message}, status=500)
    return server_error(request)

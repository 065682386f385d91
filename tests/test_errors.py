"""An outage of PostgreSQL reads as one (503, try again), not as a bug (500)."""

from __future__ import annotations

import json

import pytest
from django.db import OperationalError
from django.http import HttpResponse
from django.test import RequestFactory
from prometheus_client import REGISTRY

from booking_site.errors import DatabaseUnavailableMiddleware


def database_down(request):
    raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')


def answer(path: str) -> HttpResponse:
    middleware = DatabaseUnavailableMiddleware(database_down)
    request = RequestFactory().get(path)
    try:
        return middleware(request)
    except OperationalError as error:
        response = middleware.process_exception(request, error)
        assert response is not None
        return response


def database_outages() -> float:
    labels = {"cause": "database_unavailable"}
    return REGISTRY.get_sample_value("booking_unavailable_responses_total", labels) or 0.0


def test_the_api_answers_503_with_a_code_when_the_database_is_down():
    counted = database_outages()

    response = answer("/api/orders/ord-0a1b/status")

    assert database_outages() == counted + 1, "the web's metrics count it, by cause"
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert json.loads(response.content)["error"] == "SERVICE_UNAVAILABLE"


def test_a_page_says_the_service_is_temporarily_unavailable():
    response = answer("/flights/fl-101/")

    assert response.status_code == 503
    assert b"temporarily unavailable" in response.content
    assert b"Nothing was lost" in response.content


@pytest.mark.parametrize("error", [ValueError("a bug"), KeyError("x")])
def test_other_errors_are_left_to_the_500_handler(error):
    middleware = DatabaseUnavailableMiddleware(database_down)

    assert middleware.process_exception(RequestFactory().get("/api/flights"), error) is None

"""The API's contract: its OpenAPI document is valid, served, shown on a page that works offline,
and names every endpoint and method the server has (every answer of every test is checked against
it by tests/contract.py; the fuzzer, tests/test_fuzz.py, holds the server to it)."""

from __future__ import annotations

import json
import re

import pytest
from django.http import JsonResponse
from django.test import RequestFactory
from django.urls import URLPattern, URLResolver
from openapi_spec_validator import validate

from booking_site import urls
from booking_site.openapi import document
from flights.services import seed_demo_flights
from tests import contract
from tests.helpers import ApiClient


def test_the_document_is_valid_openapi_3_1():
    spec = document()

    validate(spec)

    assert spec["openapi"] == "3.1.0"


def test_the_document_is_served_as_json(client):
    reply = client.get("/api/openapi.json")

    assert reply.status_code == 200
    assert reply["Content-Type"] == "application/json"
    assert reply.json() == document()


def test_the_seat_limit_in_the_document_is_the_servers(client, settings):
    settings.MAX_SEATS_PER_ORDER = 4

    served = client.get("/api/openapi.json").json()

    assert served["components"]["schemas"]["SeatSelection"]["maxItems"] == 4


def api_endpoints() -> dict[str, tuple[str, ...]]:
    """Each path of the API's URLconf, spelt as in the document, and the methods its view takes."""
    resolver = next(p for p in urls.urlpatterns if isinstance(p, URLResolver) and str(p.pattern) == "api/")
    endpoints = {}
    for pattern in resolver.url_patterns:
        assert isinstance(pattern, URLPattern)
        route = re.sub(r"<\w+:(\w+)>", lambda m: "{" + camel(m.group(1)) + "}", str(pattern.pattern))
        endpoints["/api/" + route] = pattern.callback.allowed_methods
    return endpoints


def camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def test_every_endpoint_and_method_of_the_server_is_in_the_document():
    methods = ("get", "put", "post", "delete", "patch")
    documented = {
        path: tuple(m.upper() for m in methods if m in item)
        for path, item in document()["paths"].items()
        if path.startswith("/api/")
    }

    assert api_endpoints() == documented


def test_every_operation_documents_its_errors():
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            # (the liveness probe depends on nothing that could make it a 503)
            if method == "parameters" or path in ("/api/openapi.json", "/livez"):
                continue
            assert "503" in operation["responses"], (method, path)
            if path.startswith("/api/"):  # the requests-per-second limit (never on /healthz)
                assert "429" in operation["responses"], (method, path)
            if "{orderId}" in path:
                assert "404" in operation["responses"], (method, path)
            if method in ("post", "put", "delete"):
                statuses = set(operation["responses"])
                assert {"409", "422", "400"} <= statuses, (method, path)


@pytest.mark.django_db
def test_the_api_page_works_offline(client):
    page = client.get("/api-docs/")

    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-openapi-url="/api/openapi.json"' in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "everything it loads is served by us"
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert client.get(asset).status_code == 200, asset
    assert len(re.findall(r'(?:src|href)="/static/', html)) >= 3


# --- The check of every answer (tests/contract.py) -----------------------------------------


@pytest.mark.django_db(transaction=True)
def test_every_answer_of_the_live_server_is_checked(live_server):
    seed_demo_flights()
    customer = ApiClient(str(live_server))

    customer.get("/api/flights")
    customer.get("/api/flights/fl-101")
    customer.post("/api/orders", raw=b"{")

    assert contract.CHECKED == [
        "GET /api/flights -> 200",
        "GET /api/flights/fl-101 -> 200",
        "POST /api/orders -> 400",
    ]


def answer(method: str, path: str, status: int, body: dict, **headers: str) -> str | None:
    request = RequestFactory().generic(method, path)
    response = JsonResponse(body, status=status)
    for name, value in headers.items():
        response[name] = value
    return contract.violation(request, response)


FLIGHT = {
    "id": "fl-101",
    "flightNumber": "FL101",
    "origin": "NYC",
    "destination": "LAX",
    "departureTime": "2030-01-01T10:00:00Z",
    "totalSeats": 120,
    "availableSeats": 120,
    "fromPrice": {"amount": 19900, "currency": "USD"},
}


NOT_ALLOWED = {"error": "METHOD_NOT_ALLOWED", "message": "x"}
NOT_FOUND = {"error": "NOT_FOUND", "message": "x"}
PAY = "/api/orders/ord-0123456789abcdef/pay"


@pytest.mark.parametrize(
    ("method", "path", "status", "body", "headers", "why"),
    [
        ("GET", "/api/flights", 200, {"flights": [{**FLIGHT, "gate": "B7"}]}, {}, "gate"),
        ("GET", "/api/flights", 200, {"flights": [{**FLIGHT, "departureTime": "soon"}]}, {}, "soon"),
        ("GET", "/api/flights", 418, {"error": "TEAPOT", "message": "no"}, {}, "418"),
        ("POST", "/api/orders", 400, {"error": "ORDER_EXPIRED", "message": "no"}, {}, "ORDER_EXPIRED"),
        ("POST", "/api/orders", 503, {"error": "SERVICE_UNAVAILABLE", "message": "x"}, {}, "Retry-After"),
        ("GET", "/api/nowhere", 200, {}, {}, "404 NOT_FOUND"),
        ("PUT", "/api/flights", 405, NOT_ALLOWED, {"Allow": "PUT"}, "GET"),
        ("GET", PAY, 404, NOT_FOUND, {}, "Allow"),
    ],
)
def test_an_answer_the_document_does_not_describe_is_caught(method, path, status, body, headers, why):
    problem = answer(method, path, status, body, **headers)

    assert problem is not None
    assert why in problem


@pytest.mark.parametrize(
    ("method", "path", "status", "body", "headers"),
    [
        ("GET", "/api/flights", 200, {"flights": [FLIGHT]}, {}),
        ("POST", "/api/orders", 503, {"error": "SERVICE_UNAVAILABLE", "message": "x"}, {"Retry-After": "2"}),
        ("GET", "/api/nowhere", 404, NOT_FOUND, {}),
        ("PUT", "/api/flights", 405, NOT_ALLOWED, {"Allow": "GET"}),
        ("GET", "/api/orders/ord-xyz/status", 404, {"error": "ORDER_NOT_FOUND", "message": "x"}, {}),
    ],
)
def test_an_answer_as_documented_passes(method, path, status, body, headers):
    assert answer(method, path, status, body, **headers) is None, json.dumps(body)


# --- The PRD's 404 for an order, whatever the id looks like -------------------------------------

ORDER_PATHS = [
    ("GET", "/api/orders/{}/status"),
    ("GET", "/api/orders/{}"),
    ("PUT", "/api/orders/{}/seats"),
    ("POST", "/api/orders/{}/pay"),
    ("DELETE", "/api/orders/{}"),
]


@pytest.mark.parametrize(("method", "template"), ORDER_PATHS)
@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("ord-xyz", "ord-xyz"),  # the PRD's own example
        ("ord-0123456789abcdef", "ord-0123456789abcdef"),  # an order's shape, but no order
        ("ORD-0123456789ABCDEF", "ORD-0123456789ABCDEF"),
        ("12345", "12345"),
        ("order%20one", "order one"),
        ("%3Cb%3Ehi", "<b>hi"),  # JSON carries it as text; nothing renders it
        ("ord-%00x", "ord-\\x00x"),
        ("%E2%80%AEfdp.exe", "\\u202efdp.exe"),
        ("x" * 300, "x" * 64 + "…"),
    ],
    ids=["prd", "order-shaped", "upper", "digits", "space", "markup", "nul", "bidi", "long"],
)
@pytest.mark.django_db
def test_every_order_id_that_is_not_this_sessions_is_the_prds_404(client, method, template, sent, shown):
    reply = client.generic(method, template.format(sent), b"{}", content_type="application/json")

    assert reply.status_code == 404
    assert reply.json() == {"error": "ORDER_NOT_FOUND", "message": f"Order {shown} not found"}

"""No input gets a 500: what a hostile client sends is refused with a code (or is no session at
all) before it reaches PostgreSQL, Redis or Temporal. Each case below was a 500 once (issue 10);
the fuzzer (tests/test_fuzz.py) looks for the ones nobody thought of."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client

from common import inputs
from flights.services import seed_demo_flights
from orders.models import Order, OrderRequest
from tests.helpers import ApiClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def site(live_server) -> ApiClient:
    """A customer of the live server (no worker: everything here is refused before Temporal)."""
    seed_demo_flights()
    return ApiClient(str(live_server))


def assert_refused(reply, status: int, code: str, words: str = "") -> None:
    assert reply.status == status, reply.text
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.json["error"] == code
    assert words in reply.json["message"]


# --- JSON bodies -----------------------------------------------------------------------------

ORDER = b'{"flightId": "fl-101", "seats": ["1A"], '


def order_with(field: bytes) -> bytes:
    """A good order body, with one more field."""
    return ORDER + field + b"}"


NESTED_100K = order_with(b'"x": ' + b"[" * 100_000 + b"]" * 100_000)


CASES = {
    "5000-digit integer": (order_with(b'"n": ' + b"7" * 5000), 400, "INVALID_JSON", "numbers"),
    "400-digit float": (order_with(b'"n": 1' + b"0" * 400 + b".5"), 400, "INVALID_JSON", "numbers"),
    "NaN": (order_with(b'"n": NaN'), 400, "INVALID_JSON", "not valid JSON"),
    "nested 100,000 deep": (NESTED_100K, 413, "PAYLOAD_TOO_LARGE", "16384 bytes"),
    "nested 5,000 deep": (b"[" * 5000 + b"]" * 5000, 400, "INVALID_JSON", "nested"),
    "nested 9 deep": (order_with(b'"x": ' + b"[" * 8 + b"]" * 8), 400, "INVALID_JSON", "nested"),
    "20 KB": (order_with(b'"pad": "' + b"x" * 20_000 + b'"'), 413, "PAYLOAD_TOO_LARGE", ""),
    "NUL in flightId": (b'{"flightId": "fl-101\\u0000", "seats": ["1A"]}', 400, "VALIDATION_ERROR", "NUL"),
    "lone surrogate in flightId": (
        b'{"flightId": "fl-\\ud800", "seats": ["1A"]}',
        400,
        "VALIDATION_ERROR",
        "surrogates",
    ),
    "NUL in a seat": (b'{"flightId": "fl-101", "seats": ["1A\\u0000"]}', 400, "VALIDATION_ERROR", "NUL"),
    "lone surrogate in a key": (order_with(b'"\\udc00": 1'), 400, "VALIDATION_ERROR", "surrogates"),
    "flightId in capitals": (b'{"flightId": "FL-101", "seats": ["1A"]}', 400, "VALIDATION_ERROR", "flightId"),
    "control character in a seat": (
        b'{"flightId": "fl-101", "seats": ["1A\\t"]}',
        400,
        "VALIDATION_ERROR",
        "seat codes",
    ),
    "a seat of 51 characters": (
        b'{"flightId": "fl-101", "seats": ["' + b"1" * 50 + b'A"]}',
        400,
        "VALIDATION_ERROR",
        "seat codes",
    ),
    "a space before a seat": (
        b'{"flightId": "fl-101", "seats": [" 1A"]}',
        400,
        "UNKNOWN_SEATS",
        "Seat  1A not on",
    ),
    "not UTF-8": (b'\xff\xfe{"flightId": "fl-101"}', 400, "INVALID_JSON", "not valid JSON"),
}


@pytest.mark.parametrize(("body", "status", "code", "words"), CASES.values(), ids=CASES.keys())
def test_a_hostile_body_is_refused_with_a_code(site, body, status, code, words):
    # With a key, a refusal is stored under it: what is stored must be storable too.
    reply = site.post("/api/orders", raw=body, key=str(uuid.uuid4()))

    assert_refused(reply, status, code, words)
    assert not Order.objects.exists()


def test_a_refusal_naming_a_hostile_seat_is_stored_and_replayed(site):
    key = str(uuid.uuid4())
    body = {"flightId": "fl-101", "seats": ["ü1A"]}

    first, again = site.post("/api/orders", body, key=key), site.post("/api/orders", body, key=key)

    assert_refused(first, 400, "UNKNOWN_SEATS", "Ü1A")
    assert (again.status, again.json) == (first.status, first.json)
    assert OrderRequest.objects.count() == 1


@pytest.mark.parametrize("debug", [False, True], ids=["production", "DEBUG"])
def test_a_body_over_djangos_own_upload_limit_is_413_json(settings, debug):
    settings.DEBUG, settings.DATA_UPLOAD_MAX_MEMORY_SIZE = debug, 1024
    body = {"flightId": "fl-101", "seats": ["1A"], "pad": "x" * 2000}

    reply = Client().post("/api/orders", json.dumps(body), content_type="application/json")

    assert reply.status_code == 413
    assert reply.json() == {"error": "PAYLOAD_TOO_LARGE", "message": "The body must be at most 1024 bytes"}


def test_a_content_length_that_is_not_a_number_is_400():
    reply = Client().generic(
        "POST", "/api/orders", b"{}", content_type="application/json", CONTENT_LENGTH="twelve"
    )

    assert reply.status_code == 400
    assert reply.json()["error"] == "INVALID_JSON"


@pytest.mark.parametrize("key", ["", "a b", "x" * 256, "caf\u00e9", "key\x00"])
def test_a_malformed_idempotency_key_is_400_and_makes_nothing(key):
    reply = Client().post(
        "/api/orders",
        json.dumps({"flightId": "fl-101", "seats": ["1A"]}),
        content_type="application/json",
        headers={"Idempotency-Key": key},
    )

    assert reply.status_code == 400
    assert reply.json()["error"] == "INVALID_IDEMPOTENCY_KEY"
    assert not Order.objects.exists() and not OrderRequest.objects.exists()


# --- Paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/flights/fl%00",
        "/api/flights/fl-%ED%A0%80",
        "/api/flights/FL-101",
        "/api/flights/" + "f" * 5000,
        "/api/flights/fl-101/seats",
        "/api/orders/",
        "/api",
        "/api/",
        "/api/nothing%0Ahere",
        "/api/nothing-here",
    ],
)
@pytest.mark.parametrize("debug", [False, True], ids=["production", "DEBUG"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_path_the_api_does_not_have_is_a_json_404(settings, path, debug, method):
    settings.DEBUG = debug

    reply = Client(raise_request_exception=False).generic(method, path)

    assert reply.status_code == 404, reply.content[:300]
    assert reply["Content-Type"] == "application/json"
    assert reply.json()["error"] == "NOT_FOUND"


@pytest.mark.parametrize("path", ["/flights/fl%00/", "/flights/fl-%ED%A0%80/", "/orders/ord-%00/"])
def test_a_page_with_an_id_that_cannot_be_one_is_the_404_page(path):
    reply = Client(raise_request_exception=False).get(path)

    assert reply.status_code == 404
    assert reply["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("debug", [False, True], ids=["production", "DEBUG"])
@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", f"/api/orders/ord-{'0' * 20}", "GET, DELETE"),
        ("GET", "/api/orders", "POST"),
        ("DELETE", "/api/flights", "GET"),
    ],
)
def test_a_wrong_method_is_a_json_405_naming_the_right_ones(settings, debug, method, path, allowed):
    settings.DEBUG = debug

    reply = Client().generic(method, path)

    assert reply.status_code == 405
    assert reply["Allow"] == allowed
    assert reply.json()["error"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz"])
@pytest.mark.parametrize("method", ["POST", "QUERY", "TRACE"])
def test_healthz_answers_a_wrong_method_with_a_json_405(method, path):
    # Found by the fuzzer: QUERY was a CSRF 403 page, TRACE an empty HTML 405.
    reply = Client(enforce_csrf_checks=True).generic(method, path)

    assert reply.status_code == 405
    assert reply["Allow"] == "GET"
    assert reply.json()["error"] == "METHOD_NOT_ALLOWED"


# --- The session cookie ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "cookie", ["abc\x00def0123456789", "\x00", "x" * 5000, "../../etc/passwd", "é" * 32, "ABCDEFGH" * 4]
)
@pytest.mark.parametrize(
    "path",
    [
        "/flights/fl-101/",
        "/",
        f"/orders/ord-{'0' * 20}/",
        f"/api/orders/ord-{'0' * 20}/status",
        "/api/flights",
    ],
)
def test_a_malformed_session_cookie_is_no_session(cookie, path):
    seed_demo_flights()
    client = Client(raise_request_exception=False)
    client.cookies["sessionid"] = cookie

    reply = client.get(path)

    assert reply.status_code in (200, 404), reply.content[:300]


def test_a_malformed_session_cookie_is_replaced_by_a_new_session():
    seed_demo_flights()
    client = Client()
    client.cookies["sessionid"] = "bad\x00key"

    # A request with a key makes a session (keys are scoped to it); this one is refused at once.
    reply = client.post(
        "/api/orders",
        json.dumps({"flightId": "fl-101", "seats": ["0A"]}),
        content_type="application/json",
        headers={"Idempotency-Key": "k1"},
    )

    assert reply.status_code == 400
    assert inputs.session_key(reply.cookies["sessionid"].value)


def test_a_form_post_with_a_nul_in_the_seat_is_refused_as_a_message():
    seed_demo_flights()
    client = Client(raise_request_exception=False)

    reply = client.post("/flights/fl-101/hold", {"seat": "1A\x00", "idempotency_key": uuid.uuid4().hex})

    assert reply.status_code == 302
    assert reply["Location"] == "/flights/fl-101/"
    assert not Order.objects.exists()


# --- The parsers, directly -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("abcdefghijklmnopqrstuvwxyz012345", True),
        ("abcdefgh", True),
        ("abcdefg", False),
        ("a" * 41, False),
        ("abcdefgh\x00", False),
        ("ABCDEFGH", False),
        (None, False),
    ],
)
def test_a_session_key_is_what_djangos_store_makes(value, valid):
    assert (inputs.session_key(value) is not None) is valid

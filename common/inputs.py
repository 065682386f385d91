"""Where untrusted text becomes a value: the one place that checks what a client sends.

Ids in paths, seat codes, payment codes, Idempotency-Keys, the session cookie and JSON bodies
pass through here before the ORM, the cache, Redis or Temporal see them. Each parser checks
type, length and characters, and returns the value or raises ``InvalidInput`` (a
``Refused``, so the API and the pages say it as they say any refusal). Whatever passes
holds no NUL and no lone surrogate (PostgreSQL refuses the one, UTF-8 cannot encode the other),
and is bounded in size.

The formats are the ones the models' check constraints state (the API's OpenAPI document repeats
them); the URL converters below make a malformed id in a path a 404 before any view runs.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.urls import register_converter

from common.errors import ErrorCode, Refused
from common.formats import (
    FLIGHT_ID,
    IDEMPOTENCY_KEY,
    ORDER_ID,
    PAYMENT_CODE_EXPECTED,
    SEAT_CODE,
    SESSION_KEY,
    is_payment_code,
)

# The API's bodies are a few hundred bytes, two levels deep, with no numbers that matter.
MAX_BODY_BYTES = 16 * 1024
MAX_DEPTH = 8
MAX_NUMBER_CHARS = 32
# A seat code is at most 4 characters; a little more is still echoed in "not on this flight".
MAX_SEAT_TEXT = 8

NUMBER_TOO_LONG = f"The body is not valid JSON: numbers are limited to {MAX_NUMBER_CHARS} characters"
TOO_DEEP = f"The body is not valid JSON: it may be nested at most {MAX_DEPTH} levels deep"

UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


class InvalidInput(Refused):
    """Input refused before it reached anything: nothing changed."""


def is_storable(text: str) -> bool:
    """No NUL (PostgreSQL refuses it) and no lone surrogate (no encoding can carry it)."""
    return UNSTORABLE.search(text) is None


# --- Values --------------------------------------------------------------------------------


def flight_id(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(FLIGHT_ID, value):
        raise InvalidInput(ErrorCode.VALIDATION_ERROR, '"flightId" must be a flight id such as "fl-101"')
    return value


def seat_text(value: object) -> str:
    """A seat as a customer typed it, upper-cased: short, printable text, possibly not a seat code
    at all (the caller says which seats are not on the flight, naming them)."""
    if not isinstance(value, str) or len(value) > MAX_SEAT_TEXT or not value.isprintable():
        raise InvalidInput(
            ErrorCode.VALIDATION_ERROR, '"seats" must be a list of seat codes such as ["12A", "12B"]'
        )
    return value.upper()


def is_seat_code(text: str) -> bool:
    return SEAT_CODE.fullmatch(text) is not None


def payment_code(value: object) -> str:
    if not is_payment_code(value):
        raise InvalidInput(ErrorCode.INVALID_PAYMENT_CODE, PAYMENT_CODE_EXPECTED)
    return value


def idempotency_key(value: str | None) -> str | None:
    """The client's Idempotency-Key (None when it sent none)."""
    if value is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidInput(
            ErrorCode.INVALID_IDEMPOTENCY_KEY,
            "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces (a UUID, say)",
        )
    return value


def session_key(value: str | None) -> str | None:
    """The session cookie's key, or None (no session) when it cannot be one of ours."""
    if value is None or not SESSION_KEY.fullmatch(value):
        return None
    return value


# --- JSON bodies ---------------------------------------------------------------------------


def json_object(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON body, which must be an object: read only up to MAX_BODY_BYTES (413
    beyond), parsed with limits on nesting and number length, its text all storable."""
    if request.content_type != "application/json":
        raise InvalidInput(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE, "Send the body as JSON (Content-Type: application/json)"
        )
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidInput(ErrorCode.INVALID_JSON, "The Content-Length header is not a number") from None
    limit = min(MAX_BODY_BYTES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE or MAX_BODY_BYTES)
    if length > limit:  # refused unread (Django's own limit would answer an HTML 400 under DEBUG)
        raise InvalidInput(ErrorCode.PAYLOAD_TOO_LARGE, f"The body must be at most {limit} bytes")
    try:
        body = json.loads(
            request.body or b"null", parse_int=_integer, parse_float=_number, parse_constant=_not_json
        )
    except _NumberTooLong:
        raise InvalidInput(ErrorCode.INVALID_JSON, NUMBER_TOO_LONG) from None
    except RecursionError:  # the parser's own limit, far below what the body size allows
        raise InvalidInput(ErrorCode.INVALID_JSON, TOO_DEEP) from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, NaN or Infinity
        raise InvalidInput(ErrorCode.INVALID_JSON, "The body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput(ErrorCode.VALIDATION_ERROR, "The body must be a JSON object")
    _check_text_and_depth(body)
    return body


class _NumberTooLong(ValueError):
    pass


def _integer(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:  # int() of 5,000 digits would raise, or take long
        raise _NumberTooLong
    return int(text)


def _number(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _NumberTooLong
    return float(text)


def _not_json(text: str) -> None:
    raise ValueError(f"{text} is not JSON")


def _check_text_and_depth(body: dict[str, Any]) -> None:
    """Walk the parsed body (without recursion): refuse deep nesting and unstorable text."""
    pending: list[tuple[Any, int]] = [(body, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise InvalidInput(ErrorCode.INVALID_JSON, TOO_DEEP)
        if isinstance(value, dict):
            for key, item in value.items():
                pending += [(key, depth), (item, depth + 1)]
        elif isinstance(value, list):
            pending += [(item, depth + 1) for item in value]
        elif isinstance(value, str) and not is_storable(value):
            raise InvalidInput(
                ErrorCode.VALIDATION_ERROR,
                "Text in the body must not contain NUL characters or unpaired surrogates",
            )


# --- Ids in paths --------------------------------------------------------------------------


class FlightIdConverter:
    """``<flight_id:...>``: a malformed flight id matches no URL (404), and never reaches a view."""

    regex = FLIGHT_ID

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class OrderIdConverter(FlightIdConverter):
    regex = ORDER_ID


class OrderReferenceConverter(FlightIdConverter):
    """``<order_ref:...>``: any one path segment. The API answers every id under /api/orders/
    that is not an order of the session with the PRD's ``404 ORDER_NOT_FOUND``, whatever its
    shape (``ord-xyz``, the PRD's own example, included); the view never looks one up unless it is
    an id this session holds."""

    regex = r"[^/]+"


# An id echoed back in a message ("Order <id> not found") is cut to this many characters.
MAX_ECHOED_ID = 64


def echoed(text: str) -> str:
    """``text`` as it can be said back to a client: at most MAX_ECHOED_ID characters, and every
    character that is not printable (controls, NUL, lone surrogates, bidi overrides) written as
    its escape (``\\x00``, ``\\u202e``), so that a message shows what was sent and nothing
    can hide in it."""
    cut = text[:MAX_ECHOED_ID]
    shown = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in cut)
    return shown + ("…" if len(text) > MAX_ECHOED_ID else "")


def register_converters() -> None:
    """Called once, by the root URLconf, before the apps' URLconfs are included."""
    register_converter(FlightIdConverter, "flight_id")
    register_converter(OrderIdConverter, "order_id")
    register_converter(OrderReferenceConverter, "order_ref")

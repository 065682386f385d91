"""The codes the API answers with, and ``Refused``: the one error for a request that was refused
and changed nothing.

``ErrorCode`` is the one list of machine codes, each with its HTTP status: ``common.api`` answers
from it, and the OpenAPI document's ``Error`` schema lists it (``booking_site.openapi``). A
``Refused`` carries a code, a message for the customer and, when seats are at fault, the seats; no
HTTP status: the JSON API (``ErrorCode.status``) and the pages decide how to say it.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum


class ErrorCode(StrEnum):
    """Every ``error`` the booking API answers, with its HTTP status. (The codec endpoint,
    ``booking_site.codec``, speaks Temporal's codec-server protocol and keeps its own few.)"""

    status: int

    def __new__(cls, code: str, status: int) -> ErrorCode:
        member = str.__new__(cls, code)
        member._value_ = code
        member.status = status
        return member

    BAD_REQUEST = "BAD_REQUEST", 400  # Django refused the request before routing it
    INVALID_JSON = "INVALID_JSON", 400
    VALIDATION_ERROR = "VALIDATION_ERROR", 400
    FLIGHT_DEPARTED = "FLIGHT_DEPARTED", 400
    FLIGHT_NOT_FOUND = "FLIGHT_NOT_FOUND", 400  # in a body (a path's unknown flight: its view says 404)
    INVALID_IDEMPOTENCY_KEY = "INVALID_IDEMPOTENCY_KEY", 400
    UNKNOWN_SEATS = "UNKNOWN_SEATS", 400  # a seat that is not on this flight
    INVALID_SEATS = "INVALID_SEATS", 400  # a seat is held by another order or already sold
    INVALID_PAYMENT_CODE = "INVALID_PAYMENT_CODE", 400
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND", 404
    NOT_FOUND = "NOT_FOUND", 404
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED", 405
    ORDER_EXPIRED = "ORDER_EXPIRED", 409
    ORDER_NOT_EDITABLE = "ORDER_NOT_EDITABLE", 409  # paying, paid, failed or cancelled
    ORDER_PENDING = "ORDER_PENDING", 409  # its creation is still being confirmed
    TOO_MANY_CHANGES = "TOO_MANY_CHANGES", 409  # the seat-change limit of one order is reached
    IDEMPOTENCY_KEY_IN_USE = "IDEMPOTENCY_KEY_IN_USE", 409
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE", 413
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE", 415
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED", 422
    # Over a limit on one client (orders.hoarding, common.ratelimit), with Retry-After.
    RATE_LIMITED = "RATE_LIMITED", 429
    TOO_MANY_SEATS_HELD = "TOO_MANY_SEATS_HELD", 429
    ORDER_ALREADY_OPEN = "ORDER_ALREADY_OPEN", 429
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS", 429  # live-update streams (orders.streams)
    INTERNAL_ERROR = "INTERNAL_ERROR", 500
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE", 503


class Refused(Exception):
    def __init__(self, code: str, message: str, *, seats: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.code, self.message, self.seats = code, message, list(seats)

"""The JSON API of PRD section 10: thin views, camelCase fields, one error shape.

Errors are ``{"error": "CODE", "message": "..."}``; no input ever causes a 500. An order's
endpoints answer only the session that created it.

Every answer tells the truth about what happened (docs/API.md, "The answer rule"):

- a 4xx or 5xx means the request changed nothing, and will change nothing later;
- a request handed to Temporal whose outcome is not known yet is answered 202 with
  ``"pending": true``, the order to follow (``statusUrl``, ``Location``) and ``Retry-After``;
- every mutating request may carry an ``Idempotency-Key``: retrying it is always safe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import Http404, HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone

from common import inputs, metrics
from common.api import RETRY_AFTER_SECONDS, ApiError, api_view, error, iso, refused
from common.errors import ErrorCode, Refused
from orders import hoarding, idempotency, ownership, presenters, settling, validation, workflow_calls
from orders.errors import SERVICE_UNAVAILABLE
from orders.idempotency import Result
from orders.models import Order, RequestKind
from orders.workflow_contract import BookingStatus, workflow_id_for

PENDING_MESSAGE = (
    "We have your request and are still confirming it with the booking service. "
    "Follow statusUrl for the outcome; retrying with the same Idempotency-Key is safe."
)


def owned_order(request: HttpRequest, order_id: str) -> Order:
    try:
        return ownership.get_owned_order(request, order_id)
    except Http404:
        raise ApiError(ErrorCode.ORDER_NOT_FOUND, f"Order {inputs.echoed(order_id)} not found") from None


# --- Orders: each change a request kept under its Idempotency-Key ---------------------------


def claim(
    request: HttpRequest, kind: RequestKind, body: Any, *, order: Order | None = None
) -> idempotency.OrderRequest:
    """The OrderRequest for this call (see orders.idempotency), or the answer to a key misused."""
    key = inputs.idempotency_key(request.headers.get("Idempotency-Key"))
    try:
        return idempotency.claim(
            session_key=ownership.session_key(request),
            key=key,
            fingerprint=idempotency.fingerprint(request.method or "", request.path, body),
            kind=kind,
            order=order,
        )
    except idempotency.KeyReused as failure:
        raise ApiError(ErrorCode.IDEMPOTENCY_KEY_REUSED, failure.message) from None
    except idempotency.KeyInUse as failure:
        raise ApiError(ErrorCode.IDEMPOTENCY_KEY_IN_USE, failure.message) from None


def answer(result: Result, *, answered: Callable[[BookingStatus], JsonResponse]) -> JsonResponse:
    """Say how a request ended: the workflow's answer, a refusal, "still confirming", or 503."""
    if result.status is not None:
        return answered(result.status)
    if result.refusal is not None:
        return refused(result.refusal)
    if result.pending and result.order is not None:
        return pending(result.order)
    metrics.unavailable("temporal_unreachable")
    return error(ErrorCode.SERVICE_UNAVAILABLE, SERVICE_UNAVAILABLE)


def pending(order: Order) -> JsonResponse:
    """202: handed to Temporal, outcome not known yet. The order as last read (no new read: the
    database may be what is slow), and where to follow it."""
    status_url = reverse("api:order-status", args=[order.id])
    reply = JsonResponse(
        {
            "orderId": order.id,
            "workflowId": order.workflow_id,
            "status": order.state,
            "seats": order.seats,
            "expiresAt": iso(order.hold_expires_at),
            "pending": True,
            "statusUrl": status_url,
            "message": PENDING_MESSAGE,
        },
        status=202,
    )
    reply["Location"] = status_url
    reply["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return reply


@api_view("POST")
def order_create(request: HttpRequest) -> JsonResponse:
    body = inputs.json_object(request)
    order_request = claim(request, RequestKind.CREATE, body)

    def create() -> BookingStatus:
        flight, seats = validation.new_order(body)
        return workflow_calls.create_order(
            order_request=order_request, flight=flight, seats=seats, client=hoarding.client_of(request)
        )

    result = idempotency.carry_out(order_request, create)
    return answer(result, answered=created)


def created(status: BookingStatus) -> JsonResponse:
    return JsonResponse(
        {
            "orderId": status.order_id,
            "workflowId": workflow_id_for(status.order_id),
            "status": status.state.value,
            "seats": status.seats,
            "expiresAt": iso(status.hold_expires_at),
        },
        status=201,
    )


@api_view("PUT")
def order_seats(request: HttpRequest, order_id: str) -> JsonResponse:
    order = owned_order(request, order_id)
    body = inputs.json_object(request)
    order_request = claim(request, RequestKind.SEATS, body, order=order)

    def change() -> BookingStatus:
        if "seats" not in body:
            raise Refused(ErrorCode.VALIDATION_ERROR, '"seats" is required')
        seats = validation.seat_list(body["seats"], flight=order.flight)
        return workflow_calls.change_seats(
            order=order, seats=seats, request=order_request, client=hoarding.client_of(request)
        )

    result = idempotency.carry_out(order_request, change)
    return answer(result, answered=lambda s: JsonResponse(status_json(s, fields=SEAT_FIELDS)))


SEAT_FIELDS = ("orderId", "status", "seats", "expiresAt")


@api_view("GET")
def order_status(request: HttpRequest, order_id: str) -> JsonResponse:
    order = owned_order(request, order_id)
    waiting = idempotency.open_request(order)
    settling.settle_soon(order, waiting)
    return JsonResponse(order_json(order, waiting))


@api_view("POST")
def order_pay(request: HttpRequest, order_id: str) -> JsonResponse:
    order = owned_order(request, order_id)
    body = inputs.json_object(request)
    order_request = claim(request, RequestKind.PAY, body, order=order)

    def pay() -> BookingStatus:
        code = inputs.payment_code(body.get("paymentCode"))
        return workflow_calls.submit_payment(order=order, payment_code=code, request=order_request)

    result = idempotency.carry_out(order_request, pay)
    return answer(
        result, answered=lambda s: JsonResponse(status_json(s, fields=("orderId", "status")), status=202)
    )


@api_view("GET", "DELETE")
def order_resource(request: HttpRequest, order_id: str) -> JsonResponse:
    """``/api/orders/{id}``: GET its status; DELETE abandons it (its seats are released)."""
    order = owned_order(request, order_id)
    if request.method == "GET":
        waiting = idempotency.open_request(order)
        settling.settle_soon(order, waiting)
        return JsonResponse(order_json(order, waiting))
    order_request = claim(request, RequestKind.CANCEL, None, order=order)
    result = idempotency.carry_out(order_request, lambda: workflow_calls.cancel_order(order=order))
    return answer(
        result, answered=lambda s: JsonResponse(status_json(s, fields=("orderId", "status")), status=202)
    )


def order_json(order: Order, waiting: idempotency.OrderRequest | None) -> dict[str, Any]:
    """The status of PRD section 10, from the order's row (the read model) and its request still
    waiting for an outcome, if any."""
    remaining = 0
    if order.hold_expires_at and order.is_active:
        remaining = max(0, int((order.hold_expires_at - timezone.now()).total_seconds()))
    return {
        "orderId": order.id,
        "flightId": order.flight_id,
        "status": order.state,
        "seats": order.seats,
        "expiresAt": iso(order.hold_expires_at),
        "holdLimitAt": iso(order.hold_life_ends_at),
        "timerRemaining": remaining,
        "paymentAttempts": order.payment_attempts,
        "lastError": order.last_error or None,
        "pendingRequest": {"kind": waiting.kind, "since": iso(waiting.created_at)} if waiting else None,
        "serverTime": iso(timezone.now()),
        "total": order.total.as_json() if order.total else None,
        "charges": [
            {
                "chargeId": charge.id,
                "attempt": charge.attempt,
                "status": charge.status,
                "amount": charge.money.as_json() if charge.money else None,
                "refunded": charge.refunded_money.as_json() if charge.refunded_money else None,
                "chargedAt": iso(charge.charged_at),
                "refundedAt": iso(charge.refunded_at),
            }
            for charge in presenters.charges_of(order)
        ],
    }


def status_json(status: BookingStatus, *, fields: tuple[str, ...]) -> dict[str, Any]:
    full = {
        "orderId": status.order_id,
        "status": status.state.value,
        "seats": status.seats,
        "expiresAt": iso(status.hold_expires_at),
        "paymentAttempts": status.payment_attempts,
        "lastError": status.last_error or None,
    }
    return {key: full[key] for key in fields}

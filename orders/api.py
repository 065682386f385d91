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
from datetime import UTC
from functools import wraps
from typing import Any

from django.http import Http404, HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from booking_site import inputs
from flights.models import Flight
from flights.selectors import availability, seat_map, upcoming_flights
from orders import commands, openapi, ownership, requests, validation
from orders.errors import SERVICE_UNAVAILABLE, BookingRefused
from orders.models import Order, RequestKind
from orders.requests import Result
from temporal_worker.shared import BookingStatus, ErrorType

View = Callable[..., JsonResponse]
RETRY_AFTER_SECONDS = 2
PENDING_MESSAGE = (
    "We have your request and are still confirming it with the booking service. "
    "Follow statusUrl for the outcome; retrying with the same Idempotency-Key is safe."
)

# The HTTP status of each refusal code (the domain's errors carry none).
STATUS_OF = {
    "INVALID_JSON": 400,
    "VALIDATION_ERROR": 400,
    "FLIGHT_DEPARTED": 400,
    "INVALID_IDEMPOTENCY_KEY": 400,
    ErrorType.UNKNOWN_SEATS: 400,
    ErrorType.INVALID_SEATS: 400,
    ErrorType.INVALID_PAYMENT_CODE: 400,
    "ORDER_NOT_FOUND": 404,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    ErrorType.ORDER_EXPIRED: 409,
    ErrorType.ORDER_NOT_EDITABLE: 409,
    ErrorType.ORDER_PENDING: 409,
    ErrorType.TOO_MANY_CHANGES: 409,
    "IDEMPOTENCY_KEY_IN_USE": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "IDEMPOTENCY_KEY_REUSED": 422,
    "SERVICE_UNAVAILABLE": 503,
}


class ApiError(Exception):
    """An answer decided before any domain code runs (bad JSON, unknown order, a key's state)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status: int, code: str, message: str, **extra: Any) -> JsonResponse:
    reply = JsonResponse({"error": code, "message": message, **extra}, status=status)
    if status == 503 or code == "IDEMPOTENCY_KEY_IN_USE":
        reply["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return reply


def refused(refusal: BookingRefused, *, status: int | None = None) -> JsonResponse:
    extra = {"seats": refusal.seats} if refusal.seats else {}
    # A create's flight that does not exist is in the body, not the path: 400, not 404.
    code_status = status or STATUS_OF.get(refusal.code, 400)
    return error(code_status, refusal.code, refusal.message, **extra)


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
            except BookingRefused as refusal:
                return refused(refusal)

        wrapper.allowed_methods = methods  # type: ignore[attr-defined]  # read by the contract test
        return wrapper

    return decorate


@api_view("GET")
def openapi_json(request: HttpRequest) -> JsonResponse:
    """This API's OpenAPI 3.1 document (orders/openapi.yaml)."""
    return JsonResponse(openapi.document(), json_dumps_params={"ensure_ascii": False})


@csrf_exempt
def unknown_endpoint(request: HttpRequest, **_: Any) -> JsonResponse:
    """Every path under /api/ that no endpoint takes, whatever the method and DEBUG: a JSON 404
    (Django's own 404 page is HTML, and under DEBUG does not call handler404)."""
    return error(404, "NOT_FOUND", f"No such endpoint: {request.path}")


def iso(moment: Any) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def owned_order(request: HttpRequest, order_id: str) -> Order:
    try:
        return ownership.get_owned_order(request, order_id)
    except Http404:
        raise ApiError(404, "ORDER_NOT_FOUND", f"Order {order_id} not found") from None


# --- Flights -------------------------------------------------------------------------------


def flight_json(flight: Flight) -> dict[str, Any]:
    return {
        "id": flight.id,
        "flightNumber": flight.number,
        "origin": flight.origin,
        "destination": flight.destination,
        "departureTime": iso(flight.departure_time),
    }


@api_view("GET")
def flight_list(request: HttpRequest) -> JsonResponse:
    rows = availability(list(upcoming_flights()))
    return JsonResponse(
        {
            "flights": [
                {**flight_json(a.flight), "totalSeats": a.total, "availableSeats": a.available} for a in rows
            ]
        }
    )


@api_view("GET")
def flight_detail(request: HttpRequest, flight_id: str) -> JsonResponse:
    flight = Flight.objects.filter(id=flight_id).first()
    if flight is None:
        return error(404, "FLIGHT_NOT_FOUND", f"Flight {flight_id} not found")
    plan = seat_map(flight=flight)
    return JsonResponse(
        {
            **flight_json(flight),
            "totalSeats": flight.total_seats,
            "availableSeats": plan.available,
            "seatMap": {
                "rows": flight.rows,
                "seatsPerRow": flight.seats_per_row,
                "layout": flight.cabin_layout,
                "seats": [
                    {"id": s.code, "row": s.row, "column": s.column, "status": s.status.value}
                    for s in plan.seats
                ],
            },
        }
    )


# --- Orders: each change a request kept under its Idempotency-Key ---------------------------


def claim(
    request: HttpRequest, kind: RequestKind, body: Any, *, order: Order | None = None
) -> requests.OrderRequest:
    """The OrderRequest for this call (see orders.requests), or the answer to a key misused."""
    key = inputs.idempotency_key(request.headers.get("Idempotency-Key"))
    try:
        return requests.claim(
            session_key=ownership.session_key(request),
            key=key,
            fingerprint=requests.fingerprint(request.method or "", request.path, body),
            kind=kind,
            order=order,
        )
    except requests.KeyReused as failure:
        raise ApiError(422, "IDEMPOTENCY_KEY_REUSED", failure.message) from None
    except requests.KeyInUse as failure:
        raise ApiError(409, "IDEMPOTENCY_KEY_IN_USE", failure.message) from None


def answer(result: Result, *, answered: Callable[[BookingStatus], JsonResponse]) -> JsonResponse:
    """Say how a request ended: the workflow's answer, a refusal, "still confirming", or 503."""
    if result.status is not None:
        return answered(result.status)
    if result.refusal is not None:
        return refused(result.refusal)
    if result.pending and result.order is not None:
        return pending(result.order)
    return error(503, "SERVICE_UNAVAILABLE", SERVICE_UNAVAILABLE)


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
        return commands.create_order(
            order_request=order_request, flight=flight, seats=seats, session=request.session
        )

    result = requests.carry_out(order_request, create)
    return answer(result, answered=created)


def created(status: BookingStatus) -> JsonResponse:
    return JsonResponse(
        {
            "orderId": status.order_id,
            "workflowId": Order(id=status.order_id).workflow_id,
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
            raise BookingRefused("VALIDATION_ERROR", '"seats" is required')
        seats = validation.seat_list(body["seats"], flight=order.flight)
        return commands.change_seats(order=order, seats=seats, update_id=order_request.update_id)

    result = requests.carry_out(order_request, change)
    return answer(result, answered=lambda s: JsonResponse(status_json(s, fields=SEAT_FIELDS)))


SEAT_FIELDS = ("orderId", "status", "seats", "expiresAt")


@api_view("GET")
def order_status(request: HttpRequest, order_id: str) -> JsonResponse:
    order = owned_order(request, order_id)
    commands.settle_soon(order)
    return JsonResponse(order_json(order))


@api_view("POST")
def order_pay(request: HttpRequest, order_id: str) -> JsonResponse:
    order = owned_order(request, order_id)
    body = inputs.json_object(request)
    order_request = claim(request, RequestKind.PAY, body, order=order)

    def pay() -> BookingStatus:
        code = inputs.payment_code(body.get("paymentCode"))
        return commands.submit_payment(order=order, payment_code=code, update_id=order_request.update_id)

    result = requests.carry_out(order_request, pay)
    return answer(
        result, answered=lambda s: JsonResponse(status_json(s, fields=("orderId", "status")), status=202)
    )


@api_view("GET", "DELETE")
def order_resource(request: HttpRequest, order_id: str) -> JsonResponse:
    """``/api/orders/{id}``: GET its status; DELETE abandons it (its seats are released)."""
    order = owned_order(request, order_id)
    if request.method == "GET":
        commands.settle_soon(order)
        return JsonResponse(order_json(order))
    order_request = claim(request, RequestKind.CANCEL, None, order=order)
    result = requests.carry_out(order_request, lambda: commands.cancel_order(order=order))
    return answer(
        result, answered=lambda s: JsonResponse(status_json(s, fields=("orderId", "status")), status=202)
    )


def order_json(order: Order) -> dict[str, Any]:
    """The status of PRD section 10, from the order's row (the read model)."""
    remaining = 0
    if order.hold_expires_at and order.is_active:
        remaining = max(0, int((order.hold_expires_at - timezone.now()).total_seconds()))
    waiting = requests.open_request(order)
    return {
        "orderId": order.id,
        "flightId": order.flight_id,
        "status": order.state,
        "seats": order.seats,
        "expiresAt": iso(order.hold_expires_at),
        "timerRemaining": remaining,
        "paymentAttempts": order.payment_attempts,
        "lastError": order.last_error or None,
        "pendingRequest": {"kind": waiting.kind, "since": iso(waiting.created_at)} if waiting else None,
        "serverTime": iso(timezone.now()),
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

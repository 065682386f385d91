"""The JSON API of PRD section 10: thin views, camelCase fields, one error shape.

Errors are ``{"error": "CODE", "message": "..."}`` with 400, 404, 409, 415 or 503; no input
ever causes a 500. An order's endpoints answer only the session that created it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC
from functools import wraps
from typing import Any

from django.http import Http404, HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from flights.models import Flight
from flights.selectors import availability, seat_map, upcoming_flights
from orders import ownership, validation
from orders.models import Order
from orders.services import BookingError, cancel_order, change_seats, start_order, submit_payment
from temporal_worker.shared import BookingStatus

View = Callable[..., JsonResponse]


def error(status: int, code: str, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": code, "message": message, **extra}, status=status)


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
            except BookingError as failure:
                extra = {"seats": failure.seats} if failure.seats else {}
                return error(failure.status, failure.code, failure.message, **extra)

        return wrapper

    return decorate


def json_body(request: HttpRequest) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise BookingError(
            415, "UNSUPPORTED_MEDIA_TYPE", "Send the body as JSON (Content-Type: application/json)"
        )
    try:
        body = json.loads(request.body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BookingError(400, "INVALID_JSON", "The body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BookingError(400, "VALIDATION_ERROR", "The body must be a JSON object")
    return body


def iso(moment: Any) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def owned_order(request: HttpRequest, order_id: str) -> Order:
    try:
        return ownership.get_owned_order(request, order_id)
    except Http404:
        raise BookingError(404, "ORDER_NOT_FOUND", f"Order {order_id} not found") from None


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


# --- Orders --------------------------------------------------------------------------------


@api_view("POST")
def order_create(request: HttpRequest) -> JsonResponse:
    body = json_body(request)
    flight_id = body.get("flightId")
    if not isinstance(flight_id, str) or not flight_id:
        raise BookingError(400, "VALIDATION_ERROR", '"flightId" must be a flight id such as "fl-101"')
    flight = Flight.objects.filter(id=flight_id).first()
    if flight is None:
        raise BookingError(400, "FLIGHT_NOT_FOUND", f"Flight {flight_id} not found")
    validation.bookable(flight)
    if "seats" not in body:
        raise BookingError(400, "VALIDATION_ERROR", '"seats" is required')
    seats = validation.seat_list(body["seats"], flight=flight)
    status = start_order(flight_id=flight.id, seats=seats)
    ownership.remember(request, status.order_id)
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
    body = json_body(request)
    if "seats" not in body:
        raise BookingError(400, "VALIDATION_ERROR", '"seats" is required')
    status = change_seats(order=order, seats=validation.seat_list(body["seats"], flight=order.flight))
    return JsonResponse(status_json(status, fields=("orderId", "status", "seats", "expiresAt")))


@api_view("GET")
def order_status(request: HttpRequest, order_id: str) -> JsonResponse:
    order = owned_order(request, order_id)
    return JsonResponse(order_json(order))


@api_view("POST")
def order_pay(request: HttpRequest, order_id: str) -> JsonResponse:
    order = owned_order(request, order_id)
    code = validation.payment_code(json_body(request).get("paymentCode"))
    status = submit_payment(order=order, payment_code=code)
    return JsonResponse({"orderId": status.order_id, "status": status.state.value}, status=202)


@api_view("GET", "DELETE")
def order_resource(request: HttpRequest, order_id: str) -> JsonResponse:
    """``/api/orders/{id}``: GET its status; DELETE abandons it (its seats are released)."""
    order = owned_order(request, order_id)
    if request.method == "DELETE":
        cancel_order(order=order)
        return JsonResponse({"orderId": order.id, "status": order.state}, status=202)
    return JsonResponse(order_json(order))


def order_json(order: Order) -> dict[str, Any]:
    """The status of PRD section 10, from the order's row (the read model)."""
    remaining = 0
    if order.hold_expires_at and order.is_active:
        remaining = max(0, int((order.hold_expires_at - timezone.now()).total_seconds()))
    return {
        "orderId": order.id,
        "flightId": order.flight_id,
        "status": order.state,
        "seats": order.seats,
        "expiresAt": iso(order.hold_expires_at),
        "timerRemaining": remaining,
        "paymentAttempts": order.payment_attempts,
        "lastError": order.last_error or None,
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

"""Changes to orders and seats. The activities call these; so do the tests.

Each function is idempotent: activities run at least once, and a retry must change nothing
the first run already changed.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from flights.models import Seat
from orders import holds
from orders.models import BookedSeat, Order, OrderEvent, OrderState
from payments import services as payment_services
from temporal_worker import client as temporal_client
from temporal_worker.shared import (
    ACTIVE_STATES,
    PAYING_STATES,
    TERMINAL_STATES,
    BookingInput,
    BookingStatus,
    CancelRequest,
    ErrorType,
    Messages,
    OrderRecord,
    PaymentRequest,
    SeatSelection,
    State,
    workflow_id_for,
)
from temporal_worker.workflows import BookingWorkflow

T = TypeVar("T")
logger = logging.getLogger(__name__)


class UnknownSeats(Exception):
    """Seats that are not on the flight."""

    def __init__(self, seats: list[str]) -> None:
        super().__init__(f"{'Seat' if len(seats) == 1 else 'Seats'} {', '.join(seats)} not on this flight")
        self.seats = seats


class SeatsAlreadyBooked(Exception):
    """The (flight, seat) constraint refused a sale: another order bought a seat first."""

    def __init__(self, seats: list[str]) -> None:
        super().__init__(f"{', '.join(seats)} already booked")
        self.seats = seats


def record_order(*, record: OrderRecord) -> bool:
    """Write a state transition on the order's row and its history, once per version.

    A record older than what the row shows is ignored (an activity retried late never moves
    an order backwards). Returns whether the row changed.
    """
    with transaction.atomic():
        order, created = Order.objects.select_for_update().get_or_create(
            id=record.order_id, defaults={"flight_id": record.flight_id}
        )
        if not created and order.version >= record.version:
            return False
        order.state = record.state
        order.seats = list(record.seats)
        order.hold_expires_at = record.hold_expires_at
        order.payment_attempts = max(order.payment_attempts, record.payment_attempts)
        order.last_error = record.last_error
        order.version = record.version
        order.save()
        OrderEvent.objects.get_or_create(
            order=order,
            version=record.version,
            defaults={
                "state": record.state,
                "at": record.at,
                "seats": list(record.seats),
                "detail": record.last_error,
            },
        )
        if record.state in TERMINAL_STATES:
            payment_services.close_open_attempts(order_id=order.id)
    return True


def hold_seats(*, record: OrderRecord, ttl_ms: int, release: list[str]) -> list[str]:
    """Hold all of ``record.seats`` for the order or none; release ``release``; record.

    Returns the seats another order holds or has bought (nothing changed then). Raises
    UnknownSeats for a seat that is not on the flight.
    """
    seats = list(record.seats)
    known = set(
        Seat.objects.filter(flight_id=record.flight_id, code__in=seats).values_list("code", flat=True)
    )
    if unknown := [seat for seat in seats if seat not in known]:
        raise UnknownSeats(unknown)
    sold = set(
        BookedSeat.objects.filter(flight_id=record.flight_id, seat__code__in=seats)
        .exclude(order_id=record.order_id)
        .values_list("seat__code", flat=True)
    )
    if sold:
        return [seat for seat in seats if seat in sold]
    taken = holds.acquire(flight_id=record.flight_id, seats=seats, order_id=record.order_id, ttl_ms=ttl_ms)
    if taken:
        return taken
    holds.release(flight_id=record.flight_id, seats=release, order_id=record.order_id)
    record_order(record=record)
    return []


def release_seats(*, order_id: str, flight_id: str, seats: list[str]) -> int:
    """Release the seats this order still holds. Idempotent; never touches another's hold."""
    return holds.release(flight_id=flight_id, seats=seats, order_id=order_id)


def confirm_booking(*, record: OrderRecord) -> None:
    """Sell the order's seats and mark it CONFIRMED, in one transaction.

    The (flight, seat) unique constraint decides: if any seat is sold already, nothing is
    written and SeatsAlreadyBooked names the seats. Idempotent: a retry after a commit whose
    answer was lost finds the order confirmed and returns.
    """
    if Order.objects.filter(id=record.order_id, state=OrderState.CONFIRMED).exists():
        return
    seats = list(Seat.objects.filter(flight_id=record.flight_id, code__in=record.seats))
    try:
        with transaction.atomic():
            BookedSeat.objects.bulk_create(
                [
                    BookedSeat(flight_id=record.flight_id, seat=seat, order_id=record.order_id)
                    for seat in seats
                ]
            )
            record_order(record=record)
    except IntegrityError:
        sold = BookedSeat.objects.filter(flight_id=record.flight_id, seat__code__in=record.seats)
        raise SeatsAlreadyBooked(sorted(sold.values_list("seat__code", flat=True))) from None


def hold_deadline_remaining(order: Order) -> int:
    """Whole seconds left on the hold (0 when it has passed or there is none)."""
    if order.hold_expires_at is None:
        return 0
    return max(0, int((order.hold_expires_at - timezone.now()).total_seconds()))


# --- Customer actions: through the booking workflow ---------------------------------------


class BookingError(Exception):
    """A failure the customer must be told about: HTTP status, machine code, human message."""

    def __init__(self, status: int, code: str, message: str, *, seats: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.seats = status, code, message, seats or []


SERVICE_UNAVAILABLE = "The booking service is temporarily unavailable. Please try again in a moment."
_UPDATE_ERRORS = {
    ErrorType.INVALID_SEATS: 400,
    ErrorType.UNKNOWN_SEATS: 400,
    ErrorType.INVALID_PAYMENT_CODE: 400,
    ErrorType.ORDER_EXPIRED: 409,
    ErrorType.ORDER_NOT_EDITABLE: 409,
}


def new_order_id() -> str:
    """Unguessable: 80 random bits."""
    return "ord-" + secrets.token_hex(10)


def booking_input(*, order_id: str, flight_id: str) -> BookingInput:
    return BookingInput(
        order_id=order_id,
        flight_id=flight_id,
        hold_seconds=settings.SEAT_RESERVATION_TIMEOUT.total_seconds(),
        hold_ttl_margin_seconds=settings.SEAT_HOLD_TTL_MARGIN.total_seconds(),
        payment_timeout_seconds=settings.PAYMENT_VALIDATION_TIMEOUT.total_seconds(),
        payment_max_attempts=settings.PAYMENT_MAX_RETRIES,
    )


def start_order(*, flight_id: str, seats: list[str]) -> BookingStatus:
    """Start a booking and hold its first seats in one round trip (update-with-start).

    Returns the held order; raises BookingError (INVALID_SEATS with nothing held, or 503).
    """
    order_id = new_order_id()

    async def operation(client: Client) -> BookingStatus:
        start = WithStartWorkflowOperation(
            BookingWorkflow.run,
            booking_input(order_id=order_id, flight_id=flight_id),
            id=workflow_id_for(order_id),
            task_queue=settings.TEMPORAL_TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
        return await client.execute_update_with_start_workflow(
            BookingWorkflow.hold_seats,
            SeatSelection(seats=seats),
            start_workflow_operation=start,
            rpc_timeout=settings.TEMPORAL_RPC_TIMEOUT,
        )

    return _through_workflow(operation)


def change_seats(*, order: Order, seats: list[str]) -> BookingStatus:
    """Hold exactly ``seats`` for the order and reset its timer (a Workflow Update)."""
    _ensure_live(order)
    return _update(order, BookingWorkflow.hold_seats, SeatSelection(seats=seats))


def submit_payment(*, order: Order, payment_code: str) -> BookingStatus:
    """Hand the payment code to the workflow; it answers at once and pays in the background."""
    _ensure_live(order)
    return _update(order, BookingWorkflow.submit_payment, PaymentRequest(payment_code=payment_code))


def cancel_order(*, order: Order, reason: str = Messages.CANCELLED_BY_CUSTOMER) -> None:
    """Ask the workflow to let the order's seats go (a signal: it acts on it at once)."""
    _ensure_live(order)
    if order.state in PAYING_STATES:
        raise BookingError(
            409,
            ErrorType.ORDER_NOT_EDITABLE,
            "A payment is under way: the order can no longer be cancelled",
        )

    async def operation(client: Client) -> None:
        await client.get_workflow_handle(order.workflow_id).signal(
            BookingWorkflow.cancel,
            CancelRequest(reason=reason),
            rpc_timeout=settings.TEMPORAL_RPC_TIMEOUT,
        )

    _through_workflow(operation, order=order)


def live_status(*, order: Order) -> BookingStatus:
    """The workflow's own view of the order (the get_status query)."""

    async def operation(client: Client) -> BookingStatus:
        return await client.get_workflow_handle(order.workflow_id).query(
            BookingWorkflow.get_status, rpc_timeout=settings.TEMPORAL_RPC_TIMEOUT
        )

    return _through_workflow(operation, order=order)


def _ensure_live(order: Order) -> None:
    if order.state == OrderState.EXPIRED or (
        order.state == OrderState.SEATS_RESERVED
        and order.hold_expires_at
        and order.hold_expires_at <= timezone.now()
    ):
        raise BookingError(409, ErrorType.ORDER_EXPIRED, "Seat reservation has expired")
    if order.is_terminal:
        raise BookingError(
            409,
            ErrorType.ORDER_NOT_EDITABLE,
            f"The order is {order.get_state_display().lower()}: it can no longer be changed",
        )


def _update(order: Order, update: Any, argument: Any) -> BookingStatus:
    async def operation(client: Client) -> BookingStatus:
        return await client.get_workflow_handle(order.workflow_id).execute_update(
            update, argument, rpc_timeout=settings.TEMPORAL_RPC_TIMEOUT
        )

    return _through_workflow(operation, order=order)


def _through_workflow(operation: Callable[[Client], Awaitable[T]], *, order: Order | None = None) -> T:
    """Run a Temporal call; turn what can go wrong into a BookingError the customer can read."""
    try:
        return temporal_client.call(operation)
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        if isinstance(cause, ApplicationError) and cause.type in _UPDATE_ERRORS:
            seats = list(cause.details[0]) if cause.details and isinstance(cause.details[0], list) else []
            raise BookingError(_UPDATE_ERRORS[cause.type], cause.type, cause.message, seats=seats) from error
        raise
    except RPCError as error:
        if order is not None and error.status == RPCStatusCode.NOT_FOUND:
            # The workflow closed between our read of the row and the call: the row tells how.
            order.refresh_from_db()
            _ensure_live(order)
        _log_unavailable(error, order)
        raise BookingError(503, "SERVICE_UNAVAILABLE", SERVICE_UNAVAILABLE) from error
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError, RuntimeError) as error:
        _log_unavailable(error, order)
        raise BookingError(503, "SERVICE_UNAVAILABLE", SERVICE_UNAVAILABLE) from error


def _log_unavailable(error: BaseException, order: Order | None) -> None:
    logger.warning(
        "Temporal did not answer (%s): %s",
        type(error).__name__,
        error,
        extra={"order_id": order.id if order else "-"},
    )


def reconcile_orders(*, idle_for: timedelta = timedelta(minutes=5)) -> list[str]:
    """Close orders whose workflow ended without saying so (terminated by hand, say).

    A live order is normally closed by its workflow; one terminated from the Temporal UI or
    CLI would stay active forever. For each active order untouched for ``idle_for`` whose
    workflow no longer runs: release what it still holds and mark it FAILED. Idempotent.
    """
    closed = []
    idle = Order.objects.filter(
        state__in=[s.value for s in ACTIVE_STATES], updated_at__lt=timezone.now() - idle_for
    )
    for order in idle:
        if _workflow_is_running(order):
            continue
        release_seats(order_id=order.id, flight_id=order.flight_id, seats=list(order.seats))
        record_order(
            record=OrderRecord(
                order_id=order.id,
                flight_id=order.flight_id,
                version=order.version + 1,
                state=State.FAILED,
                seats=list(order.seats),
                at=timezone.now(),
                hold_expires_at=order.hold_expires_at,
                payment_attempts=order.payment_attempts,
                last_error=Messages.STOPPED,
            )
        )
        closed.append(order.id)
    return closed


def _workflow_is_running(order: Order) -> bool:
    async def operation(client: Client) -> bool:
        try:
            description = await client.get_workflow_handle(order.workflow_id).describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return description.status == WorkflowExecutionStatus.RUNNING

    return temporal_client.call(operation)

"""What the web asks of a booking: each one a call into the order's workflow.

Every call is safe to repeat, because its Temporal ids are fixed before it is made:

- the order's id (and so its workflow id, ``booking-<order id>``) exists, with its row, before
  Temporal hears of it, so a create whose answer is late can be followed, and abandoned;
- the workflow starts with ``USE_EXISTING`` (a repeat joins the running booking) and
  ``REJECT_DUPLICATE`` (a booking that ended never starts again);
- each update carries an id (``FIRST_HOLD_UPDATE_ID`` for the first hold, the request's own
  for a seat change or a payment), and Temporal runs an update with a given id at most once.

A call ends in one of four ways: the workflow's answer (a ``BookingStatus``); ``Refused``
(nothing changed); ``StillConfirming`` (handed over, its answer late: it may still happen); or
``ServiceUnavailable`` (Temporal unreachable: nothing was sent). See ``orders.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from common import temporal_client, tracing
from common.errors import Refused
from common.temporal_client import TemporalUnreachable
from flights.models import Flight
from orders import hoarding, idempotency, order_rows, ownership
from orders.errors import SERVICE_UNAVAILABLE, SERVICE_UNAVAILABLE_CODE, ServiceUnavailable, StillConfirming
from orders.models import Order, OrderRequest
from orders.workflow_contract import (
    PAYING_STATES,
    WORKFLOW,
    BookingInput,
    BookingStatus,
    CancelRequest,
    ErrorType,
    Messages,
    PaymentRequest,
    Queries,
    SearchAttributes,
    SeatSelection,
    Signals,
    State,
    Updates,
)

T = TypeVar("T")
logger = logging.getLogger(__name__)

FIRST_HOLD_UPDATE_ID = "first-hold"
# Refusals the workflow gives for a reason the customer can act on; any other failure of an
# update (its activities gave up: a store stayed unreachable) changed nothing either, and is
# said as "temporarily unavailable".
CUSTOMER_REFUSALS = {
    ErrorType.INVALID_SEATS,
    ErrorType.UNKNOWN_SEATS,
    ErrorType.INVALID_PAYMENT_CODE,
    ErrorType.ORDER_EXPIRED,
    ErrorType.ORDER_NOT_EDITABLE,
    ErrorType.TOO_MANY_CHANGES,
}


def _start(order: Order) -> dict[str, Any]:
    """How every start of an order's workflow is made: the order's own id, so that there is
    one workflow per order; ``REJECT_DUPLICATE`` keeps an ended booking ended."""
    return {
        "workflow": WORKFLOW,
        "arg": BookingInput(
            order_id=order.id,
            flight_id=order.flight_id,
            hold_seconds=settings.SEAT_RESERVATION_TIMEOUT.total_seconds(),
            hold_ttl_margin_seconds=settings.SEAT_HOLD_TTL_MARGIN.total_seconds(),
            payment_timeout_seconds=settings.PAYMENT_VALIDATION_TIMEOUT.total_seconds(),
            payment_max_attempts=order.payment_max_attempts,
            max_seat_changes=settings.MAX_SEAT_CHANGES,
            hold_life_ends_at=order.hold_life_ends_at,
        ),
        "id": order.workflow_id,
        "search_attributes": TypedSearchAttributes(
            [SearchAttributePair(SearchAttributes.FLIGHT_ID, order.flight_id)]
        ),
        "task_queue": settings.TEMPORAL_TASK_QUEUE,
        "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
    }


# --- Create ----------------------------------------------------------------------------------


def create_order(
    *, order_request: OrderRequest, flight: Flight, seats: list[str], client: hoarding.Client
) -> BookingStatus:
    """Start a new order for the client's session, holding ``seats`` (or, when this is a retry of a create
    whose answer was late, carry on with the order that create made).

    The order's row and its ownership are saved before Temporal hears of it, so the customer can
    follow it whatever happens next. When Temporal surely refused it, or never heard of it, the
    order is removed again: the customer is told so, and nothing remains. A new order over one
    of the client's limits (``orders.hoarding``) is refused before anything is written.
    """
    if order_request.order is not None:
        return hold_first_seats(order=order_request.order)
    session = client.session
    assert session is not None  # a customer's create always comes with their session
    order = order_rows.new_order(flight=flight, seats=seats, client=client)
    idempotency.attach(order_request, order)
    ownership.remember(session, order.id)
    session.save()
    try:
        return hold_first_seats(order=order)
    except (Refused, ServiceUnavailable):
        ownership.forget(session, order.id)
        order_rows.discard(order)
        raise


def hold_first_seats(*, order: Order) -> BookingStatus:
    """Start the order's workflow and hold its first seats in one round trip (update-with-start).

    Safe to repeat: a repeat joins the running workflow and its first hold, and once the booking
    has ended, the first hold's outcome is read from its history.
    """

    async def operation(client: Client) -> BookingStatus:
        start: WithStartWorkflowOperation[Any, BookingStatus] = WithStartWorkflowOperation(
            **_start(order), id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING
        )
        try:
            return await client.execute_update_with_start_workflow(
                Updates.HOLD_SEATS,
                SeatSelection(seats=list(order.seats)),
                start_workflow_operation=start,
                id=FIRST_HOLD_UPDATE_ID,
                result_type=BookingStatus,
                rpc_timeout=_rpc_timeout(),
            )
        except WorkflowAlreadyStartedError:
            return await outcome_of(client, order, FIRST_HOLD_UPDATE_ID)
        finally:
            await _consume_start_outcome(start)

    return deliver(operation, order=order)


async def _consume_start_outcome(start: WithStartWorkflowOperation[Any, Any]) -> None:
    """The start's own outcome (``workflow_handle()``) is settled by the time the update call
    returns or raises; a failed start left unread would be logged by asyncio as an error. Its
    failure was already handled, so it is read here and let go. (Should the SDK have settled
    neither outcome, the wait ends after a second: nothing can settle it any more.)"""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(start.workflow_handle(), timeout=1.0)


# --- Seat change, payment, cancel ------------------------------------------------------------


def ensure_changeable(order: Order) -> None:
    """Refuse at once what the order's row already says the workflow would refuse."""
    if (refusal := order.why_unchangeable()) is not None:
        raise Refused(*refusal)


def _ensure_changeable_for(order: Order, request: OrderRequest) -> None:
    """A new request is checked against the row first; the retry of one whose answer was late is
    not: it goes to Temporal with its first update id, and gets what that update did."""
    if not request.resumed:
        ensure_changeable(order)


def change_seats(
    *, order: Order, seats: list[str], request: OrderRequest, client: hoarding.Client
) -> BookingStatus:
    """Hold exactly ``seats`` for the order and reset its timer (the ``hold_seats`` update),
    within the client's limits (``orders.hoarding``)."""
    _ensure_changeable_for(order, request)
    if not request.resumed:
        hoarding.check_seat_change(client=client, order=order, seats=seats)
    return _update(order, Updates.HOLD_SEATS, SeatSelection(seats=seats), request.update_id)


def submit_payment(*, order: Order, payment_code: str, request: OrderRequest) -> BookingStatus:
    """Hand the payment code to the workflow; it answers at once and pays in the background."""
    _ensure_changeable_for(order, request)
    return _update(
        order, Updates.SUBMIT_PAYMENT, PaymentRequest(payment_code=payment_code), request.update_id
    )


def cancel_order(*, order: Order, reason: str = Messages.CANCELLED_BY_CUSTOMER) -> BookingStatus:
    """Ask the workflow to let the order's seats go (a signal), and answer the order as it is.

    Sent with signal-with-start, so that an order whose creation is still being confirmed can be
    abandoned too: whichever reaches the workflow first, the cancel or the first hold, the
    booking ends holding nothing. ``REJECT_DUPLICATE`` keeps an ended booking ended.
    """
    if order.state in PAYING_STATES:  # before the general rule, which would say "payment pending"
        raise Refused(ErrorType.ORDER_NOT_EDITABLE, Messages.CANCEL_DURING_PAYMENT)
    if order.state != State.CREATED:
        ensure_changeable(order)

    async def operation(client: Client) -> None:
        with contextlib.suppress(WorkflowAlreadyStartedError):  # ended already: the row says how
            await client.start_workflow(
                **_start(order),
                start_signal=Signals.CANCEL,
                start_signal_args=[CancelRequest(reason=reason)],
                rpc_timeout=_rpc_timeout(),
            )

    deliver(operation, order=order)
    return status_of(order)


def live_status(*, order: Order) -> BookingStatus:
    """The workflow's own view of the order (the get_status query)."""

    async def operation(client: Client) -> BookingStatus:
        return await client.get_workflow_handle(order.workflow_id).query(
            Queries.GET_STATUS, result_type=BookingStatus, rpc_timeout=_rpc_timeout()
        )

    return deliver(operation, order=order)


def _update(order: Order, update: str, argument: Any, update_id: str) -> BookingStatus:
    async def operation(client: Client) -> BookingStatus:
        handle = client.get_workflow_handle(order.workflow_id)
        try:
            return await handle.execute_update(
                update, argument, id=update_id, result_type=BookingStatus, rpc_timeout=_rpc_timeout()
            )
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            # The workflow has ended. If this update ran before it did, its outcome is kept.
            return await outcome_of(client, order, update_id)

    return deliver(operation, order=order)


async def outcome_of(client: Client, order: Order, update_id: str) -> BookingStatus:
    """The recorded outcome of an update of the order's (ended) workflow."""
    handle = client.get_workflow_handle(order.workflow_id).get_update_handle(
        update_id, result_type=BookingStatus
    )
    return await handle.result(rpc_timeout=_rpc_timeout())


# --- One way through Temporal ------------------------------------------------------------------


def _rpc_timeout() -> timedelta:
    return settings.TEMPORAL_ANSWER_TIMEOUT


def deliver(operation: Callable[[Client], Awaitable[T]], *, order: Order) -> T:
    """Make a Temporal call; turn each way it can end into an answer, or one of the errors."""
    tracing.tag_order(order.id)  # the request's span: a new order is known only from here on
    try:
        return temporal_client.call(operation)
    except WorkflowUpdateFailedError as error:
        raise _refusal(error) from error
    except TemporalUnreachable as error:
        _log_outage("could not reach Temporal: nothing was sent", error, order)
        raise ServiceUnavailable from error
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            # The workflow ended, and the update never ran in it: the row says how it ended.
            order.refresh_from_db()
            ensure_changeable(order)
            raise Refused(
                ErrorType.ORDER_NOT_EDITABLE, "This booking has ended: it can no longer be changed"
            ) from error
        _log_outage("Temporal did not answer; the request may still be carried out", error, order)
        raise StillConfirming from error
    except (TimeoutError, RPCTimeoutOrCancelledError) as error:
        _log_outage("Temporal did not answer in time; the request may still be carried out", error, order)
        raise StillConfirming from error


def _refusal(error: WorkflowUpdateFailedError) -> Refused:
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.type in CUSTOMER_REFUSALS:
        seats = cause.details[0] if cause.details and isinstance(cause.details[0], list) else []
        return Refused(cause.type, cause.message, seats=seats)
    return Refused(SERVICE_UNAVAILABLE_CODE, SERVICE_UNAVAILABLE)


def _log_outage(what: str, error: BaseException, order: Order) -> None:
    logger.warning("%s (%s: %s)", what, type(error).__name__, error, extra={"order_id": order.id})


def status_of(order: Order) -> BookingStatus:
    """The order as its row shows it."""
    return BookingStatus(
        order_id=order.id,
        state=State(order.state),
        seats=list(order.seats),
        hold_expires_at=order.hold_expires_at,
        payment_attempts=order.payment_attempts,
        last_error=order.last_error,
        version=order.version,
    )

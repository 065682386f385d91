"""Reconciliation: what repairs an order that its workflow can no longer finish, or a request
whose outcome nobody has learnt. Safe to run at any time, as often as wanted."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from django.utils import timezone
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from common.errors import Refused
from orders import commands, temporal_client
from orders.booking import ACTIVE_STATES, Messages, OrderRecord, State
from orders.bookkeeping import record_order, release_seats
from orders.errors import ServiceUnavailable, StillConfirming
from orders.models import Order, OrderRequest, RequestState


def reconcile_orders(*, idle_for: timedelta = timedelta(minutes=5)) -> list[str]:
    """Settle requests answered "still confirming", and close orders whose workflow ended
    without saying so (terminated by hand, say).

    A request whose answer was late is normally settled when its order is next looked at; this
    settles those nobody looked at (the create of an order whose start was lost with a restart
    of Temporal is sent again). A live order is normally closed by its workflow; one terminated
    from the Temporal UI or CLI would stay active forever. For each active order untouched for
    ``idle_for`` whose workflow no longer runs: release what it still holds and mark it FAILED.
    Idempotent.
    """
    for request in _open_requests(older_than=idle_for):
        commands.settle(request)
    for order in _unconfirmed_orders(older_than=idle_for):
        with contextlib.suppress(Refused, StillConfirming, ServiceUnavailable):
            commands.hold_first_seats(order=order)  # what its customer asked for; at most once
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


def _unconfirmed_orders(*, older_than: timedelta) -> list[Order]:
    """Orders still CREATED, with no request left to settle (their first hold never answered)."""
    open_states = [RequestState.UNKNOWN, RequestState.RUNNING]
    return list(
        Order.objects.filter(state=State.CREATED, created_at__lt=timezone.now() - older_than).exclude(
            requests__state__in=open_states
        )
    )


def _open_requests(*, older_than: timedelta) -> list[OrderRequest]:
    """Requests answered "still confirming" that nobody has looked at since."""
    return list(
        OrderRequest.objects.select_related("order").filter(
            state__in=[RequestState.UNKNOWN, RequestState.RUNNING],
            lease_until__lt=timezone.now(),
            created_at__lt=timezone.now() - older_than,
            order__isnull=False,
        )
    )

"""Learning, in the background, the outcome of a request that was answered 202 "still
confirming": when its order is looked at (``settle_soon``, at most once per ``SETTLE_EVERY``), and
by the reconciliation for orders nobody looks at (``settle``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.db import connections
from django.db.models import Q
from django.utils import timezone
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from common.errors import Refused
from orders import idempotency
from orders.errors import ServiceUnavailable, StillConfirming
from orders.models import Order, OrderRequest, RequestKind, RequestState
from orders.workflow_calls import cancel_order, deliver, hold_first_seats, outcome_of
from orders.workflow_contract import BookingStatus

logger = logging.getLogger(__name__)

SETTLE_EVERY = timedelta(seconds=5)
_settling = ThreadPoolExecutor(max_workers=2, thread_name_prefix="settle")


def settle_soon(order: Order, waiting: OrderRequest | None) -> None:
    """In the background, learn the outcome of ``waiting``, the order's latest request that was
    answered "still confirming" (``idempotency.open_request``), at most once per SETTLE_EVERY. Called
    when the order is looked at; the reconciliation does the same for orders nobody looks at."""
    request = waiting
    if request is None or not _take_turn(request):
        return
    _settling.submit(_settle_in_thread, request.pk)


def _take_turn(request: OrderRequest) -> bool:
    now = timezone.now()
    if request.state == RequestState.RUNNING and request.lease_until > now:
        return False  # a web process is still on it
    due = Q(settle_after__isnull=True) | Q(settle_after__lte=now)
    return bool(OrderRequest.objects.filter(due, pk=request.pk).update(settle_after=now + SETTLE_EVERY))


def _settle_in_thread(request_id: int) -> None:
    try:
        request = OrderRequest.objects.select_related("order").get(pk=request_id)
        settle(request)
    except Exception:
        logger.exception("settling request %s failed", request_id)
    finally:
        connections.close_all()


def settle(request: OrderRequest) -> bool:
    """Learn, and keep, the outcome of a request whose answer was "still confirming".

    The first hold is sent again with its own ids: if it was lost with its start, it happens now;
    if not, Temporal joins it. A seat change or a payment is not sent again (its body is not
    kept: a payment code is stored nowhere in plain text, neither here nor in Temporal, whose
    payloads common/payload_codec.py encrypts): its outcome is read from the workflow, and when the
    workflow never received it, it is marked LOST (nothing happened; the customer may retry).
    Returns whether its outcome is known now.
    """
    order = request.order
    if order is None:
        return False
    status: BookingStatus | None
    try:
        if request.kind == RequestKind.CREATE:
            status = hold_first_seats(order=order)
        elif request.kind == RequestKind.CANCEL:
            status = cancel_order(order=order)
        else:
            status = deliver(_outcome_or_none(order, request.update_id), order=order)
    except Refused as refusal:
        idempotency.finish_settled(request, refusal=refusal)
    except (StillConfirming, ServiceUnavailable):
        return False  # still not known: the next look tries again
    else:
        if status is None:
            idempotency.finish_settled(request, lost=True)
        else:
            idempotency.finish_settled(request, status=status)
    return True


def _outcome_or_none(order: Order, update_id: str) -> Callable[[Client], Awaitable[BookingStatus | None]]:
    """Read an update's outcome; None when the workflow never received it (it was lost, say, with
    a restart of Temporal before a worker took it): then it did not happen, and will not."""

    async def operation(client: Client) -> BookingStatus | None:
        try:
            return await outcome_of(client, order, update_id)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    return operation

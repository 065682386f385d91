"""An order belongs to the browser session that created it: its pages and actions answer 404
to anyone else (the same answer as for an order that does not exist). Once booked, its private
link (a signed token) opens a read-only page of it in any browser."""

from __future__ import annotations

from django.contrib.sessions.backends.base import SessionBase
from django.core import signing
from django.db.models import Q
from django.http import Http404, HttpRequest

from common import tracing
from flights.models import Flight
from orders.models import Order, on_hold
from orders.workflow_contract import State

SESSION_KEY = "order_ids"
MAX_REMEMBERED = 50


def remember(session: SessionBase, order_id: str) -> None:
    order_ids = [oid for oid in session.get(SESSION_KEY, []) if oid != order_id]
    session[SESSION_KEY] = [*order_ids, order_id][-MAX_REMEMBERED:]


def forget(session: SessionBase, order_id: str) -> None:
    session[SESSION_KEY] = [oid for oid in session.get(SESSION_KEY, []) if oid != order_id]


def session_key(request: HttpRequest) -> str:
    """The session's key, the scope of its Idempotency-Keys (a session is made if there is none)."""
    if request.session.session_key is None:
        request.session.save()
    return str(request.session.session_key)


def owns(request: HttpRequest, order_id: str) -> bool:
    return order_id in request.session.get(SESSION_KEY, [])


def get_owned_order(request: HttpRequest, order_id: str) -> Order:
    """The order, if this session created it; Http404 otherwise."""
    if not owns(request, order_id):
        raise Http404("Order not found")
    tracing.tag_order(order_id)
    try:
        return _as_shown(order_id)
    except Order.DoesNotExist:
        raise Http404("Order not found") from None


def reread(order: Order) -> Order:
    """The order read again as its page shows it: the fresh row, with its open request."""
    return _as_shown(order.id)


def _as_shown(order_id: str) -> Order:
    return Order.objects.with_open_request().select_related("flight").get(id=order_id)


def live_order_on(request: HttpRequest, flight: Flight) -> Order | None:
    """This session's newest order on ``flight`` that holds seats, or is still being confirmed
    (None if there is none)."""
    order_ids = request.session.get(SESSION_KEY, [])
    if not order_ids:
        return None
    return (
        Order.objects.filter(id__in=order_ids, flight=flight)
        .filter(on_hold() | Q(state=State.CREATED))
        .order_by("-created_at")
        .first()
    )


BOOKING_LINK_SALT = "orders.workflow_contract-link"


def booking_token(order: Order) -> str:
    """The token of the order's private link: its id signed with SECRET_KEY, so that only the
    link the customer was given opens it (nobody can make one for another order)."""
    return signing.dumps(order.id, salt=BOOKING_LINK_SALT)


def order_by_token(token: str) -> Order:
    """The order a private link opens; Http404 for a lost, cut or forged link."""
    try:
        order_id = signing.loads(token, salt=BOOKING_LINK_SALT)
        return Order.objects.with_open_request().select_related("flight").get(id=order_id)
    except (signing.BadSignature, Order.DoesNotExist):
        raise Http404("Booking not found") from None

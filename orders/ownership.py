"""An order belongs to the browser session that created it: its pages and actions answer 404
to anyone else (the same answer as for an order that does not exist)."""

from __future__ import annotations

from django.http import Http404, HttpRequest

from orders.models import Order

SESSION_KEY = "order_ids"
MAX_REMEMBERED = 50


def remember(request: HttpRequest, order_id: str) -> None:
    order_ids = [oid for oid in request.session.get(SESSION_KEY, []) if oid != order_id]
    request.session[SESSION_KEY] = [*order_ids, order_id][-MAX_REMEMBERED:]


def owns(request: HttpRequest, order_id: str) -> bool:
    return order_id in request.session.get(SESSION_KEY, [])


def get_owned_order(request: HttpRequest, order_id: str) -> Order:
    """The order, if this session created it; Http404 otherwise."""
    if not owns(request, order_id):
        raise Http404("Order not found")
    try:
        return Order.objects.select_related("flight").get(id=order_id)
    except Order.DoesNotExist:
        raise Http404("Order not found") from None

"""Limits on what one client can hold: no client can take a flight's seats and sit on them
(OWASP OAT-021, "denial of inventory"; airlines call it seat spinning).

Checked before a new order or a seat change reaches Temporal, by the JSON API and the pages
alike (``orders.workflow_calls``):

- per session: one live order per flight (``ORDER_ALREADY_OPEN``), and at most
  ``SESSION_MAX_SEATS_HELD`` seats held at once (``TOO_MANY_SEATS_HELD``);
- per client address (``common.clients``), across all its sessions: at most
  ``ADDRESS_MAX_SEATS_HELD`` seats held at once (``TOO_MANY_SEATS_HELD``), and at most
  ``ADDRESS_MAX_CHANGES_PER_MINUTE`` creates and seat changes (``RATE_LIMITED``,
  ``common.ratelimit``).

Seats held are counted from the live orders themselves (their rows: the read model the workflow
writes), never from a counter kept beside them, so the count cannot drift from the truth. A new
order is checked and written in one transaction, under a lock per client address, so that
concurrent creates from one address cannot each see room for themselves. A seat change is
checked against the rows as they are (a change is bounded by the size of one order).

Every refusal is a ``common.ratelimit.Limited``: nothing held, no workflow started, and a
``Retry-After`` (the API's 429). ``RATE_LIMITS=off`` turns every one of them off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.db import connection
from django.db.models import F, Func, IntegerField, Min, Q, QuerySet, Sum
from django.http import HttpRequest
from django.utils import timezone

from common import clients, ratelimit
from common.errors import ErrorCode
from common.ratelimit import Limited
from flights.models import Flight
from orders.models import Order, holding_seats
from orders.ownership import SESSION_KEY
from orders.workflow_contract import State

ORDER_ALREADY_OPEN = ErrorCode.ORDER_ALREADY_OPEN
TOO_MANY_SEATS_HELD = ErrorCode.TOO_MANY_SEATS_HELD
# When nothing tells when seats will be let go (an order still being created, or paying).
DEFAULT_RETRY_AFTER = timedelta(seconds=60)


@dataclass(frozen=True)
class Client:
    """Who asks: the client address (``common.clients``), the orders of the session, and the
    session itself (a new order is remembered in it)."""

    address: str
    order_ids: tuple[str, ...]
    session: SessionBase | None = field(default=None, compare=False)


def client_of(request: HttpRequest) -> Client:
    return Client(
        address=clients.client_address(request),
        order_ids=tuple(request.session.get(SESSION_KEY, [])),
        session=request.session,
    )


def _holding(now: datetime) -> Q:
    """Orders that hold seats now: held and not lapsed, paying, or created within a hold (the
    workflow ends a booking that got no first hold by then)."""
    return Q(state=State.CREATED, created_at__gt=now - settings.SEAT_RESERVATION_TIMEOUT) | holding_seats(
        now=now
    )


def _seats_held(orders: QuerySet[Order]) -> tuple[int, datetime | None]:
    """How many seats ``orders`` hold, and when the first of their holds runs out."""
    totals = orders.aggregate(
        seats=Sum(Func(F("seats"), function="cardinality", output_field=IntegerField())),
        first_end=Min("hold_expires_at"),
    )
    return totals["seats"] or 0, totals["first_end"]


def _wait(until: datetime | None, now: datetime) -> int:
    return int(((until - now) if until is not None and until > now else DEFAULT_RETRY_AFTER).total_seconds())


def check_new_order(*, client: Client, flight: Flight, seats: list[str]) -> None:
    """Refuse a new order of ``seats`` on ``flight`` that would break a limit (``Limited``).

    Call inside the transaction that writes the order: it takes the client address's lock
    (released with the transaction), so the order is counted before the next create looks."""
    if not settings.RATE_LIMITS:
        return
    ratelimit.changes_per_minute(client.address)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"hoarding:{client.address}"])
    now = timezone.now()
    holding = Order.objects.filter(_holding(now))
    mine = holding.filter(id__in=client.order_ids)
    open_order = mine.filter(flight=flight, state__in=[State.CREATED, State.SEATS_RESERVED]).first()
    if open_order is not None:
        raise Limited(
            ORDER_ALREADY_OPEN,
            f"You already have order {open_order.display_id} on flight {flight.number}: change its "
            "seats, or cancel it, instead of starting another.",
            retry_after=_wait(open_order.hold_expires_at, now),
        )
    _check_seats(client=client, holding=holding, now=now, adding=len(seats), excluding=None)


def check_seat_change(*, client: Client, order: Order, seats: list[str]) -> None:
    """Refuse a seat change of ``order`` to ``seats`` that would break a limit (``Limited``). A
    change to the same seats is no change: it is not counted."""
    if not settings.RATE_LIMITS or set(seats) == set(order.seats):
        return
    ratelimit.changes_per_minute(client.address)
    if len(seats) <= len(order.seats):
        return  # fewer seats, or as many: nothing more is held
    now = timezone.now()
    holding = Order.objects.filter(_holding(now))
    _check_seats(client=client, holding=holding, now=now, adding=len(seats), excluding=order)


def _check_seats(
    *, client: Client, holding: QuerySet[Order], now: datetime, adding: int, excluding: Order | None
) -> None:
    others = holding.exclude(id=excluding.id) if excluding is not None else holding
    for scope, orders, limit in (
        ("this browser session", others.filter(id__in=client.order_ids), settings.SESSION_MAX_SEATS_HELD),
        ("your address", others.filter(client_address=client.address), settings.ADDRESS_MAX_SEATS_HELD),
    ):
        held, first_end = _seats_held(orders)
        if held + adding > limit:
            raise Limited(
                TOO_MANY_SEATS_HELD,
                f"At most {limit} seats can be held at once from {scope}, and {held} already are. "
                "Pay for the seats you hold, or let some go, then try again.",
                retry_after=_wait(first_end, now),
            )

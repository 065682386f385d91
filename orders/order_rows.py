"""An order's row before Temporal hears of it: made (with its client's limits checked in the same
transaction) so that the customer can follow the order whatever happens next, and removed again
when Temporal surely refused it or never heard of it."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from common import events
from flights.models import Flight
from orders import hoarding
from orders.models import Order, OrderRequest
from orders.workflow_contract import State


def new_order_id() -> str:
    """Unguessable: 80 random bits."""
    return "ord-" + secrets.token_hex(10)


def new_order(*, flight: Flight, seats: list[str], client: hoarding.Client | None = None) -> Order:
    """The order's row, written before Temporal hears of it (CREATED, with the seats asked for),
    in the transaction that checked the client's limits: from now on it counts against them.
    (``create_order`` always names the client; only tests make an order for nobody.)"""
    draws_left = 3
    while True:
        draws_left -= 1
        try:
            with transaction.atomic():
                if client is not None:
                    hoarding.check_new_order(client=client, flight=flight, seats=seats)
                with transaction.atomic():  # the booking reference is drawn by the field's default
                    return Order.objects.create(
                        id=new_order_id(),
                        flight=flight,
                        state=State.CREATED,
                        seats=seats,
                        client_address=client.address if client is not None else "",
                        hold_life_ends_at=timezone.now() + settings.SEAT_HOLD_MAX_LIFE,
                        payment_max_attempts=settings.PAYMENT_MAX_ATTEMPTS,
                    )
        except IntegrityError:  # that reference was given already (about 1 in 10^9 per order)
            if not draws_left:
                raise


def discard(order: Order) -> None:
    """Remove an order that Temporal refused (or never heard of) before its customer learnt of it."""
    with transaction.atomic():
        # The row lock orders this after a record the workflow is writing (which then is
        # deleted with it), or before it (which then finds no row, and writes nothing).
        order_id = order.id  # delete() empties it
        Order.objects.select_for_update().filter(id=order_id).first()
        OrderRequest.objects.filter(order=order).update(order=None)
        order.delete()
        events.order_changed(order_id)  # published once committed: its page learns it is gone

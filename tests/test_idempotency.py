"""The idempotency records of orders/idempotency.py, on a real PostgreSQL: what a retry with the
same key is carried out as, after each kind of first outcome."""

from __future__ import annotations

import pytest

from common.errors import Refused
from orders import idempotency
from orders.errors import SERVICE_UNAVAILABLE, SERVICE_UNAVAILABLE_CODE
from orders.models import OrderRequest, RequestKind, RequestState
from orders.order_rows import new_order

pytestmark = pytest.mark.django_db


def claim_create(key: str) -> OrderRequest:
    return idempotency.claim(
        session_key="s" * 32, key=key, fingerprint="f", kind=RequestKind.CREATE, order=None
    )


def test_a_create_whose_order_ended_without_its_seats_is_retried_as_a_new_order(demo_flights):
    # The create was answered "still confirming" (202, with its order id); settled later, its
    # first hold turned out refused because a store was down: the workflow ended the order.
    first = claim_create("key-1")
    order = new_order(flight=next(iter(demo_flights.values())), seats=["1A"])
    idempotency.attach(first, order)
    idempotency.finish_settled(first, refusal=Refused(SERVICE_UNAVAILABLE_CODE, SERVICE_UNAVAILABLE))

    retry = claim_create("key-1")

    assert retry.pk == first.pk
    assert retry.state == RequestState.RUNNING
    assert retry.order is None, "a new order, not the ended one's refusal read again"
    order.refresh_from_db()  # the ended order stays: its customer was told of it


def test_a_create_refused_for_the_customer_keeps_its_answer(demo_flights):
    first = claim_create("key-2")
    order = new_order(flight=next(iter(demo_flights.values())), seats=["1A"])
    idempotency.attach(first, order)
    idempotency.finish_settled(first, refusal=Refused("INVALID_SEATS", "Seat 1A is taken", seats=["1A"]))

    again = claim_create("key-2")

    assert again.state == RequestState.DONE
    assert again.order_id == order.id

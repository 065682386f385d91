"""The whole booking through the JSON API, on the real stack (PRD section 10)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest

from flights.models import BookedSeat
from orders.models import Order, OrderEvent
from payments.models import PaymentAttempt, PaymentOutcome
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def seat_status(customer, flight_id: str, seat: str) -> str:
    seats = customer.get(f"/api/flights/{flight_id}").json["seatMap"]["seats"]
    return next(s["status"] for s in seats if s["id"] == seat)


def test_happy_path_confirms_and_books_the_seats(stack):
    customer = stack.customer()

    created = customer.create_order("fl-101", ["12A", "12B"])

    assert created.status == 201, created.text
    order = created.json
    assert order["status"] == "SEATS_RESERVED"
    assert order["workflowId"] == f"booking-{order['orderId']}"
    hold = parse(order["expiresAt"]) - datetime.now(parse(order["expiresAt"]).tzinfo)
    assert timedelta(seconds=25) < hold <= timedelta(seconds=30)
    assert seat_status(customer, "fl-101", "12A") == "reserved"

    paid = customer.post(f"/api/orders/{order['orderId']}/pay", {"paymentCode": "00000"})
    assert paid.status == 202, paid.text
    assert paid.json["status"] in {"PAYMENT_PENDING", "PAYMENT_PROCESSING", "CONFIRMED"}

    final = customer.wait_for_status(order["orderId"], "CONFIRMED", "FAILED")
    assert final["status"] == "CONFIRMED"
    assert final["seats"] == ["12A", "12B"]
    assert final["paymentAttempts"] == 1
    assert sorted(
        BookedSeat.objects.filter(order_id=order["orderId"]).values_list("seat__code", flat=True)
    ) == ["12A", "12B"]
    assert seat_status(customer, "fl-101", "12A") == "booked"
    states = list(OrderEvent.objects.filter(order_id=order["orderId"]).values_list("state", flat=True))
    assert states == ["SEATS_RESERVED", "PAYMENT_PENDING", "PAYMENT_PROCESSING", "CONFIRMED"]


def test_99999_fails_after_three_attempts_and_releases_the_seats(stack):
    customer = stack.customer()
    order_id = customer.create_order("fl-101", ["3C"]).json["orderId"]

    assert customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": "99999"}).status == 202
    # A cancel while the payment runs is refused with the reason that fits, and changes nothing.
    cancel = customer.delete(f"/api/orders/{order_id}")
    assert (cancel.status, cancel.json["error"]) == (409, "ORDER_NOT_EDITABLE")
    assert cancel.json["message"] == "A payment is under way: the order can no longer be cancelled"
    attempts_while_retrying = set()

    def failed():
        status = customer.status(order_id)
        if status["status"] == "FAILED":
            return status
        attempts_while_retrying.add(status["paymentAttempts"])
        return None

    final = wait_for(failed, timeout=30, what="the payment to fail")

    assert final["paymentAttempts"] == 3
    assert final["lastError"] == (
        "Payment validation failed after 3 attempts. Your seats have been released. Please try again."
    )
    assert {1, 2, 3} <= attempts_while_retrying, "each retry was visible in status while it ran"
    outcomes = list(PaymentAttempt.objects.filter(order_id=order_id).values_list("attempt", "outcome"))
    assert outcomes == [(n, PaymentOutcome.FAILED) for n in (1, 2, 3)]
    assert seat_status(customer, "fl-101", "3C") == "available"
    assert not BookedSeat.objects.filter(order_id=order_id).exists()


def test_a_hold_nobody_pays_for_expires_and_frees_its_seats(stack, settings):
    settings.SEAT_RESERVATION_TIMEOUT = timedelta(seconds=3)
    customer = stack.customer()
    order_id = customer.create_order("fl-202", ["5A", "5B"]).json["orderId"]
    assert seat_status(customer, "fl-202", "5A") == "reserved"

    final = customer.wait_for_status(order_id, "EXPIRED", timeout=15)

    assert final["timerRemaining"] == 0
    assert final["lastError"] == "Seat reservation has expired. Your seats have been released."
    assert seat_status(customer, "fl-202", "5A") == "available"
    assert seat_status(customer, "fl-202", "5B") == "available"
    late = customer.put(f"/api/orders/{order_id}/seats", {"seats": ["6A"]})
    assert late.status == 409
    assert late.json["error"] == "ORDER_EXPIRED"


def test_a_seat_change_resets_the_hold_and_releases_dropped_seats(stack, settings):
    customer = stack.customer()
    created = customer.create_order("fl-101", ["7A", "7B"]).json

    changed = customer.put(f"/api/orders/{created['orderId']}/seats", {"seats": ["7B", "8C"]})

    assert changed.status == 200, changed.text
    assert changed.json["seats"] == ["7B", "8C"]
    assert parse(changed.json["expiresAt"]) > parse(created["expiresAt"])
    assert seat_status(customer, "fl-101", "7A") == "available"
    assert seat_status(customer, "fl-101", "8C") == "reserved"
    row = Order.objects.get(id=created["orderId"])
    assert row.seats == ["7B", "8C"]
    assert row.hold_expires_at == parse(changed.json["expiresAt"])


def test_88888_outlasts_the_timeout_of_every_attempt(stack, settings):
    settings.PAYMENT_VALIDATION_TIMEOUT = timedelta(seconds=2)
    customer = stack.customer()
    order_id = customer.create_order("fl-303", ["9A"]).json["orderId"]

    customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": "88888"})
    processing = customer.wait_for_status(order_id, "PAYMENT_PROCESSING", "FAILED", timeout=10)
    final = customer.wait_for_status(order_id, "FAILED", timeout=30)

    assert processing["status"] == "PAYMENT_PROCESSING"
    assert final["paymentAttempts"] == 3
    attempts = list(PaymentAttempt.objects.filter(order_id=order_id).order_by("attempt"))
    assert [(a.attempt, a.outcome) for a in attempts] == [(n, PaymentOutcome.TIMED_OUT) for n in (1, 2, 3)]
    # Each attempt was cut off at the 2 s timeout set for these tests, not at the gateway's 9 s.
    for attempt in attempts:
        assert (attempt.finished_at - attempt.started_at) < timedelta(seconds=4)
    gaps = [(b.started_at - a.started_at).total_seconds() for a, b in itertools.pairwise(attempts)]
    assert gaps[0] == pytest.approx(2 + 1.0, abs=0.8), "timeout, then 1 s backoff"
    assert gaps[1] == pytest.approx(2 + 1.5, abs=0.8), "timeout, then 1.5 s backoff"
    assert seat_status(customer, "fl-303", "9A") == "available"


def test_seat_changes_past_the_cap_are_409_and_change_nothing(stack, settings):
    settings.MAX_SEAT_CHANGES = 1
    customer = stack.customer()
    order_id = customer.create_order("fl-101", ["18D"]).json["orderId"]
    assert customer.put(f"/api/orders/{order_id}/seats", {"seats": ["18E"]}).status == 200

    refused = customer.put(f"/api/orders/{order_id}/seats", {"seats": ["18F"]})

    assert refused.status == 409, refused.text
    assert refused.json["error"] == "TOO_MANY_CHANGES"
    assert refused.json["message"].startswith("The seats of an order can be changed once at most.")
    assert customer.status(order_id)["seats"] == ["18E"]
    assert seat_status(customer, "fl-101", "18F") == "available"

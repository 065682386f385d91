"""Prices: a seat's price is fixed when the order holds it, the total is what the charge carries,
and a refund returns exactly what was charged. On the real stack (web, worker, Temporal,
PostgreSQL, Redis), through the JSON API, with an operator changing prices meanwhile."""

from __future__ import annotations

import pytest

from common.money import Money
from flights.models import Cabin, CabinClass, Flight
from orders.activity_writes import refund_payment
from orders.order_rows import new_order
from payments import ledger
from payments.gateway import Gateway
from payments.models import Charge, ChargeStatus

pytestmark = pytest.mark.django_db(transaction=True)


def set_price(flight_id: str, cabin: CabinClass, amount: int) -> None:
    """What an operator does in the admin: a cabin's new price."""
    Cabin.objects.filter(flight_id=flight_id, cabin_class=cabin).update(price=amount)


def usd(amount: int) -> dict[str, object]:
    return {"amount": amount, "currency": "USD"}


def test_the_price_of_a_seat_is_fixed_when_it_is_held_and_is_what_the_payment_charges(stack):
    customer = stack.customer()
    # FL505: business 3A at $3,200.00, economy 20B at $699.00.
    order_id = customer.create_order("fl-505", ["3A", "20B"]).json["orderId"]
    assert customer.status(order_id)["total"] == usd(320000 + 69900)

    set_price("fl-505", CabinClass.BUSINESS, 450000)  # the operator raises business meanwhile
    set_price("fl-505", CabinClass.ECONOMY, 10000)

    assert customer.status(order_id)["total"] == usd(389900), "the order keeps the prices it held at"
    assert customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": "00000"}).status == 202
    final = customer.wait_for_status(order_id, "CONFIRMED", "FAILED")

    assert final["status"] == "CONFIRMED"
    assert final["total"] == usd(389900)
    [charge] = final["charges"]
    assert (charge["status"], charge["amount"], charge["refunded"]) == ("CHARGED", usd(389900), usd(0))
    seat = next(s for s in customer.get("/api/flights/fl-505").json["seatMap"]["seats"] if s["id"] == "3C")
    assert seat["price"] == usd(450000), "a seat held from now on costs the new price"


def test_a_seat_change_prices_the_new_seats_at_that_moment_and_keeps_the_held_ones(stack):
    customer = stack.customer()
    order_id = customer.create_order("fl-404", ["1A", "20A"]).json["orderId"]  # first $459, economy $149
    assert customer.status(order_id)["total"] == usd(45900 + 14900)

    set_price("fl-404", CabinClass.FIRST, 99900)
    set_price("fl-404", CabinClass.ECONOMY, 17900)
    changed = customer.put(f"/api/orders/{order_id}/seats", {"seats": ["1A", "21C", "14A"]})
    assert changed.status == 200, changed.text

    # 1A kept at $459 as held; 21C new at today's economy $179; 14A an exit row: $179 + $30.
    assert customer.status(order_id)["total"] == usd(45900 + 17900 + 17900 + 3000)

    dropped = customer.put(f"/api/orders/{order_id}/seats", {"seats": ["21C"]})
    assert dropped.status == 200, dropped.text
    assert customer.status(order_id)["total"] == usd(17900), "the total is the seats held now"


def test_a_refund_returns_exactly_what_was_charged(stack):
    customer = stack.customer()
    order_id = customer.create_order("fl-606", ["2A"]).json["orderId"]  # business, in euros
    assert customer.status(order_id)["total"] == {"amount": 280000, "currency": "EUR"}
    gateway = Gateway(failure_rate=0, latency_min_seconds=0, latency_max_seconds=0, timeout_seconds=1)
    answer = ledger.request_charge(
        key=ledger.charge_key(order_id),
        order_id=order_id,
        attempt=1,
        code="00000",
        gateway=gateway,
        wait=lambda seconds: False,
        amount=Money(280000, "EUR"),
    )
    assert answer.approved

    assert refund_payment(order_id=order_id) is True
    assert refund_payment(order_id=order_id) is False, "once"

    refunded = Charge.objects.get(order_id=order_id)
    assert refunded.status == ChargeStatus.REFUNDED
    assert (refunded.amount, refunded.refunded_amount, refunded.currency) == (280000, 280000, "EUR")
    [shown] = ledger.charges_of(order_id)
    assert shown.money == shown.refunded_money == Money(280000, "EUR")


def test_a_failed_payment_refunds_the_whole_charge_the_saga_made(stack):
    # 99999 declines every attempt: nothing is charged, nothing refunded; a confirmed order is
    # charged its total, and the ledger balances: charged - refunded = the confirmed totals.
    customer = stack.customer()
    failed = customer.create_order("fl-101", ["12C"]).json["orderId"]
    booked = customer.create_order("fl-202", ["3A", "10B"]).json["orderId"]  # $149 + economy exit $109
    customer.post(f"/api/orders/{failed}/pay", {"paymentCode": "99999"})
    customer.post(f"/api/orders/{booked}/pay", {"paymentCode": "00000"})

    assert customer.wait_for_status(failed, "FAILED", "CONFIRMED", timeout=60)["charges"] == []
    confirmed = customer.wait_for_status(booked, "CONFIRMED", "FAILED")
    assert confirmed["total"] == usd(14900 + 8900 + 2000)
    charges = Charge.objects.exclude(status=ChargeStatus.VOIDED)
    charged = sum(c.amount for c in charges) - sum(c.refunded_amount for c in charges)
    assert charged == 25800


def test_an_order_with_no_seats_held_has_no_total(demo_flights):
    order = new_order(flight=demo_flights["fl-101"], seats=["1A"])

    assert order.total is None
    assert Flight.objects.get(id="fl-101").lowest_price == Money(19900, "USD")

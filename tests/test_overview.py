"""The operators' overview in the admin: the numbers are the data's, and only staff see them."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from flights import holds
from orders.models import Order, ReconcileRun
from orders.order_rows import new_order_id
from orders.workflow_contract import State
from payments.ledger import charge_key
from payments.models import Charge, ChargeStatus, PaymentAttempt, PaymentOutcome

URL = "/admin/overview/"


@pytest.fixture
def operator(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("operator", "ops@example.com", "a-long-passphrase"))
    return client


def _order(state: State, *, age: timedelta = timedelta(0), seats: tuple[str, ...] = ("1A",)) -> Order:
    now = timezone.now()
    order = Order.objects.create(
        id=new_order_id(),
        flight_id="fl-101",
        state=state,
        seats=list(seats),
        hold_expires_at=now + timedelta(minutes=10) if state == State.SEATS_RESERVED else None,
    )
    Order.objects.filter(id=order.id).update(created_at=now - age)
    order.refresh_from_db()
    return order


def _attempt(order: Order, number: int, outcome: PaymentOutcome, *, age: timedelta = timedelta(0)) -> None:
    at = timezone.now() - age
    finished = None if outcome == PaymentOutcome.PENDING else at
    PaymentAttempt.objects.create(
        order=order, attempt=number, code_hint="**99", outcome=outcome, started_at=at, finished_at=finished
    )


def _cell(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}">(.*?)</td>', html, re.S)
    assert match, f"no #{element_id} on the page"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", match.group(1))).strip()


def _state_row(html: str, state: State) -> tuple[int, int]:
    match = re.search(
        rf'data-state="{state.value}">.*?class="now">(\d+)</td><td class="last-hour">(\d+)</td>', html, re.S
    )
    assert match, f"no row for {state}"
    return int(match.group(1)), int(match.group(2))


def test_staff_see_orders_holds_payments_and_the_last_reconciliation(operator, demo_flights, clean_redis):
    oldest = _order(State.SEATS_RESERVED, age=timedelta(hours=2), seats=("2A", "2B"))
    _order(State.SEATS_RESERVED)
    paid = _order(State.CONFIRMED)
    failed = _order(State.FAILED, age=timedelta(hours=3))
    for seat in ("2A", "2B", "3C"):
        holds.connection().set(holds.hold_key("fl-101", seat), oldest.id, px=600_000)
    _attempt(paid, 1, PaymentOutcome.FAILED)
    _attempt(paid, 2, PaymentOutcome.TIMED_OUT)
    _attempt(paid, 3, PaymentOutcome.SUCCEEDED)
    _attempt(failed, 1, PaymentOutcome.FAILED)
    _attempt(failed, 2, PaymentOutcome.FAILED, age=timedelta(hours=2))  # before the last hour
    _attempt(failed, 3, PaymentOutcome.PENDING)  # not finished
    now = timezone.now()
    ReconcileRun.objects.create(started_at=now - timedelta(minutes=2), finished_at=now, repairs={"x": 9})
    ReconcileRun.objects.create(
        started_at=now - timedelta(minutes=1),
        finished_at=now,
        repairs={"workflow_gone": 1, "hold_without_order": 2},
        details=[f"workflow_gone: {failed.id} SEATS_RESERVED -> FAILED"],
    )

    html = operator.get(URL).content.decode()

    assert _state_row(html, State.SEATS_RESERVED) == (2, 1)
    assert _state_row(html, State.CONFIRMED) == (1, 1)
    assert _state_row(html, State.FAILED) == (1, 0)
    assert _state_row(html, State.EXPIRED) == (0, 0)
    assert _cell(html, "live-holds") == "2"
    assert _cell(html, "held-seats") == "3"
    assert oldest.display_id in _cell(html, "oldest-hold")
    assert (_cell(html, "overdue-orders"), _cell(html, "oldest-overdue")) == ("0", "none")
    assert f"/workflows/booking-{oldest.id}" in html
    assert _cell(html, "payment-attempts") == "4"
    assert _cell(html, "payment-failures") == "3"
    assert _cell(html, "payment-failure-rate") == "75 %"
    assert _cell(html, "reconcile-repairs") == "3 · workflow_gone 1 · hold_without_order 2"
    assert failed.id in _cell(html, "reconcile-details")
    assert ">Grafana</a>" not in html and ">Traces" not in html, "neither is configured here"
    assert "/schedules/reconcile-" in html


def test_the_admin_index_links_to_the_overview(operator):
    assert f'href="{URL}"' in operator.get("/admin/").content.decode()


def test_anyone_but_staff_is_sent_to_the_login(db):
    assert Client().get(URL).url == f"/admin/login/?next={URL}"
    customer = Client()
    customer.force_login(User.objects.create_user("customer", "c@example.com", "a-long-passphrase"))
    response = customer.get(URL)
    assert (response.status_code, response.url) == (302, f"/admin/login/?next={URL}")


def test_an_order_nothing_moves_on_shows_as_overdue(operator, demo_flights):
    # A payment lasts at most 3 x (its timeout + 5 s), under a minute here; then 5 minutes' grace.
    now = timezone.now()
    stuck = _order(State.PAYMENT_PROCESSING, age=timedelta(hours=1))
    Order.objects.filter(id=stuck.id).update(hold_expires_at=now - timedelta(minutes=6))
    paying = _order(State.PAYMENT_PROCESSING, age=timedelta(minutes=20))  # still within its payment
    Order.objects.filter(id=paying.id).update(hold_expires_at=now - timedelta(minutes=5))
    never_held = _order(State.CREATED, age=timedelta(minutes=40))
    _order(State.CREATED, age=timedelta(minutes=1))  # its first hold under way
    ended = _order(State.EXPIRED, age=timedelta(hours=2))
    Order.objects.filter(id=ended.id).update(hold_expires_at=now - timedelta(hours=1))

    html = operator.get(URL).content.decode()

    assert _cell(html, "overdue-orders") == "2"
    oldest = _cell(html, "oldest-overdue")
    assert stuck.display_id in oldest and "Payment processing" in oldest
    assert never_held.display_id not in oldest, "the oldest is shown"
    assert f"/workflows/booking-{stuck.id}" in html


def _charge(
    order: Order, status: ChargeStatus, *, age: timedelta = timedelta(0), amount: int | None = None
) -> None:
    at = timezone.now() - age
    refunded = status == ChargeStatus.REFUNDED
    money = (
        {} if amount is None else {"amount": amount, "currency": "USD", "refunded_amount": amount * refunded}
    )
    Charge.objects.create(
        id=f"ch_{order.id[-20:]:0>24}",
        idempotency_key=charge_key(order.id),
        order=order,
        attempt=1,
        status=status,
        charged_at=at,
        refunded_at=at if refunded else None,
        **money,
    )


def test_the_money_at_the_gateway_and_what_is_charged_without_a_booking(operator, demo_flights):
    _charge(_order(State.CONFIRMED), ChargeStatus.CHARGED)
    _charge(_order(State.CONFIRMED), ChargeStatus.CHARGED, age=timedelta(hours=2))  # before the hour
    _charge(_order(State.FAILED), ChargeStatus.REFUNDED)
    _charge(_order(State.PAYMENT_PROCESSING), ChargeStatus.CHARGED)  # just charged: confirming
    left = _order(State.FAILED, age=timedelta(minutes=30))  # ended, and still charged
    _charge(left, ChargeStatus.CHARGED, age=timedelta(minutes=1))
    stuck = _order(State.PAYMENT_PROCESSING, age=timedelta(hours=1))  # charged long ago, unconfirmed
    _charge(stuck, ChargeStatus.CHARGED, age=timedelta(minutes=10))

    html = operator.get(URL).content.decode()

    assert _cell(html, "charged") == "5"
    assert _cell(html, "refunded") == "1"
    unconfirmed = _cell(html, "charged-unconfirmed")
    assert unconfirmed.startswith("2 · oldest")
    assert stuck.display_id in unconfirmed


def test_the_overview_links_grafana_and_traces_once_configured(operator, settings):
    settings.GRAFANA_URL, settings.TRACES_URL = "https://grafana.example", "https://jaeger.example"

    html = operator.get(URL).content.decode()

    assert 'href="https://grafana.example"' in html and 'href="https://jaeger.example"' in html


def test_the_money_module_shows_takings_and_refunds_today_in_amounts(operator, demo_flights, clean_redis):
    _charge(_order(State.CONFIRMED), ChargeStatus.CHARGED, amount=45900)
    _charge(_order(State.FAILED), ChargeStatus.REFUNDED, amount=19900)
    _charge(_order(State.CONFIRMED), ChargeStatus.CHARGED, amount=10000, age=timedelta(days=1, hours=1))

    page = operator.get(URL).content.decode()

    assert _cell(page, "taken-today") == "$658.00", "charged since midnight, refunded or not"
    assert _cell(page, "refunded-today") == "$199.00"

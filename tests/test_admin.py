"""The admin for operators: see everything, change nothing by hand, act through the workflow."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from flights import holds
from orders.models import Order
from payments.models import Charge
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operator(stack) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("operator", "ops@example.com", "a-long-passphrase"))
    return client


def booked_order(stack, seats: list[str], code: str = "99999") -> str:
    customer = stack.customer()
    order_id = customer.create_order("fl-101", seats).json["orderId"]
    customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": code})
    customer.wait_for_status(order_id, "CONFIRMED", "FAILED", timeout=40)
    return order_id


def test_the_order_list_shows_state_flight_seats_and_deadline(operator, stack):
    order_id = stack.customer().create_order("fl-101", ["12A", "12B"]).json["orderId"]

    page = operator.get("/admin/orders/order/").content.decode()

    assert order_id.upper() in page
    assert "Seats reserved" in page
    assert "12A, 12B" in page
    assert "FL101" in page
    for filter_name in ("By state", "By flight"):
        assert filter_name in page


def test_operators_find_orders_by_id_or_seat(operator, stack):
    first = stack.customer().create_order("fl-101", ["3A"]).json["orderId"]
    second = stack.customer().create_order("fl-101", ["4B"]).json["orderId"]

    by_seat = operator.get("/admin/orders/order/", {"q": "4b"}).content.decode()
    by_id = operator.get("/admin/orders/order/", {"q": first}).content.decode()

    assert second.upper() in by_seat and first.upper() not in by_seat
    assert first.upper() in by_id and second.upper() not in by_id


def test_the_detail_shows_attempts_history_workflow_link_and_live_state(operator, stack):
    order_id = booked_order(stack, ["6A"])

    page = operator.get(f"/admin/orders/order/{order_id}/change/").content.decode()

    assert page.count("Failed") >= 3, "three failed attempts"
    history = re.sub(r"\s+", " ", page[page.index("History of state transitions") :])
    for state in ("Seats reserved", "Payment pending", "Payment processing", "Failed"):
        assert f'<td class="field-state"> <p>{state}</p> </td>' in history
    assert re.search(r'<td class="field-at"> <p>\w{3}\. \d+, \d{4}, \d{2}:\d{2}:\d{2} UTC</p>', history), (
        "transitions a second apart must be told apart"
    )
    assert f"/namespaces/default/workflows/booking-{order_id}" in page
    assert "Live workflow state" in page
    assert "agrees with the row" in page


def test_the_detail_shows_the_charges_at_the_gateway_with_their_times(operator, stack):
    order_id = booked_order(stack, ["6B"], code="00000")
    charge = Charge.objects.get(order_id=order_id)

    page = operator.get(f"/admin/orders/order/{order_id}/change/").content.decode()
    ledger = re.sub(r"\s+", " ", page[page.index("Charges at the gateway") :])

    assert charge.id in ledger
    assert '<td class="field-status"> <p>Charged</p> </td>' in ledger
    assert re.search(
        r'<td class="field-charged_at"> <p>\w{3}\. \d+, \d{4}, \d{2}:\d{2}:\d{2} UTC</p>', ledger
    )
    listed = operator.get("/admin/payments/charge/").content.decode()
    assert charge.id in listed and order_id.upper() in listed


def test_operators_cannot_edit_or_add_orders_by_hand(operator, stack):
    order_id = stack.customer().create_order("fl-101", ["7A"]).json["orderId"]

    reply = operator.post(f"/admin/orders/order/{order_id}/change/", {"state": "CONFIRMED"})

    assert reply.status_code == 403
    assert operator.get("/admin/orders/order/add/").status_code == 403
    assert Order.objects.get(id=order_id).state == "SEATS_RESERVED"
    page = operator.get(f"/admin/orders/order/{order_id}/change/").content.decode()
    assert 'name="state"' not in page


def test_releasing_a_hold_asks_first_then_goes_through_the_workflow(operator, stack):
    order_id = stack.customer().create_order("fl-101", ["8A"]).json["orderId"]
    form = {"action": "release_hold", "_selected_action": [order_id]}

    confirmation = operator.post("/admin/orders/order/", form)
    assert "Release these holds?" in confirmation.content.decode()
    assert Order.objects.get(id=order_id).state == "SEATS_RESERVED"

    done = operator.post("/admin/orders/order/", {**form, "confirm": "yes"}, follow=True)

    assert "release requested" in done.content.decode()
    wait_for(lambda: Order.objects.get(id=order_id).state == "CANCELLED", what="the workflow to cancel")
    assert (
        Order.objects.get(id=order_id).last_error
        == "An operator released this hold. Your seats have been released."
    )
    assert holds.holders(flight_id="fl-101", seats=["8A"]) == {}


def test_a_staff_member_who_may_only_view_orders_cannot_release_a_hold(stack):
    order_id = stack.customer().create_order("fl-101", ["8B"]).json["orderId"]
    viewer = User.objects.create_user("viewer", "viewer@example.com", "a-long-passphrase", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_order"))
    client = Client()
    client.force_login(viewer)

    listing = client.get("/admin/orders/order/")
    assert listing.status_code == 200
    assert "release_hold" not in listing.content.decode(), "the action is not offered"
    client.post(
        "/admin/orders/order/",
        {"action": "release_hold", "_selected_action": [order_id], "confirm": "yes"},
        follow=True,
    )
    assert Order.objects.get(id=order_id).state == "SEATS_RESERVED", "nothing was released"
    assert holds.holders(flight_id="fl-101", seats=["8B"]) == {"8B": order_id}


def test_a_finished_order_cannot_be_released(operator, stack):
    order_id = booked_order(stack, ["9A"], code="00000")

    done = operator.post(
        "/admin/orders/order/",
        {"action": "release_hold", "_selected_action": [order_id], "confirm": "yes"},
        follow=True,
    )

    assert "can no longer be changed" in done.content.decode()
    assert Order.objects.get(id=order_id).state == "CONFIRMED"


def test_flights_show_booked_held_and_available_and_a_seat_map(operator, stack):
    booked_order(stack, ["1A"], code="00000")
    stack.customer().create_order("fl-101", ["2A", "2B"])

    page = operator.get("/admin/flights/flight/").content.decode()
    detail = operator.get("/admin/flights/flight/fl-101/change/").content.decode()

    row = page[page.index("FL101") : page.index("FL202")]
    for count in (
        '<td class="field-booked">1</td>',
        '<td class="field-held">2</td>',
        '<td class="field-available">117</td>',
    ):
        assert count in row
    assert "120 seats: 1 booked, 2 held, 117 available" in detail
    assert "Seat map (read-only)" in detail
    assert 'title="Seat 1A, booked, ' in detail
    assert 'title="Seat 2A, held by another customer, ' in detail


def test_an_operator_sets_a_cabins_price_and_the_next_hold_pays_it(operator, stack):
    from flights.models import Cabin, Flight

    flight = Flight.objects.get(id="fl-101")
    cabins = list(Cabin.objects.filter(flight=flight).order_by("first_row"))
    form = {
        "number": flight.number,
        "origin": flight.origin,
        "destination": flight.destination,
        "departure_time_0": flight.departure_time.strftime("%Y-%m-%d"),
        "departure_time_1": flight.departure_time.strftime("%H:%M:%S"),
        "aircraft": flight.aircraft,
        "exit_row_extra": "4000",
        "cabins-TOTAL_FORMS": str(len(cabins)),
        "cabins-INITIAL_FORMS": str(len(cabins)),
        "cabins-MIN_NUM_FORMS": "0",
        "cabins-MAX_NUM_FORMS": "1000",
    }
    for index, cabin in enumerate(cabins):
        price = 24900 if cabin.cabin_class == "economy" else cabin.price
        form |= {f"cabins-{index}-id": str(cabin.pk), f"cabins-{index}-flight": flight.id}
        form[f"cabins-{index}-price"] = str(price)

    saved = operator.post("/admin/flights/flight/fl-101/change/", form)

    assert saved.status_code == 302, re.findall(r'class="errorlist[^>]*>(.*?)</ul>', saved.content.decode())
    detail = operator.get("/admin/flights/flight/fl-101/change/").content.decode()
    assert "$249.00" in detail, "the price shown formatted beside the figure"
    assert 'name="cabins-0-layout"' not in detail, "a cabin's seats cannot change once they exist"
    customer = stack.customer()
    order_id = customer.create_order("fl-101", ["12A", "10A"]).json["orderId"]
    assert customer.status(order_id)["total"] == {"amount": 24900 + 24900 + 4000, "currency": "USD"}

"""Bad input gets a clear error (status, machine code, human message) and changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from flights.models import Flight
from orders.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


def held_seats(customer, flight_id: str) -> list[str]:
    seats = customer.get(f"/api/flights/{flight_id}").json["seatMap"]["seats"]
    return [s["id"] for s in seats if s["status"] != "available"]


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b"{not json", "INVALID_JSON", "not valid JSON"),
        (b"[1, 2]", "VALIDATION_ERROR", "JSON object"),
        (b'{"flightId": "fl-101"}', "VALIDATION_ERROR", '"seats" is required'),
        (b'{"flightId": "fl-101", "seats": []}', "VALIDATION_ERROR", "at least one seat"),
        (b'{"flightId": "fl-101", "seats": "12A"}', "VALIDATION_ERROR", "list of seat codes"),
        (b'{"flightId": "fl-101", "seats": [12]}', "VALIDATION_ERROR", "list of seat codes"),
        (b'{"flightId": "fl-101", "seats": ["12A", "12a"]}', "VALIDATION_ERROR", "more than once"),
        (b'{"flightId": "fl-101", "seats": ["99Z"]}', "UNKNOWN_SEATS", "not on flight FL101"),
        (b'{"flightId": "fl-101", "seats": ["1A", "0A"]}', "UNKNOWN_SEATS", "0A"),
        (b'{"flightId": "fl-000", "seats": ["1A"]}', "FLIGHT_NOT_FOUND", "fl-000"),
        (b'{"flightId": 101, "seats": ["1A"]}', "VALIDATION_ERROR", "flightId"),
        (b'{"seats": ["1A"]}', "VALIDATION_ERROR", "flightId"),
        (
            b'{"flightId": "fl-101", "seats": ["1A","1B","1C","1D","1E","1F","2A","2B","2C","2D"]}',
            "VALIDATION_ERROR",
            "At most 9",
        ),
    ],
)
def test_a_bad_order_is_refused_and_holds_nothing(stack, body, code, words):
    customer = stack.customer()

    reply = customer.post("/api/orders", raw=body)

    assert reply.status == 400, reply.text
    assert reply.json["error"] == code
    assert words in reply.json["message"]
    assert held_seats(customer, "fl-101") == []
    assert not Order.objects.exists()


def test_a_body_that_is_not_json_is_415(stack):
    reply = stack.customer().post(
        "/api/orders", raw=b"flightId=fl-101", content_type="application/x-www-form-urlencoded"
    )

    assert reply.status == 415
    assert reply.json["error"] == "UNSUPPORTED_MEDIA_TYPE"


def test_taken_seats_are_named_and_nothing_is_held(stack):
    first, second = stack.customer(), stack.customer()
    assert first.create_order("fl-101", ["12A", "12B"]).status == 201

    reply = second.create_order("fl-101", ["12B", "12C", "12A"])

    assert reply.status == 400
    assert reply.json == {
        "error": "INVALID_SEATS",
        "message": "Seats 12B, 12A are no longer available",
        "seats": ["12B", "12A"],
    }
    assert sorted(held_seats(second, "fl-101")) == ["12A", "12B"], "12C was not held"
    assert Order.objects.count() == 1


def test_a_seat_change_to_taken_seats_keeps_the_old_selection(stack):
    mine, theirs = stack.customer(), stack.customer()
    theirs.create_order("fl-101", ["5C"])
    order = mine.create_order("fl-101", ["5A"]).json

    reply = mine.put(f"/api/orders/{order['orderId']}/seats", {"seats": ["5A", "5C"]})

    assert reply.status == 400
    assert reply.json["error"] == "INVALID_SEATS"
    assert reply.json["message"] == "Seat 5C is no longer available"
    status = mine.status(order["orderId"])
    assert status["seats"] == ["5A"]
    assert status["expiresAt"] == order["expiresAt"], "a refused change does not reset the timer"


def test_orders_belong_to_the_session_that_created_them(stack):
    owner, stranger = stack.customer(), stack.customer()
    order_id = owner.create_order("fl-101", ["9A"]).json["orderId"]

    for method, path, payload in [
        ("GET", f"/api/orders/{order_id}/status", None),
        ("GET", f"/api/orders/{order_id}", None),
        ("PUT", f"/api/orders/{order_id}/seats", {"seats": ["9B"]}),
        ("POST", f"/api/orders/{order_id}/pay", {"paymentCode": "00000"}),
        ("DELETE", f"/api/orders/{order_id}", None),
    ]:
        reply = stranger.request(method, path, payload)
        assert reply.status == 404, (method, path)
        assert reply.json["error"] == "ORDER_NOT_FOUND"
    assert owner.status(order_id)["status"] == "SEATS_RESERVED"


def test_an_unknown_order_is_404(stack):
    reply = stack.customer().get("/api/orders/ord-doesnotexist00000000/status")

    assert reply.status == 404
    assert reply.json == {"error": "ORDER_NOT_FOUND", "message": "Order ord-doesnotexist00000000 not found"}


@pytest.mark.parametrize("code", ["1234", "123456", "abcde", 12345, None, "12 45", "١٢٣٤٥"])
def test_a_payment_code_must_be_five_digits(stack, code):
    customer = stack.customer()
    order_id = customer.create_order("fl-101", ["10A"]).json["orderId"]

    reply = customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": code})

    assert reply.status == 400
    assert reply.json["error"] == "INVALID_PAYMENT_CODE"
    assert customer.status(order_id)["status"] == "SEATS_RESERVED"


def test_an_order_that_is_paying_or_done_cannot_change(stack):
    customer = stack.customer()
    order_id = customer.create_order("fl-101", ["11A"]).json["orderId"]
    assert customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": "00000"}).status == 202

    again = customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": "00000"})
    customer.wait_for_status(order_id, "CONFIRMED")
    change = customer.put(f"/api/orders/{order_id}/seats", {"seats": ["11B"]})
    cancel = customer.delete(f"/api/orders/{order_id}")

    assert again.status == 409
    assert again.json["error"] == "ORDER_NOT_EDITABLE"
    assert change.status == 409
    assert change.json["error"] == "ORDER_NOT_EDITABLE"
    assert cancel.status == 409


def test_abandoning_an_order_releases_its_seats(stack):
    customer = stack.customer()
    order_id = customer.create_order("fl-303", ["4A", "4B"]).json["orderId"]

    reply = customer.delete(f"/api/orders/{order_id}")

    assert reply.status == 202
    final = customer.wait_for_status(order_id, "CANCELLED", timeout=10)
    assert final["lastError"] == "You cancelled this order. Your seats have been released."
    assert held_seats(customer, "fl-303") == []


def test_a_flight_that_has_departed_is_not_listed_and_takes_no_order(stack):
    Flight.objects.filter(id="fl-202").update(departure_time=timezone.now() - timedelta(minutes=1))
    customer = stack.customer()

    listed = [flight["id"] for flight in customer.get("/api/flights").json["flights"]]
    reply = customer.create_order("fl-202", ["1A"])

    assert "fl-202" not in listed and "fl-101" in listed
    assert reply.status == 400
    assert reply.json == {"error": "FLIGHT_DEPARTED", "message": "Flight FL202 has already departed"}
    assert held_seats(customer, "fl-202") == []
    assert not Order.objects.exists()

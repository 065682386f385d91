"""One client cannot hoard a flight (OWASP OAT-021): limits per session and per client address,
answered 429 with Retry-After and a machine code, on the API and the pages alike; nothing held,
no workflow started. The test stack runs with RATE_LIMITS=off (every test customer comes from
127.0.0.1); these tests turn the limits on, with 127.0.0.1 as the trusted proxy so that each
customer's X-Forwarded-For is its address."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timedelta

import pytest
from django.test import Client, RequestFactory
from django.utils import timezone

from common.clients import client_address
from orders.models import Order
from tests.helpers import ApiClient

BOT = "203.0.113.7"
OFFICE = "198.51.100.20"


@pytest.fixture
def limited(stack, settings):
    settings.RATE_LIMITS = True
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("127.0.0.1/32")]
    settings.SESSION_MAX_SEATS_HELD = 9
    settings.ADDRESS_MAX_SEATS_HELD = 30
    settings.ADDRESS_MAX_CHANGES_PER_MINUTE = 60
    settings.ADDRESS_MAX_REQUESTS_PER_SECOND = 1000
    return stack


def customer(stack, address: str) -> ApiClient:
    return ApiClient(stack.url, headers={"X-Forwarded-For": address})


def seats(row: int, letters: str = "ABCDEF") -> list[str]:
    return [f"{row}{letter}" for letter in letters]


def reserved(stack, flight_id: str) -> int:
    seat_map = ApiClient(stack.url).get(f"/api/flights/{flight_id}").json["seatMap"]["seats"]
    return sum(seat["status"] == "reserved" for seat in seat_map)


def assert_refused(reply, code: str) -> int:
    """A 429 with ``code`` and a whole number of seconds in Retry-After (returned)."""
    assert reply.status == 429, reply.text
    assert reply.json["error"] == code, reply.json
    retry_after = int(reply.headers["Retry-After"])
    assert retry_after >= 1
    return retry_after


# --- Per session ---------------------------------------------------------------------------------


def test_a_session_has_one_live_order_per_flight(limited):
    buyer = customer(limited, OFFICE)
    assert buyer.create_order("fl-101", ["1A"]).status == 201

    retry_after = assert_refused(buyer.create_order("fl-101", ["2A", "2B"]), "ORDER_ALREADY_OPEN")

    assert retry_after <= 30, "until the open order's hold runs out (30 s under the tests)"
    assert reserved(limited, "fl-101") == 1, "nothing more was held"
    assert Order.objects.count() == 1, "no order made, no workflow started"
    assert buyer.create_order("fl-202", ["1A"]).status == 201, "another flight is another order"


def test_a_session_holds_at_most_nine_seats_at_once(limited):
    buyer = customer(limited, OFFICE)
    first = buyer.create_order("fl-101", seats(1, "ABCDE")).json["orderId"]

    assert_refused(buyer.create_order("fl-202", [*seats(1, "ABCD"), "2A"]), "TOO_MANY_SEATS_HELD")
    assert buyer.create_order("fl-202", seats(1, "ABCD")).status == 201
    grown = buyer.put(f"/api/orders/{first}/seats", {"seats": seats(1)})

    message = grown.json["message"]
    assert_refused(grown, "TOO_MANY_SEATS_HELD")
    assert "At most 9 seats can be held at once from this browser session" in message
    assert buyer.status(first)["seats"] == seats(1, "ABCDE"), "the seats held before are kept"
    assert buyer.put(f"/api/orders/{first}/seats", {"seats": seats(2, "ABCDE")}).status == 200


# --- Per client address ------------------------------------------------------------------------


def test_an_address_holds_at_most_thirty_seats_across_its_sessions(limited):
    """A bot that never keeps its cookie: a new session for every order."""
    for row in (1, 3, 5):
        assert customer(limited, BOT).create_order("fl-101", seats(row) + seats(row + 1, "ABC")).status == 201

    assert_refused(customer(limited, BOT).create_order("fl-101", [*seats(7), "8A"]), "TOO_MANY_SEATS_HELD")
    assert customer(limited, BOT).create_order("fl-101", seats(9, "ABC")).status == 201  # 30 now
    assert_refused(customer(limited, BOT).create_order("fl-202", ["1A"]), "TOO_MANY_SEATS_HELD")

    assert reserved(limited, "fl-101") == 30
    assert customer(limited, OFFICE).create_order("fl-101", seats(12)).status == 201, "others still book"


def test_seats_let_go_count_no_more(limited):
    bot = customer(limited, BOT)
    order_id = bot.create_order("fl-101", seats(1) + seats(2, "ABC")).json["orderId"]
    for row in (3, 5):
        customer(limited, BOT).create_order("fl-101", seats(row) + seats(row + 1, "ABC"))
    assert_refused(customer(limited, BOT).create_order("fl-101", seats(9, "ABCD")), "TOO_MANY_SEATS_HELD")

    bot.delete(f"/api/orders/{order_id}")
    bot.wait_for_status(order_id, "CANCELLED")

    assert customer(limited, BOT).create_order("fl-101", seats(9, "ABCD")).status == 201


def test_creates_and_seat_changes_per_minute_are_bounded(limited, settings):
    settings.ADDRESS_MAX_CHANGES_PER_MINUTE = 3
    buyer = customer(limited, OFFICE)
    order_id = buyer.create_order("fl-101", ["1A"]).json["orderId"]
    assert buyer.put(f"/api/orders/{order_id}/seats", {"seats": ["1B"]}).status == 200
    assert buyer.put(f"/api/orders/{order_id}/seats", {"seats": ["1b"]}).status == 200, "the same seats"
    assert buyer.put(f"/api/orders/{order_id}/seats", {"seats": ["1C"]}).status == 200

    retry_after = assert_refused(
        buyer.put(f"/api/orders/{order_id}/seats", {"seats": ["1D"]}), "RATE_LIMITED"
    )
    assert_refused(customer(limited, OFFICE).create_order("fl-202", ["1A"]), "RATE_LIMITED")

    assert retry_after <= 60
    assert buyer.status(order_id)["seats"] == ["1C"]
    assert customer(limited, BOT).create_order("fl-202", ["1A"]).status == 201, "another address"


def test_a_refusal_over_a_limit_is_not_kept_as_the_answer_to_its_idempotency_key(limited):
    buyer = customer(limited, OFFICE)
    order_id = buyer.create_order("fl-101", ["1A"]).json["orderId"]
    assert_refused(buyer.create_order("fl-101", ["2A"], key="k-1"), "ORDER_ALREADY_OPEN")

    buyer.delete(f"/api/orders/{order_id}")
    buyer.wait_for_status(order_id, "CANCELLED")

    assert buyer.create_order("fl-101", ["2A"], key="k-1").status == 201, "the retry is carried out"


def test_requests_per_second_per_address(limited, settings):
    settings.ADDRESS_MAX_REQUESTS_PER_SECOND = 5
    poller = customer(limited, BOT)

    replies = [poller.get("/api/flights") for _ in range(12)]

    refused = [reply for reply in replies if reply.status == 429]
    assert refused, "more than 5 in a second"
    assert all(
        reply.json["error"] == "RATE_LIMITED" and reply.headers["Retry-After"] == "1" for reply in refused
    )
    assert customer(limited, OFFICE).get("/api/flights").status == 200, "another address"
    assert poller.get("/healthz").status == 200, "the health check is never limited"


def test_with_rate_limits_off_nothing_is_limited(stack, settings):
    settings.RATE_LIMITS = False
    buyer = customer(stack, BOT)

    assert buyer.create_order("fl-101", seats(1) + seats(2, "ABC")).status == 201
    assert buyer.create_order("fl-101", seats(3) + seats(4, "ABC")).status == 201


# --- The pages -----------------------------------------------------------------------------------


def test_on_the_seat_map_a_limit_is_a_message_beside_it_and_nothing_is_held(limited):
    for row in (1, 3, 5):
        customer(limited, BOT).create_order("fl-101", seats(row) + seats(row + 1, "ABC"))
    customer(limited, BOT).create_order("fl-101", seats(9, "ABC"))  # 30 seats held from BOT
    page_customer = Client(REMOTE_ADDR=BOT)

    reply = page_customer.post("/flights/fl-202/hold", {"seat": "3A"}, HTTP_HX_REQUEST="true")
    plain = page_customer.post("/flights/fl-202/hold", {"seat": "3A"}, follow=True)

    fragment = reply.content.decode()
    assert "At most 30 seats can be held at once from your address" in fragment
    assert 'aria-label="Seat 3A, available,' in fragment
    assert "At most 30 seats can be held at once from your address" in plain.content.decode()
    assert reserved(limited, "fl-202") == 0


def test_on_the_order_page_a_seat_change_over_a_limit_is_a_message(limited, settings):
    page_customer = Client(REMOTE_ADDR=OFFICE)
    reply = page_customer.post("/flights/fl-101/hold", {"seat": "1A"})
    order_id = re.search(r"ord-[0-9a-f]+", reply["Location"]).group(0)
    settings.SESSION_MAX_SEATS_HELD = 1

    fragment = page_customer.post(f"/orders/{order_id}/seats", {"seat": "1B"}, HTTP_HX_REQUEST="true")

    assert "At most 1 seats can be held at once from this browser session" in fragment.content.decode()
    assert Order.objects.get(id=order_id).seats == ["1A"]


def test_on_the_pages_seat_clicks_per_minute_are_bounded(limited, settings):
    settings.ADDRESS_MAX_CHANGES_PER_MINUTE = 2
    page_customer = Client(REMOTE_ADDR=OFFICE)
    order_id = re.search(
        r"ord-[0-9a-f]+", page_customer.post("/flights/fl-101/hold", {"seat": "1A"})["Location"]
    )
    page_customer.post(f"/orders/{order_id.group(0)}/seats", {"seat": "1B"}, HTTP_HX_REQUEST="true")

    fragment = page_customer.post(
        f"/orders/{order_id.group(0)}/seats", {"seat": "1C"}, HTTP_HX_REQUEST="true"
    )

    assert (
        "Too many new orders and seat changes from your address (2 per minute)" in fragment.content.decode()
    )
    assert Order.objects.get(id=order_id.group(0)).seats == ["1A", "1B"]


def test_a_page_over_the_request_rate_is_a_readable_429(limited, settings):
    settings.ADDRESS_MAX_REQUESTS_PER_SECOND = 2
    browser = Client(REMOTE_ADDR=BOT)

    replies = [browser.get("/") for _ in range(6)]

    refused = next(reply for reply in replies if reply.status_code == 429)
    assert refused["Retry-After"] == "1"
    assert "Too many requests from your address" in refused.content.decode()


# --- Who the client is ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        ("192.0.2.1", "203.0.113.7", [], "192.0.2.1"),  # no proxy trusted: the header is ignored
        ("10.0.0.2", "203.0.113.7", ["10.0.0.0/8"], "203.0.113.7"),
        (
            "10.0.0.2",
            "6.6.6.6, 203.0.113.7",
            ["10.0.0.0/8"],
            "203.0.113.7",
        ),  # the left is the client's own text
        ("10.0.0.2", "203.0.113.7, 10.0.0.9", ["10.0.0.0/8"], "203.0.113.7"),  # two proxies
        ("10.0.0.2", "", ["10.0.0.0/8"], "10.0.0.2"),
        ("10.0.0.2", "not-an-address", ["10.0.0.0/8"], "10.0.0.2"),
        ("192.0.2.1", "203.0.113.7", ["10.0.0.0/8"], "192.0.2.1"),  # a peer that is no proxy of ours
        ("2001:db8:1:2::5", "", [], "2001:db8:1:2::/64"),  # one IPv6 client: its /64
        ("::ffff:192.0.2.1", "", [], "192.0.2.1"),
    ],
)
def test_the_client_address_is_the_first_untrusted_hop(settings, peer, forwarded, trusted, client):
    settings.TRUSTED_PROXIES = [ipaddress.ip_network(network) for network in trusted]
    request = RequestFactory().get("/", REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=forwarded)

    assert client_address(request) == client


# --- A hold's whole life -------------------------------------------------------------------------


def test_the_api_and_the_page_show_the_end_of_the_holds_whole_life(stack, settings):
    settings.SEAT_HOLD_MAX_LIFE = timedelta(minutes=45)
    buyer = ApiClient(stack.url)
    order_id = buyer.create_order("fl-101", ["1A"]).json["orderId"]

    status = buyer.status(order_id)
    page = Client(REMOTE_ADDR=OFFICE)
    reply = page.post("/flights/fl-202/hold", {"seat": "1A"}, follow=True)

    left = datetime.fromisoformat(status["holdLimitAt"]) - timezone.now()
    assert timedelta(minutes=44) < left <= timedelta(minutes=45)
    limit = Order.objects.get(flight_id="fl-202").hold_life_ends_at
    assert f"your seats are held until {limit:%H:%M} UTC at the latest" in reply.content.decode()


def test_a_seat_change_never_moves_the_deadline_past_the_holds_whole_life(stack, settings):
    settings.SEAT_HOLD_MAX_LIFE = settings.SEAT_RESERVATION_TIMEOUT  # the cap is the first hold's end
    buyer = ApiClient(stack.url)
    order_id = buyer.create_order("fl-101", ["1A"]).json["orderId"]
    first = buyer.status(order_id)

    changed = buyer.put(f"/api/orders/{order_id}/seats", {"seats": ["1B"]}).json

    assert changed["seats"] == ["1B"], "the change itself is made"
    assert datetime.fromisoformat(changed["expiresAt"]) <= datetime.fromisoformat(first["holdLimitAt"])


def test_a_change_to_the_same_seats_keeps_the_timer(stack):
    buyer = ApiClient(stack.url)
    created = buyer.create_order("fl-101", ["1A", "1B"]).json

    same = buyer.put(f"/api/orders/{created['orderId']}/seats", {"seats": ["1b", "1a"]})

    assert same.status == 200
    assert same.json["expiresAt"] == created["expiresAt"]

"""The customer's pages: server-rendered, HTMX-enhanced, owned by the session that made the order."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import signing
from django.test import Client
from django.utils import timezone

from flights import inventory
from flights.models import Flight
from orders import ownership
from orders.models import Order
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
HTMX = {"HTTP_HX_REQUEST": "true"}


def hold(client: Client, seat: str = "12A", flight: str = "fl-101") -> str:
    reply = client.post(f"/flights/{flight}/hold", {"seat": seat})
    assert reply.status_code == 302, reply.content[:500]
    match = re.fullmatch(r"/orders/(ord-[0-9a-f]+)/", reply["Location"])
    assert match, reply["Location"]
    return match.group(1)


def test_the_flight_list_shows_routes_and_free_seats(client, stack):
    page = client.get("/").content.decode()

    assert "FL101" in page
    assert "NYC" in page and "LAX" in page
    assert "120/120</strong> seats available" in page
    assert "from <strong>$199.00</strong>" in page, "the cheapest seat's price"
    assert "from <strong>€549.00</strong>" in page, "FL606 sells in euros"
    assert 'hx-trigger="every 2s"' in page
    assert "Payments fail 15" in page and "00000" in page and "99999" in page


def test_the_flight_list_poll_answers_just_the_rows(client, stack):
    fragment = client.get("/", **HTMX).content.decode()

    assert fragment.lstrip().startswith('<tbody id="flight-rows"')
    assert "<html" not in fragment


def test_the_seat_map_has_a_named_button_per_seat_and_aisles(client, stack):
    page = client.get("/flights/fl-505/").content.decode()

    assert page.count('name="seat" value=') == 352
    assert 'aria-label="Seat 12A, available, Premium economy, $1,400.00"' in page
    cabins = 4  # each with its own letters above its rows
    assert page.count('class="aisle"') == (40 + cabins) * 2, "two aisles on every row and the letters above"


def test_an_unknown_flight_is_a_404_page(client, stack):
    reply = client.get("/flights/fl-000/")

    assert reply.status_code == 404
    assert b"couldn't find that page" in reply.content


def test_clicking_a_seat_holds_it_and_opens_the_order(client, stack):
    order_id = hold(client, "12A")

    page = client.get(f"/orders/{order_id}/").content.decode()
    assert 'aria-label="Seat 12A, selected, Economy, $199.00"' in page
    assert 'id="order-total">$199.00<' in page, "the price fixed with the hold"
    assert 'aria-pressed="true"' in page
    assert "data-expires-at=" in page and 'data-running="true"' in page
    assert 'name="payment_code"' in page and 'inputmode="numeric"' in page


def test_under_htmx_a_hold_redirects_the_browser(client, stack):
    reply = client.post("/flights/fl-101/hold", {"seat": "3A"}, **HTMX)

    assert reply.status_code == 200
    assert reply["HX-Redirect"].startswith("/orders/ord-")


def test_a_seat_someone_holds_shows_as_taken_with_a_message(client, stack):
    hold(Client(), "5C")

    reply = client.post("/flights/fl-101/hold", {"seat": "5C"}, **HTMX)

    fragment = reply.content.decode()
    assert "Seat 5C is no longer available" in fragment
    assert 'aria-label="Seat 5C, held by another customer, ' in fragment


def test_adding_and_dropping_seats_changes_the_selection(client, stack):
    order_id = hold(client, "7A")

    added = client.post(f"/orders/{order_id}/seats", {"seat": "7B"}, **HTMX).content.decode()
    assert 'aria-label="Seat 7B, selected, ' in added
    assert 'id="countdown"' in added and 'data-running="true"' in added, "the countdown is reset too"
    client.post(f"/orders/{order_id}/seats", {"seat": "7A"}, **HTMX)

    assert Order.objects.get(id=order_id).seats == ["7B"]


def test_dropping_the_last_seat_cancels_the_order(client, stack):
    order_id = hold(client, "8A")

    reply = client.post(f"/orders/{order_id}/seats", {"seat": "8A"})

    assert reply.status_code == 302
    assert reply["Location"] == "/flights/fl-101/"
    wait_for(lambda: Order.objects.get(id=order_id).state == "CANCELLED", what="the cancellation")


def test_a_bad_payment_code_shows_a_message_and_changes_nothing(client, stack):
    order_id = hold(client, "9A")

    fragment = client.post(f"/orders/{order_id}/pay", {"payment_code": "12a45"}, **HTMX).content.decode()

    assert "The payment code must be exactly 5 digits" in fragment
    assert 'aria-invalid="true"' in fragment
    assert Order.objects.get(id=order_id).state == "SEATS_RESERVED"


def test_paying_works_as_a_plain_post_too(client, stack):
    order_id = hold(client, "10A")

    reply = client.post(f"/orders/{order_id}/pay", {"payment_code": "00000"})

    assert reply.status_code == 302
    wait_for(lambda: Order.objects.get(id=order_id).state == "CONFIRMED", what="the booking to confirm")
    page = client.get(f"/orders/{order_id}/").content.decode()
    assert f"Booking confirmed! Order #{order_id.upper()}. Seat 10A on Flight FL101" in page
    charged = re.search(r'<li class="charge charge--charged">(.*?)</li>', page)
    assert charged, "the payment panel says what was charged"
    # 10A: economy on FL101 ($199.00), in an exit row (+$35.00).
    assert re.fullmatch(r"\$234\.00 charged at \d\d:\d\d:\d\d UTC \(payment attempt 1\)", charged.group(1))


def test_the_poll_stops_with_286_once_the_order_is_final(client, stack):
    order_id = hold(client, "11A")
    client.post(f"/orders/{order_id}/pay", {"payment_code": "99999"})
    wait_for(lambda: Order.objects.get(id=order_id).state == "FAILED", timeout=30, what="the payment to fail")

    reply = client.get(f"/orders/{order_id}/?poll=1", **HTMX)

    assert reply.status_code == 286
    fragment = reply.content.decode()
    assert "Payment validation failed after 3 attempts" in fragment
    assert "every 2s" not in fragment, "the final fragment must not start polling again"


def test_an_unchanged_poll_is_204(client, stack):
    order_id = hold(client, "13A")
    page = client.get(f"/orders/{order_id}/").content.decode()
    fingerprint = re.search(r'hx-vals=\'\{"v": "([^"]+)"\}\'', page).group(1)

    reply = client.get(f"/orders/{order_id}/", {"poll": "1", "v": fingerprint}, **HTMX)

    assert reply.status_code == 204


def test_another_session_cannot_see_or_touch_an_order(client, stack):
    order_id = hold(client, "14A")
    stranger = Client()

    assert stranger.get(f"/orders/{order_id}/").status_code == 404
    assert stranger.get(f"/orders/{order_id}/?poll=1", **HTMX).status_code == 404
    for action, data in [("seats", {"seat": "14B"}), ("pay", {"payment_code": "00000"}), ("cancel", {})]:
        assert stranger.post(f"/orders/{order_id}/{action}", data).status_code == 404
    assert Order.objects.get(id=order_id).state == "SEATS_RESERVED"


def test_forms_need_the_csrf_token(stack):
    strict = Client(enforce_csrf_checks=True)

    reply = strict.post("/flights/fl-101/hold", {"seat": "15A"})

    assert reply.status_code == 403
    assert not Order.objects.exists()


def test_a_departed_flight_says_so_and_cannot_be_booked(client, stack):
    Flight.objects.filter(id="fl-202").update(departure_time=timezone.now() - timedelta(minutes=1))

    listing = client.get("/").content.decode()
    page = client.get("/flights/fl-202/").content.decode()
    reply = client.post("/flights/fl-202/hold", {"seat": "1A"}, **HTMX)

    assert "FL202" not in listing and "FL101" in listing
    assert "This flight has departed" in page
    assert 'aria-label="Seat 1A, available, ' in page
    assert re.search(r'id="seat-1A"[^>]*disabled', page), "its seats cannot be clicked"
    assert "every 2s" not in page, "nothing changes on it any more: no polling"
    assert "sse-connect" not in page, "nor a stream"
    assert "Flight FL202 has already departed" in reply.content.decode()
    assert not Order.objects.exists()


def test_back_on_the_flight_map_a_customer_adds_to_the_order_they_hold(client, stack):
    order_id = hold(client, "12A")

    page = client.get("/flights/fl-101/").content.decode()
    reply = client.post("/flights/fl-101/hold", {"seat": "12B"})
    again = client.post("/flights/fl-101/hold", {"seat": "12A"})  # one of theirs: no change

    assert 'aria-label="Seat 12A, selected, ' in page
    assert "You are holding 12A on this flight" in page
    assert f'href="/orders/{order_id}/"' in page
    assert reply["Location"] == again["Location"] == f"/orders/{order_id}/"
    assert Order.objects.count() == 1
    assert Order.objects.get(id=order_id).seats == ["12A", "12B"]


def test_another_customer_on_the_flight_map_starts_their_own_order(client, stack):
    first = hold(client, "13A")

    second = hold(Client(), "13B")

    assert second != first
    assert Order.objects.get(id=first).seats == ["13A"]


def test_after_release_my_seats_the_flight_map_stops_saying_you_hold_them(client, stack):
    """The seats of a cancelled order are released before its row says CANCELLED: the map
    rendered in between says "You are holding 17C" beside 17C shown free, and its next poll
    must replace that note, not answer "unchanged"."""
    order_id = hold(client, "17C")
    inventory.release(flight_id="fl-101", order_id=order_id, seats=["17C"])  # the release step ran
    page = client.get("/flights/fl-101/").content.decode()
    version = re.search(r'hx-vals=\'\{"v": "([^"]+)"\}\'', page).group(1)
    assert "You are holding 17C" in page and 'aria-label="Seat 17C, available, ' in page

    client.post(f"/orders/{order_id}/cancel")
    wait_for(lambda: Order.objects.get(id=order_id).state == "CANCELLED", timeout=30, what="the cancel")
    reply = client.get("/flights/fl-101/", {"v": version}, **HTMX)

    assert reply.status_code == 200, "the note changed: the poll must not answer 204"
    assert "You are holding" not in reply.content.decode()


def test_a_confirmed_booking_has_a_reference_and_a_private_link_any_browser_opens(client, stack):
    order_id = hold(client, "11C")
    client.post(f"/orders/{order_id}/pay", {"payment_code": "00000"})
    wait_for(lambda: Order.objects.get(id=order_id).state == "CONFIRMED", timeout=30, what="the booking")
    order = Order.objects.get(id=order_id)

    page = client.get(f"/orders/{order_id}/").content.decode()
    link = re.search(r'id="booking-link" readonly value="http://testserver(/bookings/[^"]+/)"', page).group(1)
    elsewhere = Client().get(link)

    assert re.fullmatch(r"[A-HJ-NP-Z2-9]{6}", order.reference)
    assert order.reference in page
    assert f"Order #{order.display_id}. Seat 11C on Flight FL101" in page, "one seat: 'Seat', not 'Seats'"
    assert 'aria-label="Seat 11C, booked for you, ' in page
    assert elsewhere.status_code == 200
    shown = elsewhere.content.decode()
    assert order.reference in shown and 'aria-label="Seat 11C, booked for you, ' in shown
    assert "<form" not in shown, "read-only"
    assert order_id not in link, "the link is a signed token, not the order's id"


def test_a_lost_or_wrong_booking_link_is_a_plain_404(client, stack):
    order = Order.objects.get(id=hold(client, "11D"))
    genuine = ownership.booking_token(order)
    order_elsewhere = signing.dumps(order.id, salt="another-purpose")  # signed, but not as a link

    for token in ["nothing", genuine[:-1] + ("A" if genuine[-1] != "A" else "B"), order_elsewhere]:
        reply = Client().get(f"/bookings/{token}/")
        assert reply.status_code == 404, token
    assert Client().get(f"/bookings/{genuine}/").status_code == 200, "the genuine link opens it"


def test_every_order_gets_its_own_booking_reference(client, stack):
    first, second = hold(client, "12C"), hold(Client(), "12D")

    references = {Order.objects.get(id=first).reference, Order.objects.get(id=second).reference}

    assert len(references) == 2 and None not in references


def test_the_seat_change_cap_is_not_contradicted_by_the_hint(client, stack, settings):
    settings.MAX_SEAT_CHANGES = 1
    order_id = hold(client, "19A")
    client.post(f"/orders/{order_id}/seats", {"seat": "19B"}, **HTMX)

    refused = client.post(f"/orders/{order_id}/seats", {"seat": "19C"}, **HTMX).content.decode()

    assert "can be changed once at most" in refused
    assert "Every change resets the timer" not in refused
    beside_the_seat = r'role="row"><p role="gridcell" class="inline-error seat-message"'
    assert re.search(beside_the_seat, refused), "under row 19"

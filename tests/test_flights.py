"""Flights, seats, the demo schedule and the flight JSON of PRD section 10."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from common.errors import Refused
from flights import holds
from flights.models import BookedSeat, Flight, Seat
from orders.models import Order
from orders.validation import seat_list

pytestmark = pytest.mark.django_db


def test_seeding_creates_six_future_flights_of_different_cabins(demo_flights):
    assert len(demo_flights) >= 6
    assert all(flight.departure_time > timezone.now() for flight in demo_flights.values())
    fl101 = demo_flights["fl-101"]
    assert (fl101.number, fl101.origin, fl101.destination) == ("FL101", "NYC", "LAX")
    assert (fl101.rows, fl101.seats_per_row, fl101.total_seats) == (20, 6, 120)
    assert Seat.objects.filter(flight=fl101).count() == 120
    wide = max(demo_flights.values(), key=lambda f: f.total_seats)
    assert wide.total_seats >= 300
    assert wide.cabin_layout.count("-") == 2, "a wide-body has two aisles"
    sizes = sorted(flight.total_seats for flight in demo_flights.values())
    assert len(set(sizes)) >= 3


def test_seeding_again_changes_nothing(demo_flights, capsys):
    before = Seat.objects.count()

    call_command("seed_flights")

    assert Seat.objects.count() == before
    assert Flight.objects.count() == len(demo_flights)
    assert "0 flights and 0 seats created now" in capsys.readouterr().out


def test_seeding_moves_a_departed_flight_back_into_the_future(demo_flights):
    Flight.objects.filter(id="fl-101").update(departure_time=timezone.now() - timedelta(days=1))

    call_command("seed_flights")

    assert Flight.objects.get(id="fl-101").departure_time > timezone.now()


def test_seat_layout_has_aisles_in_place(demo_flights):
    fl101 = demo_flights["fl-101"]
    row = list(Seat.objects.filter(flight=fl101, row=12).order_by("position").values_list("code", "position"))
    assert row == [("12A", 0), ("12B", 1), ("12C", 2), ("12D", 4), ("12E", 5), ("12F", 6)]


@pytest.mark.parametrize(
    ("code", "row", "column"),
    [("12B", 12, "A"), ("13A", 12, "A"), ("12a", 12, "a")],
)
def test_a_seat_code_must_match_its_row_and_column(demo_flights, code, row, column):
    with pytest.raises(IntegrityError), transaction.atomic():
        Seat.objects.create(flight=demo_flights["fl-202"], code=code, row=row, column=column, position=9)


def test_a_seat_exists_once_per_flight(demo_flights):
    with pytest.raises(IntegrityError), transaction.atomic():
        Seat.objects.create(flight=demo_flights["fl-101"], code="1A", row=1, column="A", position=9)


def test_a_flight_goes_somewhere_else(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        Flight.objects.create(
            id="fl-999",
            number="FL999",
            origin="NYC",
            destination="NYC",
            departure_time=timezone.now(),
            rows=1,
            cabin_layout="AB",
        )


def test_a_seat_is_sold_once(demo_flights):
    seat = Seat.objects.get(flight_id="fl-101", code="1A")
    first = Order.objects.create(id="ord-" + "a" * 20, flight_id="fl-101")
    second = Order.objects.create(id="ord-" + "b" * 20, flight_id="fl-101")
    BookedSeat.objects.create(flight_id="fl-101", seat=seat, order=first)

    with pytest.raises(IntegrityError), transaction.atomic():
        BookedSeat.objects.create(flight_id="fl-101", seat=seat, order=second)


def test_flight_list_json_matches_the_prd(client, demo_flights, clean_redis):
    seat = Seat.objects.get(flight_id="fl-101", code="1A")
    order = Order.objects.create(id="ord-" + "c" * 20, flight_id="fl-101")
    BookedSeat.objects.create(flight_id="fl-101", seat=seat, order=order)
    holds.acquire(flight_id="fl-101", seats=["2A", "2B"], order_id="ord-" + "d" * 20, ttl_ms=60_000)

    reply = client.get("/api/flights")

    assert reply.status_code == 200
    flights = {f["id"]: f for f in reply.json()["flights"]}
    assert flights["fl-101"] == {
        "id": "fl-101",
        "flightNumber": "FL101",
        "origin": "NYC",
        "destination": "LAX",
        "departureTime": demo_flights["fl-101"].departure_time.isoformat().replace("+00:00", "Z"),
        "totalSeats": 120,
        "availableSeats": 117,
        "fromPrice": {"amount": 19900, "currency": "USD"},
    }


def test_flight_detail_json_has_the_seat_map(client, demo_flights, clean_redis):
    holds.acquire(flight_id="fl-101", seats=["12A"], order_id="ord-" + "e" * 20, ttl_ms=60_000)

    reply = client.get("/api/flights/fl-101")

    assert reply.status_code == 200
    body = reply.json()
    assert body["seatMap"]["rows"] == 20
    assert body["seatMap"]["seatsPerRow"] == 6
    seats = body["seatMap"]["seats"]
    assert len(seats) == 120
    assert seats[0] == {
        "id": "1A",
        "row": 1,
        "column": "A",
        "status": "available",
        "cabin": "premium_economy",
        "exitRow": False,
        "price": {"amount": 32900, "currency": "USD"},
    }
    assert next(s for s in seats if s["id"] == "12A")["status"] == "reserved"
    exit_seat = next(s for s in seats if s["id"] == "10C")
    assert (exit_seat["cabin"], exit_seat["exitRow"], exit_seat["price"]["amount"]) == (
        "economy",
        True,
        23400,
    )
    assert [(c["cabin"], c["firstRow"], c["lastRow"]) for c in body["seatMap"]["cabins"]] == [
        ("premium_economy", 1, 5),
        ("economy", 6, 20),
    ]


def test_a_wide_body_has_cabins_of_their_own_widths_and_prices(client, demo_flights, clean_redis):
    body = client.get("/api/flights/fl-505").json()

    cabins = {c["cabin"]: c for c in body["seatMap"]["cabins"]}
    assert list(cabins) == ["first", "business", "premium_economy", "economy"]
    assert [cabins[c]["seatsPerRow"] for c in cabins] == [4, 6, 8, 10]
    seats = {s["id"]: s for s in body["seatMap"]["seats"]}
    assert "1B" not in seats and "1E" in seats, "first class is 1-2-1: no seat where economy has B"
    assert seats["3A"]["cabin"] == "business"
    assert seats["3A"]["price"] == {"amount": 320000, "currency": "USD"}
    assert seats["20B"]["price"] == {"amount": 69900, "currency": "USD"}
    assert body["totalSeats"] == len(seats) == 352
    # Every seat stands in its column: a cabin's letters sit where the economy row has them.
    positions = dict(Seat.objects.filter(flight_id="fl-505", row=20).values_list("column", "position"))
    assert set(Seat.objects.filter(flight_id="fl-505", column="K").values_list("position", flat=True)) == {
        positions["K"]
    }


def test_a_seat_elsewhere_in_another_currency_is_priced_in_it(client, demo_flights):
    flights = {f["id"]: f for f in client.get("/api/flights").json()["flights"]}

    assert flights["fl-606"]["fromPrice"] == {"amount": 54900, "currency": "EUR"}


def test_the_seat_map_page_draws_each_cabin_apart_with_its_name_and_price(client, demo_flights, clean_redis):
    page = client.get("/flights/fl-505/").content.decode()

    for title in (
        "First · rows 1\N{EN DASH}2 · 1-2-1 · $6,500.00",
        "Business · rows 3\N{EN DASH}9 · 2-2-2 · $3,200.00",
    ):
        assert title in page
    assert "Premium economy · rows 10\N{EN DASH}13 · 2-4-2 · $1,400.00" in page
    assert "Exit row, more legroom: +$90.00" in page
    assert 'aria-label="Seat 3A, available, Business, $3,200.00"' in page
    assert 'aria-label="Seat 14A, available, Economy, exit row, $789.00"' in page


def test_seeding_gives_a_flight_seeded_before_cabins_its_cabins_unless_it_has_orders(demo_flights):
    from flights.models import Cabin
    from flights.services import seed_demo_flights

    Cabin.objects.filter(flight_id__in=["fl-505", "fl-606"]).delete()
    Seat.objects.filter(flight_id="fl-606").delete()
    Order.objects.create(id="ord-" + "f" * 20, flight_id="fl-606")  # bookings may point at its seats

    seed_demo_flights()

    assert Cabin.objects.filter(flight_id="fl-505").count() == 4
    assert Seat.objects.filter(flight_id="fl-505").count() == 352
    kept = Flight.objects.get(id="fl-606")
    assert [(c.cabin_class, c.first_row, c.last_row, c.price) for c in kept.cabin_list] == [
        ("economy", 1, 36, 54900)
    ], "a flight with orders keeps its seats, in one cabin"
    assert Seat.objects.filter(flight_id="fl-606").count() == 36 * 8


def test_an_unknown_flight_is_a_404_with_a_code(client, db):
    reply = client.get("/api/flights/fl-000")

    assert reply.status_code == 404
    assert reply.json()["error"] == "FLIGHT_NOT_FOUND"
    assert "fl-000" in reply.json()["message"]


def test_seats_not_on_the_flight_are_named_in_the_order_given_from_one_query(
    demo_flights, django_assert_num_queries
):
    # A seat change validates every seat asked for: one query for the seats named, not one
    # read of the whole seat map per seat.
    flight = demo_flights["fl-101"]
    with django_assert_num_queries(1):
        assert seat_list(["1A", "1B", "2C", "20F"], flight=flight) == ["1A", "1B", "2C", "20F"]
    with django_assert_num_queries(1), pytest.raises(Refused) as refused:
        seat_list(["1A", "99Z", "1B", "21A"], flight=flight)
    assert refused.value.code == "UNKNOWN_SEATS"
    assert refused.value.message == "Seats 99Z, 21A not on flight FL101"

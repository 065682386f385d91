"""Seat holds in Redis (flights/holds.py), on a real Redis: all or none, only one's own, with a TTL.

Fast (no database, no Temporal): part of the tests `make mutate` runs against the seat-hold code.
Each test uses a flight id of its own, so it never meets another test's keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from flights import holds

MINE, THEIRS = "ord-" + "a" * 20, "ord-" + "b" * 20


@pytest.fixture
def flight() -> Iterator[str]:
    flight_id = f"fl-{uuid.uuid4().hex[:8]}"
    yield flight_id
    redis = holds.connection()
    for key in redis.scan_iter(match=f"hold:{{{flight_id}}}:*"):
        redis.delete(key)


def ttl_ms(flight: str, seat: str) -> int:
    return int(holds.connection().pttl(holds.hold_key(flight, seat)))


def test_a_hold_key_names_the_flight_as_a_cluster_hash_tag_and_the_seat():
    assert holds.hold_key("fl-101", "12A") == "hold:{fl-101}:12A"


def test_free_seats_are_all_held_for_the_order_with_the_ttl(flight):
    taken = holds.acquire(flight_id=flight, seats=["1A", "1B"], order_id=MINE, ttl_ms=60_000)

    assert taken == []
    assert holds.holders(flight_id=flight, seats=["1A", "1B", "1C"]) == {"1A": MINE, "1B": MINE}
    assert 59_000 < ttl_ms(flight, "1A") <= 60_000


def test_one_seat_held_by_another_order_holds_none_and_names_it(flight):
    holds.acquire(flight_id=flight, seats=["2B"], order_id=THEIRS, ttl_ms=60_000)

    taken = holds.acquire(flight_id=flight, seats=["2A", "2B", "2C"], order_id=MINE, ttl_ms=60_000)

    assert taken == ["2B"]
    assert holds.holders(flight_id=flight, seats=["2A", "2B", "2C"]) == {"2B": THEIRS}


def test_taken_seats_come_back_in_the_order_asked(flight):
    holds.acquire(flight_id=flight, seats=["3C", "3A"], order_id=THEIRS, ttl_ms=60_000)

    assert holds.acquire(flight_id=flight, seats=["3A", "3B", "3C"], order_id=MINE, ttl_ms=60_000) == [
        "3A",
        "3C",
    ]


def test_holding_again_what_the_order_holds_refreshes_the_ttl(flight):
    holds.acquire(flight_id=flight, seats=["4A"], order_id=MINE, ttl_ms=5_000)

    taken = holds.acquire(flight_id=flight, seats=["4A", "4B"], order_id=MINE, ttl_ms=90_000)

    assert taken == []
    assert ttl_ms(flight, "4A") > 80_000
    assert holds.holders(flight_id=flight, seats=["4A", "4B"]) == {"4A": MINE, "4B": MINE}


def test_nothing_to_hold_or_release_touches_nothing(flight):
    assert holds.acquire(flight_id=flight, seats=[], order_id=MINE, ttl_ms=60_000) == []
    assert holds.release(flight_id=flight, seats=[], order_id=MINE) == 0
    assert holds.holders(flight_id=flight, seats=[]) == {}


def test_release_lets_go_only_of_the_orders_own_seats_and_counts_them(flight):
    holds.acquire(flight_id=flight, seats=["5A", "5B"], order_id=MINE, ttl_ms=60_000)
    holds.acquire(flight_id=flight, seats=["5C"], order_id=THEIRS, ttl_ms=60_000)

    released = holds.release(flight_id=flight, seats=["5A", "5C", "5D"], order_id=MINE)

    assert released == 1
    assert holds.holders(flight_id=flight, seats=["5A", "5B", "5C"]) == {"5B": MINE, "5C": THEIRS}


def test_holders_reads_text_whether_redis_answers_bytes_or_text():
    assert holds._text(b"ord-1") == "ord-1"
    assert holds._text("ord-2") == "ord-2"


def test_every_hold_lists_each_hold_in_redis_with_its_flight_seat_and_order(flight):
    holds.acquire(flight_id=flight, seats=["6A", "6B"], order_id=MINE, ttl_ms=60_000)
    holds.acquire(flight_id=flight, seats=["6C"], order_id=THEIRS, ttl_ms=60_000)
    redis = holds.connection()
    redis.set(f"hold:{flight}:6D", MINE, px=60_000)  # not a hold's key: no hash tag
    redis.set(f"other:{{{flight}}}:6E", MINE, px=60_000)
    redis.set(f"hold:{{{flight}}}:", MINE, px=60_000)  # nor is this: no seat

    found = sorted(hold for hold in holds.every_hold() if hold[0] == flight)

    assert found == [(flight, "6A", MINE), (flight, "6B", MINE), (flight, "6C", THEIRS)]
    redis.delete(f"hold:{flight}:6D", f"other:{{{flight}}}:6E", f"hold:{{{flight}}}:")


def test_every_hold_reads_a_large_store_in_batches_and_misses_none(flight):
    seats = [f"{row}{letter}" for row in range(10, 17) for letter in "AB"]  # 14 holds
    holds.acquire(flight_id=flight, seats=seats, order_id=MINE, ttl_ms=60_000)

    found = [seat for held_on, seat, _ in holds.every_hold(batch=3) if held_on == flight]

    assert sorted(found) == sorted(seats)
    assert len(found) == len(seats), "each hold once"

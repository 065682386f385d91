"""The bookkeeping activities' writes (orders/activity_writes.py), on a real PostgreSQL and Redis.

Bookkeeping runs as local activities: they write before their workflow task completes. When that
task is lost, its writes stay though its history does not, and the task that replaces it may
decide otherwise with the same version numbers. These tests make that happen by hand, with the
records the two tasks would write, and check that the stores end as the history says.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from flights import holds
from flights.inventory import SeatsAlreadySold, UnknownSeats
from flights.models import BookedSeat
from orders.activity_writes import confirm_booking, hold_seats, record_order
from orders.models import Order
from orders.order_rows import new_order
from orders.workflow_contract import OrderRecord, State
from payments.ledger import charge_key
from payments.models import Charge, ChargeStatus
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db

MINUTE_MS = 60_000


@pytest.fixture
def order(demo_flights, clean_redis) -> Order:  # type: ignore[no-untyped-def]
    flight = next(iter(demo_flights.values()))
    return new_order(flight=flight, seats=["1A", "1B"])


def record(order: Order, version: int, state: State, at_seconds: float, seats: list[str]) -> OrderRecord:
    start = order.created_at
    return OrderRecord(
        order_id=order.id,
        flight_id=order.flight_id,
        version=version,
        state=state,
        seats=seats,
        at=start + timedelta(seconds=at_seconds),
        hold_expires_at=start + timedelta(minutes=15),
    )


def holders(order: Order) -> dict[str, str]:
    return holds.holders(flight_id=order.flight_id, seats=["1A", "1B"])


def test_the_replacement_of_a_lost_task_wins_over_what_the_lost_task_wrote(order):
    # The lost task held both seats as version 1; its replacement never saw the first hold
    # (the update was lost with the task) and ended the booking as version 1.
    assert (
        hold_seats(
            record=record(order, 1, State.SEATS_RESERVED, 1, ["1A", "1B"]), ttl_ms=MINUTE_MS, release=[]
        )
        == []
    )
    assert holders(order) == {"1A": order.id, "1B": order.id}

    assert record_order(record=record(order, 1, State.FAILED, 20, []))

    order.refresh_from_db()
    assert (order.state, order.version, order.seats) == (State.FAILED, 1, [])
    assert [(e.version, e.state) for e in order.events.all()] == [(1, State.FAILED)], "the lost row is gone"
    assert holders(order) == {}, "the seats the lost task held are free at once, not at their TTL"


def test_a_lost_task_that_went_further_is_overridden_too(order):
    hold_seats(record=record(order, 1, State.SEATS_RESERVED, 1, ["1A"]), ttl_ms=MINUTE_MS, release=[])
    hold_seats(record=record(order, 2, State.SEATS_RESERVED, 1, ["1A", "1B"]), ttl_ms=MINUTE_MS, release=[])

    # The replacement, later, expired the booking with version 2 (its own first hold was v1).
    assert record_order(record=record(order, 2, State.EXPIRED, 30, ["1A"]))

    order.refresh_from_db()
    assert (order.state, order.version) == (State.EXPIRED, 2)
    assert holders(order) == {}


def test_a_late_write_of_a_lost_task_never_moves_the_order_back(order):
    record_order(record=record(order, 1, State.SEATS_RESERVED, 20, ["1A"]))
    record_order(record=record(order, 2, State.CANCELLED, 25, ["1A"]))

    # A frozen worker wakes and writes what its lost task decided, earlier, with versions 1 and 2.
    assert not record_order(record=record(order, 2, State.PAYMENT_PENDING, 5, ["1A"]))
    assert not record_order(record=record(order, 3, State.PAYMENT_PROCESSING, 5, ["1A"]))

    order.refresh_from_db()
    assert (order.state, order.version) == (State.CANCELLED, 2)
    assert [e.state for e in order.events.all()] == [State.SEATS_RESERVED, State.CANCELLED]


def test_a_retried_record_adds_nothing_and_an_older_version_is_ignored(order):
    first = record(order, 1, State.SEATS_RESERVED, 1, ["1A"])
    assert record_order(record=first)
    assert not record_order(record=first), "the same record again"
    assert record_order(record=record(order, 2, State.SEATS_RESERVED, 1, ["1B"]))
    assert not record_order(record=record(order, 1, State.SEATS_RESERVED, 1, ["1A"])), "a late retry"

    order.refresh_from_db()
    assert (order.version, order.seats, order.events.count()) == (2, ["1B"], 2)


def test_an_ending_never_releases_another_orders_hold(order, demo_flights):
    other = new_order(flight=order.flight, seats=["1B"])
    hold_seats(record=record(other, 1, State.SEATS_RESERVED, 1, ["1B"]), ttl_ms=MINUTE_MS, release=[])

    record_order(record=record(order, 1, State.EXPIRED, 2, []))

    assert holders(order) == {"1B": other.id}


def test_a_hold_of_a_seat_another_order_bought_names_it_and_changes_nothing(order):
    other = new_order(flight=order.flight, seats=["1B"])
    BookedSeat.objects.create(flight=order.flight, seat=order.flight.seats.get(code="1B"), order=other)

    taken = hold_seats(
        record=record(order, 1, State.SEATS_RESERVED, 1, ["1A", "1B"]), ttl_ms=MINUTE_MS, release=[]
    )

    assert taken == ["1B"]
    assert holders(order) == {}, "all or none: 1A is not held either"
    order.refresh_from_db()
    assert (order.state, order.version) == (State.CREATED, 0)


def test_a_hold_of_seats_the_order_bought_itself_is_not_refused(order):
    # A confirmation's retry, or a hold re-taken after a sale whose answer was lost.
    BookedSeat.objects.create(flight=order.flight, seat=order.flight.seats.get(code="1A"), order=order)

    assert (
        hold_seats(record=record(order, 1, State.SEATS_RESERVED, 1, ["1A"]), ttl_ms=MINUTE_MS, release=[])
        == []
    )
    assert holders(order) == {"1A": order.id}


@pytest.mark.django_db(transaction=True)  # the sale's transaction is the outermost, as in the worker
def test_a_sale_of_a_seat_another_order_bought_meanwhile_names_it_and_writes_nothing(order):
    # The hold kept the seat from everyone but a sale made behind its back (the constraint is
    # the last word): the sale is refused by name, which the workflow cannot retry away.
    hold_seats(record=record(order, 1, State.SEATS_RESERVED, 1, ["1A", "1B"]), ttl_ms=MINUTE_MS, release=[])
    other = new_order(flight=order.flight, seats=["1B"])
    BookedSeat.objects.create(flight=order.flight, seat=order.flight.seats.get(code="1B"), order=other)
    Charge.objects.create(
        id="ch_" + "1" * 24,
        idempotency_key=charge_key(order.id),
        order=order,
        attempt=1,
        status=ChargeStatus.CHARGED,
        charged_at=timezone.now(),
    )

    with pytest.raises(SeatsAlreadySold) as refused:
        confirm_booking(record=record(order, 2, State.CONFIRMED, 2, ["1A", "1B"]))

    assert refused.value.seats == ["1B"]
    assert not BookedSeat.objects.filter(order=order).exists(), "all or none: 1A is not sold"
    order.refresh_from_db()
    assert (order.state, order.version) == (State.SEATS_RESERVED, 1)


def test_a_seat_not_on_the_flight_is_refused_by_name(order):
    with pytest.raises(UnknownSeats, match="99Z"):
        hold_seats(
            record=record(order, 1, State.SEATS_RESERVED, 1, ["1A", "99Z"]), ttl_ms=MINUTE_MS, release=[]
        )

    assert holders(order) == {}


def statements(queries: CaptureQueriesContext) -> list[str]:
    """The first word of each statement, savepoints left out (the test's transaction makes them)."""
    words = [query["sql"].split()[0] for query in queries.captured_queries]
    return [word for word in words if word not in {"SAVEPOINT", "RELEASE"}]


def test_a_record_locks_the_row_then_reads_its_history_in_one_query(order):
    hold_seats(record=record(order, 1, State.SEATS_RESERVED, 1, ["1A"]), ttl_ms=MINUTE_MS, release=[])

    with CaptureQueriesContext(connection) as queries:
        assert record_order(record=record(order, 2, State.PAYMENT_PENDING, 2, ["1A"]))

    assert statements(queries) == ["SELECT", "SELECT", "UPDATE", "INSERT"], "no DELETE: no lost row"
    lock, history = (q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT"))
    assert lock.endswith("FOR UPDATE") and "orders_orderevent" not in lock
    assert "orders_orderevent" in history and "FOR UPDATE" not in history
    order.refresh_from_db()
    assert [(e.version, e.state) for e in order.events.all()] == [
        (1, State.SEATS_RESERVED),
        (2, State.PAYMENT_PENDING),
    ]


def test_a_lost_tasks_rows_are_deleted_in_the_same_transaction(order):
    hold_seats(record=record(order, 1, State.SEATS_RESERVED, 1, ["1A"]), ttl_ms=MINUTE_MS, release=[])
    record_order(record=record(order, 2, State.PAYMENT_PENDING, 2, ["1A"]))

    # The replacement of the lost task that wrote version 2 records its own version 2, later.
    with CaptureQueriesContext(connection) as queries:
        assert record_order(record=record(order, 2, State.CANCELLED, 30, ["1A"]))

    assert statements(queries)[:5] == ["SELECT", "SELECT", "UPDATE", "DELETE", "INSERT"]
    order.refresh_from_db()
    assert [(e.version, e.state) for e in order.events.all()] == [
        (1, State.SEATS_RESERVED),
        (2, State.CANCELLED),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_record_that_waited_for_the_row_sees_the_history_its_writer_committed(order):
    # A lost task's local activity and its replacement's write the same order at the same time.
    # The lost task's write holds the row; the replacement's waits for it, then must still win:
    # its record is later, so it must see the row the lost task committed *and* its history.
    lost = record(order, 1, State.SEATS_RESERVED, 1, ["1A"])
    replacement = record(order, 1, State.FAILED, 20, [])
    lock_held, replacement_waits, done = threading.Event(), threading.Event(), threading.Event()
    outcome: list[bool] = []

    def lost_task() -> None:
        with transaction.atomic():
            Order.objects.select_for_update().get(id=order.id)
            lock_held.set()
            replacement_waits.wait(timeout=10)
            record_order(record=lost)  # committed as the replacement waits on the row
        connection.close()

    def replacement_task() -> None:
        outcome.append(record_order(record=replacement))
        connection.close()
        done.set()

    first = threading.Thread(target=lost_task)
    first.start()
    assert lock_held.wait(timeout=10)
    second = threading.Thread(target=replacement_task)
    second.start()
    wait_for(a_backend_waits_on_a_lock, interval=0.01, what="the replacement to wait on the row")
    replacement_waits.set()
    first.join(timeout=10)
    second.join(timeout=10)

    assert done.is_set() and outcome == [True]
    order.refresh_from_db()
    assert (order.state, order.version) == (State.FAILED, 1)
    assert [(e.version, e.state) for e in order.events.all()] == [(1, State.FAILED)]


def a_backend_waits_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'"
        )
        return bool(cursor.fetchone()[0])

"""A restart of Redis mid-booking loses nothing: a payment waits for Redis to come back, re-takes
the seat holds it lost, and confirms; no seat is sold twice and no hold is left behind.

Like the Temporal restart test, this one runs its own Redis server (and a worker that uses it),
stops it while an order is live and starts it again, empty, as a Redis without persistence
comes back.
"""

from __future__ import annotations

import signal
import uuid

import pytest
import redis
from prometheus_client import REGISTRY

from flights import holds
from flights.models import BookedSeat
from tests.conftest import WorkerProcess
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def redis_url(server) -> str:
    return f"redis://{server.address}/0"


@pytest.fixture
def redis_of_its_own(stack, own_redis, settings):
    """The web and a worker of their own on a Redis the test may stop and start again, on a task
    queue of their own so that the suite's worker (on the suite's Redis) never picks up these
    bookings."""
    queue = f"{settings.TEMPORAL_TASK_QUEUE}-redis-restart"
    settings.TEMPORAL_TASK_QUEUE = queue
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": redis_url(own_redis).replace("/0", "/1")},
        "holds": {**settings.CACHES["holds"], "LOCATION": redis_url(own_redis)},
    }
    worker = WorkerProcess(
        env={**stack.worker.env, "REDIS_URL": redis_url(own_redis), "TEMPORAL_TASK_QUEUE": queue},
        log=stack.worker.log.with_name("redis-restart-worker.log"),
    )
    worker.start()
    yield own_redis
    worker.stop(signal.SIGTERM)


def test_a_payment_waits_out_a_redis_restart_and_confirms(stack, redis_of_its_own):
    own_redis = redis_of_its_own
    customer = stack.customer()
    order_id = customer.create_order("fl-404", ["7A", "7B"]).json["orderId"]
    customer.wait_for_status(order_id, "SEATS_RESERVED")  # a new worker's first answer may be late
    assert holds.holders(flight_id="fl-404", seats=["7A", "7B"]) == {"7A": order_id, "7B": order_id}

    own_redis.stop()
    paid = customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": "00000"})
    assert paid.status == 202, paid.text
    assert customer.status(order_id)["status"] in {"PAYMENT_PENDING", "PAYMENT_PROCESSING"}
    health = customer.get("/healthz")
    assert health.status == 503 and health.json["down"] == ["redis"]

    own_redis.start()  # empty: every hold is gone

    final = customer.wait_for_status(order_id, "CONFIRMED", "FAILED", timeout=60)
    assert final["status"] == "CONFIRMED", final
    assert sorted(BookedSeat.objects.filter(order_id=order_id).values_list("seat__code", flat=True)) == [
        "7A",
        "7B",
    ]
    wait_for(
        lambda: holds.holders(flight_id="fl-404", seats=["7A", "7B"]) == {},
        what="the holds re-taken for the payment to be let go after the sale",
    )


def test_a_seat_change_redis_cannot_take_is_503_changes_nothing_and_can_be_retried(stack, redis_of_its_own):
    customer = stack.customer()
    order_id = customer.create_order("fl-404", ["8A"]).json["orderId"]
    customer.wait_for_status(order_id, "SEATS_RESERVED")
    key = str(uuid.uuid4())

    counted = unavailable_answers("update_failed")
    redis_of_its_own.stop()
    refused = customer.put(f"/api/orders/{order_id}/seats", {"seats": ["8B"]}, key=key)

    assert refused.status == 503, refused.text
    assert refused.json["error"] == "SERVICE_UNAVAILABLE"
    assert unavailable_answers("update_failed") == counted + 1, "the web's metrics count it, by cause"
    assert customer.status(order_id)["seats"] == ["8A"], "nothing changed"
    redis_of_its_own.start()
    retried = customer.put(f"/api/orders/{order_id}/seats", {"seats": ["8B"]}, key=key)
    assert retried.status == 200, "a 503 is not a final answer: the same key tries again"
    assert retried.json["seats"] == ["8B"]
    assert holds.holders(flight_id="fl-404", seats=["8A", "8B"]) == {"8B": order_id}


def unavailable_answers(cause: str) -> float:
    """The 503s the web (the live server, in this process) counted for the cause."""
    return REGISTRY.get_sample_value("booking_unavailable_responses_total", {"cause": cause}) or 0.0


def test_redis_is_really_down_while_stopped(own_redis):
    """The restart test above proves something only if stopping the server really cuts it off."""
    client = redis.Redis.from_url(redis_url(own_redis), socket_connect_timeout=1)
    assert client.ping()

    own_redis.stop()

    with pytest.raises(redis.ConnectionError):
        client.ping()
    own_redis.start()
    assert client.ping()

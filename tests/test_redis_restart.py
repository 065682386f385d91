"""A restart of Redis mid-booking loses nothing: a payment waits for Redis to come back, re-takes
the seat holds it lost, and confirms; no seat is sold twice and no hold is left behind.

Like the Temporal restart test, this one runs its own Redis server (and a worker that uses it),
stops it while an order is live and starts it again, empty, as a Redis without persistence
comes back.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devstack.__main__ import Stack as ProcessStack
from devstack.__main__ import free_port, start_redis
from orders import holds
from orders.models import BookedSeat
from tests.conftest import WorkerProcess
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


class RedisServer:
    def __init__(self, data: Path) -> None:
        self.data, self.port, self.processes = data, free_port(), ProcessStack()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        start_redis(self.processes, self.data, self.port, dict(os.environ), persist=False)

    def stop(self) -> None:
        self.processes.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_a_payment_waits_out_a_redis_restart_and_confirms(stack, own_redis, settings):
    # The web and a worker of its own use this Redis, on a task queue of their own so that the
    # suite's worker (on the suite's Redis) never picks up these bookings.
    queue = f"{settings.TEMPORAL_TASK_QUEUE}-redis-restart"
    settings.TEMPORAL_TASK_QUEUE = queue
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": own_redis.url}}
    worker = WorkerProcess(
        env={**stack.worker.env, "REDIS_URL": own_redis.url, "TEMPORAL_TASK_QUEUE": queue},
        log=stack.worker.log.with_name("redis-restart-worker.log"),
    )
    worker.start()
    try:
        customer = stack.customer()
        order_id = customer.create_order("fl-404", ["7A", "7B"]).json["orderId"]
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
    finally:
        worker.stop(signal.SIGTERM)


def test_redis_is_really_down_while_stopped(own_redis):
    """The restart test above proves something only if stopping the server really cuts it off."""
    client = redis.Redis.from_url(own_redis.url, socket_connect_timeout=1)
    assert client.ping()

    own_redis.stop()

    with pytest.raises(redis.ConnectionError):
        client.ping()
    own_redis.start()
    assert client.ping()

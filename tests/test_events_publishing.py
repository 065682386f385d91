"""Publishing changes (common/events.py) off the writer's path: the writer hands a committed
change to the process's publishing thread and goes on; the thread publishes in the order given,
what piled up in one round trip, and carries on after Redis failed it. On the suite's Redis."""

from __future__ import annotations

import itertools
import json

import pytest
from django.db import transaction
from prometheus_client import REGISTRY

from common import events
from devstack.ports import free_port
from flights import holds
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def failed(kind: str) -> float:
    labels = {"kind": kind, "outcome": "failed"}
    return REGISTRY.get_sample_value("booking_events_published_total", labels) or 0.0


def test_changes_go_out_after_the_commit_in_their_order_with_their_commit_time(clean_redis):
    listener = holds.connection().pubsub(ignore_subscribe_messages=True)
    listener.subscribe(events.channel(events.ORDER, "ord-publishing"))
    with transaction.atomic():
        for version in range(1, 201):
            events.order_changed("ord-publishing", version=version, state="SEATS_RESERVED")
        assert events.flush(), "nothing pending before the commit"
        assert listener.get_message(timeout=0.2) is None, "nothing is published before the commit"

    assert events.flush(), "all published"
    heard = []
    wait_for(lambda: heard.extend(_messages(listener)) or len(heard) == 200, what="the 200 changes")
    assert [change["version"] for change in heard] == list(range(1, 201)), "in the order they were made"
    assert [change["id"] for change in heard] == list(range(1, 201)), "each with the next sequence"
    assert all(earlier["at"] <= later["at"] for earlier, later in itertools.pairwise(heard))
    assert events.sequence(events.ORDER, "ord-publishing") == "200"


def test_a_publish_redis_refuses_is_counted_and_the_next_ones_still_go_out(settings, clean_redis):
    suite_redis = settings.CACHES["holds"]
    before = failed(events.FLIGHT)
    settings.CACHES = {
        **settings.CACHES,
        "holds": {**suite_redis, "LOCATION": f"redis://127.0.0.1:{free_port()}/0"},
    }
    events.flight_changed("fl-101", seats=["1A"])  # outside a transaction: handed over at once
    assert events.flush(timeout=10)
    assert failed(events.FLIGHT) == before + 1, "counted as failed (and logged): the page's poll shows it"

    settings.CACHES = {**settings.CACHES, "holds": suite_redis}
    events.flight_changed("fl-101", seats=["1B"])
    assert events.flush(timeout=10)
    assert failed(events.FLIGHT) == before + 1
    assert events.sequence(events.FLIGHT, "fl-101") == "1", "the publishing thread carried on"


def _messages(listener) -> list[dict]:  # type: ignore[no-untyped-def]
    found = []
    while (message := listener.get_message(timeout=0.05)) is not None:
        found.append(json.loads(message["data"]))
    return found

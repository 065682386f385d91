"""Changes pushed (issue 27): each committed change of an order and of a flight's seats reaches
the event streams of the streams' own process (uvicorn), in the browser's EventSource format, for
the order's own session only, capped per session and per address; the pages open them and still
poll. On the real stack: the live server and the worker write, the streams' server streams."""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest

from common import events
from tests.conftest import EVENTS_ENV, start_events_server
from tests.helpers import ApiClient, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
OPENED: list[Stream] = []  # this test's streams, closed when it ends


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return reply.read().decode()


def _open_streams(metrics: str) -> float:
    return sum(float(n) for n in re.findall(r"^booking_streams_open\{[^}]*\} (\S+)$", metrics, re.M))


@pytest.fixture(autouse=True)
def streams_closed(request):
    """Each test's streams are closed when it ends, and the streams' server has let them all go
    before the next test counts its own: a stream's end is noticed and counted at once."""
    server = request.getfixturevalue("events_server") if "event_streams" in request.fixturenames else None
    yield
    while OPENED:
        OPENED.pop().close()
    if server is not None:
        wait_for(lambda: _open_streams(_scrape(server.metrics_url)) == 0, what="every closed stream let go")


@dataclass
class Event:
    name: str = "message"
    id: str | None = None
    data: str = ""
    comments: list[str] = field(default_factory=list)
    retry: int | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.data)


class Stream:
    """One EventSource connection, read as a browser reads it (text/event-stream blocks)."""

    def __init__(self, base: str, path: str, *, customer: ApiClient | None = None, **headers: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=15)
        sent = {"Accept": "text/event-stream", **{k.replace("_", "-"): v for k, v in headers.items()}}
        if customer is not None:
            sent["Cookie"] = "; ".join(f"{name}={value}" for name, value in customer.cookies.items())
        self.connection.request("GET", path, headers=sent)
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = dict(self.response.getheaders())
        OPENED.append(self)

    def body(self) -> Any:
        return json.loads(self.response.read())

    def block(self) -> Event:
        """The next block (an event, or comments and fields only)."""
        event = Event()
        while True:
            line = self.response.readline().decode()
            assert line, "the stream ended"
            line = line.rstrip("\n")
            if not line:
                return event
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                event.comments.append(value)
            elif name == "event":
                event.name = value
            elif name == "id":
                event.id = value
            elif name == "data":
                event.data += value
            elif name == "retry":
                event.retry = int(value)

    def event(self, *names: str, within: float = 20) -> Event:
        """The next event (skipping heartbeats), of one of ``names`` if given, within ``within``
        seconds (the heartbeats alone would keep the reading going for ever)."""
        deadline = time.monotonic() + within
        while True:
            block = self.block()
            if block.data and (not names or block.name in names):
                return block
            assert time.monotonic() < deadline, f"no {' or '.join(names) or 'event'} within {within} s"

    def ended(self) -> bool:
        return self.response.readline() == b""

    def close(self) -> None:
        self.response.close()
        self.connection.close()


def _order(stack, seats: list[str], flight: str = "fl-101") -> tuple[ApiClient, str]:
    customer = stack.customer()
    created = customer.create_order(flight, seats)
    assert created.status == 201, created.text
    return customer, created.json["orderId"]


def test_each_committed_change_of_an_order_reaches_its_stream_then_it_closes(stack, event_streams):
    customer, order_id = _order(stack, ["3A"])
    stream = Stream(event_streams.url, f"/api/orders/{order_id}/events", customer=customer)
    assert stream.status == 200
    assert stream.headers["Content-Type"] == "text/event-stream"
    opening = stream.block()
    assert opening.retry == 500, "retry: first (EVENTS_RETRY)"
    assert opening.comments == ["open"]

    paid = customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": "00000"})
    assert paid.status == 202, paid.text

    states, ids = [], []
    while "CONFIRMED" not in states:
        event = stream.event("order-changed", "seats-changed")
        ids.append(event.id)
        if event.name == "order-changed" and event.json.get("state"):
            states.append(event.json["state"])
            assert event.json["version"] >= 1 and event.json["at"] > 0
    assert states[0] == "PAYMENT_PENDING" and states[-1] == "CONFIRMED", states
    order_seq = [int(i.split("-")[0]) for i in ids]
    assert order_seq == sorted(order_seq), "the order's sequence only goes up"
    closing = stream.block()
    assert closing.name == "close", "an ended order's stream says so"
    assert stream.ended()
    # Once ended, a new stream says so at once: the browser stops reconnecting.
    again = Stream(event_streams.url, f"/api/orders/{order_id}/events", customer=customer)
    assert again.status == 200 and again.event("close").data == "ended"


def test_a_hold_by_anyone_reaches_the_flights_stream(stack, event_streams):
    stream = Stream(event_streams.url, "/api/flights/fl-101/events")
    assert stream.status == 200
    _order(stack, ["4C"])
    event = stream.event("seats-changed")
    assert event.json["seats"] == ["4C"]
    assert event.id == str(event.json["id"])


def test_another_sessions_order_is_404_as_its_page(stack, event_streams):
    _, order_id = _order(stack, ["5A"])
    stranger = stack.customer()
    stranger.get("/api/flights")  # a session of its own

    for path in (f"/api/orders/{order_id}/events", "/api/orders/ord-xyz/events"):
        refused = Stream(event_streams.url, path, customer=stranger)
        assert refused.status == 404
        assert refused.body()["error"] == "ORDER_NOT_FOUND"
        assert stranger.get(path).status == 404, "the web says the same"
    page = stranger.get(f"/orders/{order_id}/")
    assert page.status == 404
    assert Stream(event_streams.url, "/api/flights/fl-999/events").status == 404


def test_a_reconnect_with_last_event_id_misses_nothing(stack, event_streams):
    first = Stream(event_streams.url, "/api/flights/fl-101/events")
    _order(stack, ["6A"])
    seen = first.event("seats-changed").id
    first.close()

    _order(stack, ["6B"])  # while no stream is open

    behind = Stream(event_streams.url, "/api/flights/fl-101/events", Last_Event_ID=seen)
    assert behind.block().retry is not None
    caught_up = behind.event("seats-changed")
    assert int(caught_up.id) > int(seen), "the change made while away comes at once"
    # Up to date: nothing comes but the heartbeat (EVENTS_HEARTBEAT=1s in the tests).
    current = Stream(event_streams.url, f"/api/flights/fl-101/events?last={caught_up.id}")
    current.block()
    started = time.monotonic()
    heartbeat = current.block()
    assert heartbeat.comments == ["heartbeat"] and not heartbeat.data
    assert time.monotonic() - started < 5


def test_streams_are_capped_per_session_and_per_address(stack, event_streams):
    customer, order_id = _order(stack, ["7A"])
    path = f"/api/orders/{order_id}/events"
    address = {"X_Forwarded_For": "198.51.100.7"}
    open_streams = [Stream(event_streams.url, path, customer=customer, **address) for _ in range(3)]
    assert [s.status for s in open_streams] == [200, 200, 200]

    refused = Stream(event_streams.url, path, customer=customer, **address)
    assert refused.status == 429
    assert refused.body()["error"] == "TOO_MANY_STREAMS"
    assert int(refused.headers["Retry-After"]) >= 1

    open_streams.pop().close()  # a page closed: its stream stops counting
    wait_for(
        lambda: Stream(event_streams.url, path, customer=customer, **address).status == 200,
        timeout=10,
        what="a stream to open again once one closed",
    )

    # Per address, across sessions (no session at all on a seat map): 20 in the tests.
    other = {"X_Forwarded_For": "198.51.100.8"}
    maps = [Stream(event_streams.url, "/api/flights/fl-202/events", **other) for _ in range(20)]
    assert all(s.status == 200 for s in maps)
    over = Stream(event_streams.url, "/api/flights/fl-202/events", **other)
    assert over.status == 429 and over.body()["error"] == "TOO_MANY_STREAMS"
    elsewhere = Stream(event_streams.url, "/api/flights/fl-202/events", X_Forwarded_For="198.51.100.9")
    assert elsewhere.status == 200, "another address is not counted with it"


def test_the_web_itself_answers_a_stream_204_so_the_browser_stops_and_polls(stack, event_streams):
    customer, order_id = _order(stack, ["8A"])
    assert customer.get(f"/api/orders/{order_id}/events").status == 204
    assert customer.get("/api/flights/fl-101/events").status == 204


def test_the_pages_open_their_streams_and_keep_their_poll(stack, event_streams, settings):
    customer, order_id = _order(stack, ["9A"])
    page = customer.get(f"/orders/{order_id}/").text
    connect = re.search(r'sse-connect="([^"]+)"', page)
    assert connect, "the order page opens its stream"
    wanted = rf"http://[a-z0-9.]+:{event_streams.port}/api/orders/{order_id}/events\?last=\d+-\d+"
    assert re.fullmatch(wanted, connect.group(1)), connect.group(1)
    # The wrapper that opens the stream hears its events (no swap replaces it) and has the live
    # fragment fetch itself ("pushed", static/js/booking.js), which still polls every 2 s.
    assert 'hx-trigger="sse:order-changed, sse:seats-changed" data-pushes-to="order-live"' in page
    assert re.search(r'id="order-live"[^>]*hx-trigger="every 2s, pushed"', page)
    seat_map = customer.get("/flights/fl-101/").text
    assert f":{event_streams.port}/api/flights/fl-101/events?last=" in seat_map
    assert 'hx-trigger="sse:seats-changed" data-pushes-to="seat-map"' in seat_map
    assert re.search(r'id="seat-map"[^>]*hx-trigger="every 2s, pushed"', seat_map)
    # The stream takes the page's origin (another port of the same host) with its cookies.
    origin = stack.url.replace("127.0.0.1", "localhost")
    cross = Stream(
        event_streams.url.replace("127.0.0.1", "localhost"),
        f"/api/orders/{order_id}/events",
        customer=customer,
        Origin=origin,
    )
    assert cross.status == 200
    assert cross.headers["Access-Control-Allow-Origin"] == origin
    assert cross.headers["Access-Control-Allow-Credentials"] == "true"
    foreign = Stream(event_streams.url, "/api/flights/fl-101/events", Origin="https://evil.example")
    assert "Access-Control-Allow-Origin" not in foreign.headers

    settings.EVENTS = False
    assert "sse-connect" not in customer.get(f"/orders/{order_id}/").text
    assert "sse-connect" not in customer.get("/flights/fl-101/").text


def test_the_streams_server_counts_streams_events_and_their_delay(stack, event_streams):
    def scrape() -> str:
        return _scrape(event_streams.metrics_url)

    def sample(text: str, name: str) -> float:
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    before = scrape()
    stream = Stream(event_streams.url, "/api/flights/fl-303/events")
    wait_for(lambda: sample(scrape(), 'booking_streams_open{kind="flight"}') >= 1, what="the open stream")
    _order(stack, ["2A"], flight="fl-303")
    stream.event("seats-changed")
    after = wait_for(
        lambda: (
            (t := scrape())
            and sample(t, 'booking_events_delivered_total{kind="flight"}')
            > sample(before, 'booking_events_delivered_total{kind="flight"}')
            and t
        ),
        what="the delivery counted",
    )
    assert sample(after, 'booking_event_delivery_seconds_count{kind="flight"}') >= 1
    stream.close()
    wait_for(
        lambda: sample(scrape(), 'booking_streams_open{kind="flight"}') == 0,
        timeout=10,
        what="the closed stream no longer counted",
    )


def test_the_open_streams_carry_on_through_a_redis_restart_and_miss_nothing(
    stack, own_redis, settings, tmp_path
):
    """Redis stopped for a few seconds and back, empty: each open stream is told to fetch again
    (whatever changed meanwhile went unpublished, or unheard), and hears the changes after it."""
    url = f"redis://{own_redis.address}/0"
    settings.CACHES = {**settings.CACHES, "holds": {**settings.CACHES["holds"], "LOCATION": url}}
    server = start_events_server({**stack.worker.env, **EVENTS_ENV, "REDIS_URL": url}, tmp_path)
    try:
        stream = Stream(server.url, "/api/flights/fl-404/events")
        assert stream.status == 200
        events.publish(events.FLIGHT, "fl-404", {"seats": ["3A"]})
        assert stream.event("seats-changed").json["seats"] == ["3A"]

        own_redis.stop()
        lost = b"event subscription lost"  # the streams' process noticed; it keeps trying
        wait_for(lambda: lost in server.log.read_bytes(), what="the streams' process to notice")
        own_redis.start()

        resync = stream.event("seats-changed")
        assert resync.json == {"resync": True}, "told to fetch again: a change may have gone by"
        wait_for(lambda: events.publish(events.FLIGHT, "fl-404", {"seats": ["4B"]}), what="Redis to answer")
        assert stream.event("seats-changed").json["seats"] == ["4B"], "subscribed again: heard"
    finally:
        server.process.terminate()
        server.process.wait(timeout=30)

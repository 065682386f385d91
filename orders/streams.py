"""Event streams (server-sent events): an order's changes for its page, a flight's seat changes for
its map (docs/API.md, "Event streams"; docs/ARCHITECTURE.md, "Changes pushed").

Served by the streams' own ASGI process (``python -m booking_site.events_server``, uvicorn), never
by gunicorn's sync workers, which a stream would hold for as long as its page stays open: under
WSGI (gunicorn, the test server) the endpoints check what they check, then answer 204, which tells
a browser's ``EventSource`` not to reconnect (the page's poll carries on).

Each stream, in the browser's ``EventSource`` format:

- ``retry:`` first (``EVENTS_RETRY``), then a comment, so that the connection is seen open;
- one event per change, ``event: order-changed`` or ``event: seats-changed``, its ``id:`` the
  entity's sequence (``common.events``) and its data the published change. A reconnect sends the
  last id it saw (``Last-Event-ID``, or ``?last=`` from the page, which knows the sequence it was
  rendered at): when the sequence has moved on since, an event comes at once. The event only says
  "changed": the page fetches its fragment, as its 2-second poll does;
- a comment every ``EVENTS_HEARTBEAT``, so that proxies keep an idle stream open;
- for an order that has ended, ``event: close`` and the end of the stream (the page's
  ``sse-close`` stops the browser reconnecting).

An order's stream is only for the session that owns the order (404 otherwise, as its page);
streams open at once are capped per session and per client address (429 ``TOO_MANY_STREAMS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from redis.exceptions import RedisError

from common import clients, events, inputs, metrics, tracing
from common.api import error
from common.errors import ErrorCode
from flights.models import Flight
from orders import ownership
from orders.models import Order
from orders.workflow_contract import TERMINAL_STATES, State

R = TypeVar("R", bound=HttpResponseBase)
logger = logging.getLogger(__name__)
ORDER_EVENT = "order-changed"
FLIGHT_EVENT = "seats-changed"
CLOSE_EVENT = "close"
FINAL_STATES = {state.value for state in TERMINAL_STATES}

# KEYS: the address's streams, then the session's (if any): sorted sets of stream ids scored by
# when each lapses (a stream refreshes its own at every heartbeat, so that one whose process died
# stops counting). ARGV: now, lapse, stream id, address cap, session cap. Returns 0 (counted), 1
# (the address's cap) or 2 (the session's).
_OPEN = """
local now = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do redis.call('ZREMRANGEBYSCORE', key, '-inf', now) end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 1 end
if #KEYS == 2 and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 2 end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[2], ARGV[3])
  redis.call('PEXPIREAT', key, math.floor(tonumber(ARGV[2]) * 1000))
end
return 0
"""
CAPS = {1: "address", 2: "session"}


def events_url(request: HttpRequest, kind: str, ident: str, *, flight_id: str = "") -> str:
    """Where a page opens the stream of what it shows ("" when streams are off): its path, on the
    page's origin or on ``EVENTS_PUBLIC_PORT`` of its host, with the sequence the page was
    rendered at."""
    if not settings.EVENTS:
        return ""
    name = "api:order-events" if kind == events.ORDER else "api:flight-events"
    url = reverse(name, args=[ident])
    if settings.EVENTS_PUBLIC_PORT:
        host = urlsplit(f"//{request.get_host()}").hostname or "localhost"
        host = f"[{host}]" if ":" in host else host
        url = f"{request.scheme}://{host}:{settings.EVENTS_PUBLIC_PORT}{url}"
    watched = [(kind, ident), *([(events.FLIGHT, flight_id)] if flight_id else [])]
    seqs = [events.sequence(k, i) for k, i in watched]
    return url if None in seqs else f"{url}?last={'-'.join(str(seq) for seq in seqs)}"


@dataclass(frozen=True)
class Watcher:
    address: str
    session: str | None


def _watcher(request: HttpRequest) -> Watcher:
    return Watcher(address=clients.client_address(request), session=request.session.session_key)


def _order_for(request: HttpRequest, order_id: str) -> tuple[Watcher, str, bool]:
    """The caller, the order's flight and whether the order has ended; ``Http404`` when it is not
    this session's."""
    if not ownership.owns(request, order_id):
        raise Http404("Order not found")
    found = Order.objects.filter(id=order_id).values_list("flight_id", "state").first()
    if found is None:
        raise Http404("Order not found")
    flight_id, state = found
    return _watcher(request), flight_id, State(state) in TERMINAL_STATES


def _flight_for(request: HttpRequest, flight_id: str) -> Watcher:
    if not Flight.objects.filter(id=flight_id).exists():
        raise Http404("Flight not found")
    return _watcher(request)


# CSRF-exempt as the API's views are (common.api.api_view): they change nothing, and a method
# other than GET gets 405 with Allow rather than the CSRF check's 403.
@csrf_exempt
async def order_events(request: HttpRequest, order_id: str) -> HttpResponseBase:
    """GET /api/orders/{id}/events: the order's changes, and its flight's seats (its page shows
    the seat map too), for its owner's session only."""
    if request.method != "GET":
        return _method_not_allowed()
    try:
        watcher, flight_id, ended = await sync_to_async(_order_for)(request, order_id)
    except Http404:
        return error(ErrorCode.ORDER_NOT_FOUND, f"Order {inputs.echoed(order_id)} not found")
    watched = [(events.ORDER, order_id), (events.FLIGHT, flight_id)]
    return await _respond(request, watched, watcher, ended=ended)


@csrf_exempt
async def flight_events(request: HttpRequest, flight_id: str) -> HttpResponseBase:
    """GET /api/flights/{id}/events: the flight's seats held, released and sold, for its map."""
    if request.method != "GET":
        return _method_not_allowed()
    try:
        watcher = await sync_to_async(_flight_for)(request, flight_id)
    except Http404:
        return error(ErrorCode.FLIGHT_NOT_FOUND, f"Flight {flight_id} not found", status=404)
    return await _respond(request, [(events.FLIGHT, flight_id)], watcher, ended=False)


# The contract test reads which methods each endpoint takes.
order_events.allowed_methods = ("GET",)  # type: ignore[attr-defined]
flight_events.allowed_methods = ("GET",)  # type: ignore[attr-defined]


def _method_not_allowed() -> JsonResponse:
    reply = error(ErrorCode.METHOD_NOT_ALLOWED, "Use GET here")
    reply["Allow"] = "GET"
    return reply


Watched = list[tuple[str, str]]  # (kind, id) of each entity a stream follows


def _last_ids(request: HttpRequest, watched: Watched) -> list[str] | None:
    """The sequences the client has seen (``Last-Event-ID``, else ``?last=``), one per entity."""
    given = request.headers.get("Last-Event-ID") or request.GET.get("last") or ""
    ids = given.split("-")
    if len(given) > 64 or len(ids) != len(watched) or not all(i.isdigit() for i in ids):
        return None
    return ids


async def _respond(
    request: HttpRequest, watched: Watched, watcher: Watcher, *, ended: bool
) -> HttpResponseBase:
    if not isinstance(request, ASGIRequest) or not settings.EVENTS:
        return _cors(request, HttpResponse(status=204))  # not served here: the page polls
    last = _last_ids(request, watched)
    hub = events.hub()
    stream_id = uuid.uuid4().hex
    try:
        refused = await _open(hub, watcher, stream_id)
    except (RedisError, OSError) as failure:
        logger.warning("event stream refused: Redis cannot be reached (%s)", failure)
        message = "Live updates are unavailable right now: the page polls."
        return _cors(request, error(ErrorCode.SERVICE_UNAVAILABLE, message))
    if refused:
        metrics.STREAMS_REFUSED.labels(cap=refused).inc()
        cap = (
            settings.EVENTS_MAX_STREAMS_PER_SESSION
            if refused == "session"
            else settings.EVENTS_MAX_STREAMS_PER_ADDRESS
        )
        reply = error(
            ErrorCode.TOO_MANY_STREAMS,
            f"Too many live-update streams open from your {refused} (at most {cap}): close a page, "
            "or let this one poll.",
        )
        reply["Retry-After"] = str(max(1, round(settings.EVENTS_HEARTBEAT.total_seconds())))
        return _cors(request, reply)
    stream = _stream(hub, watched, watcher, stream_id, last=last, ended=ended)
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache, no-transform"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return _cors(request, response)


def _keys(watcher: Watcher) -> list[str]:
    keys = [f"streams:address:{watcher.address}"]
    if watcher.session:
        keys.append(f"streams:session:{watcher.session}")
    return keys


def _lapse() -> float:
    return time.time() + 3 * settings.EVENTS_HEARTBEAT.total_seconds()


async def _open(hub: events.Hub, watcher: Watcher, stream_id: str) -> str | None:
    """Count the stream against its caps; the cap it is over (nothing counted then), or None."""
    if not settings.RATE_LIMITS:
        return None
    script = hub.redis.register_script(_OPEN)
    found = await script(
        keys=_keys(watcher),
        args=[
            time.time(),
            _lapse(),
            stream_id,
            settings.EVENTS_MAX_STREAMS_PER_ADDRESS,
            settings.EVENTS_MAX_STREAMS_PER_SESSION,
        ],
    )
    return CAPS.get(int(found))


async def _refresh(hub: events.Hub, watcher: Watcher, stream_id: str, *, close: bool = False) -> None:
    if not settings.RATE_LIMITS:
        return
    with contextlib.suppress(RedisError, OSError):
        for key in _keys(watcher):
            if close:
                await hub.redis.zrem(key, stream_id)
            else:
                await hub.redis.zadd(key, {stream_id: _lapse()}, xx=True)


EVENT_NAMES = {events.ORDER: ORDER_EVENT, events.FLIGHT: FLIGHT_EVENT}


def _event(name: str, ids: list[str], data: str) -> str:
    return f"event: {name}\nid: {'-'.join(ids)}\ndata: {data}\n\n"


async def _stream(
    hub: events.Hub,
    watched: Watched,
    watcher: Watcher,
    stream_id: str,
    *,
    last: list[str] | None,
    ended: bool,
) -> AsyncIterator[str]:
    """The stream's text. Its ``id:`` is each watched entity's sequence, joined by "-"."""
    kind = watched[0][0]
    names = [events.channel(k, i) for k, i in watched]
    heartbeat = settings.EVENTS_HEARTBEAT.total_seconds()
    metrics.STREAMS_OPEN.labels(kind=kind).inc()
    try:
        async with hub.subscription(*names) as queue:  # before the sequences are read: no gap
            ids = [await hub.sequence(k, i) for k, i in watched]
            yield f"retry: {round(settings.EVENTS_RETRY.total_seconds() * 1000)}\n: open\n\n"
            if last is not None:  # changed since the page was rendered, or since the last event
                for (changed_kind, _), seen, now in zip(watched, last, ids, strict=True):
                    if seen != now:
                        since = {"since": "-".join(last), "resync": True}
                        yield _event(EVENT_NAMES[changed_kind], ids, json.dumps(since))
                        break
            if ended:
                yield f"event: {CLOSE_EVENT}\ndata: ended\n\n"
                return
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=heartbeat)
                except TimeoutError:
                    yield ": heartbeat\n\n"
                    await _refresh(hub, watcher, stream_id)
                    continue
                if event.channel:
                    position = names.index(event.channel)
                    ids[position] = event.id
                    changed_kind = watched[position][0]
                else:  # the subscription was lost for a while: anything may have changed
                    ids = [await hub.sequence(k, i) for k, i in watched]
                    changed_kind = kind
                traced = _traced(changed_kind, watched)
                delivered = events.tracer.start_span("events.deliver", attributes=traced)
                yield _event(EVENT_NAMES[changed_kind], ids, event.raw)
                metrics.EVENTS_DELIVERED.labels(kind=changed_kind).inc()
                if "at" in event.data:
                    delay = max(0.0, time.time() - float(event.data["at"]))
                    metrics.EVENT_DELIVERY_DELAY.labels(kind=changed_kind).observe(delay)
                    delivered.set_attribute("events.delay_ms", round(delay * 1000, 1))
                delivered.set_attribute("events.sequence", "-".join(ids))
                delivered.end()
                if changed_kind == events.ORDER and event.data.get("state") in FINAL_STATES:
                    yield f"event: {CLOSE_EVENT}\ndata: ended\n\n"
                    return
    finally:
        metrics.STREAMS_OPEN.labels(kind=kind).dec()
        await _refresh(hub, watcher, stream_id, close=True)


def _traced(kind: str, watched: Watched) -> dict[str, str]:
    """A delivery's span attributes: what changed, and the order whose page it goes to (the
    trace of a booking is searched by its order id)."""
    attributes = {"events.kind": kind, "events.stream": watched[0][0]}
    if watched[0][0] == events.ORDER:
        attributes[tracing.ORDER_ID] = watched[0][1]
    return attributes


def _cors(request: HttpRequest, response: R) -> R:
    """A page of this host on another port (`make run`'s web, EVENTS_PUBLIC_PORT) may read the
    stream with its cookies; no other origin."""
    origin = request.headers.get("Origin")
    if not origin:
        return response
    page_host = urlsplit(origin).hostname
    own_host = urlsplit(f"//{request.get_host()}").hostname
    if page_host and page_host == own_host:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Credentials"] = "true"
        response["Vary"] = "Origin"
    return response

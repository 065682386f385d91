"""Changes pushed: every committed change of an order or of a flight's seats, published on Redis
pub/sub, and the subscriptions the event streams read (docs/ARCHITECTURE.md, "Changes pushed").

Publishing (sync, wherever a row or a hold changes): ``order_changed`` and ``flight_changed``
publish once the transaction commits (``transaction.on_commit``; at once outside one), on the
process's publishing thread, so that no writer waits for Redis (measured: ten publishes on a
booking's path cost it 8 % of the bookings a second on a busy machine). One Lua
script counts the change in the entity's sequence (``events:seq:<kind>:<id>``, a Redis counter)
and publishes ``{"id": <sequence>, "version": ..., "at": <commit time>}`` on
``events:<kind>:<id>`` in one step, so that a stream that reads the sequence after subscribing
misses nothing: the sequence is the ``id:`` of the stream's events, and a reconnect that sends
``Last-Event-ID`` gets an event at once when the sequence moved on meanwhile. An event says
only "changed": the page fetches its fragment as its poll does, so a lost or repeated event costs
at most a request. A publish that fails (Redis away) is logged and counted, never raised: the
page's 2-second poll still shows the change.

Subscribing (async, in the streams' ASGI process): one pub/sub connection per process, shared by
every stream (``Hub``); each stream gets a queue of the events of its channel.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Any

from django.conf import settings
from django.db import transaction
from opentelemetry import context as trace_context
from opentelemetry import trace
from redis.exceptions import RedisError

from common import metrics

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

ORDER = "order"
FLIGHT = "flight"
KINDS = (ORDER, FLIGHT)
# A sequence outlives its last change by a day: a page left open longer polls anyway.
SEQUENCE_TTL_MS = 24 * 3600 * 1000

# KEYS: the sequence. ARGV: the channel, the payload's other fields (a JSON object without its
# opening brace), the sequence's TTL. Returns the new sequence.
_PUBLISH = """
local seq = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[1], '{"id":' .. seq .. ',' .. ARGV[2])
return seq
"""


def channel(kind: str, ident: str) -> str:
    return f"events:{kind}:{ident}"


def sequence_key(kind: str, ident: str) -> str:
    return f"events:seq:{kind}:{ident}"


def order_changed(order_id: str, *, version: int | None = None, state: str | None = None) -> None:
    """The order's row (or what its page shows of it) changed: publish once this commits."""
    fields: dict[str, Any] = {"version": version, "state": state}
    transaction.on_commit(lambda: publish_soon(ORDER, order_id, fields))


def flight_changed(flight_id: str, *, seats: list[str] | None = None) -> None:
    """Seats of the flight were held, released or sold: publish once this commits."""
    transaction.on_commit(lambda: publish_soon(FLIGHT, flight_id, {"seats": sorted(seats or [])}))


def publish(kind: str, ident: str, fields: dict[str, Any]) -> int | None:
    """Publish now; the new sequence, or None when Redis could not be reached (or ``EVENTS`` is
    off: nothing is published then)."""
    if not settings.EVENTS:
        return None
    sequences = _publish([(kind, ident, {**fields, "at": time.time()})])
    return sequences[0] if sequences else None


def publish_soon(kind: str, ident: str, fields: dict[str, Any]) -> None:
    """Publish in the background, stamped with the time now (the commit's): the writer (an
    activity, often a local one inside a workflow task) does not wait for Redis. One thread per
    process publishes in the order given, whatever has piled up in one round trip. A change whose
    publish is lost with its process shows at the page's next poll, as any unpublished one does."""
    if not settings.EVENTS:
        return
    # With the writer's trace context: the publish's span is a child of the writer's (an
    # activity's, carrying its order id), though another thread ends it.
    _publisher().put((kind, ident, {**fields, "at": time.time()}, trace_context.get_current()))


def flush(timeout: float = 2.0) -> bool:
    """Wait until everything handed to ``publish_soon`` so far was published (or failed)."""
    return _publisher().flush(timeout)


Change = tuple[str, str, dict[str, Any]]  # kind, id, the payload's fields
Handed = tuple[str, str, dict[str, Any], trace_context.Context]  # a change, and the writer's trace context


def _publish(changes: list[Change]) -> list[int]:
    """Publish these changes in one round trip; their new sequences ([] when Redis could not be
    reached: counted as failed, and logged)."""
    from django_redis import get_redis_connection

    try:
        redis = get_redis_connection("holds")
        script = redis.register_script(_PUBLISH)
        pipe = redis.pipeline(transaction=False) if len(changes) > 1 else None
        results = [
            script(
                keys=[sequence_key(kind, ident)],
                args=[channel(kind, ident), json.dumps(fields, separators=(",", ":"))[1:], SEQUENCE_TTL_MS],
                client=pipe,
            )
            for kind, ident, fields in changes
        ]
        if pipe is not None:
            results = pipe.execute()
    except RedisError as error:
        for kind, ident, _ in changes:
            logger.warning("change of %s %s not published (Redis: %s): the poll shows it", kind, ident, error)
            metrics.EVENTS_PUBLISHED.labels(kind=kind, outcome="failed").inc()
        return []
    for kind, _, _ in changes:
        metrics.EVENTS_PUBLISHED.labels(kind=kind, outcome="published").inc()
    return [int(seq) for seq in results]


class _Publisher:
    """The process's publishing thread (started on first use, again in a forked child)."""

    BATCH = 100

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._queue: SimpleQueue[Handed] = SimpleQueue()
        self._pending = 0
        self._done = threading.Condition()
        threading.Thread(target=self._run, name="events-publisher", daemon=True).start()

    def put(self, change: Handed) -> None:
        with self._done:
            self._pending += 1
        self._queue.put(change)

    def flush(self, timeout: float) -> bool:
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            with contextlib.suppress(Empty):
                while len(batch) < self.BATCH:
                    batch.append(self._queue.get_nowait())
            spans = [
                tracer.start_span(
                    "events.publish",
                    context=writer,
                    attributes={"events.kind": kind, "events.id": ident, "events.batch": len(batch)},
                )
                for kind, ident, _, writer in batch
            ]
            try:
                # The round trip (a Redis span) under the first change's span.
                with trace.use_span(spans[0], end_on_exit=False):
                    sequences = _publish([(kind, ident, fields) for kind, ident, fields, _ in batch])
                for span, sequence in zip(spans, sequences, strict=False):
                    span.set_attribute("events.sequence", sequence)
            except Exception:  # never let the thread die: the next changes still go out
                logger.exception("publishing %d changes failed: the poll shows them", len(batch))
            for span in spans:
                span.end()
            with self._done:
                self._pending -= len(batch)
                self._done.notify_all()


_publisher_of_process: _Publisher | None = None
_publisher_lock = threading.Lock()


def _publisher() -> _Publisher:
    global _publisher_of_process
    with _publisher_lock:
        if _publisher_of_process is None or _publisher_of_process.pid != os.getpid():
            _publisher_of_process = _Publisher()
        return _publisher_of_process


@atexit.register
def _flush_at_exit() -> None:
    """What is queued goes out before the process ends (this process's own thread: a forked
    child inherits its parent's publisher, not its thread)."""
    publisher = _publisher_of_process
    if publisher is not None and publisher.pid == os.getpid():
        publisher.flush(2.0)


def sequence(kind: str, ident: str) -> str | None:
    """The entity's sequence now ("0" before its first change), None when Redis is away: what a
    page rendered now has seen, so that its stream sends what comes after."""
    from django_redis import get_redis_connection

    try:
        value = get_redis_connection("holds").get(sequence_key(kind, ident))
    except RedisError:
        return None
    return value.decode() if isinstance(value, bytes) else str(value or "0")


# --- Subscribing (async) -------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    channel: str  # "" for a resync after a lost connection (every channel may have changed)
    id: str  # the entity's sequence, as text
    data: dict[str, Any]
    raw: str


RESYNC = Event(channel="", id="", data={"resync": True}, raw='{"resync":true}')


class Hub:
    """One Redis pub/sub connection for the whole process, fanned out to the streams' queues.

    A lost connection is made again (every second, until Redis answers) and every channel
    subscribed again; each stream then gets ``RESYNC``, since a change may have gone by meanwhile."""

    QUEUE_SIZE = 64  # a stream this far behind gets a resync instead (the page refetches)

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(url, health_check_interval=30)
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._queues: dict[str, set[asyncio.Queue[Event]]] = defaultdict(set)
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    @property
    def redis(self) -> Any:
        """The hub's own client (its connection pool), for the streams' other commands."""
        return self._redis

    async def sequence(self, kind: str, ident: str) -> str:
        value = await self._redis.get(sequence_key(kind, ident))
        if value is None:
            return "0"
        return value.decode() if isinstance(value, bytes) else str(value)

    @contextlib.asynccontextmanager
    async def subscription(self, *names: str) -> AsyncIterator[asyncio.Queue[Event]]:
        """One queue for the events of these channels (``channel(kind, id)``), while inside.
        Raises RedisError (nothing kept) when a channel new to the process cannot be subscribed."""
        queue: asyncio.Queue[Event] = asyncio.Queue(self.QUEUE_SIZE)
        async with self._lock:
            new = [name for name in names if name not in self._queues]
            if new:
                await self._pubsub.subscribe(*new)
                self._subscribed.set()
            for name in names:
                self._queues[name].add(queue)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="events-hub")
        try:
            yield queue
        finally:
            async with self._lock:
                gone = []
                for name in names:
                    self._queues[name].discard(queue)
                    if not self._queues[name]:
                        del self._queues[name]
                        gone.append(name)
                if gone:
                    with contextlib.suppress(RedisError, OSError):
                        await self._pubsub.unsubscribe(*gone)

    async def _read(self) -> None:
        while True:
            try:
                if not self._pubsub.subscribed:
                    self._subscribed.clear()
                    await self._subscribed.wait()
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as error:
                logger.warning("event subscription lost (%s): subscribing again", error)
                await self._resubscribe()
                continue
            if message is None or message.get("type") != "message":
                continue
            name = message["channel"].decode()
            raw = message["data"].decode()
            try:
                data = json.loads(raw)
            except ValueError:
                continue
            event = Event(channel=name, id=str(data.get("id", "")), data=data, raw=raw)
            for queue in list(self._queues.get(name, ())):
                _offer(queue, event)

    async def _resubscribe(self) -> None:
        """Subscribe every channel again, every second until Redis answers; only then tell each
        stream to resync: its page's fetch comes after the subscription is back, so that nothing
        committed after that fetch goes unheard."""
        while True:
            await asyncio.sleep(1.0)
            async with self._lock:
                try:
                    await self._pubsub.reset()
                    if self._queues:
                        await self._pubsub.subscribe(*self._queues)
                        self._subscribed.set()
                except (RedisError, OSError) as error:
                    logger.debug("event subscription not back yet (%s)", error)
                    continue
                for queues in self._queues.values():
                    for queue in queues:
                        _offer(queue, RESYNC)
                logger.info("event subscription back: %d channels", len(self._queues))
                return

    @property
    def channels(self) -> int:
        return len(self._queues)


def _offer(queue: asyncio.Queue[Event], event: Event) -> None:
    try:
        queue.put_nowait(event)
    except asyncio.QueueFull:  # far behind: whatever it missed, one fetch catches up
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                queue.get_nowait()
        queue.put_nowait(RESYNC)


_hubs: dict[int, Hub] = {}


def hub() -> Hub:
    """This event loop's hub (a process has one loop under uvicorn)."""
    loop = id(asyncio.get_running_loop())
    if loop not in _hubs:
        _hubs[loop] = Hub(settings.REDIS_URL)
    return _hubs[loop]

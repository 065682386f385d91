"""The one Temporal client of a process, and how sync Django code uses it.

The client belongs to the event loop it was created on and must not be shared across loops or
driven from several threads (sdk-python #147). Views are sync (gunicorn threads), so one daemon
thread per process runs an event loop that owns the client; ``call`` hands it a coroutine and
waits for the answer. The thread and the client are made lazily, after gunicorn forks.

Two different failures come out of ``call``, and they must never be confused:

- ``TemporalUnreachable``: no connection to Temporal could be made, so the operation was never
  sent. Nothing happened, and nothing will.
- ``TimeoutError`` (and the SDK's RPC timeouts and transport errors): the operation was sent, but
  its answer did not come in time. It may well be carried out later.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TypeVar

from django.conf import settings
from opentelemetry import context as otel_context
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import Runtime
from temporalio.service import RetryConfig

from common import temporal_connection

T = TypeVar("T")
logger = logging.getLogger(__name__)


# A customer waiting on a page should hear "unavailable" within seconds, not after the SDK's
# default ten seconds of retries; the worker keeps the default and simply waits Temporal out.
INTERACTIVE_RETRIES = RetryConfig(max_interval_millis=1000, max_elapsed_time_millis=3000)
CONNECT_TIMEOUT_SECONDS = 5.0


class TemporalUnreachable(Exception):
    """No connection to Temporal: the operation was not sent."""


class TemporalMisconfigured(RuntimeError):
    """Temporal answered, but refused our TLS: a setting is wrong (the message names it)."""


async def connect(*, retry_config: RetryConfig | None = None, runtime: Runtime | None = None) -> Client:
    """A new client from settings (the worker and async code use this directly). ``runtime``:
    the worker's, which exports the SDK's metrics; by default the SDK's own.

    With Temporal's tracing interceptor, which a worker built on this client uses too: each call,
    workflow, update and activity becomes a span (a no-op while tracing is off: common.tracing)."""
    connection = _connection()
    try:
        return await temporal_connection.connect(
            connection,
            keys=settings.PAYLOAD_KEYS,
            retry_config=retry_config,
            interceptors=[TracingInterceptor()],
            runtime=runtime,
        )
    except RuntimeError as error:
        # A TLS refusal will not mend by retrying: say which setting to fix, in one line.
        if (reason := temporal_connection.explain(error, connection)) is not None:
            raise TemporalMisconfigured(reason) from error
        raise


def _connection() -> temporal_connection.TemporalConnection:
    """The settings' connection, at the address and namespace the settings hold now (tests and
    tools may point TEMPORAL_HOST elsewhere while the process runs)."""
    return dataclasses.replace(
        settings.TEMPORAL_CONNECTION, address=settings.TEMPORAL_HOST, namespace=settings.TEMPORAL_NAMESPACE
    )


class _ClientThread:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._client: Client | None = None
        self._target: temporal_connection.TemporalConnection | None = None
        self._connecting = asyncio.Lock()
        thread = threading.Thread(target=self.loop.run_forever, name="temporal-client", daemon=True)
        thread.start()

    async def client(self) -> Client:
        # Keyed by where it points, so that a changed TEMPORAL_HOST (tests, a reload) reconnects.
        target = _connection()
        async with self._connecting:
            if self._client is None or self._target != target:
                try:
                    self._client = await asyncio.wait_for(
                        connect(retry_config=INTERACTIVE_RETRIES), CONNECT_TIMEOUT_SECONDS
                    )
                except (RuntimeError, TimeoutError) as error:
                    raise TemporalUnreachable(f"{settings.TEMPORAL_HOST}: {error}") from error
                self._target = target
            return self._client

    async def run(
        self, operation: Callable[[Client], Awaitable[T]], seconds: float, trace: otel_context.Context
    ) -> T:
        # The caller's trace (its HTTP request's span) goes on in this thread: the client's
        # spans are its children.
        token = otel_context.attach(trace)
        try:
            client = await self.client()  # TemporalUnreachable: nothing was sent
            async with asyncio.timeout(seconds):  # TimeoutError: it was sent, not answered
                return await operation(client)
        finally:
            otel_context.detach(token)


_thread: _ClientThread | None = None
_thread_lock = threading.Lock()


def _client_thread() -> _ClientThread:
    global _thread
    with _thread_lock:
        if _thread is None or _thread.pid != os.getpid():
            _thread = _ClientThread()
        return _thread


def answer_timeout() -> float:
    """How long a customer's request waits for Temporal's answer, in seconds."""
    return settings.TEMPORAL_ANSWER_TIMEOUT.total_seconds()


def call(operation: Callable[[Client], Awaitable[T]], *, timeout: float | None = None) -> T:
    """Run ``operation(client)`` on the client's loop and return its result (sync callers).

    Raises what the operation raises; ``TemporalUnreachable`` when no connection could be made
    (nothing was sent); ``TimeoutError`` when the answer did not come within ``timeout``
    seconds (default: TEMPORAL_ANSWER_TIMEOUT), though the operation may still be carried out.
    """
    worker = _client_thread()
    limit = timeout if timeout is not None else answer_timeout()
    trace = otel_context.get_current()
    future = asyncio.run_coroutine_threadsafe(worker.run(operation, limit, trace), worker.loop)
    try:
        # The coroutine bounds itself; this only guards against a loop that stopped answering.
        return future.result(timeout=limit + CONNECT_TIMEOUT_SECONDS + 2)
    except TimeoutError:
        future.cancel()
        raise


def connect_soon() -> None:
    """Start connecting this process's client now, without waiting for it.

    gunicorn calls this as each worker process starts, so that the first request does not pay
    for the connection. A Temporal that cannot be reached costs nothing here: the next ``call``
    tries again, and ``/healthz`` reports it.
    """
    worker = _client_thread()
    connecting = asyncio.run_coroutine_threadsafe(worker.client(), worker.loop)
    connecting.add_done_callback(_report_connect_failure)


def _report_connect_failure(connecting: Future[Client]) -> None:
    if not connecting.cancelled() and (error := connecting.exception()) is not None:
        if isinstance(error.__cause__, TemporalMisconfigured):  # no retry mends it: say so loudly
            logger.error("configuration error: %s", error.__cause__)
            return
        logger.warning("Temporal at %s not reachable at start: %s", settings.TEMPORAL_HOST, error)

"""Traces: one booking followed from the HTTP request, through Temporal's client, the workflow and
its first-hold update, to the hold activity and its Redis calls, the order id on every span.

In this process: the view through Django's test client, and a worker on the same tracer provider
(an in-memory exporter), both on the suite's Temporal dev server, PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from django.db import connections
from django.test import Client
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from common import events, tracing
from common.temporal_client import connect
from flights.services import seed_demo_flights
from temporal_worker.worker import build_worker
from tests.conftest import EVENTS_ENV, ROOT, SHORT_TIMEOUTS, WorkerProcess, start_events_server
from tests.test_streams import Stream

MEMORY = InMemorySpanExporter()


@pytest.fixture(scope="module")
def traced() -> Iterator[InMemorySpanExporter]:
    """Tracing as the web and the worker set it up, exporting to memory (once per process: a
    tracer provider cannot be replaced)."""
    tracing.setup(service="booking-test", endpoint="", exporters=[MEMORY], batch=False)
    yield MEMORY
    # The provider stays (it cannot be replaced); the rest of the suite keeps no spans.
    MEMORY.shutdown()
    for instrumentor in (DjangoInstrumentor(), PsycopgInstrumentor(), RedisInstrumentor()):
        instrumentor.uninstrument()


class InProcessWorker:
    """The worker of ``build_worker``, on its own task queue, in a thread of this process."""

    def __init__(self, task_queue: str) -> None:
        self.task_queue = task_queue
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.serve(),), daemon=True)

    async def serve(self) -> None:
        self.stop = asyncio.Event()
        client = await connect()
        async with build_worker(client, task_queue=self.task_queue):
            self.ready.set()
            await self.stop.wait()

    def __enter__(self) -> InProcessWorker:
        self.thread.start()
        assert self.ready.wait(timeout=30), "the in-process worker did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.stop is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=30)


@pytest.fixture
def worker_in_process(
    transactional_db: None, clean_redis: None, settings: object, traced: InMemorySpanExporter
) -> Iterator[InProcessWorker]:
    for name, value in SHORT_TIMEOUTS.items():
        setattr(settings, name, value)
    # The worker's activity threads close their connections after each activity (as the
    # separate worker process's would at exit), so that the test database can be dropped.
    database = connections.settings["default"]
    kept_for = database["CONN_MAX_AGE"]
    database["CONN_MAX_AGE"] = 0
    queue = f"booking-trace-{uuid.uuid4().hex[:8]}"
    settings.TEMPORAL_TASK_QUEUE = queue  # type: ignore[attr-defined]
    seed_demo_flights()
    try:
        with InProcessWorker(queue) as worker:
            traced.clear()
            yield worker
    finally:
        database["CONN_MAX_AGE"] = kept_for


class Trace:
    """The finished spans of one trace, and their parent links (by span context ids)."""

    def __init__(self, spans: list[ReadableSpan]) -> None:
        self.spans = spans

    def named(self, name: str) -> ReadableSpan:
        found = [span for span in self.spans if span.name == name]
        assert len(found) == 1, f"{len(found)} spans named {name!r}:\n{self}"
        return found[0]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        return [span for span in self.spans if span.parent and span.parent.span_id == parent.context.span_id]

    def under(self, parent: ReadableSpan) -> list[ReadableSpan]:
        found = []
        for child in self.children(parent):
            found += [child, *self.under(child)]
        return found

    def __str__(self) -> str:
        roots = [span for span in self.spans if span.parent is None]
        return "\n".join(self._lines(roots, 0))

    def _lines(self, spans: list[ReadableSpan], depth: int) -> list[str]:
        lines = []
        for span in spans:
            lines.append("  " * depth + f"{span.name} {(span.attributes or {}).get(tracing.ORDER_ID)}")
            lines += self._lines(self.children(span), depth + 1)
        return lines


def _is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    return child.parent is not None and child.parent.span_id == parent.context.span_id


def test_one_booking_is_one_trace_from_the_request_to_the_hold_with_its_order_id(
    worker_in_process: InProcessWorker, traced: InMemorySpanExporter
) -> None:
    response = Client().post(
        "/api/orders", {"flightId": "fl-101", "seats": ["12A"]}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    order_id = response.json()["orderId"]

    # The first hold ran (a local activity) before the update answered, and the request's span
    # ended with the response: every span of the booking so far is finished, once the hold's
    # changes are published (by the publishing thread, after the hold's commit).
    assert events.flush()
    finished = traced.get_finished_spans()
    request = next(s for s in finished if s.kind is SpanKind.SERVER and s.name == "POST api/orders")
    booking = Trace([s for s in finished if s.context.trace_id == request.context.trace_id])
    assert request.parent is None
    update_with_start = booking.named("StartUpdateWithStartWorkflow:BookingWorkflow")
    run_workflow = booking.named("RunWorkflow:BookingWorkflow")
    first_hold = booking.named("HandleUpdate:hold_seats")
    start_hold = booking.named("StartActivity:hold_seats")
    run_hold = booking.named("RunActivity:hold_seats")
    assert _is_child(update_with_start, request), booking
    assert update_with_start.kind is SpanKind.CLIENT
    assert _is_child(run_workflow, update_with_start), booking
    assert _is_child(first_hold, update_with_start), booking
    assert _is_child(start_hold, update_with_start), booking
    assert _is_child(run_hold, start_hold), booking
    # The hold's own writes, to Redis (the Lua acquire) and PostgreSQL (the order's row).
    under_hold = booking.under(run_hold)
    assert any(s.name == "EVALSHA" for s in under_hold), booking
    assert any(
        (s.attributes or {}).get("db.system") == "postgresql" and s.name == "UPDATE" for s in under_hold
    ), booking

    # The hold's changes, published for the pages once committed: under the hold, though the
    # publishing thread sends them, each with its Redis round trip under it.
    published = [s for s in under_hold if s.name == "events.publish"]
    assert sorted((s.attributes or {})["events.kind"] for s in published) == ["flight", "order"], booking
    assert any("EVALSHA" in child.name for s in published for child in booking.under(s)), booking

    # The order id: on the request (from the moment it is known), and on every span from the
    # Temporal call down, in the web and in the worker.
    named = [request, update_with_start, *booking.under(update_with_start)]
    missing = [s.name for s in named if (s.attributes or {}).get(tracing.ORDER_ID) != order_id]
    assert not missing, f"spans without {tracing.ORDER_ID}={order_id}: {missing}\n{booking}"


class Collector(TraceServiceServicer):
    """A stand-in for Jaeger's OTLP/gRPC port: keeps what it is sent."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []

    def Export(self, request: ExportTraceServiceRequest, context: object) -> ExportTraceServiceResponse:
        self.requests.append(request)
        return ExportTraceServiceResponse()

    def services(self) -> set[str]:
        return {
            attribute.value.string_value
            for request in self.requests
            for resource_spans in request.resource_spans
            for attribute in resource_spans.resource.attributes
            if attribute.key == "service.name"
        }


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    kept = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    add_TraceServiceServicer_to_server(kept, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield kept, port
    server.stop(grace=None)


# What the web process does as gunicorn loads it (booking_site/wsgi.py), then one request's worth
# of spans, sent before it exits.
WEB_PROCESS = """
from booking_site import wsgi
from django.conf import settings
from opentelemetry import trace
with trace.get_tracer("test").start_as_current_span("a request"):
    pass
provider = trace.get_tracer_provider()
print(type(provider).__name__, any("opentelemetry" in m for m in settings.MIDDLEWARE))
getattr(provider, "shutdown", lambda: None)()
"""


def _web_process(endpoint: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    done = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_the_web_process_exports_over_otlp_when_an_endpoint_is_set(collector):
    kept, port = collector

    assert _web_process(f"http://127.0.0.1:{port}") == "TracerProvider True"
    assert kept.services() == {"booking-web"}


def test_without_an_endpoint_nothing_is_installed_and_nothing_sent(collector):
    kept, _ = collector

    assert _web_process(None) == "ProxyTracerProvider False"
    assert kept.requests == []


def test_the_worker_process_exports_its_spans_with_the_order_id_and_sends_them_before_it_exits(
    stack, collector, settings
):
    kept, port = collector
    worker = WorkerProcess(
        env={
            **stack.worker.env,
            "TEMPORAL_TASK_QUEUE": f"booking-trace-{uuid.uuid4().hex[:8]}",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        },
        log=stack.worker.log.with_name("traced-worker.log"),
    )
    worker.log.write_bytes(b"")
    worker.start()
    settings.TEMPORAL_TASK_QUEUE = worker.env["TEMPORAL_TASK_QUEUE"]  # the web starts orders on its queue
    try:
        order_id = stack.customer().create_order("fl-101", ["14C"]).json["orderId"]
    finally:
        assert worker.stop() == 0  # a clean stop sends what the exporter still buffers

    spans = [
        (span.name, {a.key: a.value.string_value for a in span.attributes})
        for request in kept.requests
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    assert kept.services() == {"booking-worker"}
    hold = [attributes for name, attributes in spans if name == "RunActivity:hold_seats"]
    assert [attributes.get(tracing.ORDER_ID) for attributes in hold] == [order_id]
    redis_under_it = [a for name, a in spans if name == "EVALSHA" and a.get(tracing.ORDER_ID) == order_id]
    assert redis_under_it, spans


def test_the_streams_process_exports_each_delivery_with_its_order_id_and_delay(stack, collector, tmp_path):
    kept, port = collector
    env = {**stack.worker.env, **EVENTS_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    server = start_events_server(env, tmp_path)
    customer = stack.customer()
    order_id = customer.create_order("fl-101", ["15C"]).json["orderId"]
    try:
        stream = Stream(server.url, f"/api/orders/{order_id}/events", customer=customer)
        assert stream.status == 200
        assert customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": "00000"}).status == 202
        assert stream.event("order-changed").json["state"] == "PAYMENT_PENDING"
        stream.close()
    finally:
        server.process.terminate()  # a clean stop sends what the exporter still buffers
        server.process.wait(timeout=30)

    deliveries = [
        {a.key: a.value for a in span.attributes}
        for request in kept.requests
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
        if span.name == "events.deliver"
    ]
    assert kept.services() == {"booking-events"}
    mine = [d for d in deliveries if d[tracing.ORDER_ID].string_value == order_id]
    assert mine, deliveries
    assert {d["events.kind"].string_value for d in mine} >= {"order"}
    assert all(d["events.delay_ms"].double_value >= 0 for d in mine), "each with its delay from the commit"

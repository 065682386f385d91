"""Traces: one booking followed from the HTTP request, through Temporal's client, the workflow and
each activity, down to PostgreSQL and Redis, with the order id on every span.

Set up in one place, ``setup``, which the web (each gunicorn process, after the fork: the
exporter's thread does not survive a fork) and the worker call as they start. It does nothing
unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set: then no provider is installed, and every tracer
stays OpenTelemetry's no-op one (Temporal's ``TracingInterceptor`` on the client and the worker
makes non-recording spans and sends no header).

The order id: Temporal's interceptor names the workflow id (``booking-<order id>``) on its own
spans, the web names the order on its request span as soon as it knows it (``tag_order``), and
``OrderIdSpanProcessor`` copies it onto every span started under one that has it (the database and
Redis calls of an activity, say), so that a search by ``booking.order_id`` finds the whole story.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence

from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from common.formats import ORDER_ID as ORDER_ID_FORMAT

ORDER_ID = "booking.order_id"
# What Temporal's TracingInterceptor names the workflow by, on its client, workflow and activity spans.
TEMPORAL_WORKFLOW_ID = "temporalWorkflowID"
# A booking's workflow id ends with its order id (``booking-<order id>``).
ORDER_IN_WORKFLOW_ID = re.compile(rf"(?:^|-)({ORDER_ID_FORMAT})$")

_lock = threading.Lock()
_provider: TracerProvider | None = None


class OrderIdSpanProcessor(SpanProcessor):
    """Puts ``booking.order_id`` on a span as it starts: from the workflow id Temporal's
    interceptor gave it, else from its parent span (in this process), else from the baggage."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        order_id = _order_id_of(span) or _order_id_of(trace.get_current_span(parent_context))
        if order_id is None:
            value = baggage.get_baggage(ORDER_ID, parent_context)
            order_id = str(value) if value else None
        if order_id is not None:
            span.set_attribute(ORDER_ID, order_id)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _order_id_of(span: object) -> str | None:
    attributes = getattr(span, "attributes", None) or {}
    if found := attributes.get(ORDER_ID):
        return str(found)
    match = ORDER_IN_WORKFLOW_ID.search(str(attributes.get(TEMPORAL_WORKFLOW_ID, "")))
    return match.group(1) if match else None


def tag_order(order_id: str) -> None:
    """Name the order on the current span (the HTTP request's, in a view): the spans started
    under it from now on carry it too."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(ORDER_ID, order_id)


def setup(
    *, service: str, endpoint: str, exporters: Sequence[SpanExporter] = (), batch: bool = True
) -> TracerProvider | None:
    """Install tracing for this process, once: the tracer provider (with the order-id processor),
    an OTLP exporter to ``endpoint`` (when it is not empty) plus ``exporters`` (tests give an
    in-memory one), and the Django, psycopg and Redis instrumentations. With neither an endpoint
    nor an exporter, nothing is installed and tracing stays off. Returns the provider."""
    global _provider
    if not endpoint and not exporters:
        return None
    with _lock:
        if _provider is not None:
            return _provider
        # OpenTelemetry's own OTEL_SERVICE_NAME, when set, names the service instead.
        named = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service}
        provider = TracerProvider(resource=Resource.create(named))
        provider.add_span_processor(OrderIdSpanProcessor())
        chosen = list(exporters)
        if endpoint:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            chosen.append(OTLPSpanExporter(endpoint=endpoint))
        for exporter in chosen:
            processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
            provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
        _instrument_libraries()
        _provider = provider
        return provider


def _instrument_libraries() -> None:
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    DjangoInstrumentor().instrument()
    PsycopgInstrumentor().instrument()
    RedisInstrumentor().instrument()


def shutdown() -> None:
    """Send what is buffered (the worker calls this before it exits)."""
    if _provider is not None:
        _provider.shutdown()

"""The worker's metrics, on two ports apart from everything public (docs/OPERATIONS.md,
"Metrics"):

- ``WORKER_METRICS_PORT``: the product's metrics its activities count (``common.metrics``), and
  what is held right now, read from the orders' rows at each scrape (the same figure from every
  worker: aggregate it with ``max``);
- ``TEMPORAL_METRICS_PORT``: the Temporal SDK's own metrics (task latencies, schedule-to-start,
  pollers, slots), served by the SDK's core through its Runtime's Prometheus exporter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError, connection
from prometheus_client import REGISTRY, disable_created_metrics, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from common import metrics
from orders.overview import live_holds
from orders.workflow_contract import TERMINAL_STATES
from payments.models import PaymentOutcome

logger = logging.getLogger(__name__)


# The SDK's default buckets for these start at 0.1 s and jump to 0.5 s and 1 s: too coarse for
# tasks that wait or run for milliseconds. Finer ones for the latencies the dashboard shows.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SDK_LATENCY_BUCKETS = {
    name: LATENCY_BUCKETS  # named as the SDK's core names them, without the "temporal_" prefix
    for name in (
        "workflow_task_schedule_to_start_latency",
        "workflow_task_execution_latency",
        "activity_schedule_to_start_latency",
        "activity_execution_latency",
        "local_activity_execution_latency",
    )
}


class MetricsPortTaken(Exception):
    """A metrics port could not be bound: start-up stops, naming the setting."""


_runtime: Runtime | None = None
HOLDING_HELP = "Orders holding seats now (reserved or paying), from the orders' rows."
SEATS_HELP = "Seats held now by live orders, from the orders' rows."
CHARGED_UNCONFIRMED_HELP = (
    "Orders the payment gateway holds money for without a confirmed booking (ended without their "
    "seats, or charged more than 5 minutes ago and not confirmed): 0 in a healthy system "
    "(docs/OPERATIONS.md, 'Charged, not confirmed')."
)
OVERDUE_HELP = (
    "Live orders past their deadline by more than the longest payment and 5 minutes: "
    "nothing is moving them on (docs/OPERATIONS.md, 'An overdue order')."
)


def sdk_runtime() -> Runtime | None:
    """The process's one Temporal Runtime, exporting the SDK's metrics on TEMPORAL_METRICS_PORT
    (None when that is 0: the SDK's default runtime, without metrics). Durations in seconds, as
    Prometheus names them."""
    global _runtime
    if _runtime is None and settings.TEMPORAL_METRICS_PORT:
        address = f"{settings.METRICS_HOST}:{settings.TEMPORAL_METRICS_PORT}"
        try:
            _runtime = Runtime(
                telemetry=TelemetryConfig(
                    metrics=PrometheusConfig(
                        bind_address=address,
                        durations_as_seconds=True,
                        histogram_bucket_overrides=SDK_LATENCY_BUCKETS,
                    )
                )
            )
        except ValueError as error:  # how the SDK's core says it could not bind
            raise MetricsPortTaken(_taken(address, "TEMPORAL_METRICS_PORT", error)) from error
    return _runtime


def _taken(address: str, variable: str, error: Exception) -> str:
    return f"cannot serve metrics on {address} ({error}): set {variable} (0 turns them off)"


class LiveHoldsCollector(Collector):
    """Orders holding seats, and their seats, computed at each scrape from the database: right
    however many processes changed them, and after any restart."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """Its names, without a query (the registry asks for them when it is registered)."""
        yield GaugeMetricFamily(metrics.ORDERS_HOLDING_SEATS, HOLDING_HELP)
        yield GaugeMetricFamily(metrics.SEATS_HELD, SEATS_HELP)
        yield GaugeMetricFamily(metrics.ORDERS_OVERDUE, OVERDUE_HELP)
        yield GaugeMetricFamily(metrics.ORDERS_CHARGED_UNCONFIRMED, CHARGED_UNCONFIRMED_HELP)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            holds = live_holds()
        except DatabaseError as error:  # the scrape still answers, without these
            logger.warning("live holds not measured: %s", error)
            return
        finally:
            connection.close()  # each scrape runs on a thread of its own
        yield GaugeMetricFamily(metrics.ORDERS_HOLDING_SEATS, HOLDING_HELP, holds.orders)
        yield GaugeMetricFamily(metrics.SEATS_HELD, SEATS_HELP, holds.seats)
        yield GaugeMetricFamily(metrics.ORDERS_OVERDUE, OVERDUE_HELP, holds.overdue)
        yield GaugeMetricFamily(
            metrics.ORDERS_CHARGED_UNCONFIRMED, CHARGED_UNCONFIRMED_HELP, holds.charged_unconfirmed
        )


def serve_product_metrics() -> None:
    """Serve the product's metrics on WORKER_METRICS_PORT (0: not at all)."""
    if not settings.WORKER_METRICS_PORT:
        return
    disable_created_metrics()  # a counter's creation time is one series more each, for nothing
    for state in TERMINAL_STATES:
        metrics.ORDERS_FINISHED.labels(state=state.value)
    for reason in metrics.FIRST_HOLD_REFUSALS:
        metrics.FIRST_HOLDS_REFUSED.labels(reason=reason)
    for outcome in (PaymentOutcome.SUCCEEDED, PaymentOutcome.FAILED, PaymentOutcome.TIMED_OUT):
        metrics.PAYMENT_ATTEMPTS.labels(outcome=outcome.value)
    for event in ("charged", "refunded"):
        metrics.GATEWAY_CHARGES.labels(event=event)
    REGISTRY.register(LiveHoldsCollector())
    try:
        start_http_server(settings.WORKER_METRICS_PORT, addr=settings.METRICS_HOST)
    except OSError as error:
        address = f"{settings.METRICS_HOST}:{settings.WORKER_METRICS_PORT}"
        raise MetricsPortTaken(_taken(address, "WORKER_METRICS_PORT", error)) from error

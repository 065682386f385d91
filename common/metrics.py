"""The product's metrics, defined once, in Prometheus format (docs/OPERATIONS.md, "Metrics").

Defined here, in the lowest layer, so that every package that counts something can import them:
the worker's bookkeeping and payment records (``orders.activity_writes``, ``payments.services``) and
the web (``booking_site.metrics``, ``orders.api``, ``common.api``). A metric is exported by the
process that changes it:

- the worker (``manage.py runworker``) serves what its activities count, and the live holds it
  reads from the database at each scrape, on ``WORKER_METRICS_PORT``; the Temporal SDK's own
  metrics on ``TEMPORAL_METRICS_PORT``;
- the web (gunicorn) serves what its requests count, summed over its worker processes
  (prometheus_client's multiprocess mode), on ``METRICS_PORT``.

Nothing is counted in workflow code (it replays): each count is made where a database row
actually changes, so that a retried activity that finds its work done counts nothing again.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# The name of every metric the product exports (the dashboard's test holds the dashboard to it).
PREFIX = "booking_"

ORDERS_FINISHED = Counter(
    "booking_orders_finished",
    "Orders that reached a final state (CONFIRMED, FAILED, EXPIRED, CANCELLED), counted once each "
    "when the order's row records it.",
    ["state"],
)
FIRST_HOLDS_REFUSED = Counter(
    "booking_first_holds_refused",
    "Orders that ended before their first hold: its seats were taken first (seats_taken, an "
    "ordinary seat race, answered 400 INVALID_SEATS) or it was not made in time (not_started). "
    "No booking ever existed: not counted in booking_orders_finished_total.",
    ["reason"],
)
FIRST_HOLD_REFUSALS = ("seats_taken", "not_started")
HOLD_DURATION = Histogram(
    "booking_hold_duration_seconds",
    "How long an order held its seats: from its first hold until the payment was submitted "
    '(ended="payment") or until it ended without one (ended="EXPIRED", "CANCELLED", "FAILED").',
    ["ended"],
    buckets=(5, 15, 30, 60, 120, 180, 300, 450, 600, 900, 1200, 1800, 3600),
)
PAYMENT_ATTEMPTS = Counter(
    "booking_payment_attempts",
    "Payment attempts at the gateway by how they ended (SUCCEEDED, FAILED, TIMED_OUT), counted "
    "once per attempt when its record is written; REFUNDED when an approved payment is refunded.",
    ["outcome"],
)
GATEWAY_CHARGES = Counter(
    "booking_gateway_charges",
    "Money moved at the simulated gateway (payments.ledger): event=charged once per charge, "
    "event=refunded once per refund, counted when the ledger's row changes (a replayed charge "
    "request moves no money, and counts nothing).",
    ["event"],
)
SEAT_CHANGES = Counter(
    "booking_seat_changes",
    "Seat changes of orders that already held seats (each resets the hold timer).",
)
STATUS_REQUEST_DURATION = Histogram(
    "booking_status_request_duration_seconds",
    "Time to answer the status a customer's page or client polls (the API's status and the "
    "order page's polled fragment), by view.",
    ["view"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UNAVAILABLE_RESPONSES = Counter(
    "booking_unavailable_responses",
    "503 answers by cause: temporal_unreachable (nothing was sent to Temporal), update_failed "
    "(the workflow's stores did not answer), database_unavailable, healthz (a dependency of /readyz down).",
    ["cause"],
)
UNAVAILABLE_CAUSES = ("temporal_unreachable", "update_failed", "database_unavailable", "healthz")
RECONCILE_REPAIRS = Counter(
    "booking_reconcile_repairs",
    "Drift the reconciliation repaired (orders/reconciliation.py), by kind: workflow_gone, "
    "hold_lost, hold_without_order, request_settled, create_resent, charge_refunded.",
    ["kind"],
)
RECONCILE_FAILURES = Counter(
    "booking_reconcile_failures",
    "Candidates whose repair raised during a reconciliation run (logged with the order's id and "
    "kept with the run, which went on with the next): 0 when healthy.",
)
RETENTION_DELETED = Counter(
    "booking_retention_deleted",
    "Rows the retention deleted (orders/retention.py), by kind: session (past its expiry), "
    "order_request (an idempotency record past IDEMPOTENCY_KEY_RETENTION).",
    ["kind"],
)
# Changes pushed (common/events.py, orders/streams.py): published by whichever process commits the
# change (the worker, the web), streamed by the events process (EVENTS_METRICS_PORT).
EVENTS_PUBLISHED = Counter(
    "booking_events_published",
    "Changes of an order or of a flight's seats published on Redis pub/sub after their commit, by "
    "kind (order, flight) and outcome (published; failed: Redis away, the poll shows the change).",
    ["kind", "outcome"],
)
EVENTS_DELIVERED = Counter(
    "booking_events_delivered",
    "Events written to an open stream (one change reaches as many streams as watch it), by kind.",
    ["kind"],
)
EVENT_DELIVERY_DELAY = Histogram(
    "booking_event_delivery_seconds",
    "From the commit of a change (its publication) to its event written to a stream, by kind.",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
STREAMS_OPEN = Gauge(
    "booking_streams_open",
    "Event streams open now (order pages and seat maps), by kind.",
    ["kind"],
    multiprocess_mode="livesum",
)
STREAMS_REFUSED = Counter(
    "booking_streams_refused",
    "Event streams refused 429 by a cap (EVENTS_MAX_STREAMS_PER_SESSION, _PER_ADDRESS), by cap.",
    ["cap"],
)

# Computed by the worker at each scrape from the database (temporal_worker.metrics), not counted.
ORDERS_HOLDING_SEATS = "booking_orders_holding_seats"
SEATS_HELD = "booking_seats_held"
ORDERS_OVERDUE = "booking_orders_overdue"
ORDERS_CHARGED_UNCONFIRMED = "booking_orders_charged_unconfirmed"

# Every name a scrape shows for the metrics above (counters end in _total, histograms in
# _bucket, _sum and _count).
EXPORTED_NAMES = frozenset(
    {
        "booking_orders_finished_total",
        "booking_first_holds_refused_total",
        "booking_payment_attempts_total",
        "booking_gateway_charges_total",
        "booking_seat_changes_total",
        "booking_unavailable_responses_total",
        "booking_reconcile_repairs_total",
        "booking_reconcile_failures_total",
        "booking_retention_deleted_total",
        "booking_events_published_total",
        "booking_events_delivered_total",
        "booking_streams_refused_total",
        "booking_streams_open",
        *(f"booking_event_delivery_seconds{suffix}" for suffix in ("_bucket", "_sum", "_count")),
        *(
            f"{histogram}{suffix}"
            for histogram in ("booking_hold_duration_seconds", "booking_status_request_duration_seconds")
            for suffix in ("_bucket", "_sum", "_count")
        ),
        ORDERS_HOLDING_SEATS,
        SEATS_HELD,
        ORDERS_OVERDUE,
        ORDERS_CHARGED_UNCONFIRMED,
    }
)


def unavailable(cause: str) -> None:
    """Count a 503 answer."""
    UNAVAILABLE_RESPONSES.labels(cause=cause).inc()


def start_stream_series() -> None:
    """The streams process's series, at zero from the start (as ``start_web_series``)."""
    for kind in ("order", "flight"):
        STREAMS_OPEN.labels(kind=kind)
        EVENTS_DELIVERED.labels(kind=kind)
    for cap in ("session", "address"):
        STREAMS_REFUSED.labels(cap=cap)


def start_web_series() -> None:
    """Every label value the web counts, at zero from the start: a rate over a series that does
    not exist yet is no rate at all, and an alert on it never fires."""
    for cause in UNAVAILABLE_CAUSES:
        UNAVAILABLE_RESPONSES.labels(cause=cause)

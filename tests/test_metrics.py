"""Metrics in Prometheus format, read as Prometheus reads them: by scraping the web's and the
worker's metrics ports while the real stack books (docs/OPERATIONS.md, "Metrics")."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from datetime import timedelta
from urllib.parse import urlsplit

import psutil
import pytest
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from common import metrics
from devstack.ports import free_port
from orders.models import Order
from orders.order_rows import new_order_id
from orders.workflow_contract import State
from tests.conftest import GunicornWeb, Stack, start_gunicorn
from tests.dashboard import SDK_DASHBOARD_NAMES
from tests.helpers import ApiClient, wait_for

pytestmark = pytest.mark.stack


class Scrape:
    """One scrape of a metrics endpoint: each sample by its name and labels."""

    def __init__(self, url: str) -> None:
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert reply.status == 200
            self.text = reply.read().decode()
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(self.text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when the series does not exist (yet)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def scrape_once_counted(url: str, before: Scrape, *, state: str) -> Scrape:
    """The first scrape that counts the order that ended in ``state``: it is counted when its row
    commits, just before the activity answers, so a bounded wait (never a sleep)."""

    def counted() -> Scrape | None:
        scrape = Scrape(url)
        return scrape if delta(before, scrape, "booking_orders_finished_total", state=state) else None

    return wait_for(counted, timeout=10, what=f"the {state} order to be counted")


def book_one(web: GunicornWeb, stack: Stack) -> tuple[ApiClient, str]:
    """One order, one seat change, paid with the code that always succeeds: CONFIRMED."""
    customer = ApiClient(web.url)
    created = customer.create_order("fl-101", ["12A"])
    assert created.status == 201, created.text
    order_id = created.json["orderId"]
    changed = customer.put(f"/api/orders/{order_id}/seats", {"seats": ["12B"]})
    assert changed.status == 200, changed.text
    assert Scrape(stack.worker.metrics_url).value(metrics.ORDERS_HOLDING_SEATS) == 1
    assert Scrape(stack.worker.metrics_url).value(metrics.SEATS_HELD) == 1
    paid = customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": "00000"})
    assert paid.status == 202, paid.text
    customer.wait_for_status(order_id, "CONFIRMED")
    return customer, order_id


def test_one_booking_moves_the_worker_counters_once(stack, gunicorn_web):
    worker = stack.worker.metrics_url
    before = Scrape(worker)

    book_one(gunicorn_web, stack)

    after = scrape_once_counted(worker, before, state="CONFIRMED")
    assert delta(before, after, "booking_orders_finished_total", state="CONFIRMED") == 1
    for state in ("FAILED", "EXPIRED", "CANCELLED"):
        assert delta(before, after, "booking_orders_finished_total", state=state) == 0
    assert delta(before, after, "booking_payment_attempts_total", outcome="SUCCEEDED") == 1
    assert delta(before, after, "booking_payment_attempts_total", outcome="FAILED") == 0
    assert delta(before, after, "booking_seat_changes_total") == 1
    assert delta(before, after, "booking_hold_duration_seconds_count", ended="payment") == 1
    assert after.value(metrics.ORDERS_HOLDING_SEATS) == 0, "a confirmed order holds nothing"
    assert after.value(metrics.SEATS_HELD) == 0


def test_an_order_nothing_moves_on_is_counted_as_overdue(stack):
    worker = stack.worker.metrics_url
    assert Scrape(worker).value(metrics.ORDERS_OVERDUE) == 0
    # Paying, an hour past its deadline: what a bookkeeping step failing without end leaves.
    Order.objects.create(
        id=new_order_id(),
        flight_id="fl-101",
        state=State.PAYMENT_PROCESSING,
        seats=["30A"],
        hold_expires_at=timezone.now() - timedelta(hours=1),
    )

    assert Scrape(worker).value(metrics.ORDERS_OVERDUE) == 1


def test_a_failed_payment_counts_every_attempt_and_the_failure(stack, gunicorn_web):
    worker = stack.worker.metrics_url
    before = Scrape(worker)
    customer = ApiClient(gunicorn_web.url)
    order_id = customer.create_order("fl-101", ["14C"]).json["orderId"]

    assert customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": "99999"}).status == 202
    customer.wait_for_status(order_id, "FAILED", timeout=60)

    after = scrape_once_counted(worker, before, state="FAILED")
    assert delta(before, after, "booking_payment_attempts_total", outcome="FAILED") == 3
    assert delta(before, after, "booking_payment_attempts_total", outcome="SUCCEEDED") == 0
    assert delta(before, after, "booking_orders_finished_total", state="FAILED") == 1
    assert delta(before, after, "booking_orders_finished_total", state="CONFIRMED") == 0
    assert delta(before, after, "booking_seat_changes_total") == 0


def test_the_web_counts_status_requests_over_all_its_processes(stack, gunicorn_web):
    customer, order_id = book_one(gunicorn_web, stack)
    before = Scrape(gunicorn_web.metrics_url)

    for _ in range(6):  # spread over gunicorn's two processes by the kernel
        assert customer.get(f"/api/orders/{order_id}/status").status == 200
    assert customer.get(f"/orders/{order_id}/?poll=1").status == 200  # the order page's poll
    assert customer.get(f"/orders/{order_id}/").status == 200  # the page itself is no poll

    after = Scrape(gunicorn_web.metrics_url)
    assert delta(before, after, "booking_status_request_duration_seconds_count", view="api") == 6
    assert delta(before, after, "booking_status_request_duration_seconds_count", view="page") == 1
    assert delta(before, after, "booking_status_request_duration_seconds_sum", view="api") > 0
    assert after.value("booking_unavailable_responses_total", cause="temporal_unreachable") == 0
    # Only the web's own metrics: the worker's counts are the worker's to serve.
    assert "booking_orders_finished_total" not in after.names()


def test_the_web_counts_503s_by_cause(stack, tmp_path):
    """A web whose Temporal does not answer: the customer gets 503 (nothing was sent), and the
    metrics say why."""
    env = dict(stack.worker.env, TEMPORAL_HOST=f"127.0.0.1:{free_port()}", TEMPORAL_ANSWER_TIMEOUT="2s")
    web = start_gunicorn(env, tmp_path)
    try:
        customer = ApiClient(web.url)
        refused = customer.create_order("fl-101", ["12A"])
        health = customer.get("/healthz")
        after = Scrape(web.metrics_url)
    finally:
        web.process.terminate()
        web.process.wait(timeout=30)

    assert refused.status == 503, refused.text
    assert health.status == 503
    assert after.value("booking_unavailable_responses_total", cause="temporal_unreachable") == 1
    assert after.value("booking_unavailable_responses_total", cause="healthz") == 1
    assert after.value("booking_unavailable_responses_total", cause="database_unavailable") == 0


def test_the_worker_serves_the_temporal_sdk_metrics(stack, gunicorn_web):
    book_one(gunicorn_web, stack)

    scrape = Scrape(stack.worker.sdk_metrics_url)

    # The names the dashboard (deploy/grafana) uses, as this SDK version exports them.
    assert scrape.names() >= SDK_DASHBOARD_NAMES, sorted(SDK_DASHBOARD_NAMES - scrape.names())
    # In seconds, with buckets fine enough for tasks that wait milliseconds.
    waits = {
        dict(labels)["le"]
        for name, labels in scrape.samples
        if name == "temporal_workflow_task_schedule_to_start_latency_bucket"
    }
    assert {"0.005", "0.05", "1.0", "60.0"} <= {str(float(le)) for le in waits if le != "+Inf"}


def test_an_abandoned_order_counts_as_cancelled_with_its_hold(stack, gunicorn_web):
    worker = stack.worker.metrics_url
    before = Scrape(worker)
    customer = ApiClient(gunicorn_web.url)
    order_id = customer.create_order("fl-101", ["15D"]).json["orderId"]

    assert customer.delete(f"/api/orders/{order_id}").status == 202
    customer.wait_for_status(order_id, "CANCELLED")

    after = scrape_once_counted(worker, before, state="CANCELLED")
    assert delta(before, after, "booking_orders_finished_total", state="CANCELLED") == 1
    assert delta(before, after, "booking_hold_duration_seconds_count", ended="CANCELLED") == 1
    assert delta(before, after, "booking_hold_duration_seconds_count", ended="payment") == 0
    assert delta(before, after, "booking_payment_attempts_total", outcome="SUCCEEDED") == 0


def test_the_web_keeps_its_counts_when_gunicorn_replaces_a_worker_process(stack, gunicorn_web):
    """A process that dies is marked dead (child_exit): what it counted stays in the sum."""
    customer, order_id = book_one(gunicorn_web, stack)
    for _ in range(4):
        customer.get(f"/api/orders/{order_id}/status")
    answered = "booking_status_request_duration_seconds_count"
    counted = Scrape(gunicorn_web.metrics_url).value(answered, view="api")
    master = psutil.Process(gunicorn_web.process.pid)
    old = {child.pid for child in master.children()}

    for child in master.children():
        child.kill()
    wait_for(
        lambda: len({child.pid for child in master.children()} - old) == 2,
        timeout=60,
        what="gunicorn to start two new worker processes",
    )
    status = f"/api/orders/{order_id}/status"
    wait_for(lambda: customer.get(status).status == 200, timeout=30, what="a new process to answer")

    after = Scrape(gunicorn_web.metrics_url)
    assert after.value(answered, view="api") == counted + 1


@pytest.mark.django_db(transaction=True)
def test_a_retried_record_counts_once(demo_flights):
    """Activities run at least once: writing the same version again changes no row, and counts
    nothing (this process's own registry: the bookkeeping runs here as in the worker)."""
    from datetime import UTC, datetime

    from orders import activity_writes
    from orders.models import Order
    from orders.workflow_contract import OrderRecord, State

    Order.objects.create(id="ord-" + "a" * 20, flight_id="fl-101", state=State.SEATS_RESERVED, seats=["1A"])
    record = OrderRecord(
        order_id="ord-" + "a" * 20,
        flight_id="fl-101",
        version=5,
        state=State.EXPIRED,
        seats=["1A"],
        at=datetime.now(UTC),
    )

    def expired() -> float:
        return REGISTRY.get_sample_value("booking_orders_finished_total", {"state": "EXPIRED"}) or 0.0

    before = expired()

    assert activity_writes.record_order(record=record) is True
    assert activity_writes.record_order(record=record) is False  # the retry

    assert expired() == before + 1


@pytest.mark.parametrize("variable", ["WORKER_METRICS_PORT", "TEMPORAL_METRICS_PORT"])
def test_a_worker_whose_metrics_port_is_taken_stops_naming_the_setting(variable):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = dict(
            os.environ,
            WORKER_METRICS_PORT=str(free_port()),
            TEMPORAL_METRICS_PORT=str(free_port()),
            TEMPORAL_HOST=f"127.0.0.1:{free_port()}",  # never reached: the ports come first
        )
        env[variable] = str(busy.getsockname()[1])
        result = subprocess.run(
            [sys.executable, "manage.py", "runworker"], env=env, capture_output=True, text=True, timeout=60
        )

    assert result.returncode == 2
    assert f"set {variable} (0 turns them off)" in result.stdout + result.stderr


def test_only_gunicorn_s_master_listens_on_the_metrics_port(gunicorn_web):
    """Its worker processes are forked with a copy of the metrics socket, and close it: a killed
    master leaves the port free at once, and no worker answers a scrape with its own counts."""
    port = int(urlsplit(gunicorn_web.metrics_url).port or 0)
    master = psutil.Process(gunicorn_web.process.pid)

    def listens(process: psutil.Process) -> bool:
        return any(
            c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in process.net_connections("tcp")
        )

    assert listens(master)
    workers = master.children()
    assert len(workers) == 2
    assert not any(listens(worker) for worker in workers)


def test_a_first_hold_lost_to_a_seat_race_is_not_a_failed_booking(stack, gunicorn_web):
    worker = stack.worker.metrics_url
    first = ApiClient(gunicorn_web.url)
    assert first.create_order("fl-101", ["15C"]).status == 201
    before = Scrape(worker)

    lost = ApiClient(gunicorn_web.url).create_order("fl-101", ["15C"])

    assert lost.status == 400 and lost.json["error"] == "INVALID_SEATS", lost.text

    def counted() -> Scrape | None:
        scrape = Scrape(worker)
        refused = delta(before, scrape, "booking_first_holds_refused_total", reason="seats_taken")
        return scrape if refused else None

    after = wait_for(counted, timeout=10, what="the refused first hold to be counted")
    assert delta(before, after, "booking_first_holds_refused_total", reason="seats_taken") == 1
    assert delta(before, after, "booking_orders_finished_total", state="FAILED") == 0
    assert Order.objects.filter(state=State.FAILED).count() == 0, "and no failed order to be seen"


def test_an_expected_decline_logs_one_line_without_a_traceback(stack, gunicorn_web):
    customer = ApiClient(gunicorn_web.url)
    order_id = customer.create_order("fl-101", ["16C"]).json["orderId"]
    logged_before = stack.worker.log.stat().st_size

    assert customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": "99999"}).status == 202
    customer.wait_for_status(order_id, "FAILED", timeout=60)

    with stack.worker.log.open("rb") as log:
        log.seek(logged_before)
        lines = [line for line in log.read().decode().splitlines() if order_id in line or "Traceback" in line]
    declines = [line for line in lines if "declined" in line]
    assert len(declines) == 3, lines
    noise = [line for line in lines if "Traceback" in line or "Completing activity as failed" in line]
    assert not noise, lines

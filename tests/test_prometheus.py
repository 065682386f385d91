"""A real Prometheus (Debian's, installed by `make system-packages`) scrapes the test stack's web
and worker every second; one booking then shows in a PromQL query through its HTTP API."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from devstack.ports import free_port, port_is_free
from devstack.supervisor import command_for
from tests.conftest import GunicornWeb, Stack
from tests.dashboard import dashboard_queries, metric_names
from tests.helpers import wait_for
from tests.test_metrics import book_one

pytestmark = pytest.mark.stack


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result of an instant query (a vector: one entry per series)."""
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(address, timeout=10) as reply:
            body = json.loads(reply.read())
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, promql: str) -> float | None:
        """The value of a query that yields one series, or None while it yields none."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None


def scrape_config(web: GunicornWeb, stack: Stack) -> str:
    """As deploy/prometheus/prometheus.yml, with the test stack's ports, every second."""

    def target(url: str) -> str:
        return urlsplit(url).netloc

    jobs = {
        "web": target(web.metrics_url),
        "worker": target(stack.worker.metrics_url),
        "temporal-sdk": target(stack.worker.sdk_metrics_url),
    }
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [address]}]} for job, address in jobs.items()
        ],
    }
    return json.dumps(config)  # JSON is YAML


@pytest.fixture
def prometheus(stack: Stack, gunicorn_web: GunicornWeb, tmp_path: Path) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("Debian's prometheus is not installed: run `make system-packages` (make test does)")
    config = tmp_path / "prometheus.yml"
    config.write_text(scrape_config(gunicorn_web, stack))
    port = free_port()
    log = tmp_path / "prometheus.log"
    process = subprocess.Popen(
        command_for(  # killed by the kernel if the test run dies first
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ]
        ),
        stdout=open(log, "ab"),  # noqa: SIM115 (the child owns it)
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:

        def ready() -> bool:
            assert process.poll() is None, f"prometheus exited with {process.returncode}: {log.read_text()}"
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as reply:
                    return reply.status == 200
            except OSError:
                return False

        wait_for(ready, timeout=30, interval=0.2, what=f"Prometheus to be ready ({log})")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    assert port_is_free(port), "Prometheus is gone, and its port with it"


def test_prometheus_finds_one_booking_through_promql(stack, gunicorn_web, prometheus):
    wait_for(
        lambda: len(prometheus.query("up == 1")) == 3,
        timeout=30,
        interval=0.5,
        what="Prometheus to scrape the web, the worker and the SDK metrics",
    )
    # The worker serves the session's counts: what this test adds is the difference.
    confirmed = 'sum(booking_orders_finished_total{job="worker", state="CONFIRMED"})'
    paid = 'sum(booking_payment_attempts_total{job="worker", outcome="SUCCEEDED"})'
    confirmed_before, paid_before = prometheus.value(confirmed), prometheus.value(paid)
    assert confirmed_before is not None and paid_before is not None, "counted from zero, from the start"

    book_one(gunicorn_web, stack)

    wait_for(
        lambda: prometheus.value(confirmed) == confirmed_before + 1,
        timeout=30,
        interval=0.5,
        what="the booking in PromQL",
    )
    assert prometheus.value(paid) == paid_before + 1


def test_every_metric_the_dashboard_shows_is_in_prometheus_after_a_booking(stack, gunicorn_web, prometheus):
    customer, order_id = book_one(gunicorn_web, stack)
    customer.get(f"/api/orders/{order_id}/status")  # a status answered by gunicorn
    names = set().union(*(metric_names(query) for query in dashboard_queries()))

    def missing() -> set[str]:
        return {name for name in names if not prometheus.query(f"count({name})")}

    wait_for(lambda: not missing(), timeout=30, interval=0.5, what="every dashboard metric in Prometheus")
    for query in dashboard_queries():  # Prometheus parses each one (a bad query is an HTTP 400)
        prometheus.query(query)

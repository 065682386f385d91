"""The web and a worker book end to end with Temporal behind TLS, then behind mutual TLS, reached
the SDK's standard way (TEMPORAL_ADDRESS, TEMPORAL_TLS_*): Debian's nginx terminates TLS in front
of the suite's dev server (``grpc_pass``), with a certificate authority made here. Without its
client certificate, a worker stops at start with one line naming the settings to fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from devstack.ports import free_port, port_is_free
from devstack.supervisor import command_for
from tests.certificates import Authority, Issued
from tests.conftest import ROOT, Stack, WorkerProcess, start_gunicorn
from tests.helpers import ApiClient, wait_for


@dataclass
class TlsFront:
    """nginx in front of the suite's Temporal: ``tls_port`` asks for nothing more than TLS,
    ``mutual_port`` also for a client certificate that ``ca`` signed."""

    ca: Authority
    client: Issued
    tls_port: int
    mutual_port: int


def _nginx() -> str:
    found = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is None:
        pytest.fail("nginx is missing: `make system-packages` installs Debian's")
    return found


@pytest.fixture(scope="module")
def tls_front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsFront]:
    folder = tmp_path_factory.mktemp("tls")
    (folder / "tmp").mkdir()
    ca = Authority(folder)
    server = ca.issue("temporal.test", server=True)  # also valid for localhost and 127.0.0.1
    client = ca.issue("booking", server=False)
    front = TlsFront(ca=ca, client=client, tls_port=free_port(), mutual_port=free_port())
    upstream = settings.TEMPORAL_HOST
    temp_paths = " ".join(
        f"{kind}_temp_path {folder / 'tmp'};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    grpc = f"location / {{ grpc_pass grpc://{upstream}; }}"
    config = folder / "nginx.conf"
    # One process in the foreground (no daemon, no master): it dies with the test run. Workers'
    # long polls last up to 70 s: the read timeout is well above it.
    config.write_text(
        f"""
daemon off;
master_process off;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    {temp_paths}
    client_max_body_size 0;
    grpc_read_timeout 300s;
    grpc_send_timeout 300s;
    ssl_certificate {server.cert};
    ssl_certificate_key {server.key};
    server {{ listen 127.0.0.1:{front.tls_port} ssl http2; {grpc} }}
    server {{
        listen 127.0.0.1:{front.mutual_port} ssl http2;
        ssl_client_certificate {ca.pem};
        ssl_verify_client on;
        {grpc}
    }}
}}
"""
    )
    nginx = subprocess.Popen(
        command_for([_nginx(), "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(config)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    wait_for(
        lambda: not port_is_free(front.tls_port) and not port_is_free(front.mutual_port),
        timeout=20,
        what=f"nginx to listen ({folder / 'error.log'})",
    )
    yield front
    nginx.terminate()
    nginx.wait(timeout=10)


def _env(stack: Stack, **temporal: str) -> dict[str, str]:
    """The stack's environment, on a task queue of its own (so that only this test's worker, on
    TLS, serves these bookings) and with Temporal reached only as ``temporal`` says."""
    env = {k: v for k, v in stack.worker.env.items() if not k.startswith("TEMPORAL_")}
    return {**env, "TEMPORAL_TASK_QUEUE": f"tls-{uuid.uuid4().hex[:8]}", **temporal}


def _book_end_to_end(stack: Stack, env: dict[str, str], data: Path) -> None:
    worker = WorkerProcess(env=env, log=data / "worker.log")
    worker.start()  # "Worker ready" comes only once it has connected
    web = start_gunicorn(env, data)
    try:
        assert "TLS" in worker.log.read_text(), worker.log.read_text()
        customer = ApiClient(web.url)
        created = customer.create_order("fl-101", ["2A"])
        assert created.status == 201, created.text
        order_id = created.json["orderId"]
        assert customer.post(f"/api/orders/{order_id}/pay", {"paymentCode": "00000"}).status == 202
        assert customer.wait_for_status(order_id, "CONFIRMED", "FAILED")["status"] == "CONFIRMED"
    finally:
        web.process.terminate()
        web.process.wait(timeout=30)
        worker.stop()


def test_the_web_and_a_worker_book_over_tls(stack: Stack, tls_front: TlsFront, tmp_path: Path):
    env = _env(
        stack,
        TEMPORAL_ADDRESS=f"localhost:{tls_front.tls_port}",
        TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(tls_front.ca.pem),
    )
    _book_end_to_end(stack, env, tmp_path)


def test_the_web_and_a_worker_book_over_mutual_tls(stack: Stack, tls_front: TlsFront, tmp_path: Path):
    env = _env(
        stack,
        TEMPORAL_ADDRESS=f"127.0.0.1:{tls_front.mutual_port}",
        TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(tls_front.ca.pem),
        TEMPORAL_TLS_SERVER_NAME="temporal.test",
        TEMPORAL_TLS_CLIENT_CERT_PATH=str(tls_front.client.cert),
        TEMPORAL_TLS_CLIENT_KEY_PATH=str(tls_front.client.key),
    )
    _book_end_to_end(stack, env, tmp_path)


def _worker_start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "runworker"],
        cwd=ROOT,
        env={**env, "WORKER_METRICS_PORT": "0", "TEMPORAL_METRICS_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_without_its_client_certificate_a_worker_stops_at_start_naming_the_settings(
    stack: Stack, tls_front: TlsFront
):
    address = f"localhost:{tls_front.mutual_port}"
    result = _worker_start(
        _env(stack, TEMPORAL_ADDRESS=address, TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(tls_front.ca.pem))
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"configuration error: Temporal at {address} asks for a client certificate (mutual TLS): "
        "set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH"
    )


def test_a_wrong_ca_stops_a_worker_at_start_naming_the_setting(
    stack: Stack, tls_front: TlsFront, tmp_path: Path
):
    stranger = Authority(tmp_path, "stranger")
    address = f"localhost:{tls_front.tls_port}"
    result = _worker_start(
        _env(stack, TEMPORAL_ADDRESS=address, TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(stranger.pem))
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"configuration error: Temporal at {address}: its certificate is not signed by "
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH"
        )
    )

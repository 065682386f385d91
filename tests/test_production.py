"""The production smoke test, no containers: the web under gunicorn with production settings
(DEBUG off, ALLOWED_HOSTS the domain, HTTPS on), behind the reverse proxy compose runs (Caddy, with
the same deploy/caddy/Caddyfile, from Debian's package) terminating TLS with a certificate made
here. A customer books through the proxy, as a browser would, on the real PostgreSQL, Redis,
Temporal and worker."""

from __future__ import annotations

import html
import http.client
import http.cookiejar
import json
import re
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devstack.ports import free_port
from devstack.supervisor import command_for
from flights.services import seed_demo_flights
from tests.conftest import (
    ROOT,
    EventsServer,
    GunicornWeb,
    WorkerProcess,
    _terminate_running_workflows,
    start_events_server,
    start_gunicorn,
)
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

DOMAIN = "booking.example.test"
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "smoke-" + "s" * 30 + "-a-long-random-production-secret-" + "k" * 20,
    "ALLOWED_HOSTS": DOMAIN,
    "CSRF_TRUSTED_ORIGINS": f"https://{DOMAIN}",
    "HTTPS": "true",
    "STATIC_MANIFEST": "true",
    "LOG_FORMAT": "json",
}


def _openssl(*argv: str, cwd: Path) -> None:
    subprocess.run(["openssl", *argv], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A CA of the test's own and a certificate for DOMAIN it signed: (ca, cert, key)."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=Smoke test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    _openssl("req", *ec, "-keyout", "key.pem", "-out", "site.csr", "-subj", f"/CN={DOMAIN}", cwd=directory)
    (directory / "site.ext").write_text(
        f"subjectAltName=DNS:{DOMAIN}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "x509", "-req", "-in", "site.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "cert.pem", "-days", "2", "-extfile", "site.ext",
        cwd=directory,
    )  # fmt: skip
    return directory / "ca.pem", directory / "cert.pem", directory / "key.pem"


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to the proxy on loopback whatever the name, and checks the certificate for the
    name (SNI and verification), as a browser would with the domain's DNS pointing here."""

    address: tuple[str, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = lambda _, *rest, **kw: socket.create_connection(self.address, *rest, **kw)


@dataclass
class Browser:
    """A customer's browser on https://DOMAIN:port, trusting only the test's CA."""

    base: str
    address: tuple[str, int]
    ca: Path
    cookies: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def __post_init__(self) -> None:
        context = ssl.create_default_context(cafile=str(self.ca))
        address = self.address

        class Handler(urllib.request.HTTPSHandler):
            def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
                connection = type("Pinned", (_PinnedHTTPSConnection,), {"address": address})
                return self.do_open(connection, req, context=context)

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies), Handler())

    def open(
        self, path: str, *, form: dict[str, str] | None = None, body: Any = None, referer: str | None = None
    ) -> tuple[int, str, dict[str, str], str]:
        """(status, final URL, headers, text), redirects followed."""
        data = None
        request = urllib.request.Request(self.base + path)
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        elif body is not None:
            data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        if referer:
            request.add_header("Referer", referer)
        request.data = data
        try:
            with self.opener.open(request, timeout=30) as reply:
                return reply.status, reply.url, dict(reply.headers), reply.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.url, dict(error.headers), error.read().decode()

    def form_fields(self, page: str, action: str) -> dict[str, str]:
        """The hidden fields (CSRF token, idempotency key) of the form posting to ``action``."""
        start = page.index(f'action="{action}"')
        form = page[start : page.index("</form>", start)]
        return {
            name: html.unescape(value)
            for name, value in re.findall(r'<input type="hidden" name="([\w-]+)" value="([^"]*)"', form)
        }


@dataclass
class Site:
    web: GunicornWeb
    events: EventsServer
    proxy: subprocess.Popen[bytes]
    https_url: str
    http_url: str
    browser: Browser


@pytest.fixture
def site(transactional_db: None, worker: WorkerProcess, clean_redis: None, tmp_path: Path) -> Iterator[Site]:
    env = {**worker.env, **PRODUCTION}
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # as the image's build does
    assert collected.returncode == 0, collected.stderr
    seed_demo_flights()
    web = start_gunicorn(env, tmp_path, ready_path="/livez")
    streams = start_events_server(env, tmp_path)

    ca, cert, key = make_certificate(tmp_path)
    https_port, http_port = free_port(), free_port()
    log = tmp_path / "caddy.log"
    proxy = subprocess.Popen(
        command_for(  # dies with the test run; `caddy run` stays in the foreground
            ["caddy", "run", "--config", str(ROOT / "deploy/caddy/Caddyfile"), "--adapter", "caddyfile"]
        ),
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "XDG_DATA_HOME": str(tmp_path / "caddy-data"),
            "XDG_CONFIG_HOME": str(tmp_path / "caddy-config"),
            "SITE_DOMAIN": DOMAIN,
            "CADDY_TLS": f"{cert} {key}",
            "UPSTREAM": web.url.removeprefix("http://"),
            "EVENTS_UPSTREAM": streams.url.removeprefix("http://"),
            "HTTP_PORT": str(http_port),
            "HTTPS_PORT": str(https_port),
            "BIND_ADDRESS": "127.0.0.1",
        },
        stdout=open(log, "ab"),  # noqa: SIM115 (the child owns it)
        stderr=subprocess.STDOUT,
    )
    https_url = f"https://{DOMAIN}:{https_port}"
    browser = Browser(base=https_url, address=("127.0.0.1", https_port), ca=ca)

    def answering() -> bool:
        assert proxy.poll() is None, f"caddy exited with {proxy.returncode}: {log.read_text()}"
        try:
            return browser.open("/livez")[0] == 200
        except OSError:
            return False

    wait_for(answering, timeout=30, interval=0.2, what=f"caddy to answer ({log})")
    yield Site(
        web=web,
        events=streams,
        proxy=proxy,
        https_url=https_url,
        http_url=f"http://{DOMAIN}:{http_port}",
        browser=browser,
    )
    proxy.terminate()
    proxy.wait(timeout=30)
    web.process.terminate()
    web.process.wait(timeout=30)
    streams.process.terminate()
    streams.process.wait(timeout=30)
    _terminate_running_workflows()


def _direct(web: GunicornWeb, path: str, host: str) -> tuple[int, dict[str, Any] | str]:
    """A request straight to gunicorn with this Host, as a container probe sends it."""
    connection = http.client.HTTPConnection(web.url.removeprefix("http://"), timeout=30)
    connection.request("GET", path, headers={"Host": host})
    reply = connection.getresponse()
    text = reply.read().decode()
    connection.close()
    try:
        return reply.status, json.loads(text)
    except ValueError:
        return reply.status, text


def test_a_customer_books_through_the_tls_proxy_with_production_settings(site):
    browser = site.browser

    status, _, headers, page = browser.open("/")
    assert status == 200, page[:500]
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000")
    stylesheet = re.search(r'href="(/static/css/site\.[0-9a-f]{12}\.css)"', page)
    assert stylesheet, "hashed static files, as collectstatic made them"
    assert browser.open(stylesheet.group(1))[0] == 200

    # Hold a seat on the flight's page (a form post: CSRF checked on https, behind the proxy) ...
    flight_page = "/flights/fl-101/"
    status, _, _, page = browser.open(flight_page)
    assert status == 200
    fields = browser.form_fields(page, "/flights/fl-101/hold")
    status, url, _, page = browser.open(
        "/flights/fl-101/hold", form={**fields, "seat": "7C"}, referer=site.https_url + flight_page
    )
    assert status == 200, page[:1000]
    order_path = urllib.parse.urlsplit(url).path
    assert re.fullmatch(r"/orders/ord-[0-9a-z]+/", order_path), url
    order_id = order_path.split("/")[2]

    # ... pay on the order's page ...
    fields = browser.form_fields(page, f"/orders/{order_id}/pay")
    status, _, _, page = browser.open(
        f"/orders/{order_id}/pay", form={**fields, "payment_code": "00000"}, referer=url
    )
    assert status == 200, page[:1000]

    # ... and the booking confirms, end to end.
    def confirmed() -> dict[str, Any] | None:
        status, _, _, text = browser.open(f"/api/orders/{order_id}/status")
        assert status == 200, text
        body = json.loads(text)
        return body if body["status"] == "CONFIRMED" else None

    order = wait_for(confirmed, timeout=60, what=f"order {order_id} to be confirmed")
    assert order["seats"] == ["7C"]

    cookies = {cookie.name: cookie for cookie in browser.cookies}
    assert {"sessionid", "csrftoken"} <= set(cookies)
    assert [name for name, cookie in cookies.items() if not cookie.secure] == [], "every cookie is Secure"


def test_the_event_streams_come_through_the_proxy_on_the_sites_origin(site):
    """Caddy sends /api/*/events to the streams' process (not gunicorn), and passes each event
    on as it comes, uncompressed."""
    from common import events

    request = urllib.request.Request(site.https_url + "/api/flights/fl-101/events")
    request.add_header("Accept-Encoding", "gzip, zstd")
    with site.browser.opener.open(request, timeout=30) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"] == "text/event-stream"
        assert "Content-Encoding" not in reply.headers
        assert reply.headers["Server"] != "gunicorn"
        assert reply.readline() == b"retry: 2000\n"
        events.publish(events.FLIGHT, "fl-101", {"seats": ["7C"]})
        while not (line := reply.readline()).startswith(b"data:"):
            assert line, "the stream ended"
        assert json.loads(line.removeprefix(b"data: "))["seats"] == ["7C"]


def test_the_probes_answer_through_the_proxy_and_any_host_directly(site):
    assert site.browser.open("/livez")[:1] == (200,)
    status, _, _, text = site.browser.open("/readyz")
    assert (status, json.loads(text)) == (200, {"status": "ok"}), "a forwarded client gets no details"

    # A container probe: the container's IP as Host, plain HTTP, straight to gunicorn.
    assert _direct(site.web, "/livez", "10.0.3.7:8000") == (200, {"status": "ok"})
    status, body = _direct(site.web, "/readyz", "10.0.3.7:8000")
    assert status == 200 and isinstance(body, dict)
    assert body["down"] == [], "a loopback probe is told the details"
    # Every other path keeps the host validation and the https redirect.
    assert _direct(site.web, "/", "10.0.3.7:8000")[0] == 400
    assert _direct(site.web, "/", DOMAIN)[0] == 301


def test_plain_http_is_redirected_to_https(site):
    port = urllib.parse.urlsplit(site.http_url).port
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/flights/", headers={"Host": f"{DOMAIN}:{port}"})
    reply = connection.getresponse()

    assert reply.status in (301, 308)
    # (to the standard port: the one compose publishes)
    assert reply.getheader("Location") == f"https://{DOMAIN}/flights/"


def test_check_deploy_is_clean_with_the_smoke_tests_settings(worker):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**worker.env, **PRODUCTION},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout

"""The one HTTP client of the tools and the tests (tools/http_client.py), against a small real
server on a free port: a session keeps its cookies and forgets a deleted one, sends its headers
and the Idempotency-Key, sends a request again only over a kept connection the server had closed,
never after a timeout, and serves two threads at once; the bench's customer stops at a 429."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tools.bench import Customer
from tools.http_client import Session

RECEIVED: Counter[str] = Counter()  # requests that reached the server, by path
SLOW_ANSWERED = threading.Event()  # the server has answered /slow (after the client gave up)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.answer()

    def do_POST(self) -> None:
        self.answer()

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        RECEIVED[self.path] += 1
        cookies: list[str] = []
        if self.path == "/login":
            cookies = ["sessionid=s1; Path=/; HttpOnly", "csrftoken=c1; Path=/"]
        elif self.path == "/logout":
            cookies = ['sessionid=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/']
        elif self.path == "/slow":
            time.sleep(1)
            SLOW_ANSWERED.set()
        elif self.path == "/text":
            self.reply(502, b"<html>Bad gateway</html>", cookies)
            return
        elif self.path == "/limited":
            self.reply(429, b'{"error": "RATE_LIMITED"}', cookies)
            return
        seen = {name: self.headers.get(name) for name in ("Cookie", "Idempotency-Key", "X-Forwarded-For")}
        self.reply(
            200,
            json.dumps({"headers": seen, "body": body, "type": self.headers.get("Content-Type")}).encode(),
            cookies,
        )
        if self.path == "/hang-up":  # closes the kept connection without saying so
            self.close_connection = True

    def reply(self, status: int, data: bytes, cookies: list[str]) -> None:
        self.send_response(status)
        for cookie in cookies:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    RECEIVED.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_session_keeps_its_cookies_and_forgets_a_deleted_one(url: str) -> None:
    session = Session(url)
    session.request("GET", "/login")

    assert session.request("GET", "/echo").json["headers"]["Cookie"] == "sessionid=s1; csrftoken=c1"
    session.request("GET", "/logout")
    assert session.request("GET", "/echo").json["headers"]["Cookie"] == "csrftoken=c1"


def test_a_client_that_drops_its_cookies_sends_none(url: str) -> None:
    bot = Session(url, keep_cookies=False)
    bot.request("GET", "/login")

    assert bot.request("GET", "/echo").json["headers"]["Cookie"] is None


def test_headers_the_key_and_a_json_body_are_sent(url: str) -> None:
    session = Session(url, headers={"X-Forwarded-For": "198.51.100.7"})

    status, reply, _ = session.call("POST", "/echo", {"seats": ["1A"]}, key="k-1")

    assert status == 200
    assert reply["headers"] == {"Cookie": None, "Idempotency-Key": "k-1", "X-Forwarded-For": "198.51.100.7"}
    assert (json.loads(reply["body"]), reply["type"]) == ({"seats": ["1A"]}, "application/json")
    raw = session.request("POST", "/echo", raw=b"a=1", content_type="application/x-www-form-urlencoded")
    assert (raw.json["body"], raw.json["type"]) == ("a=1", "application/x-www-form-urlencoded")


def test_a_body_that_is_not_json_is_kept_as_raw_text(url: str) -> None:
    status, reply, _ = Session(url).call("GET", "/text")

    assert (status, reply) == (502, {"raw": "<html>Bad gateway</html>"})


def test_a_kept_connection_the_server_closed_is_replaced_and_the_request_sent_once(url: str) -> None:
    session = Session(url)
    session.request("GET", "/hang-up")

    assert session.request("POST", "/echo", {"n": 1}).status == 200
    assert RECEIVED["/echo"] == 1


def test_a_request_that_timed_out_is_not_sent_again(url: str) -> None:
    session = Session(url, timeout=0.3)

    with pytest.raises(TimeoutError):
        session.request("POST", "/slow", {"n": 1})
    assert SLOW_ANSWERED.wait(timeout=10), "the server finished the first request"
    assert RECEIVED["/slow"] == 1
    assert session.request("GET", "/echo").status == 200  # and the session goes on


def test_two_threads_share_one_session(url: str) -> None:
    session = Session(url)
    session.request("GET", "/login")
    statuses: list[int] = []

    def slow() -> None:
        statuses.append(session.request("GET", "/slow").status)

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert statuses == [200, 200]
    assert RECEIVED["/slow"] == 2


def test_the_bench_stops_at_a_limits_refusal_instead_of_measuring_it(url: str) -> None:
    customer = Customer(url)

    ms, status, _ = customer.timed("GET", "/echo")
    assert status == 200 and ms > 0
    with pytest.raises(SystemExit, match="RATE_LIMITS=off"):
        customer.call("GET", "/limited")

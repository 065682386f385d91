"""Test helpers: a real HTTP client with its own cookies (one per customer), and bounded waits."""

from __future__ import annotations

import http.cookiejar
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


class ApiClient:
    """One customer's browser session, speaking real HTTP to the live server."""

    def __init__(self, base_url: str, *, headers: dict[str, str] | None = None) -> None:
        """``headers``: sent with every request (``X-Forwarded-For``, for a customer elsewhere)."""
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def request(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = 30,
        key: str | None = None,
    ) -> Response:
        """``key``: sent as the Idempotency-Key header."""
        data = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=self.headers)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if key is not None:
            request.add_header("Idempotency-Key", key)
        try:
            with self.opener.open(request, timeout=timeout) as reply:
                return Response(reply.status, reply.read(), dict(reply.headers))
        except urllib.error.HTTPError as error:
            return Response(error.code, error.read(), dict(error.headers))

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, payload: Any = None, **kwargs: Any) -> Response:
        return self.request("POST", path, payload, **kwargs)

    def put(self, path: str, payload: Any = None, **kwargs: Any) -> Response:
        return self.request("PUT", path, payload, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Response:
        return self.request("DELETE", path, **kwargs)

    # The booking API, by name
    def create_order(self, flight_id: str, seats: list[str], *, key: str | None = None) -> Response:
        return self.post("/api/orders", {"flightId": flight_id, "seats": seats}, key=key)

    def status(self, order_id: str) -> dict[str, Any]:
        reply = self.get(f"/api/orders/{order_id}/status")
        assert reply.status == 200, reply.text
        return reply.json

    def wait_for_status(self, order_id: str, *states: str, timeout: float = 30) -> dict[str, Any]:
        return wait_for(
            lambda: (s := self.status(order_id))["status"] in states and s,
            timeout=timeout,
            what=f"order {order_id} to reach {' or '.join(states)}",
        )


def wait_for(
    check: Callable[[], T], *, timeout: float = 10, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)

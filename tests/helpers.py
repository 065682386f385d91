"""Test helpers: a real HTTP client with its own cookies (one per customer), and bounded waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from tools.http_client import Response, Session

T = TypeVar("T")


class ApiClient(Session):
    """One customer's browser session, speaking real HTTP to the live server (tools/http_client.py:
    its cookies, ``headers`` sent with every request, ``key=`` as the Idempotency-Key)."""

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

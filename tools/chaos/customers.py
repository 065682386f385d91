"""The chaos suite's customers: each books again and again, always with an Idempotency-Key, and
retries as a careful client would; every request and its answer goes into the journal."""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from orders.workflow_contract import TERMINAL_STATES
from tools.chaos.stack import HOLD_SECONDS, PAYMENT_WINDOW_SECONDS, ChaosStack
from tools.http_client import Session

# Seats the customers want: few enough that they race for them, enough that booking goes on
# for the whole run (a sold seat is gone).
WANTED = [("fl-101", f"{row}{letter}") for row in range(1, 21) for letter in "ABCDEF"] + [
    ("fl-202", f"{row}{letter}") for row in range(1, 20) for letter in "ABCD"
]
CODES = [("00000", 35), ("99999", 15), ("88888", 5), ("random", 25), ("abandon", 10), ("walk away", 10)]


@dataclass
class Call:
    customer: int
    method: str
    path: str
    body: object
    key: str | None
    status: int  # 0: no answer (the connection failed or timed out)
    reply: dict
    started: float
    ended: float


class Journal:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.owner: dict[str, int] = {}  # order id -> customer that was told of it

    def add(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)
            order_id = call.reply.get("orderId") if isinstance(call.reply, dict) else None
            if call.status in (200, 201, 202) and order_id:
                self.owner.setdefault(order_id, call.customer)


class Shopper(threading.Thread):
    """A customer who books again and again until ``deadline``, retrying as a careful client does."""

    def __init__(self, number: int, url: str, journal: Journal, seed: int, deadline: float) -> None:
        super().__init__(name=f"customer-{number}", daemon=True)
        self.number, self.journal, self.deadline = number, journal, deadline
        self.client = Session(url, timeout=20)
        self.rng = random.Random(seed * 1000 + number)  # noqa: S311 (a reproducible load, not secrets)

    def send(self, method: str, path: str, body: object = None, *, retries: int = 6) -> Call:
        """One request, retried with the same key while its answer is not final."""
        key = str(uuid.uuid4()) if method != "GET" else None
        for attempt in range(retries):
            started = time.monotonic()
            try:
                status, reply, headers = self.client.call(method, path, body, key)
            except OSError:
                status, reply, headers = 0, {}, {}
            call = Call(self.number, method, path, body, key, status, reply, started, time.monotonic())
            self.journal.add(call)
            pending = status == 202 and reply.get("pending")
            if status not in (0, 409, 503) and not pending:
                return call
            if status == 409 and reply.get("error") != "IDEMPOTENCY_KEY_IN_USE":
                return call
            if pending and attempt >= 1:  # handed over; follow the order instead
                return call
            time.sleep(min(float(headers.get("Retry-After", 1)), 3) * (1 + attempt / 2))
        return call

    def status(self, order_id: str) -> dict:
        call = self.send("GET", f"/api/orders/{order_id}/status", retries=3)
        return call.reply if call.status == 200 else {}

    def follow(self, order_id: str, until: AbstractSet[str], seconds: float) -> dict:
        end = time.monotonic() + seconds
        state: dict = {}
        while time.monotonic() < end:
            state = self.status(order_id)
            if state.get("status") in until:
                return state
            time.sleep(0.5)
        return state

    def run(self) -> None:
        for _ in range(200):  # bounded in count as well as in time
            if time.monotonic() > self.deadline:
                return
            self.book_once()

    def book_once(self) -> None:
        flight = self.rng.choice(["fl-101", "fl-202"])
        # Half the customers aim at the first rows, where they race each other.
        wanted = [(f, seat) for f, seat in WANTED if f == flight]
        if self.rng.random() < 0.5:
            wanted = wanted[:12]
        seats = [seat for _, seat in self.rng.sample(wanted, self.rng.choice([1, 1, 2]))]
        created = self.send("POST", "/api/orders", {"flightId": flight, "seats": seats})
        order_id = created.reply.get("orderId") if created.status in (201, 202) else None
        if not order_id:
            time.sleep(0.3)
            return
        state = self.follow(order_id, {"SEATS_RESERVED", *TERMINAL_STATES}, 15)
        if state.get("status") != "SEATS_RESERVED":
            return
        if self.rng.random() < 0.3:
            others = [seat for f, seat in WANTED[:200] if f == flight and seat not in seats]
            self.send("PUT", f"/api/orders/{order_id}/seats", {"seats": [self.rng.choice(others)]})
        choice = self.rng.choices([c for c, _ in CODES], [w for _, w in CODES])[0]
        if choice == "walk away":
            return
        if choice == "abandon":
            self.send("DELETE", f"/api/orders/{order_id}")
        else:
            code = f"{self.rng.randrange(1, 88888):05d}" if choice == "random" else choice
            self.send("POST", f"/api/orders/{order_id}/pay", {"paymentCode": code})
        self.follow(order_id, TERMINAL_STATES, HOLD_SECONDS + PAYMENT_WINDOW_SECONDS + 5)


def settle(stack: ChaosStack, journal: Journal, shoppers: list[Shopper], seconds: float) -> None:
    """Follow every order to its end, each as its own customer would (that is also what settles
    a request whose answer was late)."""
    clients = {shopper.number: shopper.client for shopper in shoppers}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        live = [order for order in stack.orders() if order["state"] not in TERMINAL_STATES]
        if not live:
            return
        for order in live:
            client = clients.get(journal.owner.get(order["id"], -1))
            if client is None:
                continue
            with contextlib.suppress(OSError):
                client.call("GET", f"/api/orders/{order['id']}/status")
        time.sleep(1)

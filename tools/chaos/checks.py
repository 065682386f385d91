"""The chaos suite's invariants, checked from PostgreSQL, Redis, Temporal and the API: the seats
(none sold twice, none held by an ended order, none changed by a refused request), the orders
(none stuck, none a phantom), the answers (no 5xx outside a fault) and the money."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
import redis

from common.money import Money as MoneyAmount
from orders.workflow_contract import TERMINAL_STATES, WORKFLOW_ID_PREFIX
from tools.chaos.customers import Journal
from tools.chaos.faults import Fault
from tools.chaos.stack import ChaosStack
from tools.http_client import Session


@dataclass
class Findings:
    violations: list[str] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    stuck: list[dict] = field(default_factory=list)  # the rows of orders that never ended
    diagnosis: list[str] = field(default_factory=list)  # what the stores and Temporal say of them

    def fail(self, message: str) -> None:
        self.violations.append(message)


class HoldSampler(threading.Thread):
    """Watches Redis: when was each order last seen holding a seat (for the release lateness)."""

    def __init__(self, stack: ChaosStack, stop: threading.Event) -> None:
        super().__init__(name="hold-sampler", daemon=True)
        self.stack, self.stop = stack, stop
        self.last_seen: dict[str, float] = {}  # order id -> wall-clock seconds

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                owners = self.stack.holds().values()
            except redis.RedisError:
                continue
            now = time.time()
            for owner in owners:
                self.last_seen[owner] = now


def check_sales(stack: ChaosStack, findings: Findings, when: str) -> None:
    with stack.database() as db:
        doubles = db.execute(
            "SELECT b.flight_id, s.code, count(*) FROM flights_bookedseat b "
            "JOIN flights_seat s ON s.id = b.seat_id GROUP BY b.flight_id, s.code HAVING count(*) > 1"
        ).fetchall()
        for flight, seat, count in doubles:
            findings.fail(f"{when}: seat {flight} {seat} sold {count} times")
        unconfirmed = db.execute(
            "SELECT b.order_id, o.state FROM flights_bookedseat b JOIN orders_order o ON o.id = b.order_id "
            "WHERE o.state <> 'CONFIRMED'"
        ).fetchall()
        for order_id, state in unconfirmed:
            findings.fail(f"{when}: a seat is sold to {order_id}, which is {state}")
        overlap = db.execute(
            "SELECT a.id, b.id FROM orders_order a JOIN orders_order b "
            "ON a.flight_id = b.flight_id AND a.id < b.id "
            "WHERE a.state = 'CONFIRMED' AND b.state = 'CONFIRMED' AND a.seats && b.seats"
        ).fetchall()
        for first, second in overlap:
            findings.fail(f"{when}: confirmed orders {first} and {second} share a seat")


def check_phantoms(
    stack: ChaosStack, journal: Journal, findings: Findings, when: str, *, grace: float
) -> None:
    """Every order that exists was answered to its customer (orders younger than ``grace``
    seconds may still be waiting for their answer)."""
    with stack.database() as db:
        rows = db.execute(
            "SELECT id FROM orders_order WHERE created_at < now() - make_interval(secs => %s)", (grace,)
        ).fetchall()
    with journal.lock:
        told = set(journal.owner)
    for (order_id,) in rows:
        if order_id not in told:
            findings.fail(f"{when}: order {order_id} exists, but no customer was ever given its id")


@dataclass
class Money:
    """The gateway's ledger at the end, the three invariants of exactly-once money, and its amounts."""

    charges: int = 0  # charges made (live or refunded since)
    live: int = 0
    refunded: int = 0
    voided: int = 0  # keys given up before anything was charged
    confirmed: int = 0
    several_live: list[str] = field(default_factory=list)  # orders with more than one live charge
    confirmed_without_one: list[str] = field(default_factory=list)  # CONFIRMED, not exactly one
    ended_with_money: list[str] = field(default_factory=list)  # ended without seats, still charged
    approvals_shown: int = 0  # attempts the pages showed as approved (SUCCEEDED or REFUNDED)
    replayed: int = 0  # retries the gateway answered with an earlier attempt's approval
    # Amounts, per currency, in minor units: charged, refunded, and the CONFIRMED orders' totals.
    amounts: list[tuple[str, int, int, int]] = field(default_factory=list)
    wrong_amount: list[str] = field(default_factory=list)  # charged other than the order's total
    unbalanced: list[str] = field(default_factory=list)  # currencies where charged - refunded != sold

    def lines(self) -> list[str]:
        def verdict(found: list[str]) -> str:
            return "ok" if not found else f"VIOLATED by {len(found)}: {', '.join(found[:5])}"

        def shown(amount: int, currency: str) -> str:
            return MoneyAmount(amount, currency).format() if currency else f"{amount} (no currency)"

        sums = "; ".join(
            f"charged {shown(charged, currency)}, refunded {shown(refunded, currency)}, "
            f"CONFIRMED orders' totals {shown(sold, currency)}"
            for currency, charged, refunded, sold in self.amounts
        )
        return [
            f"\nmoney: {self.charges} charges ({self.live} live, {self.refunded} refunded), "
            f"{self.voided} keys voided before any charge, {self.approvals_shown} attempts shown approved, "
            f"{self.replayed} retries answered with an earlier approval (charged once)",
            f"  amounts: {sums or 'nothing charged'}",
            f"  at most one live charge per order: {verdict(self.several_live)}",
            f"  every CONFIRMED order has exactly one ({self.confirmed} orders): "
            + verdict(self.confirmed_without_one),
            f"  an order that ended without its seats has none: {verdict(self.ended_with_money)}",
            f"  every charge is its order's total, every refund its charge: {verdict(self.wrong_amount)}",
            f"  charged - refunded = the CONFIRMED orders' totals: {verdict(self.unbalanced)}",
        ]


def check_money(stack: ChaosStack, findings: Findings) -> Money:
    with stack.database() as db:
        money = Money(
            *db.execute(
                "SELECT count(*) FILTER (WHERE status <> 'VOIDED'), "
                "count(*) FILTER (WHERE status = 'CHARGED'), count(*) FILTER (WHERE status = 'REFUNDED'), "
                "count(*) FILTER (WHERE status = 'VOIDED') FROM payments_charge"
            ).fetchone()  # type: ignore[misc]
        )
        money.several_live = [
            row[0]
            for row in db.execute(
                "SELECT order_id FROM payments_charge WHERE status = 'CHARGED' "
                "GROUP BY order_id HAVING count(*) > 1"
            )
        ]
        confirmed = db.execute(
            "SELECT o.id, count(c.id) FROM orders_order o LEFT JOIN payments_charge c "
            "ON c.order_id = o.id AND c.status = 'CHARGED' WHERE o.state = 'CONFIRMED' GROUP BY o.id"
        ).fetchall()
        money.confirmed = len(confirmed)
        money.confirmed_without_one = [order_id for order_id, live in confirmed if live != 1]
        money.ended_with_money = [
            f"{order_id} ({state})"
            for order_id, state in db.execute(
                "SELECT DISTINCT o.id, o.state FROM orders_order o "
                "JOIN payments_charge c ON c.order_id = o.id "
                "WHERE c.status = 'CHARGED' AND o.state IN ('FAILED', 'EXPIRED', 'CANCELLED')"
            )
        ]
        money.wrong_amount = [
            f"{charge_id} ({amount} {currency}, order {order_id} {total} {order_currency})"
            for charge_id, amount, currency, order_id, total, order_currency in db.execute(
                "SELECT c.id, c.amount, c.currency, o.id, o.total_amount, o.currency FROM payments_charge c "
                "JOIN orders_order o ON o.id = c.order_id WHERE c.status <> 'VOIDED' AND ("
                "c.amount IS DISTINCT FROM o.total_amount OR c.currency <> o.currency "
                "OR (c.status = 'REFUNDED' AND c.refunded_amount <> c.amount))"
            )
        ]
        money.amounts = [
            (currency, int(charged), int(refunded), int(sold))
            for currency, charged, refunded, sold in db.execute(
                "WITH money AS ("
                "  SELECT currency, amount AS charged, refunded_amount AS refunded, 0 AS sold "
                "  FROM payments_charge WHERE status <> 'VOIDED' "
                "  UNION ALL SELECT currency, 0, 0, total_amount FROM orders_order WHERE state = 'CONFIRMED'"
                ") SELECT currency, sum(charged), sum(refunded), sum(sold) FROM money "
                "GROUP BY currency ORDER BY currency"
            )
        ]
        money.unbalanced = [
            f"{currency or '(none)'} {charged} - {refunded} != {sold}"
            for currency, charged, refunded, sold in money.amounts
            if charged - refunded != sold
        ]
        money.approvals_shown, money.replayed = db.execute(
            "SELECT count(*) FILTER (WHERE outcome IN ('SUCCEEDED', 'REFUNDED')), "
            "count(*) FILTER (WHERE outcome = 'ALREADY_APPROVED') FROM payments_paymentattempt"
        ).fetchone()  # type: ignore[misc]
    for order_id in money.several_live:
        findings.fail(f"end: order {order_id} has more than one live charge")
    for order_id in money.confirmed_without_one:
        findings.fail(f"end: CONFIRMED order {order_id} does not have exactly one live charge")
    for order in money.ended_with_money:
        findings.fail(f"end: order {order} ended without its seats, and its charge was not refunded")
    for charge in money.wrong_amount:
        findings.fail(f"end: charge {charge} is not what the order's total says")
    for line in money.unbalanced:
        findings.fail(f"end: the money does not balance: {line}")
    return money


def check_final(stack: ChaosStack, journal: Journal, sampler: HoldSampler, findings: Findings) -> None:
    all_orders = stack.orders()
    by_id = {order["id"]: order for order in all_orders}
    for order in all_orders:
        if order["state"] not in TERMINAL_STATES:
            findings.fail(f"end: order {order['id']} is stuck in {order['state']}")
            findings.stuck.append(order)
    # No seat held for an order that has ended.
    for key, owner_id in stack.holds().items():
        if by_id.get(owner_id, {}).get("state") in TERMINAL_STATES:
            findings.fail(f"end: {key} is still held by {owner_id}, which has ended")
    # How late each ended order's seats came free (not asserted: these machines are noisy).
    with stack.database() as db:
        ended: dict[str, datetime] = dict(
            db.execute(
                "SELECT order_id, max(at) FROM orders_orderevent WHERE state IN "
                "('FAILED', 'EXPIRED', 'CANCELLED') GROUP BY order_id"
            ).fetchall()
        )
    for order_id, at in ended.items():
        row = by_id.get(order_id)
        if row is None or order_id not in sampler.last_seen:
            continue
        due = row["hold_expires_at"] if row["state"] == "EXPIRED" and row["hold_expires_at"] else at
        findings.lateness.append(max(0.0, sampler.last_seen[order_id] - due.timestamp()))
    check_refusals_changed_nothing(stack, journal, findings)
    asyncio.run(check_workflows(stack, by_id, findings))


def check_refusals_changed_nothing(stack: ChaosStack, journal: Journal, findings: Findings) -> None:
    """A payment attempt, a cancellation or a seat change only when some request for it got a 2xx."""
    accepted: dict[tuple[str, str], list[object]] = defaultdict(list)
    for call in journal.calls:
        parts = call.path.strip("/").split("/")
        if len(parts) >= 3 and parts[1] == "orders" and 200 <= call.status < 300:
            accepted[(parts[2], f"{call.method} {'/'.join(parts[3:])}")].append(call.body)
    with stack.database() as db:
        paid = [row[0] for row in db.execute("SELECT DISTINCT order_id FROM payments_paymentattempt")]
        cancelled = [
            row[0]
            for row in db.execute(
                "SELECT id FROM orders_order WHERE state = 'CANCELLED' AND last_error LIKE 'You cancelled%%'"
            )
        ]
        changes = db.execute(
            "SELECT order_id, seats FROM orders_orderevent e WHERE state = 'SEATS_RESERVED' AND version > "
            "(SELECT min(version) FROM orders_orderevent f WHERE f.order_id = e.order_id "
            "AND f.state = 'SEATS_RESERVED')"
        ).fetchall()
    for order_id in paid:
        if not accepted.get((order_id, "POST pay")):
            findings.fail(f"end: {order_id} has payment attempts, but no payment request was accepted")
    for order_id in cancelled:
        if not accepted.get((order_id, "DELETE ")):
            findings.fail(f"end: {order_id} was cancelled, but no cancellation was accepted")
    for order_id, seats in changes:
        asked = [
            body.get("seats") for body in accepted.get((order_id, "PUT seats"), []) if isinstance(body, dict)
        ]
        if seats not in asked:
            findings.fail(f"end: {order_id} changed to {seats}, which no accepted request asked for")


async def check_workflows(stack: ChaosStack, by_id: dict[str, dict], findings: Findings) -> None:
    client = await stack.temporal()
    running = [
        execution.id.removeprefix(WORKFLOW_ID_PREFIX)
        async for execution in client.list_workflows('ExecutionStatus="Running"')
    ]
    for order_id in running:
        if by_id.get(order_id, {}).get("state") in TERMINAL_STATES:
            findings.fail(f"end: the workflow of {order_id} still runs, but its order has ended")


def check_after_faults(
    stack: ChaosStack, faults: list[Fault], journal: Journal, findings: Findings, stop: threading.Event
) -> None:
    """Once each fault's window is over: no double sale, no phantom (the stack has recovered)."""
    for fault in faults:
        while not stop.is_set() and (not fault.over or time.monotonic() < fault.window()[1]):
            time.sleep(0.5)
        if stop.is_set():
            return
        try:
            check_sales(stack, findings, f"after {fault.name}")
            check_phantoms(stack, journal, findings, f"after {fault.name}", grace=30)
        except psycopg.Error as error:
            findings.fail(f"after {fault.name}: PostgreSQL did not answer ({error})")


def check_five_hundreds(journal: Journal, faults: list[Fault], findings: Findings) -> None:
    windows = [fault.window() for fault in faults]
    for call in journal.calls:
        if call.status == 500:
            findings.fail(f"{call.method} {call.path} answered 500: {call.reply}")
        elif call.status >= 500 and not any(
            low <= call.ended <= high or low <= call.started <= high for low, high in windows
        ):
            nearest = min(faults, key=lambda fault: abs(fault.started - call.started), default=None)
            where = (
                f" ({call.reply.get('error')}, {call.ended - nearest.over:+.1f} s after {nearest.name}"
                f" was over, {call.ended - call.started:.1f} s to answer)"
                if nearest
                else ""
            )
            outside = f"{call.method} {call.path} answered {call.status} outside every fault's window"
            findings.fail(outside + where)


def recovers(stack: ChaosStack, findings: Findings) -> None:
    """After everything: a new customer books a free seat and it confirms; health is 200."""
    client = Session(stack.url, timeout=20)
    status, health, _ = client.call("GET", "/healthz")
    if status != 200:
        findings.fail(f"end: /healthz is {status}: {health}")
    _, flight, _ = client.call("GET", "/api/flights/fl-303")
    free = [
        seat["id"] for seat in flight.get("seatMap", {}).get("seats", []) if seat["status"] == "available"
    ]
    status, created, _ = client.call(
        "POST", "/api/orders", {"flightId": "fl-303", "seats": free[:1]}, str(uuid.uuid4())
    )
    order_id = created.get("orderId")
    if status not in (201, 202) or not order_id:
        findings.fail(f"end: a new booking was refused after the run: {status} {created}")
        return
    for _ in range(60):
        _, state, _ = client.call("GET", f"/api/orders/{order_id}/status")
        if state.get("status") == "SEATS_RESERVED":
            break
        time.sleep(0.5)
    client.call("POST", f"/api/orders/{order_id}/pay", {"paymentCode": "00000"}, str(uuid.uuid4()))
    for _ in range(60):
        _, state, _ = client.call("GET", f"/api/orders/{order_id}/status")
        if state.get("status") in TERMINAL_STATES:
            break
        time.sleep(0.5)
    if state.get("status") != "CONFIRMED":
        findings.fail(f"end: a new booking after the run did not confirm: {state}")

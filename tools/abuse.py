"""`make abuse`: bots try to hoard a flight from one address while customers from other addresses
book it; then check that the limits on one client held (docs/CONFIGURATION.md, "Limits").

    python -m tools.abuse [--short] [--seconds S] [--customers N] [--limits-off]

It starts a stack of its own (as `make chaos` does: gunicorn with two processes, the worker,
Temporal, PostgreSQL, Redis) with the limits on, at their defaults, and 127.0.0.1 as the trusted
proxy, so that every client says its address in X-Forwarded-For (documentation addresses: the
traffic itself only goes to 127.0.0.1). Then, at once:

  - cookie-less bots: every request a new session, each creating 9-seat orders on the target
    flight as fast as they are answered, ignoring Retry-After;
  - a one-session bot: one order, then more orders on the same flight and seat changes, as fast
    as it can;
  - a poller bot: reads the flight list in a tight loop;
  - customers, each from an address of its own: hold two seats, pay 00000, follow the order to
    CONFIRMED, as a person would (a 2 s poll).

All bots share one address. It checks that the seats the bots' orders hold in Redis (the holds
themselves) never exceed ADDRESS_MAX_SEATS_HELD, and the one-session bot's never
SESSION_MAX_SEATS_HELD; that every refusal a bot gets is a 429 with a whole number of seconds in
Retry-After and one of RATE_LIMITED, TOO_MANY_SEATS_HELD, ORDER_ALREADY_OPEN; that every customer's
booking confirms without a single 429; and that nothing answers 5xx. It prints the figures and
exits 1 on any violation. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from redis import RedisError

from devstack.supervisor import log
from orders.workflow_contract import TERMINAL_STATES
from tools.chaos.stack import ChaosStack
from tools.http_client import Session
from tools.stats import median_and_max

FLIGHT = "fl-202"  # 19 rows of four seats: 76 in all
ROWS, LETTERS = 19, "ABCD"
BOT_ADDRESS = "203.0.113.66"
CUSTOMER_ROWS = range(1, 7)  # customers book here (24 seats); bots go for the rest
LIMIT_CODES = {"RATE_LIMITED", "TOO_MANY_SEATS_HELD", "ORDER_ALREADY_OPEN"}
# The defaults of booking_site/settings.py, which the stack runs with.
ADDRESS_MAX_SEATS_HELD = 30
SESSION_MAX_SEATS_HELD = 9
POLL_SECONDS = 2.0
MAX_REQUESTS_PER_BOT = 20_000  # a bound on every loop, whatever the clock says


def client_from(url: str, address: str, *, keep_cookie: bool = True) -> Session:
    """One browser session (its cookie, unless ``keep_cookie`` is off) from one address, which the
    stack trusts the X-Forwarded-For of (it is the bots' and the customers' only difference)."""
    return Session(url, timeout=30, headers={"X-Forwarded-For": address}, keep_cookies=keep_cookie)


@dataclass
class Tally:
    """What the bots and customers were answered, and what was wrong with it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: Counter[str] = field(default_factory=Counter)  # "bots 429 RATE_LIMITED"
    violations: list[str] = field(default_factory=list)
    bot_orders: set[str] = field(default_factory=set)
    session_bot_orders: set[str] = field(default_factory=set)
    booked_seconds: list[float] = field(default_factory=list)

    def record(self, who: str, status: int, reply: dict, headers: dict[str, str]) -> None:
        code = reply.get("error", "") if status >= 400 else ""
        with self.lock:
            self.answers[f"{who} {status} {code}".strip()] += 1
            if status >= 500:
                self.violations.append(f"{who}: {status} {reply}")
            elif status == 429:
                retry_after = headers.get("Retry-After", "")
                if code not in LIMIT_CODES or not retry_after.isdigit() or int(retry_after) < 1:
                    self.violations.append(f"{who}: 429 without a limit code or Retry-After: {reply}")
                if who == "customers":
                    self.violations.append(f"a customer was refused as over a limit: {reply}")
            elif status >= 400 and who != "customers":
                self.violations.append(f"{who}: refused with {status}, not 429: {reply}")

    def fail(self, what: str) -> None:
        with self.lock:
            self.violations.append(what)


def seats_of(rows: range | list[int]) -> list[str]:
    return [f"{row}{letter}" for row in rows for letter in LETTERS]


BOT_SEATS = seats_of(range(CUSTOMER_ROWS.stop, ROWS + 1))  # 52 seats: more than any limit allows


def cookieless_bot(url: str, number: int, tally: Tally, until: float) -> None:
    """A new session for every request: 9-seat orders, one after the other, never waiting."""
    mine = BOT_SEATS[number::2]  # two such bots, each its own seats: they never race each other
    for sent in range(MAX_REQUESTS_PER_BOT):
        if time.monotonic() > until:
            return
        start = (sent * 9) % max(1, len(mine) - 8)
        status, reply, headers = client_from(url, BOT_ADDRESS, keep_cookie=False).call(
            "POST", "/api/orders", {"flightId": FLIGHT, "seats": mine[start : start + 9]}
        )
        if status == 400 and reply.get("error") == "INVALID_SEATS":
            continue  # its own earlier order still holds some of them: not a refusal of a limit
        tally.record("bots", status, reply, headers)
        if status in (201, 202):
            with tally.lock:
                tally.bot_orders.add(reply["orderId"])


def one_session_bot(url: str, tally: Tally, until: float) -> None:
    """One cookie: an order, then another on the same flight, and seat changes, as fast as it can."""
    bot = client_from(url, BOT_ADDRESS)
    seats = BOT_SEATS[-9:]
    order_id = None
    for sent in range(MAX_REQUESTS_PER_BOT):
        if time.monotonic() > until:
            return
        if order_id is None or sent % 2:
            status, reply, headers = bot.call("POST", "/api/orders", {"flightId": FLIGHT, "seats": seats})
            if status in (201, 202):
                order_id = reply["orderId"]
                with tally.lock:
                    tally.bot_orders.add(order_id)
                    tally.session_bot_orders.add(order_id)
        else:
            seats = [*seats[1:], seats[0]]  # the same seats in another order is no change
            change = seats[:8] if sent % 4 == 0 else seats  # drop one, or take it back
            status, reply, headers = bot.call("PUT", f"/api/orders/{order_id}/seats", {"seats": change})
            if status == 409:  # its hold ran out or it was changed too often: start again
                order_id = None
                continue
        if status == 400 and reply.get("error") == "INVALID_SEATS":
            continue
        tally.record("bots", status, reply, headers)


def poller_bot(url: str, tally: Tally, until: float) -> None:
    poller = client_from(url, BOT_ADDRESS)
    for _ in range(MAX_REQUESTS_PER_BOT):
        if time.monotonic() > until:
            return
        tally.record("bots", *poller.call("GET", "/api/flights"))


def customer(url: str, number: int, tally: Tally, until: float) -> None:
    """A person elsewhere: two seats of their own, pay, follow the order to its end."""
    person = client_from(url, f"198.51.100.{10 + number}")
    seats = seats_of(CUSTOMER_ROWS)[number * 2 : number * 2 + 2]
    started = time.monotonic()
    status, reply, headers = person.call("POST", "/api/orders", {"flightId": FLIGHT, "seats": seats})
    tally.record("customers", status, reply, headers)
    if status not in (201, 202):
        tally.fail(f"customer {number} could not hold {seats}: {status} {reply}")
        return
    order_id = reply["orderId"]
    # A 202: the hold is not confirmed yet. The page says so, and the person pays once it is.
    state = follow(person, order_id, {"SEATS_RESERVED", *TERMINAL_STATES}, tally, until)
    if state == "SEATS_RESERVED":
        tally.record(
            "customers", *person.call("POST", f"/api/orders/{order_id}/pay", {"paymentCode": "00000"})
        )
        state = follow(person, order_id, TERMINAL_STATES, tally, until)
    if state != "CONFIRMED":
        tally.fail(f"customer {number}'s order {order_id} ended {state or 'unfinished'}")
        return
    with tally.lock:
        tally.booked_seconds.append(time.monotonic() - started)


def follow(person: Session, order_id: str, until: AbstractSet[str], tally: Tally, deadline: float) -> str:
    """Poll the order's status until it is one of ``until`` (or the run is long over): its state."""
    state = ""
    while time.monotonic() < deadline + 60:
        status, reply, headers = person.call("GET", f"/api/orders/{order_id}/status")
        tally.record("customers", status, reply, headers)
        state = reply.get("status", "")
        if state in until:
            break
        time.sleep(POLL_SECONDS / 4)  # a little quicker than the page, to time the booking
    return state


class HeldSampler(threading.Thread):
    """Every 0.2 s: how many seats the bots' orders hold in Redis (the holds themselves)."""

    def __init__(self, stack: ChaosStack, tally: Tally, stop: threading.Event) -> None:
        super().__init__(name="held-sampler", daemon=True)
        self.stack, self.tally, self.stop_event = stack, tally, stop
        self.max_by_address = 0
        self.max_by_session = 0
        self.samples = 0

    def run(self) -> None:
        while not self.stop_event.wait(0.2):
            try:
                held = Counter(self.stack.holds(FLIGHT).values())
            except (OSError, RedisError):
                continue
            with self.tally.lock:
                by_address = sum(count for order, count in held.items() if order in self.tally.bot_orders)
                by_session = sum(
                    count for order, count in held.items() if order in self.tally.session_bot_orders
                )
            self.samples += 1
            self.max_by_address = max(self.max_by_address, by_address)
            self.max_by_session = max(self.max_by_session, by_session)


def database_check(stack: ChaosStack, tally: Tally) -> int:
    """The seats the bots' address holds by the order rows, at the end (the limits' own count)."""
    with stack.database() as connection:
        row = connection.execute(
            "SELECT coalesce(sum(cardinality(seats)), 0) FROM orders_order WHERE client_address = %s "
            "AND state IN ('CREATED', 'SEATS_RESERVED', 'PAYMENT_PENDING', 'PAYMENT_PROCESSING')",
            [BOT_ADDRESS],
        ).fetchone()
    return int(row[0]) if row else 0


def report(tally: Tally, sampler: HeldSampler, seconds: float, customers: int, by_rows: int) -> str:
    bots = {answer: n for answer, n in tally.answers.items() if answer.startswith("bots")}
    sent = sum(bots.values())
    lines = [
        f"abuse: {seconds:.0f} s of bots from {BOT_ADDRESS} against {FLIGHT} (76 seats)",
        f"bot requests: {sent} ({sent / seconds:.0f}/s); answers: "
        + ", ".join(f"{answer.removeprefix('bots ')} x{n}" for answer, n in sorted(bots.items())),
        f"bot orders made: {len(tally.bot_orders)}",
        f"seats the bots held at most (Redis, {sampler.samples} samples): {sampler.max_by_address} "
        f"(limit {ADDRESS_MAX_SEATS_HELD}); the one-session bot: {sampler.max_by_session} "
        f"(limit {SESSION_MAX_SEATS_HELD}); by the order rows at the end: {by_rows}",
        f"customers confirmed: {len(tally.booked_seconds)}/{customers}"
        + (f", hold to CONFIRMED {median_and_max(tally.booked_seconds)}" if tally.booked_seconds else ""),
        "customer answers: "
        + ", ".join(
            f"{answer.removeprefix('customers ')} x{n}"
            for answer, n in sorted(tally.answers.items())
            if answer.startswith("customers")
        ),
        f"violations: {len(tally.violations)}",
        *(f"  - {violation}" for violation in tally.violations[:20]),
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.abuse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="about 15 s of bots (part of make test)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds of bots (default 40, short 15)")
    parser.add_argument("--customers", type=int, default=6, help="customers, each from its own address")
    parser.add_argument(
        "--limits-off", action="store_true", help="RATE_LIMITS=off: what the bots get without the limits"
    )
    args = parser.parse_args(argv)
    seconds = args.seconds or (15.0 if args.short else 40.0)
    customers = max(1, min(args.customers, len(seats_of(CUSTOMER_ROWS)) // 2))
    stack = ChaosStack("abuse")
    stack.env.update(
        RATE_LIMITS="off" if args.limits_off else "on",
        TRUSTED_PROXIES="127.0.0.1/32",
        SEAT_RESERVATION_TIMEOUT="5m",  # the bots' holds last the whole run
        PAYMENT_FAILURE_RATE="0",
    )
    tally, stop = Tally(), threading.Event()
    try:
        log(f"abuse: {seconds:.0f} s of bots, {customers} customers")
        stack.start()
        sampler = HeldSampler(stack, tally, stop)
        sampler.start()
        until = time.monotonic() + seconds
        threads = [
            threading.Thread(target=one_session_bot, args=(stack.url, tally, until), daemon=True),
            *(
                threading.Thread(target=cookieless_bot, args=(stack.url, n, tally, until), daemon=True)
                for n in range(2)
            ),
            threading.Thread(target=poller_bot, args=(stack.url, tally, until), daemon=True),
        ]
        for thread in threads:
            thread.start()
        time.sleep(min(3.0, seconds / 4))  # the bots first: the customers come to a flight under attack
        people = [
            threading.Thread(target=customer, args=(stack.url, n, tally, until), daemon=True)
            for n in range(customers)
        ]
        for thread in people:
            thread.start()
        for thread in [*threads, *people]:
            thread.join(timeout=max(1.0, until + 90 - time.monotonic()))
        stop.set()
        sampler.join(timeout=5)
        by_rows = database_check(stack, tally)
        if sampler.max_by_address > ADDRESS_MAX_SEATS_HELD or by_rows > ADDRESS_MAX_SEATS_HELD:
            tally.fail(f"the bots' address held {max(sampler.max_by_address, by_rows)} seats")
        if sampler.max_by_session > SESSION_MAX_SEATS_HELD:
            tally.fail(f"the one-session bot held {sampler.max_by_session} seats")
        if not any(answer.startswith("bots 429") for answer in tally.answers):
            tally.fail("no bot was ever refused: the limits are not on")
        print(report(tally, sampler, seconds, customers, by_rows), flush=True)
    finally:
        stop.set()
        stack.stop(keep_logs=bool(tally.violations))
    return stack.verdict(tally.violations)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

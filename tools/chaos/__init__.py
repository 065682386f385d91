"""`make chaos`: customers book while the stack is broken on purpose; then check that nothing was
lost, nothing invented, and every answer told the truth.

    python -m tools.chaos [--short] [--seconds S] [--customers N] [--seed N]

It starts a stack of its own, every part a separate process (gunicorn, `manage.py runworker`,
the Temporal dev server persisted to a file, PostgreSQL, Redis without persistence), with short
rules (a 20 s hold, a quick simulated gateway). Customers create orders (some racing for the
same seats), change seats, pay with 00000, 99999 and other codes, abandon or walk away, always
with an Idempotency-Key, and retry as a careful client would (the same key, after Retry-After).
Meanwhile it injects faults: `kill -9` of the worker (several times), `kill -9` of Temporal and a
restart on the same file, a Redis FLUSHALL, a Redis stop and start (it comes back empty), and
PostgreSQL frozen (SIGSTOP of the server and its backends) for a few seconds, and once for longer
than a payment attempt's timeout while an attempt is under way (Temporal times it out and retries,
and the retry must not charge again).

After each fault, and at the end once every order has settled, it checks, from PostgreSQL,
Redis, Temporal and the API:
  - no seat sold twice, and every sold seat belongs to a CONFIRMED order;
  - no order stuck: every order final (or, during the run, live with a future deadline);
  - no seat still held by an order that has ended (how late each release came is reported);
  - every order that exists was answered to its customer (201 or 202 with its id): no phantom;
  - every request answered 4xx/5xx changed nothing (no payment attempt, cancellation or seat
    change that only a refused request asked for);
  - no 5xx outside a fault's window (a 500 anywhere is a violation), and the stack recovers by
    itself: a new booking confirms, and /healthz answers 200;
  - the money, from the gateway's ledger: at most one live charge per order, exactly one for a
    CONFIRMED order, none for an order that ended without its seats; every charge is its order's
    total (fixed when its seats were held) and every refund the whole charge, so that, per
    currency, charged - refunded = the CONFIRMED orders' totals; the report prints the amounts,
    charges, refunds and voided keys.
It prints a table and exits 1 on any violation. Every loop is bounded in count and time, and it
talks only to 127.0.0.1. `--short` (about a minute of load) is part of `make test`.
"""

"""The chaos suite's faults: what it breaks, when, and for how long."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from devstack.supervisor import log
from tools.chaos.stack import ChaosStack

FAULT_GRACE_SECONDS = 8.0  # how long after a fault is over its effects may still show


@dataclass
class Fault:
    at: float  # seconds into the load
    name: str
    inject: Callable[[ChaosStack], None]
    recover: Callable[[ChaosStack], None] | None = None
    lasts: float = 0.0  # seconds between inject and recover
    started: float = 0.0  # monotonic, when injected
    over: float = 0.0  # monotonic, when recovered

    def window(self) -> tuple[float, float]:
        return self.started, self.over + FAULT_GRACE_SECONDS


def _freeze_postgres(stack: ChaosStack) -> None:
    stack.frozen = stack.postgres_pids()
    for pid in stack.frozen:
        os.kill(pid, signal.SIGSTOP)


def _thaw_postgres(stack: ChaosStack) -> None:
    for pid in stack.frozen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


# Longer than a payment attempt's timeout (PAYMENT_VALIDATION_TIMEOUT, 2 s here) and its backoff:
# Temporal times the attempt out and retries it while PostgreSQL is still frozen.
PAYMENT_STALL_SECONDS = 7


def _stall_postgres_during_payment(stack: ChaosStack) -> None:
    """Freeze PostgreSQL while a payment attempt is under way (waits up to 10 s for one)."""
    deadline = time.monotonic() + 10
    with contextlib.suppress(psycopg.Error), stack.database() as db:
        query = "SELECT count(*) FROM payments_paymentattempt WHERE outcome = 'PENDING'"
        while time.monotonic() < deadline and not db.execute(query).fetchone()[0]:  # type: ignore[index]
            time.sleep(0.05)
    _freeze_postgres(stack)


def _flush_redis(stack: ChaosStack) -> None:
    stack.redis().flushall()


def plan(short: bool) -> list[Fault]:
    kill_worker = (lambda s: s.signal("worker", signal.SIGKILL), lambda s: s.start_worker())
    kill_temporal = (lambda s: s.signal("temporal", signal.SIGKILL), lambda s: s.start_temporal())
    stop_redis = (lambda s: s.signal("redis", signal.SIGTERM), lambda s: s.start_redis())
    stall_mid_payment = ("PostgreSQL stalled mid-payment", _stall_postgres_during_payment, _thaw_postgres)
    if short:
        return [
            Fault(5, "worker kill -9", *kill_worker, lasts=2),
            Fault(12, "PostgreSQL frozen", _freeze_postgres, _thaw_postgres, lasts=3),
            Fault(19, "Redis FLUSHALL", _flush_redis),
            Fault(24, "Temporal kill -9 + restart", *kill_temporal, lasts=2),
            Fault(29, *stall_mid_payment, lasts=PAYMENT_STALL_SECONDS),
            Fault(38, "Redis stop + start", *stop_redis, lasts=2),
            Fault(43, "worker kill -9", *kill_worker, lasts=1),
        ]
    return [
        Fault(8, "worker kill -9", *kill_worker, lasts=2),
        Fault(20, "PostgreSQL frozen", _freeze_postgres, _thaw_postgres, lasts=4),
        Fault(34, "Redis FLUSHALL", _flush_redis),
        Fault(42, "worker kill -9", *kill_worker, lasts=3),
        Fault(55, "Temporal kill -9 + restart", *kill_temporal, lasts=3),
        Fault(75, "Redis stop + start", *stop_redis, lasts=3),
        Fault(88, "worker kill -9", *kill_worker, lasts=1),
        Fault(96, "PostgreSQL frozen", _freeze_postgres, _thaw_postgres, lasts=2),
        Fault(105, "Temporal kill -9 + restart", *kill_temporal, lasts=2),
        Fault(115, "Redis FLUSHALL", _flush_redis),
        Fault(
            120,
            "PostgreSQL stalled mid-payment",
            _stall_postgres_during_payment,
            _thaw_postgres,
            lasts=PAYMENT_STALL_SECONDS,
        ),
    ]


def inject(stack: ChaosStack, faults: list[Fault], started: float, fail: Callable[[str], None]) -> None:
    """Each fault at its time; one that could not be injected is handed to ``fail``."""
    for fault in faults:
        delay = started + fault.at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        log(f"fault: {fault.name}")
        fault.started = time.monotonic()
        try:
            fault.inject(stack)
            if fault.recover is not None:
                time.sleep(fault.lasts)
                fault.recover(stack)
        except Exception as error:  # a fault that could not be injected is reported, not hidden
            fail(f"could not inject '{fault.name}': {type(error).__name__}: {error}")
        fault.over = time.monotonic()

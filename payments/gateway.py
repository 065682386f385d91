"""The simulated payment gateway: what a 5-digit code does, and how long it takes.

Test codes (also shown on every page):
    00000  always succeeds at once
    99999  always fails, after the usual latency, so every attempt runs (and shows) and the
           order ends FAILED
    88888  always outlasts the per-attempt timeout, so the timeout is seen working
Any other code fails PAYMENT_FAILURE_RATE of the time after PAYMENT_LATENCY_MIN..MAX.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

ALWAYS_SUCCEEDS = "00000"
ALWAYS_FAILS = "99999"
ALWAYS_TIMES_OUT = "88888"
TEST_CODES = {
    ALWAYS_SUCCEEDS: "always succeeds",
    ALWAYS_FAILS: "always fails (all attempts run)",
    ALWAYS_TIMES_OUT: "always times out",
}


@dataclass(frozen=True)
class Verdict:
    """What the gateway will answer, and after how many seconds."""

    approved: bool
    latency_seconds: float


@dataclass(frozen=True)
class Gateway:
    failure_rate: float
    latency_min_seconds: float
    latency_max_seconds: float
    timeout_seconds: float

    def verdict(self, code: str, *, rng: random.Random | None = None) -> Verdict:
        rng = rng or random.Random()
        if code == ALWAYS_SUCCEEDS:
            return Verdict(approved=True, latency_seconds=0.0)
        latency = rng.uniform(self.latency_min_seconds, self.latency_max_seconds)
        if code == ALWAYS_FAILS:
            return Verdict(approved=False, latency_seconds=latency)
        if code == ALWAYS_TIMES_OUT:
            return Verdict(approved=True, latency_seconds=self.timeout_seconds * 2 + 5)
        return Verdict(approved=rng.random() >= self.failure_rate, latency_seconds=latency)


def from_settings() -> Gateway:
    from django.conf import settings

    return Gateway(
        failure_rate=settings.PAYMENT_FAILURE_RATE,
        latency_min_seconds=settings.PAYMENT_LATENCY_MIN.total_seconds(),
        latency_max_seconds=settings.PAYMENT_LATENCY_MAX.total_seconds(),
        timeout_seconds=settings.PAYMENT_VALIDATION_TIMEOUT.total_seconds(),
    )

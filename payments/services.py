"""Records of payment attempts, written by the validate_payment activity as they happen."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from common import events, metrics
from payments.models import PaymentAttempt, PaymentOutcome

TIMED_OUT_MESSAGE = "Payment validation timed out"


def start_attempt(*, order_id: str, attempt: int, code: str) -> bool:
    """Record that an attempt started (idempotent). An earlier attempt still marked as validating
    was cut off by its timeout: returns whether there was one."""
    now = timezone.now()
    with transaction.atomic():
        cut_off = 0
        if attempt > 1:  # the first attempt has none before it
            cut_off = PaymentAttempt.objects.filter(
                order_id=order_id, attempt__lt=attempt, outcome=PaymentOutcome.PENDING
            ).update(outcome=PaymentOutcome.TIMED_OUT, error=TIMED_OUT_MESSAGE, finished_at=now)
            _count(PaymentOutcome.TIMED_OUT, cut_off)
        # One statement (INSERT ... ON CONFLICT DO UPDATE): the attempt, started afresh if this is
        # a retry of the same attempt whose first run was lost.
        PaymentAttempt.objects.bulk_create(
            [
                PaymentAttempt(
                    order_id=order_id,
                    attempt=attempt,
                    code_hint=f"***{code[-2:]}",
                    outcome=PaymentOutcome.PENDING,
                    error="",
                    started_at=now,
                    finished_at=None,
                )
            ],
            update_conflicts=True,
            unique_fields=["order", "attempt"],
            update_fields=["code_hint", "outcome", "error", "started_at", "finished_at"],
        )
    return bool(cut_off)


def finish_attempt(*, order_id: str, attempt: int, outcome: PaymentOutcome, error: str = "") -> bool:
    """Record how an attempt ended, unless it was recorded already (a late answer never rewrites
    an outcome): returns whether this call recorded it."""
    finished = PaymentAttempt.objects.filter(
        order_id=order_id, attempt=attempt, outcome=PaymentOutcome.PENDING
    ).update(outcome=outcome, error=error, finished_at=timezone.now())
    _count(outcome, finished)
    if finished:  # the page shows each attempt's outcome
        events.order_changed(order_id)
    return bool(finished)


def close_open_attempts(*, order_id: str) -> None:
    """Mark attempts that never finished (cut off by their timeout) as timed out."""
    closed = PaymentAttempt.objects.filter(order_id=order_id, outcome=PaymentOutcome.PENDING).update(
        outcome=PaymentOutcome.TIMED_OUT, error=TIMED_OUT_MESSAGE, finished_at=timezone.now()
    )
    _count(PaymentOutcome.TIMED_OUT, closed)


def refund(*, order_id: str) -> int:
    """Refund the order's approved payment (simulated). Idempotent; returns attempts refunded."""
    refunded = PaymentAttempt.objects.filter(order_id=order_id, outcome=PaymentOutcome.SUCCEEDED).update(
        outcome=PaymentOutcome.REFUNDED
    )
    _count(PaymentOutcome.REFUNDED, refunded)
    return refunded


def _count(outcome: str, attempts: int) -> None:
    """Count attempts whose record has just changed to ``outcome``, once the change commits: an
    update that finds the record written already changes no row, and counts nothing."""
    if attempts:
        transaction.on_commit(lambda: metrics.PAYMENT_ATTEMPTS.labels(outcome=outcome).inc(attempts))

"""Records of payment attempts, written by the validate_payment activity as they happen."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from payments.models import PaymentAttempt, PaymentOutcome

TIMED_OUT_MESSAGE = "Payment validation timed out"


def start_attempt(*, order_id: str, attempt: int, code: str) -> None:
    """Record that an attempt started, and show it on the order at once (idempotent).

    An earlier attempt still marked as validating was cut off by its timeout.
    """
    from orders.models import Order

    now = timezone.now()
    with transaction.atomic():
        cut_off = PaymentAttempt.objects.filter(
            order_id=order_id, attempt__lt=attempt, outcome=PaymentOutcome.PENDING
        ).update(outcome=PaymentOutcome.TIMED_OUT, error=TIMED_OUT_MESSAGE, finished_at=now)
        if cut_off:
            Order.objects.filter(id=order_id).update(last_error=TIMED_OUT_MESSAGE)
        PaymentAttempt.objects.update_or_create(
            order_id=order_id,
            attempt=attempt,
            defaults={
                "code_hint": f"***{code[-2:]}",
                "outcome": PaymentOutcome.PENDING,
                "error": "",
                "started_at": now,
                "finished_at": None,
            },
        )
        Order.objects.filter(id=order_id, payment_attempts__lt=attempt).update(payment_attempts=attempt)


def finish_attempt(*, order_id: str, attempt: int, outcome: PaymentOutcome, error: str = "") -> None:
    from orders.models import Order

    with transaction.atomic():
        # Only an attempt still validating: a late answer never rewrites a recorded outcome.
        finished = PaymentAttempt.objects.filter(
            order_id=order_id, attempt=attempt, outcome=PaymentOutcome.PENDING
        ).update(outcome=outcome, error=error, finished_at=timezone.now())
        if finished and error:
            Order.objects.filter(id=order_id).update(last_error=error)


def close_open_attempts(*, order_id: str) -> None:
    """Mark attempts that never finished (cut off by their timeout) as timed out."""
    PaymentAttempt.objects.filter(order_id=order_id, outcome=PaymentOutcome.PENDING).update(
        outcome=PaymentOutcome.TIMED_OUT, error=TIMED_OUT_MESSAGE, finished_at=timezone.now()
    )


def refund(*, order_id: str) -> int:
    """Refund the order's approved payment (simulated). Idempotent; returns attempts refunded."""
    return PaymentAttempt.objects.filter(order_id=order_id, outcome=PaymentOutcome.SUCCEEDED).update(
        outcome=PaymentOutcome.REFUNDED
    )

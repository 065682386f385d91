from __future__ import annotations

from django.db import models


class PaymentOutcome(models.TextChoices):
    PENDING = "PENDING", "Validating"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    FAILED = "FAILED", "Failed"
    TIMED_OUT = "TIMED_OUT", "Timed out"
    REFUNDED = "REFUNDED", "Refunded"


class PaymentAttempt(models.Model):
    """One attempt of the simulated gateway to validate an order's payment code.

    Recorded by the ``validate_payment`` activity as the attempt starts and as it ends. Only the
    last two digits of the code are kept.
    """

    order = models.ForeignKey(
        "orders.Order", on_delete=models.CASCADE, related_name="payment_attempt_records"
    )
    attempt = models.PositiveSmallIntegerField()
    code_hint = models.CharField(max_length=8)
    outcome = models.CharField(max_length=12, choices=PaymentOutcome.choices, default=PaymentOutcome.PENDING)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["order", "attempt"]
        constraints = [models.UniqueConstraint(fields=["order", "attempt"], name="payment_attempt_once")]

    def __str__(self) -> str:
        return f"{self.order_id} attempt {self.attempt}: {self.outcome}"

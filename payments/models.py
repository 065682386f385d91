from __future__ import annotations

from django.db import models

from common.money import Money


class PaymentOutcome(models.TextChoices):
    PENDING = "PENDING", "Validating"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    FAILED = "FAILED", "Failed"
    TIMED_OUT = "TIMED_OUT", "Timed out"
    REFUNDED = "REFUNDED", "Refunded"
    # A retry whose request the gateway had approved already (the first answer was lost): the
    # gateway answered with that approval, and charged nothing more.
    ALREADY_APPROVED = "ALREADY_APPROVED", "Already approved"


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
    outcome = models.CharField(max_length=16, choices=PaymentOutcome.choices, default=PaymentOutcome.PENDING)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["order", "attempt"]
        constraints = [models.UniqueConstraint(fields=["order", "attempt"], name="payment_attempt_once")]

    def __str__(self) -> str:
        return f"{self.order_id} attempt {self.attempt}: {self.outcome}"


class ChargeStatus(models.TextChoices):
    CHARGED = "CHARGED", "Charged"
    REFUNDED = "REFUNDED", "Refunded"
    # The key was given up before anything was charged under it (the booking ended first):
    # no money moved, and none ever will under this key.
    VOIDED = "VOIDED", "Voided (nothing charged)"


LIVE_CHARGE = models.Q(status=ChargeStatus.CHARGED)


class Charge(models.Model):
    """The simulated gateway's ledger: what it charged, and what it refunded. The truth about
    money (attempt records are what the page shows of the way there).

    Like a real provider's, every charge carries an idempotency key (``payments.ledger``): one
    row per key, so the same key is charged once, and a repeated request gets the first answer.
    The database holds the rest: at most one live (charged, unrefunded) charge per order.
    """

    id = models.CharField(primary_key=True, max_length=32)  # ch_…, as the gateway names it
    idempotency_key = models.CharField(max_length=80, unique=True)
    # PROTECT: money is never deleted along with anything else.
    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="charges")
    attempt = models.PositiveSmallIntegerField(null=True, blank=True)  # whose request charged (not a void)
    status = models.CharField(max_length=8, choices=ChargeStatus.choices)
    charged_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)  # or voided
    # The order's total when it was charged (minor units of ``currency``), and what was refunded:
    # all of it, or nothing. 0 and "" for a voided key, and for charges from before amounts.
    amount = models.PositiveIntegerField(default=0)
    currency = models.CharField(max_length=3, blank=True, default="")
    refunded_amount = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["order", "charged_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["order"], condition=LIVE_CHARGE, name="one_live_charge_per_order"
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(status=ChargeStatus.CHARGED, charged_at__isnull=False, refunded_at__isnull=True)
                    | models.Q(
                        status=ChargeStatus.REFUNDED, charged_at__isnull=False, refunded_at__isnull=False
                    )
                    | models.Q(status=ChargeStatus.VOIDED, charged_at__isnull=True, refunded_at__isnull=False)
                ),
                name="charge_times_match_status",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(status=ChargeStatus.REFUNDED, refunded_amount=models.F("amount"))
                    | (~models.Q(status=ChargeStatus.REFUNDED) & models.Q(refunded_amount=0))
                ),
                name="charge_refund_is_what_was_charged",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.get_status_display()}) for {self.order_id}"

    @property
    def money(self) -> Money | None:
        return Money(self.amount, self.currency) if self.currency else None

    @property
    def refunded_money(self) -> Money | None:
        return Money(self.refunded_amount, self.currency) if self.currency else None

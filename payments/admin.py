from django.contrib import admin

from common.admin import ReadOnlyAdminMixin
from payments.models import Charge, PaymentAttempt


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every attempt of the simulated gateway, read-only: the workflow writes them."""

    list_display = ("order", "attempt", "outcome", "started_at", "finished_at", "error")
    list_filter = ("outcome",)
    search_fields = ("order__id",)
    date_hierarchy = "started_at"
    list_select_related = ("order",)


@admin.register(Charge)
class ChargeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The simulated gateway's ledger, read-only: what was charged and refunded, one row per
    idempotency key (a voided key moved no money)."""

    list_display = ("id", "order", "attempt", "status", "charged", "refunded", "charged_at", "refunded_at")
    list_filter = ("status", "currency")
    search_fields = ("id", "order__id", "idempotency_key")
    date_hierarchy = "charged_at"
    list_select_related = ("order",)

    @admin.display(description="Amount charged", ordering="amount")
    def charged(self, charge: Charge) -> str:
        return charge.money.format() if charge.money else "-"

    @admin.display(description="Refunded", ordering="refunded_amount")
    def refunded(self, charge: Charge) -> str:
        money = charge.refunded_money
        return money.format() if money and charge.status == "REFUNDED" else "-"

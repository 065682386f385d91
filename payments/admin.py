from django.contrib import admin

from common.admin import ReadOnlyAdminMixin
from payments.models import PaymentAttempt


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every attempt of the simulated gateway, read-only: the workflow writes them."""

    list_display = ("order", "attempt", "outcome", "started_at", "finished_at", "error")
    list_filter = ("outcome",)
    search_fields = ("order__id",)
    date_hierarchy = "started_at"
    list_select_related = ("order",)

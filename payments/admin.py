from django.contrib import admin
from django.http import HttpRequest

from payments.models import PaymentAttempt


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(admin.ModelAdmin):
    """Every attempt of the simulated gateway, read-only: the workflow writes them."""

    list_display = ("order", "attempt", "outcome", "started_at", "finished_at", "error")
    list_filter = ("outcome",)
    search_fields = ("order__id",)
    date_hierarchy = "started_at"
    list_select_related = ("order",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

"""The order admin for operators: everything visible, nothing editable by hand.

Operators act only through the workflow (an admin action that signals it), so the order's row,
its history and Temporal never disagree.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime
from temporalio.client import WorkflowQueryFailedError, WorkflowQueryRejectedError

from common.admin import ReadOnlyAdminMixin
from common.errors import Refused
from common.formats import SEAT_CODE
from flights.models import BookedSeat
from orders.errors import ServiceUnavailable, StillConfirming
from orders.models import Order, OrderEvent, ReconcileRun
from orders.overview import overview as compute_overview
from orders.workflow_calls import cancel_order, live_status
from orders.workflow_contract import Messages
from payments.models import Charge, PaymentAttempt


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0
    can_delete = False

    class Media:
        css = {"all": ["admin_site/read_only_inlines.css"]}


class PaymentAttemptInline(ReadOnlyInline):
    model = PaymentAttempt
    fields = readonly_fields = ("attempt", "started_at", "finished_at", "outcome", "error", "code_hint")
    verbose_name_plural = "Payment attempts"


class ChargeInline(ReadOnlyInline):
    model = Charge
    fields = readonly_fields = ("id", "attempt", "status", "charged_at", "refunded_at", "idempotency_key")
    verbose_name_plural = "Charges at the gateway (its ledger: what was charged and refunded)"


class OrderEventInline(ReadOnlyInline):
    model = OrderEvent
    fields = readonly_fields = ("version", "state", "at", "seats", "detail")
    verbose_name_plural = "History of state transitions"


class BookedSeatInline(ReadOnlyInline):
    model = BookedSeat
    fields = readonly_fields = ("seat", "booked_at")
    verbose_name_plural = "Sold seats"


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "display_id",
        "state",
        "flight",
        "seat_list",
        "created_at",
        "hold_expires_at",
        "payment_attempts",
    )
    list_filter = ("state", "flight")
    date_hierarchy = "created_at"
    search_fields = ("id",)
    search_help_text = "Order id (ord-…) or a seat code (12A)."
    ordering = ("-created_at",)
    list_select_related = ("flight",)
    inlines = (ChargeInline, PaymentAttemptInline, OrderEventInline, BookedSeatInline)
    actions = ("release_hold",)
    fields = readonly_fields = (
        "id",
        "state",
        "flight",
        "seat_list",
        "hold_expires_at",
        "payment_attempts",
        "last_error",
        "version",
        "created_at",
        "updated_at",
        "workflow_link",
        "live_workflow_state",
    )

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):  # type: ignore[no-untyped-def]
        term = search_term.strip()
        if SEAT_CODE.fullmatch(term.upper()):
            return queryset.filter(seats__contains=[term.upper()]), False
        return super().get_search_results(request, queryset, term.lower())

    @admin.display(description="Seats")
    def seat_list(self, order: Order) -> str:
        return ", ".join(order.seats) or "—"

    @admin.display(description="Workflow")
    def workflow_link(self, order: Order) -> str:
        namespace, workflow_id = settings.TEMPORAL_NAMESPACE, order.workflow_id
        url = f"{settings.TEMPORAL_UI_URL}/namespaces/{namespace}/workflows/{workflow_id}"
        return format_html(
            '<a href="{}" target="_blank" rel="noopener">{} in the Temporal UI</a>', url, workflow_id
        )

    @admin.display(description="Live workflow state (get_status query)")
    def live_workflow_state(self, order: Order) -> str:
        try:
            live = live_status(order=order)
        except Refused as error:
            return format_html("<em>The workflow cannot answer: {}</em>", error.message)
        except (StillConfirming, ServiceUnavailable):
            return format_html(
                "<em>The workflow cannot answer right now: Temporal did not answer in time.</em>"
            )
        except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as error:
            return format_html("<em>The workflow cannot answer the query: {}</em>", error)
        agrees = live.state.value == order.state and live.seats == order.seats
        return format_html(
            "{} · seats {} · hold until {} · {} payment attempt(s) · v{} — {}",
            live.state.value,
            ", ".join(live.seats) or "—",
            date_format(localtime(live.hold_expires_at), "DATETIME_FORMAT") if live.hold_expires_at else "—",
            live.payment_attempts,
            live.version,
            "agrees with the row"
            if agrees
            else "differs from the row (the row catches up as activities record)",
        )

    def has_release_permission(self, request: HttpRequest) -> bool:
        """Releasing a customer's hold is a change to their order: it takes the permission to
        change orders (which the admin never uses to edit a row by hand), not only to view them."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(description="Release the hold (cancel through the workflow)", permissions=["release"])
    def release_hold(self, request: HttpRequest, queryset: QuerySet[Order]) -> HttpResponse | None:
        if "confirm" not in request.POST:
            context = {
                **self.admin_site.each_context(request),
                "title": "Release these holds?",
                "orders": queryset,
                "opts": self.model._meta,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "admin/orders/order/release_confirmation.html", context)
        for order in queryset:
            try:
                cancel_order(order=order, reason=Messages.RELEASED_BY_OPERATOR)
            except Refused as error:
                self.message_user(request, f"{order.display_id}: {error.message}", messages.ERROR)
            except ServiceUnavailable:
                self.message_user(
                    request,
                    f"{order.display_id}: Temporal cannot be reached; nothing was sent.",
                    messages.ERROR,
                )
            except StillConfirming:
                self.message_user(
                    request,
                    f"{order.display_id}: Temporal has not confirmed the release yet; watch the order.",
                    messages.WARNING,
                )
            else:
                self.message_user(
                    request, f"{order.display_id}: release requested; its seats are being freed."
                )
        return None


@admin.register(ReconcileRun)
class ReconcileRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every run of the reconciliation (the Temporal Schedule, or manage.py reconcile_orders)."""

    list_display = ("started_at", "finished_at", "repair_counts", "failures", "error")
    readonly_fields = ("started_at", "finished_at", "repair_counts", "failures", "detail_lines", "error")
    exclude = ("repairs", "details")

    @admin.display(description="Repairs")
    def repair_counts(self, run: ReconcileRun) -> str:
        return ", ".join(f"{kind} {n}" for kind, n in sorted(run.repairs.items())) or "none"

    @admin.display(description="What it did")
    def detail_lines(self, run: ReconcileRun) -> str:
        return format_html_join("", "<div>{}</div>", ((line,) for line in run.details)) or "—"


def overview(request: HttpRequest) -> HttpResponse:
    """The operators' overview (staff only: the URL goes through ``admin.site.admin_view``)."""
    context = {**admin.site.each_context(request), "title": "Overview", "overview": compute_overview()}
    return TemplateResponse(request, "admin/overview.html", context)

"""What the operators' overview page shows (the admin's "Overview"): computed here, shown as is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db.models import Count, F, Func, QuerySet, Sum
from django.utils import timezone

from common.money import Money
from flights import inventory
from orders.models import Order, ReconcileRun, charged_unconfirmed, holding_seats, on_hold, overdue
from orders.workflow_contract import State, reconcile_schedule_id
from payments.models import Charge, ChargeStatus, PaymentAttempt, PaymentOutcome

RECENT = timedelta(hours=1)
FAILED_OUTCOMES = (PaymentOutcome.FAILED, PaymentOutcome.TIMED_OUT)
FINISHED_OUTCOMES = (*FAILED_OUTCOMES, PaymentOutcome.SUCCEEDED, PaymentOutcome.REFUNDED)


@dataclass(frozen=True)
class StateCount:
    state: State
    now: int  # orders in this state
    last_hour: int  # of those, created in the last hour


@dataclass(frozen=True)
class Overview:
    at: datetime
    states: list[StateCount]
    live_holds: int  # orders holding seats (SEATS_RESERVED, deadline ahead)
    held_seats: int | None  # seat holds in Redis; None while Redis cannot be read
    oldest_hold: Order | None  # the live hold that has been held longest
    overdue: int  # live orders long past their deadline: nothing moves them on
    oldest_overdue: Order | None
    payment_attempts: int  # finished in the last hour
    payment_failures: int  # of those, declined or timed out
    charged_last_hour: int  # charges the gateway made (its ledger)
    refunded_last_hour: int  # and refunds
    taken_today: list[Money]  # what the gateway charged since midnight (UTC), per currency
    refunded_today: list[Money]  # and what it refunded since midnight, per currency
    charged_unconfirmed: int  # orders holding money without a confirmed booking: 0 when healthy
    oldest_charged_unconfirmed: Order | None
    last_reconciliation: ReconcileRun | None
    temporal_ui: str  # the namespace's workflows
    reconcile_schedule_ui: str
    grafana: str
    traces: str

    @property
    def payment_failure_rate(self) -> float | None:
        return self.payment_failures / self.payment_attempts if self.payment_attempts else None


def overview(*, now: datetime | None = None) -> Overview:
    now = now or timezone.now()
    since = now - RECENT
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    all_time = dict(Order.objects.values_list("state").annotate(n=Count("id")))
    recent = dict(Order.objects.filter(created_at__gte=since).values_list("state").annotate(n=Count("id")))
    live = Order.objects.filter(on_hold(now=now))
    late = Order.objects.filter(overdue(now=now))
    attempts = PaymentAttempt.objects.filter(finished_at__gte=since, outcome__in=FINISHED_OUTCOMES)
    unconfirmed = Order.objects.filter(charged_unconfirmed(now=now)).distinct()
    ui = f"{settings.TEMPORAL_UI_URL}/namespaces/{settings.TEMPORAL_NAMESPACE}"
    return Overview(
        at=now,
        states=[StateCount(s, all_time.get(s.value, 0), recent.get(s.value, 0)) for s in State],
        live_holds=live.count(),
        held_seats=_held_seats(),
        oldest_hold=live.order_by("created_at").select_related("flight").first(),
        overdue=late.count(),
        oldest_overdue=late.order_by("created_at").select_related("flight").first(),
        payment_attempts=attempts.count(),
        payment_failures=attempts.filter(outcome__in=FAILED_OUTCOMES).count(),
        charged_last_hour=Charge.objects.filter(charged_at__gte=since).count(),
        refunded_last_hour=Charge.objects.filter(
            status=ChargeStatus.REFUNDED, refunded_at__gte=since
        ).count(),
        taken_today=_amounts(Charge.objects.filter(charged_at__gte=midnight), "amount"),
        refunded_today=_amounts(
            Charge.objects.filter(status=ChargeStatus.REFUNDED, refunded_at__gte=midnight), "refunded_amount"
        ),
        charged_unconfirmed=unconfirmed.count(),
        oldest_charged_unconfirmed=unconfirmed.order_by("created_at").select_related("flight").first(),
        last_reconciliation=ReconcileRun.objects.first(),
        temporal_ui=f"{ui}/workflows",
        reconcile_schedule_ui=f"{ui}/schedules/{reconcile_schedule_id(settings.TEMPORAL_TASK_QUEUE)}",
        grafana=settings.GRAFANA_URL,
        traces=settings.TRACES_URL,
    )


def _amounts(charges: QuerySet[Charge], field: str) -> list[Money]:
    """The sum of ``field`` over ``charges``, one per currency (charges from before amounts, which
    have no currency, are left out). One query."""
    sums = (
        charges.exclude(currency="").values_list("currency").annotate(total=Sum(field)).order_by("currency")
    )
    return [Money(total, currency) for currency, total in sums]


def _held_seats() -> int | None:
    try:
        return sum(1 for _ in inventory.every_hold())
    except redis.RedisError:
        return None


@dataclass(frozen=True)
class LiveHolds:
    orders: int  # orders holding seats now (seats reserved, or paying)
    seats: int  # the seats they hold
    overdue: int  # live orders that should have ended long ago (``overdue``)
    charged_unconfirmed: int  # orders charged without a confirmed booking (``charged_unconfirmed``)


def live_holds() -> LiveHolds:
    """What is held right now, and what is overdue, from the orders' rows (the read model): one
    indexed count; and the orders the gateway holds money for without a booking, a second."""
    holding, late = holding_seats(), overdue()
    totals = Order.objects.filter(holding | late).aggregate(
        orders=Count("id", filter=holding),
        seats=Sum(Func(F("seats"), function="cardinality"), filter=holding),
        overdue=Count("id", filter=late),
    )
    return LiveHolds(
        orders=totals["orders"],
        seats=totals["seats"] or 0,
        overdue=totals["overdue"],
        charged_unconfirmed=Order.objects.filter(charged_unconfirmed()).distinct().count(),
    )

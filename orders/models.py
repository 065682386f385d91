from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from common.formats import ORDER_ID
from common.money import Money
from flights.models import Flight
from orders.workflow_contract import (
    ACTIVE_STATES,
    PAYING_STATES,
    PAYMENT_BACKOFF_CAP,
    TERMINAL_STATES,
    ErrorType,
    State,
    editable_refusal,
    workflow_id_for,
)


class OrderQuerySet(models.QuerySet["Order"]):
    def with_open_request(self) -> OrderQuerySet:
        """Each order with ``open_request_id``: the id of its newest request still without an
        outcome (None if it has none), read in the same query as the order. A status poll is
        then one query (``orders.idempotency.open_request`` reads it)."""
        newest_open = (
            OrderRequest.objects.filter(order=OuterRef("pk"), state__in=OPEN_REQUEST_STATES)
            .order_by("-created_at")
            .values("pk")[:1]
        )
        return self.annotate(open_request_id=Subquery(newest_open))


# The most a payment adds to an order's deadline (it starts by then at the latest) is its
# attempts' timeouts and the backoffs between them (PAYMENT_BACKOFF_CAP at most); the grace
# covers a worker restart and a slow store. Later than that, nothing is moving the order on.
OVERDUE_GRACE = timedelta(minutes=5)


def on_hold(*, now: datetime | None = None) -> Q:
    """Orders whose seats are held for their customer to pay: SEATS_RESERVED, the hold's deadline
    ahead. The one definition of "a live hold" (the overview, the metrics, the seat map's "you are
    holding" note and the client's limits all read it)."""
    return Q(state=State.SEATS_RESERVED, hold_expires_at__gt=now or timezone.now())


def holding_seats(*, now: datetime | None = None) -> Q:
    """Orders holding seats right now: on hold (``on_hold``), or paying (a payment keeps its seats
    held until it ends, whatever the hold's deadline)."""
    return on_hold(now=now) | Q(state__in=[state.value for state in PAYING_STATES])


def overdue(*, now: datetime | None = None) -> Q:
    """Live orders (created, holding or paying) whose deadline passed more than the longest
    payment and ``OVERDUE_GRACE`` ago: a bookkeeping step failing without end, or a workflow
    nothing runs (docs/OPERATIONS.md, "An overdue order"). An order created but never held has
    no deadline: its creation stands for it."""
    longest_payment = settings.PAYMENT_MAX_ATTEMPTS * (
        settings.PAYMENT_VALIDATION_TIMEOUT + PAYMENT_BACKOFF_CAP
    )
    cutoff = (now or timezone.now()) - longest_payment - OVERDUE_GRACE
    deadline_passed = Q(hold_expires_at__lt=cutoff) | Q(hold_expires_at__isnull=True, created_at__lt=cutoff)
    return Q(state__in=[State.CREATED.value, *(state.value for state in ACTIVE_STATES)]) & deadline_passed


def charged_unconfirmed(*, now: datetime | None = None) -> Q:
    """Orders the gateway holds money for that are not confirmed: ended without their seats, or
    charged longer ago than ``OVERDUE_GRACE`` and still not confirmed. None in a healthy system
    (the saga refunds before a booking ends; the reconciliation refunds what a workflow can no
    longer reach): docs/OPERATIONS.md, "Charged, not confirmed"."""
    cutoff = (now or timezone.now()) - OVERDUE_GRACE
    live = Q(charges__status="CHARGED")  # payments.models.ChargeStatus.CHARGED
    ended = Q(state__in=[state.value for state in TERMINAL_STATES])
    return live & ~Q(state=State.CONFIRMED) & (ended | Q(charges__charged_at__lt=cutoff))


# A booking reference reads like an airline's record locator: six letters and digits, without
# the ones a customer confuses when reading it out (0/O, 1/I): 32^6, about a billion.
REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_reference() -> str:
    return "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(6))


class Order(models.Model):
    """The read model of one booking, written by the workflow's activities.

    The workflow is the source of truth while the booking is live; every state transition is
    recorded here (with its ``version``, the workflow's transition counter) so that pages can
    poll one indexed row, even while no worker runs. A write with an older version than the
    row's is ignored: activity retries can never move an order backwards.
    """

    id = models.CharField(primary_key=True, max_length=40)
    flight = models.ForeignKey(Flight, on_delete=models.PROTECT, related_name="orders")
    state = models.CharField(max_length=20, choices=State.choices(), default=State.CREATED, db_index=True)
    seats = ArrayField(models.CharField(max_length=4), default=list)
    hold_expires_at = models.DateTimeField(null=True, blank=True)
    payment_attempts = models.PositiveSmallIntegerField(default=0)
    # The attempts this booking's payment may take, fixed when it starts (``PAYMENT_MAX_ATTEMPTS``
    # then): the workflow's input and the page's "attempt 2 of 3" both read it from here.
    payment_max_attempts = models.PositiveSmallIntegerField(default=3)
    last_error = models.TextField(blank=True)
    version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The client address it was created from (common.clients), whose seats held are counted from
    # the live orders (orders.hoarding); empty for orders from before it was kept.
    client_address = models.CharField(max_length=64, blank=True, default="")
    # The latest the hold can last, however often the seats change (SEAT_HOLD_MAX_LIFE from the
    # creation; the workflow is given it when it starts). Null for orders from before the cap.
    hold_life_ends_at = models.DateTimeField(null=True, blank=True)
    # What the customer quotes to find the booking again (new_order draws again on a clash).
    reference = models.CharField(max_length=6, unique=True, editable=False, default=new_reference)
    # What each held seat costs, fixed when it was first held ({"12A": 45000}, minor units of
    # ``currency``), and their sum: what the payment charges, whatever the prices become later
    # (orders.activity_writes prices the seats as it records a hold). Null for orders from before.
    seat_prices = models.JSONField(default=dict, blank=True)
    total_amount = models.PositiveIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True, default="")

    objects = OrderQuerySet.as_manager()
    open_request_id: int | None  # not a column: read by OrderQuerySet.with_open_request()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(id__regex=f"^{ORDER_ID}$"), name="order_id_format"),
            models.CheckConstraint(
                condition=Q(state__in=[state.value for state in State]), name="order_state_known"
            ),
        ]
        indexes = [
            # The seats one client address holds (orders.hoarding): its live orders only.
            models.Index(
                fields=["client_address"],
                condition=Q(state__in=sorted(state.value for state in {State.CREATED, *ACTIVE_STATES})),
                name="order_live_by_client",
            )
        ]

    def __str__(self) -> str:
        return self.display_id

    @property
    def display_id(self) -> str:
        return self.id.upper()

    @property
    def workflow_id(self) -> str:
        return workflow_id_for(self.id)

    @property
    def total(self) -> Money | None:
        """What the seats cost, as fixed when they were held (None before they were priced)."""
        if self.total_amount is None or not self.currency:
            return None
        return Money(self.total_amount, self.currency)

    def price_of(self, seat: str) -> Money | None:
        amount = self.seat_prices.get(seat)
        return Money(amount, self.currency) if amount is not None and self.currency else None

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    def why_unchangeable(self) -> tuple[str, str] | None:
        """Why the order's seats and payment cannot change now (an ``ErrorType`` and a message), or
        None while they can: the workflow's own rule (``booking.editable_refusal``) read off the
        row, and an order whose creation is still being confirmed has nothing to change yet."""
        if self.state == State.CREATED:
            return ErrorType.ORDER_PENDING, "We are still confirming your seats: try again in a moment."
        return editable_refusal(
            state=State(self.state), hold_expires_at=self.hold_expires_at, now=timezone.now()
        )


class OrderEvent(models.Model):
    """One state transition of an order, as the workflow made it (its history for operators)."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    version = models.PositiveIntegerField()
    state = models.CharField(max_length=20, choices=State.choices())
    at = models.DateTimeField()
    seats = ArrayField(models.CharField(max_length=4), default=list)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["order", "version"]
        constraints = [
            models.UniqueConstraint(fields=["order", "version"], name="order_event_once_per_version")
        ]

    def __str__(self) -> str:
        return f"{self.order_id} v{self.version} {self.state}"


class RequestKind(models.TextChoices):
    CREATE = "create", "Create the order"
    SEATS = "seats", "Change the seats"
    PAY = "pay", "Pay"
    CANCEL = "cancel", "Abandon the order"


class RequestState(models.TextChoices):
    RUNNING = "running", "Being carried out"  # a web process is on it (until ``lease_until``)
    UNKNOWN = "unknown", "Handed to Temporal, outcome not known yet"
    LOST = "lost", "Never reached the workflow"  # nothing happened; a retry may try again
    DONE = "done", "Answered"


# A request in these states has no outcome yet.
OPEN_REQUEST_STATES = [RequestState.RUNNING, RequestState.UNKNOWN]


class OrderRequest(models.Model):
    """One request a customer made to create or change an order, kept until its outcome is known.

    It is what makes a retry safe (the IETF ``Idempotency-Key`` draft): a retry with the same
    key from the same session gets the stored outcome, or, while the outcome is still unknown,
    repeats the same Temporal call with the same ids (workflow id, update id), which Temporal
    carries out at most once. The outcome is stored as the domain's answer (``outcome``), not
    as an HTTP response, so that the API and the pages both render it.
    """

    session_key = models.CharField(max_length=64)
    # NULL, not "", when the client sent no key: the unique constraint spans only real keys.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    fingerprint = models.CharField(max_length=64)  # sha256 of method, path and body
    kind = models.CharField(max_length=8, choices=RequestKind.choices)
    # Kept (null) when a refused create's order is removed: a retry still gets the refusal.
    order = models.ForeignKey(
        Order, on_delete=models.SET_NULL, null=True, blank=True, related_name="requests"
    )
    update_id = models.CharField(max_length=64)
    state = models.CharField(max_length=8, choices=RequestState.choices, default=RequestState.RUNNING)
    lease_until = models.DateTimeField()
    outcome = models.JSONField(null=True, blank=True)
    settle_after = models.DateTimeField(null=True, blank=True)  # next background look at an unknown one
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Not stored: set by ``idempotency.claim`` on the retry of a request whose first answer was
    # late. Such a retry goes to Temporal with its first update id, unchecked against the row, and
    # gets what that update did.
    resumed: bool = False

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["session_key", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="one_request_per_idempotency_key",
            )
        ]
        indexes = [
            models.Index(
                fields=["order", "created_at"],
                condition=Q(state__in=["unknown", "running"]),
                name="order_request_open",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.order_id or '-'} ({self.state})"


class ReconcileRun(models.Model):
    """One run of the reconciliation (``orders.reconciliation``): when, and what it repaired.
    The admin's overview shows the last one."""

    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    repairs = models.JSONField(default=dict)  # {kind: how many}, the kinds in ``reconciliation.Repair``
    details = models.JSONField(default=list)  # one line per repair: what, and which order or seat
    error = models.TextField(blank=True)  # why the run stopped early, if it did
    failures = models.PositiveIntegerField(default=0)  # candidates whose repair raised (it went on)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"reconciliation at {self.started_at:%Y-%m-%d %H:%M:%S}"

    @property
    def repaired(self) -> int:
        return sum(self.repairs.values())

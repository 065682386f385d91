"""What the workflow, its activities and the Django side agree on: names, states and messages.

Pure Python with no Django import, so the workflow sandbox can load it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from temporalio.common import SearchAttributeKey

from common.errors import ErrorCode
from common.formats import seats_named

WORKFLOW_ID_PREFIX = "booking-"
# The PRD's longest wait between two payment attempts (the workflow's retry policy, and the
# bound on how long a payment can last that tells an overdue order).
PAYMENT_BACKOFF_CAP = timedelta(seconds=5)


class SearchAttributes:
    """The booking workflow's custom search attributes (Keyword), registered with the namespace
    (devstack, docker-compose.yml, docs/DEPLOYMENT.md), so that the Temporal UI lists bookings by
    outcome (``BookingState="FAILED"``) and by flight (``FlightId="fl-101"``): every booking's
    workflow completes, whatever the booking's outcome."""

    BOOKING_STATE = SearchAttributeKey.for_keyword("BookingState")
    FLIGHT_ID = SearchAttributeKey.for_keyword("FlightId")


def workflow_id_for(order_id: str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{order_id}"


def reconcile_schedule_id(task_queue: str) -> str:
    """The reconciliation's Temporal Schedule: one per task queue (``reconcile-booking-queue``)."""
    return f"reconcile-{task_queue}"


class State(StrEnum):
    """The PRD's order states, plus CANCELLED for a hold the customer or an operator let go."""

    CREATED = "CREATED"
    SEATS_RESERVED = "SEATS_RESERVED"
    PAYMENT_PENDING = "PAYMENT_PENDING"
    PAYMENT_PROCESSING = "PAYMENT_PROCESSING"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"

    @property
    def label(self) -> str:
        """How people read it: "Seats reserved"."""
        return self.value.replace("_", " ").capitalize()

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        """For the order's ``state`` column (Django's ``choices``)."""
        return [(state.value, state.label) for state in cls]


TERMINAL_STATES = frozenset({State.CONFIRMED, State.FAILED, State.EXPIRED, State.CANCELLED})
ACTIVE_STATES = frozenset({State.SEATS_RESERVED, State.PAYMENT_PENDING, State.PAYMENT_PROCESSING})
PAYING_STATES = frozenset({State.PAYMENT_PENDING, State.PAYMENT_PROCESSING})


WORKFLOW = "BookingWorkflow"


class Updates:
    """The workflow's updates, by name: the web calls them by name and never imports the
    workflow (it lives in the worker's package, above this one)."""

    HOLD_SEATS = "hold_seats"
    SUBMIT_PAYMENT = "submit_payment"


class Signals:
    CANCEL = "cancel"


class Queries:
    GET_STATUS = "get_status"


class Activities:
    """Activity names. The workflow calls activities by name, so that it imports no Django and
    tests can register stand-ins under the same names."""

    HOLD_SEATS = "hold_seats"
    RELEASE_SEATS = "release_seats"
    RECORD_ORDER = "record_order"
    VALIDATE_PAYMENT = "validate_payment"
    REFUND_PAYMENT = "refund_payment"
    CONFIRM_BOOKING = "confirm_booking"


class ErrorType:
    """Why a request was refused: ``ApplicationError.type`` values that cross from the workflow
    and its activities to the web. Those the API answers with are its codes (``ErrorCode``); the
    others stay inside (the web says them as "temporarily unavailable" or as the order's state)."""

    INVALID_SEATS = ErrorCode.INVALID_SEATS  # a seat is held by another order or already sold
    UNKNOWN_SEATS = ErrorCode.UNKNOWN_SEATS  # a seat that is not on this flight
    ORDER_EXPIRED = ErrorCode.ORDER_EXPIRED
    ORDER_NOT_EDITABLE = ErrorCode.ORDER_NOT_EDITABLE  # paying, paid, failed or cancelled
    INVALID_PAYMENT_CODE = ErrorCode.INVALID_PAYMENT_CODE
    PAYMENT_DECLINED = "PAYMENT_DECLINED"
    SEAT_ALREADY_BOOKED = "SEAT_ALREADY_BOOKED"  # the (flight, seat) constraint refused a sale
    # A confirmation found no live charge for the order in the gateway's ledger: never confirmed.
    PAYMENT_NOT_CHARGED = "PAYMENT_NOT_CHARGED"
    TOO_MANY_CHANGES = ErrorCode.TOO_MANY_CHANGES  # the seat-change limit of one order is reached
    ORDER_PENDING = ErrorCode.ORDER_PENDING  # its creation is still being confirmed: nothing to change yet
    # A seat change, a payment or a first hold that the stores (Redis, PostgreSQL) did not confirm
    # in time: nothing was changed. Not the customer's doing: the web answers it with a 503.
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"


class Messages:
    """What the customer reads (PRD section 5)."""

    EXPIRED = "Seat reservation has expired. Your seats have been released."
    PAYMENT_FAILED = "Payment validation failed"
    # An attempt that outlived its booking: the gateway's key was voided, nothing was charged.
    PAYMENT_VOIDED = "The payment was cancelled before the gateway charged it"
    PAYMENT_NOT_CHARGED = (
        "Your payment could not be confirmed with the payment gateway. Nothing was charged and "
        "your seats have been released. Please try again."
    )
    PAYMENT_FAILED_FINAL = (
        "Payment validation failed after {attempts} attempts. "
        "Your seats have been released. Please try again."
    )
    CANCELLED_BY_CUSTOMER = "You cancelled this order. Your seats have been released."
    CANCEL_DURING_PAYMENT = "A payment is under way: the order can no longer be cancelled"
    RELEASED_BY_OPERATOR = "An operator released this hold. Your seats have been released."
    STOPPED = "This booking was stopped before it could finish. Your seats have been released."
    STOPPED_REFUNDED = (
        "This booking was stopped before it could finish. Your payment has been refunded and your "
        "seats released."
    )
    NOT_STARTED = "Your seats could not be held in time. Nothing was held; please choose them again."
    STORE_UNAVAILABLE = "Nothing was changed: our seat store did not answer in time. Please try again."

    @staticmethod
    def approved_by(attempt: int) -> str:
        return f"Already approved by attempt {attempt}: charged once"

    @staticmethod
    def too_many_changes(limit: int) -> str:
        times = "once" if limit == 1 else f"{limit} times"
        return (
            f"The seats of an order can be changed {times} at most. "
            "Pay for these seats, or cancel this order and start a new one."
        )

    @staticmethod
    def seats_unavailable(seats: list[str]) -> str:
        verb = "is" if len(seats) == 1 else "are"
        return f"{seats_named(seats)} {verb} no longer available"

    @staticmethod
    def seat_sold_meanwhile(seats: list[str]) -> str:
        return (
            f"{Messages.seats_unavailable(seats)}: another booking was confirmed first. "
            "Your payment has been refunded and your seats released: please choose other seats."
        )


def editable_refusal(
    *, state: State, hold_expires_at: datetime | None, now: datetime, cancelling: bool = False
) -> tuple[str, str] | None:
    """Why an order's seats and payment can no longer change (an ``ErrorType`` and a message for
    the customer), or None while they can: the one rule, used by the workflow's validators and by
    the web before it calls the workflow."""
    state = State(state)  # the order's row holds it as a plain string
    lapsed = hold_expires_at is not None and now >= hold_expires_at
    if state is State.EXPIRED or (state is State.SEATS_RESERVED and lapsed):
        return ErrorType.ORDER_EXPIRED, "Seat reservation has expired"
    if cancelling:
        return ErrorType.ORDER_NOT_EDITABLE, "The order is being cancelled: it can no longer be changed"
    if state in TERMINAL_STATES or state in PAYING_STATES:
        name = state.value.replace("_", " ").lower()
        return ErrorType.ORDER_NOT_EDITABLE, f"The order is {name}: it can no longer be changed"
    return None


# --- Workflow input, updates and query -----------------------------------------------------


@dataclass
class BookingInput:
    """Everything the workflow needs, fixed when the order starts: a change of settings later
    never changes the rules of a booking already under way."""

    order_id: str
    flight_id: str
    hold_seconds: float
    hold_ttl_margin_seconds: float
    payment_timeout_seconds: float
    payment_max_attempts: int
    # Each seat change adds history and resets the hold: a cap keeps both bounded. The default
    # lets histories recorded before the cap existed still load.
    max_seat_changes: int = 20
    # The latest the hold can last, however often the seats change (the order's creation plus
    # SEAT_HOLD_MAX_LIFE): a change resets the timer to a full hold, never past this. None (the
    # default, for bookings started before the cap) leaves the hold uncapped.
    hold_life_ends_at: datetime | None = None


@dataclass
class SeatSelection:
    seats: list[str]


@dataclass
class PaymentRequest:
    payment_code: str


@dataclass
class CancelRequest:
    reason: str = Messages.CANCELLED_BY_CUSTOMER


@dataclass
class BookingStatus:
    """What the ``get_status`` query and the updates answer. ``hold_expires_at`` is absolute:
    inside a query ``workflow.now()`` is the time of the last task, so the caller computes what
    is left."""

    order_id: str
    state: State
    seats: list[str]
    hold_expires_at: datetime | None
    payment_attempts: int
    last_error: str
    version: int


# --- Activity inputs and results -----------------------------------------------------------


@dataclass
class OrderRecord:
    """A state transition to write on the order's row (and its history), at most once per version."""

    order_id: str
    flight_id: str
    version: int
    state: State
    seats: list[str]
    at: datetime
    hold_expires_at: datetime | None = None
    payment_attempts: int = 0
    last_error: str = ""


@dataclass
class HoldSeatsInput:
    """Hold ``record.seats`` for ``ttl_seconds`` (all or none), release ``release``, record."""

    record: OrderRecord
    ttl_seconds: float
    release: list[str] = field(default_factory=list)


@dataclass
class HoldSeatsResult:
    taken: list[str]  # empty when every seat is now held by this order


@dataclass
class ReleaseSeatsInput:
    """Release ``seats`` (those the order still holds), then write ``record`` if there is one."""

    order_id: str
    flight_id: str
    seats: list[str]
    record: OrderRecord | None = None


@dataclass
class PaymentInput:
    order_id: str
    payment_code: str


@dataclass
class PaymentResult:
    attempt: int  # the attempt that ran to the end
    # The attempt whose request the gateway charged, and its charge: an earlier one when a retry
    # got back an approval whose answer was lost. None in results recorded before the ledger.
    approved_attempt: int | None = None
    charge_id: str | None = None

"""BookingWorkflow: one durable workflow per order, read top to bottom like the booking itself.

    CREATED -> SEATS_RESERVED -> PAYMENT_PENDING -> PAYMENT_PROCESSING -> CONFIRMED
                   |  (hold timer)                        |  (payment failed / seat sold)
                   v                                      v
                EXPIRED        CANCELLED (customer or operator)        FAILED

1. The first seats arrive with the start of the workflow (update-with-start): the HTTP request
   learns at once whether they could be held and until when. A first hold that fails ends the
   booking at once.
2. The hold: a durable timer to an absolute deadline. A seat change (a Workflow Update) holds the
   new seats, releases the dropped ones and moves the deadline back to the full hold (never past
   ``hold_life_ends_at``, the hold's whole life), at most ``max_seat_changes`` times; the same
   seats again are no change. The deadline passing, or a cancel signal, releases every seat.
3. Payment (an Update that answers at once): the holds are extended over the whole payment
   window, then the gateway is tried with Temporal's retry policy (``PAYMENT_RETRY``).
   Every attempt asks the gateway with the order's idempotency key, so a retry after an approval
   whose answer was lost gets that approval back: one charge per order, however often Temporal
   runs the activity (``payments.ledger``).
4. Confirmation writes the sold seats under PostgreSQL's (flight, seat) unique constraint, with
   the order's live charge locked. Each step that takes something registers its compensation
   *before* it runs (the saga): the payment is refunded (or its key voided, so that an attempt
   running late charges nothing), the seats released, whatever fails afterwards.

Updates and the main loop take turns on one lock. Handlers run while a caller waits, so their
store writes give up after a few tries and undo what they may have done (the caller is told
nothing changed); only the main loop waits out an outage.

Deterministic by construction: no I/O, no clock but ``workflow.now()``, no randomness and no
Django here. Every side effect is an activity, called by name (see ``orders.workflow_contract.Activities``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from common.formats import (
    CHOOSE_A_SEAT,
    PAYMENT_CODE_EXPECTED,
    duplicates_in,
    is_payment_code,
    listed_twice,
)
from orders.workflow_contract import (
    PAYMENT_BACKOFF_CAP,
    WORKFLOW,
    Activities,
    BookingInput,
    BookingStatus,
    CancelRequest,
    ErrorType,
    HoldSeatsInput,
    HoldSeatsResult,
    Messages,
    OrderRecord,
    PaymentInput,
    PaymentRequest,
    PaymentResult,
    Queries,
    ReleaseSeatsInput,
    SearchAttributes,
    SeatSelection,
    Signals,
    State,
    Updates,
    editable_refusal,
)

# Bookkeeping activities (Redis, PostgreSQL) of the main loop retry until the store is back: a
# booking waits out an outage instead of failing. Only errors that no retry can fix stop them.
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=[
        ErrorType.UNKNOWN_SEATS,
        ErrorType.SEAT_ALREADY_BOOKED,
        ErrorType.PAYMENT_NOT_CHARGED,
    ],
)
# An update handler holds the lock while its caller waits: its writes give up after a few tries,
# so that expiry and cancellation never wait behind an outage (samples-python
# safe_message_handlers does the same).
HANDLER_STORE_RETRY = dataclasses.replace(STORE_RETRY, maximum_attempts=3)

# The PRD's payment retries: 1 s, then x1.5 per attempt, at most 5 s. The number of attempts is
# the booking's own (``BookingInput.payment_max_attempts``).
PAYMENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=1.5,
    maximum_interval=PAYMENT_BACKOFF_CAP,
)

# workflow.patched ids: each names a change to the commands the workflow issues (see
# docs/ARCHITECTURE.md, "Changing the workflow safely").
REFUND_BEFORE_PAYMENT = "refund-registered-before-payment"
# Bookkeeping as local activities, and no timer while the first hold is under way: half the
# round trips through Temporal per booking (docs/PERFORMANCE.md).
FEWER_ROUND_TRIPS = "bookkeeping-as-local-activities"
# A change to the seats already held is no change: it neither resets the hold nor counts, and
# runs no activity (the hold's whole life is capped by BookingInput.hold_life_ends_at).
HOLD_LIFE_CAP = "hold-life-cap"
# The Temporal UI lists bookings by their state: each transition upserts BookingState.
SEARCH_ATTRIBUTES = "search-attributes"
# Every patch id, oldest first. The last is the newest: a history recorded since it must be in
# tests/histories/, so that replay covers the path bookings take today (tests/test_replay.py).
PATCHES = (REFUND_BEFORE_PAYMENT, FEWER_ROUND_TRIPS, HOLD_LIFE_CAP, SEARCH_ATTRIBUTES)


async def call_store(
    activity: str, arg: Any, *, result_type: type | None = None, retry_policy: RetryPolicy = STORE_RETRY
) -> Any:
    """Run a bookkeeping activity (Redis, PostgreSQL): 10 s per try, retried by ``retry_policy``.

    A local activity: these are short, idempotent writes that need no task queue, so the worker
    runs them within the workflow task that asks for them (one marker in the history, no round
    trip through the server); a failing try is retried in the worker, or, past a minute of
    retries, by a durable timer. The payment stays a regular activity, so that its timeout,
    attempts and backoff show in the Temporal UI."""
    options: dict[str, Any] = {
        "result_type": result_type,
        "start_to_close_timeout": timedelta(seconds=10),
        "retry_policy": retry_policy,
    }
    try:
        if workflow.patched(FEWER_ROUND_TRIPS):
            return await workflow.execute_local_activity(activity, arg, **options)
        return await workflow.execute_activity(activity, arg, **options)  # bookings from before it
    except ActivityError as error:  # a regular activity's failure wraps the activity's own error
        raise StoreFailed(error.cause) from error
    except FailureError as error:  # a local activity's failure is the activity's own error
        raise StoreFailed(error) from error


class StoreFailed(Exception):
    """A bookkeeping step failed for good: refused for a reason no retry can fix, or its retries
    spent. ``cause`` is the activity's own error (an ``ApplicationError`` with its type)."""

    @property
    def cause(self) -> BaseException | None:
        return self.args[0]  # type: ignore[no-any-return]


class Saga:
    """Compensations registered before the steps that take something, run in reverse when the
    booking fails. Each is idempotent: it undoes only what its step really did."""

    def __init__(self) -> None:
        self._compensations: list[Callable[[], Awaitable[None]]] = []

    def add(self, compensation: Callable[[], Awaitable[None]]) -> None:
        self._compensations.append(compensation)

    async def compensate(self) -> None:
        while self._compensations:
            await self._compensations.pop()()


# Writes a new version of the order to the stores; raises when they refused it or gave up.
Write = Callable[[OrderRecord, RetryPolicy], Awaitable[None]]


@workflow.defn(name=WORKFLOW)
class BookingWorkflow:
    @workflow.init
    def __init__(self, booking: BookingInput) -> None:
        self._booking = booking
        self._state = State.CREATED
        self._seats: list[str] = []
        self._hold_expires_at: datetime | None = None
        self._payment_attempts = 0
        self._last_error = ""
        self._version = 0  # of the last write; the order's row ignores older ones
        self._seat_changes = 0
        self._payment_code: str | None = None
        self._cancel_reason: str | None = None
        self._first_hold_refusal: str | None = None
        self._saga = Saga()
        # Updates and the main loop take turns: a seat change runs to its end before the
        # timer, a payment or a cancellation can act on the seats.
        self._lock = asyncio.Lock()

    @workflow.run
    async def run(self, booking: BookingInput) -> BookingStatus:
        # 1. The first seats come with the start (update-with-start).
        if not await self._wait_for_first_hold():
            return await self._finish()

        # 2. Hold the seats until the customer pays, lets go, or the hold runs out.
        payment_code = await self._hold_until_payment()
        if payment_code is None:
            return await self._finish()

        # 3 and 4. Pay, then confirm; any failure runs the saga's compensations.
        try:
            await self._extend_holds_over_payment()
            await self._validate_payment(payment_code)
            await self._confirm()
        except BookingFailed as failure:
            await self._end(State.FAILED, failure.message)
            return await self._finish()
        if not workflow.patched(FEWER_ROUND_TRIPS):
            # Bookings from before it let their holds go in a step of their own; the sale now does.
            await self._release(self._seats)
        return await self._finish()

    # --- 1. The first hold --------------------------------------------------------------

    async def _wait_for_first_hold(self) -> bool:
        """True once the first seats are held. If they could not be held, or the customer let the
        order go first, or none came within the hold, the booking ends here; how it ended is
        still recorded, for a customer who is following the order by its id.

        Update-with-start delivers the first hold with the start, and its handler runs first: it
        holds the lock by now, and its answer (bounded by its retries) comes without a timer. Only
        a booking started without one (a cancel sent with the start) waits, at most a hold."""
        first_hold_under_way = self._lock.locked() and workflow.patched(FEWER_ROUND_TRIPS)
        if not first_hold_under_way:
            with contextlib.suppress(asyncio.TimeoutError):
                await workflow.wait_condition(
                    lambda: (
                        self._state is not State.CREATED
                        or self._first_hold_refusal is not None
                        or self._cancel_reason is not None
                    ),
                    timeout=self._hold_duration,
                )
        async with self._lock:  # a first hold still running decides before we do
            if self._state is not State.CREATED:
                return True
            if self._first_hold_refusal is not None:
                await self._end(State.FAILED, self._first_hold_refusal)
            elif self._cancel_reason is not None:
                await self._end(State.CANCELLED, self._cancel_reason)
            else:
                await self._end(State.FAILED, Messages.NOT_STARTED)
            return False

    # --- 2. The hold --------------------------------------------------------------------

    async def _hold_until_payment(self) -> str | None:
        """Wait for the payment, a cancellation or the deadline: the payment code once one was
        accepted, None when the booking ended."""
        while True:
            async with self._lock:
                if self._payment_code is not None:
                    return self._payment_code
                if self._cancel_reason is not None:
                    await self._end(State.CANCELLED, self._cancel_reason)
                    return None
                deadline = self._live_deadline()
                if deadline is None:
                    await self._end(State.EXPIRED, Messages.EXPIRED)
                    return None
            await self._wait_for_news(deadline)

    async def _wait_for_news(self, deadline: datetime) -> None:
        """Until a payment or a cancellation comes, a seat change moves the deadline, or it passes."""
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(
                lambda: (
                    self._payment_code is not None
                    or self._cancel_reason is not None
                    or self._hold_expires_at != deadline
                ),
                timeout=deadline - workflow.now(),
            )

    @workflow.update(name=Updates.HOLD_SEATS)
    async def hold_seats(self, selection: SeatSelection) -> BookingStatus:
        """Hold exactly these seats: new ones taken, dropped ones released, the timer reset."""
        async with self._lock:
            self._ensure_seats_changeable()
            seats = list(selection.seats)
            if self._state is State.CREATED:
                # Before the step: whatever a first hold took is let go if the booking fails.
                self._saga.add(self._release_held_seats)
            elif sorted(seats) == sorted(self._seats) and workflow.patched(HOLD_LIFE_CAP):
                return self.get_status()  # the same seats: no change, the timer as it is
            else:
                self._seat_changes += 1
            try:
                await self._transition(
                    State.SEATS_RESERVED,
                    seats=seats,
                    hold_expires_at=self._full_hold_deadline(),
                    write=self._holding(
                        self._hold_duration + self._ttl_margin,
                        release=[seat for seat in self._seats if seat not in seats],
                    ),
                    retry_policy=HANDLER_STORE_RETRY,
                )
            except (ApplicationError, StoreFailed) as error:
                refusal = _refusal_of(error)
                if self._state is State.CREATED:
                    # A first hold that fails ends the booking; its record keeps the seats asked for.
                    self._seats, self._first_hold_refusal = seats, refusal.message
                elif refusal.type == ErrorType.STORE_UNAVAILABLE:
                    await self._undo(added=[seat for seat in seats if seat not in self._seats])
                raise refusal from error
            return self.get_status()

    @hold_seats.validator
    def _validate_hold_seats(self, selection: SeatSelection) -> None:
        self._ensure_seats_changeable()
        seats = selection.seats
        if not seats:
            raise ApplicationError(CHOOSE_A_SEAT, type=ErrorType.INVALID_SEATS)
        if duplicates := duplicates_in(seats):
            raise ApplicationError(listed_twice(duplicates), type=ErrorType.INVALID_SEATS)

    @workflow.signal(name=Signals.CANCEL)
    def cancel(self, request: CancelRequest) -> None:
        """Let the seats go (the customer abandons the order, or an operator releases it).
        Ignored once payment has started: a payment under way is never cut off."""
        if self._state in (State.CREATED, State.SEATS_RESERVED) and self._cancel_reason is None:
            self._cancel_reason = request.reason

    # --- 3. Payment ---------------------------------------------------------------------

    @workflow.update(name=Updates.SUBMIT_PAYMENT)
    async def submit_payment(self, request: PaymentRequest) -> BookingStatus:
        """Accept a payment code and answer at once; the main loop runs the payment."""
        async with self._lock:
            self._ensure_editable()
            # The main loop wakes now, and waits for the lock: for this handler's outcome.
            self._payment_code = request.payment_code
            try:
                await self._transition(State.PAYMENT_PENDING, retry_policy=HANDLER_STORE_RETRY)
            except StoreFailed as error:
                self._payment_code = None
                await self._undo(added=[])
                raise _refusal_of(error) from error
            return self.get_status()

    @submit_payment.validator
    def _validate_payment_request(self, request: PaymentRequest) -> None:
        self._ensure_editable()
        if not is_payment_code(request.payment_code):
            raise ApplicationError(PAYMENT_CODE_EXPECTED, type=ErrorType.INVALID_PAYMENT_CODE)

    async def _extend_holds_over_payment(self) -> None:
        """Hold the seats for the whole payment window, re-taking any hold Redis lost; if
        another order took a seat meanwhile, fail before any money moves."""
        try:
            await self._transition(State.PAYMENT_PROCESSING, write=self._holding(self._payment_window))
        except ApplicationError as taken:
            raise BookingFailed(taken.message) from taken

    async def _validate_payment(self, payment_code: str) -> None:
        attempts = self._booking.payment_max_attempts
        # An attempt can charge and still fail (its answer lost to the timeout, then declines):
        # the refund, which refunds only what was approved, is registered before the first one.
        # (FEWER_ROUND_TRIPS came later, and implies it: a booking of today records one patch.)
        refund_first = workflow.patched(FEWER_ROUND_TRIPS) or workflow.patched(REFUND_BEFORE_PAYMENT)
        if refund_first:
            self._saga.add(self._refund_payment)
        try:
            result = await workflow.execute_activity(
                Activities.VALIDATE_PAYMENT,
                PaymentInput(order_id=self._booking.order_id, payment_code=payment_code),
                result_type=PaymentResult,
                start_to_close_timeout=timedelta(seconds=self._booking.payment_timeout_seconds),
                retry_policy=dataclasses.replace(PAYMENT_RETRY, maximum_attempts=attempts),
            )
        except ActivityError as error:
            self._payment_attempts = attempts
            raise BookingFailed(Messages.PAYMENT_FAILED_FINAL.format(attempts=attempts)) from error
        self._payment_attempts = result.attempt
        if not refund_first:  # bookings that reached payment before the patch
            self._saga.add(self._refund_payment)

    # --- 4. Confirmation ----------------------------------------------------------------

    async def _confirm(self) -> None:
        """Write the sold seats and CONFIRMED in one transaction; the constraint may refuse. The
        Redis holds have done their job then: the same step lets them go."""
        await self._transition(State.CONFIRMED, write=self._selling)

    async def _selling(self, record: OrderRecord, retry_policy: RetryPolicy) -> None:
        try:
            await call_store(Activities.CONFIRM_BOOKING, record, retry_policy=retry_policy)
        except StoreFailed as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type == ErrorType.SEAT_ALREADY_BOOKED:
                raise BookingFailed(Messages.seat_sold_meanwhile(list(cause.details[0]))) from error
            if isinstance(cause, ApplicationError) and cause.type == ErrorType.PAYMENT_NOT_CHARGED:
                raise BookingFailed(Messages.PAYMENT_NOT_CHARGED) from error
            raise

    # --- The one way the order changes --------------------------------------------------

    async def _transition(
        self,
        state: State,
        *,
        seats: list[str] | None = None,
        hold_expires_at: datetime | None = None,
        last_error: str | None = None,
        write: Write | None = None,
        retry_policy: RetryPolicy = STORE_RETRY,
    ) -> None:
        """Write the next version of the order to the stores (by ``write``, or recorded as it
        is), and only once they have it take it as the workflow's own. The version is used up
        even when the write fails, so that the next one overrides whatever a half-done write left
        on the order's row."""
        self._version += 1
        record = OrderRecord(
            order_id=self._booking.order_id,
            flight_id=self._booking.flight_id,
            version=self._version,
            state=state,
            seats=list(self._seats if seats is None else seats),
            at=workflow.now(),
            hold_expires_at=self._hold_expires_at if hold_expires_at is None else hold_expires_at,
            payment_attempts=self._payment_attempts,
            last_error=self._last_error if last_error is None else last_error,
        )
        await (write or self._recording)(record, retry_policy)
        self._state, self._seats = record.state, record.seats
        self._hold_expires_at, self._last_error = record.hold_expires_at, record.last_error
        if workflow.patched(SEARCH_ATTRIBUTES):  # the Temporal UI lists bookings by their state
            workflow.upsert_search_attributes([SearchAttributes.BOOKING_STATE.value_set(record.state.value)])

    async def _recording(self, record: OrderRecord, retry_policy: RetryPolicy) -> None:
        await call_store(Activities.RECORD_ORDER, record, retry_policy=retry_policy)

    def _holding(self, ttl: timedelta, *, release: list[str] | None = None) -> Write:
        """Hold the record's seats for ``ttl`` (all or none), release ``release``, record; raises
        INVALID_SEATS naming the seats another order has."""

        async def write(record: OrderRecord, retry_policy: RetryPolicy) -> None:
            hold = HoldSeatsInput(record=record, ttl_seconds=ttl.total_seconds(), release=release or [])
            result = await call_store(
                Activities.HOLD_SEATS, hold, result_type=HoldSeatsResult, retry_policy=retry_policy
            )
            if result.taken:
                raise ApplicationError(
                    Messages.seats_unavailable(result.taken), result.taken, type=ErrorType.INVALID_SEATS
                )

        return write

    async def _undo(self, *, added: list[str]) -> None:
        """Put the stores back as they were before a request they did not confirm: the seats it
        may have taken let go, the order recorded as it still is. Bounded like the request; if
        the stores stay out of reach, the booking's end lets those seats go (and their TTL)."""

        async def write(record: OrderRecord, retry_policy: RetryPolicy) -> None:
            release = ReleaseSeatsInput(
                order_id=record.order_id, flight_id=record.flight_id, seats=added, record=record
            )
            await call_store(Activities.RELEASE_SEATS, release, retry_policy=retry_policy)

        try:
            await self._transition(self._state, write=write, retry_policy=HANDLER_STORE_RETRY)
        except StoreFailed:
            self._saga.add(functools.partial(self._release, added))

    # --- Endings and compensations ------------------------------------------------------

    async def _end(self, state: State, message: str) -> None:
        """Undo what the booking took (in reverse), then record how it ended."""
        await self._saga.compensate()
        await self._transition(state, last_error=message)

    async def _release_held_seats(self) -> None:
        await self._release(self._seats)

    async def _release(self, seats: list[str]) -> None:
        booking = self._booking
        await call_store(
            Activities.RELEASE_SEATS,
            ReleaseSeatsInput(order_id=booking.order_id, flight_id=booking.flight_id, seats=seats),
        )

    async def _refund_payment(self) -> None:
        await call_store(Activities.REFUND_PAYMENT, self._booking.order_id)

    async def _finish(self) -> BookingStatus:
        # Let an update that is still running answer its caller before the workflow closes.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.get_status()

    # --- Queries and helpers ------------------------------------------------------------

    @workflow.query(name=Queries.GET_STATUS)
    def get_status(self) -> BookingStatus:
        return BookingStatus(
            order_id=self._booking.order_id,
            state=self._state,
            seats=list(self._seats),
            hold_expires_at=self._hold_expires_at,
            payment_attempts=self._payment_attempts,
            last_error=self._last_error,
            version=self._version,
        )

    def _ensure_editable(self) -> None:
        """Seats and payment change only while the hold is live (``workflow_contract.editable_refusal``)."""
        refusal = editable_refusal(
            state=self._state,
            hold_expires_at=self._hold_expires_at,
            now=workflow.now(),
            cancelling=self._cancel_reason is not None or self._first_hold_refusal is not None,
        )
        if refusal is not None:
            error_type, message = refusal
            raise ApplicationError(message, type=error_type)

    def _ensure_seats_changeable(self) -> None:
        """Editable, and not yet changed ``max_seat_changes`` times (the first hold is no change)."""
        self._ensure_editable()
        limit = self._booking.max_seat_changes
        if self._state is not State.CREATED and self._seat_changes >= limit:
            raise ApplicationError(Messages.too_many_changes(limit), type=ErrorType.TOO_MANY_CHANGES)

    def _full_hold_deadline(self) -> datetime:
        """A full hold from now, but never past the end of the hold's whole life."""
        deadline = workflow.now() + self._hold_duration
        life_ends = self._booking.hold_life_ends_at
        return deadline if life_ends is None else min(deadline, life_ends)

    def _live_deadline(self) -> datetime | None:
        """When the hold runs out; None once it has."""
        deadline = self._hold_expires_at
        return deadline if deadline is not None and workflow.now() < deadline else None

    @property
    def _hold_duration(self) -> timedelta:
        return timedelta(seconds=self._booking.hold_seconds)

    @property
    def _ttl_margin(self) -> timedelta:
        return timedelta(seconds=self._booking.hold_ttl_margin_seconds)

    @property
    def _payment_window(self) -> timedelta:
        """Every attempt's timeout, every backoff between them, and the TTL margin."""
        attempts = self._booking.payment_max_attempts
        timeouts = attempts * timedelta(seconds=self._booking.payment_timeout_seconds)
        return timeouts + _backoffs(PAYMENT_RETRY, attempts) + self._ttl_margin


class BookingFailed(Exception):
    """A step of the payment phase failed in a way the customer must be told about."""

    @property
    def message(self) -> str:
        return str(self.args[0])


def _backoffs(policy: RetryPolicy, attempts: int) -> timedelta:
    """How long Temporal waits between ``attempts`` attempts under ``policy``, in all."""
    ceiling = policy.maximum_interval or policy.initial_interval
    retries = range(attempts - 1)
    return sum(
        (min(policy.initial_interval * policy.backoff_coefficient**n, ceiling) for n in retries), timedelta(0)
    )


def _refusal_of(error: ApplicationError | StoreFailed) -> ApplicationError:
    """What the caller of a hold or a payment is told when it did not happen: the seats another
    order has, the seats not on the flight, or (the stores did not answer) STORE_UNAVAILABLE."""
    cause = error.cause if isinstance(error, StoreFailed) else error
    customer_refusals = (ErrorType.INVALID_SEATS, ErrorType.UNKNOWN_SEATS)
    if isinstance(cause, ApplicationError) and cause.type in customer_refusals:
        return ApplicationError(cause.message, *cause.details, type=cause.type)
    return ApplicationError(Messages.STORE_UNAVAILABLE, type=ErrorType.STORE_UNAVAILABLE)

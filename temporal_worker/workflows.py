"""BookingWorkflow: one durable workflow per order, read top to bottom like the booking itself.

    CREATED -> SEATS_RESERVED -> PAYMENT_PENDING -> PAYMENT_PROCESSING -> CONFIRMED
                   |  (hold timer)                        |  (payment failed / seat sold)
                   v                                      v
                EXPIRED        CANCELLED (customer or operator)        FAILED

1. The first seats arrive with the start of the workflow (update-with-start): the HTTP request
   learns at once whether they could be held and until when.
2. The hold: a durable timer to an absolute deadline. A seat change (a Workflow Update) holds the
   new seats, releases the dropped ones and moves the deadline back to the full hold. The
   deadline passing, or a cancel signal, releases every seat.
3. Payment (an Update that answers at once): the holds are extended over the whole payment
   window, then the gateway is tried with Temporal's retry policy (10 s per attempt, 3 attempts,
   backoff 1 s x1.5 up to 5 s).
4. Confirmation writes the sold seats under PostgreSQL's (flight, seat) unique constraint.
   Whatever fails after a step took something runs that step's compensation (the saga): the
   payment is refunded, the seats released.

Deterministic by construction: no I/O, no clock but ``workflow.now()``, no randomness and no
Django here. Every side effect is an activity, called by name (see ``shared.Activities``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from temporal_worker.shared import (
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
    ReleaseSeatsInput,
    SeatSelection,
    State,
    editable_refusal,
)

# Bookkeeping activities (Redis, PostgreSQL) retry until the store is back: a booking waits
# out an outage instead of failing. Only errors that no retry can fix stop them.
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=[ErrorType.UNKNOWN_SEATS, ErrorType.SEAT_ALREADY_BOOKED],
)


async def call_store(activity: str, arg: Any, *, result_type: type | None = None) -> Any:
    """Run a bookkeeping activity (Redis, PostgreSQL): 10 s per try, retried until it works."""
    return await workflow.execute_activity(
        activity,
        arg,
        result_type=result_type,
        start_to_close_timeout=timedelta(seconds=10),
        retry_policy=STORE_RETRY,
    )


# The payment retry policy of the PRD, in seconds: 1 s, then x1.5 per attempt, at most 5 s.
PAYMENT_BACKOFF = {"initial": 1.0, "coefficient": 1.5, "maximum": 5.0}


class Saga:
    """Compensations registered as steps take something, run in reverse when the booking fails."""

    def __init__(self) -> None:
        self._compensations: list[Callable[[], Awaitable[None]]] = []

    def add(self, compensation: Callable[[], Awaitable[None]]) -> None:
        self._compensations.append(compensation)

    async def compensate(self) -> None:
        while self._compensations:
            await self._compensations.pop()()


@workflow.defn
class BookingWorkflow:
    @workflow.init
    def __init__(self, booking: BookingInput) -> None:
        self._booking = booking
        self._state = State.CREATED
        self._seats: list[str] = []
        self._hold_expires_at: datetime | None = None
        self._payment_attempts = 0
        self._last_error = ""
        self._version = 0  # bumped on every recorded transition; the row ignores older ones
        self._payment_code: str | None = None
        self._cancel_reason: str | None = None
        self._first_hold_refused = False
        self._saga = Saga()
        # Updates and the main loop take turns: a seat change runs to its end before the
        # timer, a payment or a cancellation can act on the seats.
        self._lock = asyncio.Lock()

    @workflow.run
    async def run(self, booking: BookingInput) -> BookingStatus:
        # 1. The first seats come with the start. If they could not be held, or the customer
        #    let the order go first, the booking ends here having held nothing; how it ended is
        #    still recorded, for a customer who is following the order by its id.
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(
                lambda: (
                    self._state is not State.CREATED
                    or self._first_hold_refused
                    or self._cancel_reason is not None
                ),
                timeout=self._hold_duration,
            )
        async with self._lock:  # a first hold still running decides before we do
            if self._state is State.CREATED:
                if self._cancel_reason is not None and not self._first_hold_refused:
                    await self._end(State.CANCELLED, self._cancel_reason)
                else:
                    await self._end(State.FAILED, self._last_error or Messages.NOT_STARTED)
                return await self._finish()

        # 2. Hold the seats until the customer pays, lets go, or the hold runs out.
        if not await self._hold_until_payment():
            return await self._finish()

        # 3 and 4. Pay, then confirm; any failure runs the saga's compensations.
        try:
            await self._extend_holds_over_payment()
            await self._validate_payment()
            await self._confirm()
        except BookingFailed as failure:
            await self._end(State.FAILED, failure.message)
            return await self._finish()
        # Sold seats are protected by the database now; the Redis holds have done their job.
        await self._release(self._seats)
        return await self._finish()

    # --- 2. The hold --------------------------------------------------------------------

    async def _hold_until_payment(self) -> bool:
        """Wait for the payment, a cancellation or the deadline; True when payment was submitted."""
        while True:
            deadline = self._hold_expires_at
            assert deadline is not None
            remaining = deadline - workflow.now()
            if remaining > timedelta(0):
                with contextlib.suppress(asyncio.TimeoutError):
                    await workflow.wait_condition(
                        lambda deadline=deadline: (  # type: ignore[misc]
                            self._state is not State.SEATS_RESERVED
                            or self._cancel_reason is not None
                            or self._hold_expires_at != deadline
                        ),
                        timeout=remaining,
                    )
            async with self._lock:
                if self._state is not State.SEATS_RESERVED:
                    return True  # submit_payment moved the order on
                if self._cancel_reason is not None:
                    await self._end(State.CANCELLED, self._cancel_reason)
                    return False
                if self._hold_expired():
                    await self._end(State.EXPIRED, Messages.EXPIRED)
                    return False
                # Otherwise a seat change moved the deadline: wait again.

    @workflow.update
    async def hold_seats(self, selection: SeatSelection) -> BookingStatus:
        """Hold exactly these seats: new ones taken, dropped ones released, the timer reset."""
        async with self._lock:
            self._ensure_editable()
            seats = list(selection.seats)
            now = workflow.now()
            deadline = now + self._hold_duration
            version = self._version + 1
            record = self._record_of(
                State.SEATS_RESERVED, version=version, seats=seats, hold_expires_at=deadline
            )
            try:
                result = await call_store(
                    Activities.HOLD_SEATS,
                    HoldSeatsInput(
                        record=record,
                        ttl_seconds=(self._hold_duration + self._ttl_margin).total_seconds(),
                        release=[seat for seat in self._seats if seat not in seats],
                    ),
                    result_type=HoldSeatsResult,
                )
            except ActivityError as error:
                raise self._refuse_hold(seats, _as_application_error(error)) from error
            if result.taken:
                raise self._refuse_hold(
                    seats,
                    ApplicationError(
                        Messages.seats_unavailable(result.taken),
                        result.taken,
                        type=ErrorType.INVALID_SEATS,
                    ),
                )
            if self._state is State.CREATED:
                self._saga.add(self._release_held_seats)
            self._state, self._seats, self._hold_expires_at, self._version = (
                State.SEATS_RESERVED,
                seats,
                deadline,
                version,
            )
            return self.get_status()

    def _refuse_hold(self, seats: list[str], refusal: ApplicationError) -> ApplicationError:
        """A refused first hold ends the booking, holding nothing (its record keeps the seats the
        customer asked for); a refused change keeps the seats held before it."""
        if self._state is State.CREATED:
            self._first_hold_refused = True
            self._seats, self._last_error = seats, refusal.message
        return refusal

    @hold_seats.validator
    def _validate_hold_seats(self, selection: SeatSelection) -> None:
        self._ensure_editable()
        seats = selection.seats
        if not seats:
            raise ApplicationError("Choose at least one seat", type=ErrorType.INVALID_SEATS)
        if len(set(seats)) != len(seats):
            raise ApplicationError("Each seat can be chosen only once", type=ErrorType.INVALID_SEATS)

    @workflow.signal
    def cancel(self, request: CancelRequest) -> None:
        """Let the seats go (the customer abandons the order, or an operator releases it).
        Ignored once payment has started: a payment under way is never cut off."""
        if self._state in (State.CREATED, State.SEATS_RESERVED) and self._cancel_reason is None:
            self._cancel_reason = request.reason

    # --- 3. Payment ---------------------------------------------------------------------

    @workflow.update
    async def submit_payment(self, request: PaymentRequest) -> BookingStatus:
        """Accept a payment code and answer at once; the main loop runs the payment."""
        async with self._lock:
            self._ensure_editable()
            self._payment_code = request.payment_code
            await self._transition(State.PAYMENT_PENDING)
            return self.get_status()

    @submit_payment.validator
    def _validate_payment_request(self, request: PaymentRequest) -> None:
        self._ensure_editable()
        code = request.payment_code
        if not (isinstance(code, str) and len(code) == 5 and code.isascii() and code.isdigit()):
            raise ApplicationError(
                "The payment code must be exactly 5 digits", type=ErrorType.INVALID_PAYMENT_CODE
            )

    async def _extend_holds_over_payment(self) -> None:
        """Hold the seats for the whole payment window, re-taking any hold Redis lost; if
        another order took a seat meanwhile, fail before any money moves."""
        self._version += 1
        record = self._record_of(State.PAYMENT_PROCESSING, version=self._version)
        window = self._payment_window.total_seconds()
        result = await call_store(
            Activities.HOLD_SEATS,
            HoldSeatsInput(record=record, ttl_seconds=window),
            result_type=HoldSeatsResult,
        )
        if result.taken:
            raise BookingFailed(Messages.seats_unavailable(result.taken))
        self._state = State.PAYMENT_PROCESSING

    async def _validate_payment(self) -> None:
        assert self._payment_code is not None
        attempts = self._booking.payment_max_attempts
        try:
            result = await workflow.execute_activity(
                Activities.VALIDATE_PAYMENT,
                PaymentInput(order_id=self._booking.order_id, payment_code=self._payment_code),
                result_type=PaymentResult,
                start_to_close_timeout=timedelta(seconds=self._booking.payment_timeout_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=PAYMENT_BACKOFF["initial"]),
                    backoff_coefficient=PAYMENT_BACKOFF["coefficient"],
                    maximum_interval=timedelta(seconds=PAYMENT_BACKOFF["maximum"]),
                    maximum_attempts=attempts,
                ),
            )
        except ActivityError as error:
            self._payment_attempts = attempts
            raise BookingFailed(Messages.PAYMENT_FAILED_FINAL.format(attempts=attempts)) from error
        self._payment_attempts = result.attempt
        self._saga.add(self._refund_payment)

    # --- 4. Confirmation ----------------------------------------------------------------

    async def _confirm(self) -> None:
        """Write the sold seats and CONFIRMED in one transaction; the constraint may refuse."""
        version = self._version + 1
        try:
            await call_store(Activities.CONFIRM_BOOKING, self._record_of(State.CONFIRMED, version=version))
        except ActivityError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type == ErrorType.SEAT_ALREADY_BOOKED:
                raise BookingFailed(Messages.seat_sold_meanwhile(list(cause.details[0]))) from error
            raise
        self._state, self._version, self._last_error = State.CONFIRMED, version, ""

    # --- Endings and compensations ------------------------------------------------------

    async def _end(self, state: State, message: str) -> None:
        """Undo what the booking took (in reverse), then record how it ended."""
        self._last_error = message
        await self._saga.compensate()
        await self._transition(state)

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

    @workflow.query
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

    async def _transition(self, state: State) -> None:
        self._state = state
        self._version += 1
        await call_store(Activities.RECORD_ORDER, self._record_of(state, version=self._version))

    def _record_of(
        self,
        state: State,
        *,
        version: int,
        seats: list[str] | None = None,
        hold_expires_at: datetime | None = None,
    ) -> OrderRecord:
        return OrderRecord(
            order_id=self._booking.order_id,
            flight_id=self._booking.flight_id,
            version=version,
            state=state,
            seats=list(self._seats if seats is None else seats),
            at=workflow.now(),
            hold_expires_at=hold_expires_at or self._hold_expires_at,
            payment_attempts=self._payment_attempts,
            last_error=self._last_error,
        )

    def _ensure_editable(self) -> None:
        """Seats and payment can change only while the hold is live (``shared.editable_refusal``)."""
        refusal = editable_refusal(
            state=self._state,
            hold_expires_at=self._hold_expires_at,
            now=workflow.now(),
            cancelling=self._cancel_reason is not None or self._first_hold_refused,
        )
        if refusal is not None:
            error_type, message = refusal
            raise ApplicationError(message, self._state.value, type=error_type)

    def _hold_expired(self) -> bool:
        return self._hold_expires_at is not None and workflow.now() >= self._hold_expires_at

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
        backoff = sum(
            min(
                PAYMENT_BACKOFF["initial"] * PAYMENT_BACKOFF["coefficient"] ** n,
                PAYMENT_BACKOFF["maximum"],
            )
            for n in range(attempts - 1)
        )
        seconds = attempts * self._booking.payment_timeout_seconds + backoff
        return timedelta(seconds=seconds) + self._ttl_margin


class BookingFailed(Exception):
    """A step of the payment phase failed in a way the customer must be told about."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _as_application_error(error: ActivityError) -> ApplicationError:
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return ApplicationError(cause.message, *cause.details, type=cause.type)
    return ApplicationError(str(cause or error), type="HOLD_FAILED")

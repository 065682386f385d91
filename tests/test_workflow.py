"""BookingWorkflow's logic on Temporal's time-skipping test server.

Fifteen minutes pass in an instant. The activities are in-memory stand-ins registered under the
real names (a unit test of the workflow: the real ones are exercised by the integration tests).

The first hold is sent as a separate update after the start: the time-skipping server (the Java
test server 1.40) stops skipping time for a workflow started by update-with-start, so its timers
would run in real time. Production's update-with-start path runs in the integration tests, on
the dev server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sysconfig
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from orders.workflow_contract import (
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
    SearchAttributes,
    SeatSelection,
    State,
)
from temporal_worker.workflows import BookingWorkflow

TEST_SERVER = os.path.join(sysconfig.get_path("scripts"), "temporal-test-server")
DEV_SERVER = os.path.join(sysconfig.get_path("scripts"), "temporal")
HOLD = timedelta(minutes=15)
# mutmut's trampolines (make mutate) must be the same module inside the sandbox as outside.
SANDBOX = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules("mutmut"))


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    # A server per test (it starts in ~0.1 s): one test's timers and clock never touch another's.
    environment = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=TEST_SERVER)
    # As the dev server registers them (devstack): a workflow that sets an unknown one is stuck.
    await environment.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=environment.client.namespace,
            search_attributes={
                key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                for key in (SearchAttributes.BOOKING_STATE, SearchAttributes.FLIGHT_ID)
            },
        )
    )
    yield environment
    await environment.shutdown()


class StoreDown(Exception):
    """What a stand-in raises while its store is out of reach (a retryable failure)."""


@dataclass
class FakeStores:
    """Redis holds, the order rows and the gateway, in memory.

    Faults: an activity in ``failing`` fails at once, as when its store is out of reach; one in
    ``lose_answers`` does its work, then fails as if its answer were lost; one in ``paused``
    waits, once started, until the test resumes it.
    """

    holds: dict[str, str] = field(default_factory=dict)  # seat -> order id
    sold: set[str] = field(default_factory=set)  # seats the "database" refuses to sell again
    unknown: set[str] = field(default_factory=set)  # seats not on the flight
    records: list[OrderRecord] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # activity names, in order
    hold_requests: list[HoldSeatsInput] = field(default_factory=list)
    payment_attempts: list[tuple[int, float]] = field(default_factory=list)  # (attempt, scheduled at)
    # approve | decline | hang | block | charge-then-hang-then-decline | approve-then-refunded-elsewhere
    payment: str = "approve"
    charged: set[str] = field(default_factory=set)  # orders with an approved, unrefunded charge
    sell_during_payment: set[str] = field(default_factory=set)  # sold by another order meanwhile
    lose_holds_before_payment: bool = False
    unblock: asyncio.Event = field(default_factory=asyncio.Event)
    failing: set[str] = field(default_factory=set)
    lose_answers: set[str] = field(default_factory=set)
    paused: dict[str, asyncio.Event] = field(default_factory=dict)
    started: dict[str, asyncio.Event] = field(default_factory=dict)

    def pause(self, name: str) -> None:
        self.paused[name], self.started[name] = asyncio.Event(), asyncio.Event()

    async def wait_until_started(self, name: str) -> None:
        await asyncio.wait_for(self.started[name].wait(), timeout=10)

    def resume(self, name: str) -> None:
        self.paused.pop(name).set()

    async def _enter(self, name: str) -> None:
        self.calls.append(name)
        if name in self.paused:
            self.started[name].set()
            await self.paused[name].wait()
        if name in self.failing:
            raise StoreDown(f"{name}: the store is out of reach")

    def _leave(self, name: str) -> None:
        if name in self.lose_answers:
            raise StoreDown(f"{name}: the answer was lost")

    def activities(self) -> list:
        stores = self

        @activity.defn(name=Activities.HOLD_SEATS)
        async def hold_seats(request: HoldSeatsInput) -> HoldSeatsResult:
            await stores._enter(Activities.HOLD_SEATS)
            stores.hold_requests.append(request)
            order = request.record.order_id
            if unknown := [s for s in request.record.seats if s in stores.unknown]:
                raise ApplicationError("unknown", unknown, type=ErrorType.UNKNOWN_SEATS, non_retryable=True)
            if request.record.state == State.PAYMENT_PROCESSING and stores.lose_holds_before_payment:
                stores.holds = {seat: "ord-someone-else" for seat in request.record.seats}
            taken = [
                s for s in request.record.seats if stores.holds.get(s, order) != order or s in stores.sold
            ]
            if taken:
                return HoldSeatsResult(taken=taken)
            for seat in request.release:
                stores.holds.pop(seat, None)
            stores.holds.update({seat: order for seat in request.record.seats})
            stores.records.append(request.record)
            stores._leave(Activities.HOLD_SEATS)
            return HoldSeatsResult(taken=[])

        @activity.defn(name=Activities.RELEASE_SEATS)
        async def release_seats(request: ReleaseSeatsInput) -> int:
            await stores._enter(Activities.RELEASE_SEATS)
            mine = [s for s in request.seats if stores.holds.get(s) == request.order_id]
            for seat in mine:
                del stores.holds[seat]
            if request.record is not None:
                stores.records.append(request.record)
            return len(mine)

        @activity.defn(name=Activities.RECORD_ORDER)
        async def record_order(record: OrderRecord) -> bool:
            await stores._enter(Activities.RECORD_ORDER)
            stores.records.append(record)
            stores._leave(Activities.RECORD_ORDER)
            return True

        @activity.defn(name=Activities.CONFIRM_BOOKING)
        async def confirm_booking(record: OrderRecord) -> None:
            await stores._enter(Activities.CONFIRM_BOOKING)
            if record.order_id not in stores.charged:  # the ledger has no live charge for it
                raise ApplicationError("no charge", type=ErrorType.PAYMENT_NOT_CHARGED, non_retryable=True)
            if refused := [s for s in record.seats if s in stores.sold]:
                raise ApplicationError(
                    "sold", refused, type=ErrorType.SEAT_ALREADY_BOOKED, non_retryable=True
                )
            stores.sold.update(record.seats)
            stores.records.append(record)
            for seat in record.seats:  # the sale lets the order's holds go, as the real one does
                if stores.holds.get(seat) == record.order_id:
                    del stores.holds[seat]

        @activity.defn(name=Activities.REFUND_PAYMENT)
        async def refund_payment(order_id: str) -> int:
            await stores._enter(Activities.REFUND_PAYMENT)
            refunded = int(order_id in stores.charged)
            stores.charged.discard(order_id)
            return refunded

        @activity.defn(name=Activities.VALIDATE_PAYMENT)
        async def validate_payment(request: PaymentInput) -> PaymentResult:
            info = activity.info()
            stores.calls.append(Activities.VALIDATE_PAYMENT)
            stores.payment_attempts.append((info.attempt, info.current_attempt_scheduled_time.timestamp()))
            if stores.payment == "charge-then-hang-then-decline":
                if info.attempt == 1:  # the gateway approves, and its answer never arrives
                    stores.charged.add(request.order_id)
                    await asyncio.sleep(30)
                raise ApplicationError(Messages.PAYMENT_FAILED, type=ErrorType.PAYMENT_DECLINED)
            if stores.payment == "decline":
                raise ApplicationError(Messages.PAYMENT_FAILED, type=ErrorType.PAYMENT_DECLINED)
            if stores.payment == "hang":
                await asyncio.sleep(30)
            if stores.payment == "block":
                await stores.unblock.wait()
            stores.sold.update(stores.sell_during_payment)
            if stores.payment != "approve-then-refunded-elsewhere":  # refunded behind the booking
                stores.charged.add(request.order_id)
            return PaymentResult(attempt=info.attempt)

        return [hold_seats, release_seats, record_order, confirm_booking, refund_payment, validate_payment]

    @property
    def last(self) -> OrderRecord:
        return self.records[-1]

    def states(self) -> list[State]:
        return [record.state for record in self.records]


@dataclass
class Booking:
    client: Client
    handle: WorkflowHandle
    first: BookingStatus

    async def update(self, update, argument) -> BookingStatus:  # type: ignore[no-untyped-def]
        return await self.handle.execute_update(update, argument)

    async def status(self) -> BookingStatus:
        return await self.handle.query(BookingWorkflow.get_status)


@pytest.fixture(scope="module")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real dev server, in real time, for what the time-skipping test server cannot follow: a
    timer that fires while a local activity runs (the test server refuses the task's completion,
    "invalid history builder state"; the real server takes it)."""
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=DEV_SERVER,
        search_attributes=[SearchAttributes.BOOKING_STATE, SearchAttributes.FLIGHT_ID],
    )
    yield environment
    await environment.shutdown()


@pytest.fixture
async def world(env: WorkflowEnvironment) -> AsyncIterator[tuple[WorkflowEnvironment, FakeStores, str]]:
    async with _world(env) as made:
        yield made


@pytest.fixture
async def real_time_world(
    dev_env: WorkflowEnvironment,
) -> AsyncIterator[tuple[WorkflowEnvironment, FakeStores, str]]:
    async with _world(dev_env) as made:
        yield made


@contextlib.asynccontextmanager
async def _world(env: WorkflowEnvironment) -> AsyncIterator[tuple[WorkflowEnvironment, FakeStores, str]]:
    stores = FakeStores()
    task_queue = f"wf-test-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[BookingWorkflow],
        activities=stores.activities(),
        workflow_runner=SANDBOX,
        # A bug in workflow code fails the booking at once instead of retrying its task forever
        # (what production does, so that a fixed worker can carry on): a test fails fast.
        workflow_failure_exception_types=[Exception],
    ):
        yield env, stores, task_queue


async def start(  # type: ignore[no-untyped-def]
    world,
    *,
    payment_timeout: float = 10,
    attempts: int = 3,
    max_changes: int = 20,
    hold: timedelta = HOLD,
    task_timeout: timedelta | None = None,
    life: timedelta | None = None,
) -> WorkflowHandle:
    env, _, task_queue = world
    order_id = f"ord-{uuid.uuid4().hex[:20]}"
    life_ends = (await env.get_current_time()) + life if life is not None else None
    return await env.client.start_workflow(
        BookingWorkflow.run,
        BookingInput(
            order_id, "fl-101", hold.total_seconds(), 60, payment_timeout, attempts, max_changes, life_ends
        ),
        id=f"booking-{order_id}",
        task_queue=task_queue,
        task_timeout=task_timeout,
    )


async def book(world, seats: list[str], **rules: Any) -> Booking:  # type: ignore[no-untyped-def]
    handle = await start(world, **rules)
    first = await handle.execute_update(BookingWorkflow.hold_seats, SeatSelection(seats=seats))
    return Booking(world[0].client, handle, first)


def update_error(raised: pytest.ExceptionInfo[WorkflowUpdateFailedError]) -> ApplicationError:
    cause = raised.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def test_the_hold_expires_after_15_minutes_and_releases_every_seat(world):
    _, stores, _ = world
    booking = await book(world, ["12A", "12B"])
    assert stores.holds == {"12A": booking.first.order_id, "12B": booking.first.order_id}

    result = await booking.handle.result()

    assert result.state == State.EXPIRED
    assert stores.holds == {}
    assert stores.last.state == State.EXPIRED
    assert stores.last.last_error == Messages.EXPIRED
    assert stores.last.at - booking.first.hold_expires_at < timedelta(seconds=1)
    assert booking.first.hold_expires_at - stores.records[0].at == HOLD


async def test_a_seat_change_resets_the_timer_and_releases_dropped_seats(world):
    env, stores, _ = world
    booking = await book(world, ["7A", "7B"])
    await env.sleep(timedelta(minutes=10))

    changed = await booking.update(BookingWorkflow.hold_seats, SeatSelection(seats=["7B", "8C"]))

    assert set(stores.holds) == {"7B", "8C"}, "7A released at once, 8C held"
    assert changed.hold_expires_at - booking.first.hold_expires_at >= timedelta(minutes=10)
    await env.sleep(timedelta(minutes=6))  # 16 minutes after the first hold: still held
    assert (await booking.status()).state == State.SEATS_RESERVED
    result = await booking.handle.result()
    assert result.state == State.EXPIRED
    assert stores.last.at - changed.hold_expires_at < timedelta(seconds=1)


async def test_seat_changes_never_stretch_the_hold_past_its_whole_life(world):
    env, stores, _ = world
    booking = await book(world, ["7A"], life=timedelta(minutes=45))
    life_ends = stores.records[0].at + timedelta(minutes=45)
    deadlines = []
    for seat in ("7B", "7C", "7D"):  # 14 minutes apart: each would give 15 more
        await env.sleep(timedelta(minutes=14))
        deadlines.append(
            (await booking.update(BookingWorkflow.hold_seats, SeatSelection([seat]))).hold_expires_at
        )

    result = await booking.handle.result()

    assert deadlines[0] - stores.records[0].at >= timedelta(minutes=29), "a change still resets the timer"
    assert abs(deadlines[-1] - life_ends) < timedelta(seconds=1), "but never past the cap"
    assert result.state == State.EXPIRED
    assert stores.last.at - life_ends < timedelta(seconds=1), "45 minutes after the first hold, not 57"
    assert stores.holds == {}


async def test_a_change_to_the_same_seats_is_no_change(world):
    env, stores, _ = world
    booking = await book(world, ["7A", "7B"], max_changes=1)
    await env.sleep(timedelta(minutes=10))

    same = await booking.update(BookingWorkflow.hold_seats, SeatSelection(["7B", "7A"]))

    assert same.hold_expires_at == booking.first.hold_expires_at, "the timer is not reset"
    assert same.seats == ["7A", "7B"]
    assert stores.calls.count(Activities.HOLD_SEATS) == 1, "nothing written"
    changed = await booking.update(BookingWorkflow.hold_seats, SeatSelection(["7C"]))
    assert changed.seats == ["7C"], "it did not count against the one change allowed"


async def test_payment_tries_exactly_three_times_with_backoff_then_fails_and_releases(world):
    _, stores, _ = world
    stores.payment = "decline"
    booking = await book(world, ["3C"])

    await booking.update(BookingWorkflow.submit_payment, PaymentRequest("99999"))
    result = await booking.handle.result()

    assert [attempt for attempt, _ in stores.payment_attempts] == [1, 2, 3]
    assert result.state == State.FAILED
    assert result.last_error == Messages.PAYMENT_FAILED_FINAL.format(attempts=3)
    assert (result.payment_attempts, stores.last.payment_attempts) == (3, 3), "the final failure counts 3"
    assert stores.holds == {}
    assert stores.states() == [
        State.SEATS_RESERVED,
        State.PAYMENT_PENDING,
        State.PAYMENT_PROCESSING,
        State.FAILED,
    ]
    assert stores.calls[-3:] == [Activities.REFUND_PAYMENT, Activities.RELEASE_SEATS, Activities.RECORD_ORDER]
    # The server enforces the backoff (the time-skipping server skips it, so its clock can't
    # show the gaps: tests/test_booking_api.py measures them on the dev server).
    history = await booking.handle.fetch_history()
    scheduled = next(
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == Activities.VALIDATE_PAYMENT
    )
    policy = scheduled.retry_policy
    assert scheduled.start_to_close_timeout.ToTimedelta() == timedelta(seconds=10)
    assert policy.initial_interval.ToTimedelta() == timedelta(seconds=1)
    assert policy.backoff_coefficient == 1.5
    assert policy.maximum_interval.ToTimedelta() == timedelta(seconds=5)
    assert policy.maximum_attempts == 3


async def test_each_attempt_is_cut_off_by_the_timeout(world):
    _, stores, _ = world
    stores.payment = "hang"
    booking = await book(world, ["4A"], payment_timeout=0.5)

    await booking.update(BookingWorkflow.submit_payment, PaymentRequest("88888"))
    result = await booking.handle.result()

    assert [attempt for attempt, _ in stores.payment_attempts] == [1, 2, 3]
    assert result.state == State.FAILED
    assert stores.holds == {}


async def test_an_approved_payment_confirms_and_lets_the_holds_go(world):
    _, stores, _ = world
    booking = await book(world, ["12A", "12B"])

    paying = await booking.update(BookingWorkflow.submit_payment, PaymentRequest("00000"))
    result = await booking.handle.result()

    assert paying.state == State.PAYMENT_PENDING
    assert result.state == State.CONFIRMED
    assert result.payment_attempts == 1
    assert stores.sold == {"12A", "12B"}
    assert stores.last.state == State.CONFIRMED
    assert stores.holds == {}, "sold seats need no hold"
    # The order's history, as operators read it in the admin: one version per transition.
    assert [(record.version, record.state) for record in stores.records] == [
        (1, State.SEATS_RESERVED),
        (2, State.PAYMENT_PENDING),
        (3, State.PAYMENT_PROCESSING),
        (4, State.CONFIRMED),
    ]
    # The Temporal UI lists the booking by the state it ended in.
    attributes = (await booking.handle.describe()).typed_search_attributes
    assert attributes.get(SearchAttributes.BOOKING_STATE) == State.CONFIRMED.value


async def test_a_sale_refused_by_the_constraint_refunds_then_releases(world):
    _, stores, _ = world
    stores.sell_during_payment = {"2B"}  # another order buys 2B while this one pays
    booking = await book(world, ["2B"])

    await booking.update(BookingWorkflow.submit_payment, PaymentRequest("00000"))
    result = await booking.handle.result()

    assert result.state == State.FAILED
    assert result.last_error == Messages.seat_sold_meanwhile(["2B"])
    compensations = [c for c in stores.calls if c in (Activities.REFUND_PAYMENT, Activities.RELEASE_SEATS)]
    assert compensations == [Activities.REFUND_PAYMENT, Activities.RELEASE_SEATS], "the saga runs in reverse"
    assert stores.holds == {}


async def test_an_order_whose_charge_is_not_live_at_confirmation_fails_and_is_released(world):
    # The ledger has no live charge when the seats are to be sold (refunded by hand at the
    # gateway, say): never confirmed without its money.
    _, stores, _ = world
    stores.payment = "approve-then-refunded-elsewhere"
    booking = await book(world, ["2C"])

    await booking.update(BookingWorkflow.submit_payment, PaymentRequest("00000"))
    result = await booking.handle.result()

    assert (result.state, result.last_error) == (State.FAILED, Messages.PAYMENT_NOT_CHARGED)
    assert "2C" not in stores.sold
    compensations = [c for c in stores.calls if c in (Activities.REFUND_PAYMENT, Activities.RELEASE_SEATS)]
    assert compensations == [Activities.REFUND_PAYMENT, Activities.RELEASE_SEATS]
    assert stores.holds == {}


async def test_seats_lost_before_payment_fail_the_order_before_any_charge(world):
    _, stores, _ = world
    stores.lose_holds_before_payment = True
    booking = await book(world, ["6A"])

    await booking.update(BookingWorkflow.submit_payment, PaymentRequest("00000"))
    result = await booking.handle.result()

    assert result.state == State.FAILED
    assert result.last_error == Messages.seats_unavailable(["6A"])
    assert stores.payment_attempts == []


async def test_a_refused_first_hold_ends_the_booking_at_once_holding_nothing(world):
    _, stores, _ = world
    stores.holds["9A"] = "ord-another"
    handle = await start(world)

    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await handle.execute_update(BookingWorkflow.hold_seats, SeatSelection(seats=["9A", "9B"]))
    result = await handle.result()

    error = update_error(raised)
    assert (error.type, error.message, error.details) == (
        ErrorType.INVALID_SEATS,
        "Seat 9A is no longer available",
        (["9A"],),
    )
    assert stores.holds == {"9A": "ord-another"}
    assert (result.state, result.seats, result.last_error) == (State.FAILED, ["9A", "9B"], error.message)
    assert stores.states() == [State.FAILED]
    started = (await handle.describe()).start_time
    assert stores.last.at - started < timedelta(seconds=1), "not after waiting out the hold"


async def test_a_first_hold_of_seats_not_on_the_flight_is_refused_as_unknown(world):
    _, stores, _ = world
    stores.unknown = {"99Z"}
    handle = await start(world)

    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await handle.execute_update(BookingWorkflow.hold_seats, SeatSelection(seats=["1A", "99Z"]))

    error = update_error(raised)
    assert (error.type, error.message, error.details) == (ErrorType.UNKNOWN_SEATS, "unknown", (["99Z"],))
    assert (await handle.result()).state == State.FAILED


async def test_no_first_hold_within_the_hold_ends_the_booking_as_not_started(world):
    _, stores, _ = world
    handle = await start(world)

    result = await handle.result()

    assert (result.state, result.last_error) == (State.FAILED, Messages.NOT_STARTED)
    assert stores.states() == [State.FAILED]
    started = (await handle.describe()).start_time
    assert abs(stores.last.at - started - HOLD) < timedelta(seconds=1)


async def test_a_cancel_before_the_first_hold_ends_the_booking_as_cancelled(world):
    _, stores, _ = world
    handle = await start(world)

    await handle.signal(BookingWorkflow.cancel, CancelRequest())
    result = await handle.result()

    assert (result.state, result.last_error) == (State.CANCELLED, Messages.CANCELLED_BY_CUSTOMER)
    assert stores.states() == [State.CANCELLED]


@pytest.mark.parametrize(
    ("update", "argument", "error_type"),
    [
        (BookingWorkflow.hold_seats, SeatSelection(seats=[]), ErrorType.INVALID_SEATS),
        (BookingWorkflow.hold_seats, SeatSelection(seats=["1A", "1A"]), ErrorType.INVALID_SEATS),
        (BookingWorkflow.submit_payment, PaymentRequest("1234"), ErrorType.INVALID_PAYMENT_CODE),
        (BookingWorkflow.submit_payment, PaymentRequest("abcde"), ErrorType.INVALID_PAYMENT_CODE),
    ],
)
async def test_validators_refuse_bad_updates_before_they_reach_history(world, update, argument, error_type):
    _, stores, _ = world
    booking = await book(world, ["1A"])
    before = len(stores.records)

    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await booking.update(update, argument)

    assert update_error(raised).type == error_type
    history = await booking.handle.fetch_history()
    accepted = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert len(accepted) == 1, "only the first hold was accepted"
    assert len(stores.records) == before
    assert (await booking.status()).state == State.SEATS_RESERVED


async def test_once_paying_the_order_cannot_change_nor_be_cancelled(world):
    _, stores, _ = world
    stores.payment = "block"
    booking = await book(world, ["5A"])
    await booking.update(BookingWorkflow.submit_payment, PaymentRequest("00000"))

    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await booking.update(BookingWorkflow.hold_seats, SeatSelection(seats=["5B"]))
    await booking.handle.signal(BookingWorkflow.cancel, CancelRequest())
    stores.unblock.set()
    result = await booking.handle.result()

    assert update_error(raised).type == ErrorType.ORDER_NOT_EDITABLE
    assert result.state == State.CONFIRMED, "a cancel during payment is ignored"


async def test_a_cancel_signal_releases_the_seats(world):
    _, stores, _ = world
    booking = await book(world, ["11A"])

    await booking.handle.signal(BookingWorkflow.cancel, CancelRequest(reason=Messages.RELEASED_BY_OPERATOR))
    result = await booking.handle.result()

    assert result.state == State.CANCELLED
    assert result.last_error == Messages.RELEASED_BY_OPERATOR
    assert stores.holds == {}
    assert stores.last.state == State.CANCELLED


async def test_the_query_agrees_with_the_last_record(world):
    _, stores, _ = world
    booking = await book(world, ["20A"])
    await booking.update(BookingWorkflow.hold_seats, SeatSelection(seats=["20A", "20B"]))

    status = await booking.status()

    last = stores.last
    assert (status.state, status.seats, status.hold_expires_at, status.version) == (
        last.state,
        last.seats,
        last.hold_expires_at,
        last.version,
    )


# --- The lock: a seat change runs to its end before anything else acts on the seats --------


async def test_a_cancel_during_a_seat_change_waits_for_it_then_releases_every_seat(world):
    _, stores, _ = world
    # The payment is accepted once the change's workflow task heartbeats (80 % of its timeout,
    # in real time): kept short.
    booking = await book(world, ["7A", "7B"], task_timeout=timedelta(seconds=2))
    stores.pause(Activities.HOLD_SEATS)
    change = asyncio.create_task(booking.update(BookingWorkflow.hold_seats, SeatSelection(["7B", "8C"])))
    await stores.wait_until_started(Activities.HOLD_SEATS)

    await booking.handle.signal(BookingWorkflow.cancel, CancelRequest())
    stores.resume(Activities.HOLD_SEATS)
    changed = await change
    result = await booking.handle.result()

    assert changed.seats == ["7B", "8C"]
    assert result.state == State.CANCELLED
    assert stores.holds == {}, "8C, taken by the change, was released too"
    assert stores.states() == [State.SEATS_RESERVED, State.SEATS_RESERVED, State.CANCELLED]


async def test_once_a_cancel_has_arrived_a_payment_is_refused_before_it_reaches_history(world):
    _, stores, _ = world
    # A short task timeout: what arrives during the paused local activity is delivered at the
    # task's next heartbeat (80 % of it), not after the default 10 s.
    booking = await book(world, ["7A"], task_timeout=timedelta(seconds=2))
    stores.pause(Activities.HOLD_SEATS)
    change = asyncio.create_task(booking.update(BookingWorkflow.hold_seats, SeatSelection(["7B"])))
    await stores.wait_until_started(Activities.HOLD_SEATS)
    await booking.handle.signal(BookingWorkflow.cancel, CancelRequest())

    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await booking.update(BookingWorkflow.submit_payment, PaymentRequest("00000"))
    stores.resume(Activities.HOLD_SEATS)
    await change
    result = await booking.handle.result()

    assert update_error(raised).type == ErrorType.ORDER_NOT_EDITABLE
    assert result.state == State.CANCELLED
    assert accepted_updates(await booking.handle.fetch_history()) == 2, "the first hold and the change"
    assert Activities.VALIDATE_PAYMENT not in stores.calls


async def _until(moment: datetime) -> None:
    """Wait, in real time (the dev server's clock is the machine's), until ``moment`` has passed."""
    await asyncio.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


async def test_the_hold_running_out_during_a_seat_change_waits_for_its_new_deadline(real_time_world):
    world = real_time_world
    _, stores, _ = world
    hold = timedelta(seconds=3)
    handle = await start(world, hold=hold)
    booking = Booking(
        world[0].client,
        handle,
        await handle.execute_update(BookingWorkflow.hold_seats, SeatSelection(["7A", "7B"])),
    )
    await _until(booking.first.hold_expires_at - hold / 2)  # half the hold has gone
    stores.pause(Activities.HOLD_SEATS)
    change = asyncio.create_task(booking.update(BookingWorkflow.hold_seats, SeatSelection(["7B", "8C"])))
    await stores.wait_until_started(Activities.HOLD_SEATS)

    await _until(booking.first.hold_expires_at + timedelta(milliseconds=200))  # passes while it runs
    stores.resume(Activities.HOLD_SEATS)
    changed = await change
    status = await booking.status()

    assert changed.hold_expires_at > booking.first.hold_expires_at + timedelta(seconds=1)
    assert (status.state, status.seats) == (State.SEATS_RESERVED, ["7B", "8C"])
    assert State.EXPIRED not in stores.states()
    assert stores.holds == {"7B": changed.order_id, "8C": changed.order_id}
    await booking.handle.terminate("done")


async def test_a_payment_during_a_seat_change_pays_for_the_new_seats(world):
    _, stores, _ = world
    # The payment is accepted once the change's workflow task heartbeats (80 % of its timeout,
    # in real time): kept short.
    booking = await book(world, ["7A", "7B"], task_timeout=timedelta(seconds=2))
    stores.pause(Activities.HOLD_SEATS)
    change = asyncio.create_task(booking.update(BookingWorkflow.hold_seats, SeatSelection(["7B", "8C"])))
    await stores.wait_until_started(Activities.HOLD_SEATS)

    paying = await booking.handle.start_update(  # accepted: it waits for the lock
        BookingWorkflow.submit_payment, PaymentRequest("00000"), wait_for_stage=WorkflowUpdateStage.ACCEPTED
    )
    stores.resume(Activities.HOLD_SEATS)
    await change
    await paying.result()
    result = await booking.handle.result()

    assert result.state == State.CONFIRMED
    assert stores.sold == {"7B", "8C"}
    assert stores.states() == [
        State.SEATS_RESERVED,
        State.SEATS_RESERVED,
        State.PAYMENT_PENDING,
        State.PAYMENT_PROCESSING,
        State.CONFIRMED,
    ]


async def test_an_update_still_running_when_the_booking_ends_gets_its_answer(world):
    env, stores, _ = world
    # The ending's record is a local activity: an update is accepted only once its workflow task
    # is done, or heartbeats (every 80 % of the task timeout: kept short here, in real time).
    handle = await start(world, task_timeout=timedelta(seconds=2))
    stores.pause(Activities.RECORD_ORDER)
    await env.sleep(HOLD + timedelta(seconds=1))  # no first hold came: the booking ends...
    await stores.wait_until_started(Activities.RECORD_ORDER)

    late = await handle.start_update(  # ...while a late first hold arrives, and waits for the lock
        BookingWorkflow.hold_seats, SeatSelection(["1A"]), wait_for_stage=WorkflowUpdateStage.ACCEPTED
    )
    stores.resume(Activities.RECORD_ORDER)
    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await late.result()

    error = update_error(raised)
    assert (error.type, error.message) == (
        ErrorType.ORDER_NOT_EDITABLE,
        "The order is failed: it can no longer be changed",
    )
    assert (await handle.result()).state == State.FAILED
    assert stores.holds == {}


@workflow.defn(name="BookingWithASlowHandler")
class BookingWithASlowHandler(BookingWorkflow):
    """The booking, plus one update whose handler is still waiting on a timer when the booking
    ends: what any handler that awaits after its last use of the lock would do. The booking's
    own handlers finish in the activation that ends it (the lock and the validators see to
    that), so only such a handler shows whether ``_finish`` waits for every handler."""

    @workflow.run
    async def run(self, booking: BookingInput) -> BookingStatus:
        return await super().run(booking)

    @workflow.update(name="slow_note")
    async def slow_note(self) -> str:
        await workflow.sleep(timedelta(seconds=30))
        return "answered"


async def test_the_booking_ends_only_once_every_running_handler_has_answered(env):
    stores, task_queue = FakeStores(), f"wf-test-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[BookingWithASlowHandler],
        activities=stores.activities(),
        workflow_runner=UnsandboxedWorkflowRunner(),  # the probe lives in this test module
        workflow_failure_exception_types=[Exception],
    ):
        order_id = f"ord-{uuid.uuid4().hex[:20]}"
        handle = await env.client.start_workflow(
            "BookingWithASlowHandler",
            BookingInput(order_id, "fl-101", HOLD.total_seconds(), 60, 10, 3, 20, None),
            id=f"booking-{order_id}",
            task_queue=task_queue,
            result_type=BookingStatus,
        )
        note = await handle.start_update(
            "slow_note", wait_for_stage=WorkflowUpdateStage.ACCEPTED, result_type=str
        )
        await handle.signal(BookingWorkflow.cancel, CancelRequest(reason=Messages.CANCELLED_BY_CUSTOMER))

        # Waiting for the workflow's result lets the test server skip the handler's 30 s timer.
        assert (await handle.result()).state == State.CANCELLED
        assert await note.result() == "answered", "the handler answered before the booking closed"


# --- Validators refuse before anything reaches history ----------------------------------------


def accepted_updates(history) -> int:  # type: ignore[no-untyped-def]
    accepted = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    return sum(event.event_type == accepted for event in history.events)


async def test_a_seat_change_while_paying_is_refused_before_it_reaches_history(world):
    _, stores, _ = world
    stores.payment = "block"
    booking = await book(world, ["5A"])
    await booking.update(BookingWorkflow.submit_payment, PaymentRequest("00000"))

    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await booking.update(BookingWorkflow.hold_seats, SeatSelection(seats=["5B"]))

    assert update_error(raised).type == ErrorType.ORDER_NOT_EDITABLE
    assert accepted_updates(await booking.handle.fetch_history()) == 2, "the first hold and the payment"
    stores.unblock.set()
    assert (await booking.handle.result()).state == State.CONFIRMED


# --- The seat-change cap ---------------------------------------------------------------------


async def test_seat_changes_are_capped_and_the_refusal_says_why(world):
    _, stores, _ = world
    stores.holds["2C"] = "ord-another"
    booking = await book(world, ["2A"], max_changes=2)
    with pytest.raises(WorkflowUpdateFailedError):  # refused (taken), and still a change
        await booking.update(BookingWorkflow.hold_seats, SeatSelection(["2C"]))
    await booking.update(BookingWorkflow.hold_seats, SeatSelection(["2B"]))

    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await booking.update(BookingWorkflow.hold_seats, SeatSelection(["2D"]))

    error = update_error(raised)
    assert (error.type, error.message) == (ErrorType.TOO_MANY_CHANGES, Messages.too_many_changes(2))
    assert accepted_updates(await booking.handle.fetch_history()) == 3
    status = await booking.status()
    assert (status.state, status.seats) == (State.SEATS_RESERVED, ["2B"])
    await booking.update(BookingWorkflow.submit_payment, PaymentRequest("00000"))
    assert (await booking.handle.result()).state == State.CONFIRMED, "paying is still allowed"


# --- Handlers give up on an unreachable store, and undo what they may have done ---------------


async def test_a_seat_change_the_store_never_confirms_is_undone_and_refused(world):
    _, stores, _ = world
    booking = await book(world, ["7A", "7B"])
    stores.lose_answers = {Activities.HOLD_SEATS}  # 8C is taken, 7A released, then no answer

    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await booking.update(BookingWorkflow.hold_seats, SeatSelection(["7B", "8C"]))

    error = update_error(raised)
    assert (error.type, error.message) == (ErrorType.STORE_UNAVAILABLE, Messages.STORE_UNAVAILABLE)
    assert stores.calls.count(Activities.HOLD_SEATS) == 1 + 3, "the first hold, then three tries"
    assert "8C" not in stores.holds, "what the change took is let go"
    status = await booking.status()
    assert (status.seats, status.hold_expires_at) == (["7A", "7B"], booking.first.hold_expires_at)
    last = stores.last
    assert (last.state, last.seats, last.hold_expires_at) == (
        State.SEATS_RESERVED,
        ["7A", "7B"],
        booking.first.hold_expires_at,
    ), "the row is put back as it was"
    assert last.version == status.version > stores.records[-2].version
    stores.lose_answers.clear()
    await booking.update(BookingWorkflow.submit_payment, PaymentRequest("00000"))
    assert (await booking.handle.result()).state == State.CONFIRMED


async def test_an_outage_during_a_seat_change_never_blocks_the_expiry(world):
    _, stores, _ = world
    booking = await book(world, ["7A"])
    stores.lose_answers = {Activities.HOLD_SEATS}
    stores.failing = {Activities.RELEASE_SEATS}  # the undo fails too

    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await booking.update(BookingWorkflow.hold_seats, SeatSelection(["7A", "8C"]))
    assert update_error(raised).type == ErrorType.STORE_UNAVAILABLE
    assert stores.holds == {"7A": booking.first.order_id, "8C": booking.first.order_id}
    stores.failing.clear()
    result = await booking.handle.result()

    assert result.state == State.EXPIRED
    assert stores.holds == {}, "the seat the failed change took is let go with the others"
    assert abs(stores.last.at - booking.first.hold_expires_at) < timedelta(seconds=1)


async def test_a_payment_the_store_never_confirms_is_undone_and_can_be_sent_again(world):
    _, stores, _ = world
    booking = await book(world, ["3A"])
    stores.lose_answers = {Activities.RECORD_ORDER}

    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await booking.update(BookingWorkflow.submit_payment, PaymentRequest("00000"))

    assert update_error(raised).type == ErrorType.STORE_UNAVAILABLE
    assert stores.calls.count(Activities.RECORD_ORDER) == 3
    assert stores.states()[-1] == State.SEATS_RESERVED, "the row is put back as it was"
    assert (await booking.status()).state == State.SEATS_RESERVED
    assert stores.payment_attempts == []
    stores.lose_answers.clear()
    await booking.update(BookingWorkflow.submit_payment, PaymentRequest("00000"))
    assert (await booking.handle.result()).state == State.CONFIRMED


# --- The saga: compensation registered before the step ----------------------------------------


async def test_a_charge_whose_answer_was_lost_is_refunded_when_the_payment_fails(world):
    _, stores, _ = world
    stores.payment = "charge-then-hang-then-decline"
    booking = await book(world, ["4B"], payment_timeout=0.5)

    await booking.update(BookingWorkflow.submit_payment, PaymentRequest("12345"))
    result = await booking.handle.result()

    assert result.state == State.FAILED
    assert [attempt for attempt, _ in stores.payment_attempts] == [1, 2, 3]
    assert stores.charged == set(), "the charge of attempt 1 was refunded"
    compensations = [c for c in stores.calls if c in (Activities.REFUND_PAYMENT, Activities.RELEASE_SEATS)]
    assert compensations == [Activities.REFUND_PAYMENT, Activities.RELEASE_SEATS]
    assert stores.holds == {}


async def test_the_holds_cover_the_hold_then_the_whole_payment_window(world):
    _, stores, _ = world
    booking = await book(world, ["4C"])

    await booking.update(BookingWorkflow.submit_payment, PaymentRequest("00000"))
    await booking.handle.result()

    # 15 min + the 60 s margin; then 3 attempts x 10 s + backoffs 1 s and 1.5 s + the margin.
    assert [r.ttl_seconds for r in stores.hold_requests] == [960, 3 * 10 + 1 + 1.5 + 60]
    assert stores.hold_requests[1].release == []

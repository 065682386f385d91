"""Honest answers under faults: an error means nothing changed, a late answer is a 202 that the
customer can follow, and retrying with the same Idempotency-Key acts once.

The worker is frozen with SIGSTOP (a stalled host: Temporal accepts the request, nobody carries it
out until the worker thaws) or Temporal itself is stopped. The web waits 1.5 s for an answer here
(TEMPORAL_ANSWER_TIMEOUT, set through the settings).
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest

from flights import holds
from flights.models import BookedSeat
from orders.models import Order, OrderRequest
from orders.workflow_contract import State
from payments.models import PaymentAttempt
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def quick_answers(settings):
    settings.TEMPORAL_ANSWER_TIMEOUT = timedelta(seconds=1.5)


def new_key() -> str:
    return str(uuid.uuid4())


def holder(flight: str, seat: str) -> str | None:
    return holds.holders(flight_id=flight, seats=[seat]).get(seat)


def assert_pending(reply, order_id: str | None = None) -> str:
    assert reply.status == 202, reply.text
    body = reply.json
    assert body["pending"] is True
    assert body["statusUrl"] == f"/api/orders/{body['orderId']}/status"
    assert reply.headers["Location"] == body["statusUrl"]
    assert int(reply.headers["Retry-After"]) > 0
    assert "still confirming" in body["message"]
    if order_id is not None:
        assert body["orderId"] == order_id
    return body["orderId"]


# --- The worker frozen: Temporal has the request, nobody carries it out yet ------------------


def test_a_create_during_a_stall_is_202_then_holds_the_seats(stack, quick_answers):
    customer = stack.customer()
    key = new_key()

    with stack.worker.frozen():
        reply = customer.create_order("fl-101", ["14A"], key=key)
        order_id = assert_pending(reply)
        status = customer.status(order_id)
        assert status["status"] == "CREATED"
        assert status["seats"] == ["14A"]
        assert status["pendingRequest"]["kind"] == "create"
        again = customer.create_order("fl-101", ["14A"], key=key)
        assert_pending(again, order_id)

    final = customer.wait_for_status(order_id, "SEATS_RESERVED", timeout=40)
    assert final["seats"] == ["14A"]
    assert holder("fl-101", "14A") == order_id
    assert Order.objects.count() == 1, "the retry made no second order"
    replay = customer.create_order("fl-101", ["14A"], key=key)
    assert replay.status == 201, replay.text
    assert replay.json["orderId"] == order_id
    assert customer.status(order_id)["pendingRequest"] is None


def test_a_seat_change_during_a_stall_is_202_and_happens_once(stack, quick_answers):
    customer = stack.customer()
    order_id = customer.create_order("fl-101", ["15A"]).json["orderId"]
    key = new_key()

    with stack.worker.frozen():
        reply = customer.put(f"/api/orders/{order_id}/seats", {"seats": ["15B"]}, key=key)
        assert_pending(reply, order_id)
        assert reply.json["seats"] == ["15A"], "the 202 shows the order as it still is"

    final = wait_for(
        lambda: (s := customer.status(order_id))["seats"] == ["15B"] and s, timeout=40, what="the change"
    )
    assert final["status"] == "SEATS_RESERVED"
    assert (holder("fl-101", "15A"), holder("fl-101", "15B")) == (None, order_id)
    answer = customer.put(f"/api/orders/{order_id}/seats", {"seats": ["15B"]}, key=key)
    assert answer.status == 200, answer.text
    assert answer.json["seats"] == ["15B"]


def test_a_payment_during_a_stall_is_202_and_charges_once(stack, quick_answers):
    customer = stack.customer()
    order_id = customer.create_order("fl-101", ["16A"]).json["orderId"]
    key = new_key()
    pay = {"paymentCode": "00000"}

    with stack.worker.frozen():
        reply = customer.post(f"/api/orders/{order_id}/pay", pay, key=key)
        assert_pending(reply, order_id)
        retry = customer.post(f"/api/orders/{order_id}/pay", pay, key=key)
        assert_pending(retry, order_id)

    final = customer.wait_for_status(order_id, "CONFIRMED", "FAILED", timeout=40)
    assert final["status"] == "CONFIRMED"
    assert PaymentAttempt.objects.filter(order_id=order_id).count() == 1
    assert BookedSeat.objects.filter(order_id=order_id).count() == 1
    after = customer.post(f"/api/orders/{order_id}/pay", pay, key=key)
    assert after.status == 202
    assert "pending" not in after.json, "the stored answer: the payment was accepted"


def test_the_same_key_at_once_is_409_and_acts_once(stack, quick_answers):
    customer = stack.customer()
    customer.create_order("fl-101", ["17B"])  # keys are scoped to a session: start one
    key = new_key()
    replies = []

    def create() -> None:
        replies.append(customer.create_order("fl-101", ["17A"], key=key))

    with stack.worker.frozen():
        threads = [threading.Thread(target=create) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    statuses = sorted(reply.status for reply in replies)
    assert statuses == [202, 409], [r.text for r in replies]
    in_use = next(reply for reply in replies if reply.status == 409)
    assert in_use.json["error"] == "IDEMPOTENCY_KEY_IN_USE"
    assert int(in_use.headers["Retry-After"]) > 0
    order_id = next(reply for reply in replies if reply.status == 202).json["orderId"]
    customer.wait_for_status(order_id, "SEATS_RESERVED", timeout=40)
    assert Order.objects.filter(seats=["17A"]).count() == 1


def test_a_cancel_during_a_pending_create_ends_it_holding_nothing(stack, quick_answers):
    customer = stack.customer()

    with stack.worker.frozen():
        order_id = assert_pending(customer.create_order("fl-101", ["18A"]))
        abandoned = customer.delete(f"/api/orders/{order_id}")
        assert abandoned.status == 202, abandoned.text

    final = customer.wait_for_status(order_id, "CANCELLED", timeout=40)
    assert final["lastError"] == "You cancelled this order. Your seats have been released."
    assert holder("fl-101", "18A") is None


# --- Keys --------------------------------------------------------------------------------------


def test_a_replayed_key_answers_the_same_and_acts_once(stack):
    customer = stack.customer()
    key = new_key()

    first = customer.create_order("fl-101", ["19A"], key=key)
    second = customer.create_order("fl-101", ["19A"], key=key)

    assert (first.status, second.status) == (201, 201)
    assert first.json == second.json
    assert Order.objects.count() == 1


def test_a_refusal_is_replayed_too(stack):
    taker, customer = stack.customer(), stack.customer()
    taker.create_order("fl-101", ["20A"])
    key = new_key()

    first = customer.create_order("fl-101", ["20A"], key=key)
    Order.objects.all().delete()  # even once the seat is free again, the key keeps its answer
    holds.connection().flushdb()
    second = customer.create_order("fl-101", ["20A"], key=key)

    assert (first.status, second.status) == (400, 400)
    assert (
        first.json
        == second.json
        == {
            "error": "INVALID_SEATS",
            "message": "Seat 20A is no longer available",
            "seats": ["20A"],
        }
    )
    assert not Order.objects.exists()


def test_a_key_reused_with_another_body_is_422_and_changes_nothing(stack):
    customer = stack.customer()
    key = new_key()
    order_id = customer.create_order("fl-101", ["13C"], key=key).json["orderId"]

    reply = customer.create_order("fl-101", ["13D"], key=key)

    assert reply.status == 422
    assert reply.json["error"] == "IDEMPOTENCY_KEY_REUSED"
    assert "nothing was changed" in reply.json["message"]
    assert Order.objects.count() == 1
    assert holder("fl-101", "13D") is None
    assert customer.status(order_id)["seats"] == ["13C"]


def test_keys_belong_to_their_session(stack):
    one, other = stack.customer(), stack.customer()
    key = new_key()

    mine = one.create_order("fl-101", ["12E"], key=key)
    theirs = other.create_order("fl-101", ["12F"], key=key)

    assert (mine.status, theirs.status) == (201, 201)
    assert mine.json["orderId"] != theirs.json["orderId"]


# --- Temporal stopped ------------------------------------------------------------------------


def test_with_temporal_stopped_nothing_is_lost_and_nothing_happens_twice(stack, temporal_of_its_own):
    customer = stack.customer()
    paying = customer.create_order("fl-606", ["10A"]).json["orderId"]
    changing = customer.create_order("fl-606", ["11A"]).json["orderId"]
    for order_id in (paying, changing):  # a new worker's first answers may be late (202)
        customer.wait_for_status(order_id, "SEATS_RESERVED")
    create_key, change_key, pay_key = new_key(), new_key(), new_key()

    temporal_of_its_own.stop()
    created = customer.create_order("fl-606", ["12A"], key=create_key)
    changed = customer.put(f"/api/orders/{changing}/seats", {"seats": ["11B"]}, key=change_key)
    paid = customer.post(f"/api/orders/{paying}/pay", {"paymentCode": "00000"}, key=pay_key)
    for reply in (created, changed, paid):
        assert reply.status in (202, 503), reply.text
        if reply.status == 202:
            assert_pending(reply)
    temporal_of_its_own.start()

    # Each request, retried with its key, ends with one outcome, carried out once.
    if created.status == 202:
        order_id = created.json["orderId"]
        customer.wait_for_status(order_id, "SEATS_RESERVED", timeout=60)  # settled when looked at
    else:
        assert not Order.objects.filter(seats=["12A"]).exists(), "a 503 left nothing behind"
    assert customer.create_order("fl-606", ["12A"], key=create_key).status == 201
    assert customer.put(f"/api/orders/{changing}/seats", {"seats": ["11B"]}, key=change_key).status == 200
    assert customer.post(f"/api/orders/{paying}/pay", {"paymentCode": "00000"}, key=pay_key).status == 202
    assert customer.wait_for_status(paying, "CONFIRMED", timeout=60)["paymentAttempts"] == 1
    assert PaymentAttempt.objects.filter(order_id=paying).count() == 1
    assert Order.objects.filter(seats=["12A"]).count() == 1
    assert customer.status(changing)["seats"] == ["11B"]
    assert OrderRequest.objects.filter(state__in=["running", "unknown"]).count() == 0
    assert Order.objects.filter(state=State.CREATED).count() == 0


# --- The pages -----------------------------------------------------------------------------


def test_a_click_during_a_stall_shows_the_order_as_still_confirming(client, stack, quick_answers):
    form = {"seat": "9D", "idempotency_key": new_key()}

    with stack.worker.frozen():
        reply = client.post("/flights/fl-101/hold", form)
        assert reply.status_code == 302, "no error page: the order's page"
        order_url = reply["Location"]
        page = client.get(order_url).content.decode()
        assert "We are still confirming your seats" in page
        assert "Cancel this booking" in page
        assert 'name="payment_code"' not in page, "nothing to pay before the seats are held"
        retried = client.post("/flights/fl-101/hold", form)  # the browser sends the form again
        assert retried["Location"] == order_url

    wait_for(
        lambda: 'aria-label="Seat 9D, selected, ' in client.get(order_url).content.decode(),
        timeout=40,
        what="the hold to show",
    )
    assert Order.objects.count() == 1
    assert "We are still confirming" not in client.get(order_url).content.decode()


def test_an_htmx_payment_answered_still_confirming_shows_so_at_once(client, stack, quick_answers):
    order_url = client.post("/flights/fl-101/hold", {"seat": "9F", "idempotency_key": new_key()})["Location"]
    order_id = order_url.rstrip("/").rsplit("/", 1)[-1]
    wait_for(lambda: Order.objects.get(id=order_id).state == "SEATS_RESERVED", timeout=30, what="the hold")

    with stack.worker.frozen():
        live = client.post(
            f"{order_url}pay",
            {"payment_code": "00000", "idempotency_key": new_key()},
            HTTP_HX_REQUEST="true",
        )
        assert live.status_code == 200
        fragment = live.content.decode()
        assert OrderRequest.objects.get(order_id=order_id, kind="pay").state == "unknown", "answered 202"
        assert "We are still confirming your payment request" in fragment, "the banner, not on the next poll"
        assert 'name="payment_code"' not in fragment, "no second payment form meanwhile"

    assert wait_for(
        lambda: Order.objects.get(id=order_id).state == "CONFIRMED", timeout=60, what="the payment"
    )


def test_a_double_submitted_payment_form_pays_once(client, stack):
    order_url = client.post("/flights/fl-101/hold", {"seat": "9E", "idempotency_key": new_key()})["Location"]
    order_id = order_url.split("/")[2]
    form = {"payment_code": "00000", "idempotency_key": new_key()}

    first = client.post(f"/orders/{order_id}/pay", form)
    second = client.post(f"/orders/{order_id}/pay", form)

    assert (first.status_code, second.status_code) == (302, 302)
    wait_for(lambda: Order.objects.get(id=order_id).state == "CONFIRMED", timeout=30, what="CONFIRMED")
    assert PaymentAttempt.objects.filter(order_id=order_id).count() == 1
    page = client.get(order_url).content.decode()
    assert "is paying" not in page and "can no longer be changed" not in page, "no error for the repeat"

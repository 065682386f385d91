"""A customer's requests on an order, and what makes retrying them safe.

Every request that creates or changes an order (the JSON API's POST, PUT and DELETE, and the
pages' forms) is kept as an ``OrderRequest`` before Temporal hears of it, scoped to the browser
session and, when the client sent one, to its ``Idempotency-Key`` (the IETF draft; Stripe's
convention; its format is checked by ``common.inputs.idempotency_key``):

- the same key with the same body answers the stored outcome, without acting again;
- the same key with another body is refused (``KeyReused``: 422);
- the same key while its first request is still being carried out is refused (``KeyInUse``:
  409), until that request's lease runs out (its web process may have died);
- a key whose outcome was never learnt (answered 202) is carried out again with the same
  Temporal ids (workflow id, update id), which Temporal acts on at most once.

So the record is not a lock: Temporal's ids make the action exactly-once; the record keeps the
contract of the answers. Outcomes are stored as the domain's answer (a ``BookingStatus`` or a
refusal), which the API and the pages render in their own way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from common import events, temporal_client
from common.errors import ErrorCode, Refused
from orders.errors import ServiceUnavailable, StillConfirming
from orders.models import Order, OrderRequest, RequestKind, RequestState
from orders.workflow_contract import BookingStatus, State

logger = logging.getLogger(__name__)

# A request is "being carried out" for the wait on Temporal plus this margin; a retry after
# that takes it over (its web process may have died mid-request).
LEASE_MARGIN = timedelta(seconds=10)


class KeyReused(Exception):
    message = (
        "This Idempotency-Key was already used for a different request. "
        "Use a new key for a new request; nothing was changed."
    )


class KeyInUse(Exception):
    message = "A request with this Idempotency-Key is still being carried out; retry in a moment."


def fingerprint(method: str, path: str, body: Any) -> str:
    """The request's identity for its key: the same method, path and (canonical) body."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def _lease() -> datetime:
    return timezone.now() + timedelta(seconds=temporal_client.answer_timeout()) + LEASE_MARGIN


def claim(
    *, session_key: str, key: str | None, fingerprint: str, kind: RequestKind, order: Order | None
) -> OrderRequest:
    """The request to carry out: a new one, or the earlier one with this key.

    Returns an earlier request whose state is DONE for the caller to answer as it was answered.
    Raises KeyReused or KeyInUse.
    """
    lease_until = _lease()
    fields = {"fingerprint": fingerprint, "kind": kind, "order": order, "lease_until": lease_until}
    if key is None:
        # Without a key nobody can retry it: it is stored only if its outcome is not known.
        return OrderRequest(session_key=session_key, update_id=_update_id(kind), **fields)
    with transaction.atomic():
        earlier = (
            OrderRequest.objects.select_for_update()
            .filter(session_key=session_key, idempotency_key=key)
            .first()
        )
        if earlier is None:
            try:
                with transaction.atomic():
                    return OrderRequest.objects.create(
                        session_key=session_key, idempotency_key=key, update_id=_update_id(kind), **fields
                    )
            except IntegrityError:  # the same key's first use, a moment ago, on another thread
                raise KeyInUse from None
        if earlier.fingerprint != fingerprint:
            raise KeyReused
        if earlier.state == RequestState.DONE:
            return earlier
        if earlier.state == RequestState.RUNNING and earlier.lease_until > timezone.now():
            raise KeyInUse
        if earlier.state == RequestState.LOST:
            # Nothing happened the first time: this is a new attempt, under a new update id (the
            # old one's failure is what Temporal would answer again).
            earlier.update_id = _update_id(kind)
        else:
            # Its answer was late: ask Temporal again, under the same ids, what it did.
            earlier.resumed = True
        earlier.state, earlier.lease_until = RequestState.RUNNING, lease_until
        earlier.save(update_fields=["state", "lease_until", "update_id", "updated_at"])
        return earlier


def attach(request: OrderRequest, order: Order) -> None:
    """The order a create made, kept with its request before Temporal hears of it."""
    request.order = order
    if request.pk is not None:
        request.save(update_fields=["order", "updated_at"])


def _update_id(kind: str) -> str:
    # The first hold has a fixed id (one per workflow); see workflow_calls.FIRST_HOLD_UPDATE_ID.
    return f"{kind}-{uuid.uuid4().hex}"


# --- Outcomes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """How a request ended, for the API and the pages to say."""

    request: OrderRequest
    status: BookingStatus | None = None  # answered by the workflow
    refusal: Refused | None = None  # refused: nothing changed
    pending: bool = False  # handed to Temporal, not answered yet (202)
    unavailable: bool = False  # Temporal unreachable: nothing was sent (503)

    @property
    def order(self) -> Order | None:
        return self.request.order


def carry_out(request: OrderRequest, action: Callable[[], BookingStatus]) -> Result:
    """Run ``action`` for the request (or answer its stored outcome) and keep how it ended."""
    if request.state == RequestState.DONE:
        return stored_result(request)
    try:
        status = action()
    except Refused as refusal:
        _finish(request, _state_after(refusal), {"refused": _refusal_json(refusal)})
        return Result(request, refusal=refusal)
    except StillConfirming:
        _finish(request, RequestState.UNKNOWN, None)
        return Result(request, pending=True)
    except ServiceUnavailable:
        _finish(request, RequestState.LOST, None)
        return Result(request, unavailable=True)
    _finish(request, RequestState.DONE, {"answered": _status_json(status)})
    return Result(request, status=status)


def stored_result(request: OrderRequest) -> Result:
    outcome = request.outcome or {}
    if "answered" in outcome:
        return Result(request, status=_status_from(outcome["answered"]))
    refused = outcome.get("refused", {})
    return Result(
        request,
        refusal=Refused(refused.get("code", ""), refused.get("message", ""), seats=refused.get("seats", [])),
    )


def finish_settled(
    request: OrderRequest,
    *,
    status: BookingStatus | None = None,
    refusal: Refused | None = None,
    lost: bool = False,
) -> None:
    """Keep the outcome of a request learnt after its answer (settling.settle)."""
    if lost:
        _finish(request, RequestState.LOST, None)
    elif refusal is not None:
        _finish(request, _state_after(refusal), {"refused": _refusal_json(refusal)})
    elif status is not None:
        _finish(request, RequestState.DONE, {"answered": _status_json(status)})


# Refusals that say "not now" (temporarily unavailable; over a limit, with Retry-After): they
# changed nothing, and a retry with the same key is carried out again (LOST), not answered the
# same refusal for ever.
NOT_NOW = {
    ErrorCode.SERVICE_UNAVAILABLE,
    ErrorCode.RATE_LIMITED,
    ErrorCode.TOO_MANY_SEATS_HELD,
    ErrorCode.ORDER_ALREADY_OPEN,
}


def _state_after(refusal: Refused) -> RequestState:
    """A refusal is the request's final answer, but for one that says "not now" (``NOT_NOW``)."""
    return RequestState.LOST if refusal.code in NOT_NOW else RequestState.DONE


def _finish(request: OrderRequest, state: RequestState, outcome: dict[str, Any] | None) -> None:
    """Store how the request ended. Once Temporal has answered, failing to store that must not
    turn the answer into an error: the request stays open and a retry asks Temporal again."""
    order_id = request.order_id
    request.state, request.outcome = state, outcome
    changes: dict[str, Any] = {"state": state, "outcome": outcome, "updated_at": timezone.now()}
    if state == RequestState.LOST and request.kind == RequestKind.CREATE and request.order_id:
        # The order this create made ended without its seats (they could not be held while a
        # store was down): its customer sees it ended, and a retry with the same key is a new
        # order. Kept on this request, the retry would only read that same refusal again.
        request.order, changes["order"] = None, None
    try:
        if request.pk is None:
            if state == RequestState.UNKNOWN:  # kept so that its outcome is still learnt
                request.save()
            return
        OrderRequest.objects.filter(pk=request.pk).update(**changes)
        if order_id:  # what the order's page says of it ("still confirming") has changed
            events.order_changed(order_id)
    except DatabaseError:
        logger.warning(
            "could not store the outcome of a %s request",
            request.kind,
            exc_info=True,
            extra={"order_id": request.order_id or "-"},
        )


def _refusal_json(refusal: Refused) -> dict[str, Any]:
    return {"code": refusal.code, "message": refusal.message, "seats": refusal.seats}


def _status_json(status: BookingStatus) -> dict[str, Any]:
    return {
        "order_id": status.order_id,
        "state": status.state.value,
        "seats": list(status.seats),
        "hold_expires_at": status.hold_expires_at.isoformat() if status.hold_expires_at else None,
        "payment_attempts": status.payment_attempts,
        "last_error": status.last_error,
        "version": status.version,
    }


def _status_from(data: dict[str, Any]) -> BookingStatus:
    expires = data.get("hold_expires_at")
    return BookingStatus(
        order_id=data["order_id"],
        state=State(data["state"]),
        seats=list(data["seats"]),
        hold_expires_at=datetime.fromisoformat(expires) if expires else None,
        payment_attempts=data["payment_attempts"],
        last_error=data["last_error"],
        version=data["version"],
    )


# --- What is still open on an order ----------------------------------------------------------


# The states in which a request of each kind may still be waiting to be carried out: once the
# order has moved past them, the request has happened (or can no longer matter), even before
# its outcome is settled in the background.
_STILL_WAITING_IN = {
    RequestKind.CREATE: {State.CREATED},
    RequestKind.SEATS: {State.SEATS_RESERVED},
    RequestKind.PAY: {State.SEATS_RESERVED},
    RequestKind.CANCEL: {State.CREATED, State.SEATS_RESERVED},
}


def open_request(order: Order) -> OrderRequest | None:
    """The order's newest request still waiting for its outcome, while it may still matter.
    ``order`` comes from ``Order.objects.with_open_request()`` (as ``ownership.get_owned_order``
    reads it), which found that request's id in the order's own query."""
    if order.is_terminal or order.open_request_id is None:
        return None
    request = OrderRequest.objects.filter(pk=order.open_request_id).first()
    if request is None or State(order.state) not in _STILL_WAITING_IN[RequestKind(request.kind)]:
        return None
    return request


def last_request(order: Order) -> OrderRequest | None:
    return OrderRequest.objects.filter(order=order).order_by("-created_at").first()

"""The simulated gateway's ledger (``Charge``): each idempotency key is charged at most once, and
refunded at most once, as a real provider does it (Stripe's model).

Temporal runs the payment activity at least once: an attempt whose answer was lost (the worker
killed after the gateway approved, PostgreSQL stalled past the attempt's timeout) is tried again.
So the charge request carries a key derived from the order (``charge_key``), and:

- the first request with a key that the gateway approves is stored, with its charge; every later
  request with the same key gets that charge back (``Outcome.REPLAYED``) and is charged nothing
  more. Two requests racing with one key meet at the key's unique index: one charge, both told;
- a declined request stores nothing: it moved no money, so the next attempt, with the same key,
  is judged afresh (the PRD's retries after a decline);
- ``refund`` refunds what a key charged; if nothing was charged yet, it voids the key, so that a
  request still on its way (an attempt cut off by its timeout whose thread runs on) is answered
  ``VOIDED`` instead of charging an order that has already ended. Idempotent.

The ledger is what was charged; ``PaymentAttempt`` records are what the customer's page shows of
the way there.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from django.db import IntegrityError, transaction
from django.utils import timezone

from common import metrics
from common.money import Money
from payments.gateway import Gateway
from payments.models import Charge, ChargeStatus

logger = logging.getLogger(__name__)


def charge_key(order_id: str) -> str:
    """The idempotency key of an order's payment: one per order, so an order is charged once."""
    return f"charge-{order_id}"


class Outcome(StrEnum):
    APPROVED = "approved"  # charged now, by this request
    REPLAYED = "replayed"  # charged before under this key: the same charge, nothing more
    DECLINED = "declined"  # nothing charged; the key stays free
    TIMED_OUT = "timed_out"  # the request was cut off before the gateway answered: nothing charged
    VOIDED = "voided"  # the key was given up (the booking ended): nothing charged, ever


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    charge: Charge | None = None  # the key's charge, when it was approved (now or before)

    @property
    def approved(self) -> bool:
        return self.outcome in (Outcome.APPROVED, Outcome.REPLAYED)


def request_charge(
    *,
    key: str,
    order_id: str,
    attempt: int,
    code: str,
    gateway: Gateway,
    wait: Callable[[float], bool],
    amount: Money | None = None,
) -> Answer:
    """One charge request to the simulated gateway for ``amount`` (the order's total; None for an
    order from before prices, charged nothing). ``wait(seconds)`` sleeps for the gateway's
    latency and returns True if the request was cut off meanwhile (the attempt timed out). A
    replayed key answers with its first charge, and the amount it charged then.

    A key charged (or voided) before is answered at once with that answer. Otherwise the code
    decides (``Gateway.verdict``) after the latency, and an approval is stored under the key."""
    earlier = Charge.objects.filter(idempotency_key=key).first()
    if earlier is not None:
        return _first_answer(earlier)
    verdict = gateway.verdict(code)
    if wait(verdict.latency_seconds):
        return Answer(Outcome.TIMED_OUT)
    if not verdict.approved:
        return Answer(Outcome.DECLINED)
    try:
        with transaction.atomic():
            charge = _insert(
                key=key,
                order_id=order_id,
                attempt=attempt,
                status=ChargeStatus.CHARGED,
                charged_at=timezone.now(),
                amount=amount.amount if amount else 0,
                currency=amount.currency if amount else "",
            )
    except IntegrityError:
        # Another request with this key got there first (its insert held the key's index entry
        # until it committed): its answer is the answer.
        return _first_answer(Charge.objects.get(idempotency_key=key))
    transaction.on_commit(lambda: metrics.GATEWAY_CHARGES.labels(event="charged").inc())
    logger.info(
        "charged %s (attempt %d): %s",
        charge.id,
        attempt,
        charge.money or "no amount",
        extra={"order_id": order_id},
    )
    return Answer(Outcome.APPROVED, charge)


def _first_answer(charge: Charge) -> Answer:
    if charge.status == ChargeStatus.VOIDED:
        return Answer(Outcome.VOIDED)
    return Answer(Outcome.REPLAYED, charge)


def locked(*, key: str) -> Charge | None:
    """The key's ledger row, locked until the caller's transaction ends (``select_for_update``):
    a confirmation and a refund of the same charge take turns."""
    return Charge.objects.select_for_update().filter(idempotency_key=key).first()


def refund(*, key: str, order_id: str) -> tuple[Charge, bool]:
    """Refund what ``key`` charged (all of it: ``refunded_amount`` is the charge's amount), or void
    the key if nothing was charged under it yet, so that nothing ever is. Idempotent: a refunded
    or voided key is left as it is. Returns its row, and whether this call refunded money.

    Runs in the caller's transaction when there is one (``orders.activity_writes.refund_payment``
    checks, with the row locked, that the order is not confirmed)."""
    now = timezone.now()
    with transaction.atomic():
        charge = locked(key=key)
        if charge is None:
            try:
                with transaction.atomic():
                    charge = _insert(key=key, order_id=order_id, status=ChargeStatus.VOIDED, refunded_at=now)
            except IntegrityError:  # a charge under the key committed meanwhile: refund that
                charge = locked(key=key)
                assert charge is not None
            else:
                logger.info("voided %s before any charge", key, extra={"order_id": order_id})
                return charge, False
        if charge.status != ChargeStatus.CHARGED:
            return charge, False
        charge.status, charge.refunded_at, charge.refunded_amount = ChargeStatus.REFUNDED, now, charge.amount
        charge.save(update_fields=["status", "refunded_at", "refunded_amount"])
        transaction.on_commit(lambda: metrics.GATEWAY_CHARGES.labels(event="refunded").inc())
        logger.info(
            "refunded %s: %s", charge.id, charge.refunded_money or "no amount", extra={"order_id": order_id}
        )
    return charge, True


def charges_of(order_id: str) -> list[Charge]:
    """What the gateway charged for an order (and refunded since), oldest first; voided keys,
    which moved no money, are left out."""
    return list(Charge.objects.filter(order_id=order_id).exclude(status=ChargeStatus.VOIDED))


def _insert(*, key: str, order_id: str, **fields: object) -> Charge:
    """The key's row, under a new charge id (the key's unique index refuses a second one)."""
    return Charge.objects.create(
        id=f"ch_{secrets.token_hex(12)}", idempotency_key=key, order_id=order_id, **fields
    )

"""Retention: what the site keeps past its use is deleted, in batches, so that the tables stop
growing (docs/OPERATIONS.md, "Retention").

- Sessions (``django_session``) past their ``expire_date``: ``SESSION_COOKIE_AGE`` (14 days)
  after their last change. Their Redis copies (the session cache) carry the same expiry as a TTL
  and go by themselves.
- Idempotency records (``OrderRequest``) whose outcome is stored (``done``) or that changed
  nothing (``lost``), ``IDEMPOTENCY_KEY_RETENTION`` (24 hours, as Stripe keeps its keys) after
  their last change: a retry with the same key after that is a new request. A request still
  open (``running``, ``unknown``) is never deleted here: the reconciliation settles it first.

Each batch is its own short transaction (a few thousand rows by primary key), so a purge of a
large backlog never holds long locks; a purge that stops half-way is simply continued by the next.
Counted in ``booking_retention_deleted_total{kind}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.sessions.models import Session
from django.db import models
from django.utils import timezone

from common import metrics
from orders.models import OrderRequest, RequestState

logger = logging.getLogger(__name__)

# The states in which a request's record is only kept for a retry's sake.
FINISHED_REQUEST_STATES = [RequestState.DONE, RequestState.LOST]
KINDS = ("session", "order_request")


@dataclass
class Purged:
    """How many rows of each kind one purge deleted, and in how many batches."""

    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    batches: int = 0


def expired_sessions(*, now: datetime) -> models.QuerySet[Session]:
    return Session.objects.filter(expire_date__lt=now)


def expired_requests(*, now: datetime, keep: timedelta) -> models.QuerySet[OrderRequest]:
    return OrderRequest.objects.filter(state__in=FINISHED_REQUEST_STATES, updated_at__lt=now - keep)


def _delete_in_batches(
    queryset: models.QuerySet, *, kind: str, batch_size: int, purged: Purged, on_batch: Callable[[], None]
) -> None:
    while True:
        keys = list(queryset.order_by().values_list("pk", flat=True)[:batch_size])
        if not keys:
            return
        # By primary key: a row that stopped matching since (a session used again) is still
        # matched by the filter, which is repeated here, so it is never deleted.
        deleted, _ = queryset.filter(pk__in=keys).delete()
        purged.deleted[kind] += deleted
        purged.batches += 1
        metrics.RETENTION_DELETED.labels(kind=kind).inc(deleted)
        on_batch()
        if len(keys) < batch_size:
            return


def purge_expired(
    *, keep_requests: timedelta, batch_size: int, on_batch: Callable[[], None] = lambda: None
) -> Purged:
    """Delete expired sessions and idempotency records, ``batch_size`` rows at a time, calling
    ``on_batch`` after each (the activity heartbeats there). Idempotent: a second run finds
    nothing left."""
    now = timezone.now()
    purged = Purged()
    _delete_in_batches(
        expired_sessions(now=now), kind="session", batch_size=batch_size, purged=purged, on_batch=on_batch
    )
    _delete_in_batches(
        expired_requests(now=now, keep=keep_requests),
        kind="order_request",
        batch_size=batch_size,
        purged=purged,
        on_batch=on_batch,
    )
    if any(purged.deleted.values()):
        logger.info(
            "retention: deleted %(session)s expired sessions and %(order_request)s idempotency records",
            purged.deleted,
        )
    return purged

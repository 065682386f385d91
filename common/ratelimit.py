"""Rates per client address, counted by the ``limits`` library in the Redis the stack runs.

Two rates (their numbers are settings; docs/CONFIGURATION.md, "Limits"):

- requests per second, on every page and endpoint (``booking_site.ratelimit``): a fixed one-second
  window, one round trip to Redis per request;
- creates and seat changes per minute (``orders.hoarding``): a moving window, so that a burst at a
  window's edge cannot double it.

What one client *holds* is not a rate: it is counted from the live orders themselves
(``orders.hoarding``), never from a counter that could drift.

A limit that cannot be counted (Redis out of reach) lets the request through: the limits guard
against hoarding, and an outage of Redis is not a reason to refuse customers.
"""

from __future__ import annotations

import functools
import logging
import math
import time

from django.conf import settings
from django_redis import get_redis_connection
from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter, RateLimiter
from redis.exceptions import RedisError

from common.errors import ErrorCode, Refused

logger = logging.getLogger(__name__)
KEY_PREFIX = "limits"
RATE_LIMITED = ErrorCode.RATE_LIMITED


class Limited(Refused):
    """Over a limit: refused, nothing changed; ``retry_after`` is the whole seconds to wait (the
    API answers 429 with ``Retry-After``; the pages say it beside the seat map)."""

    def __init__(self, code: str, message: str, *, retry_after: int) -> None:
        super().__init__(code, message)
        self.retry_after = max(1, retry_after)


@functools.cache
def _storage() -> RedisStorage:
    # The cache's own connection pool (its timeouts), not a second set of connections.
    pool = get_redis_connection("default").connection_pool
    return RedisStorage("redis://", connection_pool=pool, key_prefix=KEY_PREFIX)


@functools.cache
def _limiter(kind: type[RateLimiter]) -> RateLimiter:
    return kind(_storage())


def requests_per_second(address: str) -> None:
    """Count one request of ``address``; raise ``Limited`` when it is one too many."""
    limit = RateLimitItemPerSecond(settings.ADDRESS_MAX_REQUESTS_PER_SECOND)
    _hit(FixedWindowRateLimiter, limit, "requests", address, what="requests")


def changes_per_minute(address: str) -> None:
    """Count one create or seat change of ``address``; raise ``Limited`` when it is one too many."""
    limit = RateLimitItemPerMinute(settings.ADDRESS_MAX_CHANGES_PER_MINUTE)
    _hit(MovingWindowRateLimiter, limit, "changes", address, what="new orders and seat changes")


def _hit(kind: type[RateLimiter], limit: RateLimitItem, scope: str, address: str, *, what: str) -> None:
    if not settings.RATE_LIMITS:
        return
    limiter = _limiter(kind)
    try:
        if limiter.hit(limit, scope, address):
            return
        reset_at = limiter.get_window_stats(limit, scope, address).reset_time
    except RedisError as error:
        logger.warning("rate limit %s not counted (Redis: %s): let through", scope, error)
        return
    wait = max(1, math.ceil(reset_at - time.time()))
    raise Limited(
        RATE_LIMITED,
        f"Too many {what} from your address ({limit.amount} per {limit.GRANULARITY.name}). "
        f"Please wait {wait} s and try again.",
        retry_after=wait,
    )

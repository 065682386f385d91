"""Seat holds in Redis: one key per held seat, its value the order that holds it.

``hold:{fl-101}:12A = ord-...`` with a TTL of the hold plus a margin: the workflow's timer
releases the seats; the TTL only cleans up a hold that nothing else will release. The braces
make the flight a Redis Cluster hash tag, so that one script can touch all of a flight's keys.

Every operation on a selection is one Lua script, so it is atomic: an acquire takes all the
seats or none, and a release or refresh touches only keys still owned by the order.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Sequence

from django_redis import get_redis_connection
from redis import Redis
from redis.commands.core import Script

# KEYS: seat keys. ARGV: order id, TTL in ms. Returns the 1-based indexes of seats another
# order holds; when there are none, every key is set (or refreshed) to this order.
_ACQUIRE = """
local taken = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner and owner ~= ARGV[1] then table.insert(taken, i) end
end
if #taken > 0 then return taken end
for _, key in ipairs(KEYS) do redis.call('SET', key, ARGV[1], 'PX', ARGV[2]) end
return taken
"""

# KEYS: seat keys. ARGV: order id. Deletes the keys this order still owns; returns how many.
_RELEASE = """
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    released = released + 1
  end
end
return released
"""


_HOLD_KEY = re.compile(r"hold:\{(?P<flight>[^}]+)\}:(?P<seat>.+)")


def hold_key(flight_id: str, seat: str) -> str:
    return f"hold:{{{flight_id}}}:{seat}"


def connection() -> Redis:
    return get_redis_connection("holds")  # REDIS_URL: never the cache's database


def _scripts() -> tuple[Script, Script]:
    # Building a Script only hashes its text; it runs by EVALSHA and reloads itself if Redis
    # restarted and forgot it.
    redis = connection()
    return redis.register_script(_ACQUIRE), redis.register_script(_RELEASE)


def acquire(*, flight_id: str, seats: Sequence[str], order_id: str, ttl_ms: int) -> list[str]:
    """Hold every seat for ``order_id`` or none of them; return the seats someone else holds.

    Idempotent: seats the order already holds count as free and get the new TTL.
    """
    if not seats:
        return []
    acquire_script, _ = _scripts()
    taken = acquire_script(keys=[hold_key(flight_id, s) for s in seats], args=[order_id, ttl_ms])
    return [seats[int(index) - 1] for index in taken]


def release(*, flight_id: str, seats: Iterable[str], order_id: str) -> int:
    """Release the seats ``order_id`` still holds; seats held by others are left alone."""
    keys = [hold_key(flight_id, s) for s in seats]
    if not keys:
        return 0
    _, release_script = _scripts()
    return int(release_script(keys=keys, args=[order_id]))


def holders(*, flight_id: str, seats: Sequence[str]) -> dict[str, str]:
    """Map each held seat among ``seats`` to the order holding it (one MGET)."""
    if not seats:
        return {}
    values = connection().mget([hold_key(flight_id, s) for s in seats])
    # MGET answers one value a key, so `strict` cannot change the result: not mutated.
    pairs = zip(seats, values, strict=True)  # pragma: no mutate
    return {seat: _text(value) for seat, value in pairs if value is not None}


def every_hold(*, batch: int = 1000) -> Iterator[tuple[str, str, str]]:
    """Every seat hold in Redis, as (flight id, seat, order id): SCAN, not KEYS, so that Redis
    keeps serving while a large store is read, and one MGET per ``batch`` keys; a hold that ends
    meanwhile may be missed."""
    redis = connection()
    # SCAN's pattern and count only spare work: the key's own pattern below decides. Not mutated.
    keys = redis.scan_iter(match="hold:{*}:*", count=batch)  # pragma: no mutate
    while chunk := [_text(key) for key in itertools.islice(keys, batch)]:
        # MGET answers one value a key, so `strict` cannot change the result: not mutated.
        pairs = zip(chunk, redis.mget(chunk), strict=True)  # pragma: no mutate
        for key, value in pairs:
            match = _HOLD_KEY.fullmatch(key)
            if match and value is not None:  # a hold that ended since the SCAN has no value
                yield match["flight"], match["seat"], _text(value)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

"""Failpoints: named places where a test makes the code fail on purpose, at the exact moment a
fault matters (the worker killed right after the gateway approved, say), instead of hoping a
random fault lands there.

Off unless ``FAILPOINTS`` names some, and ``FAILPOINTS`` is refused outside the test stack
(``booking_site.settings``: it needs ``STACK_MODE=test``, which only ``make test`` and ``make
chaos`` set; ``manage.py check --deploy`` fails while any is on). Each is
``name=action``, comma-separated:

    FAILPOINTS="payment.after_charge=kill"

Actions: ``kill`` (SIGKILL this process: a crash, with no clean-up of any kind), ``sleep:SECONDS``
(a stall), ``raise`` (an unexpected error).
"""

from __future__ import annotations

import logging
import os
import signal
import time

from django.conf import settings

logger = logging.getLogger(__name__)

# Every failpoint the code has, and where it is.
NAMES = {
    # temporal_worker.activities.validate_payment: the gateway's approval is committed to its
    # ledger, and the activity has not returned it to Temporal yet.
    "payment.after_charge": "after an approved charge is committed, before the activity returns",
    # orders.activity_writes.confirm_booking: the sold seats and CONFIRMED are written, not committed.
    "confirm.before_commit": "inside the confirming transaction, before it commits",
}
ACTIONS = ("kill", "raise", "sleep:SECONDS")


class FailpointError(RuntimeError):
    """What the ``raise`` action raises."""


def parse(value: str) -> dict[str, str]:
    """``name=action,...`` as a dict; raises ValueError naming what is wrong."""
    points: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, _, action = item.partition("=")
        if name not in NAMES:
            raise ValueError(f"unknown failpoint {name!r} (known: {', '.join(sorted(NAMES))})")
        if action not in ("kill", "raise") and not _is_sleep(action):
            raise ValueError(f"unknown action {action!r} for {name} (one of: {', '.join(ACTIONS)})")
        points[name] = action
    return points


def _is_sleep(action: str) -> bool:
    kind, _, seconds = action.partition(":")
    try:
        return kind == "sleep" and float(seconds) >= 0
    except ValueError:
        return False


def hit(name: str) -> None:
    """Act out the failpoint ``name`` if the settings switch it on; nothing otherwise."""
    assert name in NAMES, name
    action = settings.FAILPOINTS.get(name)
    if not action:
        return
    logger.warning("failpoint %s: %s", name, action)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "raise":
        raise FailpointError(name)
    else:
        time.sleep(float(action.partition(":")[2]))

"""The hoarding check's short run (`make abuse` runs the long one): bots from one address try to
hold a whole flight, with a new session per request and with one session, while customers from
other addresses book it; the limits on one client must hold (tools/abuse.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_bots_from_one_address_cannot_hoard_a_flight_and_customers_still_book() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tools.abuse", "--short"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )

    print(run.stdout[-4000:], run.stderr[-3000:])
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "violations: 0" in run.stdout
    held = re.search(r"seats the bots held at most \(Redis, \d+ samples\): (\d+) \(limit 30\)", run.stdout)
    assert held and 0 < int(held.group(1)) <= 30, "the bots held seats, and no more than the limit"
    assert re.search(r"customers confirmed: (\d+)/\1", run.stdout), "every customer's booking confirmed"
    assert "429 TOO_MANY_SEATS_HELD" in run.stdout and "429 RATE_LIMITED" in run.stdout

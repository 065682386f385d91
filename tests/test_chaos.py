"""The fault suite's short run (`make chaos` runs the long one): customers book while the worker
is killed, PostgreSQL frozen, Redis flushed and restarted and Temporal killed and restarted, each
a separate process of a stack of its own; then every invariant is checked (tools/chaos/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(480)
def test_the_short_fault_run_finds_no_violation() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tools.chaos", "--short"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=450,
        check=False,
    )

    print(run.stdout[-6000:], run.stderr[-3000:])
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "invariant violations: 0" in run.stdout
    assert "orders by outcome:" in run.stdout
    # The money, from the gateway's ledger: its three invariants held.
    assert "at most one live charge per order: ok" in run.stdout
    assert (
        "has exactly one" in run.stdout and "an order that ended without its seats has none: ok" in run.stdout
    )
    # In amounts: each charge its order's total, each refund its charge, and the books balance.
    assert "every charge is its order's total, every refund its charge: ok" in run.stdout
    assert "charged - refunded = the CONFIRMED orders' totals: ok" in run.stdout

"""A web process connects to Temporal as it starts (gunicorn's post_worker_init), not on its
first request, and a Temporal that is down does not hold its start up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What gunicorn's hook does in a new worker process, then a look at the process's one client.
# Logs go to stdout too: the verdicts are the lines that start with "=".
NEW_WEB_PROCESS = """
import sys, time
import django
django.setup()
from common import temporal_client as client
client.connect_soon()
print("= returned", flush=True)
deadline = time.monotonic() + float(sys.argv[1])
while client._thread._client is None and time.monotonic() < deadline:
    time.sleep(0.05)
print("= connected" if client._thread._client is not None else "= not connected", flush=True)
"""


def _new_web_process(*, wait: float, **env: str) -> tuple[list[str], str]:
    result = subprocess.run(
        [sys.executable, "-c", NEW_WEB_PROCESS, str(wait)],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "booking_site.settings", "LOG_FORMAT": "text", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    return [line[2:] for line in result.stdout.splitlines() if line.startswith("= ")], output


def test_a_new_web_process_connects_to_temporal_before_any_request():
    verdicts, output = _new_web_process(wait=10)

    assert verdicts == ["returned", "connected"], output


def test_a_temporal_that_is_down_does_not_hold_up_the_start_and_is_logged():
    # The client gives up after ~3 s of retries (INTERACTIVE_RETRIES): the next call tries again.
    verdicts, output = _new_web_process(wait=6, TEMPORAL_HOST="127.0.0.1:1")

    assert verdicts == ["returned", "not connected"], output
    assert "Temporal at 127.0.0.1:1 not reachable at start" in output

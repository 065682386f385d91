"""Schemathesis holds the live server to its OpenAPI document (booking_site/openapi.yaml).

It runs against this suite's own stack (the live server, a real worker, PostgreSQL, Redis and the
Temporal dev server): the document's examples, its coverage of each parameter's edges, random
positive and negative requests for every operation, and stateful sequences that follow the
document's links from a created order to its status, seat change, payment and abandonment. It
fails on any 5xx, any answer the document does not describe (status, body, headers, content
type), any 2xx to input the document calls invalid, and any method a path does not take that is
not a 405 naming the right ones.

Bounded: FUZZ_EXAMPLES test cases per operation and phase (default 20) and FUZZ_SECONDS in all
(default 60; 0 for no limit). The seed is printed; FUZZ_SEED=<seed> replays a run's choices
(`make fuzz SEED=<seed>`). `make fuzz` runs it alone, longer. See docs/TESTING.md.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from flights.models import Seat
from tests.conftest import ROOT

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 20)
SECONDS = int(os.environ.get("FUZZ_SECONDS") or 60)
SEED = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().randrange(2**31))
REPORT = ROOT / ".data" / "fuzz"

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "unsupported_method",
    "allow_header_conformance",
    "ensure_resource_availability",
    # Not use_after_free: an abandoned order is still there to read (CANCELLED), by design.
    # Not positive_data_acceptance: input the schema allows may still name no flight, or a taken
    # seat, and be refused.
]

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.django_db(transaction=True),
    # The whole run, plus the stack's own start and the teardown of what it booked.
    pytest.mark.timeout(SECONDS * 2 + 180 if SECONDS else 0),
]


@pytest.fixture
def quiet_request_log():
    """Hundreds of refusals are the point here: log only server errors while the fuzzer runs."""
    logger = logging.getLogger("django.request")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def session_cookie() -> str:
    """One session for the whole run: orders belong to the session that made them, and the
    fuzzer's stateful sequences must be able to follow the orders they create."""
    session = importlib.import_module(settings.SESSION_ENGINE).SessionStore()
    session.create()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def seats_by_flight() -> dict[str, list[str]]:
    flights: dict[str, list[str]] = {}
    for flight_id, code in Seat.objects.values_list("flight_id", "code"):
        flights.setdefault(flight_id, []).append(code)
    return flights


def schemathesis_command(url: str, cookie: str) -> list[str]:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        f"--config-file={ROOT / 'tests' / 'schemathesis.toml'}",
        "run",
        f"{url}/api/openapi.json",
        f"--checks={','.join(CHECKS)}",
        "--phases=examples,coverage,fuzzing,stateful",
        "--mode=all",
        f"--max-examples={EXAMPLES}",
        f"--seed={SEED}",
        # One at a time: the 2 cores are shared, and one session's requests must not race.
        "--workers=1",
        f"--header=Cookie: {cookie}",
        "--request-timeout=30",
        f"--generation-database={REPORT / 'examples'}",
        "--report=junit",
        f"--report-dir={REPORT}",
        "--no-color",
    ]
    return command + ([f"--max-time={SECONDS}"] if SECONDS else [])


def test_the_api_keeps_its_contract_under_fuzzing(stack, quiet_request_log):
    REPORT.mkdir(parents=True, exist_ok=True)
    command = schemathesis_command(stack.url, session_cookie())
    env = dict(
        os.environ,
        SCHEMATHESIS_HOOKS=str(ROOT / "tests" / "fuzz_hooks.py"),
        FUZZ_FLIGHTS=json.dumps(seats_by_flight()),
    )
    print(f"fuzzing with seed {SEED} (replay: make fuzz SEED={SEED})", flush=True)

    with (
        (REPORT / "output.txt").open("w") as log,
        subprocess.Popen(
            # Run in REPORT: schemathesis and Hypothesis keep their caches in the working directory.
            command,
            cwd=REPORT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as run,
    ):
        assert run.stdout is not None
        for line in run.stdout:  # as it comes (make fuzz shows it live), and kept in the report
            sys.stdout.write(line)
            log.write(line)

    assert run.returncode == 0, (
        f"schemathesis found failures with seed {SEED}: replay with `make fuzz SEED={SEED}`; "
        f"its output and report are in {REPORT}"
    )

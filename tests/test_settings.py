"""Settings come from the environment; a bad value stops start-up with one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from booking_site import env

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("900", 900), ("900s", 900), ("15m", 900), ("1.5h", 5400), ("250ms", 0.25), (" 3s ", 3)],
)
def test_durations_accept_seconds_minutes_and_units(text, seconds):
    assert env.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["soon", "", "15 minutes", "-5s", "1d", "5mm"])
def test_durations_refuse_anything_else(text):
    with pytest.raises(ValueError):  # noqa: PT011 (the message is the value itself)
        env.parse_duration(text)


def test_defaults_match_the_product(settings):
    assert timedelta(minutes=15) == settings.SEAT_RESERVATION_TIMEOUT
    assert timedelta(seconds=10) == settings.PAYMENT_VALIDATION_TIMEOUT
    assert settings.PAYMENT_MAX_RETRIES == 3
    assert settings.PAYMENT_FAILURE_RATE == 0.15
    assert settings.TEMPORAL_NAMESPACE == "default"
    assert settings.TEMPORAL_TASK_QUEUE == "booking-queue"
    assert timedelta(seconds=60) == settings.SEAT_HOLD_TTL_MARGIN


def run_manage(*args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in overrides}
    environment.update({"SECRET_KEY": "x" * 50, **overrides})
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value", "accepts"),
    [
        ("SEAT_RESERVATION_TIMEOUT", "soon", "a duration such as 900, 900s, 15m or 250ms"),
        ("PAYMENT_VALIDATION_TIMEOUT", "0s", "at least 0.1s"),
        ("PAYMENT_MAX_RETRIES", "three", "a whole number from 1 to 20"),
        ("PAYMENT_FAILURE_RATE", "15%", "a number from 0 to 1"),
        ("SERVER_PORT", "80000", "a whole number from 1 to 65535"),
        ("DEBUG", "maybe", "true or false"),
        ("DATABASE_URL", "mysql://x/y", "postgres://"),
        ("REDIS_URL", "localhost:6379", "redis://"),
        ("TEMPORAL_HOST", "localhost", "host:port"),
    ],
)
def test_a_bad_value_stops_start_up_with_one_line_naming_it(variable, value, accepts):
    result = run_manage("check", **{variable: value})

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: {variable}=")
    assert accepts in lines[0]


def test_production_needs_a_secret_key():
    result = run_manage("check", SECRET_KEY="", DEBUG="false")

    assert result.returncode == 2
    assert "SECRET_KEY is not set" in result.stderr


def test_good_values_start(tmp_path):
    result = run_manage("check", SEAT_RESERVATION_TIMEOUT="900", PAYMENT_VALIDATION_TIMEOUT="10s")

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", ["runworker", "seed_flights", "reconcile_orders", "migrate", "check"])
def test_every_commands_help_works_without_configuration(command):
    result = run_manage(command, "--help", SECRET_KEY="", DEBUG="false")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: manage.py {command}")


def test_the_list_of_commands_works_without_configuration():
    result = run_manage("help", SECRET_KEY="", DEBUG="false")

    assert result.returncode == 0, result.stderr
    assert "runworker" in result.stdout

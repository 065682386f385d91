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
    assert settings.PAYMENT_MAX_ATTEMPTS == 3
    assert settings.PAYMENT_FAILURE_RATE == 0.15
    assert settings.TEMPORAL_NAMESPACE == "default"
    assert settings.TEMPORAL_TASK_QUEUE == "booking-queue"
    assert timedelta(seconds=60) == settings.SEAT_HOLD_TTL_MARGIN


def test_the_limits_default_to_a_public_site_behind_nat():
    # Read in a fresh process without the variables: the test stack itself runs with RATE_LIMITS=off.
    names = ("RATE_LIMITS", "TRUSTED_PROXIES", "SESSION_MAX_SEATS_HELD", "ADDRESS_MAX_SEATS_HELD")
    environment = {k: v for k, v in os.environ.items() if k not in names and k != "SEAT_HOLD_MAX_LIFE"}
    code = f"from django.conf import settings as s; print(*(getattr(s, n) for n in {names!r}))"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code + "; print(s.SEAT_HOLD_MAX_LIFE)"],
        cwd=ROOT,
        env={**environment, "SECRET_KEY": "x" * 50},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.stdout.splitlines()[-2:] == ["True [] 9 30", "0:45:00"], result.stdout + result.stderr


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
        ("PAYMENT_MAX_ATTEMPTS", "three", "a whole number from 1 to 20"),
        ("PAYMENT_FAILURE_RATE", "15%", "a number from 0 to 1"),
        ("SERVER_PORT", "80000", "a whole number from 1 to 65535"),
        ("DEBUG", "maybe", "true or false"),
        ("DATABASE_URL", "mysql://x/y", "postgres://"),
        ("REDIS_URL", "localhost:6379", "redis://"),
        ("TEMPORAL_HOST", "localhost", "host:port"),
        ("CACHE_REDIS_URL", "localhost:6379", "redis://"),
        ("IDEMPOTENCY_KEY_RETENTION", "10m", "at least 3600s"),
        ("RETENTION_BATCH_SIZE", "0", "a whole number from 1 to 100000"),
        ("RATE_LIMITS", "sometimes", "true or false"),
        ("TRUSTED_PROXIES", "10.0.0.0/8,proxy.local", "a comma-separated list of CIDRs"),
        ("ADDRESS_MAX_SEATS_HELD", "0", "a whole number from 1 to 100000"),
        ("SESSION_MAX_SEATS_HELD", "many", "a whole number from 1 to 100"),
        ("SEAT_HOLD_MAX_LIFE", "10m", "no shorter than SEAT_RESERVATION_TIMEOUT"),
    ],
)
def test_a_bad_value_stops_start_up_with_one_line_naming_it(variable, value, accepts):
    result = run_manage("check", **{variable: value})

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: {variable}=")
    assert accepts in lines[0]


def test_payment_max_retries_is_still_read_as_the_older_name_of_payment_max_attempts():
    code = "from django.conf import settings as s; print(s.PAYMENT_MAX_ATTEMPTS)"
    environment = {k: v for k, v in os.environ.items() if k != "PAYMENT_MAX_ATTEMPTS"}
    older = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**environment, "SECRET_KEY": "x" * 50, "PAYMENT_MAX_RETRIES": "5"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    both = run_manage("check", PAYMENT_MAX_ATTEMPTS="4", PAYMENT_MAX_RETRIES="5")

    assert older.stdout.splitlines()[-1] == "5", older.stderr
    assert both.returncode == 2
    assert both.stderr.strip() == (
        "configuration error: PAYMENT_MAX_ATTEMPTS='4' and PAYMENT_MAX_RETRIES='5' disagree: "
        "PAYMENT_MAX_RETRIES is the older name of PAYMENT_MAX_ATTEMPTS; set PAYMENT_MAX_ATTEMPTS alone"
    )


def test_the_cache_may_not_share_the_seat_holds_redis_database():
    url = "redis://127.0.0.1:6379/3"
    result = run_manage("check", REDIS_URL=url, CACHE_REDIS_URL=url)

    assert result.returncode == 2
    assert result.stderr.strip().startswith("configuration error: CACHE_REDIS_URL=")


def test_the_cache_defaults_to_the_next_database_of_the_holds_redis():
    from booking_site.env import redis_database

    assert redis_database("redis://:pw@redis:6379/0", 1) == "redis://:pw@redis:6379/1"
    assert redis_database("redis://127.0.0.1:6379", 1) == "redis://127.0.0.1:6379/1"
    assert redis_database("unix:///run/redis.sock?db=0", 1) == "unix:///run/redis.sock?db=1"


def test_production_needs_a_secret_key():
    result = run_manage("check", SECRET_KEY="", DEBUG="false")

    assert result.returncode == 2
    assert "SECRET_KEY is not set" in result.stderr


def test_good_values_start(tmp_path):
    result = run_manage("check", SEAT_RESERVATION_TIMEOUT="900", PAYMENT_VALIDATION_TIMEOUT="10s")

    assert result.returncode == 0, result.stderr


GUNICORN = str(Path(sys.executable).parent / "gunicorn")
# How the image and `make run` start the web, and how the tests and chaos start it.
THROUGH_MODULE = (sys.executable, "-m", "booking_site.gunicorn")
THROUGH_GUNICORN = (GUNICORN, "-c", "booking_site/gunicorn.py", "booking_site.wsgi")


@pytest.mark.parametrize(
    ("command", "variable", "value", "accepts"),
    [
        (THROUGH_MODULE, "WEB_CONCURRENCY", "lots", "a whole number from 1"),
        (THROUGH_MODULE, "WEB_CONCURRENCY", "0", "a whole number from 1"),
        (THROUGH_MODULE, "GUNICORN_THREADS", "eight", "a whole number from 1"),
        (THROUGH_MODULE, "ACCESS_LOG", "maybe", "true or false"),
        (THROUGH_MODULE, "SERVER_PORT", "http", "a whole number from 1 to 65535"),
        (THROUGH_GUNICORN, "WEB_CONCURRENCY", "0", "a whole number from 1"),
        (THROUGH_GUNICORN, "GUNICORN_THREADS", "eight", "a whole number from 1"),
    ],
)
def test_a_bad_gunicorn_variable_stops_it_with_one_line_naming_it(command, variable, value, accepts):
    from devstack.ports import free_port

    environment = {k: v for k, v in os.environ.items() if k not in {variable, "SERVER_PORT"}}
    # Were the value taken, gunicorn would start: on a free port, and stopped by the timeout.
    environment.update({"SECRET_KEY": "x" * 50, "SERVER_PORT": str(free_port()), "METRICS_PORT": "0"})
    environment[variable] = value
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=30)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"configuration error: {variable}={value!r} is not valid: expected {accepts}"], (
        result.stderr
    )


@pytest.mark.parametrize("command", ["runworker", "seed_flights", "reconcile_orders", "migrate", "check"])
def test_every_commands_help_works_without_configuration(command):
    result = run_manage(command, "--help", SECRET_KEY="", DEBUG="false")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: manage.py {command}")


def test_the_list_of_commands_works_without_configuration():
    result = run_manage("help", SECRET_KEY="", DEBUG="false")

    assert result.returncode == 0, result.stderr
    assert "runworker" in result.stdout

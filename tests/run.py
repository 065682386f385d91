"""Run the whole suite: everything but the browser tests, then the browser tests on their own.

pytest-playwright leaves an event loop running that breaks later async tests in the same
process, so the browser tests get their own pytest invocation. Extra arguments go to both runs;
``-m`` or a path narrows them as usual. Exit code 0 only when both runs pass; a run that finds
no test at all (pytest's exit code 5) counts as a failure unless the other run found tests.
"""

from __future__ import annotations

import os
import subprocess
import sys

NO_TESTS = 5


def pytest(*args: str, env: dict[str, str] | None = None) -> int:
    command = [sys.executable, "-m", "pytest", *args]
    return subprocess.run(command, env=env, check=False).returncode


def main(args: list[str]) -> int:
    core = pytest("-m", "not browser", *args)
    # Playwright's sync API runs an event loop in the test thread, so Django sees every ORM
    # call of a browser test as made from async code. Only that run opts out of the check.
    browser = pytest("-m", "browser", *args, env=dict(os.environ, DJANGO_ALLOW_ASYNC_UNSAFE="true"))
    codes = [code for code in (core, browser) if code != NO_TESTS]
    if not codes:
        print("no tests ran", file=sys.stderr)
        return 1
    return max(codes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`make mutate`: mutation testing of the booking workflow and the seat holds, with mutmut.

    python -m tools.mutate [--jobs N] [--minimum 95]

mutmut (configured in pyproject.toml, ``[tool.mutmut]``) changes one thing at a time in
``temporal_worker/workflows.py`` and ``flights/holds.py`` and runs the fast tests that reach the
changed function: the workflow on Temporal's time-skipping test server, the recorded histories
through the Replayer, and the holds on a real Redis, which this command starts for itself (on a
free port, thrown away afterwards). Every run starts from a clean ``mutants/`` folder.

It prints each surviving mutant and the score, killed / (all - skipped), mutmut's own formula
(a mutant that makes the tests hang counts as killed), and exits 1 below ``--minimum``.
docs/TESTING.md lists the survivors that are equivalent, and why.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from devstack.ports import free_port
from devstack.redis_server import start_redis
from devstack.supervisor import ROOT, Supervisor, log

MUTMUT = Path(sys.executable).parent / "mutmut"


def score(stats: dict[str, int]) -> float:
    tested = stats["total"] - stats["skipped"]
    return 100.0 * (stats["killed"] + stats["timeout"]) / tested if tested else 0.0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.mutate", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="mutants tested at once")
    parser.add_argument("--minimum", type=float, default=95.0, help="the lowest score that passes")
    args = parser.parse_args(argv)

    data = Path(tempfile.mkdtemp(prefix="booking-mutate-"))
    stack = Supervisor()
    try:
        env = dict(os.environ, STACK_MODE="test", DEBUG="true", LOG_FORMAT="text")
        env["REDIS_URL"] = start_redis(stack, data, free_port(), env, persist=False)
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        run = subprocess.run([str(MUTMUT), "run", "--max-children", str(args.jobs)], cwd=ROOT, env=env)
        if run.returncode != 0:
            log(f"mutmut run failed with exit code {run.returncode}")
            return run.returncode
        subprocess.run([str(MUTMUT), "export-cicd-stats"], cwd=ROOT, env=env, check=True)
        stats = json.loads((ROOT / "mutants" / "mutmut-cicd-stats.json").read_text())
        print("\nSurviving mutants (mutmut show NAME prints one):", flush=True)
        subprocess.run([str(MUTMUT), "results"], cwd=ROOT, env=env, check=True)
    finally:
        stack.stop()
        shutil.rmtree(data, ignore_errors=True)
    result = score(stats)
    print(
        f"\nmutation score {result:.1f}% = (killed {stats['killed']} + timeout {stats['timeout']})"
        f" / (total {stats['total']} - skipped {stats['skipped']});"
        f" survived {stats['survived']}, no tests {stats['no_tests']}, suspicious {stats['suspicious']}"
        f" (minimum {args.minimum:g}%)",
        flush=True,
    )
    return 0 if result >= args.minimum else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

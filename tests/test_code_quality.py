"""The code stays as clean as the README promises: ruff (lint and format), mypy on every app (the
views typed with django-htmx's request), and the architecture's import rules (import-linter,
pyproject.toml), run by CI through `make test` like every other test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy", "temporal_worker", "common", "orders", "flights", "payments", "booking_site", "tools"],
        ["lint-imports"],
    ],
    ids=["ruff-check", "ruff-format", "mypy", "import-contracts"],
)
def test_the_code_is_lint_clean(command: list[str]) -> None:
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=ROOT,
        env=dict(os.environ, DEBUG="true"),
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr

"""docs/ARCHITECTURE.md maps each Temporal pattern to the code that implements it and the test that
proves it, and says where each thing lives: those links must not rot. Every ``file::name`` named
there must exist and define that name; every file named must exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
README = (ROOT / "README.md").read_text()
REFERENCE = re.compile(r"`([\w/.]+\.py)::(\w+)`")
FILE = re.compile(
    r"`((?:booking_site|common|flights|orders|payments|temporal_worker|devstack|tools|tests)/[\w/.]+\.py)`"
)


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else None]


PATTERNS = section(ARCHITECTURE, "## Temporal patterns, and where they are")
REFERENCES = sorted(set(REFERENCE.findall(PATTERNS)))


def defines(path: Path, name: str) -> bool:
    source = path.read_text()
    return re.search(rf"^\s*(?:async\s+def|def|class)\s+{name}\b|^\s*{name}\s*[:=]", source, re.M) is not None


def test_the_pattern_table_names_code_and_tests() -> None:
    rows = [line for line in PATTERNS.splitlines() if line.startswith("| ") and "::" in line]
    assert len(rows) >= 15
    for row in rows:
        code, proof = row.split(" | ")[1:3]
        assert REFERENCE.search(code), f"no code named in: {row}"
        assert all(path.startswith("tests/") for path, _ in REFERENCE.findall(proof)), row
        assert REFERENCE.search(proof), f"no test named in: {row}"


@pytest.mark.parametrize(("path", "name"), REFERENCES, ids=[f"{p}::{n}" for p, n in REFERENCES])
def test_each_named_function_and_test_exists(path: str, name: str) -> None:
    file = ROOT / path
    assert file.is_file(), f"{path} does not exist"
    assert defines(file, name), f"{path} defines no {name}"


@pytest.mark.parametrize("path", sorted(set(FILE.findall(ARCHITECTURE) + FILE.findall(README))))
def test_each_file_named_in_the_docs_exists(path: str) -> None:
    assert (ROOT / path).is_file(), f"{path} is named in the docs but does not exist"

"""docs/guarantees.md names the test behind each guarantee; every name must be a real test."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_test_the_guarantees_name_exists():
    doc = (REPO / "docs" / "guarantees.md").read_text()
    named = set(re.findall(r"\b(test_[a-z0-9_]+)", doc))
    modules = {path.stem for path in (REPO / "tests").glob("test_*.py")}
    defined = set()
    for path in (REPO / "tests").glob("test_*.py"):
        defined |= set(re.findall(r"^def (test_[a-z0-9_]+)", path.read_text(), re.M))
    missing = sorted(named - defined - modules)
    assert named and not missing, f"docs/guarantees.md names tests that do not exist: {missing}"

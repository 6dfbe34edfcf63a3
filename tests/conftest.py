"""Shared test settings: no progress bars, a private cache folder per test session."""

import os

import pytest

os.environ.setdefault("HARNESS_NO_PROGRESS", "1")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test writes its cache under a temporary folder, never into the checkout."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path_factory.getbasetemp() / "harness-cache"))

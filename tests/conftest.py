"""Shared test settings: no progress bars, a private cache folder per test session."""

import os

import pytest

os.environ.setdefault("HARNESS_NO_PROGRESS", "1")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test writes its cache under a temporary folder, never into the checkout."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path_factory.getbasetemp() / "harness-cache"))


@pytest.fixture
def one_thread():
    """Torch on one thread for the test, as the committed leaderboard's runs were, so that
    figures compared bit for bit do not depend on the machine's core count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

"""The example plugin in examples/ installs as its own distribution and is discovered."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "harness-band-energy"


@pytest.fixture(scope="module")
def installed_example(pip_install_example):
    """The example, pip-installed into a private folder (conftest.py)."""
    return pip_install_example(EXAMPLE)


def _run(target, *args):
    env = {**os.environ, "PYTHONPATH": str(target), "HARNESS_NO_PROGRESS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env)


def test_example_is_listed_by_harness_plugins(installed_example):
    proc = _run(installed_example, "-m", "harness", "plugins", "--kind", "repr")
    assert proc.returncode == 0, proc.stderr
    assert "band_energy" in proc.stdout and "harness-band-energy" in proc.stdout


def test_example_passes_conformance_and_computes(installed_example):
    code = ("from harness.api.registry import default_registry; from harness.api.testing import check_plugin;"
            "e = default_registry().get('repr', 'band_energy'); check_plugin(e.cls);"
            "import numpy as np; r = e.cls(); print(r.compute(np.random.default_rng(0)"
            ".standard_normal((2, r.num_samples))).shape)")
    proc = _run(installed_example, "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert "(2, 32)" in proc.stdout


def test_examples_own_test_passes(installed_example):
    proc = _run(installed_example, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                str(EXAMPLE / "tests"))
    assert proc.returncode == 0, proc.stdout + proc.stderr

"""A third-party evaluator, installed as its own distribution, runs through the whole core.

The example in examples/harness-centroid-probe is pip-installed into a private folder and
used exactly as a user would: ``harness run --eval centroid_probe`` writes a record, and
``harness leaderboard`` gives it a table of its own. The core is not changed for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.api.testing import make_tiny_voc

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "harness-centroid-probe"


@pytest.fixture(scope="module")
def installed(pip_install_example):
    """The example, pip-installed into a private folder (conftest.py)."""
    return pip_install_example(EXAMPLE)


def _harness(target: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target), "HARNESS_NO_PROGRESS": "1",
           "HARNESS_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def test_third_party_evaluator_runs_into_a_record_and_a_leaderboard(installed, tmp_path):
    voc = make_tiny_voc(tmp_path / "voc")
    results, board = tmp_path / "results", tmp_path / "board"
    proc = _harness(installed, tmp_path, "run", "--init", "random", "--backbone",
                    "timm:test_resnet", "--voc", str(voc), "--eval", "centroid_probe",
                    "--results", str(results), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "centroid_probe map" in proc.stdout          # the run's row names the headline
    (path,) = results.glob("*.json")
    record = json.loads(path.read_text())
    assert record["schema"] == "harness-record/2"
    assert set(record["metrics"]) == {"centroid_probe"}
    m = record["metrics"]["centroid_probe"]
    assert m["headline"] == "map" and len(m["breakdown"]) == 20 and 0 <= m["value"] <= 100
    assert record["config"]["evaluators"]["centroid_probe"]["params"]["size"] == 64

    proc = _harness(installed, tmp_path, "leaderboard", "--results", str(results),
                    "--out", str(board))
    assert proc.returncode == 0, proc.stderr
    (page,) = board.glob("*eval-centroid_probe*.md")
    text = page.read_text()
    assert "random init timm:" in text and f"{m['value']:.1f}" in text
    assert "centroid_probe" in (board / "README.md").read_text()


def test_third_party_evaluator_passes_check_evaluator(installed, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed), "HARNESS_NO_PROGRESS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(EXAMPLE / "tests")], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_harness_eval_runs_it_too(installed, tmp_path):
    voc = make_tiny_voc(tmp_path / "voc")
    out = tmp_path / "m.json"
    proc = _harness(installed, tmp_path, "eval", "--evaluator", "centroid_probe",
                    "--checkpoint", "random:timm:test_resnet", "--voc", str(voc),
                    "--out", str(out), "--device", "cpu", "-p", "size=32")
    assert proc.returncode == 0, proc.stderr
    m = json.loads(out.read_text())
    assert m["protocol"]["size"] == 32 and len(m["breakdown"]) == 20

"""The commands a person types to find their way around start without torch.

Importing torch takes one to two seconds; ``harness --help`` and the help of every command
need none of it. Each command runs in a fresh interpreter, which reports afterwards whether
torch was imported along the way.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: runs the CLI with the given arguments, then prints whether torch was imported
_RUN_CLI = """
import sys
from harness.cli import app
try:
    app(args=sys.argv[1:], prog_name="harness")
except SystemExit as exc:
    status = exc.code
else:
    status = 0
print("torch imported:", "torch" in sys.modules, file=sys.stderr)
sys.exit(status)
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _RUN_CLI, *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


@pytest.mark.parametrize("args", [
    ("--help",), ("--version",), ("plugins", "--help"), ("leaderboard", "--help"),
    ("run", "--help"), ("sweep", "--help"), ("pretrain", "--help"), ("eval", "--help"),
    ("label", "--help"), ("features", "--help"), ("data", "--help"), ("data", "ingest", "--help"),
], ids=" ".join)
def test_help_and_version_import_no_torch(args):
    done = _run(*args)
    assert done.returncode == 0, done.stderr
    assert "torch imported: False" in done.stderr, done.stderr
    assert "harness" in done.stdout


def test_listing_the_plugins_imports_no_torch():
    """Every installed plugin is imported and registered; none imports torch to declare
    its class."""
    done = _run("plugins")
    assert done.returncode == 0, done.stderr
    assert "torch imported: False" in done.stderr, done.stderr
    for name in ("mfcc", "sound_texture", "kmeans", "alexnet", "voc07_linear", "knn", "csv"):
        assert name in done.stdout


def test_building_and_checking_a_leaderboard_imports_no_torch(tmp_path):
    """``harness leaderboard`` and ``--check`` on a copy of the committed protocol and one
    committed record: the records are verified, the evaluators created for their default
    parameters, the frozen protocol compared with the code's, the pages written and read
    back -- all without torch."""
    board = ROOT / "leaderboards"
    record = sorted((board / "results").glob("*.json"))[0]
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(board / "PROTOCOL.json", tmp_path / "PROTOCOL.json")
    for path in (record, record.with_suffix(".scores.npz")):
        shutil.copy(path, results / path.name)
    where = ("--out", str(tmp_path), "--results", str(results))

    written = _run("leaderboard", *where)
    assert written.returncode == 0, written.stderr
    assert "torch imported: False" in written.stderr, written.stderr
    checked = _run("leaderboard", "--check", *where)
    assert checked.returncode == 0, checked.stderr
    assert "up to date" in checked.stdout + checked.stderr
    assert "torch imported: False" in checked.stderr, checked.stderr


def test_the_probe_sees_torch_when_a_command_imports_it():
    """The check above can fail: a command that imports torch is reported as such."""
    done = subprocess.run(
        [sys.executable, "-c", "import torch\n" + _RUN_CLI, "--version"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "torch imported: True" in done.stderr

"""The CLI shell: version, plugin table, one-line errors."""

import subprocess
import sys

from typer.testing import CliRunner

from harness import __version__
from harness.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_plugins_table_lists_every_kind():
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0, result.output
    for word in ("kind", "name", "distribution", "description", "mfcc", "kmeans", "alexnet",
                 "voc07_linear"):
        assert word in result.output


def test_every_command_group_exists():
    result = runner.invoke(app, ["--help"])
    for command in ("run", "features", "label", "pretrain", "eval", "data", "leaderboard",
                    "plugins", "sweep", "figures"):
        assert command in result.output


def test_errors_are_one_line_without_traceback(tmp_path):
    missing = tmp_path / "nope.wav"
    proc = subprocess.run([sys.executable, "-m", "harness", "features", "--repr", "mfcc",
                           str(missing)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "nope.wav" in lines[0]


def test_unknown_plugin_error_lists_available(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness", "features", "--repr", "nope",
                           str(tmp_path / "a.wav")], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "available:" in proc.stderr and "mfcc" in proc.stderr


def test_run_and_sweep_pass_the_world_seed(monkeypatch, tmp_path):
    """--world-seed picks the toy world (and so its sealed test split); default world 0."""
    import harness.pipeline.run
    import harness.pipeline.sweep
    from harness.pipeline.config import RunResult

    seen = []
    monkeypatch.setattr(harness.pipeline.run, "run",
                        lambda config, echo=print: seen.append(config)
                        or RunResult({}, tmp_path / "r.json"))
    monkeypatch.setattr(harness.pipeline.sweep, "sweep",
                        lambda base, *args, echo=print, inits, world_seeds, **flags:
                        seen.append(world_seeds) or [])
    for argv in (["run"], ["run", "--world-seed", "2"],
                 ["sweep", "--world-seed", "1", "--world-seed", "2"], ["sweep"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, result.output
    assert [c.world_seed for c in seen[:2]] == [0, 2]
    assert seen[2:] == [(1, 2), (0,)]

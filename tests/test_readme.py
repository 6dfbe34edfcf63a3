"""Every command line README shows runs (at a small scale), and the stages equal the run.

The command lines are read from README's ``bash`` blocks, not copied here, so a command
added to README is run by this test. Long-running lines get small-scale options appended
(``SMALL``: few clips, one epoch, a few evaluator iterations), the same ones in the
stage-by-stage path and in ``harness run``; lines that need the network or the user's own
files run against inputs made here (generated videos, a stand-in yt-dlp). A line this
test does not know how to run at a small scale fails it, so README cannot show a command
no one has run.

The stage-by-stage path (features -> label -> pretrain -> eval) and the ``harness run``
line that README says does the same must give bit-identical metrics on the CPU.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

#: small-scale changes, by the start of a line: (options replaced, options appended). The
#: rest of the scale comes from a small toy profile (``small_profile``), which both the
#: stage commands and ``harness run`` read, as they read the real one.
SMALL: list[tuple[str, dict[str, str], list[str]]] = [
    ("harness data toy ", {"--clips 1000": "--clips 48"}, []),
    ("harness data toy-voc ", {}, []),
    ("harness data ingest ", {}, []),
    ("harness data audioset ", {}, ["--backoff", "0"]),
    ("harness features ", {}, []),
    ("harness label ", {}, []),
    ("harness pretrain ", {}, []),
    ("harness eval ", {}, []),
    ("harness run ", {}, []),
    # a sweep's grid is cut to its first k and seed (both representations stay)
    # rows over worlds: random and MFCC on two small worlds (4 runs), as written
    # a dry run lists the batch against the committed records and runs nothing, as written
    ("harness sweep --init random --init sound --repr mfcc --seed 0 --seed 1 --results leaderboards/results --dry-run", {}, []),
    ("harness sweep --init random ", {"--world-seed 0 --world-seed 1": "--world-seed 0 --world-seed 1"}, []),
    ("harness sweep ", {"--k 5 --k 15 --k 30": "--k 5", "--seed 0 --seed 1": "--seed 0"}, []),
    ("harness leaderboard", {}, []),
    ("harness figures ", {}, []),
    ("harness plugins", {}, []),
]


def small_profile(monkeypatch) -> None:
    """The toy profile at test size: 48 clips, a 160 + 120 image VOC, one pretext epoch,
    two evaluator iterations."""
    from dataclasses import replace

    from harness import profiles

    toy = profiles.PROFILES["toy"]
    monkeypatch.setitem(profiles.PROFILES, "toy", replace(
        toy, toy_clips=48, toy_voc_images=(160, 120), pretext_epochs=1,
        evaluation=replace(toy.evaluation, head_iterations=2, all_iterations=2)))


#: lines that are not run, and why (each is covered elsewhere)
NOT_RUN = {
    "python3.11 -m venv .venv": "creates the environment this suite runs in",
    ".venv/bin/pip install -e '.[test]'": "installs the package this suite tests",
    ".venv/bin/python -m pytest": "is this test suite",
}


def readme_lines() -> list[str]:
    """Command lines of README's bash blocks; `a && b` is two; `# or: cmd` comments too."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        for raw in block.splitlines():
            command, _, comment = raw.partition("  #")
            extra = re.match(r"\s*or:\s*(harness .*)", comment)
            for part in [*command.split("&&"), *([extra.group(1)] if extra else [])]:
                if part.strip():
                    lines.append(part.strip())
    return lines


def small_scale(line: str) -> list[str]:
    """The argv (after ``harness``) of ``line`` at the test's scale."""
    line = line.removeprefix(".venv/bin/")
    assert line.startswith("harness"), f"README shows {line!r}, not a harness command"
    for prefix, replace, append in SMALL:
        if line == prefix.strip() or line.startswith(prefix):
            for old, new in replace.items():
                assert old in line, f"README line changed: {line!r} lacks {old!r}"
                line = line.replace(old, new)
            return shlex.split(line)[1:] + append
    raise AssertionError(f"README shows {line!r}; this test does not know how to run it at "
                         "a small scale: add it to SMALL or NOT_RUN")


# ----------------------------------------------------------------------------- inputs
def _inputs(work: Path) -> dict[str, str]:
    """What the lines name but README cannot ship: videos, audio files, an AudioSet CSV and
    a stand-in yt-dlp (as in test_audioset). Returns extra environment variables."""
    import soundfile as sf

    from tests.media import write_video
    from tests.test_audioset import CSV, FAKE, PLAN

    write_video(work / "DIR" / "a.mp4", 8.0)
    rng = np.random.default_rng(0)
    for name in ("a.wav", "b.flac"):
        sf.write(work / name, 0.1 * rng.standard_normal(22050 * 4), 22050)
    rows = [r for r in CSV.splitlines() if r.startswith("#") or r.startswith("-okvideo001")]
    (work / "balanced_train_segments.csv").write_text("\n".join(rows) + "\n")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "yt-dlp"
    exe.write_text(FAKE.format(python=sys.executable, repo=str(REPO)))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    (work / "plan.json").write_text(json.dumps(PLAN))
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_YTDLP_PLAN": str(work / "plan.json"), "FAKE_YTDLP_LOG": str(work / "calls.log")}


def _install_centroid_probe(tmp: Path) -> Path:
    """pip-install examples/harness-centroid-probe (no dependencies) into a private folder."""
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target),
                    str(REPO / "examples" / "harness-centroid-probe")], check=True, cwd=tmp)
    return target


# ----------------------------------------------------------------------------- the test
def test_every_readme_command_runs_and_the_stages_equal_the_run(tmp_path, monkeypatch):
    import torch

    from harness.cli import app
    from harness.api.registry import default_registry
    from harness.results.records import read_records

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    for key, value in _inputs(work).items():
        monkeypatch.setenv(key, value)
    small_profile(monkeypatch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)           # the same threads for both paths (determinism)
    runner, ran = CliRunner(), []
    try:
        for line in readme_lines():
            if "pytest benchmarks" in line:     # the benchmark suites collect (running is long)
                cmd = shlex.split(line.removeprefix(".venv/bin/python "))
                proc = subprocess.run([sys.executable, *cmd, "--collect-only", "-q"], cwd=REPO,
                                      capture_output=True, text=True)
                assert proc.returncode == 0, f"{line}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
                ran.append(line)
                continue
            if any(line.startswith(skip) for skip in NOT_RUN):
                continue
            argv = small_scale(line)
            if argv[:1] == ["leaderboard"]:      # what a user does before regenerating tables
                shutil.copytree(work / "results", work / "leaderboards" / "results",
                                dirs_exist_ok=True)
            if argv[:3] == ["eval", "--evaluator", "voc07_linear"] and "runs/mfcc15/last.pt" in argv:
                argv += ["--out", "stage-metrics.json"]
            if "centroid_probe" in argv:         # a third-party plugin, installed as README says
                monkeypatch.syspath_prepend(str(_install_centroid_probe(tmp_path)))
                default_registry.cache_clear()
                argv += ["--results", "probe-results"]
            result = runner.invoke(app, argv)
            assert result.exit_code == 0, f"{line} -> {argv}\n{result.output[-3000:]}"
            ran.append(line)
    finally:
        torch.set_num_threads(threads)
        default_registry.cache_clear()
    assert any(line.startswith("harness sweep") for line in ran) and len(ran) >= 20

    # harness pretrain records where its settings came from
    pretext = json.loads((work / "runs" / "mfcc15" / "config.json").read_text())["config"]
    assert pretext["profile"] == "toy" and pretext["overrides"] == {}

    # the stage-by-stage path gives the run's number, bit for bit
    stage = json.loads((work / "stage-metrics.json").read_text())
    same = [r for r in read_records(work / "results")
            if r["config"]["init"] == "sound" and r["config"]["repr"]["name"] == "mfcc"
            and r["config"]["k"] == 15 and r["config"]["backbone"]["name"] == "alexnet"
            and r["config"]["seed"] == 0 and r["config"]["labeler"]["name"] == "kmeans"
            and r["dataset"]["path"] == "toy"]
    assert len(same) == 1
    run_metrics = same[0]["metrics"]["voc07_linear"]
    assert stage["value"] == run_metrics["value"]
    assert stage["breakdown"] == run_metrics["breakdown"]
    assert stage["protocol"] == run_metrics["protocol"]

    # --k reached pca_binary as its bits, and the record says so
    pca = [r for r in read_records(work / "results")
           if r["config"]["labeler"] and r["config"]["labeler"]["name"] == "pca_binary"]
    assert len(pca) == 1 and pca[0]["config"]["labeler"]["params"]["bits"] == 15
    assert pca[0]["config"]["size_param"] == "bits"
    # the third-party evaluator's record holds both evaluators' metrics
    (probe,) = read_records(work / "probe-results")
    assert set(probe["metrics"]) == {"voc07_linear", "centroid_probe"}


def test_readme_lines_are_all_known():
    """Fast guard: every README line has a small-scale form (or a reason not to run)."""
    for line in readme_lines():
        if any(line.startswith(skip) for skip in NOT_RUN) or "pytest benchmarks" in line:
            continue
        small_scale(line)

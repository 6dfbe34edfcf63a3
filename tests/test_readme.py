"""Every command line README and docs/ show runs (at a small scale), and the stages equal the run.

The command lines are read from the ``bash`` blocks of README and of every page in docs/
(and the ``$ `` lines of their ``console`` blocks), not copied here, so a command added to
a page is run by this test. Long-running lines get small-scale options appended
(``SMALL``: few clips, one epoch, a few evaluator iterations), the same ones in the
stage-by-stage path and in ``harness run``; lines that need the network or the user's own
files run against inputs made here (audio files, AudioSet lists and a stand-in yt-dlp that
writes generated videos). A batch for other processes or machines (``--launcher local`` or
``slurm``) is planned with ``--dry-run``, not run: tests/test_launchers.py runs the
launchers. A line this test does not know how to run at a small scale fails it, so no page
can show a command no one has run.

README's lines run first, in one folder, as a newcomer would type them. Each docs page then
runs in that folder as README left it, sharing its cache: a reader who has followed README
(the folder is put back before each page, at the same path and with the same file times,
which caches and resumable runs are keyed on). A code block this test cannot run (it needs
a GPU, SLURM, the network, VOC2007 or hours) says so in the page, in an HTML comment right
above it that the rendered page does not show; its harness lines must still parse::

    <!-- not run: needs a GPU -->

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
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))

#: small-scale changes, by the start of a line: (options replaced, options appended); each
#: replaced option is a regular expression, which a README line must contain. The rest of
#: the scale comes from small profiles (``small_profile``), which both the stage commands
#: and ``harness run`` read, as they read the real ones.
SMALL: list[tuple[str, dict[str, str], list[str]]] = [
    ("harness data toy ", {r"--clips \d+": "--clips 48"}, []),
    ("harness data toy-voc ", {}, []),
    ("harness data ingest ", {}, []),
    ("harness data audioset ", {}, ["--backoff", "0"]),
    ("harness data info ", {}, []),
    ("harness features ", {}, []),
    ("harness label ", {}, []),
    # the paper profile's learning-rate trial: its 224-px epochs cut to one
    ("harness pretrain --profile paper ", {"--epochs 5": "--epochs 1"}, []),
    ("harness pretrain ", {}, []),
    ("harness eval ", {}, []),
    ("harness run ", {}, []),
    # a sweep's grid is cut to its first k and seed (both representations stay)
    # rows over worlds: random and MFCC on two small worlds (4 runs), as written
    ("harness sweep --init random ", {"--world-seed 0 --world-seed 1": "--world-seed 0 --world-seed 1"}, []),
    ("harness sweep ", {"--k 5 --k 15 --k 30": "--k 5", "--seed 0 --seed 1": "--seed 0"}, []),
    ("harness leaderboard", {}, []),
    ("harness figures ", {}, []),
    ("harness plugins", {}, []),
]


def small_profile(monkeypatch) -> None:
    """The toy profile at test size: 48 clips, a 160 + 120 image VOC, one pretext epoch,
    two evaluator iterations; the paper profile likewise (its image size kept)."""
    from dataclasses import replace

    from harness import profiles

    for name in ("toy", "paper"):
        profile = profiles.PROFILES[name]
        monkeypatch.setitem(profiles.PROFILES, name, replace(
            profile, toy_clips=48, toy_voc_images=(160, 120), pretext_epochs=1,
            evaluation=replace(profile.evaluation, head_iterations=2, all_iterations=2)))


#: lines that are not run, and why (each is covered elsewhere)
NOT_RUN = {
    "python3.11 -m venv .venv": "creates the environment this suite runs in",
    ".venv/bin/pip install -e '.[test]'": "installs the package this suite tests",
    ".venv/bin/python -m pytest": "is this test suite",
    ".venv/bin/pip install -e '.[": "installs optional extras from the package index",
    "pip install -e '.[": "installs optional extras from the package index",
    "tensorboard --logdir": "serves the logs until it is stopped",
}

#: a code block's commands are not run, for the reason this HTML comment right above it gives
NOT_RUN_MARK = re.compile(r"<!-- not run: (.*?) -->\n$")


def block_lines(block: str, *, console: bool = False) -> list[str]:
    """Command lines of one code block: ``\\`` continuations joined, comment lines dropped,
    ``NAME="..."`` lines substituted for ``$NAME``, ``NAME=value`` settings in front of a
    command dropped (this test sets the environment), `a && b` is two, `# or: cmd` comments
    too; in a ``console`` block only the lines after a ``$ `` prompt."""
    lines, variables = [], {}
    for raw in re.sub(r"\\\n\s*", " ", block).splitlines():
        if console:
            if not raw.startswith("$ "):
                continue
            raw = raw[2:]
        if raw.lstrip().startswith("#"):
            continue
        command, _, comment = raw.partition("  #")
        words = shlex.split(command)
        if len(words) == 1 and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            name, value = words[0].split("=", 1)
            variables[name] = value
            continue
        command = re.sub(r"^\s*(?:[A-Z_]+=\S+\s+)+", "", command)
        for name, value in variables.items():
            command = command.replace(f"${name}", value)
        extra = re.match(r"\s*or:\s*(harness .*)", comment)
        for part in [*command.split("&&"), *([extra.group(1)] if extra else [])]:
            if part.strip():
                lines.append(part.strip())
    return lines


def readme_lines() -> list[str]:
    """Command lines of README's bash blocks; `a && b` is two; `# or: cmd` comments too."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        lines += block_lines(block)
    return lines


def page_lines(page: Path) -> list[tuple[str, str | None]]:
    """(command line, why it is not run or None) for each line of a page's ``bash`` and
    ``console`` blocks."""
    text = page.read_text(encoding="utf-8")
    lines = []
    for block in re.finditer(r"^```(bash|console)\n(.*?)^```", text, re.S | re.M):
        mark = NOT_RUN_MARK.search(text, 0, block.start())     # only a mark right above
        marked = mark is not None and mark.end() == block.start()
        why = mark.group(1).strip() if marked else None
        assert not marked or why, f"{page.name}: a not-run mark without a reason"
        lines += [(line, why) for line in block_lines(block.group(2),
                                                      console=block.group(1) == "console")]
    return lines


def small_scale(line: str, *, strict: bool = True) -> list[str]:
    """The argv (after ``harness``) of ``line`` at the test's scale. ``strict``: the line is
    README's, and must contain every option SMALL replaces in it."""
    line = line.removeprefix(".venv/bin/")
    assert line.startswith("harness"), f"{line!r} is not a harness command"
    words = shlex.split(line)
    launcher = words[words.index("--launcher") + 1] if "--launcher" in words else "inline"
    if launcher != "inline" and "--dry-run" not in words:    # planned here, not launched
        words.append("--dry-run")
    if "--dry-run" in words:                                 # runs nothing: as written
        return words[1:]
    for prefix, replace, append in SMALL:
        if line == prefix.strip() or line.startswith(prefix):
            for old, new in replace.items():
                assert not strict or re.search(old, line), \
                    f"README line changed: {line!r} lacks {old!r}"
                line = re.sub(old, new, line)
            return shlex.split(line)[1:] + append
    raise AssertionError(f"{line!r}: this test does not know how to run it at a small "
                         "scale: add it to SMALL or NOT_RUN, or mark its block not run")


# ----------------------------------------------------------------------------- inputs
def _inputs(work: Path) -> dict[str, str]:
    """What the lines name but no page can ship: audio files, AudioSet CSVs and a stand-in
    yt-dlp (as in test_audioset). Returns extra environment variables."""
    import soundfile as sf

    from tests.test_audioset import CSV, FAKE, PLAN

    rng = np.random.default_rng(0)
    for name in ("a.wav", "b.flac", "clip1.wav", "clip2.flac"):
        sf.write(work / name, 0.1 * rng.standard_normal(22050 * 4), 22050)
    rows = [r for r in CSV.splitlines() if r.startswith("#") or r.startswith("-okvideo001")]
    for name in ("balanced_train_segments.csv", "unbalanced_train_segments.csv"):
        (work / name).write_text("\n".join(rows) + "\n")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "yt-dlp"
    exe.write_text(FAKE.format(python=sys.executable, repo=str(REPO)))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    (work / "plan.json").write_text(json.dumps(PLAN))
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_YTDLP_PLAN": str(work / "plan.json"), "FAKE_YTDLP_LOG": str(work / "calls.log")}


def _install_example(tmp: Path, example: str) -> Path:
    """pip-install one of examples/ (no dependencies) into a private folder."""
    target = tmp / f"site-{Path(example).name}"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target),
                    str(REPO / "examples" / Path(example).name)], check=True, cwd=tmp)
    return target


def _collect_benchmarks(line: str) -> None:
    """The benchmark suites collect (running them is long)."""
    cmd = shlex.split(line.removeprefix(".venv/bin/python "))
    proc = subprocess.run([sys.executable, *cmd, "--collect-only", "-q"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"{line}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"


# ----------------------------------------------------------------------------- README
@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """README's command lines, run in order in one folder at the small scale, on one thread.
    Returns the folder, the environment they ran in and the lines that ran."""
    import torch

    from harness.api.registry import default_registry
    from harness.cli import app

    root = tmp_path_factory.mktemp("readme")
    work = root / "work"
    work.mkdir()
    runner, ran = CliRunner(), []
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(work)
        env = {"HARNESS_CACHE": str(root / "cache"), **_inputs(work)}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        small_profile(monkeypatch)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)           # the same threads for both paths (determinism)
        try:
            for line in readme_lines():
                if "pytest benchmarks" in line:
                    _collect_benchmarks(line)
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
                    monkeypatch.syspath_prepend(str(_install_example(root, "harness-centroid-probe")))
                    default_registry.cache_clear()
                    argv += ["--results", "probe-results"]
                result = runner.invoke(app, argv)
                assert result.exit_code == 0, f"{line} -> {argv}\n{result.output[-3000:]}"
                ran.append(line)
        finally:
            torch.set_num_threads(threads)
            default_registry.cache_clear()
    shutil.copytree(work, root / "as-readme-left-it", symlinks=True)
    return SimpleNamespace(root=root, work=work, env=env, ran=ran)


def _as_readme_left_it(readme_run) -> Path:
    """README's folder put back as README's lines left it (same path, same file times)."""
    shutil.rmtree(readme_run.work)
    shutil.copytree(readme_run.root / "as-readme-left-it", readme_run.work, symlinks=True)
    return readme_run.work


def test_every_readme_command_runs_and_the_stages_equal_the_run(readme_run):
    from harness.results.records import read_records

    work, ran = _as_readme_left_it(readme_run), readme_run.ran
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


# ----------------------------------------------------------------------------- docs/
def _runs_as(line: str) -> str:
    """How this test runs a docs line: "skip" (NOT_RUN), "install" (an example plugin),
    "python" (a Python one-liner, in a subprocess) or "harness"."""
    if any(line.startswith(skip) for skip in NOT_RUN):
        return "skip"
    if re.fullmatch(r"pip install \./examples/[\w.-]+", line):
        return "install"
    if line.startswith("python -c "):
        return "python"
    small_scale(line, strict=False)
    return "harness"


@pytest.mark.parametrize("page", DOCS, ids=[page.stem for page in DOCS])
def test_every_command_of_a_docs_page_runs(page, readme_run, tmp_path, monkeypatch):
    """The page's lines, in order, in README's folder as README left it, with its cache."""
    import torch

    from harness.api.registry import default_registry
    from harness.cli import app

    lines = [line for line, why in page_lines(page) if why is None]
    if not lines:
        pytest.skip(f"docs/{page.name} shows no command that runs here")
    work = _as_readme_left_it(readme_run)
    monkeypatch.chdir(work)
    for key, value in readme_run.env.items():
        monkeypatch.setenv(key, value)
    small_profile(monkeypatch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    runner = CliRunner()
    try:
        for line in lines:
            how = _runs_as(line)
            if how == "install":
                monkeypatch.syspath_prepend(str(_install_example(tmp_path, line.split()[-1])))
                default_registry.cache_clear()
            elif how == "python":
                proc = subprocess.run([sys.executable, *shlex.split(line)[1:]], cwd=work,
                                      capture_output=True, text=True)
                assert proc.returncode == 0, f"{page.name}: {line}\n{proc.stderr[-3000:]}"
            elif how == "harness":
                argv = small_scale(line, strict=False)
                result = runner.invoke(app, argv)
                assert result.exit_code == 0, \
                    f"{page.name}: {line} -> {argv}\n{result.output[-3000:]}"
    finally:
        torch.set_num_threads(threads)
        default_registry.cache_clear()


def _parses(argv: list[str]) -> None:
    """``argv`` (after ``harness``) names a command and options the CLI has: parsed by
    click, nothing run."""
    import typer.main

    from harness.cli import app

    cmd, name, rest, ctx = typer.main.get_command(app), "harness", list(argv), None
    while hasattr(cmd, "get_command"):                      # a command group
        ctx = cmd.context_class(cmd, info_name=name, parent=ctx)
        name, rest = rest[0], rest[1:]
        cmd = cmd.get_command(ctx, name)
        assert cmd is not None, f"no command {name!r} in {argv}"
    cmd.make_context(name, rest, parent=ctx)               # raises on an unknown option


def test_every_docs_line_is_known_or_marked_not_run():
    """Fast guard: every command line of docs/ has a small-scale form, a reason not to run
    in NOT_RUN, or sits in a block marked not run with its reason; a harness line that is
    not run (``torchrun ... -m harness`` too) still parses with the CLI."""
    for page in DOCS:
        for line, why in page_lines(page):
            if why is None:
                _runs_as(line)
                continue
            words = shlex.split(line.removeprefix(".venv/bin/"))
            if "harness" in words:
                start = words.index("harness")
                if start == 0 or words[start - 1] == "-m":
                    _parses(words[start + 1:])

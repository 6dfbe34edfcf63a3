"""Launchers: a sweep run by worker processes or SLURM jobs gives the records inline gives;
a job that dies leaves no record, is reported with its log, and --skip-recorded completes
the sweep; two jobs needing one cache entry never compute it at once."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from harness.launch import BatchFailed, LaunchOptions, launch
from harness.pipeline.config import RunConfig
from harness.pipeline.sweep import sweep

#: a tiny sound run: two of them take a few seconds each on one thread
TINY = dict(backbone="timm:test_resnet", toy_clips=24, toy_voc_images=(120, 80), epochs=1,
            eval_params={"iterations": 3}, progress=False, evaluators=("voc07_linear",))


def _base(results: Path) -> RunConfig:
    return RunConfig(**TINY, results=results)


def _figures(value):
    """A record's metrics without what differs between two caches by design: wall-clock
    timings and the paths of cache files."""
    if isinstance(value, dict):
        return {k: _figures(v) for k, v in value.items() if k != "timings"}
    if isinstance(value, list):
        return [_figures(v) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        return "<path>"
    return value


def _metrics_by_seed(results: Path) -> dict[int, dict]:
    out = {}
    for path in sorted(results.glob("*.json")):
        record = json.loads(path.read_text())
        out[record["config"]["seed"]] = _figures(record["metrics"])
    return out


def _with_toy_data(cache: Path, source: Path) -> Path:
    """A fresh cache holding only the toy world's data of ``source`` (no computed stage)."""
    cache.mkdir(parents=True, exist_ok=True)
    if (source / "toy").is_dir() and not (cache / "toy").exists():
        shutil.copytree(source / "toy", cache / "toy")
    return cache


@pytest.fixture(scope="module")
def inline_records(tmp_path_factory):
    """The tiny sweep (k=4, seeds 0 and 1) run inline on one thread, in its own cache."""
    from threadpoolctl import threadpool_limits

    from harness.runtime.devices import torch_threads

    root = tmp_path_factory.mktemp("inline")
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_CACHE", str(root / "cache"))
    mp.setenv("HARNESS_CPUS", "1")
    try:
        with torch_threads(1), threadpool_limits(1):
            sweep(_base(root / "results"), ["mfcc"], [4], [TINY["backbone"]], [0, 1],
                  echo=lambda line: None)
    finally:
        mp.undo()
    return root


def test_local_jobs_write_the_same_records_as_inline_on_one_thread(inline_records, tmp_path,
                                                                    monkeypatch):
    cache = _with_toy_data(tmp_path / "cache", inline_records / "cache")
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    results = tmp_path / "results"
    lines: list[str] = []
    options = LaunchOptions("local", jobs=2, threads_per_job=1, job_dir=tmp_path / "jobs",
                            live=False)
    done = sweep(_base(results), ["mfcc"], [4], [TINY["backbone"]], [0, 1], echo=lines.append,
                 execute=lambda configs, ls: launch(configs, ls, options, echo=lines.append))
    assert len(done) == 2 and all(r.path.parent == results for r in done)
    expected = _metrics_by_seed(inline_records / "results")
    assert sorted(expected) == [0, 1]
    assert _metrics_by_seed(results) == expected        # bit-identical metrics
    # each job ran in its own process, and the status lines followed it to the end
    logs = sorted((tmp_path / "jobs").glob("*.log"))
    assert len(logs) == 2 and all("record: " in p.read_text() for p in logs)
    assert sum(": done (" in line for line in lines) == 2
    assert "2 of 2 runs finished" in lines


def _kill_when_evaluating(job_dir: Path, stop: threading.Event, killed: list) -> None:
    """Kill the first job (seed 2) with SIGKILL once it is evaluating: its record is not
    written yet."""
    while not stop.is_set():
        for state in job_dir.glob("001-*.state.json"):
            try:
                data = json.loads(state.read_text())
            except (OSError, ValueError):
                continue
            if data.get("stage") == "voc07_linear":
                os.kill(data["pid"], signal.SIGKILL)
                killed.append(state.name)
                return
        time.sleep(0.05)


@pytest.mark.slow
def test_a_killed_job_leaves_no_record_is_reported_and_skip_recorded_completes(tmp_path):
    results, job_dir = tmp_path / "results", tmp_path / "jobs"
    base = _base(results)
    options = LaunchOptions("local", jobs=2, threads_per_job=1, job_dir=job_dir, live=False)
    execute = lambda configs, ls: launch(configs, ls, options, echo=lines.append)  # noqa: E731
    lines: list[str] = []
    stop, killed = threading.Event(), []
    watcher = threading.Thread(target=_kill_when_evaluating, args=(job_dir, stop, killed))
    watcher.start()
    try:
        with pytest.raises(BatchFailed) as failure:
            sweep(base, ["mfcc"], [4], [TINY["backbone"]], [2, 3], echo=lines.append,
                  execute=execute)
    finally:
        stop.set()
        watcher.join()
    assert killed, "the job was never seen evaluating"
    message = str(failure.value)
    log = next(job_dir.glob("001-*.log"))
    assert "1 of 2 runs failed" in message and "seed=2" in message
    assert "killed by SIGKILL" in message and str(log) in message and log.is_file()
    assert failure.value.exit_code == 1
    assert sorted(_metrics_by_seed(results)) == [3]     # no record, not even a part, for 2
    assert not list(results.glob("*.tmp")) and not list(results.glob(".*"))

    lines.clear()
    job_dir = tmp_path / "jobs-again"
    options = replace(options, job_dir=job_dir)
    done = sweep(base, ["mfcc"], [4], [TINY["backbone"]], [2, 3], echo=lines.append,
                 skip_recorded=True, execute=execute)
    assert [r.record["config"]["seed"] for r in done] == [2]
    assert sorted(_metrics_by_seed(results)) == [2, 3]
    assert len(list(job_dir.glob("*.log"))) == 1         # only the missing run ran


_HOLDER = """
import sys, time
from pathlib import Path
from harness.runtime.cache_lock import entry_lock
entry, ready = Path(sys.argv[1]), Path(sys.argv[2])
with entry_lock(entry):
    ready.write_text("holding")
    time.sleep(1.5)
    entry.mkdir(parents=True)
    (entry / "done").write_text("computed once")
"""


def test_a_second_job_waits_for_the_cache_entry_another_is_computing(tmp_path, monkeypatch):
    from harness.runtime.cache import cache_root
    from harness.runtime.cache_lock import entry_lock

    entry, ready = cache_root() / "features" / f"features-{tmp_path.name}", tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(entry), str(ready)])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        said: list[str] = []
        with entry_lock(entry, say=said.append):
            # the other process finished the entry before this one got the lock
            assert (entry / "done").read_text() == "computed once"
        assert said == [f"waiting for another job that computes {entry.name}"]
    finally:
        holder.wait(timeout=60)
    assert holder.returncode == 0


def test_a_lock_is_not_held_by_a_job_that_died(tmp_path):
    from harness.runtime.cache import cache_root
    from harness.runtime.cache_lock import entry_lock

    entry = cache_root() / "pretrain" / f"pretrain-{tmp_path.name}"
    code = ("import os, sys; from harness.runtime.cache_lock import entry_lock\n"
            "with entry_lock(sys.argv[1]): os._exit(3)")
    assert subprocess.run([sys.executable, "-c", code, str(entry)]).returncode == 3
    said: list[str] = []
    with entry_lock(entry, say=said.append):
        pass
    assert said == []                                   # taken at once


def test_the_slurm_dry_run_lists_the_sbatch_parameters(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    out = CliRunner().invoke(app, [
        "sweep", "--k", "4", "--seed", "0", "--seed", "1", "--launcher", "slurm",
        "--slurm-partition", "gpu", "--slurm-time", "1:30:00", "--slurm-cpus", "4",
        "--slurm-gpus", "1", "--slurm-mem", "16G", "--slurm-param", "constraint=a100",
        "--dry-run", "--results", str(tmp_path / "results")])
    assert out.exit_code == 0, out.output
    assert ("would submit 2 SLURM jobs, one per run (submitit) with: --time=90 --nodes=1 "
            "--ntasks-per-node=1 --job-name=harness --partition=gpu --cpus-per-task=4 "
            "--gpus-per-node=1 --mem=16G --constraint=a100") in out.output
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").iterdir())


def test_a_bad_launcher_option_is_one_line_and_exit_2(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    out = CliRunner().invoke(app, ["sweep", "--launcher", "slurm", "--slurm-param", "oops",
                                   "--dry-run", "--results", str(tmp_path)])
    assert out.exit_code == 2
    assert "error: --slurm-param 'oops': expected KEY=VALUE" in out.output
    out = CliRunner().invoke(app, ["sweep", "--jobs", "2", "--dry-run", "--results",
                                   str(tmp_path)])
    assert out.exit_code == 2 and "error: --jobs 2: inline runs one run at a time" in out.output


def _slurm_answers() -> str | None:
    """Why the slurm tests cannot run here, or None when a cluster answers."""
    if shutil.which("sinfo") is None:
        return "no SLURM here (sinfo not found; tests/slurm/start-cluster starts one)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                             timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    if out.returncode != 0 or not out.stdout.strip():
        return f"sinfo did not answer: {(out.stderr or out.stdout).strip()[:200]}"
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed (pip install 'harness[slurm]')"
    return None


@pytest.mark.slurm
def test_slurm_jobs_write_the_same_records_as_inline(inline_records, tmp_path, monkeypatch):
    why = _slurm_answers()
    if why:
        pytest.skip(why)
    from harness.launch.slurm import SlurmOptions

    cache = _with_toy_data(tmp_path / "cache", inline_records / "cache")
    monkeypatch.setenv("HARNESS_CACHE", str(cache))      # the jobs inherit the environment
    results, job_dir = tmp_path / "results", tmp_path / "jobs"
    lines: list[str] = []
    options = LaunchOptions("slurm", threads_per_job=1, job_dir=job_dir, live=False,
                            slurm=SlurmOptions(cpus=1, time_min=10))
    done = sweep(_base(results), ["mfcc"], [4], [TINY["backbone"]], [0, 1], echo=lines.append,
                 execute=lambda configs, ls: launch(configs, ls, options, echo=lines.append))
    assert len(done) == 2
    assert _metrics_by_seed(results) == _metrics_by_seed(inline_records / "results")
    assert any(line.startswith("submitted 2 SLURM jobs") for line in lines)
    # each job's stdout and stderr are in the job folder
    assert len(list((job_dir / "slurm").glob("*/*_log.out"))) == 2
    assert len(list((job_dir / "slurm").glob("*/*_log.err"))) == 2


def _doc_sweeps() -> list[list[list[str]]]:
    """The ``harness sweep`` commands of docs/batches.md's leaderboard section, as argv, one
    list per code block (the oracle world's, then the realistic world's)."""
    import shlex

    doc = (Path(__file__).resolve().parents[1] / "docs" / "batches.md").read_text()
    section = doc.split("## The committed leaderboard", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for found in re.finditer(r"```bash\n(.*?)```", section, re.S):
        variables, commands = {}, []
        for line in found.group(1).replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if re.fullmatch(r"[A-Z]+=.*", line):
                name, value = line.split("=", 1)
                variables[name] = shlex.split(value)[0]
                continue
            for name, value in variables.items():
                line = line.replace(f"${name}", value)
            commands.append(shlex.split(line))
        blocks.append(commands)
    return blocks


def test_the_docs_sweeps_find_every_committed_record_and_nothing_missing():
    """Every run the docs' sweeps list, for the oracle world and the realistic one, is
    recorded, and every committed record is found by exactly one of them."""
    from typer.testing import CliRunner

    from harness.cli import app

    board = Path(__file__).resolve().parents[1] / "leaderboards" / "results"
    oracle, realistic = _doc_sweeps()
    assert len(oracle) == 4 and len(realistic) == 3
    held: list[str] = []
    for argv in [*oracle, *realistic]:
        assert argv[:2] == ["harness", "sweep"]
        assert "--dry-run" in argv and argv[argv.index("--results") + 1] == "leaderboards/results"
        argv = [str(board) if a == "leaderboards/results" else a for a in argv[1:]]
        out = CliRunner().invoke(app, argv)
        assert out.exit_code == 0, out.output
        assert "refused" not in out.output
        assert ": to run" not in out.output, out.output
        held += re.findall(r"recorded as (\S+)", out.output)
    assert sorted(held) == sorted(p.stem for p in board.glob("*.json"))   # each once


@pytest.mark.slow
@pytest.mark.slurm
def test_two_slurm_tasks_train_the_pretext_like_torchrun(tmp_path, monkeypatch):
    why = _slurm_answers()
    if why:
        pytest.skip(why)
    from harness.launch.jobs import Job
    from harness.launch.slurm import SlurmOptions
    from harness.launch.worker import thread_env

    config = replace(_base(tmp_path / "torchrun-results"), k=4, seed=0)
    # torchrun: two processes on this machine, each the worker of the same specification
    job = Job(1, "torchrun", config, tmp_path / "torchrun-jobs", threads=1)
    env = {**os.environ, **thread_env(1), "HARNESS_CACHE": str(tmp_path / "torchrun-cache")}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", "-m", "harness.launch.worker",
                           str(job.write_spec())], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert job.read_result()
    torchrun = json.loads(job.record.read_text())

    # the same run as one SLURM job of two tasks
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "slurm-cache"))
    options = LaunchOptions("slurm", threads_per_job=1, job_dir=tmp_path / "slurm-jobs",
                            live=False, slurm=SlurmOptions(cpus=1, tasks_per_node=2,
                                                           time_min=10))
    (result,) = launch([replace(config, results=tmp_path / "slurm-results")], ["ddp run"],
                       options, echo=lambda line: None)
    slurm = result.record
    assert torchrun["pretext"]["runtime"]["world_size"] == 2    # the record says who trained
    assert slurm["pretext"]["runtime"]["world_size"] == 2
    assert _figures(slurm["metrics"]) == _figures(torchrun["metrics"])
    learned = lambda r: {k: v for k, v in r["pretext"]["final"].items()   # noqa: E731
                         if "loss" in k or "accuracy" in k}
    assert learned(slurm) == learned(torchrun) and learned(slurm)
    assert len(list((tmp_path / "slurm-results").glob("*.json"))) == 1   # rank 0 alone writes


def test_slurm_time_reads_as_sbatch_reads_it():
    from harness.api.errors import BadInputError
    from harness.launch.slurm import parse_time

    assert [parse_time(t) for t in ("90", "1:30", "1:30:00", "2-12", "1-00:00:00", "0-1:05")] \
        == [90, 2, 90, 3600, 1440, 65]
    for bad in ("", "1h", "0", "-5", "1:2:3:4"):
        with pytest.raises(BadInputError, match="--slurm-time"):
            parse_time(bad)


@pytest.mark.slurm
def test_a_failed_slurm_job_is_reported_with_its_stderr_and_leaves_no_record(tmp_path):
    why = _slurm_answers()
    if why:
        pytest.skip(why)
    from harness.launch.slurm import SlurmOptions

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    results, job_dir = tmp_path / "results", tmp_path / "jobs"
    # the job's own environment points its cache at a file: the run refuses it in the job
    options = LaunchOptions("slurm", threads_per_job=1, job_dir=job_dir, live=False,
                            slurm=SlurmOptions(cpus=1, time_min=10,
                                               setup=[f"export HARNESS_CACHE={blocker}"]))
    with pytest.raises(BatchFailed) as failure:
        sweep(_base(results), ["mfcc"], [4], [TINY["backbone"]], [0], echo=lambda line: None,
              execute=lambda configs, ls: launch(configs, ls, options, echo=lambda line: None))
    message = str(failure.value)
    (stderr,) = (job_dir / "slurm").glob("*/*_log.err")
    assert "1 of 1 runs failed" in message and f"log: {stderr}" in message
    assert "is a file, not a cache folder" in message
    assert "is a file, not a cache folder" in stderr.read_text()
    assert not results.exists() or not list(results.iterdir())

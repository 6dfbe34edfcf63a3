"""Refusals before the compute, upper bounds that say what they protect, no leftovers.

Each refusal is checked as a user meets it: exit code 2, one ``error:`` line naming the
option or file, and nothing written (no output, no cache entry, no partial folder).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.api.errors import BadInputError
from tests.test_reliability import _children, _gone, make_clips  # /proc helpers, clips
from tests.test_tamper_evidence import refused

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent


def invoke(*args, env: dict[str, str] | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def cache_dir() -> Path:
    return Path(os.environ["HARNESS_CACHE"])


def cache_files() -> set[str]:
    """Every file under this test run's cache folder (to see that nothing was added)."""
    root = cache_dir()
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.is_dir() else set()


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*.partial"))


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder no file can be created in, even by root: ``chattr +i`` (immutable) as root,
    mode 0555 otherwise; skipped where neither holds."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() == 0:
        made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        undo = ["chattr", "-i", str(folder)]
    else:
        folder.chmod(0o555)
        made, undo = subprocess.CompletedProcess([], 0), None
    try:
        if made.returncode != 0:
            pytest.skip(f"cannot make a read-only folder here: {made.stderr.decode().strip()}")
        try:
            (folder / "probe").write_text("x")
        except OSError:
            pass
        else:
            pytest.skip("a read-only folder is still writable here")
        yield folder
    finally:
        if undo is not None:
            subprocess.run(undo, capture_output=True)
        folder.chmod(0o755)


# ----------------------------------------------------------------------------- partial folders


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_a_toy_generation_killed_with_sigkill_leaves_nothing_after_the_next_one(tmp_path):
    parent = tmp_path / "data"
    parent.mkdir()
    env = {**os.environ, "HARNESS_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "data", "toy", "--out",
                             str(parent / "ds"), "--clips", "5000", "--jobs", "2"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            written = list(parent.glob(".ds.*.partial/frames/*/*.png"))
            workers = _children(proc.pid)
            if len(written) >= 20 and workers:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the generation ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = partials(parent)
    assert left and left[0].startswith(f".ds.{proc.pid}-"), left    # the kill's leftover
    # its worker processes end with it, so none goes on writing into the folder
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(_gone(w) for w in workers):
        time.sleep(0.2)
    assert all(_gone(w) for w in workers), workers
    # the next toy dataset written into that folder removes what the killed one left
    result = invoke("data", "toy", "--out", parent / "other", "--clips", 2, "--jobs", 1)
    assert result.exit_code == 0, result.output
    assert partials(parent) == [] and sorted(p.name for p in parent.iterdir()) == ["other"]


def test_partial_folders_of_writers_that_are_gone_are_removed_by_the_next_write(tmp_path):
    from harness.runtime.io import UNNAMED_TEMP_AGE_S

    out = tmp_path / "voc"
    out.mkdir()
    dead = out / f".VOC2007.{dead_pid()}-k2j4x9ab.partial"
    (dead / "JPEGImages").mkdir(parents=True)
    (dead / "JPEGImages" / "000001.jpg").write_bytes(b"half an image")
    live = out / f".VOC2007.{os.getppid()}-live0000.partial"     # a writer still running
    live.mkdir()
    old = out / ".VOC2007.q8w_e2r7.partial"         # an older harness's name, no pid
    (old / "Annotations").mkdir(parents=True)
    long_ago = time.time() - 2 * UNNAMED_TEMP_AGE_S
    for folder in (old / "Annotations", old):
        os.utime(folder, (long_ago, long_ago))
    recent = out / ".VOC2007.a1b2c3d4.partial"      # no pid, but still being written
    recent.mkdir()
    result = invoke("data", "toy-voc", "--out", out, "--trainval", 2, "--test", 1,
                    "--jobs", 1)
    assert result.exit_code == 0, result.output
    assert partials(out) == sorted([live.name, recent.name])
    assert (out / "VOC2007" / "toy.json").is_file()


def test_a_toy_dataset_removes_dead_partials_of_other_datasets_in_its_folder(tmp_path):
    dead = tmp_path / f".ds.{dead_pid()}-abcdef12.partial"
    (dead / "frames" / "000").mkdir(parents=True)
    other_name_no_pid = tmp_path / ".mine.zz9y8x7w.partial"     # not ours to judge: kept
    other_name_no_pid.mkdir()
    result = invoke("data", "toy", "--out", tmp_path / "new", "--clips", 2, "--jobs", 1)
    assert result.exit_code == 0, result.output
    assert partials(tmp_path) == [other_name_no_pid.name]


# ----------------------------------------------------------------------------- upper bounds
def test_toy_clips_that_would_not_fit_on_disk_are_refused_before_anything_is_written(tmp_path):
    start = time.monotonic()
    line = refused(invoke("data", "toy", "--out", tmp_path / "big", "--clips", 1_000_000_000),
                   "--clips 1000000000", "on disk", "free in")
    assert "TB" in line or "PB" in line
    assert time.monotonic() - start < 30
    assert list(tmp_path.iterdir()) == []


def test_toy_voc_images_that_would_not_fit_on_disk_are_refused(tmp_path):
    refused(invoke("data", "toy-voc", "--out", tmp_path / "voc", "--trainval", 1_000_000_000),
            "--trainval + --test", "on disk")
    assert list(tmp_path.iterdir()) == []


def test_a_frame_store_larger_than_the_disk_is_refused_before_training(tmp_path):
    data = make_clips(tmp_path / "clips")
    before = cache_files()
    refused(invoke("pretrain", "--backbone", "alexnet", "--labels", tmp_path / "l.npy",
                   "--data", data, "--out", tmp_path / "run", "--image-size", 1_000_000),
            "--image-size 1000000", "frame store of 4 clips", "on disk")
    assert not (tmp_path / "run").exists() and cache_files() == before


def test_a_batch_larger_than_the_memory_is_refused_before_training(tmp_path):
    data = make_clips(tmp_path / "clips")
    refused(invoke("pretrain", "--backbone", "alexnet", "--labels", tmp_path / "l.npy",
                   "--data", data, "--out", tmp_path / "run", "--image-size", 2000,
                   "--batch-size", 100_000_000),
            "--batch-size 100000000 with --image-size 2000", "of memory")
    assert not (tmp_path / "run").exists()


def test_run_with_a_batch_larger_than_the_memory_is_refused_before_any_stage(tmp_path):
    before = cache_files()
    refused(invoke("run", "--batch-size", 10**12, "--results", tmp_path / "r", "--no-progress"),
            "--batch-size 1000000000000", "of memory")
    assert cache_files() == before and not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- sweeps
def test_a_sweep_with_one_impossible_k_is_refused_before_its_first_run(tmp_path):
    before = cache_files()
    result = invoke("sweep", "--k", 5, "--k", 1_000_000_000, "--results", tmp_path / "r",
                    "--no-progress")
    line = refused(result, "1 of 2 runs", "--k 1000000000", "none was started")
    assert "<= 100000" in line
    assert "k=1000000000" in result.stdout and "refused: --k 1000000000" in result.stdout
    assert cache_files() == before and not (tmp_path / "r").exists()


def test_a_dry_run_lists_a_refused_run_as_refused(tmp_path):
    result = invoke("sweep", "--k", 5, "--k", 1_000_000_000, "--results", tmp_path / "r",
                    "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].endswith("k=5 backbone=alexnet seed=0 world_seed=0: to run")
    assert "k=1000000000" in lines[1] and ": refused: --k 1000000000: " in lines[1]


def test_a_labeler_size_above_the_clip_count_is_refused_before_any_run(tmp_path):
    data = make_clips(tmp_path / "clips", n=4)
    before = cache_files()
    result = invoke("sweep", "--clips", data, "--k", 3, "--k", 5, "--results", tmp_path / "r",
                    "--no-progress")
    refused(result, "--k 5", "(k=5) than the 4 clips")
    assert cache_files() == before and not (tmp_path / "r").exists()
    refused(invoke("run", "--clips", data, "--labeler-param", "k=9", "--results",
                   tmp_path / "r", "--no-progress"), "--labeler-param k=9", "4 clips")


def test_check_run_accepts_every_run_of_a_valid_sweep(tmp_path):
    from harness.pipeline.checks import check_run
    from harness.pipeline.config import RunConfig
    from harness.pipeline.sweep import sweep_configs

    base = RunConfig(results=tmp_path / "r", clips=make_clips(tmp_path / "clips", n=4))
    configs = sweep_configs(base, ["mfcc"], [2, 4], ["alexnet"], [0, 1],
                            inits=("sound", "random", "supervised"))
    counts: dict[Path, int] = {}
    for config in configs:
        check_run(config, counts)
    assert list(counts.values()) == [4] and not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- read-only outputs
def test_run_with_a_read_only_results_folder_is_refused_before_any_stage(read_only_folder,
                                                                          tmp_path):
    before = cache_files()
    for results in (read_only_folder, read_only_folder / "results"):
        refused(invoke("run", "--results", results, "--no-progress"),
                f"--results {results}", "cannot write")
    refused(invoke("sweep", "--k", 5, "--results", read_only_folder, "--no-progress"),
            "cannot write")
    assert cache_files() == before


def test_eval_out_in_a_read_only_folder_is_refused_before_evaluating(read_only_folder,
                                                                     tmp_path):
    before = cache_files()
    for option in ("--out", "--scores-out"):
        target = read_only_folder / "metrics.json"
        refused(invoke("eval", "--checkpoint", "random:alexnet", option, target),
                f"{option} {target}", "cannot write")
    assert cache_files() == before


def test_toy_voc_into_a_read_only_folder_is_refused_before_generating(read_only_folder):
    refused(invoke("data", "toy-voc", "--out", read_only_folder / "voc"),
            f"--out {read_only_folder / 'voc'}", "cannot write")


def test_probe_writable_creates_nothing_and_refuses_a_file_in_the_path(tmp_path):
    from harness.runtime.bounds import probe_writable

    probe_writable(tmp_path / "new" / "deeper", "--results")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInputError, match="is not a folder"):
        probe_writable(tmp_path / "file" / "sub", "--results")


# ----------------------------------------------------------------------------- bad options
def test_out_that_is_a_file_is_refused_by_toy_voc_and_audioset(tmp_path):
    a_file = tmp_path / "out"
    a_file.write_text("mine")
    refused(invoke("data", "toy-voc", "--out", a_file), f"--out {a_file}", "is a file")
    csv = tmp_path / "segments.csv"
    csv.write_text("abcdefghijk, 30.000, 40.000, \"/m/09x0r\"\n")
    refused(invoke("data", "audioset", "--csv", csv, "--out", a_file), f"--out {a_file}",
            "is a file")
    refused(invoke("data", "toy-voc", "--out", a_file / "sub"), "is a file")
    assert a_file.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == [
        "out", "segments.csv"]


def test_negative_threads_are_refused_naming_the_option(tmp_path):
    refused(invoke("pretrain", "--backbone", "alexnet", "--labels", tmp_path / "l.npy",
                   "--data", tmp_path, "--out", tmp_path / "run", "--threads", -1),
            "--threads -1")
    assert not (tmp_path / "run").exists()


def test_an_unknown_plugin_kind_is_refused_listing_the_kinds():
    line = refused(invoke("plugins", "--kind", "nonsense"), "--kind 'nonsense'")
    for kind in ("repr", "labeler", "backbone", "evaluator"):
        assert kind in line
    assert invoke("plugins", "--kind", "labeler").exit_code == 0


# ----------------------------------------------------------------------------- evaluation cache
def test_a_truncated_cached_metrics_file_is_recomputed_and_said_so(tmp_path):
    from harness.pipeline import eval_stage as pipeline
    from harness.api.interfaces import EvalMetrics, Evaluator
    from harness.profiles import get_profile

    class FileCount(Evaluator):
        """Counts the files of the downstream folder (and how often it was asked)."""

        name = "file_count"
        calls = 0

        def params(self):
            return {}

        def evaluate(self, model, data_root, context):
            FileCount.calls += 1
            n = float(len(list(Path(data_root).iterdir())))
            return EvalMetrics(headline="files", formula="count", value=n,
                               breakdown={"all": n}, protocol={})

    data = tmp_path / "data"
    data.mkdir()
    (data / "a").write_text("x")
    args = (FileCount(), None, data, "voc-key", "model-key", get_profile("toy"), 0, "cpu",
            False)
    lines: list[str] = []
    first, _ = pipeline.evaluate(*args, echo=lines.append)
    assert FileCount.calls == 1 and first["value"] == 1.0 and lines == []
    cached = list(cache_dir().glob("eval/*/metrics.json"))
    entry = next(p for p in cached if json.loads(p.read_text()).get("headline") == "files")
    entry.write_text(entry.read_text()[:20])      # as a disk-full or killed copy leaves it
    again, _ = pipeline.evaluate(*args, echo=lines.append)
    assert FileCount.calls == 2 and again == first
    assert len(lines) == 1 and "damaged evaluation cache entry" in lines[0]
    assert str(entry) in lines[0] and "recomputing" in lines[0]
    assert json.loads(entry.read_text()) == first       # the entry is whole again
    pipeline.evaluate(*args, echo=lines.append)
    assert FileCount.calls == 2 and len(lines) == 1

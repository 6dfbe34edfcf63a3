"""No lost or stale data, no silent fallback, exit 2 for bad input.

Each test is named for the guarantee it checks; docs/guarantees.md names them. Each is
small and runs in the default suite.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from typer.testing import CliRunner

from harness.cli import app
from harness.data.clips import ClipDataset, write_dataset
from harness.api.errors import BadInputError

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent


def invoke(*args, env: dict[str, str] | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def one_line_exit_2(result, *words: str) -> str:
    """The result failed with exit code 2 and one ``error:`` line holding every word."""
    assert result.exit_code == 2, result.output
    err = result.stderr.strip().splitlines()
    assert err and "Traceback" not in result.stderr, result.stderr
    for w in words:
        assert w in result.stderr, result.stderr
    return err[-1]


def make_clips(root: Path, n: int = 4, rate: int = 1000, seconds: float = 0.5) -> Path:
    """A clip dataset of ``n`` noise WAVs and PNG frames."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "frames").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        wave = np.random.default_rng(i).normal(0, 0.1, int(rate * seconds)).astype(np.float32)
        sf.write(root / f"audio/{i:03d}.wav", wave, rate, subtype="FLOAT")
        Image.new("RGB", (16, 16), (i * 40 % 255, 80, 0)).save(root / f"frames/{i:03d}.png")
        rows.append({"clip_id": f"c{i:03d}", "video": "synthetic", "timestamp": 1.0 + i,
                     "frame": f"frames/{i:03d}.png", "audio": f"audio/{i:03d}.wav",
                     "sample_rate": rate})
    write_dataset(root, rows, {"source": "test"})
    return root


def _meanstd():
    """A tiny representation (mean, std, max of the window) for fast feature tests."""
    from harness.api.interfaces import SoundRepresentation

    class MeanStd(SoundRepresentation):
        name = "meanstd"
        sample_rate = 1000
        clip_seconds = 0.5
        dim = 3

        def params(self):
            return {}

        def compute(self, waveforms, *, dtype=np.float32, device="cpu"):
            self.validate(waveforms)
            return np.stack([waveforms.mean(1), waveforms.std(1), waveforms.max(1)], 1).astype(dtype)

    return MeanStd()


# ----------------------------------------------------------------------------- ingest
def test_ingest_refuses_a_folder_it_did_not_create(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"not decoded: the folder is refused first")
    copy = make_clips(tmp_path / "copy", n=3)
    manifest = (copy / "manifest.csv").read_bytes()
    line = one_line_exit_2(invoke("data", "ingest", "--videos", videos, "--out", copy),
                           str(copy), "refusing to overwrite")
    assert "not started by `harness data ingest`" in line
    assert (copy / "manifest.csv").read_bytes() == manifest and not (copy / ".ingest").exists()


def test_ingest_refuses_a_dataset_of_other_videos(tmp_path):
    from harness.data.ingest import STATE_DIR, IngestConfig

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"x")
    ds = make_clips(tmp_path / "ds", n=2)
    (ds / STATE_DIR).mkdir()
    (ds / STATE_DIR / "config.json").write_text(json.dumps(
        {**asdict(IngestConfig()), "videos": str(tmp_path / "elsewhere")}))
    one_line_exit_2(invoke("data", "ingest", "--videos", videos, "--out", ds), "videos")
    assert len(ClipDataset(ds)) == 2


def test_ingest_with_no_clip_is_an_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_exit_2(invoke("data", "ingest", "--videos", empty, "--out", tmp_path / "a"),
                    "no video files")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.mp4").write_bytes(b"\0" * 4096)
    out = tmp_path / "b"
    one_line_exit_2(invoke("data", "ingest", "--videos", broken, "--out", out),
                    "none of 1 video(s) gave a clip")
    assert not (out / "manifest.csv").exists()


def test_skip_bad_with_every_clip_bad_is_an_error(tmp_path):
    from harness.labels.sound_features import DatasetSource, FeatureOptions, compute_features

    root = make_clips(tmp_path / "ds", n=3)
    for wav in (root / "audio").glob("*.wav"):
        sf.write(wav, np.zeros(500, np.float32) * np.nan, 1000, subtype="FLOAT")
    with pytest.raises(BadInputError, match="all 3 clip"):
        compute_features(_meanstd(), DatasetSource(ClipDataset(root)),
                         FeatureOptions(skip_bad=True, workers=0, progress=False))


# ----------------------------------------------------------------------------- pairs
def test_labels_and_sidecar_are_written_as_one_pair(tmp_path, monkeypatch):
    from harness.api.interfaces import Labels
    from harness.labels.pseudo_labels import read_labels, sidecar_path, write_labels
    from harness.pretext.data import read_labels as read_for_training

    path = tmp_path / "labels.npy"
    write_labels(path, Labels(np.arange(10) % 5, "classes", 5), {"labeler": "old"})
    real_replace = os.replace

    def sidecar_fails(src, dst):
        if str(dst).endswith(".json"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", sidecar_fails)
    with pytest.raises(OSError):
        write_labels(path, Labels(np.arange(10) % 3, "classes", 3), {"labeler": "new"})
    monkeypatch.setattr(os, "replace", real_replace)
    labels, meta = read_labels(path)                      # the old pair, whole
    assert labels.num_outputs == 5 and labels.values.max() == 4 and meta["labeler"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.json", "labels.npy"]

    # a crash between the two renames: new values beside the old sidecar
    np.save(path, np.arange(10) % 3)
    with pytest.raises(BadInputError, match="describes other values"):
        read_labels(path)
    with pytest.raises(BadInputError, match="describes other values"):
        read_for_training(path)
    assert sidecar_path(path).is_file()


def test_a_features_matrix_that_no_longer_matches_its_sidecar_is_refused(tmp_path):
    from harness.labels.feature_matrix import FeatureMatrix, sidecar_path
    from harness.runtime.io import check_pair

    m = FeatureMatrix(np.ones((2, 3), np.float32), np.arange(2), [], 2, "r", {}, "float32", "k")
    meta_path = m.save(tmp_path / "f.npy")
    check_pair(tmp_path / "f.npy", meta_path, json.loads(meta_path.read_text()))
    np.save(tmp_path / "f.npy", np.zeros((2, 3), np.float32))
    with pytest.raises(BadInputError, match="describes other values"):
        check_pair(tmp_path / "f.npy", meta_path, json.loads(sidecar_path(tmp_path / "f.npy").read_text()))


# ----------------------------------------------------------------------------- cache keys
def test_a_replaced_wav_is_not_served_from_the_cache(tmp_path):
    from harness.labels.sound_features import DatasetSource, FeatureOptions, compute_features

    root = make_clips(tmp_path / "ds", n=3)
    opts = FeatureOptions(workers=0, progress=False)
    first = compute_features(_meanstd(), DatasetSource(ClipDataset(root)), opts)
    assert first.features.shape == (3, 3)
    time.sleep(0.01)
    sf.write(root / "audio/001.wav", np.full(500, np.nan, np.float32), 1000, subtype="FLOAT")
    with pytest.raises(BadInputError, match="001.wav"):
        compute_features(_meanstd(), DatasetSource(ClipDataset(root)), opts)


def test_a_replaced_frame_is_not_served_from_the_frame_cache(tmp_path):
    from harness.data.framestore import frame_store

    root = make_clips(tmp_path / "ds", n=3)
    frame_store(ClipDataset(root), 16, progress=False)
    time.sleep(0.01)
    (root / "frames/002.png").write_bytes(b"\x89PNG corrupt")
    with pytest.raises(BadInputError, match="002.png"):
        frame_store(ClipDataset(root), 16, progress=False)


def test_cache_key_follows_size_and_mtime_but_the_record_fingerprint_does_not(tmp_path):
    root = make_clips(tmp_path / "ds", n=2)
    before = ClipDataset(root)
    key, fingerprint = before.cache_key(), before.fingerprint()
    os.utime(root / "audio/000.wav", ns=(1, 1))
    after = ClipDataset(root)
    assert after.fingerprint() == fingerprint and after.cache_key() != key


# ----------------------------------------------------------------------------- overrides
def test_epochs_and_lr_overrides_are_used_or_refused(tmp_path):
    from harness.pipeline.config import RunConfig

    assert RunConfig(epochs=3, lr=0.5).resolved_profile().pretext_epochs == 3
    assert RunConfig(epochs=3, lr=0.5).resolved_profile().pretext_lr == 0.5
    for kw in ({"epochs": 0}, {"lr": 0.0}, {"lr": -1.0}):
        with pytest.raises(BadInputError):
            RunConfig(**kw)
    results = tmp_path / "r"
    one_line_exit_2(invoke("run", "--epochs", "0", "--results", results), "--epochs")
    one_line_exit_2(invoke("run", "--lr", "0", "--results", results), "--lr")
    assert not results.exists()


# ----------------------------------------------------------------------------- leaderboard
def test_leaderboard_from_no_records_keeps_the_tables(tmp_path):
    from harness.results import records

    from .test_records import make

    board, results = tmp_path / "board", tmp_path / "results"
    for init in ("random", "sound"):
        records.write_record(make(init), results)
    assert invoke("leaderboard", "--results", results, "--out", board).exit_code == 0
    before = sorted(p.name for p in board.iterdir())
    assert len(before) > 1                       # a table page besides the index
    (tmp_path / "empty").mkdir()
    one_line_exit_2(invoke("leaderboard", "--results", tmp_path / "empty", "--out", board),
                    "refusing to delete")
    assert sorted(p.name for p in board.iterdir()) == before


def test_leaderboard_does_not_overwrite_a_file_it_did_not_write(tmp_path):
    out = tmp_path / "docs"
    out.mkdir()
    (out / "README.md").write_text("my notes\n")
    one_line_exit_2(invoke("leaderboard", "--results", REPO / "leaderboards/results",
                           "--out", out), "refusing to overwrite")
    assert (out / "README.md").read_text() == "my notes\n"


# ----------------------------------------------------------------------------- kills
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temporaries_of_killed_writers_are_removed_on_the_next_write(tmp_path):
    from harness.runtime.io import remove_stale_temps_in, save_torch

    stale = tmp_path / f".last.pt.{_dead_pid()}-0badc0de.tmp"
    live = tmp_path / f".last.pt.{os.getppid()}-0000beef.tmp"     # a writer still running
    stale.write_bytes(b"half a checkpoint")
    live.write_bytes(b"being written")
    old = tmp_path / ".last.pt.k3x9q_2a.tmp"        # an older harness's name, no pid
    old.write_bytes(b"left long ago")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    save_torch(tmp_path / "last.pt", {"x": 1})
    assert not stale.exists() and not old.exists() and live.exists()
    other = tmp_path / f".metrics.jsonl.{_dead_pid()}-12345678.tmp"
    other.write_text("x")
    assert remove_stale_temps_in(tmp_path) == 1 and not other.exists() and live.exists()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found += [int(c) for c in text.split()]
    return found


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status or "\nState:\tX" in status


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_the_audio_loading_worker_dies_with_its_parent(tmp_path):
    # the parent computes features with one loading worker, whose load never returns (as a
    # read that hangs); the module-level patch reaches the worker under fork and spawn alike
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import time

        import numpy as np

        import harness.labels.audio_sources
        from harness.labels.sound_features import DatasetSource, FeatureOptions, compute_features
        from harness.api.interfaces import SoundRepresentation

        harness.labels.audio_sources.load_audio = lambda path, rate: time.sleep(3600)

        class Rep(SoundRepresentation):
            name, sample_rate, clip_seconds, dim = "r", 1000, 0.5, 1
            def params(self): return {}
            def compute(self, w, *, dtype=np.float32, device="cpu"): return w[:, :1]

        class Clip:
            audio = "hangs.wav"

        class Data:
            clips = [Clip(), Clip()]
            root = "hangs"
            def fingerprint(self): return "hangs"
            def cache_key(self): return "hangs"

        if __name__ == "__main__":
            compute_features(Rep(), DatasetSource(Data()), FeatureOptions(
                workers=1, batch_size=1, cache=False, progress=False, device="cpu"))
    """))
    parent = subprocess.Popen([sys.executable, str(script)], cwd=REPO)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not workers and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.2)
            workers = _children(parent.pid)
        assert workers, "the loader never started its worker"
        time.sleep(1.0)             # the worker is now inside its endless load
        # short-lived helpers the parent may start (e.g. a CPU probe) are not the worker
        workers = [w for w in _children(parent.pid) if not _gone(w)]
        assert parent.poll() is None and workers, "no loading worker alive in its load"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while not all(_gone(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_gone(w) for w in workers), f"orphaned worker(s) {workers}"
    finally:
        parent.kill()
        for w in workers:
            if not _gone(w):
                os.kill(w, signal.SIGKILL)


# ----------------------------------------------------------------------------- NaN records
def test_a_record_with_nan_is_refused_naming_the_file(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    src = sorted((REPO / "leaderboards/archive").glob("*.json"))[0]
    record = json.loads(src.read_text())
    record["metrics"]["voc07_linear"]["map"] = float("nan")
    (results / src.name).write_text(json.dumps(record))
    one_line_exit_2(invoke("leaderboard", "--results", results, "--out", tmp_path / "out"),
                    src.name, "is nan")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- --results
def test_a_results_path_that_is_a_file_is_refused_before_any_stage(tmp_path):
    results = tmp_path / "results"
    results.write_text("a file")
    cache = Path(os.environ["HARNESS_CACHE"])
    toy_before = sorted((cache / "toy").iterdir()) if (cache / "toy").is_dir() else []
    start = time.monotonic()
    one_line_exit_2(invoke("run", "--results", results), "--results", "is a file")
    assert time.monotonic() - start < 30
    assert (sorted((cache / "toy").iterdir()) if (cache / "toy").is_dir() else []) == toy_before


# ----------------------------------------------------------------------------- label input
@pytest.mark.parametrize("case, message", [
    ("oned", "shape [N, D]"), ("structured", "holds numbers"), ("empty", "is empty"),
    ("huge", "header claims 1000000 x 1000000 values"),
])
def test_label_refuses_unusable_matrices(tmp_path, case, message):
    path = tmp_path / f"{case}.npy"
    if case == "oned":
        np.save(path, np.arange(5.0))
    elif case == "structured":
        np.save(path, np.zeros(3, dtype=[("a", "f4"), ("b", "f4")]))
    elif case == "empty":
        path.write_bytes(b"")
    else:
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
            f.write(b"\0" * 64)
    one_line_exit_2(invoke("label", path), str(path), message)


# ----------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("param, message", [
    ("n_mfcc=abc", "parameter n_mfcc must be an integer"),
    ("clip_seconds=nan", "parameter clip_seconds must be a number"),
    ("n_fft=1000000000", "parameter n_fft must be <= 65536"),
    ("hop_length=0", "parameter hop_length must be >= 1"),
    ("center=3", "parameter center must be true or false"),
])
def test_plugin_parameters_are_checked_and_named(tmp_path, param, message):
    one_line_exit_2(invoke("features", "--repr", "mfcc", "-p", param, "--out", tmp_path / "f.npy",
                           tmp_path / "missing.wav"), message)


def test_every_plugin_kind_is_checked_from_its_declared_types():
    from harness.api.registry import default_registry

    reg = default_registry()
    for kind, name, params, message in [
        ("labeler", "kmeans", {"k": "many"}, "parameter k must be an integer"),
        ("labeler", "pca_binary", {"bits": 10**9}, "parameter bits must be <= 4096"),
        ("backbone", "alexnet", {"dropout": "high"}, "parameter dropout must be a number"),
        ("evaluator", "voc07_linear", {"iterations": 0}, "parameter iterations must be >= 1"),
        ("repr", "sound_texture", {"chunk_rows": "x"}, "parameter chunk_rows must be an integer"),
        ("repr", "mfcc", {"win_length": 10**9}, "parameter win_length must be <= 65536"),
        ("backbone", "timm:resnet18", {"img_size": 10**6}, "parameter img_size must be <= 8192"),
    ]:
        with pytest.raises(BadInputError, match=message):
            reg.create(kind, name, **params)
    assert reg.create("labeler", "kmeans", k=4.0).k == 4          # 4.0 is the integer 4


@pytest.mark.parametrize("num_outputs, message", [
    ("5", "num_outputs must be an integer"), (10**9, "must lie in"),
])
def test_hand_made_label_sidecars_are_checked(tmp_path, num_outputs, message):
    from harness.pretext.data import read_labels

    np.save(tmp_path / "l.npy", np.arange(6) % 3)
    (tmp_path / "l.json").write_text(json.dumps({"kind": "classes", "num_outputs": num_outputs}))
    with pytest.raises(BadInputError, match=message):
        read_labels(tmp_path / "l.npy")


# ----------------------------------------------------------------------------- seeds
@pytest.mark.parametrize("command", [
    ["label", "f.npy"], ["run"], ["eval", "--checkpoint", "random:alexnet"],
    ["pretrain", "--backbone", "alexnet", "--labels", "l.npy", "--data", "d", "--out", "o"],
])
def test_negative_seed_is_refused_by_every_command(tmp_path, command):
    result = invoke(*command, "--seed", "-1")
    assert result.exit_code == 2 and "--seed" in result.output, result.output
    assert "Traceback" not in result.output


# ----------------------------------------------------------------------------- outputs
def test_output_paths_that_are_folders_or_files_are_refused(tmp_path, monkeypatch):
    from harness.pretext.config import PretrainConfig

    feats = tmp_path / "f.npy"
    np.save(feats, np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32))
    folder = tmp_path / "folder"
    folder.mkdir()
    one_line_exit_2(invoke("label", "--k", "2", "--out", folder, feats), str(folder),
                    "is a directory")
    one_line_exit_2(invoke("eval", "--checkpoint", "random:alexnet", "--voc", tmp_path,
                           "--out", folder), str(folder), "is a directory")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(BadInputError, match="is a file, not a run folder"):
        PretrainConfig(backbone="alexnet", labels=feats, data=tmp_path, out=a_file)
    one_line_exit_2(invoke("label", "--k", "2", feats, env={"HARNESS_CACHE": str(a_file)}),
                    "$HARNESS_CACHE", "is a file")


# ----------------------------------------------------------------------------- checkpoints
class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def test_an_unpickling_checkpoint_is_refused_with_its_reason(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "harness-checkpoint/1", "payload": _Evil()}, path)
    line = one_line_exit_2(invoke("eval", "--checkpoint", path, "--voc", tmp_path), str(path))
    assert "GLOBAL posix.system" in line and "refused" in line
    assert "weights_only` set to `False" not in line and "Re-running" not in line


def test_a_checkpoint_with_impossible_fields_is_refused(tmp_path):
    from harness.networks.checkpoint import read_checkpoint

    base = {"format": "harness-checkpoint/1", "backbone": "alexnet", "backbone_params": {},
            "num_outputs": 5, "output_kind": "classes", "input_size": 64,
            "mean": [0.5] * 3, "std": [0.2] * 3, "model": {}, "meta": {}}
    torch.save(base, tmp_path / "ok.pt")
    assert read_checkpoint(tmp_path / "ok.pt")["input_size"] == 64
    for field, value in [("input_size", -5), ("num_outputs", 0), ("std", [0.0, 1.0, 1.0]),
                         ("output_kind", "soft")]:
        path = tmp_path / f"{field}.pt"
        torch.save({**base, field: value}, path)
        with pytest.raises(BadInputError, match=f"{field} "):
            read_checkpoint(path)


# ----------------------------------------------------------------------------- exit codes
def test_unknown_or_blocked_plugins_and_parameters_exit_2(tmp_path):
    one_line_exit_2(invoke("features", "--repr", "nope", tmp_path / "a.wav"), "unknown repr 'nope'")
    one_line_exit_2(invoke("features", "--repr", "mfcc", "-p", "bogus=1", tmp_path / "a.wav"),
                    "unknown parameter 'bogus'")
    one_line_exit_2(invoke("run", "--repr", "nope", "--results", tmp_path / "r"), "unknown repr")
    one_line_exit_2(invoke("run", "--backbone", "nope", "--results", tmp_path / "r"),
                    "unknown backbone")
    one_line_exit_2(invoke("eval", "--evaluator", "nope", "--checkpoint", "random:alexnet"),
                    "unknown evaluator")
    one_line_exit_2(invoke("features", "--repr", "mfcc", tmp_path / "a.wav",
                           env={"HARNESS_BLOCK_PLUGINS": "repr:mfcc"}), "blocked")


# ----------------------------------------------------------------------------- leftovers
def test_files_are_written_with_the_umask_mode(tmp_path):
    from harness.runtime.io import save_torch, write_json
    from harness.labels.pseudo_labels import write_labels
    from harness.api.interfaces import Labels

    umask = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"a": 1})
        save_torch(tmp_path / "b.pt", {"b": 1})
        write_labels(tmp_path / "l.npy", Labels(np.arange(4) % 2, "classes", 2), {})
    finally:
        os.umask(umask)
    for name in ("a.json", "b.pt", "l.npy", "l.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_a_finished_evaluation_leaves_no_training_state(tmp_path):
    """The VOC07 evaluator removes its resumable state once the test scores are written
    (the ~432 MB train-state.pt of an AlexNet); the scores file stays."""
    from harness.api.interfaces import EvalContext
    from harness.api.registry import default_registry
    from harness.api.testing import make_tiny_voc, tiny_model

    voc = make_tiny_voc(tmp_path / "voc")
    work = tmp_path / "work"
    work.mkdir()
    ev = default_registry().create("evaluator", "voc07_linear", iterations=3)
    metrics = ev.evaluate(tiny_model(), voc, EvalContext(profile="toy", seed=0, device="cpu",
                                                         work_dir=work, progress=False))
    assert not list(work.rglob("train-state.pt"))
    assert Path(metrics.details["scores_file"]).is_file()

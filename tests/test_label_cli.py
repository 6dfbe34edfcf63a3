"""``harness label``: files written, cache, diagnosis, ground truth, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from harness.cli import app
from harness.labels.pseudo_labels import read_labels, sidecar_path


#: a cache per test (conftest.py; progress bars are off for every test there)
pytestmark = pytest.mark.usefixtures("own_cache")


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def feature_file(tmp_path: Path, n_per: int = 40, centres: int = 3, seed: int = 0,
                 name: str = "feats.npy") -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(centres), n_per)
    x = (rng.normal(0, 10, size=(centres, 5))[truth] + rng.normal(size=(len(truth), 5)))
    path = tmp_path / name
    np.save(path, (x * np.logspace(-1, 2, 5)).astype(np.float32))
    return path, truth


def test_label_writes_labels_sidecar_and_diagnosis(tmp_path):
    feats, truth = feature_file(tmp_path)
    truth_csv = tmp_path / "truth.csv"
    truth_csv.write_text("clip_id,scene\n" + "".join(f"c{i},s{t}\n" for i, t in enumerate(truth)))
    out = tmp_path / "labels.npy"
    res = invoke("label", "--labeler", "kmeans", "--k", "3", "--out", out, feats, "--truth", truth_csv)
    assert res.exit_code == 0, res.output
    labels, meta = read_labels(out)
    assert labels.values.dtype == np.int64 and labels.values.shape == (120,)
    assert meta["kind"] == "classes" and meta["num_outputs"] == 3 and meta["labeler"] == "kmeans"
    assert meta["params"]["k"] == 3 and meta["params"]["seed"] == 0
    assert meta["diagnostics"]["truth"]["scene"]["nmi"] == pytest.approx(1.0)
    assert "inertia" in res.output and "vs truth 'scene': nmi 1.000, purity 1.000" in res.output
    assert res.output.count("#") >= 3                     # the size histogram
    # same command again: same labels, from the cache
    again = invoke("label", "--k", "3", "--out", tmp_path / "b.npy", feats, "--truth", truth_csv)
    assert again.exit_code == 0 and "from the cache" in again.output
    assert np.array_equal(np.load(tmp_path / "b.npy"), labels.values)


def test_param_and_seed_reach_the_labeler(tmp_path):
    feats, _ = feature_file(tmp_path)
    out = tmp_path / "l.npy"
    res = invoke("label", feats, "--k", "4", "--seed", "5", "-p", "preprocess=l2",
                 "-p", "n_init=2", "--out", out)
    assert res.exit_code == 0, res.output
    params = json.loads(sidecar_path(out).read_text())["params"]
    assert params == {**params, "k": 4, "seed": 5, "preprocess": "l2", "n_init": 2}


def test_pca_binary_takes_k_as_bits(tmp_path):
    feats, _ = feature_file(tmp_path)
    out = tmp_path / "bits.npy"
    res = invoke("label", "--labeler", "pca_binary", "--k", "4", "--out", out, feats)
    assert res.exit_code == 0, res.output
    labels, meta = read_labels(out)
    assert labels.values.shape == (120, 4) and labels.values.dtype == np.uint8
    assert meta["kind"] == "bits" and meta["num_outputs"] == 4 and meta["params"]["bits"] == 4
    assert "bits 4" in res.output


@pytest.mark.parametrize("case, message", [
    ("nan", "NaN or Inf"),
    ("few", "fewer than k=5"),
    ("constant", "constant"),
    ("k1", "parameter k must be >= 2"),
    ("unreadable", "cannot read a feature matrix"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, case, message):
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    k = "5"
    if case == "nan":
        x[4, 1] = np.nan
    elif case == "few":
        x = x[:3]
    elif case == "constant":
        x[:] = 1.0
    elif case == "k1":
        k = "1"
    feats = tmp_path / "f.npy"
    np.save(feats, x)
    if case == "unreadable":
        feats.write_bytes(b"not numpy")
    out = tmp_path / "out.npy"
    res = invoke("label", "--k", k, "--out", out, feats)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]
    if case in ("nan", "few", "constant", "unreadable"):
        assert str(feats) in lines[-1]
    assert "Traceback" not in res.output
    assert not out.exists() and not sidecar_path(out).exists()
    assert not (tmp_path / "cache" / "labels").exists() or not any((tmp_path / "cache" / "labels").iterdir())


def test_truth_csv_with_wrong_row_count(tmp_path):
    feats, _ = feature_file(tmp_path)
    truth_csv = tmp_path / "t.csv"
    truth_csv.write_text("scene\na\nb\n")
    res = invoke("label", feats, "--k", "3", "--truth", truth_csv)
    assert res.exit_code == 2 and "2 rows of ground truth for 120 feature rows" in res.output


# --------------------------------------------------------------------------- clip datasets
def tiny_dataset(root: Path, per_scene: int = 8) -> None:
    """Two 'scenes' that sound unalike: a low hum and a high whistle, with noise."""
    import soundfile as sf

    from harness.data.clips import write_dataset

    rng = np.random.default_rng(0)
    rate, seconds = 21_000, 3.75
    t = np.arange(int(round(rate * seconds))) / rate
    rows = []
    for i in range(2 * per_scene):
        scene = ("hum", "whistle")[i % 2]
        pitch = (150.0, 3000.0)[i % 2] * rng.uniform(0.95, 1.05)
        wave = 0.3 * np.sin(2 * np.pi * pitch * t) + 0.02 * rng.normal(size=t.size)
        sf.write(root / f"a{i}.wav", wave.astype(np.float32), rate, subtype="FLOAT")
        Image.new("RGB", (8, 8), (i * 10, 0, 0)).save(root / f"f{i}.png")
        rows.append({"clip_id": f"c{i}", "video": "v", "timestamp": float(i), "frame": f"f{i}.png",
                     "audio": f"a{i}.wav", "sample_rate": rate, "scene": scene,
                     "objects": "dog" if i % 2 else "car;dog"})
    write_dataset(root, rows, {"source": "test"})


def test_label_a_clip_dataset_computes_features_and_scores_truth(tmp_path):
    data = tmp_path / "clips"
    data.mkdir()
    tiny_dataset(data)
    out = tmp_path / "labels.npy"
    res = invoke("label", "--data", data, "--repr", "mfcc", "--k", "2", "--out", out)
    assert res.exit_code == 0, res.output
    labels, meta = read_labels(out)
    assert labels.values.shape == (16,)
    truth = meta["diagnostics"]["truth"]
    assert truth["scene"]["nmi"] == pytest.approx(1.0)
    assert truth["objects"]["values"] == 2             # multi-valued column, scored per value
    assert "vs truth 'objects'" in res.output


def test_features_file_with_dataset_truth_must_match(tmp_path):
    data = tmp_path / "clips"
    data.mkdir()
    tiny_dataset(data, per_scene=4)
    feats, _ = feature_file(tmp_path, n_per=3, centres=3)          # 9 rows for 8 clips
    res = invoke("label", feats, "--data", data, "--k", "2")
    assert res.exit_code == 2 and "8 clips do not match the 9 feature rows" in res.output

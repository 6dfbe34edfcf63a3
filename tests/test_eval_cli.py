"""``harness eval``: metrics JSON, per-image scores CSV, one-line errors with no metrics file."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from typer.testing import CliRunner

from harness.cli import app
from harness.data.voc import CLASSES

runner = CliRunner()
pytest.importorskip("harness.networks.checkpoint", reason="the checkpoint loader is not written yet")


#: every test here runs torch on one thread (the fixture is in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


#: Images per split of the ``voc_root`` fixture (tests/conftest.py) in this module.
VOC_IMAGES_PER_SPLIT = {"train": 20, "val": 20, "test": 20}


def _eval(*args: str):
    return runner.invoke(app, ["eval", "--no-progress", "--device", "cpu", *args])


def _one_line_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("error:")
    for w in words:
        assert w in err, err


def test_eval_random_alexnet_writes_metrics_and_recomputable_scores(voc_root, tmp_path):
    out, scores = tmp_path / "m.json", tmp_path / "s.csv"
    result = _eval("--evaluator", "voc07_linear", "--checkpoint", "random:alexnet", "--voc",
                   str(voc_root), "--iterations", "2", "--out", str(out),
                   "--scores-out", str(scores))
    assert result.exit_code == 0, result.output
    assert "map" in result.stdout and "aeroplane" in result.stdout and "ap_voc07_11pt" in result.stdout
    m = json.loads(out.read_text())
    assert set(m) == {"headline", "formula", "value", "breakdown", "protocol", "details"}
    d = m["details"]
    assert d["evaluator"] == "voc07_linear" and d["model"]["origin"] == "random"
    assert d["bn_recomputed"] is True and m["protocol"]["preset"] == "krahenbuhl"
    assert d["split_trained"] == "trainval" and d["split_tested"] == "test"
    assert set(m["breakdown"]) == set(CLASSES)
    # a random: network gets the profile's backbone parameters, as in `harness run`
    assert d["model"]["backbone_params"]["fc_units"] == 1024
    # anyone can recompute Table 1's AP from the scores file
    with scores.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20 and {r["split"] for r in rows} == {"test"}
    assert {r["trained_on"] for r in rows} == {"trainval"}
    for c in CLASSES:
        y = np.array([int(r[f"label_{c}"]) for r in rows])
        s = np.array([float(r[f"score_{c}"]) for r in rows])
        keep = y >= 0
        ap = 100 * average_precision_score(y[keep], s[keep] - 1e-5 * y[keep])
        assert ap == pytest.approx(m["breakdown"][c], abs=1e-9)


def test_eval_refuses_a_checkpoint_for_another_backbone(voc_root, tmp_path):
    out = tmp_path / "m.json"
    result = _eval("--checkpoint", "random:alexnet", "--backbone", "resnet18", "--voc",
                   str(voc_root), "--iterations", "1", "--out", str(out))
    _one_line_error(result, "random:alexnet", "'alexnet'", "'resnet18'")
    assert not out.exists()


def _saved_checkpoint(path: Path, backbone: str, *, declare: str | None = None) -> Path:
    """A checkpoint file holding a random ``backbone``'s weights, declared as ``declare``."""
    from harness.networks.checkpoint import load_pretrained, save_checkpoint

    model = load_pretrained(f"random:{backbone}", seed=0)
    declared = load_pretrained(f"random:{declare or backbone}", seed=0).backbone
    save_checkpoint(path, backbone_name=declare or backbone, backbone=declared,
                    net=model.net, output_kind="classes", image_size=64,
                    mean=model.backbone.mean, std=model.backbone.std, meta={"origin": "pretext"})
    return path


def test_eval_checkpoint_file_of_another_backbone(voc_root, tmp_path):
    ckpt = _saved_checkpoint(tmp_path / "r18.pt", "resnet18")
    out = tmp_path / "m.json"
    result = _eval("--checkpoint", str(ckpt), "--backbone", "alexnet", "--voc", str(voc_root),
                   "--out", str(out))
    _one_line_error(result, "r18.pt", "'resnet18'", "'alexnet'")
    # weights of one backbone in a file that claims another
    liar = _saved_checkpoint(tmp_path / "liar.pt", "resnet18", declare="alexnet")
    result = _eval("--checkpoint", str(liar), "--voc", str(voc_root), "--out", str(out))
    _one_line_error(result, "liar.pt", "do not fit backbone 'alexnet'")
    assert not out.exists()


def test_eval_broken_checkpoint_file_is_one_line(voc_root, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "m.json"
    result = _eval("--checkpoint", str(bad), "--voc", str(voc_root), "--out", str(out))
    assert result.exit_code != 0 and not out.exists()
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "bad.pt" in err


@pytest.mark.parametrize("damage, words", [
    ("split", ("test.txt", "missing split file")),
    ("image", ("000021.jpg", "missing image")),
    ("positives", ("'cow'", "no positive image", "'test'")),
])
def test_eval_bad_voc_folder_is_one_line_and_no_metrics(voc_root, tmp_path, damage, words):
    voc = Path(shutil.copytree(voc_root, tmp_path / "voc")) / "VOC2007"
    if damage == "split":
        (voc / "ImageSets/Main/test.txt").unlink()
    elif damage == "image":
        (voc / "JPEGImages/000021.jpg").unlink()
    else:
        test_ids = (voc / "ImageSets/Main/test.txt").read_text().split()
        for image_id in test_ids:
            xml = voc / "Annotations" / f"{image_id}.xml"
            xml.write_text(xml.read_text().replace("<name>cow</name>", "<name>sheep</name>"))
    out, scores = tmp_path / "m.json", tmp_path / "s.csv"
    result = _eval("--checkpoint", "random:alexnet", "--voc", str(voc), "--iterations", "1",
                   "--out", str(out), "--scores-out", str(scores))
    _one_line_error(result, *words)
    assert not out.exists() and not scores.exists()


def test_eval_unknown_evaluator_and_preset(voc_root):
    result = _eval("--evaluator", "nope", "--checkpoint", "random:alexnet", "--voc", str(voc_root))
    assert result.exit_code != 0 and "voc07_linear" in result.stderr
    result = _eval("--preset", "nope", "--checkpoint", "random:alexnet", "--voc", str(voc_root))
    assert result.exit_code != 0 and "krahenbuhl" in result.stderr


def test_eval_defaults_to_the_profiles_toy_voc(tmp_path, monkeypatch):
    """Without --voc, `harness eval` uses the toy VOC `harness run` uses (the profile's size)."""
    from dataclasses import replace

    from harness import profiles

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(profiles.PROFILES, "toy",
                        replace(profiles.PROFILES["toy"], toy_voc_images=(160, 120)))
    out = tmp_path / "m.json"
    result = _eval("--checkpoint", "random:alexnet", "--iterations", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    m = json.loads(out.read_text())
    assert m["details"]["n_train"] == 160 and m["details"]["n_test"] == 120
    assert m["protocol"]["profile"] == "toy"
    # the per-image test scores beside it, in a record's sidecar format
    from harness.results.scores import parse_npz

    sidecar = tmp_path / "m.scores.npz"
    (scores,) = parse_npz(sidecar.read_bytes(), sidecar).values()
    assert scores.split == "test" and scores.scores.shape == (120, 20)


def test_the_default_toy_voc_is_the_one_harness_run_uses(monkeypatch, tmp_path):
    import harness.pipeline.data_stage
    from harness.cli.evaluate import default_toy_voc

    calls = []
    monkeypatch.setattr(harness.pipeline.data_stage, "toy_voc",
                        lambda *args, **kwargs: calls.append((args, kwargs)) or tmp_path)
    from harness.pipeline.data_stage import toy_test_seed
    from harness.profiles import get_profile

    assert default_toy_voc(get_profile("toy"), progress=False) == tmp_path
    (world_seed, images, progress), kwargs = calls[0]
    assert images == get_profile("toy").toy_voc_images and progress is False
    # the sealed test split of world 0, as `harness run` draws it
    assert kwargs["test_seed"] == toy_test_seed(get_profile("toy"), world_seed)
    assert kwargs["test_seed"] == get_profile("toy").toy_test_seed + world_seed

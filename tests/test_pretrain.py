"""Pretext training: labels, frame store, augmentation, the loop, checkpoints and resuming.

Everything runs on tiny networks (timm's test models, ResNet-18 at 32 px) and a
colour-coded clip dataset of a few dozen 32-px frames, so the whole file takes seconds.
"""

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from typer.testing import CliRunner

import harness.pretext.checkpoints as checkpoints_mod
import harness.pretext.train as pretrain_mod
from harness.pretext.augment import (AugmentParams, augment, center, crop_flip, jitter,
                             sample_params, to_float)
from harness.networks.checkpoint import FORMAT, load_pretrained, read_checkpoint
from harness.cli import app
from harness.data.clips import ClipDataset, write_dataset
from harness.api.errors import BadInputError
from harness.data.framestore import frame_store, square_frame, store_path
from harness.pretext.checkpoints import TrainingDiverged, checkpoint_due
from harness.pretext.config import AugmentConfig, PretrainConfig
from harness.pretext.data import batch_bounds, prefetched, read_labels
from harness.pretext.train import pretrain

CLASSES = 4


def make_clip_dataset(root: Path, n: int, size: int = 32, seed: int = 0,
                      shape: tuple[int, int] | None = None) -> np.ndarray:
    """A clip dataset whose frames are noisy patches of a class colour; returns the classes."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, CLASSES, n)
    palette = np.array([[230, 40, 40], [40, 200, 40], [40, 40, 230], [220, 220, 60]])
    (root / "frames").mkdir(parents=True)
    (root / "audio").mkdir()
    sf.write(root / "audio" / "silence.wav", np.zeros(160, np.float32), 16000)
    h, w = shape or (size, size)
    rows = []
    for i, c in enumerate(classes):
        img = np.clip(palette[c] + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "frames" / f"{i}.png")
        rows.append(dict(clip_id=f"clip{i}", video="synthetic", timestamp=float(i),
                         frame=f"frames/{i}.png", audio="audio/silence.wav", sample_rate=16000))
    write_dataset(root, rows, {"source": "test_pretrain"})
    return classes


def write_labels(path: Path, values: np.ndarray, sidecar: dict | None) -> Path:
    np.save(path, values)
    if sidecar is not None:
        path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path


@pytest.fixture(scope="module")
def clips(make_labelled_clips):
    """48 colour-coded clips and their class labels (with a sidecar)."""
    return make_labelled_clips(48)


#: every test here runs torch on one thread (the fixture is in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(clips, out: Path, **changes) -> PretrainConfig:
    data, labels = clips
    base = PretrainConfig(backbone="timm:test_resnet", backbone_params={"drop_rate": 0.2},
                          labels=labels, data=data, out=out, epochs=3, batch_size=16,
                          image_size=32, val_fraction=0.25, lr=3e-3, device="cpu",
                          precision="fp32", progress=False)
    return replace(base, **changes)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model"]


# ----------------------------------------------------------------------------- labels
def test_labels_with_sidecar_and_inferred(tmp_path):
    lab = read_labels(write_labels(tmp_path / "a.npy", np.array([0, 2, 1, 2]),
                                   {"kind": "classes", "num_outputs": 5}))
    assert (lab.kind, lab.num_outputs, lab.values.dtype) == ("classes", 5, np.int64)
    lab = read_labels(write_labels(tmp_path / "b.npy", np.array([0, 2, 1, 2]), None))
    assert (lab.kind, lab.num_outputs) == ("classes", 3)
    bits = np.array([[0, 1, 1], [1, 0, 0]], dtype=np.uint8)
    lab = read_labels(write_labels(tmp_path / "c.npy", bits, None))
    assert (lab.kind, lab.num_outputs, lab.values.dtype) == ("bits", 3, np.float32)


@pytest.mark.parametrize("values, sidecar, message", [
    (np.array([0, 5, 1]), {"kind": "classes", "num_outputs": 3}, r"must lie in \[0, 3\)"),
    (np.array([0.5, 1.0]), None, "must be integers"),
    (np.array([[0, 2], [1, 0]]), None, "must be 0/1"),
    (np.array([[0, 1], [1, 0]]), {"kind": "bits", "num_outputs": 3}, "2 bits, but"),
    (np.array([0, 1]), {"kind": "ranks"}, "kind must be"),
])
def test_bad_labels_are_one_line_errors(tmp_path, values, sidecar, message):
    with pytest.raises(BadInputError, match=message):
        read_labels(write_labels(tmp_path / "l.npy", values, sidecar))


def test_labels_must_match_the_dataset(clips, tmp_path):
    labels = write_labels(tmp_path / "short.npy", np.zeros(10, dtype=np.int64) + [0, 1] * 5, None)
    with pytest.raises(BadInputError, match="10 labels, but the clip dataset"):
        pretrain(tiny_config(clips, tmp_path / "run", labels=labels))


# ----------------------------------------------------------------------------- frame store
def test_frame_store_holds_the_decoded_frames_and_is_built_once(clips):
    dataset = ClipDataset(clips[0])
    store = frame_store(dataset, 32, progress=False)
    assert store.images.shape == (48, 32, 32, 3) and store.images.dtype == np.uint8
    assert np.array_equal(store.images[5], np.asarray(dataset.load_frame(5)))
    assert np.array_equal(store.gather(np.array([7, 3])).numpy(), store.images[[7, 3]])
    stamp = store_path(dataset, 32).stat().st_mtime_ns
    again = frame_store(dataset, 32, progress=False)
    assert again.path == store.path and store.path.stat().st_mtime_ns == stamp


def test_store_copies_whole_and_in_chunks_equal_the_array(clips):
    store = frame_store(ClipDataset(clips[0]), 32, progress=False)
    whole = store.to_tensor("cpu", chunk_bytes=5 * 32 * 32 * 3)   # 10 chunks of 5 frames
    assert torch.equal(whole, torch.from_numpy(np.asarray(store.images)))


def test_prefetching_keeps_order_and_passes_errors_on():
    batches = [np.array([i, i + 1]) for i in range(0, 20, 2)]
    assert [b.tolist() for b in prefetched(lambda b: b * 10, batches)] == \
        [(b * 10).tolist() for b in batches]

    def fails(b):
        if b[0] == 4:
            raise OSError("disk gone")
        return b

    with pytest.raises(OSError, match="disk gone"):
        list(prefetched(fails, batches))


def test_frames_are_resized_and_centre_cropped_to_squares():
    wide = Image.fromarray(np.tile(np.arange(80, dtype=np.uint8)[None, :, None], (40, 1, 3)))
    square = square_frame(wide, 20)
    assert square.shape == (20, 20, 3)
    # the centre of the wide frame survives; its left and right ends are cut off
    assert 15 < square[:, 0, 0].mean() < 25 and 55 < square[:, -1, 0].mean() < 65


# ----------------------------------------------------------------------------- augmentation
def _frames(n=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, size, size, 3, generator=g) * 150 + 50).to(torch.uint8)


def test_identity_augmentation_only_normalises():
    frames = _frames()
    params = AugmentParams(boxes=torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 4),
                           flips=torch.zeros(4, dtype=torch.bool),
                           colour=torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 4))
    out = augment(frames, params, 16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    expected = (to_float(frames) - 0.5) / 0.25
    assert torch.allclose(out, expected, atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_crop_and_flip_pick_the_box_and_mirror_it():
    x = to_float(_frames())
    box = torch.tensor([[0.25, 0.5, 0.5, 0.5]] * 4)
    assert torch.allclose(crop_flip(x, box, torch.zeros(4, dtype=torch.bool), 8), x[:, :, 8:, 4:12], atol=1e-5)
    flipped = crop_flip(x, box, torch.ones(4, dtype=torch.bool), 8)
    assert torch.allclose(flipped, x[:, :, 8:, 4:12].flip(-1), atol=1e-5)


@pytest.mark.parametrize("factors, reference", [
    ([1.3, 1, 1, 0], lambda F, x: F.adjust_brightness(x, 1.3)),
    ([1, 0.7, 1, 0], lambda F, x: F.adjust_contrast(x, 0.7)),
    ([1, 1, 1.4, 0], lambda F, x: F.adjust_saturation(x, 1.4)),
])
def test_jitter_matches_torchvision(factors, reference):
    import torchvision.transforms.v2.functional as F

    x = to_float(_frames())
    out = jitter(x.clone(), torch.tensor([factors] * 4, dtype=torch.float32))
    assert torch.allclose(out, reference(F, x), atol=1e-4)


def test_hue_rotation_keeps_grey_and_luma():
    grey = torch.full((1, 3, 2, 2), 0.4)
    assert torch.allclose(jitter(grey.clone(), torch.tensor([[1.0, 1.0, 1.0, 0.1]])), grey, atol=1e-5)
    x = 0.35 + 0.3 * torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = jitter(x.clone(), torch.tensor([[1.0, 1.0, 1.0, 0.08]]))   # no clamping needed
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert not torch.allclose(out, x, atol=1e-2)
    assert torch.allclose((out * luma).sum(1), (x * luma).sum(1), atol=1e-3)


def test_augmentation_draws_are_seeded_and_in_range():
    cfg = AugmentConfig()
    a = sample_params(500, cfg, torch.Generator().manual_seed(3))
    b = sample_params(500, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.colour, b.colour)
    x0, y0, w, h = a.boxes.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 1 + 1e-6).all() and (y0 + h <= 1 + 1e-6).all()
    assert ((w * h) >= cfg.crop_scale[0] - 1e-6).all()
    assert 0.4 < a.flips.float().mean() < 0.6
    assert (a.colour[:, :3] >= 0.6 - 1e-6).all() and (a.colour[:, 3].abs() <= 0.1 + 1e-6).all()


def test_evaluation_input_is_the_resized_whole_frame():
    out = center(_frames(size=32), 16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert out.shape == (4, 3, 16, 16) and 0 <= out.min() and out.max() <= 1


# ----------------------------------------------------------------------------- training
def test_batches_cover_the_epoch_without_a_lone_last_image():
    assert batch_bounds(36, 16) == [(0, 16), (16, 32), (32, 36)]
    assert batch_bounds(33, 16) == [(0, 16), (16, 32)]      # BatchNorm cannot train on 1 image
    assert batch_bounds(5, 16) == [(0, 5)]


def test_checkpoints_are_due_by_epoch_count_and_time_since_the_last(tmp_path):
    import time

    def config(**kw):
        return PretrainConfig(backbone="alexnet", labels=tmp_path, data=tmp_path, out=tmp_path,
                              **kw)

    now = time.monotonic()
    assert checkpoint_due(config(), 1, now)                              # every epoch
    assert [checkpoint_due(config(checkpoint_every=3), e, now) for e in range(1, 7)] == \
        [False, False, True, False, False, True]
    assert not checkpoint_due(config(checkpoint_seconds=60), 5, now)     # written just now
    assert checkpoint_due(config(checkpoint_seconds=60), 5, now - 61)


def test_training_learns_and_writes_checkpoint_and_metrics(clips, tmp_path):
    out = tmp_path / "run"
    path = pretrain(tiny_config(clips, out, epochs=4, lr=1e-2))
    assert path == out / "last.pt"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                "images_per_s", "data_wait_share"):
        assert all(isinstance(r[key], float) and math.isfinite(r[key]) for r in rows), key
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["val_accuracy"] > 1 / CLASSES + 0.2  # colour-coded classes are learnable

    ckpt = read_checkpoint(path)
    assert ckpt["format"] == FORMAT and ckpt["backbone"] == "timm:test_resnet"
    assert (ckpt["num_outputs"], ckpt["output_kind"], ckpt["input_size"]) == (4, "classes", 32)
    assert "optimizer" not in ckpt["train_state"]        # a finished run keeps only weights
    model = load_pretrained(path)
    assert model.origin == "pretext" and model.meta["input_size"] == 32
    assert model.backbone.params()["drop_rate"] == 0.2
    x = torch.rand(2, 3, 32, 32)
    model.net.eval()
    with torch.no_grad():
        assert model.net(x).shape == (2, 4)

    # a rerun of a finished run does nothing
    stamp = path.stat().st_mtime_ns
    pretrain(tiny_config(clips, out, epochs=4, lr=1e-2))
    assert path.stat().st_mtime_ns == stamp


def test_interrupted_run_resumes_to_the_same_weights(clips, tmp_path, monkeypatch):
    whole = pretrain(tiny_config(clips, tmp_path / "whole"))

    saves = []
    real_save = checkpoints_mod.save_checkpoint

    def crash_after_first_epoch(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(kwargs["train_state"]["epoch"])
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints_mod, "save_checkpoint", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny_config(clips, tmp_path / "resumed"))
    assert saves == [1]
    partial = read_checkpoint(tmp_path / "resumed" / "last.pt")["train_state"]
    assert partial["epoch"] == 1 and "optimizer" in partial and "scheduler" in partial
    monkeypatch.setattr(checkpoints_mod, "save_checkpoint", real_save)

    resumed = pretrain(tiny_config(clips, tmp_path / "resumed"))
    a, b = weights(whole), weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from uninterrupted"
    lines = lambda p: [{k: v for k, v in json.loads(line).items()
                        if k not in ("images_per_s", "epoch_seconds", "cpu_seconds", "data_wait_share")}
                       for line in (p.parent / "metrics.jsonl").read_text().splitlines()]
    assert lines(whole) == lines(resumed)


def test_another_seed_gives_other_weights_and_is_not_resumed_over(clips, tmp_path):
    first = weights(pretrain(tiny_config(clips, tmp_path / "a", epochs=1)))
    with pytest.raises(BadInputError, match="different run"):
        pretrain(tiny_config(clips, tmp_path / "a", epochs=1, seed=1))
    other = pretrain(tiny_config(clips, tmp_path / "a", epochs=1, seed=1, restart=True))
    assert not torch.equal(first["head.0.weight"], weights(other)["head.0.weight"])


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(clips, tmp_path, monkeypatch):
    real = pretrain_mod.loss_and_correct
    calls = []

    def poisoned(logits, targets, kind):
        loss, correct, count = real(logits, targets, kind)
        calls.append(1)
        return (loss * float("nan") if len(calls) > 4 else loss), correct, count

    monkeypatch.setattr(pretrain_mod, "loss_and_correct", poisoned)
    out = tmp_path / "run"
    # 36 training clips in batches of 16: 2 steps and 1 validation batch per epoch
    with pytest.raises(TrainingDiverged, match=r"NaN or infinite at epoch 2.*epoch 1\), is kept"):
        pretrain(tiny_config(clips, out))
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["train_state"]["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())


def test_bit_labels_train_with_binary_cross_entropy(clips, tmp_path):
    data, _ = clips
    classes = np.asarray(read_labels(clips[1]).values)
    bits = np.stack([classes % 2, classes // 2], axis=1).astype(np.uint8)
    labels = write_labels(tmp_path / "bits.npy", bits, {"kind": "bits", "num_outputs": 2})
    path = pretrain(tiny_config(clips, tmp_path / "run", labels=labels, epochs=1))
    ckpt = read_checkpoint(path)
    assert (ckpt["output_kind"], ckpt["num_outputs"]) == ("bits", 2)
    assert 0 <= ckpt["meta"]["val_accuracy"] <= 1


# ----------------------------------------------------------------------------- checkpoints
def test_random_networks_are_seeded_and_marked(tmp_path):
    a = load_pretrained("random:timm:test_resnet", seed=1)
    b = load_pretrained("random:timm:test_resnet", seed=1)
    c = load_pretrained("random:timm:test_resnet", seed=2)
    assert a.origin == "random" and a.checkpoint == "random:timm:test_resnet"
    key = "head.0.weight"
    assert torch.equal(a.net.state_dict()[key], b.net.state_dict()[key])
    assert not torch.equal(a.net.state_dict()[key], c.net.state_dict()[key])


def test_checkpoint_round_trip_and_weights_that_do_not_fit(tmp_path):
    from harness.networks.checkpoint import build_backbone, save_checkpoint

    backbone = build_backbone("timm:test_resnet")
    net = backbone.create(3)
    path = tmp_path / "c.pt"
    save_checkpoint(path, backbone_name="timm:test_resnet", backbone=backbone, net=net,
                    output_kind="bits", image_size=48, meta={"origin": "supervised"})
    model = load_pretrained(path)
    assert (model.origin, model.meta["output_kind"], model.meta["input_size"]) == ("supervised", "bits", 48)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                 model.net.state_dict().values()))
    ckpt = torch.load(path, weights_only=True)
    torch.save({**ckpt, "backbone_params": {**ckpt["backbone_params"], "variant": "test_convnext"}}, path)
    with pytest.raises(BadInputError, match="weights do not fit backbone 'timm:test_resnet'"):
        load_pretrained(path)


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


@pytest.mark.parametrize("content, message", [
    (b"this is not a checkpoint", "not a file written by torch.save"),
    ({"weights": torch.zeros(2)}, "format None"),
    (_Evil(), "weights_only=True failed.*Unsupported global"),
])
def test_a_file_that_is_not_a_harness_checkpoint_is_refused(tmp_path, content, message):
    path = tmp_path / "x.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)   # _Evil: code that only a full unpickler would run
    with pytest.raises(BadInputError, match=message) as info:
        load_pretrained(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_cli_trains_and_reports_bad_input_in_one_line(clips, tmp_path):
    data, labels = clips
    runner = CliRunner()
    args = ["pretrain", "--backbone", "timm:test_resnet", "--labels", str(labels), "--data",
            str(data), "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "16",
            "--image-size", "32", "--device", "cpu", "--threads", "1", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "last.pt").is_file()
    bad = runner.invoke(app, [*args[:3], "--labels", str(tmp_path / "missing.npy"), *args[5:]])
    assert bad.exit_code == 2
    assert bad.output.startswith("error: ") and bad.output.count("\n") == 1


def test_log_is_one_whole_line_per_epoch_when_not_on_a_terminal(clips, tmp_path, monkeypatch,
                                                                 capsys):
    """In a file or a pipe: no progress bar, one line per epoch holding loss, accuracy,
    learning rate and images/s, and a last line with the final epoch's figures."""
    monkeypatch.delenv("HARNESS_NO_PROGRESS", raising=False)
    pretrain(tiny_config(clips, tmp_path / "run", epochs=2, progress=True))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2, err
    for line in epochs:
        assert all(word in line for word in ("train loss", "acc", "lr", "img/s", "val loss"))
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1].startswith("pretrain: finished") and f"{rows[-1]['train_loss']:.4f}" in lines[-1]
    assert not any("━" in line for line in lines)          # no progress bar in a log


def test_pretrain_command_records_its_profile_and_the_options_that_override_it(clips, tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.pretext.config import CONFIG_NAME

    data, labels = clips
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "pretrain", "--backbone", "timm:test_resnet", "--labels", str(labels), "--data",
        str(data), "--out", str(out), "--epochs", "1", "--batch-size", "16", "--image-size",
        "32", "--device", "cpu", "--precision", "fp32", "--no-progress"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / CONFIG_NAME).read_text())["config"]
    assert config["profile"] == "toy"
    assert config["overrides"] == {"epochs": 1, "batch_size": 16, "image_size": 32}
    assert config["epochs"] == 1 and config["lr"] == 0.001        # the toy profile's lr

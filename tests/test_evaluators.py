"""The VOC07 evaluators on a tiny VOC built here (real layout) with a tiny test backbone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from harness.api.errors import BadInputError, HarnessError
from harness.api.interfaces import Backbone, EvalContext, PretrainedModel
from harness.networks.shape import BackboneNet
from harness.data.voc import CLASSES
from harness_plugins.evaluators import training
from harness_plugins.evaluators.augment import (ImageStore, load_images, sample_window_crop,
                                                sample_resized_crop)
from harness_plugins.evaluators.protocol import PRESETS, resolve
from harness_plugins.evaluators.voc07 import VOC07Full, VOC07Linear

# ----------------------------------------------------------------------------- fixtures
from harness.api.testing import TinyBackbone, tiny_model  # noqa: E402,F401


#: every test here runs torch on one thread (the fixture is in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


FAST = {"iterations": 12}
#: where :func:`ctx` makes fresh work folders (the running test's tmp_path)
_WORK_BASE: list[Path | None] = [None]


@pytest.fixture(autouse=True)
def _work_base(tmp_path):
    _WORK_BASE[0] = tmp_path
    yield
    _WORK_BASE[0] = None


def ctx(work_dir: Path | None = None, *, profile: str = "toy", seed: int = 0,
        device: str = "cpu") -> EvalContext:
    """An evaluation context (a fresh work folder unless one is given)."""
    import tempfile

    work = (Path(work_dir) if work_dir is not None
            else Path(tempfile.mkdtemp(prefix="eval-", dir=_WORK_BASE[0])))
    work.mkdir(parents=True, exist_ok=True)
    return EvalContext(profile=profile, seed=seed, device=device, work_dir=work, progress=False)


# ----------------------------------------------------------------------------- protocol
def test_presets_carry_the_published_numbers():
    k = resolve("krahenbuhl", "paper", "all")
    assert (k.lr, k.lr_step, k.iterations, k.batch_size, k.weight_decay) == \
        (0.001, 10_000, 80_000, 16, 1e-6)
    assert (k.grad_clip_norm, k.bias_lr_mult, k.crop_size, k.head_init) == (10.0, 2.0, 227, "pretext")
    assert (k.scale_min, k.scale_max, k.test_crops, k.base_short_side) == (0.5, 2.0, 10, None)
    d = resolve("deepcluster", "paper", "head")
    assert (d.lr, d.lr_step, d.iterations, d.crop_size, d.head_init) == \
        (0.003, 5_000, 80_000, 224, "random")
    assert (d.scale_min, d.scale_max, d.aspect_min, d.aspect_max) == (0.1, 0.5, 1.0, 1.0)
    assert d.trunk_bn == "running" and d.trained == "head"


def test_toy_profile_scales_schedule_and_records_overrides():
    head = resolve("krahenbuhl", "toy", "head")
    assert head.iterations < PRESETS["krahenbuhl"].iterations
    # the learning-rate step keeps its share of the schedule (1/8 for krahenbuhl)
    assert head.lr_step == round(head.iterations / 8)
    assert head.base_short_side == round(head.crop_size * 375 / 227)
    tuned = resolve("krahenbuhl", "toy", "all", iterations=40, lr=0.01, head_init="random",
                    train_split="train")
    assert tuned.overrides == ("iterations", "lr") and tuned.test_split == "val"
    assert tuned.head_init == "random" and tuned.lr_step == 5
    with pytest.raises(BadInputError, match="preset"):
        resolve("nope", "toy", "head")
    with pytest.raises(BadInputError, match="cannot train on split 'test'"):
        resolve("krahenbuhl", "toy", "head", train_split="test")


# ----------------------------------------------------------------------------- augmentation
def _store(tmp_path, arrays) -> ImageStore:
    paths = []
    for i, a in enumerate(arrays):
        p = tmp_path / f"{i}.png"
        Image.fromarray(a).save(p)
        paths.append(p)
    return load_images(paths, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "cpu", threads=2)


def test_crops_are_normalised_padded_with_the_mean_and_flipped(tmp_path):
    a = np.zeros((20, 30, 3), np.uint8)
    a[:, :15] = 255                                  # left half white, right half black
    store = _store(tmp_path, [a, np.full((10, 10, 3), 255, np.uint8)])
    assert store.pixels.shape == (2, 3, 20, 30) and store.sizes.tolist() == [[20, 30], [10, 10]]
    boxes = np.array([[0, 0, 30, 20], [0, 0, 10, 10]], float)
    x = store.crops([0, 1], boxes, np.array([False, False]), 8)
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32
    assert torch.allclose(x[0, :, :, 0], torch.tensor(2.0)) and torch.allclose(x[0, :, :, -1], torch.tensor(-2.0))
    flipped = store.crops([0], boxes[:1], np.array([True]), 8)
    assert torch.allclose(flipped[0], x[0].flip(-1))
    # a box past the small image's edge reads the padding: the mean, i.e. ~0 after normalising
    outside = store.crops([1], np.array([[12, 12, 20, 20]], float), np.array([False]), 4)
    assert outside.abs().max() < 0.02


def _caffe_window(rng, W, H, Wo, Ho, min_scale_, max_scale_):
    """One draw of philkr/caffe transformation_layer.cpp generate() without rotation:
    the window's (x0, y0, side) in image pixels, written from the source's formula."""
    max_scale = min(max_scale_, min(H / Ho, W / Wo))
    min_scale = min(min_scale_, max_scale)
    scale = rng.uniform(min_scale, max_scale)
    scl_w, scl_h = min(Wo * scale, W), min(Ho * scale, H)
    sx = rng.uniform(-(W - scl_w) / 2, (W - scl_w) / 2)
    sy = rng.uniform(-(H - scl_h) / 2, (H - scl_h) / 2)
    # the output's centre maps to (W/2 + sx, H/2 + sy); its corner to centre - window/2
    return W / 2 + sx - Wo * scale / 2, H / 2 + sy - Ho * scale / 2, Wo * scale


def test_window_crop_draws_windows_as_the_caffe_transformation_layer_does():
    from scipy import stats

    n = 4000
    for (h, w), base in (((375, 500), 1.0), ((64, 64), 105.0 / 64), ((80, 100), 1.0)):
        sizes = np.array([[h, w]] * n)
        boxes, flips = sample_window_crop(np.random.default_rng(1), sizes, 227 if base == 1.0
                                          else 64, 0.5, 2.0, True, np.full(n, base))
        crop = 227 if base == 1.0 else 64
        side = (boxes[:, 2] - boxes[:, 0]) * base
        assert np.allclose(side, (boxes[:, 3] - boxes[:, 1]) * base)
        # never past the image's edge
        assert boxes.min() >= -1e-9 and (boxes[:, 2] <= w + 1e-9).all() \
            and (boxes[:, 3] <= h + 1e-9).all()
        ref = np.array([_caffe_window(np.random.default_rng(i), w * base, h * base, crop, crop,
                                      0.5, 2.0) for i in range(n)])
        top = min(2.0, h * base / crop, w * base / crop)
        lo = min(0.5, top) * crop
        if lo < top * crop:
            # window side uniform on [crop * min(0.5, top), crop * top], as the source draws
            assert stats.kstest(side, stats.uniform(lo, top * crop - lo).cdf).pvalue > 1e-3
            assert stats.ks_2samp(side, ref[:, 2]).pvalue > 1e-3
            # offsets uniform over the positions that keep the window inside
            u = boxes[:, 0] * base / (w * base - side)
            assert stats.kstest(u, "uniform").pvalue > 1e-3
            assert stats.ks_2samp(boxes[:, 1] * base, ref[:, 1]).pvalue > 1e-3
        else:
            # an image smaller than half the crop: the window is its short side
            assert np.allclose(side, min(h, w) * base) and np.allclose(ref[:, 2], side)
        assert 0.45 < flips.mean() < 0.55


def test_resized_crop_sampling():
    rng = np.random.default_rng(0)
    sizes = np.array([[375, 500]] * 400)
    boxes, flips = sample_resized_crop(rng, sizes, 0.1, 0.5, 1.0, 1.0, True)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert np.array_equal(w, h)                                   # aspect ratio 1
    frac = w * h / (375 * 500)
    assert frac.min() >= 0.09 and frac.max() <= 0.51
    assert boxes[:, :2].min() >= 0 and (boxes[:, 2] <= 500).all() and (boxes[:, 3] <= 375).all()


def test_cpu_gradient_clipping_matches_torch():
    def params(scale):
        ps = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(4))]
        for i, p in enumerate(ps):
            p.grad = torch.arange(p.numel(), dtype=torch.float32) * scale + i
        return ps

    for scale in (0.1, 10.0):                      # below and above the threshold
        ours, theirs = params(scale), params(scale)
        training._clip(ours, 10.0, torch.device("cpu"))
        nn.utils.clip_grad_norm_(theirs, 10.0)
        for a, b in zip(ours, theirs):
            assert torch.equal(a.grad, b.grad)
    assert torch.linalg.vector_norm(torch.cat([p.grad for p in ours])) == pytest.approx(10.0)


def test_loss_ignores_difficult_labels_and_divides_by_batch():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    y = torch.tensor([[1, 0, -1], [0, 1, 1]], dtype=torch.int8)
    bce = nn.functional.binary_cross_entropy_with_logits
    expected = (bce(logits[0, :2], torch.tensor([1.0, 0.0]), reduction="sum")
                + bce(logits[1], torch.tensor([0.0, 1.0, 1.0]), reduction="sum")) / 2
    assert training._loss(logits, y) == pytest.approx(expected.item())


# ----------------------------------------------------------------------------- evaluators
def test_head_trains_only_the_head_and_reports_everything(voc_root):
    model = tiny_model("random")
    original = {k: v.clone() for k, v in model.net.state_dict().items()}
    ev = VOC07Linear(**FAST)
    result = ev.run(model, voc_root, ctx())
    metrics = result.metrics
    assert metrics.headline == "map" and "sklearn_pessimistic" in metrics.formula
    m = metrics.details
    for key in ("evaluator", "map_voc07_11pt", "map_voc10", "ap_voc07_11pt", "ap_voc10",
                "formulas", "split_trained", "split_tested", "bn_recomputed", "timings",
                "n_train", "n_test"):
        assert key in m, key
    p = metrics.protocol
    assert (p["preset"], p["profile"], p["seed"]) == ("krahenbuhl", "toy", 0)
    assert m["evaluator"] == "voc07_linear" and p["trained"] == "head"
    assert set(metrics.breakdown) == set(CLASSES) and len(m["ap_voc10"]) == 20
    assert metrics.value == pytest.approx(np.mean(list(metrics.breakdown.values())))
    assert 0 < metrics.value <= 100
    assert (m["split_trained"], m["split_tested"], m["n_train"], m["n_test"]) == \
        ("trainval", "test", 40, 24)
    assert m["formulas"]["map"] == "sklearn_pessimistic"
    assert p["iterations"] == 12 and p["overrides"] == ["iterations"]
    assert m["bn_recomputed"] is True and m["bn_recompute"]["images"] == 40
    assert model.net.state_dict()["trunk.1.running_mean"].abs().sum() == 0   # caller's net untouched
    trained = result.net.state_dict()
    # the trunk's weights are frozen; its BatchNorm statistics were re-estimated
    assert torch.equal(trained["trunk.0.weight"], original["trunk.0.weight"])
    assert trained["trunk.1.running_mean"].abs().sum() > 0
    assert not torch.equal(trained["head.1.weight"], original["head.1.weight"])
    assert result.scores.split == "test" and result.scores.trained_on == "trainval"
    assert result.scores.scores.shape == (24, 20)


def test_toy_head_draws_crops_from_a_pool_of_encoded_views(voc_root, monkeypatch):
    assert resolve("krahenbuhl", "toy", "head").head_views == 10
    assert resolve("krahenbuhl", "toy", "all").head_views is None
    assert resolve("krahenbuhl", "paper", "head").head_views is None
    calls = {"views": 0, "trunk_chunks": 0}
    real_encode, real_trunk = training.encode_views, training._trunk_features

    def encode(bar, net, store, proto, dev):
        calls["views"] += 1
        pool = real_encode(bar, net, store, proto, dev)
        assert pool.shape[:2] == (proto.head_views, len(store))
        return pool

    def trunk(*args, **kwargs):
        calls["trunk_chunks"] += 1
        return real_trunk(*args, **kwargs)

    monkeypatch.setattr(training, "encode_views", encode)
    monkeypatch.setattr(training, "_trunk_features", trunk)
    m = VOC07Linear(iterations=150).evaluate(tiny_model(), voc_root, ctx())
    # the trunk ran once per view, never per iteration chunk
    assert calls == {"views": 1, "trunk_chunks": 0}
    assert m.protocol["head_views"] == 10
    # the profile comes with the context, so one evaluator scales to either world
    ev = VOC07Linear(iterations=150)
    assert ev.protocol(ctx(profile="paper")).head_views is None
    assert ev.protocol(ctx(profile="toy")).head_views == 10


@pytest.mark.parametrize("preset", ["krahenbuhl", "deepcluster"])
def test_all_trains_the_trunk_with_its_batchnorm_in_eval_mode(preset, voc_root):
    model = tiny_model("pretext")
    original = {k: v.clone() for k, v in model.net.state_dict().items()}
    result = VOC07Full(preset=preset, **FAST).run(model, voc_root, ctx())
    trained = result.net.state_dict()
    details = result.metrics.details
    assert details["bn_recomputed"] is False and details["bn_recompute"] is None
    assert result.metrics.protocol["trunk_bn"] == "running"
    # the trunk's weights train, its BatchNorm running statistics stay the pretext's
    assert not torch.equal(trained["trunk.0.weight"], original["trunk.0.weight"])
    assert torch.equal(trained["trunk.1.running_mean"], original["trunk.1.running_mean"])


def test_deepcluster_all_is_its_all_script_not_its_head_defaults():
    head = resolve("deepcluster", "paper", "head")
    full = resolve("deepcluster", "paper", "all")
    assert (head.lr, head.lr_step, head.iterations, head.augmentation) == \
        (0.003, 5000, 80000, "resized_crop")
    assert (full.lr, full.lr_step, full.iterations, full.batch_size) == (0.001, 20000, 150000, 16)
    assert (full.augmentation, full.crop_size, full.scale_min, full.scale_max) == \
        ("window_crop", 227, 0.5, 2.0)
    assert full.head_init == "random" and full.trunk_bn == "running"
    # scaled to the toy world, the learning-rate step keeps its share of the schedule
    toy = resolve("deepcluster", "toy", "all", iterations=1500)
    assert toy.lr_step == 200


@pytest.mark.parametrize("head_init", ["pretext", "random"])
def test_head_init_keeps_or_reinitialises_fc6_fc7(head_init, monkeypatch, voc_root):
    model = tiny_model("pretext")
    fc6 = model.net.head[1].weight.detach().clone()
    seen = {}
    real = training.train

    def spy(bar, net, *args, **kwargs):
        seen["fc6"] = net.head[1].weight.detach().clone()
        seen["fc8"] = net.head[-1].weight.detach().clone()
        seen["fc8_bias"] = net.head[-1].bias.detach().clone()
        return real(bar, net, *args, **kwargs)

    monkeypatch.setattr(training, "train", spy)
    m = VOC07Linear(head_init=head_init, iterations=1).evaluate(model, voc_root, ctx())
    assert m.protocol["head_init"] == head_init
    assert seen["fc8"].shape[0] == 20 and torch.allclose(seen["fc8_bias"], torch.tensor(0.1))
    assert 0.005 < seen["fc8"].std() < 0.015
    assert torch.equal(seen["fc6"], fc6) == (head_init == "pretext")
    if head_init == "random":
        assert 0.005 < seen["fc6"].std() < 0.015


def test_same_seed_same_result_and_seed_matters(voc_root):
    a = VOC07Linear(**FAST).run(tiny_model(), voc_root, ctx())
    b = VOC07Linear(**FAST).run(tiny_model(), voc_root, ctx())
    c = VOC07Linear(**FAST).run(tiny_model(), voc_root, ctx(seed=1))
    assert np.array_equal(a.scores.scores, b.scores.scores)
    assert a.metrics.value == b.metrics.value
    assert not np.array_equal(a.scores.scores, c.scores.scores)


@pytest.mark.parametrize("cls", [VOC07Linear, VOC07Full])
def test_interrupted_training_resumes_to_the_same_result(cls, voc_root, tmp_path, monkeypatch):
    reference = cls(**FAST).run(tiny_model(), voc_root, ctx())
    real_step = training._gradients
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        if calls["n"] == 5:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real_step(*args, **kwargs)

    monkeypatch.setattr(training, "_gradients", flaky)
    work = tmp_path / "work"
    with pytest.raises(KeyboardInterrupt):
        cls(**FAST).run(tiny_model(), voc_root, ctx(work))
    assert (work / training.STATE_FILE).is_file()
    monkeypatch.setattr(training, "_gradients", real_step)
    resumed = cls(**FAST).run(tiny_model(), voc_root, ctx(work))
    assert resumed.metrics.details["resumed_from_iteration"] == 5
    np.testing.assert_allclose(resumed.scores.scores, reference.scores.scores, rtol=1e-5, atol=1e-5)
    # another protocol does not pick up this state
    other = cls(iterations=3).run(tiny_model(), voc_root, ctx(work))
    assert other.metrics.details["resumed_from_iteration"] == 0
    # evaluate() removes the state once the scores exist; a rerun trains anew, identically
    cls(**FAST).evaluate(tiny_model(), voc_root, ctx(work))
    assert not (work / training.STATE_FILE).exists()
    again = cls(**FAST).run(tiny_model(), voc_root, ctx(work))
    assert again.metrics.details["resumed_from_iteration"] == 0
    np.testing.assert_allclose(again.scores.scores, reference.scores.scores, rtol=1e-5, atol=1e-5)


def test_training_learns_the_classes(voc_root):
    """A fine-tuned net ranks test images far better than an untrained classifier."""
    trained = VOC07Linear(iterations=120, lr=0.05).evaluate(tiny_model(), voc_root, ctx())
    untrained = VOC07Linear(iterations=1, lr=0.05).evaluate(tiny_model(), voc_root, ctx())
    assert trained.value > untrained.value + 12
    curve = trained.details["train_loss_curve"]
    assert curve[-1][1] < curve[0][1]


# ----------------------------------------------------------------------------- bad input
def _copy_voc(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_missing_split_image_or_positive_is_a_clear_error(voc_root, tmp_path):
    ev = VOC07Linear(iterations=1)
    broken = _copy_voc(voc_root, tmp_path / "a")
    (broken / "VOC2007/ImageSets/Main/test.txt").unlink()
    with pytest.raises(BadInputError, match="test.txt: missing split file"):
        ev.evaluate(tiny_model(), broken, ctx())

    broken = _copy_voc(voc_root, tmp_path / "b")
    (broken / "VOC2007/JPEGImages/000003.jpg").unlink()
    with pytest.raises(BadInputError, match="000003.jpg: missing image"):
        ev.evaluate(tiny_model(), broken, ctx())

    broken = _copy_voc(voc_root, tmp_path / "c")
    for xml in (broken / "VOC2007/Annotations").glob("*.xml"):
        xml.write_text(xml.read_text().replace("<name>cow</name>", "<name>sheep</name>"))
    with pytest.raises(BadInputError, match="class 'cow' has no positive image in split 'trainval'"):
        ev.evaluate(tiny_model(), broken, ctx())

    broken = _copy_voc(voc_root, tmp_path / "d")
    main = broken / "VOC2007/ImageSets/Main"
    (main / "test.txt").write_text((main / "test.txt").read_text() + "000000\n")
    with pytest.raises(BadInputError, match="share 1 image"):
        ev.evaluate(tiny_model(), broken, ctx())


def test_unavailable_device_and_foreign_network_are_errors(voc_root):
    if not torch.cuda.is_available():
        with pytest.raises(BadInputError, match="CUDA is not available"):
            VOC07Linear(iterations=1).evaluate(tiny_model(), voc_root, ctx(device="cuda"))
    model = tiny_model()
    model.net = nn.Linear(2, 2)
    with pytest.raises(HarnessError, match="not a harness BackboneNet"):
        VOC07Linear(iterations=1).evaluate(model, voc_root, ctx())


@pytest.mark.gpu
def test_cuda_bf16_run_matches_cpu_closely(voc_root):
    cpu = VOC07Linear(**FAST).evaluate(tiny_model(), voc_root, ctx(device="cpu"))
    gpu = VOC07Linear(**FAST).evaluate(tiny_model(), voc_root, ctx(device="cuda"))
    assert gpu.details["precision"].startswith("bf16")
    assert abs(gpu.value - cpu.value) < 10


def test_precision_is_part_of_the_protocol_and_recorded(voc_root):
    m = VOC07Full(precision="bf16", **FAST).evaluate(tiny_model("pretext"), voc_root, ctx())
    assert m.protocol["precision"] == "bf16" and "precision" in m.protocol["overrides"]
    assert m.details["precision"].startswith("bf16 autocast")
    default = VOC07Full(**FAST).protocol(ctx())
    assert default.precision == "auto"
    with pytest.raises(BadInputError, match="precision"):
        resolve("krahenbuhl", "toy", "all", precision="fp16")

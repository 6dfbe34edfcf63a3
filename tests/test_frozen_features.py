"""Frozen features (harness.evaluation.layer_features), the probes on them and their evaluators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from harness.evaluation import layer_features as frozen

from harness.evaluation import knn

from harness.evaluation import logreg

from harness_plugins.evaluators import svm
from harness.evaluation.ap import ap_sklearn_pessimistic
from harness.api.errors import BadInputError
from harness.api.interfaces import EvalContext, EvalMetrics, PretrainedModel
from harness.networks.shape import BackboneNet
from harness.evaluation.rowspace import reduce
from harness.data.voc import CLASSES as CLASSES_
from harness_plugins.evaluators.frozen_features import KNN, LinearProbe, VOC07LowShot, VOC07SVM
from tests.test_evaluators import TinyBackbone


class LayeredTiny(TinyBackbone):
    """The tiny test network, declaring two conv layers and its trunk output."""

    name = "tiny_layered"

    def create(self, num_outputs: int) -> BackboneNet:
        net = super().create(num_outputs)
        return BackboneNet(net.trunk, net.head,
                           layers={"conv1": "trunk.2", "conv2": "trunk.5", "pool": "trunk",
                                   "fc": "head.2"})


def model(origin: str = "pretext", seed: int = 0) -> PretrainedModel:
    torch.manual_seed(seed)
    bb = LayeredTiny()
    return PretrainedModel(backbone=bb, net=bb.create(5), origin=origin, checkpoint="tiny")


#: every test here runs torch on one thread (the fixture is in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def context(tmp_path: Path, seed: int = 0) -> EvalContext:
    return EvalContext(profile="toy", seed=seed, device="cpu", work_dir=tmp_path, progress=False)


def separable(n: int, seed: int, signal: bool = True, classes: int = 20):
    """One class per image (image i shows class i mod 20) and 64-d features: the class's
    own direction plus a little noise when ``signal``, else noise that ignores the label."""
    rng = np.random.default_rng(seed)
    t = np.zeros((n, classes), dtype=np.int8)
    t[np.arange(n), np.arange(n) % classes] = 1
    noise = 0.05 * rng.standard_normal((n, 64))
    x = noise + (np.hstack([t, np.zeros((n, 64 - classes))]) if signal else rng.random((n, 64)))
    return x.astype(np.float32), t


# ----------------------------------------------------------------------------- layers, pooling
def test_builtin_backbones_declare_their_layers():
    from harness.networks.checkpoint import build_backbone

    alex = build_backbone("alexnet", {"pool": 1, "fc_units": 32}).create(3).feature_layers()
    assert list(alex) == ["conv1", "conv2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7"]
    res = build_backbone("resnet18").create(3).feature_layers()
    assert list(res) == ["stage1", "stage2", "stage3", "stage4", "pooled"]
    timm_layers = build_backbone("timm:", {"variant": "test_resnet"}).create(3).feature_layers()
    assert "pooled" in timm_layers and any(k.startswith("stage") for k in timm_layers)
    # a backbone that declares nothing gets its trunk output
    assert TinyBackbone().create(3).feature_layers() == {"trunk": "trunk"}
    with pytest.raises(TypeError, match="does not have"):
        BackboneNet(nn.Flatten(), nn.Sequential(nn.Linear(2, 2)), layers={"x": "trunk.9"})


def test_conv_maps_pool_to_the_declared_size():
    assert frozen.pool_to_size(torch.zeros(2, 96, 15, 15), 9216).shape == (2, 96 * 9 * 9)
    assert frozen.pool_to_size(torch.zeros(2, 256, 13, 13), 9216).shape == (2, 9216)
    assert frozen.pool_to_size(torch.zeros(2, 384, 3, 3), 9216).shape == (2, 384 * 9)
    assert frozen.pool_to_size(torch.zeros(2, 20000, 4, 4), 9216).shape == (2, 20000)
    assert frozen.pool_to_size(torch.ones(2, 7, 5), 9216).shape == (2, 5)     # tokens: mean
    assert frozen.pool_to_size(torch.ones(2, 11), 9216).shape == (2, 11)


def test_capture_uses_eval_mode_and_restores_training_modes():
    net = LayeredTiny().create(5)
    x = torch.randn(6, 3, 32, 32)
    net.train()
    net(x * 3 + 1)                       # running statistics now differ from batch ones
    stats = [b.clone() for b in net.buffers()]
    got = frozen.capture(net, iter([x]), {"pool": "trunk", "fc": "head.2"}, 9216)
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(a, b) for a, b in zip(stats, net.buffers())), "BN stats changed"
    net.eval()
    with torch.no_grad():
        expected = net.trunk(x).numpy()
        expected_fc = net.head[:3](net.trunk(x)).numpy()
    np.testing.assert_allclose(got["pool"], expected, rtol=1e-5, atol=1e-6)
    # dropout (head.0) is off: fc equals the deterministic eval-mode output
    np.testing.assert_allclose(got["fc"], expected_fc, rtol=1e-5, atol=1e-6)


def test_views_are_seeded_and_view_zero_is_the_whole_image():
    sizes = np.array([[40, 60], [50, 50]])
    b1, f1 = frozen.view_boxes(sizes, 3, seed=0)
    b2, f2 = frozen.view_boxes(sizes, 3, seed=0)
    b3, _ = frozen.view_boxes(sizes, 3, seed=1)
    assert np.array_equal(b1, b2) and np.array_equal(f1, f2) and not np.array_equal(b1, b3)
    assert np.array_equal(b1[:, 0], [[0, 0, 60, 40], [0, 0, 50, 50]]) and not f1[:, 0].any()
    assert (b1[..., 2] <= sizes[:, None, 1]).all() and (b1[..., 3] <= sizes[:, None, 0]).all()


def test_split_features_are_cached_deterministic_and_share_trainval(voc_root, monkeypatch):
    cfg = frozen.FrozenConfig(views=2)
    m = model()
    trainval = frozen.split_features(m, voc_root, "trainval", cfg, profile="toy", seed=0)
    assert set(trainval.layers) == {"conv1", "conv2", "pool", "fc"}
    assert trainval.layers["pool"].shape == (40, 64) and trainval.meta["views_digest"]

    def no_extraction(*a, **k):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(frozen, "extract", no_extraction)
    again = frozen.split_features(m, voc_root, "trainval", cfg, profile="toy", seed=0)
    train = frozen.split_features(m, voc_root, "train", cfg, profile="toy", seed=0)
    for k in trainval.layers:
        assert np.array_equal(trainval.layers[k], again.layers[k])
    assert train.split == "train" and len(train.image_ids) == 20
    assert np.array_equal(train.layers["pool"], trainval.layers["pool"][:20])
    with pytest.raises(AssertionError, match="cache"):   # another view seed is another entry
        frozen.split_features(m, voc_root, "trainval", cfg, profile="toy", seed=1)


def test_a_random_network_gets_bn_statistics_recomputed_on_a_copy(voc_root):
    m = model(origin="random")
    before = [b.clone() for b in m.net.buffers()]
    feats = frozen.split_features(m, voc_root, "test", frozen.FrozenConfig(), profile="toy", seed=0)
    assert feats.meta["bn_recomputed"] is True and feats.meta["bn_recompute_images"] == 40
    assert all(torch.equal(a, b) for a, b in zip(before, m.net.buffers()))


# ----------------------------------------------------------------------------- classifiers
def test_row_space_reduction_gives_the_same_svm_scores():
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(0)
    x = svm.normalise_rows(rng.random((30, 200)))
    xt = svm.normalise_rows(rng.random((10, 200)))
    y = np.where(rng.random(30) < 0.4, 1, -1)
    full = LinearSVC(C=0.5, class_weight={1: 2, -1: 1}, tol=1e-4, max_iter=2000,
                     random_state=0).fit(x, y).decision_function(xt)
    z, zt = reduce(x, xt, intercept=1.0)
    assert z.shape == (30, 30)
    small = svm._fit_decision(z, y, zt, 0.5, 0)
    np.testing.assert_allclose(small, full, atol=1e-3)


@pytest.mark.parametrize("n, d", [(60, 300), (90, 20)])
def test_the_svm_solver_matches_liblinear_on_every_cost_and_row_subset(n, d):
    """harness_plugins.evaluators.dualcd runs LinearSVC's algorithm on a Gram matrix, warm-started along the
    costs: its decision values agree with scikit-learn's to the solver's tolerance, for
    problems on subsets of the rows (the CV folds), in many dimensions or few."""
    rng = np.random.default_rng(n)
    x = svm.normalise_rows(rng.random((n, d)) + np.outer(rng.random(n) < 0.3, rng.random(d)))
    score = x[:, 0] + 0.3 * rng.random(n) * x[:, 0].std()
    y = np.where(score > np.median(score), 1, -1)
    k = svm.gram(x, x)
    subset = np.sort(rng.choice(n, size=2 * n // 3, replace=False))
    costs = (1e-4, 0.0625, 1.0, 100.0)
    grid, coefs, passes = svm.solve_paths(k, [(np.arange(n), y), (subset, y[subset])],
                                          costs, seed=0, n_jobs=2)
    assert list(grid) == sorted(costs) and passes.shape == (2, 4) and passes.min() >= 1
    xa = np.hstack([x, np.ones((n, 1))])
    for rows, coef in zip((np.arange(n), subset), coefs):
        for j, cost in enumerate(grid):
            ref = svm._fit_decision(xa[rows], y[rows], xa, cost, 0)
            mine = k[:, rows] @ coef[:, j]
            assert np.max(np.abs(mine - ref)) < 2e-3 * max(1.0, np.max(np.abs(ref)))
    again = svm.solve_paths(k, [(np.arange(n), y), (subset, y[subset])], costs, seed=0,
                            n_jobs=1)[1]
    for a, b in zip(coefs, again):      # one thread or two: the same numbers
        assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="increasing"):
        from harness_plugins.evaluators.dualcd import solve
        solve(k, [(np.arange(n), y)], np.array([1.0, 0.5]))


def test_svm_knn_and_probe_reach_ap_1_on_separable_features_and_chance_without_signal():
    x, t = separable(120, 0)
    xt, tt = separable(60, 1)
    grid = (1.0, 100.0)
    scores = {"svm": svm.train_svms(x, t, xt, costs=grid, n_jobs=1).scores,
              "knn": knn.knn_scores(x, t, xt, k=5),
              "probe": logreg.fit_scores(x, t, xt, 1e-3)}
    for name, s in scores.items():
        aps = [ap_sklearn_pessimistic(tt[:, c], s[:, c]) for c in range(20)]
        assert min(aps) == pytest.approx(1.0), name
    xn, tn = separable(200, 2, signal=False)
    xnt, tnt = separable(400, 3, signal=False)
    prevalence = np.mean([tnt[:, c].mean() for c in range(20)])
    for name, s in {"svm": svm.train_svms(xn, tn, xnt, costs=grid, n_jobs=1).scores,
                    "knn": knn.knn_scores(xn, tn, xnt, k=5)}.items():
        m = np.mean([ap_sklearn_pessimistic(tnt[:, c], s[:, c]) for c in range(20)])
        assert abs(m - prevalence) < 0.05, (name, m, prevalence)


def test_knn_weights_votes_by_temperature_and_rejects_bad_settings():
    bank = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    targets = np.array([[1, 0], [0, 1], [0, 1]], dtype=np.int8)
    s = knn.knn_scores(bank, targets, np.array([[1.0, 0.1]]), k=2, temperature=0.07)
    w = np.exp((np.array([1.0, 0.8 + 0.06]) / np.hypot(1, 0.1)) / 0.07)
    np.testing.assert_allclose(s[0], [w[0] / w.sum(), w[1] / w.sum()], rtol=1e-5)
    assert (knn.K_DEFAULT, knn.TEMPERATURE_DEFAULT) == (20, 0.07)
    with pytest.raises(BadInputError, match="fewer than k"):
        knn.knn_scores(bank, targets, bank, k=5)
    with pytest.raises(BadInputError, match="temperature"):
        knn.knn_scores(bank, targets, bank, k=1, temperature=0)


def test_lowshot_sampler_counts_and_short_classes():
    rng = np.random.default_rng(0)
    t = (rng.random((400, 20)) < 0.15).astype(np.int8)
    t[rng.random((400, 20)) < 0.02] = -1
    for k in (1, 4):
        sample = svm.lowshot_sample(t, k, np.random.default_rng(k))
        assert ((sample == 1).sum(0) == k).all()
        negatives = (t == 0).sum(0)
        assert ((sample == 0).sum(0) == np.minimum(19 * k, negatives)).all()
        assert (t[sample == 1] == 1).all() and (t[sample == 0] == 0).all()
    again = svm.lowshot_sample(t, 4, np.random.default_rng(4))
    assert np.array_equal(again, svm.lowshot_sample(t, 4, np.random.default_rng(4)))
    t[:, 3] = np.where(t[:, 3] == 1, 0, t[:, 3])
    t[:2, 3] = 1
    samples, skipped = svm.lowshot_samples(t, (1, 2, 4), 2, seed=0)
    assert set(samples) == {1, 2} and "class 3 has 2 positive" in skipped[4]
    with pytest.raises(BadInputError, match="fewer than k = 4"):
        svm.lowshot_samples(t, (4,), 2, seed=0, on_short="error")


# ----------------------------------------------------------------------------- evaluators
@pytest.mark.parametrize("cls, kw", [
    (LinearProbe, {"weight_decays": (1e-5, 1e-3)}),
    # the tiny VOC has 2 positives a class: 2 folds
    (VOC07SVM, {"costs": (0.01, 1.0), "folds": 2, "layers": ("conv2", "pool")}),
    (KNN, {"k": 5}),
    (VOC07LowShot, {"ks": (1, 2, 64), "samples": 2, "costs": (1.0,), "layers": ("pool",)}),
])
def test_evaluators_report_per_layer_metrics_deterministically(cls, kw, voc_root, tmp_path):
    ev = cls(**kw, n_jobs=1)
    m = model()
    metrics = ev.evaluate(m, voc_root, context(tmp_path))
    assert isinstance(metrics, EvalMetrics)
    assert 0 <= metrics.value <= 100 and metrics.protocol["features"]["mode"].startswith("eval")
    if cls is VOC07LowShot:
        assert set(metrics.breakdown) == {"k=1", "k=2"} and "k=64" in metrics.details["skipped"]
        assert metrics.protocol["tuned_on"].startswith("train -> val")
    else:
        assert set(metrics.breakdown) == set(kw.get("layers", ("conv1", "conv2", "pool", "fc")))
        assert metrics.headline == "map_pool" and metrics.value == metrics.breakdown["pool"]
    # again, on a fresh network of the same seed (features now cached): the same figures
    again = ev.evaluate(model(), voc_root, context(tmp_path))
    assert again.value == metrics.value and again.breakdown == metrics.breakdown


def test_frozen_evaluators_see_the_classes_of_the_tiny_voc(voc_root, tmp_path):
    """Class c is a square of colour c: even a random trunk's features find it."""
    metrics = KNN(k=5, layers=("conv1",)).evaluate(model(), voc_root, context(tmp_path))
    assert metrics.value > 30      # chance (share of positives) is about 7%


# ----------------------------------------------------------------------------- storage, checks
def loud_model(scale: float = 1e6) -> PretrainedModel:
    """The tiny network with its first fully connected layer's weights scaled by ``scale``:
    layer ``fc`` then holds values of about 1e5, beyond float16's 65504."""
    m = model()
    with torch.no_grad():
        m.net.head[1].weight.mul_(scale)
    return m


@pytest.mark.parametrize("cls, kw", [
    (LinearProbe, {"weight_decays": (1e-3,)}),
    (VOC07SVM, {"costs": (1.0,), "folds": 2}),
    (KNN, {"k": 5}),
    (VOC07LowShot, {"ks": (1,), "samples": 1, "costs": (1.0,), "headline_layer": "fc"}),
])
def test_activations_beyond_float16_give_one_error_naming_checkpoint_and_layer(cls, kw, voc_root,
                                                                               tmp_path):
    with pytest.raises(frozen.FeatureValuesError) as err:
        cls(**kw, n_jobs=1).evaluate(loud_model(), voc_root, context(tmp_path))
    message = str(err.value)
    assert message.startswith("tiny: split 'trainval': layer fc has ")
    assert "values beyond float16's range (max 65504" in message and "storage=float32" in message
    assert err.value.exit_code == 2


def test_float32_storage_keeps_activations_beyond_float16_and_scores_them(voc_root, tmp_path):
    m = loud_model()
    feats = frozen.split_features(m, voc_root, "test", frozen.FrozenConfig(storage="float32"),
                                  profile="toy", seed=0)
    assert np.abs(feats.layers["fc"]).max() > frozen.FLOAT16_MAX
    assert all(np.isfinite(v).all() for v in feats.layers.values())
    metrics = KNN(k=5, storage="float32").evaluate(m, voc_root, context(tmp_path))
    assert all(np.isfinite(v) for v in metrics.breakdown.values())
    assert metrics.protocol["features"]["storage"] == "float32"


def test_the_paper_profile_stores_float32_and_the_toy_float16(voc_root):
    m = model()
    cfg = frozen.FrozenConfig(image_size=32, layers=("pool",))
    toy = frozen.split_features(m, voc_root, "test", cfg, profile="toy", seed=0)
    paper = frozen.split_features(m, voc_root, "test", cfg, profile="paper", seed=0)
    folders = {f.meta["key"]: f for f in (toy, paper)}
    assert len(folders) == 2                # the dtype is in the cache key
    assert toy.meta["params"]["storage"] == "float16"
    assert paper.meta["params"]["storage"] == "float32"
    from harness.runtime.cache import cache_root

    on_disk = {f.meta["params"]["storage"]: np.load(cache_root() / "frozen" / f.meta["key"] /
                                                    "layer0.npy").dtype for f in (toy, paper)}
    assert on_disk == {"float16": np.float16, "float32": np.float32}
    # float16 rounds; float32 keeps what was extracted
    assert np.allclose(toy.layers["pool"], paper.layers["pool"], rtol=1e-3, atol=1e-3)
    # and the toy protocol says nothing of storage (its frozen fingerprints predate it)
    assert "storage" not in KNN().protocol("toy")["features"]
    assert KNN().protocol("paper")["features"]["storage"] == "float32"
    assert "storage" not in KNN().params() and KNN(storage="float32").params()["storage"] == "float32"


def test_non_finite_activations_are_refused_whatever_the_storage(voc_root):
    m = model()
    with torch.no_grad():
        m.net.head[1].weight[0, 0] = float("nan")
    for storage in frozen.STORAGE_DTYPES:
        with pytest.raises(frozen.FeatureValuesError,
                           match=r"^tiny: split 'test': layer fc has \d+ non-finite values"):
            frozen.split_features(m, voc_root, "test", frozen.FrozenConfig(storage=storage),
                                  profile="toy", seed=0)
    with pytest.raises(BadInputError, match="storage must be one of float16, float32"):
        frozen.FrozenConfig(storage="bfloat16")


# ----------------------------------------------------------------------------- monitor
def test_monitor_scores_val_every_n_epochs_and_leaves_the_network_alone(voc_root):
    from harness.pretext.monitor import Monitor, MonitorConfig

    mon = Monitor(MonitorConfig(kind="knn", voc=voc_root, every=2, image_size=32),
                  (0.5,) * 3, (0.25,) * 3)
    net = LayeredTiny().create(5).train()
    before = [t.clone() for t in net.state_dict().values()]
    assert mon(net, 1, 5) == {}
    row = mon(net, 2, 5)
    assert 0 <= row["monitor_knn_val_map"] <= 100 and row["monitor_layer"] == "pool"
    assert mon(net, 5, 5)                       # the last epoch is always scored
    assert net.training
    assert all(torch.equal(a, b) for a, b in zip(before, net.state_dict().values()))
    assert [h["epoch"] for h in mon.history] == [2, 5]
    with pytest.raises(BadInputError, match="unknown monitor"):
        MonitorConfig(kind="svm", voc=voc_root)


# ----------------------------------------------------------------------------- CLI
def test_harness_eval_runs_a_frozen_feature_evaluator(voc_root, tmp_path):
    import json

    from typer.testing import CliRunner

    from harness.cli import app

    out = tmp_path / "m.json"
    result = CliRunner().invoke(app, [
        "eval", "--evaluator", "knn", "--checkpoint", "random:alexnet",
        "-p", 'layers=["conv1", "pool5"]', "--voc", str(voc_root), "--device", "cpu",
        "--no-progress", "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert saved["headline"] == "map_pool5" and set(saved["breakdown"]) == {"conv1", "pool5"}
    assert saved["details"]["features"]["bn_recomputed_on"] == "trainval"   # random network
    table = [line.split() for line in result.output.splitlines()]
    assert [row[0] for row in table if row and row[0] in ("conv1", "pool5")] == ["conv1", "pool5"]
    assert "{" not in result.output      # one mAP per layer, not the per-class dictionaries
    bad = CliRunner().invoke(app, ["eval", "--evaluator", "knn", "--checkpoint", "random:alexnet",
                                   "-p", 'layers=["conv9"]', "--voc", str(voc_root),
                                   "--no-progress"])
    assert bad.exit_code == 2 and "unknown layer 'conv9'" in bad.output


# ----------------------------------------------------------------------------- leaderboard
def test_leaderboard_shows_frozen_feature_tables_and_plots(tmp_path):
    from harness.leaderboard.board import build_leaderboard
    from harness.leaderboard.writing import INDEX
    from harness.results import records
    from harness.evaluation.stage import metrics_dict
    from tests.test_records import make

    record = make("sound")
    layers = {"conv1": 20.0, "pool5": 30.0}
    record["metrics"]["knn"] = metrics_dict(EvalMetrics(
        headline="map_pool5", formula="f", value=30.0, breakdown=layers, protocol={}))
    record["metrics"]["voc07_lowshot"] = metrics_dict(EvalMetrics(
        headline="lowshot_mean_map", formula="f", value=15.0,
        breakdown={"k=1": 10.0, "k=2": 20.0}, protocol={},
        details={"std": {"k=1": 1.0, "k=2": 2.0}}))
    record["pretext"] = {"monitor": {"curve": [{"epoch": 5, "monitor_knn_val_map": 21.0},
                                               {"epoch": 10, "monitor_knn_val_map": 24.0}]}}
    records.validate_record(record)
    board = build_leaderboard([record])
    pages = {name: text for name, text in board.markdown.items() if name != INDEX}
    knn_page = next(text for text in pages.values() if "evaluator `knn`" in text)
    breakdown = knn_page.split("## Breakdown")[1].split("\n## ")[0]
    assert "conv1" in breakdown and "pool5" in breakdown and "30.0" in breakdown
    assert any("evaluator `voc07_lowshot`" in text for text in pages.values())
    kinds = {kind for kind, _ in board.plots.values()}
    assert {"lowshot", "monitor"} <= kinds
    # the VOC07 rows keep their own page; each other evaluator has one
    assert len(pages) == 3

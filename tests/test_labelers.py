"""The labelers: k-means (both backends, every preprocessing), PCA binary codes, diagnostics."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from harness.api.errors import BadInputError
from harness.api.interfaces import Labels
from harness.api.registry import default_registry
from harness_plugins.labelers import KMeansLabeler, PcaBinaryLabeler
from harness.labels.diagnostics import (purity, score_against_truth, size_warnings,
                                                  truth_scores)
from harness_plugins.labelers.preprocess import PREPROCESS_CHOICES, apply_preprocess

BACKENDS = ["sklearn", pytest.param("faiss", marks=pytest.mark.skipif(
    importlib.util.find_spec("faiss") is None, reason="faiss not installed"))]


def blobs(n_per: int = 60, centres: int = 4, d: int = 6, seed: int = 0,
          spread: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """Separated Gaussian blobs whose dimensions have scales from 0.01 to 100."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, spread, size=(centres, d))
    truth = np.repeat(np.arange(centres), n_per)
    x = means[truth] + rng.normal(0, 1, size=(len(truth), d))
    return (x * np.logspace(-2, 2, d)).astype(np.float32), truth


# --------------------------------------------------------------------------- kmeans
@pytest.mark.parametrize("backend", BACKENDS)
def test_kmeans_finds_the_blobs_and_repeats_itself(backend):
    x, truth = blobs()
    lab = KMeansLabeler(k=4, backend=backend, n_init=3)
    a, b = lab.fit_predict(x), KMeansLabeler(k=4, backend=backend, n_init=3).fit_predict(x)
    assert isinstance(a, Labels) and a.kind == "classes" and a.num_outputs == 4
    assert a.values.dtype == np.int64 and a.values.shape == (len(x),)
    assert adjusted_rand_score(truth, a.values) == pytest.approx(1.0)
    assert np.array_equal(a.values, b.values)
    sizes = a.diagnostics["sizes"]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == len(x)
    json.dumps(a.diagnostics, allow_nan=False)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("backend", BACKENDS)
def test_kmeans_matches_sklearn_best_of_10(backend, seed):
    """Projected search, then refine on everything: within 1% of sklearn's best of 10."""
    x, _ = blobs(n_per=150, centres=10, d=16, seed=3, spread=2.5)
    lab = KMeansLabeler(k=8, backend=backend, search_dim=8, search_sample=500, seed=seed)
    res = lab.fit_predict(x)
    assert res.diagnostics["search_dims"] == 8
    z = apply_preprocess(x, "standardize")
    best = KMeans(8, n_init=10, random_state=0).fit(z).inertia_
    assert res.diagnostics["inertia"] <= best * 1.01


def test_kmeans_search_in_all_dimensions():
    x, truth = blobs()
    res = KMeansLabeler(k=4, search_dim=0).fit_predict(x)
    assert res.diagnostics["search_dims"] == 6
    assert adjusted_rand_score(truth, res.values) == pytest.approx(1.0)


def test_kmeans_warns_when_the_search_has_fewer_components_than_clusters():
    x, _ = blobs()
    warnings = KMeansLabeler(k=5, search_dim=2).fit_predict(x).diagnostics["warnings"]
    assert any("fewer than k=5: raise search_dim" in w for w in warnings)
    assert not any("search_dim" in w for w in KMeansLabeler(k=4).fit_predict(x).diagnostics["warnings"])


def test_kmeans_seed_changes_the_search():
    x, _ = blobs(n_per=100, centres=10, d=8, seed=1, spread=1.5)
    runs = {KMeansLabeler(k=6, seed=s, n_init=1).fit_predict(x).values.tobytes() for s in range(4)}
    assert len(runs) > 1


def test_standardisation_is_what_makes_small_scale_structure_visible():
    """Clusters live in unit-scale dimensions; one loud noise dimension hides them unscaled."""
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 80)
    signal = np.eye(3)[truth] * 8 + rng.normal(0, 1, size=(240, 3))
    noise = rng.normal(0, 1000, size=(240, 1))
    x = np.hstack([signal, noise]).astype(np.float32)
    scaled = KMeansLabeler(k=3, preprocess="standardize").fit_predict(x).values
    raw = KMeansLabeler(k=3, preprocess="none").fit_predict(x).values
    assert adjusted_rand_score(truth, scaled) > 0.95
    assert adjusted_rand_score(truth, raw) < 0.2


@pytest.mark.parametrize("preprocess", PREPROCESS_CHOICES)
def test_every_preprocessing_clusters(preprocess):
    x, truth = blobs()
    lab = KMeansLabeler(k=4, preprocess=preprocess, pca_dim=4 if preprocess == "pca_whiten" else None)
    res = lab.fit_predict(x)
    assert res.diagnostics["n_features_clustered"] == (4 if preprocess == "pca_whiten" else 6)
    assert res.values.shape == truth.shape and len(set(res.values)) == 4
    if preprocess in ("standardize", "pca_whiten"):  # unscaled, the 100x dimension decides
        assert adjusted_rand_score(truth, res.values) > 0.9


def test_l2_clusters_by_direction_whatever_the_loudness():
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 60)
    directions = np.eye(4)[:3] + 0.2
    gains = rng.uniform(0.1, 10, size=(180, 1))
    x = (gains * (directions[truth] + rng.normal(0, 0.05, size=(180, 4)))).astype(np.float32)
    assert adjusted_rand_score(truth, KMeansLabeler(k=3, preprocess="l2").fit_predict(x).values) > 0.95
    assert adjusted_rand_score(truth, KMeansLabeler(k=3).fit_predict(x).values) < 0.9


def test_preprocess_outputs():
    x, _ = blobs()
    z = apply_preprocess(x, "standardize")
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-4)
    w = apply_preprocess(x, "pca_whiten", pca_dim=4)
    np.testing.assert_allclose(np.cov(w.T), np.eye(4), atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(apply_preprocess(x, "l2"), axis=1), 1, rtol=1e-5)


def test_registry_and_params():
    lab = default_registry().create("labeler", "kmeans", k=7, seed=3)
    assert isinstance(lab, KMeansLabeler)
    p = lab.params()
    assert p["k"] == 7 and p["seed"] == 3 and p["preprocess"] == "standardize"
    json.dumps(p, allow_nan=False)
    assert default_registry().create("labeler", "pca_binary").params()["bits"] == 30


def _bad(kind: str, n: int = 40, d: int = 5) -> np.ndarray:
    x = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    if kind == "nan":
        x[7, 2] = np.nan
    elif kind == "inf":
        x[3, 0] = np.inf
    elif kind == "constant":
        x[:] = 2.5
    return x


@pytest.mark.parametrize("kind, message", [
    ("nan", "NaN or Inf in 1 of 40 rows (first: row 7)"),
    ("inf", "NaN or Inf in 1 of 40 rows (first: row 3)"),
    ("constant", "constant"),
])
@pytest.mark.parametrize("cls", [KMeansLabeler, PcaBinaryLabeler])
def test_bad_features_are_one_line_errors(kind, message, cls):
    lab = cls(k=3) if cls is KMeansLabeler else cls(bits=3)
    with pytest.raises(BadInputError, match="^[^\n]*$") as err:
        lab.fit_predict(_bad(kind))
    assert message in str(err.value)


def test_bad_parameters_and_shapes():
    with pytest.raises(BadInputError, match="k >= 2"):
        KMeansLabeler(k=1)
    with pytest.raises(BadInputError, match="fewer than k=50"):
        KMeansLabeler(k=50).fit_predict(_bad("none", n=20))
    with pytest.raises(BadInputError, match="2-D"):
        KMeansLabeler(k=2).fit_predict(np.zeros(10))
    with pytest.raises(BadInputError, match="preprocess"):
        KMeansLabeler(preprocess="zscore")
    with pytest.raises(BadInputError, match="pca_dim"):
        KMeansLabeler(preprocess="pca_whiten")
    with pytest.raises(BadInputError, match="backend"):
        KMeansLabeler(backend="cuml")
    with pytest.raises(BadInputError, match="bits >= 1"):
        PcaBinaryLabeler(bits=0)
    with pytest.raises(BadInputError, match="at most 5"):
        PcaBinaryLabeler(bits=6).fit_predict(_bad("none"))


# --------------------------------------------------------------------------- pca_binary
def test_pca_binary_codes_are_balanced_bits_that_separate_the_blobs():
    x, truth = blobs(n_per=50, centres=4)
    res = PcaBinaryLabeler(bits=3).fit_predict(x)
    assert res.kind == "bits" and res.num_outputs == 3
    assert res.values.dtype == np.uint8 and res.values.shape == (200, 3)
    assert set(np.unique(res.values)) == {0, 1}
    np.testing.assert_allclose(res.values.mean(0), 0.5, atol=0.02)
    # the codes carry the blob structure (independent random bits would give NMI near 0)
    code_ids = res.values @ (1 << np.arange(3))
    assert normalized_mutual_info_score(truth, code_ids) > 0.4
    assert np.array_equal(res.values, PcaBinaryLabeler(bits=3).fit_predict(x).values)
    assert 0 < res.diagnostics["explained_variance"] <= 1


# --------------------------------------------------------------------------- diagnostics
def test_size_warnings():
    assert size_warnings([25, 25, 25, 25]) == []
    w = size_warnings([0, 90, 5, 5])
    assert any("empty" in line for line in w) and any("cluster 1 dominates" in line for line in w)
    assert any("tiny" in line for line in size_warnings([200, 200, 200, 2]))


def test_truth_scores():
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert purity(labels, ["a", "a", "b", "b", "b", "b"]) == pytest.approx(5 / 6)
    s = truth_scores(labels, {"scene": ["x", "x", "x", "y", "y", "y"],
                              "objects": ["car;dog", "car", "car", "", "dog", ""]})
    assert s["scene"]["nmi"] == pytest.approx(1.0) and s["scene"]["purity"] == 1.0
    assert s["objects"]["values"] == 2 and 0 < s["objects"]["mean_nmi_per_value"] <= 1
    bits = np.array([[0, 1], [0, 0], [0, 1], [1, 0], [1, 1], [1, 0]], dtype=np.uint8)
    b = score_against_truth(bits, "bits", {"scene": ["x", "x", "x", "y", "y", "y"]})
    assert b["scene"]["best_bit_nmi"] == pytest.approx(1.0) and b["scene"]["mean_bit_nmi"] < 1


@pytest.mark.parametrize("cls", [KMeansLabeler, PcaBinaryLabeler])
def test_harness_conformance_kit(cls):
    from harness.api.testing import check_labeler

    check_labeler(cls)


def test_labelers_declare_the_size_that_k_sets():
    from harness.labels.pseudo_labels import size_param

    assert size_param(KMeansLabeler, "kmeans") == "k"
    assert size_param(PcaBinaryLabeler, "pca_binary") == "bits"

    class Sizeless(KMeansLabeler):
        size_param = None

    with pytest.raises(BadInputError, match="declares no size parameter.*--labeler-param"):
        size_param(Sizeless, "sizeless")

"""The paper's labeler: k-means on the sound features, cluster id = pretext class.

How it clusters (the same two stages for both backends, so they differ only in speed):

1. **Search**: ``n_init`` k-means++ starts, each followed by Lloyd iterations, on a random
   sample of ``init_sample`` rows; the start with the lowest objective on that sample
   wins. Restarts are what keep k-means out of poor local minima, and on a sample they
   cost a fraction of a pass over all the data.
2. **Refine**: Lloyd iterations over *all* rows from the winner, until the objective (the
   inertia) improves by less than ``tol`` (relative) or ``max_iter`` passes are done.

Then every row gets its nearest centroid and clusters are renumbered by decreasing size
(cluster 0 is the largest), so the same parameters and seed give the same labels.

Backends: ``sklearn`` (scikit-learn's ``KMeans``, the default) and ``faiss`` (faster Lloyd
passes; optional extra ``harness[faiss]``). faiss's own ``Kmeans`` starts from random rows
and trains on at most 256 rows per centroid unless told otherwise; here it always gets
k-means++ starts and ``max_points_per_centroid`` is lifted so every row counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

import numpy as np

from harness.errors import BadInputError
from harness.interfaces import Labeler, Labels

from .diagnostics import cluster_sizes, size_warnings
from .preprocess import apply_preprocess, check_features, check_preprocess

Backend = Literal["sklearn", "faiss"]
BACKENDS: tuple[str, ...] = get_args(Backend)


@dataclass(frozen=True)
class Fit:
    """Result of one backend run: centroids, assignment, objective, passes used."""

    centroids: np.ndarray
    labels: np.ndarray
    inertia: float
    refine_iters: int
    search_inertia: float


class KMeansLabeler(Labeler):
    """k-means cluster ids (the paper's pseudo-labels; it uses k = 15 for its tables)."""

    name = "kmeans"
    description = "k-means cluster ids on standardised sound features (the paper's labels)"
    output_kind: ClassVar = "classes"

    def __init__(self, *, k: int = 15, seed: int = 0, n_init: int = 10,
                 init_sample: int = 10_000, max_iter: int = 100, tol: float = 1e-4,
                 preprocess: str = "standardize", pca_dim: int | None = None,
                 backend: str = "sklearn"):
        if int(k) < 2:
            raise BadInputError(f"k-means needs k >= 2 clusters, got k={k}")
        if int(n_init) < 1 or int(max_iter) < 1:
            raise BadInputError(f"n_init and max_iter must be >= 1, got {n_init} and {max_iter}")
        if int(init_sample) < int(k):
            raise BadInputError(f"init_sample ({init_sample}) must be at least k ({k})")
        if backend not in BACKENDS:
            raise BadInputError(f"unknown k-means backend {backend!r}; choose one of "
                                f"{', '.join(BACKENDS)}")
        check_preprocess(preprocess, pca_dim)
        self.k, self.seed, self.n_init = int(k), int(seed), int(n_init)
        self.init_sample, self.max_iter, self.tol = int(init_sample), int(max_iter), float(tol)
        self.preprocess = preprocess
        self.pca_dim = None if pca_dim is None else int(pca_dim)
        self.backend = backend

    def params(self) -> dict[str, Any]:
        return {"k": self.k, "seed": self.seed, "n_init": self.n_init,
                "init_sample": self.init_sample, "max_iter": self.max_iter, "tol": self.tol,
                "preprocess": self.preprocess, "pca_dim": self.pca_dim, "backend": self.backend}

    def fit_predict(self, features: np.ndarray) -> Labels:
        """Cluster the rows of ``features``; BadInputError if they cannot be clustered."""
        n = len(features) if np.ndim(features) == 2 else 0
        if 0 < n < self.k:
            raise BadInputError(f"features have {n} samples, fewer than k={self.k} clusters")
        x = check_features(features)
        z = apply_preprocess(x, self.preprocess, pca_dim=self.pca_dim, seed=self.seed)
        fit = _FITTERS[self.backend](z, self)
        labels = _relabel_by_size(fit.labels, self.k)
        sizes = cluster_sizes(labels, self.k)
        diagnostics = {
            "sizes": sizes, "warnings": size_warnings(sizes),
            "inertia": fit.inertia, "inertia_per_sample": fit.inertia / len(z),
            "search_inertia_on_sample": fit.search_inertia, "refine_iters": fit.refine_iters,
            "n_samples": int(len(z)), "n_features": int(x.shape[1]),
            "n_features_clustered": int(z.shape[1]),
        }
        return Labels(values=labels, kind="classes", num_outputs=self.k, diagnostics=diagnostics)


# --------------------------------------------------------------------------- stages
def _search_sample(z: np.ndarray, cfg: KMeansLabeler) -> np.ndarray:
    """The rows the restarts run on: all of them, or ``init_sample`` drawn with the seed."""
    if len(z) <= cfg.init_sample:
        return z
    rng = np.random.default_rng(cfg.seed)
    return z[np.sort(rng.choice(len(z), cfg.init_sample, replace=False))]


#: scikit-learn adds per-thread partial centroid sums in whatever order the threads finish;
#: with at most two threads that order cannot change a sum (a + b == b + a), with more it
#: can change the last bit, and rarely a label. Reproducibility wins over cores here.
SKLEARN_MAX_THREADS = 2


def _fit_sklearn(z: np.ndarray, cfg: KMeansLabeler) -> Fit:
    """scikit-learn: best of ``n_init`` k-means++ runs on the sample, then all rows."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=SKLEARN_MAX_THREADS, user_api="openmp"):
        return _fit_sklearn_stages(z, cfg)


def _fit_sklearn_stages(z: np.ndarray, cfg: KMeansLabeler) -> Fit:
    from sklearn.cluster import KMeans

    sample = _search_sample(z, cfg)
    # float64 for the search: sklearn's k-means++ otherwise upcasts float32 chunk by chunk,
    # which makes it about twice as slow; the sample is small enough to copy.
    search = KMeans(cfg.k, n_init=cfg.n_init, max_iter=cfg.max_iter, tol=cfg.tol,
                    random_state=cfg.seed).fit(sample.astype(np.float64))
    start = search.cluster_centers_.astype(z.dtype)
    if sample is z:
        return Fit(start, search.labels_, float(search.inertia_), 0, float(search.inertia_))
    final = KMeans(cfg.k, init=start, n_init=1, max_iter=cfg.max_iter, tol=cfg.tol,
                   random_state=cfg.seed).fit(z)
    return Fit(final.cluster_centers_, final.labels_, float(final.inertia_),
               int(final.n_iter_), float(search.inertia_))


def _fit_faiss(z: np.ndarray, cfg: KMeansLabeler) -> Fit:
    """faiss: the same stages, with k-means++ starts from scikit-learn and Lloyd in faiss."""
    from sklearn.cluster import kmeans_plusplus

    faiss = _import_faiss()
    sample = _search_sample(z, cfg)
    sample64 = sample.astype(np.float64)
    seeds = np.random.SeedSequence(cfg.seed).generate_state(cfg.n_init) % 2**31
    best: tuple[float, np.ndarray] | None = None
    for s in seeds:
        start, _ = kmeans_plusplus(sample64, cfg.k, random_state=int(s))
        centroids, objective, _ = _faiss_lloyd(faiss, sample, start.astype(np.float32), cfg,
                                               int(s))
        if best is None or objective < best[0]:
            best = (objective, centroids)
    search_inertia, start = best
    if sample is z:
        centroids, inertia, iters = start, search_inertia, 0
    else:
        centroids, inertia, iters = _faiss_lloyd(faiss, z, start, cfg, cfg.seed)
    labels, inertia = _faiss_assign(faiss, z, centroids)
    return Fit(centroids, labels, inertia, iters, search_inertia)


def _faiss_lloyd(faiss: Any, x: np.ndarray, start: np.ndarray, cfg: KMeansLabeler,
                 seed: int) -> tuple[np.ndarray, float, int]:
    """Lloyd passes in faiss from ``start`` over every row, stopping at ``tol``.

    faiss has no convergence test, so it runs one pass per call and the loop checks the
    relative improvement of the objective (faiss reports it before each update).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    centroids, previous, iters = np.ascontiguousarray(start, dtype=np.float32), np.inf, 0
    for iters in range(1, cfg.max_iter + 1):
        km = faiss.Kmeans(x.shape[1], cfg.k, niter=1, seed=seed, verbose=False,
                          max_points_per_centroid=len(x), min_points_per_centroid=1)
        km.train(x, init_centroids=centroids)
        objective = float(km.obj[-1])          # inertia of the assignment to `centroids`
        centroids = km.centroids
        if previous - objective <= cfg.tol * objective:
            break
        previous = objective
    _, final = _faiss_assign(faiss, x, centroids)
    return centroids, final, iters


def _faiss_assign(faiss: Any, x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, float]:
    """Nearest centroid of every row and the total squared distance (exact search)."""
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    dist, idx = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    return idx[:, 0].astype(np.int64), float(dist.sum(dtype=np.float64))


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise BadInputError("backend 'faiss' needs faiss: pip install 'harness[faiss]' "
                            "(or faiss-cpu)") from exc
    return faiss


_FITTERS = {"sklearn": _fit_sklearn, "faiss": _fit_faiss}


def _relabel_by_size(labels: np.ndarray, k: int) -> np.ndarray:
    """Renumber clusters so that 0 is the largest (ties: lower old id first)."""
    sizes = np.bincount(labels, minlength=k)
    order = np.lexsort((np.arange(k), -sizes))      # old ids, largest first
    new_id = np.empty(k, dtype=np.int64)
    new_id[order] = np.arange(k)
    return new_id[labels]

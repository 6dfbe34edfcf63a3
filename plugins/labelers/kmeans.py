"""The paper's labeler: k-means on the sound features, cluster id = pretext class.

How it clusters (two stages; the backends differ only in who runs the second):

1. **Search**: every row is projected onto the top ``search_dim`` principal components of
   the (preprocessed) features, fitted on ``search_sample`` rows, and scikit-learn runs
   ``n_init`` k-means++ starts there, keeping the one of lowest inertia. Restarts are what
   keep k-means out of poor local minima; in 64 dimensions they cost a fraction of one
   pass over 3,100, and the top components hold the between-cluster structure, so the
   search sees the clusters rather than the noise.
2. **Refine**: the winner's clusters give centroids in the full space, and Lloyd passes
   over all rows and all dimensions continue from them until ``tol`` or ``max_iter``.
   The objective that is minimised is therefore plain k-means on the preprocessed
   features; the projection only chooses where to start.

Then every row gets its nearest centroid and clusters are renumbered by decreasing size
(cluster 0 is the largest), so the same parameters and seed give the same labels.

Backends for the refine: ``sklearn`` (scikit-learn's ``KMeans``, the default; ``tol`` is
its centroid-shift rule) and ``faiss`` (optional extra ``harness[faiss]``; ``tol`` is the
relative improvement of the inertia per pass). faiss's own ``Kmeans`` starts from random
rows and trains on at most 256 rows per centroid unless told otherwise; here it starts
from the search's centroids and ``max_points_per_centroid`` is lifted so every row counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, get_args

import numpy as np

from harness.api.errors import BadInputError
from harness.api.interfaces import SEED_BOUNDS, Bounds, Labeler, Labels

from harness.api import cluster_sizes, size_warnings
from .preprocess import apply_preprocess, check_features, check_preprocess

Backend = Literal["sklearn", "faiss"]
BACKENDS: tuple[str, ...] = get_args(Backend)

#: scikit-learn adds per-thread partial centroid sums in whatever order the threads finish;
#: with at most two threads that order cannot change a sum (a + b == b + a), with more it
#: can change the last bit, and rarely a label. Reproducibility wins over cores here
#: (faiss sums in row order on any number of threads, so it is not limited).
SKLEARN_MAX_THREADS = 2


def _sklearn_threads():
    """Context in which scikit-learn's k-means uses at most SKLEARN_MAX_THREADS threads."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=SKLEARN_MAX_THREADS, user_api="openmp")


@dataclass(frozen=True)
class Search:
    """The search stage's outcome: a cluster id per row and its inertia where it ran."""

    labels: np.ndarray
    inertia: float
    dims: int


@dataclass(frozen=True)
class Refined:
    """The refine stage's outcome: centroids in the full space and the passes it took."""

    centroids: np.ndarray
    iters: int


class KMeansLabeler(Labeler):
    """k-means cluster ids (the paper's pseudo-labels; it uses k = 15 for its tables).

    Parameters (all recorded in ``params()``):

    - ``k``: clusters (the paper tries 5 to 50); ``seed``: drives every random choice.
    - ``n_init``: k-means++ restarts in the search (10, like scikit-learn's classic default).
    - ``search_dim``: principal components the search runs in (64; keep it above ``k``;
      0 searches in every dimension); ``search_sample``: rows the components are fitted on.
    - ``max_iter`` / ``tol``: limit and stopping rule of the Lloyd passes (both stages).
    - ``preprocess``: ``standardize`` (default: the features' dimensions have very
      different scales), ``none``, ``pca_whiten`` (with ``pca_dim``) or ``l2``; see
      :mod:`.preprocess`. Inertia is reported on the preprocessed features.
    - ``backend``: ``sklearn`` (default) or ``faiss`` for the full-dimensional passes.
    """

    name = "kmeans"
    description = "k-means cluster ids on standardised sound features (the paper's labels)"
    output_kind: ClassVar = "classes"
    size_param: ClassVar = "k"

    def __init__(self, *, k: Annotated[int, Bounds(2, 100_000)] = 15,
                 seed: Annotated[int, SEED_BOUNDS] = 0, n_init: Annotated[int, Bounds(1, 1000)] = 10,
                 search_dim: Annotated[int, Bounds(0, None)] = 64,
                 search_sample: Annotated[int, Bounds(2, None)] = 10_000,
                 max_iter: Annotated[int, Bounds(1, 100_000)] = 100,
                 tol: Annotated[float, Bounds(0.0, None)] = 1e-4,
                 preprocess: str = "standardize", pca_dim: int | None = None,
                 backend: str = "sklearn"):
        if int(k) < 2:
            raise BadInputError(f"k-means needs k >= 2 clusters, got k={k}")
        if int(n_init) < 1 or int(max_iter) < 1:
            raise BadInputError(f"n_init and max_iter must be >= 1, got {n_init} and {max_iter}")
        if int(search_dim) < 0 or int(search_sample) < 2:
            raise BadInputError(f"search_dim must be >= 0 (0: search all dimensions) and "
                                f"search_sample >= 2, got {search_dim} and {search_sample}")
        if backend not in BACKENDS:
            raise BadInputError(f"unknown k-means backend {backend!r}; choose one of "
                                f"{', '.join(BACKENDS)}")
        check_preprocess(preprocess, pca_dim)
        self.k, self.seed, self.n_init = int(k), int(seed), int(n_init)
        self.search_dim, self.search_sample = int(search_dim), int(search_sample)
        self.max_iter, self.tol = int(max_iter), float(tol)
        self.preprocess = preprocess
        self.pca_dim = None if pca_dim is None else int(pca_dim)
        self.backend = backend

    def params(self) -> dict[str, Any]:
        return {"k": self.k, "seed": self.seed, "n_init": self.n_init,
                "search_dim": self.search_dim, "search_sample": self.search_sample,
                "max_iter": self.max_iter, "tol": self.tol, "preprocess": self.preprocess,
                "pca_dim": self.pca_dim, "backend": self.backend}

    def fit_predict(self, features: np.ndarray) -> Labels:
        """Cluster the rows of ``features``; BadInputError if they cannot be clustered."""
        n = len(features) if np.ndim(features) == 2 else 0
        if 0 < n < self.k:
            raise BadInputError(f"features have {n} samples, fewer than k={self.k} clusters: "
                                f"lower k to {n} or less (--k {n}), or cluster at least "
                                f"{self.k} clips")
        x = check_features(features)
        z = apply_preprocess(x, self.preprocess, pca_dim=self.pca_dim, seed=self.seed)
        search = _search(z, self)
        refined = _REFINERS[self.backend](z, _centroids_of(z, search.labels, self.k), self)
        assigned, inertia = _assign(z, refined.centroids)
        labels = _relabel_by_size(assigned, self.k)
        sizes = cluster_sizes(labels, self.k)
        warnings = size_warnings(sizes)
        if search.dims < min(self.k, z.shape[1]):
            warnings.append(f"the search ran in {search.dims} principal components, fewer "
                            f"than k={self.k}: raise search_dim (or 0 for all dimensions)")
        diagnostics = {
            "sizes": sizes, "warnings": warnings,
            "inertia": inertia, "inertia_per_sample": inertia / len(z),
            "search_dims": search.dims, "search_inertia": search.inertia,
            "refine_iters": refined.iters,
            "n_samples": int(len(z)), "n_features": int(x.shape[1]),
            "n_features_clustered": int(z.shape[1]),
        }
        return Labels(values=labels, kind="classes", num_outputs=self.k, diagnostics=diagnostics)


# --------------------------------------------------------------------------- search
def _search(z: np.ndarray, cfg: KMeansLabeler) -> Search:
    """Best of ``n_init`` k-means++ runs (scikit-learn) on the projected rows."""
    from sklearn.cluster import KMeans

    y = _project(z, cfg)
    if y is not z:  # few columns: float64 is cheap, and sklearn's k-means++ is faster in it
        y = y.astype(np.float64)
    with _sklearn_threads():
        km = KMeans(cfg.k, n_init=cfg.n_init, max_iter=cfg.max_iter, tol=cfg.tol,
                    random_state=cfg.seed).fit(y)
    return Search(labels=km.labels_.astype(np.int64), inertia=float(km.inertia_), dims=y.shape[1])


def _project(z: np.ndarray, cfg: KMeansLabeler) -> np.ndarray:
    """Rows on the top ``search_dim`` principal components (fitted on a sample), or as is."""
    from sklearn.decomposition import PCA

    n, d = z.shape
    dim = min(cfg.search_dim, n - 1)
    if cfg.search_dim == 0 or dim >= d or dim < 1:
        return z
    fit_rows = z
    if n > cfg.search_sample:
        rng = np.random.default_rng(cfg.seed)
        fit_rows = z[np.sort(rng.choice(n, cfg.search_sample, replace=False))]
    dim = min(dim, len(fit_rows) - 1)
    pca = PCA(n_components=dim, svd_solver="randomized", random_state=cfg.seed).fit(fit_rows)
    return pca.transform(z)


def _centroids_of(z: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean of each cluster's rows in the full space (a sparse one-hot product)."""
    from scipy.sparse import csr_matrix

    n = len(labels)
    onehot = csr_matrix((np.ones(n, dtype=z.dtype), (labels, np.arange(n))), shape=(k, n))
    counts = np.bincount(labels, minlength=k)
    return (np.asarray(onehot @ z) / np.maximum(counts, 1)[:, None]).astype(np.float32)


# --------------------------------------------------------------------------- refine
def _refine_sklearn(z: np.ndarray, start: np.ndarray, cfg: KMeansLabeler) -> Refined:
    from sklearn.cluster import KMeans

    with _sklearn_threads():
        km = KMeans(cfg.k, init=start.astype(z.dtype), n_init=1, max_iter=cfg.max_iter,
                    tol=cfg.tol, random_state=cfg.seed).fit(z)
    return Refined(centroids=km.cluster_centers_, iters=int(km.n_iter_))


def _refine_faiss(z: np.ndarray, start: np.ndarray, cfg: KMeansLabeler) -> Refined:
    """Lloyd passes in faiss over every row, stopping at ``tol``.

    faiss has no convergence test, so it runs one pass per call and the loop checks the
    relative improvement of the objective (faiss reports it before each update).
    """
    faiss = _import_faiss()
    x = np.ascontiguousarray(z, dtype=np.float32)
    centroids, previous, iters = np.ascontiguousarray(start, dtype=np.float32), np.inf, 0
    for iters in range(1, cfg.max_iter + 1):
        km = faiss.Kmeans(x.shape[1], cfg.k, niter=1, seed=cfg.seed % 2**31, verbose=False,
                          max_points_per_centroid=len(x), min_points_per_centroid=1)
        km.train(x, init_centroids=centroids)
        objective = float(km.obj[-1])          # inertia of the assignment to `centroids`
        centroids = km.centroids
        if previous - objective <= cfg.tol * objective:
            break
        previous = objective
    return Refined(centroids=centroids, iters=iters)


_REFINERS = {"sklearn": _refine_sklearn, "faiss": _refine_faiss}


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise BadInputError("backend 'faiss' needs faiss: pip install 'harness[faiss]' "
                            "(or faiss-cpu)") from exc
    return faiss


# --------------------------------------------------------------------------- labels
def _assign(z: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, float]:
    """Nearest centroid of every row and the inertia (sum of squared distances)."""
    from sklearn.metrics import pairwise_distances_argmin_min

    idx, dist = pairwise_distances_argmin_min(z, centroids.astype(z.dtype))
    return idx.astype(np.int64), float(np.square(dist, dtype=np.float64).sum())


def _relabel_by_size(labels: np.ndarray, k: int) -> np.ndarray:
    """Renumber clusters so that 0 is the largest (ties: lower old id first)."""
    sizes = np.bincount(labels, minlength=k)
    order = np.lexsort((np.arange(k), -sizes))      # old ids, largest first
    new_id = np.empty(k, dtype=np.int64)
    new_id[order] = np.arange(k)
    return new_id[labels]

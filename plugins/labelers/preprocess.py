"""Checking a feature matrix and rescaling it before clustering.

Sound features mix dimensions of very different scales (the 502 texture statistics range
from band powers near 1e-3 to moments near 10; MFCC coefficient 0 dwarfs the others), and
k-means' squared distances are dominated by the largest ones. Hence the default,
``standardize``: every dimension centred and scaled to unit variance, so each counts alike.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from harness.api.errors import BadInputError

Preprocess = Literal["none", "standardize", "pca_whiten", "l2"]
PREPROCESS_CHOICES: tuple[str, ...] = get_args(Preprocess)


def check_features(features: np.ndarray, *, min_rows: int = 1, what: str = "features") -> np.ndarray:
    """The matrix as float32 [N, D], or a one-line BadInputError saying why it is unusable.

    Rejected: not two-dimensional, not numeric, fewer than ``min_rows`` rows (k-means needs
    at least k samples), any NaN or Inf (with the first offending row), and a matrix whose
    rows are all identical (nothing to cluster).
    """
    x = np.asarray(features)
    if x.ndim != 2:
        raise BadInputError(f"{what} must be a 2-D matrix [N, D], got shape {tuple(x.shape)}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise BadInputError(f"{what} must be numeric, got dtype {x.dtype}")
    n, d = x.shape
    if d == 0:
        raise BadInputError(f"{what} have no columns (shape {tuple(x.shape)})")
    if n < min_rows:
        raise BadInputError(f"{what} have {n} samples, fewer than the {min_rows} needed")
    x = x.astype(np.float32, copy=False)
    # column sums in float64 cannot overflow on float32 input, so they are finite exactly
    # when every value is: one cheap pass, and the rows are only searched when needed
    if not np.isfinite(x.sum(axis=0, dtype=np.float64)).all():
        finite = np.isfinite(x).all(axis=1)
        bad = np.flatnonzero(~finite)
        raise BadInputError(f"{what} contain NaN or Inf in {bad.size} of {n} rows "
                            f"(first: row {int(bad[0])})")
    if np.all(x.max(axis=0) == x.min(axis=0)):
        raise BadInputError(f"{what} are constant: all {n} rows are identical, nothing to cluster")
    return x


def check_preprocess(preprocess: str, pca_dim: int | None) -> None:
    """Reject an unknown method or a bad ``pca_dim`` when the labeler is built."""
    if preprocess not in PREPROCESS_CHOICES:
        raise BadInputError(f"unknown preprocess {preprocess!r}; choose one of "
                            f"{', '.join(PREPROCESS_CHOICES)}")
    if preprocess == "pca_whiten" and (pca_dim is None or int(pca_dim) < 1):
        raise BadInputError(f"preprocess 'pca_whiten' needs pca_dim >= 1, got {pca_dim}")


def apply_preprocess(x: np.ndarray, preprocess: str, *, pca_dim: int | None = None,
                     seed: int = 0) -> np.ndarray:
    """Rescale a checked float32 matrix [N, D] for clustering; returns float32.

    - ``none``: the features as they are.
    - ``standardize``: each dimension to mean 0, variance 1 (constant dimensions become 0).
    - ``pca_whiten``: standardise, then project onto the top ``pca_dim`` principal
      components, each scaled to unit variance (faster k-means on fewer dimensions; the
      standardisation first keeps the large-scale dimensions from taking every component).
    - ``l2``: each row scaled to unit Euclidean norm (clusters by direction, not loudness).
    """
    from sklearn.preprocessing import StandardScaler, normalize

    check_preprocess(preprocess, pca_dim)
    if preprocess == "none":
        return x
    if preprocess == "l2":
        return normalize(x).astype(np.float32, copy=False)
    z = StandardScaler().fit_transform(x).astype(np.float32, copy=False)
    if preprocess == "standardize":
        return z
    return pca_project(z, int(pca_dim), seed=seed, whiten=True)[0]


def pca_project(x: np.ndarray, dim: int, *, seed: int, whiten: bool) -> tuple[np.ndarray, float]:
    """Project onto the top ``dim`` principal components (sklearn's PCA, signs fixed).

    Returns the projection (float32 [N, dim]) and the share of variance it explains.
    """
    from sklearn.decomposition import PCA

    limit = min(x.shape)
    if dim > limit:
        raise BadInputError(f"cannot keep {dim} principal components of a {x.shape[0]} x "
                            f"{x.shape[1]} matrix (at most {limit})")
    pca = PCA(n_components=dim, whiten=whiten, random_state=seed)
    projected = pca.fit_transform(x)
    flat = pca.explained_variance_ <= 1e-12 * max(float(pca.explained_variance_[0]), 1e-30)
    if flat.any():
        raise BadInputError(f"features have only {int((~flat).sum())} independent directions, "
                            f"fewer than the {dim} principal components asked for")
    return projected.astype(np.float32, copy=False), float(pca.explained_variance_ratio_.sum())

"""Bootstrap confidence intervals for the leaderboard: over runs and over test images.

A Table-1 figure is a mean over runs (run seeds, on one or more toy worlds) of a test-set
mAP. Two things vary that a reader should see: the runs (another seed gives another
network) and the test images (another draw of the same world's test set gives another
mAP). The bootstrap here resamples both, with a fixed seed and replicate count so that
the leaderboard stays byte-for-byte reproducible:

- **test images**, per world: replicate ``b`` reweights every test image of world ``w``
  by how often a multinomial draw of ``N`` images out of ``N`` picked it
  (:class:`ImageResamples`); the same draw is shared by every row and evaluator on that
  world, so the rows are paired on the same images;
- **runs**, per row and world: the row's runs on that world are drawn with replacement,
  independently for each row (each row has its own random stream).

The mAP of a run under an image resample is computed exactly as Table 1's headline
formula would on the resampled set (scikit-learn's non-interpolated AP of
``score - 1e-5 * label``, difficult images left out): :func:`weighted_map` evaluates it
for all replicates at once, with the resample counts as sample weights (a duplicated
image and a weight of 2 give the same AP). A class that draws no positive image in a
replicate is left out of that replicate's mean.

Where test images are resampled, the interval is the basic (reverse-percentile)
bootstrap interval of the statistic (the
mean over runs, or a difference of two rows' means): ``[2 t - q97.5, 2 t - q2.5]`` with
``t`` the statistic on the data as observed and ``q`` the replicates' percentiles. Not the
plain percentile interval: AP on a resampled test set is biased upwards (an image drawn
twice adds its precision twice, and the resample holds fewer distinct positives). On the
first sealed-test run (random AlexNet, 1,000 images) the replicates' mean was 1.0 mAP
above the observed mAP, so a percentile interval sat almost entirely above the figure it
was attached to. The basic interval reflects that shift back. Where the bias outgrows the
spread (a test set so small that a class has a single positive image), more than 97.5% of
the replicates lie above the figure and the basic interval lies wholly below it: the
leaderboard then marks the interval as not containing its point and says why
(:data:`harness.leaderboard.cells.EXCLUDES_NOTE`). (Runs-only replicates, for
records without per-image scores, take the plain percentile interval: a mean over runs
has no such bias.) It covers run-to-run
variation and test-image sampling on the worlds the runs used; it does not cover the
choice of worlds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from harness.evaluation.ap import TIE_EPS, SplitScores

#: bootstrap replicates per interval
REPLICATES = 2000
#: seed of every random stream of the bootstrap (streams differ by their spawn keys)
SEED = 0
#: the interval's coverage
LEVEL = 0.95


def stream(*key: str) -> np.random.Generator:
    """The random generator of the bootstrap stream named by ``key`` (e.g. a world's test
    set, a row's runs): seeded from :data:`SEED` and a digest of the key."""
    digest = hashlib.sha256("\x1f".join(key).encode()).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng([SEED, *words])


class ImageResamples:
    """Image weights of every replicate for one world's test set: ``weights``, [N, replicates]
    small integers (image-major, so that ranking the images gathers contiguous rows)."""

    def __init__(self, world: str, n_images: int, replicates: int = REPLICATES):
        rng = stream("images", world)
        counts = rng.multinomial(n_images, np.full(n_images, 1.0 / n_images),
                                 size=replicates)
        # small integers: half the memory traffic of int32 in the AP's gathers and sums
        self.weights = np.ascontiguousarray(
            counts.T.astype(np.int16 if n_images < 2**15 else np.int32))

    @property
    def replicates(self) -> int:
        return self.weights.shape[1]


def weighted_ap(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Table 1's AP (fraction) of one class under each replicate's image weights
    (``weights``: [N images, R replicates]).

    ``labels`` are 1 / 0 / -1 (difficult, left out); NaN where a replicate holds no
    positive. Exactly scikit-learn's ``average_precision_score(y, s - 1e-5 * y,
    sample_weight=w)``: images sorted by decreasing adjusted score, one threshold at the
    end of each run of equal scores, AP = sum over thresholds of (recall step) x
    precision. Only thresholds holding a positive add to the sum, so it is evaluated as
    the sum over positive images of weight x precision at their threshold, over the
    replicate's number of positives.
    """
    keep = np.flatnonzero(labels >= 0)
    y = labels[keep].astype(np.int64)
    s = scores[keep].astype(np.float64) - TIE_EPS * y
    order = np.argsort(-s, kind="stable")
    y, s = y[order], s[order]
    pos = np.flatnonzero(y == 1)
    if pos.size == 0:
        return np.full(weights.shape[1], np.nan)
    w = weights[keep[order]]                                    # [N, R], ranked
    # index of the last image of each image's run of equal scores (its threshold)
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    pos_end = last[np.searchsorted(last, pos)]                  # each positive's threshold
    # images seen down to each positive's threshold (in the weights' own small dtype: a
    # replicate's weights sum to N, which that dtype holds)
    seen = np.cumsum(w, axis=0, dtype=w.dtype)[pos_end]                  # [P, R]
    w_pos = w[pos].astype(np.int64)
    tp_running = np.cumsum(w_pos, axis=0)
    # true positives at a positive's threshold: every positive down to the threshold
    tp = tp_running[np.searchsorted(pos, pos_end, side="right") - 1]
    positives = tp_running[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (w_pos * tp / np.maximum(seen, 1)).sum(axis=0) / positives
    return np.where(positives > 0, ap, np.nan)


def weighted_map(scores: SplitScores, weights: np.ndarray) -> np.ndarray:
    """mAP in percent of ``scores`` under every image resample in ``weights`` [N, R]: [R]."""
    per_class = np.stack([weighted_ap(scores.labels[:, c], scores.scores[:, c], weights)
                          for c in range(len(scores.class_names))])
    with np.errstate(invalid="ignore"):
        return 100.0 * np.nanmean(per_class, axis=0)


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap interval; ``covers`` says what the interval resamples."""

    mean: float
    lo: float | None
    hi: float | None
    n: int
    #: "runs and test images", "test images", "runs", "" (no interval: one run without
    #: per-image scores) or "baseline" (a row against itself: no interval)
    covers: str
    #: a difference of two rows taken on the worlds both ran, fewer than one of them ran
    partial: bool = False

    @property
    def has_interval(self) -> bool:
        return self.lo is not None


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    """The central :data:`LEVEL` percentile interval of bootstrap replicates (for
    replicates that resample runs only: a mean over runs has no resampling bias)."""
    lo, hi = _percentiles(replicates)
    return float(lo), float(hi)


def _percentiles(replicates: np.ndarray) -> tuple[float, float]:
    """The replicates' 2.5th and 97.5th percentiles (at :data:`LEVEL` 0.95), leaving out
    replicates that are NaN: an image resample of a tiny test set that draws no positive
    of any class has no mAP (with every replicate finite, this is ``np.percentile``)."""
    tail = 100 * (1 - LEVEL) / 2
    return tuple(np.nanpercentile(replicates, [tail, 100 - tail]))


def interval(estimate: float, replicates: np.ndarray, images: bool) -> tuple[float, float]:
    """The interval the leaderboard shows: basic when the replicates resample test images
    (AP's resampling bias), percentile when they resample runs only."""
    return basic_interval(estimate, replicates) if images else percentile_interval(replicates)


def basic_interval(estimate: float, replicates: np.ndarray) -> tuple[float, float]:
    """The :data:`LEVEL` basic bootstrap interval of ``estimate``: its bootstrap
    percentiles reflected about it (see the module docstring for why)."""
    q_lo, q_hi = _percentiles(replicates)
    return float(2 * estimate - q_hi), float(2 * estimate - q_lo)


def world_replicates(row_key: str, runs_by_world: Mapping[str, Sequence[np.ndarray]],
                     replicates: int = REPLICATES) -> dict[str, np.ndarray]:
    """The bootstrap distribution [R] of a row's mean over its runs on each world.

    ``runs_by_world`` maps each world to its runs' per-replicate values (one [R] array per
    run: its mAP under each image resample, or its recorded value repeated when the run
    has no per-image scores). Runs are drawn with replacement within each world, from the
    row's own stream, worlds in sorted order.
    """
    rng = stream("runs", row_key)
    out = {}
    for world in sorted(runs_by_world):
        values = np.stack(runs_by_world[world])            # [runs, R]
        k = values.shape[0]
        picks = rng.integers(0, k, size=(replicates, k))   # [R, runs]
        out[world] = values[picks, np.arange(replicates)[:, None]].mean(axis=1)
    return out


"""Leaderboard bootstrap: the mAP of one run under every image resample.

    .venv/bin/python -m pytest benchmarks/test_bench_leaderboard.py -m slow -s \\
        --benchmark-columns=min --benchmark-sort=name

* ``bootstrap_map``: :func:`harness.leaderboard.bootstrap.weighted_map` of one run (1,000 test images,
  20 classes, about 10% positives) under the leaderboard's 2,000 image resamples, against
  the baseline timed in the same run: scikit-learn's ``average_precision_score`` with the
  resample counts as ``sample_weight``, called once per class and replicate (timed on 50
  replicates and scaled to 2,000). ``extra_info`` holds both times and their ratio; the
  two must agree to 1e-9 on the replicates both compute.

Figures: benchmarks/README.md (section "Leaderboard").
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_bootstrap_map(benchmark):
    from sklearn.metrics import average_precision_score

    from harness.leaderboard import bootstrap
    from harness.evaluation.ap import SplitScores

    rng = np.random.default_rng(0)
    n, classes = 1000, 20
    labels = (rng.random((n, classes)) < 0.1).astype(np.int8)
    labels[rng.random((n, classes)) < 0.02] = -1
    scores = SplitScores("test", "trainval", tuple(map(str, range(n))),
                         tuple(map(str, range(classes))), rng.normal(size=(n, classes)) + labels,
                         labels)
    weights = bootstrap.ImageResamples("bench", n).weights
    fast = benchmark.pedantic(bootstrap.weighted_map, args=(scores, weights), rounds=3,
                              iterations=1)
    fast_s = benchmark.stats.stats.min

    sample = 50
    start = time.perf_counter()
    slow = []
    for b in range(sample):
        aps = []
        for c in range(classes):
            keep = labels[:, c] >= 0
            y = labels[keep, c].astype(int)
            aps.append(average_precision_score(y, scores.scores[keep, c] - 1e-5 * y,
                                               sample_weight=weights[keep, b]))
        slow.append(100 * np.mean(aps))
    baseline_s = (time.perf_counter() - start) * weights.shape[1] / sample
    assert np.allclose(fast[:sample], slow, atol=1e-9)
    benchmark.extra_info.update(baseline_s=round(baseline_s, 2), fast_s=round(fast_s, 3),
                                ratio=round(baseline_s / fast_s, 1))
    print(f"\nbootstrap mAP, 2,000 replicates: {fast_s:.2f} s; scikit-learn per replicate: "
          f"{baseline_s:.1f} s ({baseline_s / fast_s:.0f}x)")

"""What a clustering looks like: cluster sizes, warnings, agreement with ground truth.

Clustering choices move the downstream numbers, so ``harness label`` shows them: a size
histogram (an empty or a dominating cluster means few useful classes for the pretext
task), the k-means objective, and, where the data has ground truth (the toy world's
``scene`` and ``objects``), normalised mutual information (NMI) and purity against it.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

#: a cluster holding more than this many times its fair share N/k (capped at 90 %) dominates
DOMINATING_FACTOR = 3.0
#: a non-empty cluster with less than this fraction of its fair share is reported as tiny
TINY_FACTOR = 0.05


def cluster_sizes(labels: np.ndarray, k: int) -> list[int]:
    """Samples per cluster id 0..k-1 (empty clusters included as 0)."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=k).tolist()


def size_warnings(sizes: Sequence[int]) -> list[str]:
    """One line per problem: empty clusters, tiny clusters, a dominating cluster."""
    sizes = np.asarray(sizes)
    n, k = int(sizes.sum()), len(sizes)
    fair = n / k
    warnings: list[str] = []
    empty = np.flatnonzero(sizes == 0)
    if empty.size:
        warnings.append(f"{empty.size} empty cluster(s): {_ids(empty)}")
    tiny = np.flatnonzero((sizes > 0) & (sizes < TINY_FACTOR * fair))
    if tiny.size:
        warnings.append(f"{tiny.size} tiny cluster(s) (< {TINY_FACTOR:.0%} of N/k = "
                        f"{fair:.0f}): {_ids(tiny)}")
    limit = min(0.9, DOMINATING_FACTOR / k) * n
    big = np.flatnonzero(sizes > limit)
    for c in big:
        warnings.append(f"cluster {int(c)} dominates: {int(sizes[c])} of {n} samples "
                        f"({sizes[c] / n:.0%}; more than {limit / n:.0%})")
    return warnings


def _ids(idx: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(i)) for i in idx[:limit])
    return shown + (", ..." if idx.size > limit else "")


def purity(labels: np.ndarray, truth: Sequence[str]) -> float:
    """Share of samples whose cluster's most common true value is their own."""
    from sklearn.metrics.cluster import contingency_matrix

    table = contingency_matrix(truth, labels, sparse=True)
    return float(table.max(axis=0).sum() / len(labels))


def truth_scores(labels: np.ndarray, truth: Mapping[str, Sequence[str]]) -> dict[str, dict]:
    """NMI and purity of cluster ids against each ground-truth column.

    A multi-valued column (';'-joined, like the toy world's ``objects``) is scored twice:
    as the set of values (each distinct combination is one category, empty = none) and
    per value (the mean over values of NMI between clusters and that value's presence).
    """
    from sklearn.metrics import normalized_mutual_info_score as nmi

    scores: dict[str, dict] = {}
    for column, values in truth.items():
        values = [str(v) for v in values]
        scores[column] = {"nmi": float(nmi(values, labels)), "purity": purity(labels, values)}
        if any(";" in v for v in values):
            sets = [frozenset(p for p in v.split(";") if p) for v in values]
            names = sorted(set().union(*sets))
            per_value = [nmi([name in s for s in sets], labels) for name in names]
            scores[column]["mean_nmi_per_value"] = float(np.mean(per_value))
            scores[column]["values"] = len(names)
    return scores


def bit_scores(bits: np.ndarray, truth: Mapping[str, Sequence[str]]) -> dict[str, dict]:
    """For binary codes: mean and best NMI of single bits against each truth column."""
    from sklearn.metrics import normalized_mutual_info_score as nmi

    scores = {}
    for column, values in truth.items():
        values = [str(v) for v in values]
        per_bit = [nmi(values, bits[:, j]) for j in range(bits.shape[1])]
        scores[column] = {"mean_bit_nmi": float(np.mean(per_bit)),
                          "best_bit_nmi": float(np.max(per_bit))}
    return scores


def histogram_lines(sizes: Sequence[int], width: int = 40) -> list[str]:
    """Text histogram: one line per cluster with its size, share and a bar."""
    sizes = list(sizes)
    n, top = sum(sizes), max(max(sizes), 1)
    return [f"{c:>4} {s:>8} {s / n:6.1%} {'#' * max(int(round(width * s / top)), 1 if s else 0)}"
            for c, s in enumerate(sizes)]


def format_report(kind: str, diagnostics: Mapping[str, Any]) -> str:
    """The diagnosis ``harness label`` prints, as plain text lines."""
    lines: list[str] = []
    if kind == "classes":
        lines.append("cluster     size  share")
        lines.extend(histogram_lines(diagnostics["sizes"]))
        if "inertia" in diagnostics:
            lines.append(f"inertia {diagnostics['inertia']:.6g} (per sample "
                         f"{diagnostics['inertia_per_sample']:.4g}, on the preprocessed features)")
    else:
        rates = diagnostics["positive_rate"]
        lines.append(f"bits {len(rates)}: share of ones per bit min {min(rates):.3f} "
                     f"max {max(rates):.3f}; {diagnostics['distinct_codes']} distinct codes")
        if "explained_variance" in diagnostics:
            lines.append(f"variance explained by the {len(rates)} components: "
                         f"{diagnostics['explained_variance']:.1%}")
    for column, s in diagnostics.get("truth", {}).items():
        parts = [f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}"
                 for key, value in s.items()]
        lines.append(f"vs truth {column!r}: " + ", ".join(parts))
    lines.extend(f"warning: {w}" for w in diagnostics.get("warnings", []))
    return "\n".join(lines)


def score_against_truth(values: np.ndarray, kind: str,
                        truth: Mapping[str, Sequence[str]]) -> dict[str, dict]:
    """NMI/purity of class labels, or per-bit NMI of binary codes, against ground truth."""
    if kind == "classes":
        return truth_scores(values, truth)
    return bit_scores(values, truth)

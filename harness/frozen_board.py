"""The leaderboard's frozen-feature sections: per-layer mAP tables, low-shot and monitor plots.

Shown only for records that hold them: a table per evaluator with one column per layer
(``linear_probe``, ``voc07_svm``, ``knn``; Owens et al.'s per-layer table shape), the
low-shot curve (mean ± std test mAP against k) and, per run, the monitor's val mAP against
pretext epochs. The records store these evaluators' :class:`~harness.interfaces.EvalMetrics`
fields; ``breakdown`` is layer -> mAP (or ``k=<k>`` -> mAP for the low-shot curve).
"""

from __future__ import annotations

import statistics
from typing import Any

#: frozen-feature evaluators with a per-layer breakdown, in the order the page shows them
LAYER_EVALUATORS: tuple[str, ...] = ("linear_probe", "voc07_svm", "knn")
LOWSHOT = "voc07_lowshot"


def _stat(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


def _breakdowns(row, evaluator: str) -> list[dict[str, float]]:
    return [r.metrics[evaluator]["breakdown"] for r in row.runs
            if isinstance(r.metrics.get(evaluator, {}).get("breakdown"), dict)]


def layer_table(group, evaluator: str) -> str | None:
    """Rows x layers of ``evaluator``'s test mAP (mean ± std over seeds), or None."""
    from harness.leaderboard import _table

    rows = [(row, _breakdowns(row, evaluator)) for row in group.rows]
    rows = [(row, b) for row, b in rows if b]
    if not rows:
        return None
    layers: list[str] = []
    for _, bs in rows:
        for b in bs:
            layers += [k for k in b if k not in layers]
    body = [[row.label, *(_stat([b[k] for b in bs if k in b]) for k in layers)]
            for row, bs in rows]
    return _table(["method", *layers], body)


def sections(group) -> list[str]:
    """Markdown lines of the frozen-feature sections of a group page (empty if none)."""
    out: list[str] = []
    for ev in LAYER_EVALUATORS:
        table = layer_table(group, ev)
        if table:
            out += [f"## Frozen features: `{ev}`, test mAP per layer", "",
                    "Trainval -> test on features of the frozen network (settings chosen on "
                    "train -> val or, for the SVM cost, by 3-fold CV inside trainval; each "
                    "record's protocol names them).", "", table, ""]
    table = layer_table(group, LOWSHOT)
    if table:
        out += [f"## Frozen features: `{LOWSHOT}`, test mAP per k positives per class", "",
                "Mean over 5 low-shot samples per k (the plot shows their std).", "", table, ""]
    return out


def lowshot_plot(group) -> dict[str, Any] | None:
    series = {}
    for row in group.rows:
        runs = [r.metrics[LOWSHOT] for r in row.runs if LOWSHOT in r.metrics]
        if not runs:
            continue
        m = runs[0]
        ks = sorted(int(k[2:]) for k in m["breakdown"])
        std = m.get("details", {}).get("std", {})
        series[row.label] = [{"k": k, "mean": m["breakdown"][f"k={k}"],
                              "std": std.get(f"k={k}", 0.0)} for k in ks]
    if not series:
        return None
    return {"title": f"{group.key.title}: low-shot VOC07 SVMs (first seed of each row)",
            "series": series}


def monitor_plot(group) -> dict[str, Any] | None:
    series = {}
    for row in group.rows:
        for run in row.runs:
            curve = run.monitor or []
            keys = sorted({k for p in curve for k in p if k.endswith("_val_map")})
            for key in keys:
                series[f"{row.label} seed {run.seed} ({key[len('monitor_'):-len('_val_map')]})"] = [
                    {"epoch": p["epoch"], "value": p[key]} for p in curve if key in p]
    if not series:
        return None
    return {"title": f"{group.key.title}: pretext monitor, val mAP by epoch", "series": series}


def plots(group) -> dict[str, tuple[str, dict[str, Any]]]:
    """{file name: (plot kind, data)} of the frozen-feature plots the group supports."""
    out = {}
    data = lowshot_plot(group)
    if data:
        out[f"{group.key.slug}-lowshot.png"] = ("lowshot", data)
    data = monitor_plot(group)
    if data:
        out[f"{group.key.slug}-monitor.png"] = ("monitor", data)
    return out

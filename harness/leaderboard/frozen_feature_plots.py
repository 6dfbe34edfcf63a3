"""The leaderboard's plots for frozen-feature results: low-shot curves and pretext monitors.

Per-layer tables need nothing special: an evaluator's page shows its ``breakdown`` (layer ->
mAP for ``linear_probe``, ``voc07_svm`` and ``knn``, Owens et al.'s per-layer table shape)
as a table. Two things are drawn instead:

- a curve for an evaluator whose ``breakdown`` is keyed ``k=<k>`` (``voc07_lowshot``:
  test mAP against the number of positives per class, mean ± std over its samples, which
  it records in ``details["std"]``);
- per run, the pretext monitor's val mAP against epochs (``record["pretext"]["monitor"]``).
"""

from __future__ import annotations

import re
from typing import Any

_K_KEY = re.compile(r"k=(\d+)$")


def _is_curve(breakdown: Any) -> bool:
    return isinstance(breakdown, dict) and bool(breakdown) and all(
        _K_KEY.match(str(k)) for k in breakdown)


def curve_plot(group) -> dict[str, Any] | None:
    """The group's evaluator's ``k=<k>`` breakdown as a curve (first seed of each row)."""
    ev = group.key.evaluator
    series = {}
    for row in group.rows:
        m = row.first.metrics.get(ev) or {}
        if not _is_curve(m.get("breakdown")):
            continue
        ks = sorted(int(_K_KEY.match(k).group(1)) for k in m["breakdown"])
        std = (m.get("details") or {}).get("std", {})
        series[row.label] = [{"k": k, "mean": m["breakdown"][f"k={k}"],
                              "std": std.get(f"k={k}", 0.0)} for k in ks]
    if not series:
        return None
    return {"title": f"{group.key.title}: test mAP by positives per class (first seed)",
            "series": series}


def monitor_plot(group) -> dict[str, Any] | None:
    """Every run's pretext monitor curve (val mAP by epoch), if any run has one."""
    series = {}
    for row in group.rows:
        for run in row.runs:
            curve = run.monitor or []
            keys = sorted({k for p in curve for k in p if k.endswith("_val_map")})
            for key in keys:
                kind = key[len("monitor_"):-len("_val_map")]
                series[f"{row.label} seed {run.seed} ({kind})"] = [
                    {"epoch": p["epoch"], "value": p[key]} for p in curve if key in p]
    if not series:
        return None
    return {"title": f"{group.key.title}: pretext monitor, val mAP by epoch", "series": series}


def evaluator_plots(group) -> dict[str, tuple[str, dict[str, Any]]]:
    """{file name: (plot kind, data)} for one evaluator's page."""
    data = curve_plot(group)
    return {f"{group.key.slug}-curve.png": ("lowshot", data)} if data else {}


def monitor_plots(group) -> dict[str, tuple[str, dict[str, Any]]]:
    """{file name: (plot kind, data)} for a VOC07 group page."""
    data = monitor_plot(group)
    return {f"{group.key.slug}-monitor.png": ("monitor", data)} if data else {}

"""What each plot of a page shows, as plain data (:mod:`harness.leaderboard.plots` draws it):
mAP against k, comparisons of representations and of backbones at equal k, and the plots
of frozen-feature results (low-shot curves, pretext monitors).

An evaluator's per-layer ``breakdown`` (layer -> mAP for ``linear_probe``, ``voc07_svm`` and
``knn``, Owens et al.'s per-layer table shape) is a table on its page, not a plot. Drawn
besides Table 1's sweeps are:

- a curve for an evaluator whose ``breakdown`` is keyed ``k=<k>`` (``voc07_lowshot``:
  test mAP against the number of positives per class, mean ± std over its samples, which
  it records in ``details["std"]``);
- per run, the pretext monitor's val mAP against epochs (``record["pretext"]["monitor"]``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Collection

from harness.leaderboard.groups import Group, world_suffix
from harness.leaderboard.rows import INIT_ORDER, Row, base_label
from harness.leaderboard.toy_worlds import knob_plot
from harness.profiles import DEFAULT_LABELER
from harness.runtime.cache import hash_params


def _point(group: Group, row: Row, evaluator: str,
           worlds: Collection[str] | None = None) -> dict[str, Any] | None:
    """A plotted value: the mean on ``worlds`` (default: all the row's), and its 95%
    interval when there are two runs or more (a single run is drawn as a bare marker)."""
    iv = group.interval(row, evaluator, worlds)
    if iv is None:
        return None
    bars = iv.has_interval and iv.n > 1
    return {"mean": round(iv.mean, 6), "lo": round(iv.lo, 6) if bars else None,
            "hi": round(iv.hi, 6) if bars else None, "n": iv.n}


def _series_points(group: Group, rows: list[Row],
                   worlds: Collection[str] | None) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for panel, ev in group.panels.items():
        pts = []
        for row in sorted(rows, key=lambda r: r.first.k):
            point = _point(group, row, ev, worlds)
            if point is not None:
                pts.append({"k": row.first.k, **point})
        out[panel] = pts
    return out


_PLOT_NOTE = "95% bootstrap intervals over runs and test images; single runs: bare markers"


def _on_worlds(group: Group, worlds: Collection[str] | None) -> str:
    """The title's note of which worlds a plot's figures come from."""
    names = group.world_names(worlds)
    if not names:
        return ""
    return "; rows on different worlds" if worlds is None else f"; on {names}, which every row ran"


def k_sweep_plot(group: Group) -> dict[str, Any] | None:
    """Data of the mAP-vs-k plot, if some (repr, labeler, backbone) series has 2+ values of k."""
    series: dict[tuple, list[Row]] = defaultdict(list)
    for row in group.rows:
        f = row.first
        if f.init == "sound" and f.k is not None:
            series[(f.repr_name, f.labeler_name, f.backbone_name, f.backbone_key,
                    f.evaluators_key, f.pretrain_key, f.toy_world or "")].append(row)
    swept = {key: rows for key, rows in series.items()
             if len({r.first.k for r in rows}) >= 2 and len({r.first.k for r in rows}) == len(rows)}
    if not swept:
        return None
    order = sorted(swept, key=lambda k: tuple(str(x) for x in k))
    backbones = {swept[key][0].first.backbone_name: swept[key][0] for key in order}
    lines = [(init, b) for name in sorted(backbones) for init in ("random", "supervised")
             if (b := group.baseline(backbones[name], init)) is not None]
    # every point and line on the worlds all of them ran: a k run on one world beside a
    # k run on three would otherwise differ by the worlds as much as by k
    worlds = group.shared_worlds([*(r for rows in swept.values() for r in rows),
                                  *(b for _, b in lines)])
    data_series = []
    for key in order:
        rows = swept[key]
        label = (base_label(rows[0].first).replace(f" k={rows[0].first.k}", "")
                 + world_suffix(rows[0].first))
        data_series.append({"label": label, "points": _series_points(group, rows, worlds)})
    baselines = []
    for init, b in lines:
        means = {panel: b.mean_on(ev, worlds) for panel, ev in group.panels.items()}
        baselines.append({"label": b.label, "init": init,
                          "values": {p: None if m is None else round(m, 6) for p, m in means.items()}})
    return {"title": (f"{group.key.title}: mAP vs number of clusters ({_PLOT_NOTE}"
                      f"{_on_worlds(group, worlds)})"),
            "panels": list(group.panels),
            "series": data_series, "baselines": baselines}


def compare_plot(group: Group, varying: str) -> dict[str, Any] | None:
    """Data of a grouped-bar comparison of rows that differ only in ``varying``.

    ``varying`` is "repr" (Figure 4: texture statistics vs MFCC, sound rows) or "backbone"
    (Figure 3 left: AlexNet vs ResNet-18, for the random-init and supervised rows and each
    sound row at equal k). None unless two variants share a setting.
    """
    cells: dict[tuple, dict[str, Row]] = defaultdict(dict)
    for row in group.rows:
        f = row.first
        if f.init == "sound":
            size = f"{f.size_name}={f.k}"                    # k=15, or bits=15 (pca_binary)
            setting_label = (f"{f.backbone_name} {size}" if varying == "repr"
                             else f"{f.repr_name} {size}")
            if f.labeler_name and f.labeler_name != DEFAULT_LABELER:
                setting_label += f" {f.labeler_name}"
            setting_label += world_suffix(f)
        elif varying == "backbone":
            setting_label = base_label(f).replace(f" {f.backbone_name}", "")
        else:
            continue
        variant = f.repr_name if varying == "repr" else f.backbone_name
        other = f.backbone_key if varying == "repr" else f.repr_name or ""
        # the pretext recipe names its backbone, so backbones never share it: a backbone
        # comparison pairs the rows of each backbone's own recipe (two recipes of one
        # backbone in a setting make it ambiguous, and it is skipped below)
        recipe = f.pretrain_key if varying == "repr" else ""
        setting = (setting_label, INIT_ORDER[f.init],
                   f.backbone_name if varying == "repr" else f.repr_name or "",
                   f.labeler_name or "", f.k if f.k is not None else -1, other,
                   f.evaluators_key, recipe, f.toy_world or "")
        if variant in cells[setting]:  # two rows in one cell: ambiguous, skip the setting
            cells[setting][variant] = None
        else:
            cells[setting][variant] = row
    keep = {s: v for s, v in cells.items() if len(v) >= 2 and all(v.values())}
    if not keep:
        return None
    settings = sorted(keep, key=lambda s: s[1:])
    setting_labels = [s[0] for s in settings]
    if len(set(setting_labels)) != len(setting_labels):  # same label, different config
        setting_labels = [f"{s[0]} [{hash_params(s)[:4]}]" for s in settings]
    # the bars of one setting on the worlds all of them ran, named under the setting
    worlds = {s: group.shared_worlds(keep[s].values()) for s in settings}
    names = [group.world_names(worlds[s]) for s in settings]
    setting_labels = [f"{label}\n({name})" if name else label
                      for label, name in zip(setting_labels, names)]
    variants = sorted({v for s in settings for v in keep[s]})
    values = {}
    for panel, ev in group.panels.items():
        values[panel] = {}
        for s, s_label in zip(settings, setting_labels):
            for v, row in keep[s].items():
                point = _point(group, row, ev, worlds[s])
                if point is not None:
                    values[panel][f"{s_label}|{v}"] = point
    what = "sound representation" if varying == "repr" else "backbone"
    note = "; each setting on the worlds all its bars ran" if len(group.worlds) > 1 else ""
    return {"title": f"{group.key.title}: {what} comparison ({_PLOT_NOTE}{note})",
            "panels": list(group.panels),
            "varying": what, "settings": setting_labels, "variants": variants,
            "values": values}


def group_plots(group: Group) -> dict[str, tuple[str, dict[str, Any]]]:
    """{file name: (plot kind, data)} for the plots the group's records support."""
    out = {}
    sweep = k_sweep_plot(group)
    if sweep:
        out[f"{group.key.slug}-k-sweep.png"] = ("k_sweep", sweep)
    for varying in ("repr", "backbone"):
        data = compare_plot(group, varying)
        if data:
            out[f"{group.key.slug}-{varying}.png"] = ("compare", data)
    knobs = knob_plot(group)
    if knobs:
        out[knob_plot_file(group)] = ("knobs", knobs)
    out.update(monitor_plots(group))
    return out


def knob_plot_file(group: Group) -> str:
    """The file name of a group's single-knob plot (:mod:`harness.leaderboard.toy_worlds`)."""
    return f"{group.key.slug}-toy-world-knobs.png"


# --------------------------------------------------------------------------- frozen-feature plots
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

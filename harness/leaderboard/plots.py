"""The leaderboard's plots (matplotlib, Agg), drawn from plain data and saved as stable PNGs.

Each plot is described by a JSON-able ``data`` dict; the PNG carries a hash of that data in a
text chunk (``harness-data``), so ``harness leaderboard --check`` can tell whether a committed
PNG shows the current records without comparing pixels, which differ between matplotlib and
FreeType versions. On one installation the same data gives the same PNG bytes: no pyplot
global state, default rc settings, and no software/time metadata.
"""

from __future__ import annotations

import io
from typing import Any

from harness.runtime.cache import hash_params

#: PNG text-chunk keys written into every plot
PLOT_KIND_KEY = "harness-plot"
DATA_HASH_KEY = "harness-data"

_DPI = 100


def data_hash(data: Any) -> str:
    """sha256 of the plotted data (canonical JSON)."""
    return hash_params(data)


def png_text(path) -> dict[str, str]:
    """The PNG text chunks of ``path`` ({} if it is not a readable PNG)."""
    from harness.api.errors import BadInputError
    from harness.data.images import open_image

    try:
        with open_image(path) as im:
            im.load()
            return {str(k): str(v) for k, v in getattr(im, "text", {}).items()}
    except (BadInputError, OSError, ValueError):
        return {}


def render(kind: str, data: dict[str, Any]) -> bytes:
    """PNG bytes of plot ``kind`` ("k_sweep" or "compare") for ``data``."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    draw = {"k_sweep": _draw_k_sweep, "compare": _draw_compare, "lowshot": _draw_lowshot,
            "monitor": _draw_monitor, "knobs": _draw_knobs}[kind]
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        matplotlib.rcParams.update({"svg.hashsalt": "harness", "axes.grid": True,
                                    "grid.alpha": 0.3, "font.size": 9})
        fig = Figure(figsize=(10, 4), dpi=_DPI)
        FigureCanvasAgg(fig)
        draw(fig, data)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=_DPI,
                    metadata={"Software": None, PLOT_KIND_KEY: kind,
                              DATA_HASH_KEY: data_hash(data)})
    return buf.getvalue()


def _suptitle(fig, title: str) -> None:
    """The figure's title, wrapped to its width (a plot's title names what it averages)."""
    import textwrap

    fig.suptitle(textwrap.fill(title, 150), fontsize=9)


def _panels(fig, data):
    axes = fig.subplots(1, len(data["panels"]), squeeze=False)[0]
    return list(zip(axes, data["panels"]))


def _error_bars(points: list[dict[str, Any]]) -> tuple[list[int], list[list[float]]]:
    """Indices of the points with an interval, and their (below, above) extents.

    A basic bootstrap interval need not contain the mean (when nearly every replicate
    falls on one side of it, e.g. on a tiny test set); the bar then starts at the mean.
    """
    with_bars = [i for i, p in enumerate(points) if p.get("lo") is not None]
    return with_bars, [[max(0.0, points[i]["mean"] - points[i]["lo"]) for i in with_bars],
                       [max(0.0, points[i]["hi"] - points[i]["mean"]) for i in with_bars]]


def _draw_k_sweep(fig, data: dict[str, Any]) -> None:
    """mAP against the number of clusters, one line per (representation, backbone) series,
    with each backbone's random and supervised rows as horizontal lines (Figure 3 right).
    Points with an interval get it as an error bar; single runs are bare markers."""
    colors = matplotlib_colors()
    for ax, panel in _panels(fig, data):
        for i, series in enumerate(data["series"]):
            pts = series["points"][panel]
            ks = [p["k"] for p in pts]
            color = colors[i % len(colors)]
            ax.plot(ks, [p["mean"] for p in pts], marker="o", color=color,
                    label=series["label"])
            idx, yerr = _error_bars(pts)
            if idx:
                ax.errorbar([ks[j] for j in idx], [pts[j]["mean"] for j in idx], yerr=yerr,
                            fmt="none", capsize=3, color=color)
        for j, line in enumerate(data["baselines"]):
            value = line["values"].get(panel)
            if value is not None:
                ax.axhline(value, linestyle="--" if line["init"] == "random" else ":",
                           linewidth=1, color=colors[(len(data["series"]) + j) % len(colors)],
                           label=line["label"])
        all_k = sorted({p["k"] for s in data["series"] for p in s["points"][panel]})
        ax.set_xticks(all_k)
        ax.set_xlabel("number of clusters k")
        ax.set_ylabel(f"{panel} mAP (%)")
        ax.set_title(f"{panel}: mAP vs k")
        ax.legend(fontsize=7)
    _suptitle(fig, data["title"])


def _draw_compare(fig, data: dict[str, Any]) -> None:
    """Grouped bars: for each setting (x), one bar per variant (Figures 3 left and 4), with
    the 95% interval as an error bar where there is one (never for a single run)."""
    colors = matplotlib_colors()
    settings, variants = data["settings"], data["variants"]
    width = 0.8 / max(1, len(variants))
    for ax, panel in _panels(fig, data):
        top = 0.0
        for i, variant in enumerate(variants):
            xs, cells = [], []
            for x, setting in enumerate(settings):
                cell = data["values"][panel].get(f"{setting}|{variant}")
                if cell is not None:
                    xs.append(x + (i - (len(variants) - 1) / 2) * width)
                    cells.append(cell)
            ax.bar(xs, [c["mean"] for c in cells], width=width,
                   color=colors[i % len(colors)], label=variant)
            idx, yerr = _error_bars(cells)
            if idx:
                ax.errorbar([xs[j] for j in idx], [cells[j]["mean"] for j in idx], yerr=yerr,
                            fmt="none", capsize=3, ecolor="black")
            top = max([top, *(c["hi"] if c.get("hi") is not None else c["mean"]
                              for c in cells)])
        if top > 0:
            ax.set_ylim(0, top * 1.25)      # headroom: the legend never covers a bar
        ax.set_xticks(range(len(settings)), settings, fontsize=7)
        ax.set_ylabel(f"{panel} mAP (%)")
        ax.set_title(f"{panel}: {data['varying']}")
        ax.legend(fontsize=7)
    _suptitle(fig, data["title"])


def _draw_lowshot(fig, data: dict[str, Any]) -> None:
    """Low-shot curve: test mAP (mean ± std over samples) against k, log2 axis."""
    ax = fig.subplots()
    for i, (label, points) in enumerate(sorted(data["series"].items())):
        ax.errorbar([p["k"] for p in points], [p["mean"] for p in points],
                    yerr=[p["std"] for p in points], marker="o", capsize=3,
                    color=matplotlib_colors()[i % 10], label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("positives per class (k)")
    ax.set_ylabel("test mAP (%)")
    ax.legend(fontsize=7)
    _suptitle(fig, data["title"])


def _draw_monitor(fig, data: dict[str, Any]) -> None:
    """The pretext monitor: val mAP against epoch, one line per run."""
    ax = fig.subplots()
    for i, (label, points) in enumerate(sorted(data["series"].items())):
        ax.plot([p["epoch"] for p in points], [p["value"] for p in points], marker="o",
                color=matplotlib_colors()[i % 10], label=label)
    ax.set_xlabel("pretext epoch")
    ax.set_ylabel("VOC val mAP (%)")
    ax.legend(fontsize=7)
    _suptitle(fig, data["title"])


def _draw_knobs(fig, data: dict[str, Any]) -> None:
    """Gain over random init for each toy world's audio (x), one panel per Table 1
    column, with the 95% interval as an error bar and a line at no gain."""
    labels = data["labels"]
    for ax, panel in _panels(fig, data):
        cells = data["values"][panel]
        xs = [i for i, c in enumerate(cells) if c is not None]
        pts = [cells[i] for i in xs]
        ax.plot(xs, [p["mean"] for p in pts], "o", color=matplotlib_colors()[0])
        idx, yerr = _error_bars(pts)
        if idx:
            ax.errorbar([xs[j] for j in idx], [pts[j]["mean"] for j in idx], yerr=yerr,
                        fmt="none", capsize=4, ecolor="black")
        ax.axhline(0.0, linestyle="--", linewidth=1, color="#7f7f7f")
        ax.set_xticks(range(len(labels)),
                      [label.replace(" with ", "\n").replace(", ", "\n") for label in labels],
                      fontsize=7)
        ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.set_ylabel(f"{panel} mAP − random (points)")
        ax.set_title(f"{panel}: gain over random init by audio")
    _suptitle(fig, data["title"])


def matplotlib_colors() -> list[str]:
    """The default colour cycle (fixed, so colours do not depend on user settings)."""
    return ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf"]

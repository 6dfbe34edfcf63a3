"""What a toy page says besides its tables: which networks its rows trained, and how much
each sound row's pseudo-labels said about the objects the clips show.

Both are read when the page is generated, from the code (the backbones' own descriptions
and parameters, the profile) and from the records (the labels stage's scores against the
toy clips' ground truth), so no figure here is typed in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.leaderboard import bootstrap
from harness.leaderboard.cells import markdown_table
from harness.leaderboard.presentation import views
from harness.leaderboard.prose import say

#: the template of this module's prose
NOTES_PROSE = "notes.md.j2"


def networks_lines(group: Any) -> list[str]:
    """What the group's networks are, read from the code: how the profile's AlexNet differs
    from the plugin's default (the paper's), and which layers "Head" trains on each
    backbone (each backbone's own description)."""
    from harness.api.registry import default_registry
    from harness.profiles import DEFAULT_BACKBONE, PROFILES

    profile = PROFILES.get(group.key.profile)
    if profile is None:
        return []
    registry = default_registry()
    names = sorted({row.first.backbone_name for row in group.rows})
    parts = []
    for name in names:
        try:
            backbone = registry.create("backbone", name)
        except Exception:       # a backbone not installed here: nothing to say about it
            continue
        default, used = backbone.params(), profile.backbone_params_for(name)
        changed = [f"`{k}` {used[k]} (default {default[k]})" for k in sorted(used)
                   if k in default and used[k] != default[k]]
        head = backbone.description.split("head = ", 1)[-1] if "head = " in \
            backbone.description else "its declared head"
        text = f"`{name}` ({backbone.description.split(';')[0]}): \"Head\" trains {head}"
        if changed:
            text += f"; this profile sets {', '.join(changed)}"
        parts.append(text)
    if not parts:
        return []
    paper = PROFILES.get("paper")
    sentences = [say(NOTES_PROSE, "networks", parts="; ".join(parts)),
                 say(NOTES_PROSE, "image_size", size=profile.image_size,
                     paper_size=paper.image_size if paper else None)]
    # the default backbone is the paper's AlexNet: say how the profile's differs from it
    if DEFAULT_BACKBONE in names and paper is not None:
        d = registry.create("backbone", DEFAULT_BACKBONE).params()
        sentences.append(say(NOTES_PROSE, "paper_alexnet", pool=d["pool"],
                             fc_units=d["fc_units"], paper_size=paper.image_size))
    if len(parts) > 1:
        sentences.append(say(NOTES_PROSE, "head_depths"))
    return ["## The networks", "", " ".join(sentences), ""]


def over_runs(values: list[float], key: str) -> "bootstrap.Interval":
    """Mean of per-run values with a 95% percentile interval over runs (None: one run)."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return bootstrap.Interval(mean, None, None, len(values), "")
    rng = bootstrap.stream("truth", key)
    picks = rng.integers(0, len(values), size=(bootstrap.REPLICATES, len(values)))
    lo, hi = bootstrap.percentile_interval(np.asarray(values)[picks].mean(axis=1))
    return bootstrap.Interval(mean, lo, hi, len(values), "runs")


def truth_lines(group: Any, column: str = "objects") -> list[str]:
    """How much each sound row's pseudo-labels said about what the clips show: NMI and
    purity of its clusters against the clips' true objects (``column``), mean over runs
    with an interval over runs, one table per world set; a row whose records lack the
    figure is shown as not measured."""
    sound = [row for row in group.rows if row.first.init == "sound"]
    if not sound:
        return []
    out = ["## How much the sound told", "", say(NOTES_PROSE, "truth", column=column), ""]
    for worlds, part in views(group):
        rows = []
        for row in part.rows:
            if row.first.init != "sound":
                continue
            scored = [r.truth[column] for r in row.runs
                      if r.truth and isinstance(r.truth.get(column), dict)]
            cells, bits = [row.label], False
            for key in ("nmi", "purity"):
                vals = [float(s[key]) for s in scored if isinstance(s.get(key), (int, float))]
                if not vals and key == "nmi":   # binary codes: NMI of each bit, averaged
                    vals = [float(s["mean_bit_nmi"]) for s in scored
                            if isinstance(s.get("mean_bit_nmi"), (int, float))]
                    bits = bool(vals)
                if not vals:
                    cells.append("— (binary codes)" if scored and key == "purity" and bits
                                 else "not recorded")
                    continue
                iv = over_runs(vals, f"{row.first.row_key}|{key}|{','.join(sorted(worlds or ()))}")
                cells.append((f"{iv.mean:.3f}" if not iv.has_interval
                              else f"{iv.mean:.3f} [{iv.lo:.3f}, {iv.hi:.3f}]")
                             + (" (mean over bits)" if key == "nmi" and bits else ""))
            cells.append(f"{len(scored)} of {len(row.runs)}")
            rows.append(cells)
        if not rows:
            continue
        if worlds is not None:
            out += [f"On {group.world_names(sorted(worlds))}:", ""]
        out += [markdown_table(["method", f"{column} NMI [95% CI]",
                                f"{column} purity [95% CI]", "runs with it"], rows,
                               numeric_from=1), ""]
    return out

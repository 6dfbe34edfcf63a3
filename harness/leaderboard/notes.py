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
from harness.leaderboard.presentation import views


def networks_lines(group: Any) -> list[str]:
    """What the group's networks are, read from the code: how the profile's AlexNet differs
    from the plugin's default (the paper's), and which layers "Head" trains on each
    backbone (each backbone's own description)."""
    from harness.api.registry import default_registry
    from harness.profiles import PROFILES

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
    size = (f" Images are {profile.image_size} px here"
            + (f" ({paper.image_size} px in the paper profile)." if paper else "."))
    note = ""
    if "alexnet" in names and paper is not None:
        d = registry.create("backbone", "alexnet").params()
        note = (f" So the toy AlexNet is not the paper's (the AlexNet of Krizhevsky et "
                f"al. it cites has no BatchNorm, {d['pool']} x {d['pool']} pooling before "
                f"fc6 and {d['fc_units']:,}-unit fc6-fc7, at {paper.image_size} px).")
    if len(parts) > 1:
        note += (" \"Head\" is not the same depth on every backbone: rows of different "
                 "backbones compare a network and its head together, not architectures alone.")
    return ["## The networks", "",
            "Read from the backbones and the profile when this page was generated: "
            + "; ".join(parts) + "." + size + note, ""]


def _over_runs(values: list[float], key: str) -> "bootstrap.Interval":
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
    out = ["## How much the sound told", "",
           f"Normalised mutual information (NMI, 0 = none, 1 = the clusters are the "
           f"objects) and purity between each sound row's pseudo-labels and the toy clips' "
           f"true `{column}` (the set of classes a clip shows), as the run's labels stage "
           f"scored them: mean over runs with a 95% percentile interval over runs. Records "
           f"made before the labels stage scored its clusters against the clips' truth hold "
           f"no such figure; their rows read \"not recorded\" (not zero).", ""]
    for worlds, part in views(group):
        rows = []
        for row in part.rows:
            if row.first.init != "sound":
                continue
            scored = [r.truth[column] for r in row.runs
                      if r.truth and isinstance(r.truth.get(column), dict)]
            cells = [row.label]
            for key in ("nmi", "purity"):
                vals = [float(s[key]) for s in scored if isinstance(s.get(key), (int, float))]
                if not vals:
                    cells.append("not recorded")
                    continue
                iv = _over_runs(vals, f"{row.first.row_key}|{key}|{','.join(sorted(worlds or ()))}")
                cells.append(f"{iv.mean:.3f}" if not iv.has_interval
                             else f"{iv.mean:.3f} [{iv.lo:.3f}, {iv.hi:.3f}]")
            cells.append(f"{len(scored)} of {len(row.runs)}")
            rows.append(cells)
        if not rows:
            continue
        from harness.leaderboard.board import _table

        if worlds is not None:
            out += [f"On {group.world_names(sorted(worlds))}:", ""]
        out += [_table(["method", f"{column} NMI [95% CI]", f"{column} purity [95% CI]",
                        "runs with it"], rows, numeric_from=1), ""]
    return out

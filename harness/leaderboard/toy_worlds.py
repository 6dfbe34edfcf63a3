"""The toy world presets side by side: how much of the oracle world's sound advantage the
realistic audio keeps, and what each of its biggest knobs costs on its own.

The presets change only the clips' audio (docs/toy-worlds.md): a world seed draws the same
pictures and the same toy VOC under each, so the random-init and supervised rows, which
read no sound, serve every preset. A sound row on realistic audio is therefore compared
with the very runs and test images the oracle row is compared with, and the difference
between the two presets is paired: same worlds, same image resamples
(:func:`harness.leaderboard.presentation.over_worlds`).

The rows compared are the declared headline's (:data:`harness.leaderboard.presentation.HEADLINE`:
its representations, labeler, k and backbone); its ``worlds`` name the reference preset
(the oracle) and the realistic one. A row on the realistic preset with some knobs changed
(``realistic with offscreen_prob=0.0``) is a single-knob variant.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from harness.leaderboard import presentation
from harness.leaderboard.cells import DASH, markdown_table
from harness.leaderboard.notes import over_runs
from harness.leaderboard.prose import say

#: the template of this module's prose
PROSE = "toy_worlds.md.j2"
#: the clips' truth column the informativeness figure is taken against
TRUTH_COLUMN = "objects"


def _recipe_rows(group: Any, representation: str) -> dict[str, Any]:
    """Toy world name -> the group's sound row of the headline's recipe for
    ``representation`` (every world it ran)."""
    return {row.first.toy_world: row for row in group.rows
            if row.first.repr_name == representation and row.first.toy_world
            and presentation.HEADLINE.in_recipe(row.first)}


def _worlds(group: Any, rows: Sequence[Any], evaluator: str) -> list[str]:
    """The worlds on which every one of ``rows`` has runs of ``evaluator``, by seed."""
    sets = [set(row.world_counts(evaluator)) for row in rows]
    shared = set.intersection(*sets) if sets else set()
    return [w for w, _, _ in group.worlds if w in shared]


def _ratio(m: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * (m[0] - m[2]) / (m[1] - m[2])


def nmi_cell(row: Any, worlds: Sequence[str]) -> str:
    """The row's NMI with the clips' true objects, mean over its runs on ``worlds`` with
    an interval over runs ("not recorded" when its records lack it)."""
    vals = [float(r.truth[TRUTH_COLUMN]["nmi"]) for r in row.runs if r.world in worlds
            and r.truth and isinstance((r.truth.get(TRUTH_COLUMN) or {}).get("nmi"),
                                       (int, float))]
    if not vals:
        return "not recorded"
    iv = over_runs(vals, f"{row.first.row_key}|nmi|{','.join(sorted(worlds))}")
    return f"{iv.mean:.3f}" if not iv.has_interval else f"{iv.mean:.3f} [{iv.lo:.3f}, {iv.hi:.3f}]"


# --------------------------------------------------------------------------- what survives
def survival_rows(group: Any, marks: set[str] | None = None) -> list[list[str]]:
    """For each headline representation with rows on both the reference and the realistic
    preset, and each of Head and All: both rows' gain over random on each world they share,
    the share of the oracle's gain the realistic audio keeps on each world and over all of
    them (with its interval), and the paired difference realistic − oracle. The marks
    its intervals carry are added to ``marks``."""
    spec = presentation.HEADLINE
    oracle, realistic = spec.worlds[0], spec.worlds[-1]
    marks = set() if marks is None else marks
    out = []
    for rep in spec.representations:
        rows = _recipe_rows(group, rep)
        if oracle not in rows or realistic not in rows:
            continue
        real, orac = rows[realistic], rows[oracle]
        base = group.baseline(real, spec.baseline)
        if base is None or group.baseline(orac, spec.baseline) is not base:
            continue
        for panel, ev in group.panels.items():
            ws = _worlds(group, [real, orac, base], ev)
            if not ws:
                continue
            gains = [[row.world_mean(ev, w) - base.world_mean(ev, w) for w in ws]
                     for row in (orac, real)]
            kept = [f"{100 * r / o:.0f}%" if o > 0 else DASH for o, r in zip(*gains)]
            out.append([
                rep, panel, group.world_names(ws) or "its one world",
                " / ".join(f"{g:+.1f}" for g in gains[0]),
                " / ".join(f"{g:+.1f}" for g in gains[1]), " / ".join(kept),
                presentation.cell(presentation.over_worlds(group, ev, ws, [real, orac, base],
                                                           _ratio), marks, unit="%"),
                presentation.cell(presentation.over_worlds(group, ev, ws, [real, orac],
                                                           lambda m: m[0] - m[1]),
                                  marks, signed=True)])
    return out


def survival_lines(groups: Sequence[Any]) -> list[str]:
    """The index's section on what the realistic audio keeps, for every toy table that has
    the headline's rows on both presets; nothing when none has."""
    spec = presentation.HEADLINE
    marks: set[str] = set()
    rows = [[f"[{g.key.title}]({g.key.slug}.md)", *r] for g in groups
            for r in survival_rows(g, marks)]
    if not rows:
        return []
    headers = ["table", "representation", "column", "worlds",
               f"{spec.worlds[0]} − random, each world",
               f"{spec.worlds[-1]} − random, each world", "kept, each world",
               "kept [95% CI]", f"{spec.worlds[-1]} − {spec.worlds[0]} [95% CI]"]
    return [f"## What the {spec.worlds[-1]} audio keeps", "",
            say(PROSE, "survival", oracle=spec.worlds[0], realistic=spec.worlds[-1],
                baseline=spec.baseline), "",
            markdown_table(headers, rows, align="llllllrrr"), "",
            *presentation.mark_notes(marks)]


# --------------------------------------------------------------------------- one knob at a time
def knob_rows(group: Any) -> tuple[list[str], list[tuple[str, Any]]] | None:
    """The worlds and the rows of the single-knob comparison: for the first headline
    representation with rows on the realistic preset with some knob changed, the reference
    preset's row, the realistic row and each variant, on the worlds all of them ran both
    Table 1 columns. None when no such variant row exists."""
    spec = presentation.HEADLINE
    oracle, realistic = spec.worlds[0], spec.worlds[-1]
    for rep in spec.representations:
        rows = _recipe_rows(group, rep)
        variants = sorted(w for w in rows if w.startswith(f"{realistic} with "))
        if not variants or realistic not in rows:
            continue
        chosen = [(w, rows[w]) for w in (oracle, realistic, *variants) if w in rows]
        base = group.baseline(rows[realistic], spec.baseline)
        if base is None:
            continue
        shared = set.intersection(*(set(_worlds(group, [row, base], ev)) for _, row in chosen
                                    for ev in group.panels.values()))
        ws = [w for w, _, _ in group.worlds if w in shared]
        if ws:
            return ws, chosen
    return None


def knob_lines(group: Any, plot_file: str | None) -> list[str]:
    """The group page's section on the single knobs: each row's gain over random, its
    paired difference to the realistic row and its NMI, on the worlds every row ran."""
    found = knob_rows(group)
    if found is None:
        return []
    ws, chosen = found
    spec = presentation.HEADLINE
    realistic = dict(chosen)[spec.worlds[-1]]
    base = group.baseline(realistic, spec.baseline)
    marks: set[str] = set()
    rows = []
    for world, row in chosen:
        cells = [row.label + (f" · {world} audio" if world == spec.worlds[0] else "")]
        for ev in group.panels.values():
            cells.append(presentation.cell(presentation.gain(group, row, base, ev, ws), marks,
                                           signed=True))
        for ev in group.panels.values():
            cells.append("(reference)" if row is realistic else presentation.cell(
                presentation.over_worlds(group, ev, ws, [row, realistic],
                                         lambda m: m[0] - m[1]), marks, signed=True))
        cells += [nmi_cell(row, ws), str(sum(1 for r in row.runs if r.world in ws))]
        rows.append(cells)
    headers = ["row", *(f"{p} − random [95% CI]" for p in group.panels),
               *(f"{p}: − {spec.worlds[-1]} [95% CI]" for p in group.panels),
               f"{TRUTH_COLUMN} NMI [95% CI]", "runs"]
    out = [f"## The {spec.worlds[-1]} audio one knob at a time", "",
           say(PROSE, "knobs", names=group.world_names(ws) or "its one world",
               realistic=spec.worlds[-1]), "",
           markdown_table(headers, rows, numeric_from=2), "",
           *presentation.mark_notes(marks)]
    if plot_file:
        out += ["", f"![{plot_file}]({plot_file})"]
    return out + [""]


def knob_plot(group: Any) -> dict[str, Any] | None:
    """Data of the single-knob plot: each row's gain over random, Head and All, with its
    95% interval, on the worlds every row ran."""
    found = knob_rows(group)
    if found is None:
        return None
    ws, chosen = found
    spec = presentation.HEADLINE
    base = group.baseline(dict(chosen)[spec.worlds[-1]], spec.baseline)
    values: dict[str, list[dict[str, Any]]] = {}
    for panel, ev in group.panels.items():
        values[panel] = []
        for _, row in chosen:
            iv = presentation.gain(group, row, base, ev, ws)
            bars = iv is not None and iv.has_interval
            values[panel].append(None if iv is None else {
                "mean": round(iv.mean, 6), "lo": round(iv.lo, 6) if bars else None,
                "hi": round(iv.hi, 6) if bars else None})
    return {"title": (f"{group.key.title}: gain over {spec.baseline} init by toy world audio, "
                      f"{chosen[0][1].first.repr_name} k={spec.k} {spec.backbone} "
                      f"(on {group.world_names(ws) or 'its one world'}; 95% bootstrap "
                      f"intervals over runs and test images)"),
            "panels": list(group.panels), "labels": [w for w, _ in chosen], "values": values}

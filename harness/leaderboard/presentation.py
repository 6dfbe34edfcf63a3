"""How a toy-world Table 1 is presented: a headline declared before the results, one world
set per table, and intervals that resample worlds.

Three rules, each a guard against a reading the numbers do not support:

- **The headline is declared, not found.** :data:`HEADLINE` names the comparison the
  index page leads with: the paper's own (sound pseudo-labels from k-means with k = 15,
  AlexNet, MFCC and sound-texture statistics, each minus the random-init AlexNet, on every
  world the table ran). It is taken from the paper, not from the rows, so the headline is
  never a maximum over rows, however the rows come out.
- **One world set per table.** Toy worlds differ in difficulty (the supervised − random
  gap differs by several points between worlds), so a mean over worlds 0-2 and a mean
  over world 0 alone are not one quantity. :func:`world_sets` splits a group's rows by the
  set of worlds they ran; each set gets its own table, in which rows that ran more worlds
  appear with their runs on that set only (:func:`restrict`).
- **Intervals over what varies.** Over several worlds, :func:`over_worlds` resamples the
  worlds (with replacement, the same draw for every row), then each row's runs within a
  drawn world, then that world's test images (the image and run resamples of
  :mod:`harness.leaderboard.bootstrap`). Recovered shares get the same interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from harness.leaderboard import bootstrap
from harness.leaderboard.cells import (DASH, EXCLUDES_MARK, EXCLUDES_NOTE, MARKS_PROSE,
                                       markdown_table)
from harness.leaderboard.groups import Group
from harness.leaderboard.prose import say
from harness.leaderboard.rows import Row
from harness.profiles import DEFAULT_LABELER, EVALUATORS_WITH_TEST_SCORES, HEADLINE_COMPARISON

#: the template of this module's prose
TOY_PROSE = "toy_tables.md.j2"


@dataclass(frozen=True)
class HeadlineSpec:
    """The comparison a toy board leads with (see :data:`HEADLINE`)."""

    #: pseudo-label representations, each its own headline row
    representations: tuple[str, ...]
    labeler: str
    k: int
    backbone: str
    #: the row each headline row is measured against
    baseline: str
    #: the toy world presets shown side by side (a row on clips of one's own always counts)
    worlds: tuple[str, ...] = ("oracle",)

    def in_recipe(self, run: Any) -> bool:
        """Whether ``run`` (a :class:`harness.leaderboard.rows.Run`) is a sound run of the
        headline's recipe (representations, labeler, k, backbone), on any toy world."""
        return (run.init == "sound" and run.repr_name in self.representations
                and (run.labeler_name or DEFAULT_LABELER) == self.labeler and run.size_name == "k"
                and run.k == self.k and run.backbone_name == self.backbone)

    def matches(self, run: Any) -> bool:
        """Whether ``run`` is one of the headline's sound rows: its recipe, on one of its
        toy worlds (or on clips of one's own)."""
        return self.in_recipe(run) and (run.toy_world is None or run.toy_world in self.worlds)

    def sentence(self) -> str:
        """The comparison in words, as the index page declares it."""
        reps = " and ".join(f"`{r}`" for r in self.representations)
        return say(TOY_PROSE, "headline", labeler=self.labeler, k=self.k,
                   representations=reps, backbone=self.backbone, baseline=self.baseline,
                   worlds=" and ".join(self.worlds))


#: The index page's headline, fixed before looking at the rows: it is the paper's own
#: comparison (its Table 1 rows for MFCC and sound texture statistics at k = 15 on AlexNet,
#: against random AlexNet), which predates every toy result, so no measured number can
#: move it; never chosen as the best of the measured rows. Its values live with the other
#: defaults, in harness/profiles.py.
HEADLINE = HeadlineSpec(**HEADLINE_COMPARISON)

#: covers -> mark of an interval that resamples less than the table's standard (worlds,
#: runs and test images over several worlds; runs and test images on one world)
MARKS = {"worlds and test images": "‡", "test images": "‡",
         "worlds and runs": "†", "runs": "†", "worlds": "†"}
NOTES = {"‡": say(MARKS_PROSE, "world_images_only"), "†": say(MARKS_PROSE, "world_runs_only")}


def missing_scores_note(evaluator: str, missing: int, total: int) -> str:
    """Why ``missing`` of the ``total`` runs of ``evaluator`` lack per-image test scores:
    recorded before the evaluator kept them, or (one not among
    :data:`harness.profiles.EVALUATORS_WITH_TEST_SCORES`) it keeps none."""
    return say(TOY_PROSE, "missing_scores", evaluator=evaluator, missing=missing,
               total=total, keeps_scores=evaluator in EVALUATORS_WITH_TEST_SCORES)


def world_set(row: Any, evaluators: Sequence[str]) -> frozenset[str]:
    """The worlds on which ``row`` has runs of any of ``evaluators``."""
    return frozenset(w for ev in evaluators for w in row.world_counts(ev))


def world_sets(group: Any, evaluators: Sequence[str]) -> list[frozenset[str]]:
    """The distinct world sets of the group's rows, the largest first (then by the worlds'
    seeds), empty sets left out."""
    seeds = {key: (seed if seed is not None else 0) for key, seed, _ in group.worlds}
    sets = {world_set(row, evaluators) for row in group.rows} - {frozenset()}
    return sorted(sets, key=lambda s: (-len(s), sorted(seeds.get(w, 0) for w in s)))


def restrict(group: Any, worlds: frozenset[str], evaluators: Sequence[str]) -> Any:
    """The group seen on ``worlds`` only: every row whose world set contains them, with its
    runs there; a row that ran more worlds is labelled with the worlds it is shown on. The
    view shares the group's image resamples and per-run replicates (same images, same
    numbers), not its per-row caches."""
    rows = []
    for row in group.rows:
        own = world_set(row, evaluators)
        if not own or not worlds <= own:
            continue
        runs = [r for r in row.runs if r.world in worlds]
        label = row.label if own == worlds else f"{row.label} · its {group.world_names(worlds)} runs"
        rows.append(Row(runs=runs, superseded=row.superseded, label=label))
    return Group(group.key, rows, group.panels, _images=group._images,
                 _run_reps=group._run_reps)


# --------------------------------------------------------------------------- bootstrap
def world_draws(worlds: Sequence[str], replicates: int = bootstrap.REPLICATES
                ) -> np.ndarray | None:
    """[R, W] indices of the worlds each replicate draws (with replacement), shared by
    every row on these worlds; None for a single world (nothing to resample)."""
    if len(worlds) < 2:
        return None
    rng = bootstrap.stream("worlds", *sorted(worlds))
    return rng.integers(0, len(worlds), size=(replicates, len(worlds)))


@dataclass
class _Rows:
    """Rows' per-world means as measured ([rows, W]) and under each replicate
    ([rows, W, R]), on the same worlds."""

    observed: np.ndarray
    replicates: np.ndarray
    images: bool
    repeats: bool
    worlds: list[str] = field(default_factory=list)


def _gather(group: Any, rows: Sequence[Any], evaluator: str, worlds: Sequence[str]
            ) -> _Rows | None:
    worlds = sorted(worlds)
    if any(set(worlds) - set(row.world_counts(evaluator)) for row in rows):
        return None
    images = all(row.has_scores(evaluator) for row in rows)
    repeats = any(c > 1 for row in rows for w, c in row.world_counts(evaluator).items()
                  if w in worlds)
    observed = np.array([[row.world_mean(evaluator, w) for w in worlds] for row in rows])
    reps = []
    for row in rows:
        per_world = group._world_replicates(row, evaluator, images)
        reps.append(np.stack([per_world[w] for w in worlds]))
    return _Rows(observed, np.stack(reps), images, repeats, worlds)


def _over(values: np.ndarray, draws: np.ndarray | None) -> np.ndarray:
    """[rows, W, R] -> [rows, R]: each replicate's mean over the worlds it drew."""
    if draws is None:
        return values.mean(axis=1)
    r = np.arange(values.shape[2])
    return values[:, draws.T, r].mean(axis=1)


def _covers(data: _Rows) -> str:
    multi = len(data.worlds) > 1
    if data.images:
        what = "runs and test images" if data.repeats else "test images"
    else:
        what = "runs" if data.repeats else ""
    if multi:
        return f"worlds, {what}" if what == "runs and test images" else (
            f"worlds and {what}" if what else "worlds")
    return what


def over_worlds(group: Any, evaluator: str, worlds: Sequence[str], rows: Sequence[Any],
                statistic: Callable[[np.ndarray], np.ndarray]
                ) -> "bootstrap.Interval | None":
    """``statistic`` of the rows' means over ``worlds`` (each world weighing the same), with
    its 95% interval: worlds drawn with replacement (:func:`world_draws`), then each row's
    runs within a world, then the world's test images. ``statistic`` maps an array whose
    first axis is the rows to the figure (e.g. ``lambda m: m[0] - m[1]``). None when a row
    has no run on one of the worlds."""
    data = _gather(group, rows, evaluator, worlds)
    if data is None:
        return None
    estimate = float(statistic(data.observed.mean(axis=1)))
    covers = _covers(data)
    n = int(min(sum(c for w, c in row.world_counts(evaluator).items() if w in worlds)
                for row in rows))
    if not covers:
        return bootstrap.Interval(estimate, None, None, n, "")
    reps = statistic(_over(data.replicates, world_draws(data.worlds)))
    lo, hi = bootstrap.interval(estimate, reps, data.images)
    return bootstrap.Interval(estimate, lo, hi, n, covers)


def value(group, row, evaluator, worlds):
    """The row's mean over ``worlds`` with its interval."""
    return over_worlds(group, evaluator, worlds, [row], lambda m: m[0])


def gain(group, row, base, evaluator, worlds):
    """``row`` minus ``base`` (paired: same worlds, same image resamples)."""
    if row is base:
        return bootstrap.Interval(0.0, None, None, 0, "baseline")
    return over_worlds(group, evaluator, worlds, [row, base], lambda m: m[0] - m[1])


def share(group, row, lo, hi, evaluator, worlds):
    """The recovered share ``(row − lo) / (hi − lo)`` in percent, with its interval."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return over_worlds(group, evaluator, worlds, [row, lo, hi],
                           lambda m: 100.0 * (m[0] - m[1]) / (m[2] - m[1]))


def resampling_bias(group: Any, evaluator: str, worlds: Sequence[str]) -> float | None:
    """How far AP under resampled test images reads above AP as measured: the mean over
    the rows with per-image scores of (mean replicate − figure as measured), in points;
    None when no row has per-image scores."""
    gaps = []
    for row in group.rows:
        data = _gather(group, [row], evaluator, worlds)
        if data is None or not data.images:
            continue
        gaps.append(float(np.nanmean(_over(data.replicates, None)[0]))
                    - float(data.observed.mean()))
    return float(np.mean(gaps)) if gaps else None


# --------------------------------------------------------------------------- cells
def cell(iv: "bootstrap.Interval | None", marks: set[str], signed: bool = False,
         unit: str = "") -> str:
    """``mean [lo, hi]`` with the marks of :data:`MARKS` (collected into ``marks``) and the
    leaderboard's mark of an interval that misses its point."""
    if iv is None:
        return DASH
    fmt = (lambda x: f"{x:+.1f}{unit}") if signed else (
        (lambda x: f"{x:.0f}{unit}") if unit else (lambda x: f"{x:.1f}"))
    if not np.isfinite(iv.mean):
        return DASH
    if iv.covers == "baseline":
        return fmt(iv.mean)
    if not iv.has_interval:
        return fmt(iv.mean)
    mark = MARKS.get(iv.covers, "")
    if mark:
        marks.add(mark)
    outside = "" if iv.lo <= iv.mean <= iv.hi else EXCLUDES_MARK
    if outside:
        marks.add(outside)
    return f"{fmt(iv.mean)} [{fmt(iv.lo)}, {fmt(iv.hi)}]{mark}{outside}"


# --------------------------------------------------------------------------- tables
def views(group: Any, evaluators: Sequence[str] | None = None
          ) -> list[tuple[frozenset[str] | None, Any]]:
    """The group as tables of one world set each: ``[(None, group)]`` when every row ran
    the same worlds, else one (world set, restricted group) per set, the largest first
    (world sets of ``evaluators``' runs; Table 1's pair by default)."""
    evs = list(evaluators or group.panels.values())
    sets = world_sets(group, evs)
    if len(sets) < 2:
        return [(None, group)]
    return [(s, restrict(group, s, evs)) for s in sets]


def _table1_rows(sub: Any, worlds: Sequence[str], marks: set[str]) -> list[list[str]]:
    head_ev, all_ev = sub.panels["Head"], sub.panels["All"]
    out = []
    for row in sub.rows:
        sound = row.first.init not in ("random", "supervised")     # sound or imported
        lo, hi = sub.baseline(row, "random"), sub.baseline(row, "supervised")
        source = "imported" if row.first.init == "imported" else "measured"
        cells = [row.label, source, cell(value(sub, row, head_ev, worlds), marks),
                 cell(value(sub, row, all_ev, worlds), marks), str(len(row.runs))]
        for ev in (head_ev, all_ev):
            if not sound:
                cells.append("(reference)" if row.first.init == "supervised" else "(baseline)")
            elif lo is None or hi is None:
                cells.append(DASH)
            else:
                cells.append(cell(share(sub, row, lo, hi, ev, worlds), marks, unit="%"))
        for ev in (head_ev, all_ev):
            cells.append(DASH if lo is None else cell(gain(sub, row, lo, ev, worlds), marks,
                                                         signed=True))
        out.append(cells)
    return out


def _worlds_of(sub: Any) -> list[str]:
    return sorted({r.world for row in sub.rows for r in row.runs})


def interval_sentence(n_worlds: int) -> str:
    """What an interval of these tables covers, in one sentence."""
    return say(TOY_PROSE, "intervals", n_worlds=n_worlds, replicates=bootstrap.REPLICATES,
               seed=bootstrap.SEED)


def table1_section(group: Any) -> tuple[list[str], set[str]]:
    """The lines of a toy group's Table 1 section: one table per world set, the bias and
    coverage sentences beside the first; and the marks used."""
    headers = ["method", "source", "Head mAP [95% CI]", "All mAP [95% CI]", "runs",
               "Head recovered [95% CI]", "All recovered [95% CI]",
               "Head − random [95% CI]", "All − random [95% CI]"]
    marks: set[str] = set()
    lines: list[str] = []
    parts = views(group)
    for i, (worlds, sub) in enumerate(parts):
        ws = _worlds_of(sub)
        names = group.world_names(ws) or "its world"
        if i == 0:
            lines += [say(TOY_PROSE, "first_table", names=names,
                          intervals=interval_sentence(len(ws))), ""]
        else:
            lines += [f"### On {names} only: Head and All mAP", "",
                      say(TOY_PROSE, "other_table", names=names,
                          intervals=interval_sentence(len(ws))), ""]
        lines += [markdown_table(headers, _table1_rows(sub, ws, marks), numeric_from=2), ""]
        if i == 0:
            bias = resampling_bias(sub, sub.panels["Head"], ws)
            if bias is not None:
                lines += [say(TOY_PROSE, "resampling_bias", bias=bias), ""]
    return lines, marks


def mark_notes(marks: set[str]) -> list[str]:
    """The sentences that explain ``marks`` (this module's and the excluded-point mark)."""
    out = [NOTES[m] for m in ("‡", "†") if m in marks]
    if EXCLUDES_MARK in marks:
        out.append(EXCLUDES_NOTE)
    return out


def headline(group: Any) -> list[tuple[Any, frozenset[str], Any, Any, Any, Any]]:
    """The declared headline rows of a group: (row, worlds, Head − random, All − random,
    Head recovered, All recovered), each on the worlds the row ran (the headline asks for
    every world: the index names the worlds it got)."""
    evs = list(group.panels.values())
    head_ev, all_ev = group.panels["Head"], group.panels["All"]
    out = []
    for row in group.rows:
        if not HEADLINE.matches(row.first):
            continue
        worlds = world_set(row, evs)
        sub = restrict(group, worlds, evs)
        (mine,) = [r for r in sub.rows if r.first.row_key == row.first.row_key]
        base, top = sub.baseline(mine, HEADLINE.baseline), sub.baseline(mine, "supervised")
        ws = sorted(worlds)
        ivs = [None if base is None else gain(sub, mine, base, ev, ws) for ev in (head_ev, all_ev)]
        recs = [None if base is None or top is None else share(sub, mine, base, top, ev, ws)
                for ev in (head_ev, all_ev)]
        out.append((row, worlds, *ivs, *recs))
    return out

"""A table's rows as a :class:`Group`, with its statistics: each row's mean with a 95%
bootstrap interval, paired differences between rows, the share of the random-to-supervised
distance a row recovers; and :func:`group_records`, which turns records into groups."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Mapping

from harness.api.errors import HarnessError
from harness.leaderboard import bootstrap, paper_tables
from harness.leaderboard.cells import DASH
from harness.leaderboard.rows import (GroupKey, Row, Run, base_label, table1_evaluators,
                                      world_weights)


def _covers(images: bool, repeats_a_world: bool) -> str:
    """What an interval resamples: runs only where some world has several, since runs are
    drawn within each world (:func:`harness.leaderboard.bootstrap.world_replicates`)."""
    if images:
        return "runs and test images" if repeats_a_world else "test images"
    return "runs"


@dataclass
class Group:
    """The rows of one table, with the statistics its pages show (and their caches)."""

    key: GroupKey
    rows: list[Row] = field(default_factory=list)
    #: Table 1's columns, {"Head": evaluator, "All": evaluator} (:func:`table1_evaluators`)
    panels: dict[str, str] = field(default_factory=table1_evaluators)
    #: bootstrap caches: image resamples by world, replicate vectors by run and by row
    _images: dict[str, Any] = field(default_factory=dict, repr=False)
    _run_reps: dict[tuple, Any] = field(default_factory=dict, repr=False)
    _row_reps: dict[tuple, Any] = field(default_factory=dict, repr=False)

    @property
    def worlds(self) -> list[tuple[str, int | None, int | None]]:
        """(world key, world seed, test seed) of every world the group's runs used."""
        seen = {(r.world, r.world_seed, r.test_seed) for row in self.rows for r in row.runs}
        return sorted(seen, key=lambda w: (w[1] is None, w[1] if w[1] is not None else 0,
                                           w[0]))

    # ------------------------------------------------------------------ bootstrap
    def _run_replicates(self, run: Run, evaluator: str, images: bool):
        """A run's figure under every bootstrap replicate: its mAP on each image resample
        of its world (``images``), or its recorded value repeated."""
        import numpy as np

        if not images:
            return np.full(bootstrap.REPLICATES, float(run.map(evaluator)))
        key = (run.run_id, evaluator)
        if key not in self._run_reps:
            scores = run.scores[evaluator]
            resamples = self._images.get(run.world)
            if resamples is None:
                resamples = self._images[run.world] = bootstrap.ImageResamples(
                    run.world, len(scores.image_ids))
            if resamples.weights.shape[0] != len(scores.image_ids):
                raise HarnessError(f"run {run.run_id}: {len(scores.image_ids)} test images, "
                                   f"but other runs on its test set have "
                                   f"{resamples.weights.shape[0]}")
            self._run_reps[key] = bootstrap.weighted_map(scores, resamples.weights)
        return self._run_reps[key]

    def _world_replicates(self, row: Row, evaluator: str, images: bool):
        """The bootstrap distribution of the row's mean on each world it ran."""
        key = (row.first.row_key, evaluator, images)
        if key not in self._row_reps:
            by_world: dict[str, list] = defaultdict(list)
            for run in row.runs_of(evaluator):
                by_world[run.world].append(self._run_replicates(run, evaluator, images))
            self._row_reps[key] = bootstrap.world_replicates(row.first.row_key, by_world)
        return self._row_reps[key]

    def interval(self, row: Row, evaluator: str, worlds: Collection[str] | None = None
                 ) -> "bootstrap.Interval | None":
        """The row's mean over runs with its 95% interval (see :mod:`harness.leaderboard.bootstrap`),
        over its runs on ``worlds`` only when given (None when it ran none of them)."""
        counts = row.world_counts(evaluator)
        if worlds is not None:
            counts = {w: c for w, c in counts.items() if w in worlds}
        if not counts:
            return None
        n = sum(counts.values())
        mean = row.mean_on(evaluator, worlds)
        images = row.has_scores(evaluator)
        repeats = any(c > 1 for c in counts.values())
        if not images and not repeats:
            # runs are resampled within each world: with one run per world and no per-image
            # scores there is nothing to resample, and a zero-width interval would mislead
            return bootstrap.Interval(mean, None, None, n, "")
        per_world = self._world_replicates(row, evaluator, images)
        reps = sum(w * per_world[world] for world, w in world_weights(counts, list(counts)).items())
        lo, hi = bootstrap.interval(mean, reps, images)
        return bootstrap.Interval(mean, lo, hi, n, _covers(images, repeats))

    def shared_worlds(self, rows: Iterable[Row]) -> set[str] | None:
        """The worlds on which every one of ``rows`` has runs of both VOC07 evaluators, so
        that figures compared side by side in a plot come from the same worlds (None when
        there is no such world: each row is then drawn on its own worlds)."""
        sets = [set(row.world_counts(ev)) for row in rows for ev in self.panels.values()
                if row.runs_of(ev)]
        common = set.intersection(*sets) if sets else set()
        return common or None

    def world_names(self, worlds: Collection[str] | None) -> str:
        """``"worlds 0, 1, 2"`` / ``"world 0"``: the toy worlds among ``worlds`` by seed,
        "different worlds" for None (no world shared), "" when the group has one world."""
        known = self.worlds
        if len(known) < 2:
            return ""
        if worlds is None:
            return "different worlds"
        seeds = [str(seed if seed is not None else key[:8]) for key, seed, _ in known
                 if key in worlds]
        return f"world{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}"

    def difference(self, row: Row, base: Row, evaluator: str,
                   world: str | None = None) -> "bootstrap.Interval | None":
        """``row`` minus ``base`` with a paired 95% interval, on the worlds both ran (or on
        ``world`` alone): the difference of their means on each such world, weighted by
        ``row``'s runs there (so it is the difference of the two means when both ran the
        same worlds equally often). Each replicate scores both rows on the same image
        resample of each world, their runs drawn independently. Without per-image scores
        for both, runs only."""
        counts_a, counts_b = row.world_counts(evaluator), base.world_counts(evaluator)
        if world is not None:
            counts_a = {world: counts_a[world]} if world in counts_a else {}
            counts_b = {world: counts_b[world]} if world in counts_b else {}
        shared = sorted(set(counts_a) & set(counts_b))
        if not shared:
            return None
        weights = world_weights(counts_a, shared)
        mean = row.weighted_mean(evaluator, weights) - base.weighted_mean(evaluator, weights)
        partial = set(counts_a) != set(counts_b)
        n_a, n_b = (sum(c[w] for w in shared) for c in (counts_a, counts_b))
        if row is base:                     # the baseline's own row: +0.0 by definition
            return bootstrap.Interval(mean, None, None, n_a, "baseline")
        images = row.has_scores(evaluator) and base.has_scores(evaluator)
        if n_a == 1 and n_b == 1 and not images:
            return bootstrap.Interval(mean, None, None, 1, "", partial)
        reps_a = self._world_replicates(row, evaluator, images)
        reps_b = self._world_replicates(base, evaluator, images)
        reps = sum(weights[w] * (reps_a[w] - reps_b[w]) for w in shared)
        lo, hi = bootstrap.interval(mean, reps, images)
        repeats = any(counts_a[w] > 1 or counts_b[w] > 1 for w in shared)
        return bootstrap.Interval(mean, lo, hi, min(n_a, n_b), _covers(images, repeats), partial)

    @property
    def n_runs(self) -> int:
        return sum(len(r.runs) for r in self.rows)

    def baseline(self, row: Row, init: str) -> Row | None:
        """The ``init`` row (random/supervised) comparable with ``row``, if exactly one."""
        f = row.first
        cands = [b for b in self.rows if b.first.init == init
                 and b.first.backbone_key == f.backbone_key
                 and b.first.evaluators_key == f.evaluators_key]
        if len(cands) > 1:
            same = [b for b in cands if b.first.pretrain_key == f.pretrain_key]
            cands = same
        if len(cands) > 1:      # e.g. supervised rows trained on different clip datasets
            cands = [b for b in cands if b.first.pretext_key == f.pretext_key]
        if len(cands) > 1:      # every toy world has the same pictures: its own if it has one
            cands = [b for b in cands if b.first.toy_world == f.toy_world]
        return cands[0] if len(cands) == 1 else None

    def gain(self, row: Row, evaluator: str) -> "bootstrap.Interval | None":
        """``row`` minus its random-init row, in mAP points, with the paired interval."""
        lo = self.baseline(row, "random")
        return None if lo is None else self.difference(row, lo, evaluator)

    def recovered(self, row: Row, evaluator: str) -> float | None:
        """``(row - random) / (supervised - random)`` on the worlds all three rows ran,
        each world weighted by ``row``'s runs there."""
        lo, hi = self.baseline(row, "random"), self.baseline(row, "supervised")
        if lo is None or hi is None:
            return None
        counts = row.world_counts(evaluator)
        shared = sorted(set(counts) & set(lo.world_counts(evaluator))
                        & set(hi.world_counts(evaluator)))
        if not shared:
            return None
        weights = world_weights(counts, shared)
        return paper_tables.recovered_share(*(x.weighted_mean(evaluator, weights)
                                              for x in (row, lo, hi)))


def group_records(records: Iterable[Mapping[str, Any]],
                  scores: Mapping[str, Mapping[str, Any]] | None = None,
                  panels: Mapping[str, str] | None = None,
                  truths: Mapping[str, Mapping[str, Any]] | None = None) -> list[Group]:
    """Records -> groups of rows (aggregated over runs), everything in a fixed order.

    ``scores`` maps a run id to its per-image test scores (the record's sidecar,
    :func:`harness.results.records.read_test_scores`); runs without them get run-only intervals.
    ``panels`` are Table 1's columns (:func:`table1_evaluators`; by default those of no
    frozen protocol): a record with either evaluator is a row of the VOC07 tables, and each
    of its other evaluators a row of that evaluator's table. ``truths`` maps a run id to
    its pseudo-labels' scores against the clips' truth, for records that do not hold them
    (:func:`harness.results.label_truth.truth_of`).
    """
    panels = dict(table1_evaluators() if panels is None else panels)
    by_row: dict[tuple[GroupKey, str], dict[tuple, list[Run]]] = defaultdict(
        lambda: defaultdict(list))
    for record in records:
        names = set(record["metrics"])
        runs = [Run.from_record(record, panels=panels)] if names & set(panels.values()) else []
        runs += [Run.from_record(record, name) for name in sorted(names - set(panels.values()))]
        for run in runs:
            run.scores = dict((scores or {}).get(run.run_id) or {}) or None
            if run.truth is None and truths:
                run.truth = truths.get(run.run_id)
            by_row[(run.group, run.row_key)][(run.world, run.seed)].append(run)
    groups: dict[GroupKey, Group] = {}
    for (gkey, _), seeds in by_row.items():
        runs, superseded = [], 0
        def order(key: tuple) -> tuple:      # world seed first, then run seed
            world_seed = seeds[key][0].world_seed
            return (world_seed is None, world_seed or 0, key[0], key[1])

        for seed in sorted(seeds, key=order):
            same_seed = sorted(seeds[seed], key=lambda r: (r.created, r.run_id))
            runs.append(same_seed[-1])
            superseded += len(same_seed) - 1
        groups.setdefault(gkey, Group(gkey, panels=panels)).rows.append(Row(runs, superseded))
    for group in groups.values():
        _label_rows(group.rows)
        group.rows.sort(key=Row.sort_key)
    return [groups[k] for k in sorted(groups)]


def world_suffix(run: Run) -> str:
    """What a row's label says of its toy world: nothing for the default preset (the
    oracle, every row's world before the presets) or no toy clips; else `` · realistic
    audio`` (the presets differ only in the audio), with any knob it changed."""
    from harness.data.toy.config import DEFAULT_PRESET

    if run.toy_world is None or run.toy_world == DEFAULT_PRESET:
        return ""
    preset, _, knobs = run.toy_world.partition(" with ")
    return f" · {preset} audio" + (f" with {knobs}" if knobs else "")


def _label_rows(rows: list[Row]) -> None:
    """Readable labels; rows that would share one get their pretext clips' fingerprint
    appended where those differ, and their configuration hash where that is not enough."""
    by_label: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        label = base_label(row.first) + world_suffix(row.first)
        by_label[label].append(row)
        row.label = label
    for label, same in by_label.items():
        if len({row.first.pretext_key for row in same}) > 1:
            for row in same:
                row.label = f"{label} [clips {row.first.pretext_key[:8] or DASH}]"
        counts = defaultdict(int)
        for row in same:
            counts[row.label] += 1
        for row in same:
            if counts[row.label] > 1:
                row.label = f"{row.label} [cfg {row.first.row_key[:6]}]"


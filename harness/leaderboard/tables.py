"""The markdown tables of a group's page: Table 1 (Head and All with intervals, recovered
shares, differences to the random-init row), Head and All per world, Table 2 (per-class AP),
other AP formulas and the list of runs."""

from __future__ import annotations

from typing import Iterable

from harness.leaderboard import identity as board_identity
from harness.leaderboard import paper_tables
from harness.leaderboard.cells import (DASH, EXCLUDES_MARK, FOOTNOTES, SHORT, fmt_interval,
                                       markdown_table, minus, num, num_int, pct, points)
from harness.leaderboard.groups import Group
from harness.leaderboard.rows import Stat


def group_table1(group: Group, covers: set[str] | None = None) -> str:
    """Table 1 of the group; ``covers`` collects what the shown intervals resample."""
    covers = set() if covers is None else covers

    def cell(iv, signed=False):
        if iv is not None and iv.covers in FOOTNOTES:
            covers.add(iv.covers)
        if iv is not None and iv.partial:
            covers.add("partial")
        text = fmt_interval(iv, signed)
        if EXCLUDES_MARK in text:
            covers.add("excludes")
        return text

    head_ev, all_ev = group.panels["Head"], group.panels["All"]
    rows = []
    for row in group.rows:
        baseline = row.first.init in ("random", "supervised")
        source = "imported" if row.first.init == "imported" else "measured"
        rows.append([row.label, source, cell(group.interval(row, head_ev)),
                     cell(group.interval(row, all_ev)), str(len(row.runs)),
                     "(baseline)" if baseline else pct(group.recovered(row, head_ev)),
                     "(baseline)" if baseline else pct(group.recovered(row, all_ev)),
                     cell(group.gain(row, head_ev), True), cell(group.gain(row, all_ev), True)])
    if group.key.downstream == board_identity.VOC07:    # only VOC2007's own splits
        random_row = paper_tables.table1_row(paper_tables.RANDOM_METHOD)
        for r in paper_tables.table1():
            head, all_ = paper_tables.reported_recovered_share(r)
            rows.append([f"{r.method} ({r.citation})", "reported", num(r.head_map),
                         num(r.all_map), DASH, pct(head), pct(all_),
                         points(minus(r.head_map, random_row.head_map)),
                         points(minus(r.all_map, random_row.all_map))])
    return markdown_table(["method", "source", "Head mAP [95% CI]", "All mAP [95% CI]",
                           "runs", "Head recovered", "All recovered",
                           "Head − random [95% CI]", "All − random [95% CI]"], rows,
                          numeric_from=2)


def world_tables(group: Group) -> str | None:
    """Head and All per world (mean over the row's runs there, and its difference to the
    random-init row on the same world), when the runs come from two worlds or more."""
    worlds = group.worlds
    if len(worlds) < 2:
        return None
    out = []
    for panel, ev in group.panels.items():
        rows = []
        for row in group.rows:
            base = group.baseline(row, "random")
            cells = []
            for world, _, _ in worlds:
                here = Stat.of(r.map(ev) for r in row.runs if r.world == world)
                there = None if base is None else Stat.of(
                    r.map(ev) for r in base.runs if r.world == world)
                if here is None:
                    cells.append(DASH)
                elif there is None or base is row:
                    cells.append(f"{here.mean:.1f}")
                else:
                    gap = group.difference(row, base, ev, world)
                    cells.append(f"{here.mean:.1f} ({fmt_interval(gap, True)})")
            counts = "/".join(str(sum(r.world == w for r in row.runs)) for w, _, _ in worlds)
            rows.append([row.label, *cells, counts])
        headers = ["method", *(f"world {ws if ws is not None else '?'}" for _, ws, _ in worlds),
                   "runs per world"]
        out += [f"### {panel} (`{ev}`) per world", "", markdown_table(headers, rows), ""]
    return "\n".join(out).rstrip("\n")


def _class_order(keys: Iterable[str]) -> list[str]:
    keys = set(keys)
    known = [c for c in paper_tables.VOC_CLASSES if c in keys]
    return known + sorted(keys - set(known))


def group_table2(group: Group, evaluator: str) -> str | None:
    means = [(row, row.class_means(evaluator)) for row in group.rows]
    means = [(row, m) for row, m in means if m is not None]
    if not means:
        return None
    classes = _class_order(c for _, m in means for c in m)
    rows = []
    for row, m in means:
        row_mean = Stat.of(m.get(c) for c in classes)
        rows.append([row.label, *(num(m.get(c)) for c in classes),
                     num(row_mean.mean if row_mean else None), str(len(row.runs))])
    headers = ["method", *(SHORT.get(c, c) for c in classes), "mean", "runs"]
    return markdown_table(headers, rows)


def group_other_formulas(group: Group) -> str | None:
    fields = [("11-pt", "map_voc07_11pt"), ("VOC10", "map_voc10")]
    cols = [(panel, name, ev, f) for panel, ev in group.panels.items() for name, f in fields
            if any(row.stat(ev, f) for row in group.rows)]
    if not cols:
        return None
    rows = [[row.label, *(num(st.mean if st else None)
                          for st in (row.stat(ev, f) for _, _, ev, f in cols))]
            for row in group.rows]
    return markdown_table(["method", *(f"{p} mAP {n}" for p, n, _, _ in cols)], rows)


def group_runs_table(group: Group) -> str:
    """Every run of the group; toy-world tables name each run's world and test seed."""
    head_ev, all_ev = group.panels["Head"], group.panels["All"]
    if not board_identity.is_toy(group.key.downstream):
        rows = [[row.label, str(run.seed), run.run_id, num(run.map(head_ev)), num(run.map(all_ev)),
                 "yes" if run.scores else "no"] for row in group.rows for run in row.runs]
        return markdown_table(["method", "seed", "run id", "Head mAP", "All mAP",
                               "per-image scores"], rows, align="lrlrrl")
    rows = []
    for row in group.rows:
        for run in row.runs:
            rows.append([row.label, num_int(run.world_seed), num_int(run.test_seed),
                         str(run.seed), run.run_id, num(run.map(head_ev)), num(run.map(all_ev)),
                         "yes" if run.scores else "no"])
    return markdown_table(["method", "world", "test seed", "seed", "run id", "Head mAP",
                           "All mAP", "per-image scores"], rows, align="lrrrlrrl")

"""The page of each table: a group's Table-1 page (Table 1, per world, what the toy world
can say, Table 2, other AP formulas, plots, runs) and the page of an evaluator other than
Table 1's pair (its headline figure per row, its breakdown, plots, runs). The pages' prose
is in ``templates/group_page.md.j2`` and ``templates/evaluator_page.md.j2``."""

from __future__ import annotations

from harness.leaderboard import bootstrap, presentation
from harness.leaderboard import identity as board_identity
from harness.leaderboard import notes as board_notes
from harness.leaderboard import paper_tables, plot_data, toy_worlds
from harness.leaderboard.cells import (EXCLUDES_MARK, EXCLUDES_NOTE, footnotes, fmt_interval,
                                       markdown_table, num, pct)
from harness.leaderboard.groups import Group
from harness.leaderboard.provenance import (datasets_line, machines_line, overrides_lines,
                                            seeds_line)
from harness.leaderboard.prose import paragraphs, say
from harness.leaderboard.reported import SOME_REPORTED, ap_formula_note
from harness.leaderboard.tables import (group_other_formulas, group_runs_table, group_table1,
                                        group_table2, world_tables)
from harness.leaderboard.writing import MARKER

#: the templates of the two kinds of page's prose
GROUP_PROSE = "group_page.md.j2"
EVALUATOR_PROSE = "evaluator_page.md.j2"


def toy_framing() -> list[str]:
    """What the toy world is built to make true, with the generator's own numbers."""
    from harness.data.toy import ToyConfig

    cfg = ToyConfig()
    owens = paper_tables.reported_recovered_share(
        paper_tables.table1_row(paper_tables.OWENS_METHOD))
    lo, hi = cfg.object_gain_db
    silent = (f"{len(cfg.silent_classes)} class(es) are silent ({', '.join(cfg.silent_classes)})"
              if cfg.silent_classes else "no class is silent")
    built, supervised = paragraphs(
        GROUP_PROSE, "toy_framing", clip_seconds=cfg.clip_seconds, silent=silent,
        sound_prob=cfg.sound_prob, gain_lo=lo, gain_hi=hi, owens_head=pct(owens[0]),
        owens_all=pct(owens[1]))
    return ["## What this toy table can and cannot say", "", built, "", supervised, ""]


def interval_text(group: Group) -> str:
    """What the Table-1 intervals cover, in words (the page's definition of them)."""
    if not board_identity.is_toy(group.key.downstream):
        return say(GROUP_PROSE, "intervals_real", replicates=bootstrap.REPLICATES,
                   seed=bootstrap.SEED)
    return say(GROUP_PROSE, "intervals_toy", n_worlds=len(group.worlds),
               replicates=bootstrap.REPLICATES, seed=bootstrap.SEED)


def group_page(group: Group, plot_files: list[str]) -> str:
    k = group.key
    covers: set[str] = set()
    toy = board_identity.is_toy(k.downstream)
    # over several toy worlds: one table per world set, intervals that resample worlds
    by_worlds = toy and len(group.worlds) >= 2
    if by_worlds:
        table1_lines, marks = presentation.table1_section(group)
    else:
        table1_lines, marks = [group_table1(group, covers), ""], set()
    out = [MARKER, "", f"# {k.title}", "", *([seeds_line(group), ""] if toy else []),
           datasets_line(group), "", machines_line(group), "", *overrides_lines(group),
           say(GROUP_PROSE, "about", downstream=k.downstream, data_key=k.fingerprint[:16],
               preset=k.preset, profile=k.profile, n_rows=len(group.rows),
               n_runs=group.n_runs, head=group.panels["Head"], all=group.panels["All"]), "",
           *([] if by_worlds else [interval_text(group), ""])]
    if toy:
        out += [say(GROUP_PROSE, "toy_numbers"), ""]
    out += ["## Table 1: Head and All mAP", "", *table1_lines]
    notes = [footnotes(toy)[c] for c in ("runs", "test images", "", "partial", "excludes")
             if c in covers] + presentation.mark_notes(marks)
    if notes:
        out += [" ".join(notes), ""]
    if k.downstream == board_identity.VOC07:    # reported rows sit in this table
        out += [ap_formula_note(SOME_REPORTED), ""]
    superseded = sum(r.superseded for r in group.rows)
    if superseded:
        out += [say(GROUP_PROSE, "superseded", n=superseded, toy=toy), ""]
    worlds = world_tables(group)
    if worlds:
        out += ["## Per world", "", say(GROUP_PROSE, "per_world"), "", worlds, ""]
        if EXCLUDES_MARK in worlds and "excludes" not in covers and EXCLUDES_MARK not in marks:
            out += [EXCLUDES_NOTE, ""]
    if k.downstream == "toy-voc":
        out += toy_framing()
        knobs = plot_data.knob_plot_file(group)
        out += toy_worlds.knob_lines(group, knobs if knobs in plot_files else None)
        plot_files = [name for name in plot_files if name != knobs]
    out += board_notes.networks_lines(group)
    if toy:
        out += board_notes.truth_lines(group)
    parts = presentation.views(group) if by_worlds else [(None, group)]
    for panel, ev in group.panels.items():
        for worlds_shown, part in parts:
            table = group_table2(part, ev)
            on = f" on {group.world_names(worlds_shown)} only" if worlds_shown else ""
            if table:
                out += [f"## Table 2: per-class AP, {panel} (`{ev}`){on}", "",
                        say(GROUP_PROSE, "table2"), "", table, ""]
    for worlds_shown, part in parts:
        other = group_other_formulas(part)
        on = f" on {group.world_names(worlds_shown)} only" if worlds_shown else ""
        if other:
            out += [f"## Other AP formulas{on}", "", say(GROUP_PROSE, "other_formulas"), "",
                    other, ""]
    if plot_files:
        out += ["## Plots", "", say(GROUP_PROSE, "plots", toy=toy), ""]
        out += [f"![{name}]({name})" for name in plot_files]
        out += [""]
    out += ["## Runs", "", group_runs_table(group), ""]
    return "\n".join(out)


def generic_page(group: Group, plot_files: list[str] = ()) -> str:
    """The page of one evaluator other than the VOC07 pair: its headline figure per row."""
    k, ev = group.key, group.key.evaluator
    # each backbone's headline names its own layer (AlexNet pool5, ResNet-18 pooled)
    named = sorted({(r.first.backbone_name, r.first.metrics[ev]["headline"],
                     r.first.metrics[ev]["formula"]) for r in group.rows})
    heads = "; ".join(f"{b} `{h}`, {f if i == 0 else f.split(':')[0]}"
                      for i, (b, h, f) in enumerate(named))
    out = [MARKER, "", f"# {k.title}", "", datasets_line(group), "", machines_line(group), "",
           *overrides_lines(group),
           say(EVALUATOR_PROSE, "about", downstream=k.downstream,
               data_key=k.fingerprint[:16], evaluator=ev, profile=k.profile,
               n_rows=len(group.rows), n_runs=group.n_runs, heads=heads,
               replicates=bootstrap.REPLICATES, seed=bootstrap.SEED), ""]
    toy = board_identity.is_toy(k.downstream)
    by_worlds = toy and len(group.worlds) >= 2
    parts = presentation.views(group, (ev,)) if by_worlds else [(None, group)]
    covers: set[str] = set()
    marks: set[str] = set()
    out += ["## Headline", ""]
    for i, (worlds_shown, part) in enumerate(parts):
        ws = sorted({r.world for row in part.rows for r in row.runs})
        names = group.world_names(ws)
        if i:
            out += [f"### On {names} only", "",
                    say(EVALUATOR_PROSE, "other_worlds", names=names,
                        intervals=presentation.interval_sentence(len(ws))), ""]
        elif by_worlds:
            out += [say(EVALUATOR_PROSE, "first_worlds", names=names,
                        intervals=presentation.interval_sentence(len(ws))), ""]
        rows = []
        for row in part.rows:
            if by_worlds:
                text = presentation.cell(presentation.value(part, row, ev, ws), marks)
            else:
                iv = part.interval(row, ev)
                text = fmt_interval(iv)
                if iv is not None and iv.covers in ("runs", "test images", ""):
                    covers.add(iv.covers)
                if EXCLUDES_MARK in text:
                    covers.add("excludes")
            rows.append([row.label, f"`{row.first.metrics[ev]['headline']}`", text,
                         str(len(row.runs))])
        out += [markdown_table(["method", "headline", "mAP [95% CI]", "runs"], rows), ""]
    notes = [footnotes(toy)[c] for c in ("runs", "test images", "excludes") if c in covers]
    notes += presentation.mark_notes(marks)
    if any(not row.has_scores(ev) for row in group.rows):
        runs = [r for row in group.rows for r in row.runs_of(ev)]
        notes.append(presentation.missing_scores_note(
            ev, sum(not (r.scores and ev in r.scores) for r in runs), len(runs)))
    if notes:
        out += [" ".join(notes), ""]
    for worlds_shown, part in parts:
        breakdown = group_table2(part, ev)
        on = f" on {group.world_names(worlds_shown)} only" if worlds_shown else ""
        if breakdown:
            out += [f"## Breakdown{on}", "", say(EVALUATOR_PROSE, "breakdown"), "",
                    breakdown, ""]
    if plot_files:
        out += ["## Plots", ""] + [f"![{name}]({name})" for name in plot_files] + [""]
    runs = [[row.label, str(run.seed), run.run_id, num(run.map(ev))]
            for row in group.rows for run in row.runs]
    out += ["## Runs", "", markdown_table(["method", "seed", "run id", "headline mAP"], runs,
                                          align="lrlr"), ""]
    return "\n".join(out)

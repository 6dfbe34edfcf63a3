"""The index page (the tables, the declared headline, the frozen protocol, the paper's
reported rows) and the archive's page of records under superseded protocols."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from harness.leaderboard import paper_tables, presentation, toy_worlds
from harness.leaderboard.cells import DASH, markdown_table, num, num_int
from harness.leaderboard.groups import Group
from harness.leaderboard.prose import say
from harness.leaderboard.reported import (ap_formula_note, reported_table1, reported_table2,
                                          target_sentence)
from harness.leaderboard.rows import Run, base_label, table1_evaluators
from harness.leaderboard.writing import MARKER

#: the template of the index's and the archive's prose
INDEX_PROSE = "index.md.j2"


def protocol_lines(frozen) -> list[str]:
    """The index's section on the frozen protocol."""
    if frozen is None:
        return ["## Protocol", "", say(INDEX_PROSE, "no_protocol"), ""]
    fps = ", ".join(f"`{n}` `{fp[:12]}`" for n, fp in frozen.fingerprints().items())
    return ["## Protocol", "",
            say(INDEX_PROSE, "protocol", frozen_at=frozen.frozen_at or "?",
                commit=(frozen.commit or "?")[:12], profile=frozen.profile,
                test_seed=frozen.test_seed if frozen.test_seed is not None else DASH,
                fingerprints=fps), "",
            *protocol_history(frozen)]


def protocol_history(frozen) -> list[str]:
    """The frozen protocol's ``notes`` (each freeze and why, and what was seen on the test
    split before or since), as a list under the protocol's section; nothing without notes.
    The notes are not part of any fingerprint."""
    if not frozen.notes:
        return []
    return ["### History of the protocol", "",
            say(INDEX_PROSE, "history"), "",
            *(f"- {note}" for note in frozen.notes), ""]


def index_page(groups: list[Group], frozen=None, n_archived: int = 0,
               stale: Iterable[str] = ()) -> str:
    panels = table1_evaluators(frozen)
    others = [g for g in groups if g.key.evaluator]
    groups = [g for g in groups if not g.key.evaluator]
    out = [MARKER, "", "# Leaderboards", "", say(INDEX_PROSE, "about"), "",
           say(INDEX_PROSE, "recovered", target=target_sentence()), "",
           *protocol_lines(frozen), "## Measured", ""]
    if groups:
        rows = [[f"[{g.key.title}]({g.key.slug}.md)", g.key.downstream, g.key.preset,
                 g.key.profile, str(len(g.rows)), str(g.n_runs)] for g in groups]
        out += [markdown_table(["table", "dataset", "preset", "profile", "configurations",
                                "runs"], rows, align="llllrr"), ""]
        out += headline_lines(groups)
        out += toy_worlds.survival_lines(groups)
    else:
        out += [say(INDEX_PROSE, "no_records", frozen=frozen is not None), ""]
    stale = list(stale)
    if stale:
        out += [say(INDEX_PROSE, "stale", n=len(stale)), ""]
    if n_archived:
        out += ["## Archive", "", say(INDEX_PROSE, "archive", n=n_archived), ""]
    if others:
        rows = [[f"[{g.key.title}]({g.key.slug}.md)", g.key.downstream, g.key.evaluator,
                 g.key.profile, str(len(g.rows)), str(g.n_runs)] for g in others]
        out += ["## Other evaluators", "",
                say(INDEX_PROSE, "other_evaluators", head=panels["Head"], all=panels["All"]), "",
                markdown_table(["table", "dataset", "evaluator", "profile", "configurations",
                                "runs"], rows, align="llllrr"), ""]
    out += ["## Reported by the paper", "", f"Source: {paper_tables.CITATION}.", "",
            "### Table 1 (reported): VOC07 classification mAP", "",
            say(INDEX_PROSE, "reported_table1"), "",
            reported_table1(), "", ap_formula_note(), "",
            "### Table 2 (reported): per-class AP", "",
            say(INDEX_PROSE, "reported_table2"), "", reported_table2(), ""]
    return "\n".join(out)


def headline_lines(groups: list[Group]) -> list[str]:
    """The index page's headline: the comparison declared before the results
    (:data:`harness.leaderboard.presentation.HEADLINE`) in every table that has its rows, with
    intervals that resample worlds, runs and test images; never the best row."""
    spec = presentation.HEADLINE
    marks: set[str] = set()
    rows = []
    for g in groups:
        for row, worlds, head, all_, rec, rec_all in presentation.headline(g):
            names = g.world_names(worlds) or "its one world"
            base, head_ev = g.baseline(row, spec.baseline), g.panels["Head"]
            per_world = DASH if base is None else " / ".join(
                f"{row.world_mean(head_ev, w) - base.world_mean(head_ev, w):+.1f}"
                for w, _, _ in g.worlds if w in worlds and w in base.world_counts(head_ev)
                and w in row.world_counts(head_ev))
            rows.append([f"[{g.key.title}]({g.key.slug}.md)", row.label,
                         row.first.toy_world or DASH, names, per_world,
                         presentation.cell(head, marks, signed=True),
                         presentation.cell(all_, marks, signed=True),
                         presentation.cell(rec, marks, unit="%"),
                         presentation.cell(rec_all, marks, unit="%"),
                         toy_worlds.nmi_cell(row, sorted(worlds))])
    out = ["## Headline", "",
           say(INDEX_PROSE, "headline", comparison=spec.sentence()), ""]
    if not rows:
        return out + ["No table has the headline's rows yet.", ""]
    out += [markdown_table(["table", "row", "toy world", "worlds", "Head − random, each world",
                    "Head − random [95% CI]", "All − random [95% CI]",
                    "Head recovered [95% CI]", "All recovered [95% CI]",
                    f"{toy_worlds.TRUTH_COLUMN} NMI [95% CI]"], rows,
                    align="lllllrrrrr"), "",
            say(INDEX_PROSE, "headline_intervals"),
            *presentation.mark_notes(marks), ""]
    return out


def archive_page(archived: list[Mapping[str, Any]], frozen=None) -> str:
    """``archive/README.md``: every archived record, its protocol and why it was superseded."""
    from harness.results.protocol import record_fingerprint

    panels = table1_evaluators(frozen)
    out = [MARKER, "", "# Archive: results under superseded protocols", "",
           say(INDEX_PROSE, "archive_page"), ""]
    rows = []
    for record in sorted(archived, key=lambda r: (r["created"], r["run_id"])):
        runs = ([Run.from_record(record, panels=panels)]
                if set(record["metrics"]) & set(panels.values())
                else [Run.from_record(record, n) for n in sorted(record["metrics"])[:1]])
        run = runs[0]
        why = frozen.why_superseded(record) if frozen is not None else "no frozen protocol"
        rows.append([run.run_id, base_label(run), num_int(run.world_seed),
                     num_int(run.test_seed), str(run.seed), num(run.map(panels['Head'])),
                     num(run.map(panels['All'])), f"`{record_fingerprint(record)[:12]}`",
                     why or "current (under the frozen protocol)"])
    out += [markdown_table(["run id", "method", "world", "test seed", "seed", "Head mAP",
                            "All mAP", "protocol", "why superseded"], rows,
                           align="llrrrrrll"), ""]
    return "\n".join(out)

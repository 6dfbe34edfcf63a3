"""The paper's reported rows as the pages show them: its Tables 1 and 2, the recovered
share it reports for the sound row, and how its AP formula may differ from the measured one."""

from __future__ import annotations

from harness.leaderboard import paper_tables
from harness.leaderboard.cells import SHORT, markdown_table, num, pct
from harness.leaderboard.prose import say


def reported_table1() -> str:
    """The paper's Table 1 with the recovered share of each row (marked reported)."""
    rows = []
    for r in paper_tables.table1():
        head, all_ = paper_tables.reported_recovered_share(r)
        rows.append([r.method, r.citation, "reported", num(r.head_map), num(r.all_map),
                     pct(head), pct(all_)])
    return markdown_table(["method", "citation", "source", "Head mAP", "All mAP",
                           "Head recovered", "All recovered"], rows, numeric_from=3)


def reported_table2() -> str:
    """The paper's Table 2 (per-class AP, reported), with each row's mean."""
    rows = [[r.method, r.citation, "reported", *(f"{v:.0f}" for v in r.ap), f"{r.mean:.1f}"]
            for r in paper_tables.table2()]
    headers = ["method", "citation", "source", *(SHORT[c] for c in paper_tables.VOC_CLASSES),
               "mean"]
    return markdown_table(headers, rows, numeric_from=3)


def target_sentence() -> str:
    """The recovered share the paper reports for Owens et al.'s sound row, in words."""
    owens = paper_tables.table1_row(paper_tables.OWENS_METHOD)
    head, all_ = paper_tables.reported_recovered_share(owens)
    return say("reported.md.j2", "target", head=pct(head), all=pct(all_))


#: what :func:`ap_formula_note` says first under a table of reported rows only, and under a
#: table where they stand beside measured ones
ONLY_REPORTED = say("reported.md.j2", "only_reported")
SOME_REPORTED = say("reported.md.j2", "some_reported")


def ap_formula_note(lead: str = ONLY_REPORTED) -> str:
    """How the reported rows' AP may differ from the one measured here (harness/evaluation/ap.py),
    after ``lead``, which says which rows of the table above are reported."""
    from harness.evaluation import ap

    return say("reported.md.j2", "ap_formula", lead=lead, headline=ap.HEADLINE,
               formula=ap.FORMULAS[ap.HEADLINE])

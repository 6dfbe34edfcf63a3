"""How one figure is written on a page: numbers, intervals with their marks, the marks'
footnotes, and GitHub markdown tables."""

from __future__ import annotations

from tabulate import tabulate

from harness.leaderboard import bootstrap, paper_tables
from harness.leaderboard.prose import say

#: the template of the marks' footnotes
MARKS_PROSE = "marks.md.j2"

#: class-name abbreviations of the paper's Table 2
SHORT = dict(zip(paper_tables.VOC_CLASSES, (
    "aer", "bk", "brd", "bt", "btl", "bus", "car", "cat", "chr", "cow", "din", "dog", "hrs",
    "mbk", "prs", "pot", "shp", "sfa", "trn", "tv")))

#: what a cell shows where there is no figure
DASH = "—"

#: the mark of a difference taken on fewer worlds than one of its rows ran
PARTIAL_MARK = "§"
PARTIAL_NOTE = say(MARKS_PROSE, "partial")
#: the mark of an interval that does not contain its own point
EXCLUDES_MARK = "∉"
EXCLUDES_NOTE = say(MARKS_PROSE, "excludes")
#: footnote marks of intervals that resample less than runs and test images
MARKS = {"runs": "†", "test images": "‡"}
FOOTNOTES = {
    "runs": say(MARKS_PROSE, "runs_only"),
    "test images": say(MARKS_PROSE, "images_only", toy=True),
    "": say(MARKS_PROSE, "nothing_to_resample", toy=True),
    "partial": PARTIAL_NOTE,
    "excludes": EXCLUDES_NOTE,
}
#: the same for real data, which has one test set and no worlds
REAL_FOOTNOTES = {**FOOTNOTES,
                  "test images": say(MARKS_PROSE, "images_only", toy=False),
                  "": say(MARKS_PROSE, "nothing_to_resample", toy=False)}


def footnotes(toy: bool) -> dict[str, str]:
    """The footnotes of the interval marks for a toy-world page or a real-data page."""
    return FOOTNOTES if toy else REAL_FOOTNOTES


def fmt_interval(iv: "bootstrap.Interval | None", signed: bool = False) -> str:
    """``38.9 [37.2, 40.5]`` (a mark when it covers less than runs and images)."""
    if iv is None:
        return DASH
    f = "{:+.1f}" if signed else "{:.1f}"
    mark = PARTIAL_MARK if iv.partial else ""
    if not iv.has_interval:
        return f.format(iv.mean) + mark
    outside = "" if iv.lo <= iv.mean <= iv.hi else EXCLUDES_MARK
    return (f"{f.format(iv.mean)} [{f.format(iv.lo)}, {f.format(iv.hi)}]"
            f"{MARKS.get(iv.covers, '')}{outside}{mark}")


def pct(share: float | None) -> str:
    """A share as a whole percentage (``—`` for none)."""
    return DASH if share is None else f"{100 * share:.0f}%"


def num(value: float | None) -> str:
    """A figure to one decimal (``—`` for none)."""
    return DASH if value is None else f"{value:.1f}"


def num_int(value: int | None) -> str:
    return DASH if value is None else str(value)


def minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def points(x: float | None) -> str:
    """A difference in mAP points, signed (``—`` when there is no baseline)."""
    return DASH if x is None else f"{x:+.1f}"


def markdown_table(headers: list[str], rows: list[list[str]], numeric_from: int = 1,
                   align: str | None = None) -> str:
    """A GitHub markdown table; columns from ``numeric_from`` on (or per ``align``: a string
    of "l"/"r", one letter per column) are right-aligned."""
    align = align or "l" * numeric_from + "r" * (len(headers) - numeric_from)
    colalign = ["left" if a == "l" else "right" for a in align]
    cells = [[str(c).replace("|", "\\|") for c in row] for row in rows]
    return tabulate(cells, headers=headers, tablefmt="github", colalign=colalign,
                    disable_numparse=True)

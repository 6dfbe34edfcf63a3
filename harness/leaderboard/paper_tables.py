"""The paper's published Tables 1 and 2, kept as data (package files ``harness/leaderboard/paper/``).

These are *reported* numbers: the leaderboard prints them in tables of their own, and
beside this project's measured rows only on a VOC folder with PASCAL VOC2007's splits
(:data:`harness.leaderboard.identity.VOC2007_SPLITS`), marked as such, never averaged with
measured rows. The paper's Table 2
rows other than its own come from a frozen-feature comparison and are not comparable with
its Table 1 (see ``harness/leaderboard/paper/PAPER_TABLES.md``).
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources

#: where the numbers come from
CITATION = ('Rohan Mahadev and Hongyu Lu, "Improving Visual Recognition using Ambient Sound '
            'for Supervision", New York University (Tables 1 and 2)')

#: the 20 PASCAL VOC classes in the order of the paper's Table 2 (VOC's standard order)
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

#: Table 1 rows that play the roles of the lower and upper bound
RANDOM_METHOD = "Random"
SUPERVISED_METHOD = "ImageNet (pretrained)"
#: the rows the paper's own method contributes to Table 1 / Table 2
OWN_CITATION = "Mahadev and Lu"
#: the reproduced work (Owens et al.): the row whose recovered share is the target
OWENS_METHOD = "Ambient sound"


@dataclass(frozen=True)
class Table1Row:
    """One row of Table 1: VOC07 classification mAP (%), None where not reported."""

    method: str
    citation: str
    head_map: float | None
    all_map: float | None


@dataclass(frozen=True)
class Table2Row:
    """One row of Table 2: per-class AP (%) in :data:`VOC_CLASSES` order."""

    method: str
    citation: str
    ap: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.ap) / len(self.ap)


def _read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("harness.leaderboard").joinpath("paper", name).read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _number(text: str) -> float | None:
    return float(text) if text.strip() else None


@functools.lru_cache(maxsize=1)
def table1() -> tuple[Table1Row, ...]:
    """The paper's Table 1, in the paper's order."""
    return tuple(Table1Row(r["method"], r["citation"], _number(r["head_map"]),
                           _number(r["all_map"])) for r in _read_csv("paper_table1.csv"))


@functools.lru_cache(maxsize=1)
def table2() -> tuple[Table2Row, ...]:
    """The paper's Table 2, in the paper's order."""
    rows = _read_csv("paper_table2.csv")
    if rows and tuple(k for k in rows[0] if k not in ("method", "citation")) != VOC_CLASSES:
        raise RuntimeError("harness/leaderboard/paper/paper_table2.csv: columns are not the 20 VOC classes")
    return tuple(Table2Row(r["method"], r["citation"], tuple(float(r[c]) for c in VOC_CLASSES))
                 for r in rows)


def table1_row(method: str) -> Table1Row:
    """The Table 1 row named ``method``."""
    for row in table1():
        if row.method == method:
            return row
    raise KeyError(method)


def recovered_share(value: float | None, random: float | None,
                    supervised: float | None) -> float | None:
    """The share of the random-to-supervised distance that ``value`` recovers.

    ``(value - random) / (supervised - random)``; None when any input is missing or when
    the two bounds coincide (the share is undefined).
    """
    if value is None or random is None or supervised is None or supervised == random:
        return None
    return (value - random) / (supervised - random)


def reported_recovered_share(row: Table1Row) -> tuple[float | None, float | None]:
    """(Head, All) recovered share of a Table 1 row against the paper's Random and ImageNet."""
    lo, hi = table1_row(RANDOM_METHOD), table1_row(SUPERVISED_METHOD)
    return (recovered_share(row.head_map, lo.head_map, hi.head_map),
            recovered_share(row.all_map, lo.all_map, hi.all_map))

"""Tamper evidence: every figure of a result record recomputed from the record's own evidence.

The leaderboard publishes what records say, so ``harness leaderboard`` (and ``--check``)
first recompute each record's figures and refuse, naming the file and the figure, a record
whose numbers disagree with:

- **its per-image test scores** (the sidecar ``<run id>.scores.npz``, whose sha256 the
  record names and :func:`harness.results.store.read_record` checks): every class's AP by
  Table 1's formula, by the devkit formulas where the record keeps those
  (``details["ap_voc07_11pt"]``, ``details["ap_voc10"]``), and their means;
- **its own per-class figures**, for every evaluator, with scores or without: the
  headline is the mean of the breakdown (VOC07 Head and All, any evaluator whose breakdown
  is its per-class AP); for a per-layer evaluator (``details["headline_layer"]``) the
  headline is that layer's entry of the breakdown and each layer's entry the mean of its
  per-class AP in ``details["ap"]``; for the low-shot SVMs (``details["per_sample"]``)
  each k's entry is the mean (and ``details["std"]`` the spread) of its samples' mAP, and
  the headline the mean over k. The means of the devkit formulas
  (``details["map_voc07_11pt"]``, ``details["map_voc10"]``) are checked against their
  per-class AP the same way.

Recomputation reuses the code that made the figures: :mod:`harness.evaluation.ap` for the devkit
formulas, and for Table 1's formula :func:`harness.leaderboard.bootstrap.weighted_ap` with every
image's weight 1, which is scikit-learn's ``average_precision_score(y, s - 1e-5 y)``
evaluated without its per-call overhead. On the committed records it agrees with what
the evaluators recorded to within 1e-13; a figure further than :data:`TOLERANCE`
(relative, floor 1) from its recomputation is refused. A record's digest
(:func:`harness.results.store.record_digest`) catches any edit of a record written with one;
these checks catch an edited figure in every record, digest or not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from harness.evaluation.ap import AP_FUNCTIONS, HEADLINE, SplitScores
from harness.api.errors import BadInputError, HarnessError

#: the largest relative difference (against max(1, |figure|)) between a figure and its
#: recomputation that is taken as agreement: far above float rounding (~1e-14), far below
#: any edit that changes a figure as printed
TOLERANCE = 1e-9

#: (mean figure, per-class figures, AP formula) of the devkit formulas a record may keep
DEVKIT_FIGURES = (("map_voc07_11pt", "ap_voc07_11pt", "voc07_11pt"),
                  ("map_voc10", "ap_voc10", "voc10_envelope"))


def agrees(says: Any, gives: float | None) -> bool:
    """Whether a recorded figure ``says`` is its recomputation ``gives`` (both numbers)."""
    if gives is None or isinstance(says, bool) or not isinstance(says, (int, float)):
        return says is None and gives is None
    return abs(says - gives) <= TOLERANCE * max(1.0, abs(says), abs(gives))


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.10g}"
    return "nothing" if x is None else repr(x)


def _mean(values: Iterable[Any]) -> float | None:
    """The plain mean of the numbers among ``values`` (None: there are none), as
    :meth:`harness.evaluation.ap.APReport.mean` takes it."""
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return float(np.mean(nums)) if nums else None


class _Findings:
    """Disagreements of one record, in the order found, one per figure."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._figures: set[tuple[str, str]] = set()

    def compare(self, evaluator: str, figure: str, says: Any, gives: float | None,
                evidence: str) -> None:
        """Note ``figure`` if it does not agree with what ``evidence`` gives."""
        if agrees(says, gives) or (evaluator, figure) in self._figures:
            return
        self._figures.add((evaluator, figure))
        self.lines.append(f"{evaluator} {figure} says {_fmt(says)} but {evidence} "
                          f"{_fmt(gives)}")

    def note(self, line: str) -> None:
        self.lines.append(line)


# --------------------------------------------------------------------------- from scores
def per_class_ap(scores: SplitScores, formula: str = HEADLINE) -> dict[str, float | None]:
    """Class name -> AP in percent of ``scores`` by ``formula`` (None: no positive image)."""
    out: dict[str, float | None] = {}
    if formula == HEADLINE:
        from harness.leaderboard.bootstrap import weighted_ap

        n = len(scores.image_ids)
        ones = np.ones((n, 1), dtype=np.int16 if n < 2**15 else np.int32)
        for c, name in enumerate(scores.class_names):
            ap = float(weighted_ap(scores.labels[:, c], scores.scores[:, c], ones)[0])
            out[name] = None if np.isnan(ap) else 100.0 * ap
        return out
    fn = AP_FUNCTIONS[formula]
    for c, name in enumerate(scores.class_names):
        try:
            out[name] = 100.0 * fn(scores.labels[:, c], scores.scores[:, c], name)
        except BadInputError:                       # no positive image: no AP
            out[name] = None
    return out


def _check_scores(found: _Findings, evaluator: str, m: Mapping[str, Any],
                  scores: SplitScores) -> None:
    """The figures of metrics entry ``m`` against the per-image ``scores`` of its test split."""
    evidence = "its scores give"
    details = m.get("details") or {}
    classes = set(scores.class_names)
    if set(m["breakdown"]) == classes:
        per_class, where = m["breakdown"], "breakdown"
    elif isinstance(details.get("headline_ap"), dict) and set(details["headline_ap"]) == classes:
        per_class, where = details["headline_ap"], "details.headline_ap"
    else:
        found.note(f"{evaluator}: its scores hold the classes {sorted(classes)}, but neither "
                   f"its breakdown nor details.headline_ap gives an AP for each of them")
        return
    split = details.get("split_tested")
    if split is not None and split != scores.split:
        found.note(f"{evaluator} details.split_tested says {split!r} but its scores are of "
                   f"split {scores.split!r}")
    n_test = details.get("n_test")
    if isinstance(n_test, int) and n_test != len(scores.image_ids):
        found.note(f"{evaluator} details.n_test says {n_test} but its scores hold "
                   f"{len(scores.image_ids)} test images")
    aps = per_class_ap(scores, HEADLINE)
    for name in scores.class_names:
        found.compare(evaluator, f"{where}[{name!r}]", per_class.get(name), aps[name], evidence)
    found.compare(evaluator, m["headline"], m["value"], _mean(aps.values()), evidence)
    for mean_key, per_key, formula in DEVKIT_FIGURES:
        recorded = details.get(per_key)
        if not isinstance(recorded, dict) or set(recorded) != classes:
            continue
        aps = per_class_ap(scores, formula)
        for name in scores.class_names:
            found.compare(evaluator, f"details.{per_key}[{name!r}]", recorded.get(name),
                          aps[name], evidence)
        if mean_key in details:
            found.compare(evaluator, f"details.{mean_key}", details[mean_key],
                          _mean(aps.values()), evidence)


# --------------------------------------------------------------------------- from figures
def _check_figures(found: _Findings, evaluator: str, m: Mapping[str, Any]) -> None:
    """The summaries of metrics entry ``m`` against the figures they summarise."""
    details = m.get("details") or {}
    breakdown = m["breakdown"]
    layer = details.get("headline_layer")
    per_sample = details.get("per_sample")
    if isinstance(layer, str) and layer in breakdown:
        found.compare(evaluator, m["headline"], m["value"], breakdown[layer],
                      f"its breakdown[{layer!r}] gives")
        ap = details.get("ap") if isinstance(details.get("ap"), dict) else {}
        for name, kinds in ap.items():
            classes = kinds.get(HEADLINE) if isinstance(kinds, dict) else None
            if isinstance(classes, dict) and name in breakdown:
                found.compare(evaluator, f"breakdown[{name!r}]", breakdown[name],
                              _mean(classes.values()), "its per-class APs give")
        head_ap = details.get("headline_ap")
        layer_ap = (ap.get(layer) or {}).get(HEADLINE) if isinstance(ap.get(layer), dict) else None
        if isinstance(head_ap, dict) and isinstance(layer_ap, dict):
            for name in sorted(set(head_ap) | set(layer_ap)):
                found.compare(evaluator, f"details.headline_ap[{name!r}]", head_ap.get(name),
                              layer_ap.get(name), f"details.ap[{layer!r}] gives")
    elif isinstance(per_sample, dict):
        std = details.get("std") if isinstance(details.get("std"), dict) else {}
        for k, maps in per_sample.items():
            if not (isinstance(maps, list) and maps and k in breakdown):
                continue
            found.compare(evaluator, f"breakdown[{k!r}]", breakdown[k], _mean(maps),
                          "its per-sample mAPs give")
            if k in std and _mean(maps) is not None:
                found.compare(evaluator, f"details.std[{k!r}]", std[k],
                              float(np.std(np.asarray(maps, dtype=np.float64))),
                              "its per-sample mAPs give")
        found.compare(evaluator, m["headline"], m["value"], _mean(breakdown.values()),
                      "its breakdown gives")
    elif breakdown:
        found.compare(evaluator, m["headline"], m["value"], _mean(breakdown.values()),
                      "its per-class figures give")
    for mean_key, per_key, _ in DEVKIT_FIGURES:
        if mean_key in details and isinstance(details.get(per_key), dict):
            found.compare(evaluator, f"details.{mean_key}", details[mean_key],
                          _mean(details[per_key].values()), f"its details.{per_key} give")


# --------------------------------------------------------------------------- records
def record_disagreements(record: Mapping[str, Any],
                         scores: Mapping[str, SplitScores] | None = None) -> list[str]:
    """Every figure of ``record`` that its evidence does not give (one line each, without
    the file name; empty: every figure checks out). ``scores`` are the record's per-image
    test scores by evaluator (:func:`harness.results.store.read_test_scores`), None if it has none.
    """
    from harness.results.metrics import metrics_entries

    found = _Findings()
    entries = metrics_entries(record)
    if scores:
        named = (record.get("test_scores") or {}).get("evaluators")
        if named is not None and sorted(scores) != sorted(named):
            found.note(f"test_scores.evaluators says {sorted(named)} but its scores hold "
                       f"{sorted(scores)}")
        for name in sorted(set(scores) - set(entries)):
            found.note(f"{name}: its scores are in the sidecar but the record has no "
                       f"figures of it")
    for name in sorted(entries):
        if scores and name in scores:
            _check_scores(found, name, entries[name], scores[name])
        _check_figures(found, name, entries[name])
    return found.lines


def verify_record(path: str | os.PathLike, record: Mapping[str, Any],
                  scores: Mapping[str, SplitScores] | None = None) -> None:
    """BadInputError naming ``path`` and the first figure of ``record`` that its evidence
    does not give (and how many others disagree); nothing if every figure checks out."""
    try:
        lines = record_disagreements(record, scores)
    except HarnessError as exc:
        raise BadInputError(f"{path}: {exc}") from None
    if lines:
        more = f" (and {len(lines) - 1} other figure(s) that disagree)" if len(lines) > 1 else ""
        raise BadInputError(f"{path}: {lines[0]}{more}")


def verify_record_files(files: Iterable[tuple[Path, Mapping[str, Any]]],
                        scores: Mapping[str, Mapping[str, SplitScores] | None] | None = None
                        ) -> None:
    """:func:`verify_record` for every (path, record) of ``files``
    (:func:`harness.results.store.read_record_files`). ``scores`` holds per-image test scores
    already read, by run id; a record not in it has its sidecar (if any) read here."""
    from harness.results.store import read_test_scores

    scores = scores or {}
    for path, record in files:
        run_id = record["run_id"]
        these = scores[run_id] if run_id in scores else read_test_scores(path, record)
        verify_record(path, record, these)

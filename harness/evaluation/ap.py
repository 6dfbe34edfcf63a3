"""Average precision, the three ways VOC07 classification results are reported.

Labels follow :mod:`harness.data.voc`: ``1`` present, ``0`` absent, ``-1`` difficult-only.
Difficult-only labels take no part in any AP (they are neither hits nor misses).

- ``sklearn_pessimistic`` -- the Table 1 number. scikit-learn's non-interpolated
  ``average_precision_score`` on ``score - 1e-5 * label``, exactly as Krähenbühl et al.'s
  ``train_cls.py`` (and DeepCluster's port) compute it: a positive tied with a negative
  ranks after it, so ties never flatter a classifier.
- ``voc07_11pt`` -- the VOC2007 devkit's 11-point interpolated AP (``VOCevalcls.m``):
  mean over recall thresholds 0, 0.1, ..., 1 of the best precision at recall >= t.
- ``voc10_envelope`` -- the VOC2010+ devkit's all-point AP (``VOCap.m``): area under the
  precision envelope (precision made monotone from the right).

The two devkit formulas rank images by score with the same pessimistic rule for exact
ties (positives after negatives of equal score).

A class without a positive image has no AP: :func:`average_precision` raises
:class:`~harness.api.errors.BadInputError` naming it rather than return NaN or 0.

Scores carry the split they were computed on and the split the classifier was trained on
(:class:`SplitScores`); :func:`score_split` refuses to report a training split unless asked
to, so a test mAP can never be computed on training images by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from harness.api.errors import BadInputError, HarnessError

#: the offset Krähenbühl's code subtracts from positives' scores to break ties pessimistically
TIE_EPS = 1e-5

#: formula name -> one-line definition, recorded with every figure
FORMULAS: dict[str, str] = {
    "sklearn_pessimistic": (
        "non-interpolated AP, sklearn.metrics.average_precision_score(y, s - 1e-5*y) over "
        "non-difficult images (Krähenbühl et al. train_cls.py; ties: positives rank last)"),
    "voc07_11pt": (
        "VOC2007 devkit 11-point interpolated AP: mean over t in {0, 0.1, ..., 1} of "
        "max precision at recall >= t (difficult ignored; ties: positives rank last)"),
    "voc10_envelope": (
        "VOC2010 devkit all-point AP: area under the monotone precision envelope "
        "(difficult ignored; ties: positives rank last)"),
}

#: the formula of the headline figure (``map`` in metrics, Table 1)
HEADLINE = "sklearn_pessimistic"


def _checked(labels: np.ndarray, scores: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Drop difficult-only images; return (binary labels, float64 scores); reject bad input."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or labels.shape != scores.shape:
        raise BadInputError(f"{name}: labels {labels.shape} and scores {scores.shape} must be "
                            "1-d arrays of equal length")
    if not np.isin(labels, (-1, 0, 1)).all():
        raise BadInputError(f"{name}: labels must be 1 (present), 0 (absent) or -1 (difficult)")
    if not np.isfinite(scores).all():
        raise BadInputError(f"{name}: scores contain NaN or Inf")
    keep = labels >= 0
    y = labels[keep].astype(np.int64)
    if y.sum() == 0:
        raise BadInputError(f"{name}: no positive (non-difficult) image, so AP is undefined")
    return y, scores[keep]


def ap_sklearn_pessimistic(labels: np.ndarray, scores: np.ndarray, name: str = "class") -> float:
    """Table 1's AP in [0, 1]: scikit-learn's AP of ``score - 1e-5 * label``."""
    from sklearn.metrics import average_precision_score

    y, s = _checked(labels, scores, name)
    return float(average_precision_score(y, s - TIE_EPS * y))


def precision_recall(labels: np.ndarray, scores: np.ndarray,
                     name: str = "class") -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each image of the ranking (devkit style, one per image).

    Images are sorted by decreasing score; among exactly equal scores negatives come first.
    """
    y, s = _checked(labels, scores, name)
    order = np.lexsort((y, -s))          # primary: -score ascending; ties: label 0 before 1
    hits = y[order]
    tp = np.cumsum(hits)
    fp = np.cumsum(1 - hits)
    return tp / (tp + fp), tp / y.sum()


def ap_voc07_11pt(labels: np.ndarray, scores: np.ndarray, name: str = "class") -> float:
    """VOC2007's 11-point interpolated AP in [0, 1]."""
    prec, rec = precision_recall(labels, scores, name)
    total = 0.0
    for t in np.linspace(0.0, 1.0, 11):
        above = prec[rec >= t - 1e-12]
        total += above.max() if above.size else 0.0
    return float(total / 11.0)


def ap_voc10_envelope(labels: np.ndarray, scores: np.ndarray, name: str = "class") -> float:
    """VOC2010's all-point AP in [0, 1]: area under the precision envelope."""
    prec, rec = precision_recall(labels, scores, name)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


#: formula name -> per-class AP function (labels, scores, name) -> float in [0, 1]
AP_FUNCTIONS: dict[str, Callable[..., float]] = {
    "sklearn_pessimistic": ap_sklearn_pessimistic,
    "voc07_11pt": ap_voc07_11pt,
    "voc10_envelope": ap_voc10_envelope,
}


def average_precision(labels: np.ndarray, scores: np.ndarray, formula: str = HEADLINE,
                      name: str = "class") -> float:
    """AP in [0, 1] of one class by ``formula`` (a key of :data:`FORMULAS`)."""
    try:
        fn = AP_FUNCTIONS[formula]
    except KeyError:
        raise HarnessError(f"unknown AP formula {formula!r}; known: "
                           f"{', '.join(AP_FUNCTIONS)}") from None
    return fn(labels, scores, name)


# --------------------------------------------------------------------------- split-aware
@dataclass(frozen=True)
class SplitScores:
    """Per-image class scores of one split, labelled with where they came from.

    ``split`` is the split the images belong to, ``trained_on`` the split the classifier
    was fitted on; both travel with the scores so that a report can say (and check) which
    images it describes.
    """

    split: str
    trained_on: str
    image_ids: tuple[str, ...]
    class_names: tuple[str, ...]
    #: float64 [N, C]: the score of every image for every class
    scores: np.ndarray
    #: int8 [N, C]: 1 present, 0 absent, -1 difficult-only
    labels: np.ndarray

    def __post_init__(self) -> None:
        n, c = len(self.image_ids), len(self.class_names)
        if self.scores.shape != (n, c) or self.labels.shape != (n, c):
            raise HarnessError(f"scores {self.scores.shape} and labels {self.labels.shape} must "
                               f"both be [{n} images, {c} classes]")


@dataclass
class APReport:
    """AP per class (percent) for every formula, and their means."""

    split: str
    trained_on: str
    class_names: tuple[str, ...]
    #: formula -> class name -> AP in percent
    ap: dict[str, dict[str, float]] = field(default_factory=dict)

    def mean(self, formula: str = HEADLINE) -> float:
        """mAP in percent: the plain mean over every class."""
        values = list(self.ap[formula].values())
        return float(np.mean(values))

    def to_metrics(self) -> dict:
        """The metrics-dictionary entries: ``map``, ``ap`` (headline) and the other kinds."""
        return {
            "map": self.mean(HEADLINE),
            "ap": dict(self.ap[HEADLINE]),
            "map_voc07_11pt": self.mean("voc07_11pt"),
            "ap_voc07_11pt": dict(self.ap["voc07_11pt"]),
            "map_voc10": self.mean("voc10_envelope"),
            "ap_voc10": dict(self.ap["voc10_envelope"]),
            "formulas": {
                "map": HEADLINE, "map_voc07_11pt": "voc07_11pt", "map_voc10": "voc10_envelope",
                "definitions": dict(FORMULAS),
            },
            "unit": "percent",
            "split_tested": self.split,
            "split_trained": self.trained_on,
        }


def score_split(scores: SplitScores, *, formulas: Sequence[str] = tuple(AP_FUNCTIONS),
                allow_training_split: bool = False) -> APReport:
    """AP of every class of ``scores`` by every formula.

    Refuses scores of the split the classifier was trained on unless
    ``allow_training_split`` (a training-set figure must be asked for by name). A class
    with no positive image raises :class:`BadInputError` naming it and the split.
    """
    if scores.split == scores.trained_on and not allow_training_split:
        raise HarnessError(f"refusing to report AP on split {scores.split!r}: the classifier "
                           "was trained on it (pass allow_training_split=True for a train figure)")
    report = APReport(scores.split, scores.trained_on, tuple(scores.class_names))
    for formula in formulas:
        per_class = {}
        for c, cname in enumerate(scores.class_names):
            ap = average_precision(scores.labels[:, c], scores.scores[:, c], formula,
                                   name=f"class {cname!r} in split {scores.split!r}")
            per_class[cname] = 100.0 * ap
        report.ap[formula] = per_class
    return report

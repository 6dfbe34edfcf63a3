"""The AP formulas: hand-computed cases, ties, difficult labels, missing positives, sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from harness.evaluation import ap
from harness.api.errors import BadInputError, HarnessError

ALL = list(ap.AP_FUNCTIONS)


def _ranked(labels):
    """Scores that rank ``labels`` in the given order (first = highest score)."""
    labels = np.asarray(labels)
    return labels, np.linspace(1.0, 0.0, len(labels))


# --------------------------------------------------------------------- hand-computed values
def test_hand_computed_p_n_p_n_n():
    y, s = _ranked([1, 0, 1, 0, 0])
    # positives at ranks 1 and 3: precision 1 and 2/3
    assert ap.ap_sklearn_pessimistic(y, s) == pytest.approx((1 + 2 / 3) / 2)
    assert ap.ap_voc10_envelope(y, s) == pytest.approx((1 + 2 / 3) / 2)
    # recall 0.5 reached at precision 1 (t = 0 .. 0.5: 6 points), recall 1 at 2/3 (5 points)
    assert ap.ap_voc07_11pt(y, s) == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)


def test_hand_computed_envelope_differs_from_non_interpolated():
    y, s = _ranked([0, 1, 1])
    # positives at ranks 2 and 3: precision 1/2 and 2/3
    assert ap.ap_sklearn_pessimistic(y, s) == pytest.approx((1 / 2 + 2 / 3) / 2)
    # the envelope lifts the first positive to 2/3
    assert ap.ap_voc10_envelope(y, s) == pytest.approx(2 / 3)
    assert ap.ap_voc07_11pt(y, s) == pytest.approx(2 / 3)


def test_perfect_and_worst_rankings():
    best_y, best_s = _ranked([1, 1, 0, 0, 0])
    worst_y, worst_s = _ranked([0, 0, 0, 1, 1])
    for formula in ALL:
        assert ap.average_precision(best_y, best_s, formula) == pytest.approx(1.0)
    # positives at ranks 4 and 5: precision 1/4 and 2/5
    assert ap.ap_sklearn_pessimistic(worst_y, worst_s) == pytest.approx((1 / 4 + 2 / 5) / 2)
    assert ap.ap_voc10_envelope(worst_y, worst_s) == pytest.approx(2 / 5)


# --------------------------------------------------------------------- ties
def test_exact_ties_rank_positives_last():
    y = np.array([1, 0, 1, 0])
    s = np.ones(4)
    # pessimistic devkit order N N P P: precision 1/3 at recall .5, 1/2 at recall 1
    prec, rec = ap.precision_recall(y, s)
    np.testing.assert_allclose(prec, [0, 0, 1 / 3, 1 / 2])
    np.testing.assert_allclose(rec, [0, 0, 0.5, 1.0])
    assert ap.ap_voc10_envelope(y, s) == pytest.approx(0.5)
    assert ap.ap_voc07_11pt(y, s) == pytest.approx(0.5)
    # sklearn groups the tied positives at one threshold: precision 2/4
    assert ap.ap_sklearn_pessimistic(y, s) == pytest.approx(0.5)


def test_tie_break_never_flatters_a_constant_classifier():
    rng = np.random.default_rng(0)
    y = (rng.random(50) < 0.3).astype(int)
    y[0] = 1
    for formula in ALL:
        value = ap.average_precision(y, np.zeros(50), formula)
        assert value <= y.mean() + 1e-12, formula


def test_near_tie_within_eps_goes_against_the_positive():
    # the positive is ahead by less than 1e-5: Krähenbühl's offset puts it behind
    y = np.array([1, 0])
    s = np.array([0.5, 0.5 - 5e-6])
    assert average_precision_score(y, s) == pytest.approx(1.0)
    assert ap.ap_sklearn_pessimistic(y, s) == pytest.approx(0.5)
    # a clear lead is untouched
    assert ap.ap_sklearn_pessimistic(y, np.array([0.5, 0.4])) == pytest.approx(1.0)


# --------------------------------------------------------------------- difficult labels
@pytest.mark.parametrize("formula", ALL)
def test_difficult_images_are_ignored(formula):
    rng = np.random.default_rng(1)
    y = (rng.random(40) < 0.4).astype(np.int8)
    y[:2] = 1
    s = rng.normal(size=40)
    base = ap.average_precision(y, s, formula)
    # add difficult images with the best and the worst scores: nothing changes
    y2 = np.concatenate([y, [-1, -1, -1]]).astype(np.int8)
    s2 = np.concatenate([s, [s.max() + 5, s.min() - 5, 0.0]])
    assert ap.average_precision(y2, s2, formula) == pytest.approx(base)
    # turning a scored negative into difficult changes the value (the mask is not a no-op)
    top_neg = np.flatnonzero(y == 0)[np.argmax(s[y == 0])]
    y3 = y.copy()
    y3[top_neg] = -1
    assert ap.average_precision(y3, s, formula) != pytest.approx(base)


# --------------------------------------------------------------------- classes without positives
@pytest.mark.parametrize("formula", ALL)
def test_class_without_positive_is_an_error_naming_it(formula):
    with pytest.raises(BadInputError, match="cow.*no positive"):
        ap.average_precision(np.array([0, 0, -1]), np.array([0.1, 0.2, 0.3]), formula,
                             name="cow")


def test_split_without_positive_for_one_class_names_class_and_split():
    labels = np.array([[1, 0], [0, 0], [1, -1]], dtype=np.int8)
    scores = SplitScoresFactory.make(labels, split="test")
    with pytest.raises(BadInputError, match="'b' in split 'test'"):
        ap.score_split(scores)


# --------------------------------------------------------------------- agreement with sklearn
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_sklearn_without_ties(seed):
    rng = np.random.default_rng(seed)
    n = 300
    y = (rng.random(n) < 0.2).astype(int)
    y[0] = 1
    s = rng.permutation(n) / n                       # distinct scores, gaps >> 1e-5
    expected = average_precision_score(y, s)
    assert ap.ap_sklearn_pessimistic(y, s) == pytest.approx(expected, abs=1e-12)
    # our own ranking gives the same non-interpolated AP: mean precision at each positive
    prec, rec = ap.precision_recall(y, s)
    hits = np.diff(np.concatenate([[0.0], rec])) > 0
    assert prec[hits].mean() == pytest.approx(expected, abs=1e-12)
    # the envelope can only raise precision
    assert ap.ap_voc10_envelope(y, s) >= expected - 1e-12


def test_envelope_equals_sklearn_when_precision_is_monotone():
    y, s = _ranked([1, 1, 1, 0, 0, 0, 0])
    assert ap.ap_voc10_envelope(y, s) == pytest.approx(average_precision_score(y, s))


# --------------------------------------------------------------------- bad input
def test_bad_scores_and_labels_are_rejected():
    with pytest.raises(BadInputError, match="NaN"):
        ap.ap_sklearn_pessimistic(np.array([1, 0]), np.array([np.nan, 0.0]))
    with pytest.raises(BadInputError, match="labels must be"):
        ap.ap_voc07_11pt(np.array([2, 0]), np.array([0.1, 0.0]))
    with pytest.raises(BadInputError, match="equal length"):
        ap.ap_voc10_envelope(np.array([1, 0, 0]), np.array([0.1, 0.0]))
    with pytest.raises(HarnessError, match="unknown AP formula"):
        ap.average_precision(np.array([1, 0]), np.array([1.0, 0.0]), "optimistic")


# --------------------------------------------------------------------- split-aware scoring
class SplitScoresFactory:
    @staticmethod
    def make(labels, *, split="test", trained_on="trainval", scores=None):
        labels = np.asarray(labels, dtype=np.int8)
        n, c = labels.shape
        if scores is None:
            scores = np.random.default_rng(0).normal(size=(n, c))
        return ap.SplitScores(split=split, trained_on=trained_on,
                              image_ids=tuple(f"{i:06d}" for i in range(n)),
                              class_names=tuple("abcdefghijklmnopqrst"[:c]),
                              scores=np.asarray(scores, dtype=np.float64), labels=labels)


def test_score_split_refuses_the_training_split():
    labels = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.int8)
    scores = SplitScoresFactory.make(labels, split="trainval", trained_on="trainval")
    with pytest.raises(HarnessError, match="trained on it"):
        ap.score_split(scores)
    report = ap.score_split(scores, allow_training_split=True)
    assert report.split == "trainval"


def test_score_split_reports_every_formula_and_mean():
    rng = np.random.default_rng(3)
    labels = (rng.random((60, 4)) < 0.3).astype(np.int8)
    labels[0] = 1
    labels[1, 0] = -1
    scores = SplitScoresFactory.make(labels)
    metrics = ap.score_split(scores).to_metrics()
    assert set(metrics["ap"]) == {"a", "b", "c", "d"}
    assert metrics["map"] == pytest.approx(np.mean(list(metrics["ap"].values())))
    assert metrics["map_voc10"] == pytest.approx(np.mean(list(metrics["ap_voc10"].values())))
    for c, name in enumerate("abcd"):
        col = labels[:, c]
        keep = col >= 0
        s = scores.scores[:, c]
        expected = 100 * average_precision_score(col[keep], s[keep] - 1e-5 * col[keep])
        assert metrics["ap"][name] == pytest.approx(expected)
    assert metrics["formulas"]["map"] == "sklearn_pessimistic"
    assert metrics["split_tested"] == "test" and metrics["split_trained"] == "trainval"
    assert metrics["unit"] == "percent"


def test_split_scores_shape_is_checked():
    with pytest.raises(HarnessError, match="must both be"):
        ap.SplitScores(split="test", trained_on="trainval", image_ids=("a", "b"),
                       class_names=("x",), scores=np.zeros((3, 1)), labels=np.zeros((2, 1)))

"""The VOC07 linear-SVM benchmark and its low-shot variant, on frozen features.

The protocol of Goyal et al.'s benchmark suite (facebookresearch/fair_self_supervision_benchmark,
read, not copied):

- features L2-normalised per image: ``x / (||x|| + 1e-5)`` (``tools/svm/svm_helper.py``
  lines 50-53);
- one ``LinearSVC`` per class: ``class_weight={1: 2, -1: 1}``, ``intercept_scaling=1``,
  L2 penalty, squared hinge loss, ``tol=1e-4``, dual solver, ``max_iter=2000``
  (``tools/svm/train_svm_kfold.py`` lines 72-76), targets 0 -> -1 (line 81);
- the cost of each class picked by the mean AP of 3-fold cross-validation on the training
  split (``cross_val_score(..., cv=3, scoring="average_precision")``, lines 90-92);
- the cost grid: the VOC07 command's ``--costs_list 1e-7,1e-6,...,10,100``
  (``GETTING_STARTED.md`` line 136) to which ``parse_cost_list`` appends 0.5^4 ... 0.5^19
  (``svm_helper.py`` lines 42-47): 26 costs, :data:`SUITE_COSTS`;
- low-shot: for each class, k positives and (20 - 1) x k negatives drawn without
  replacement, every other image ignored for that class; k in {1, 2, 4, 8, 16, 32, 64, 96},
  5 independent samples (``extra_scripts/create_voc_low_shot_samples.py`` lines 30-38,
  54-56, 72-75); mean and std over the samples (``tools/svm/aggregate_low_shot_svm_stats.py``).

Where this differs, and why: difficult-only images are left out of training and of AP for
that class (the harness's rule; the suite trains on them as negatives); ties between costs
go to the smaller cost; and the suite's low-shot test picks, for each k, the cost with the
best *test* mAP (``tools/svm/test_svm_low_shot.py`` lines 141-153) -- here that cost is
chosen on train -> val (samples drawn from train, scored on val) and only then is
trainval -> test scored, once. If a sample cannot be drawn (a class with fewer than k
positives) the k is skipped and recorded, or an error is raised (``on_short``).

Solver: liblinear's dual coordinate descent for this SVM (the algorithm ``LinearSVC``
runs, with its shrinking, tolerance and ``max_iter``), compiled in :mod:`harness_plugins.evaluators.dualcd` on
the Gram matrix of the normalised features, which every class, cost and fold shares; each
problem's costs are solved in increasing order, each warm-started from the previous
cost's solution. Its decision values agree with ``LinearSVC``'s to the solver's tolerance
(``tests/test_frozen_features.py``), at 10-20x less time per fit (``benchmarks/LOG.md``,
2026-12-04).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from harness.api.errors import BadInputError

#: the suite's VOC07 grid (GETTING_STARTED.md line 136 + svm_helper.py lines 42-47)
SUITE_COSTS: tuple[float, ...] = (
    1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0,
    *(0.5 ** p for p in range(4, 20)))
#: the toy profile's grid: 15 of the suite's 26 costs (its powers of ten from 1e-6 and 1/2
#: to the powers 4, 7, ..., 19), for a 2-core CPU budget. 1e-7 is left out: liblinear needs
#: about 10 s per fit there (max_iter) against 0.02-0.7 s for the others, and a cost that
#: small leaves w at ~0 (measured on 667 x 9,216 features; benchmarks/LOG.md, 2026-12-02)
TOY_COSTS: tuple[float, ...] = (
    1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0,
    *(0.5 ** p for p in (4, 7, 10, 13, 16, 19)))
PROFILE_COSTS: dict[str, tuple[float, ...]] = {"toy": TOY_COSTS, "paper": SUITE_COSTS}
LOWSHOT_K: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 96)
LOWSHOT_SAMPLES = 5
#: LinearSVC settings of train_svm_kfold.py lines 72-76
SVC_SETTINGS: dict[str, Any] = {"class_weight": {1: 2, -1: 1}, "intercept_scaling": 1.0,
                                "penalty": "l2", "loss": "squared_hinge", "tol": 1e-4,
                                "dual": True, "max_iter": 2000}
NORMALISATION = "x / (||x||_2 + 1e-5) per image (svm_helper.py lines 50-53)"
SOLVER = ("liblinear's dual coordinate descent (LinearSVC's algorithm, with shrinking) on the "
          "Gram matrix, compiled with numba (harness.dualcd); each class's costs solved in "
          "increasing order, warm-started from the previous cost")


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm plus 1e-5 (the suite's ``normalize_features``)."""
    x = np.asarray(x, dtype=np.float64)
    return x / (np.linalg.norm(x, axis=1) + 1e-5)[:, None]


def _svc(cost: float, seed: int):
    """scikit-learn's ``LinearSVC`` with the suite's settings (the reference the solver of
    :func:`train_svms` is tested against)."""
    from sklearn.svm import LinearSVC

    return LinearSVC(C=cost, fit_intercept=False, random_state=seed, **{
        k: v for k, v in SVC_SETTINGS.items() if k != "intercept_scaling"})


def _fit_decision(z_train: np.ndarray, y: np.ndarray, z_eval: np.ndarray, cost: float,
                  seed: int) -> np.ndarray:
    """Decision values on ``z_eval`` of scikit-learn's SVM trained on (``z_train``, ``y``)."""
    from sklearn.exceptions import ConvergenceWarning

    clf = _svc(cost, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(z_train, y)
    return clf.decision_function(z_eval)


def gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 inner products of the rows of ``a`` and ``b`` plus the squared intercept
    scaling: the kernel of the suite's model, whose constant feature liblinear appends and
    regularises like any weight."""
    return np.asarray(a, dtype=np.float64) @ np.asarray(b, dtype=np.float64).T \
        + SVC_SETTINGS["intercept_scaling"] ** 2


def solve_paths(k_train: np.ndarray, problems: list[tuple[np.ndarray, np.ndarray]],
                costs: Sequence[float], seed: int, n_jobs: int
                ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """The SVMs of ``problems`` (rows of ``k_train``, {-1, 1} targets) at every cost.

    Returns the costs in increasing order, each problem's coefficients [n_rows, n_costs]
    (decision values are ``k[:, rows] @ coef``) and the solver's passes [P, n_costs].
    """
    import numba

    from harness_plugins.evaluators.dualcd import solve

    order = np.array(sorted(set(float(c) for c in costs)))
    w = SVC_SETTINGS["class_weight"]
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(n_jobs, numba.config.NUMBA_NUM_THREADS)))
    try:
        coefs, passes = solve(k_train, problems, order, class_weight=(w[1], w[-1]),
                              tol=SVC_SETTINGS["tol"], max_iter=SVC_SETTINGS["max_iter"],
                              seed=seed)
    finally:
        numba.set_num_threads(previous)
    return order, coefs, passes


def _class_rows(targets: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows usable for class ``c`` (not difficult-only) and their {-1, 1} targets."""
    rows = np.flatnonzero(targets[:, c] >= 0)
    return rows, np.where(targets[rows, c] == 1, 1, -1)


@dataclass
class SVMResult:
    """Test-split decision values [N_test, C] and the cost chosen for each class."""

    scores: np.ndarray
    costs: list[float]
    cv_ap: list[dict[str, float]]


def train_svms(x_train: np.ndarray, t_train: np.ndarray, x_test: np.ndarray, *,
               costs: Sequence[float] = SUITE_COSTS, folds: int = 3, seed: int = 0,
               n_jobs: int = 2) -> SVMResult:
    """One SVM per class with the cost chosen by ``folds``-fold CV AP; scores of ``x_test``.

    ``t_train`` is int8 [N, C] (1 / 0 / -1 difficult-only). Features are normalised here.
    The folds are ``cross_val_score``'s: unshuffled stratified splits of each class's rows.
    """
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import StratifiedKFold

    if not costs:
        raise BadInputError("voc07_svm: the cost grid is empty")
    n_classes = t_train.shape[1]
    for c in range(n_classes):
        positives = int((t_train[:, c] == 1).sum())
        if positives < folds:
            raise BadInputError(f"voc07_svm: class {c} has {positives} positive training "
                                f"image(s), fewer than the {folds} CV folds")
    x_train, x_test = normalise_rows(x_train), normalise_rows(x_test)
    k_train = gram(x_train, x_train)
    rows = [_class_rows(t_train, c) for c in range(n_classes)]
    cv, held_out = [], []
    for c, (r, y) in enumerate(rows):
        for tr, te in StratifiedKFold(n_splits=folds).split(r, y):
            cv.append((r[tr], y[tr]))
            held_out.append((c, r[te], y[te]))
    # every class's folds and its final fit on all its rows, in one call
    grid, coefs, _ = solve_paths(k_train, cv + rows, costs, seed, n_jobs)
    table: dict[int, dict[float, list[float]]] = {c: {g: [] for g in grid}
                                                  for c in range(n_classes)}
    for (train_rows, _), coef, (c, te, y_te) in zip(cv, coefs, held_out):
        decision = k_train[np.ix_(te, train_rows)] @ coef
        for j, g in enumerate(grid):
            table[c][g].append(float(average_precision_score(y_te, decision[:, j])))
    mean_ap = {c: {g: float(np.mean(v)) for g, v in table[c].items()} for c in table}
    chosen = [max(grid, key=lambda g: mean_ap[c][g]) for c in range(n_classes)]  # ties: smaller
    k_test = gram(x_test, x_train)
    finals = coefs[len(cv):]
    scores = [k_test[:, rows[c][0]] @ finals[c][:, list(grid).index(chosen[c])]
              for c in range(n_classes)]
    return SVMResult(scores=np.stack(scores, axis=1), costs=[float(c) for c in chosen],
                     cv_ap=[{repr(float(k)): v for k, v in mean_ap[c].items()}
                            for c in range(n_classes)])


# --------------------------------------------------------------------------- low-shot
class ShortClassError(BadInputError):
    """A class has fewer positives than a low-shot sample needs."""


def lowshot_sample(targets: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """int8 [N, C]: per class, ``k`` positives (1) and (C - 1) x k negatives (0) drawn
    without replacement; every other entry -1 (ignored). Fewer negatives than asked:
    all of them. Fewer than ``k`` positives: :class:`ShortClassError` naming the class."""
    n, n_classes = targets.shape
    out = np.full((n, n_classes), -1, dtype=np.int8)
    for c in range(n_classes):
        pos = np.flatnonzero(targets[:, c] == 1)
        neg = np.flatnonzero(targets[:, c] == 0)
        if len(pos) < k:
            raise ShortClassError(f"class {c} has {len(pos)} positive image(s), fewer than "
                                  f"k = {k}")
        out[rng.choice(pos, size=k, replace=False), c] = 1
        take = min(len(neg), (n_classes - 1) * k)
        out[rng.choice(neg, size=take, replace=False), c] = 0
    return out


def lowshot_samples(targets: np.ndarray, ks: Sequence[int], n_samples: int, seed: int,
                    on_short: str = "skip") -> tuple[dict[int, list[np.ndarray]], dict[int, str]]:
    """The samples of every k (seeded by (seed, k, sample)); and the skipped k's reasons."""
    if on_short not in ("skip", "error"):
        raise BadInputError(f"on_short must be skip or error, got {on_short!r}")
    samples: dict[int, list[np.ndarray]] = {}
    skipped: dict[int, str] = {}
    for k in ks:
        try:
            samples[k] = [lowshot_sample(targets, k, np.random.default_rng([seed, k, s]))
                          for s in range(n_samples)]
        except ShortClassError as exc:
            if on_short == "error":
                raise ShortClassError(f"voc07_lowshot: {exc}") from None
            skipped[k] = str(exc)
    return samples, skipped


def lowshot_scores(x_train: np.ndarray, samples: Sequence[np.ndarray], x_eval: np.ndarray,
                   costs: Sequence[float], seed: int, n_jobs: int = 2
                   ) -> dict[float, list[np.ndarray]]:
    """cost -> per-sample [N_eval, C] decision values (features normalised here)."""
    x_train, x_eval = normalise_rows(x_train), normalise_rows(x_eval)
    k_train, k_eval = gram(x_train, x_train), gram(x_eval, x_train)
    problems = [_class_rows(sample, c) for sample in samples for c in range(sample.shape[1])]
    grid, coefs, _ = solve_paths(k_train, problems, costs, seed, n_jobs)
    result: dict[float, list[np.ndarray]] = {}
    for j, cost in enumerate(grid):
        per_sample, it = [], iter(zip(problems, coefs))
        for sample in samples:
            cols = [k_eval[:, r] @ coef[:, j]
                    for (r, _), coef in (next(it) for _ in range(sample.shape[1]))]
            per_sample.append(np.stack(cols, axis=1))
        result[float(cost)] = per_sample
    return result

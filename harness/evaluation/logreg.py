"""The per-layer linear probe: one multi-label logistic regression per layer, full batch.

For each captured layer, 20 sigmoid outputs on centred features scaled to unit mean
squared norm (:func:`standardise`; from the training split), trained by L-BFGS (SciPy's ``L-BFGS-B``: deterministic, no learning rate to
tune; 30x faster here than ``torch.optim.LBFGS``, whose per-step Python overhead dominates
at these sizes) on the binary cross-entropy over non-difficult
labels plus ``weight_decay / 2 * ||W||^2`` (the bias is not penalised). This is the
"linear classifier on each layer" of Zhang et al. and DeepCluster's ``eval_linear.py``,
which trains it by SGD with weight decay 1e-4 (its ``--weight_decay`` default, -4 as a power
of ten); here the weight decay is chosen per layer on train -> val from :data:`WEIGHT_DECAYS`
and the model is then refitted on trainval and scored on test. Training runs in the
row-space basis of the training features (:mod:`harness.evaluation.rowspace`; exact for an L2
penalty).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from harness.evaluation.rowspace import reduce

#: the weight-decay grid searched on train -> val. Its range was set on the toy VOC's
#: train -> val with a 4-epoch toy AlexNet: val mAP peaked at 1e-5 (conv2: 31.7; 1e-3:
#: 23.5), 1e-7 (pool5: 28.5) and 1e-6 (fc7: 26.2), and fell at 1e-8 and above 1e-4
#: (benchmarks/LOG.md, 2026-12-02, frozen-feature evaluators). 1e-7 is left out for time:
#: its fits run to the iteration cap (500) for half a point at most. DeepCluster's 1e-4 is
#: inside the grid
WEIGHT_DECAYS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3)
MAX_ITER = 500


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Every matrix centred by the training split's column means and divided by one number,
    the training rows' root-mean-square norm (so that a weight decay means the same on
    every layer).

    One scale for all columns rather than one per column: per-column standardisation blows
    up near-constant columns and with them the condition number of the problem (L-BFGS then
    stopped at its iteration cap on conv layers, measured).
    """
    mean = train.mean(axis=0)
    centred = train - mean
    scale = float(np.sqrt((centred ** 2).sum(axis=1).mean())) or 1.0
    return [(m - mean) / scale for m in (train, *others)]


def prepare(x_train: np.ndarray, x_eval: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardised, row-space coordinates of both splits (shared by every weight decay)."""
    xs, xe = standardise(np.asarray(x_train, np.float64), np.asarray(x_eval, np.float64))
    z_train, z_eval = reduce(xs, xe)
    return z_train, z_eval


def fit_scores(x_train: np.ndarray, t_train: np.ndarray, x_eval: np.ndarray,
               weight_decay: float, max_iter: int = MAX_ITER) -> np.ndarray:
    """Logits [N_eval, C] of the probe trained on (``x_train``, ``t_train`` 1/0/-1)."""
    return fit_prepared(*prepare(x_train, x_eval), t_train, weight_decay, max_iter)


def fit_prepared(z_train: np.ndarray, z_eval: np.ndarray, t_train: np.ndarray,
                 weight_decay: float, max_iter: int = MAX_ITER) -> np.ndarray:
    """:func:`fit_scores` on the output of :func:`prepare`."""
    return logits(solve(z_train, t_train, weight_decay, max_iter), z_eval)


def logits(theta: np.ndarray, z: np.ndarray) -> np.ndarray:
    """[N, C] logits of the flat parameters ``theta`` (weights [D, C] then biases [C])."""
    d = z.shape[1]
    classes = (theta.size) // (d + 1)
    return z @ theta[:d * classes].reshape(d, classes) + theta[d * classes:]


def solve(z_train: np.ndarray, t_train: np.ndarray, weight_decay: float,
          max_iter: int = MAX_ITER, init: np.ndarray | None = None) -> np.ndarray:
    """The probe's parameters (flat: weights [D, C], biases [C]) by L-BFGS-B.

    ``init`` is a starting point (e.g. the optimum of a neighbouring weight decay); by
    default zero weights and each class's prior as its bias. BLAS runs single-threaded
    here: the iterations multiply small matrices, where threads cost more than they give
    (25x slower on a busy 2-core machine, measured).
    """
    from scipy.optimize import minimize
    from scipy.special import expit
    from threadpoolctl import threadpool_limits

    n, d = z_train.shape
    classes = t_train.shape[1]
    mask = (t_train >= 0).astype(np.float64)
    y = (t_train == 1).astype(np.float64)
    total = max(mask.sum(), 1.0)
    n_pos = np.maximum(y.sum(0), 1.0)

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d * classes].reshape(d, classes), theta[d * classes:]
        out = z_train @ w + b
        loss = (mask * (np.logaddexp(0.0, out) - y * out)).sum() / total
        g = mask * (expit(out) - y) / total
        loss += 0.5 * weight_decay * float((w * w).sum())
        grad_w = z_train.T @ g + weight_decay * w
        return loss, np.concatenate([grad_w.ravel(), g.sum(0)])

    if init is None:
        bias0 = np.log(n_pos / np.maximum(mask.sum(0) - n_pos, 1.0))
        init = np.concatenate([np.zeros(d * classes), bias0])
    with threadpool_limits(limits=1):
        result = minimize(loss_and_grad, init, jac=True, method="L-BFGS-B",
                          options={"maxiter": max_iter, "gtol": 1e-6})
    return result.x


def choose_weight_decay(x_train: np.ndarray, t_train: np.ndarray, x_val: np.ndarray,
                        t_val: np.ndarray, grid: Sequence[float], score) -> tuple[float, dict]:
    """The grid value with the best ``score(t_val, logits)`` (ties: the larger decay).

    The decays are fitted from the largest down, each starting from the previous optimum:
    the problem is strictly convex, so the start changes the iterations, not the result.
    """
    z_train, z_val = prepare(x_train, x_val)
    results, theta = {}, None
    for wd in sorted(grid, reverse=True):
        theta = solve(z_train, t_train, wd, init=theta)
        results[wd] = float(score(t_val, logits(theta, z_val)))
    best = max(sorted(results, reverse=True), key=lambda wd: results[wd])
    return best, {repr(k): v for k, v in results.items()}

"""The per-layer linear probe: one multi-label logistic regression per layer, full batch.

For each captured layer, 20 sigmoid outputs on standardised features (mean and std of the
training split), trained by L-BFGS (SciPy's ``L-BFGS-B``: deterministic, no learning rate to
tune; 30x faster here than ``torch.optim.LBFGS``, whose per-step Python overhead dominates
at these sizes) on the binary cross-entropy over non-difficult
labels plus ``weight_decay / 2 * ||W||^2`` (the bias is not penalised). This is the
"linear classifier on each layer" of Zhang et al. and DeepCluster's ``eval_linear.py``,
which trains it by SGD with weight decay 1e-4 (its ``--weight_decay`` default, -4 as a power
of ten); here the weight decay is chosen per layer on train -> val from :data:`WEIGHT_DECAYS`
and the model is then refitted on trainval and scored on test. Training runs in the
row-space basis of the training features (:mod:`harness.rowspace`; exact for an L2
penalty).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from harness.rowspace import reduce

#: the weight-decay grid searched on train -> val (DeepCluster's 1e-4 is its second value)
WEIGHT_DECAYS: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
MAX_ITER = 500


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Every matrix centred and scaled by the training split's per-column mean and std."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std < 1e-6] = 1.0
    return [(m - mean) / std for m in (train, *others)]


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
    """:func:`fit_scores` on the output of :func:`prepare`.

    BLAS runs single-threaded here: the iterations multiply small matrices, where threads
    cost more than they give (25x slower on a busy 2-core machine, measured).
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
    # start from each class's prior: the optimum does not depend on it, the iterations do
    bias0 = np.log(n_pos / np.maximum(mask.sum(0) - n_pos, 1.0))

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d * classes].reshape(d, classes), theta[d * classes:]
        logits = z_train @ w + b
        loss = (mask * (np.logaddexp(0.0, logits) - y * logits)).sum() / total
        g = mask * (expit(logits) - y) / total
        loss += 0.5 * weight_decay * float((w * w).sum())
        grad_w = z_train.T @ g + weight_decay * w
        return loss, np.concatenate([grad_w.ravel(), g.sum(0)])

    theta0 = np.concatenate([np.zeros(d * classes), bias0])
    with threadpool_limits(limits=1):
        result = minimize(loss_and_grad, theta0, jac=True, method="L-BFGS-B",
                          options={"maxiter": max_iter, "gtol": 1e-6})
    w, b = result.x[:d * classes].reshape(d, classes), result.x[d * classes:]
    return z_eval @ w + b


def choose_weight_decay(x_train: np.ndarray, t_train: np.ndarray, x_val: np.ndarray,
                        t_val: np.ndarray, grid: Sequence[float], score) -> tuple[float, dict]:
    """The grid value with the best ``score(t_val, logits)`` (ties: the larger decay)."""
    z_train, z_val = prepare(x_train, x_val)
    results = {wd: float(score(t_val, fit_prepared(z_train, z_val, t_train, wd))) for wd in grid}
    best = max(sorted(results, reverse=True), key=lambda wd: results[wd])
    return best, {repr(k): v for k, v in results.items()}

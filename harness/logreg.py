"""The per-layer linear probe: one multi-label logistic regression per layer, full batch.

For each captured layer, 20 sigmoid outputs on standardised features (mean and std of the
training split), trained by L-BFGS (``torch.optim.LBFGS`` with a strong-Wolfe line search:
deterministic, no learning rate to tune) on the binary cross-entropy over non-difficult
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
import torch

from harness.rowspace import reduce

#: the weight-decay grid searched on train -> val (DeepCluster's 1e-4 is its second value)
WEIGHT_DECAYS: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
MAX_ITER = 200


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Every matrix centred and scaled by the training split's per-column mean and std."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std < 1e-6] = 1.0
    return [(m - mean) / std for m in (train, *others)]


def fit_scores(x_train: np.ndarray, t_train: np.ndarray, x_eval: np.ndarray,
               weight_decay: float, max_iter: int = MAX_ITER) -> np.ndarray:
    """Logits [N_eval, C] of the probe trained on (``x_train``, ``t_train`` 1/0/-1)."""
    xs, xe = standardise(np.asarray(x_train, np.float64), np.asarray(x_eval, np.float64))
    z_train, z_eval = reduce(xs, xe)
    x = torch.from_numpy(z_train)
    t = torch.from_numpy(t_train.astype(np.int64))
    mask = (t >= 0).double()
    y = (t == 1).double()
    n_pos = y.sum(0).clamp(min=1)
    # start from each class's prior: the optimum does not depend on it, the iterations do
    bias0 = torch.log(n_pos / (mask.sum(0) - n_pos).clamp(min=1))
    w = torch.zeros(x.shape[1], t.shape[1], dtype=torch.float64, requires_grad=True)
    b = bias0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-7,
                            tolerance_change=1e-10, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = x @ w + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, y, weight=mask, reduction="sum") / mask.sum()
        loss = loss + 0.5 * weight_decay * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (torch.from_numpy(z_eval) @ w + b).numpy()


def choose_weight_decay(x_train: np.ndarray, t_train: np.ndarray, x_val: np.ndarray,
                        t_val: np.ndarray, grid: Sequence[float], score) -> tuple[float, dict]:
    """The grid value with the best ``score(t_val, logits)`` (ties: the larger decay)."""
    results = {wd: float(score(t_val, fit_scores(x_train, t_train, x_val, wd))) for wd in grid}
    best = max(sorted(results, reverse=True), key=lambda wd: results[wd])
    return best, {repr(k): v for k, v in results.items()}

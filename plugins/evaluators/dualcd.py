"""liblinear's L2-loss linear SVM solver on a Gram matrix, for many problems at once.

The VOC07 SVM benchmark (:mod:`harness_plugins.evaluators.svm`) fits one SVM per class, cost and
cross-validation fold: 20 x 15 x 3 = 900 fits per layer on the toy VOC, thousands more for
low-shot. scikit-learn's ``LinearSVC`` (liblinear) spends most of such a fit copying the
dense matrix into liblinear's sparse rows, and cannot start from a neighbouring cost's
solution. This module runs the same algorithm -- liblinear's dual coordinate descent for
the L2-regularised squared-hinge SVM (Hsieh et al., "A Dual Coordinate Descent Method for
Large-scale Linear SVM", ICML 2008; ``solve_l2r_l1l2_svc`` in liblinear's ``linear.cpp``,
with its shrinking and its stopping rule) -- compiled with numba, on the Gram matrix of the
rows, shared by every problem:

- the dual of ``min_w 1/2 |w|^2 + sum_i C_i max(0, 1 - y_i w.x_i)^2`` is
  ``min_{a >= 0} 1/2 a^T (Q + D) a - sum a`` with ``Q_ij = y_i y_j x_i.x_j`` and
  ``D_ii = 1 / (2 C_i)``; ``w = sum_i y_i a_i x_i``, so ``w.x = sum_i y_i a_i K(x_i, x)``
  and the solver needs only inner products (the Gram matrix ``K``), never ``w``;
- a coordinate step reads one row of the problem's own Gram matrix (liblinear reads one
  row of X): the same iterates as liblinear's on the same data, up to the order its
  random permutation draws;
- the costs of one problem are solved in increasing order, each starting from the
  previous cost's solution (any ``a >= 0`` is a valid start, and the optimum is unique:
  ``Q + D`` is positive definite), which saves most of the passes at large costs;
- problems run in parallel over numba's threads, each one sequential and seeded by its
  own index, so the result does not depend on the thread count.

Convergence is liblinear's: stop when the projected gradient's spread over a pass is at
most ``tol`` (on the whole set once shrinking has ended), or after ``max_iter`` passes.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _next(state: np.ndarray) -> np.uint64:
    """xorshift64* step on ``state[0]`` (a per-problem generator: thread-independent)."""
    x = state[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    state[0] = x
    return x * np.uint64(2685821657736338717)


@njit(cache=True)
def _solve(gram, y, diag, alpha, grad, tol, max_iter, state):
    """One problem on its own Gram matrix ``gram`` [n, n] (contiguous, so that a step's
    update is one vectorised pass over a row): dual coordinate descent from ``alpha``
    (updated in place); returns the passes taken. ``grad`` is work space for
    ``u_i = sum_j y_j alpha_j K_ij`` (``w.x_i``)."""
    n = y.shape[0]
    for i in range(n):
        grad[i] = 0.0
    for j in range(n):
        if alpha[j] != 0.0:
            b = y[j] * alpha[j]
            for i in range(n):
                grad[i] += b * gram[j, i]
    qd = np.empty(n)
    index = np.empty(n, dtype=np.int64)
    for i in range(n):
        qd[i] = diag[i] + gram[i, i]
        index[i] = i
    active = n
    pg_max_old, pg_min_old = np.inf, -np.inf
    passes = 0
    while passes < max_iter:
        pg_max, pg_min = -np.inf, np.inf
        for s in range(active):                      # liblinear's shuffle of the active set
            t = s + np.int64(_next(state) % np.uint64(active - s))
            index[s], index[t] = index[t], index[s]
        s = 0
        while s < active:
            i = index[s]
            g = y[i] * grad[i] - 1.0 + alpha[i] * diag[i]
            pg = 0.0
            if alpha[i] == 0.0:
                if g > pg_max_old:                   # shrink: bound and likely to stay so
                    active -= 1
                    index[s], index[active] = index[active], index[s]
                    continue
                if g < 0.0:
                    pg = g
            else:
                pg = g
            pg_max = max(pg_max, pg)
            pg_min = min(pg_min, pg)
            if abs(pg) > 1e-12:
                old = alpha[i]
                alpha[i] = max(old - g / qd[i], 0.0)
                step = (alpha[i] - old) * y[i]
                row = gram[i]
                for j in range(n):
                    grad[j] += step * row[j]
            s += 1
        passes += 1
        if pg_max - pg_min <= tol:
            if active == n:
                break
            active = n                               # unshrink and check the whole set
            pg_max_old, pg_min_old = np.inf, -np.inf
            continue
        pg_max_old = pg_max if pg_max > 0.0 else np.inf
        pg_min_old = pg_min if pg_min < 0.0 else -np.inf
    return passes


@njit(parallel=True, cache=True)
def _solve_all(gram, rows, offsets, y, costs, weight_pos, weight_neg, tol, max_iter, seed):
    n_problems = offsets.shape[0] - 1
    alphas = np.zeros((rows.shape[0], costs.shape[0]))
    passes = np.zeros((n_problems, costs.shape[0]), dtype=np.int64)
    for p in prange(n_problems):
        lo, hi = offsets[p], offsets[p + 1]
        r, yp = rows[lo:hi], y[lo:hi]
        n = hi - lo
        sub = np.empty((n, n))
        for i in range(n):
            for j in range(n):
                sub[i, j] = gram[r[i], r[j]]
        alpha = np.zeros(n)
        grad = np.empty(n)
        diag = np.empty(n)
        state = np.array([np.uint64(seed) * np.uint64(1000003) + np.uint64(p + 1)],
                         dtype=np.uint64)
        for c in range(costs.shape[0]):
            for i in range(n):
                diag[i] = 0.5 / (costs[c] * (weight_pos if yp[i] > 0 else weight_neg))
            passes[p, c] = _solve(sub, yp, diag, alpha, grad, tol, max_iter, state)
            alphas[lo:hi, c] = alpha
    return alphas, passes


def solve(gram: np.ndarray, problems: list[tuple[np.ndarray, np.ndarray]],
          costs: np.ndarray, *, class_weight: tuple[float, float] = (1.0, 1.0),
          tol: float = 1e-4, max_iter: int = 1000, seed: int = 0
          ) -> tuple[list[np.ndarray], np.ndarray]:
    """Dual solutions of many SVMs sharing one Gram matrix.

    ``gram`` is float64 [N, N] (inner products, plus the squared intercept scaling if the
    model has a regularised intercept); each problem is (``rows`` into ``gram``, ``y`` in
    {-1, 1}); ``costs`` must be increasing (each is warm-started from the previous one);
    ``class_weight`` multiplies the cost of (positive, negative) points. Returns, per
    problem, ``y * alpha`` [n_rows, n_costs] (so that decision values are
    ``gram[eval_rows][:, rows] @ coef``), and the passes each solve took [P, n_costs].
    """
    costs = np.asarray(costs, dtype=np.float64)
    if costs.ndim != 1 or len(costs) == 0 or np.any(np.diff(costs) <= 0) or costs[0] <= 0:
        raise ValueError("costs must be positive and increasing")
    sizes = [len(r) for r, _ in problems]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    rows = np.concatenate([np.asarray(r, dtype=np.int64) for r, _ in problems]) \
        if problems else np.zeros(0, dtype=np.int64)
    y = np.concatenate([np.asarray(t, dtype=np.float64) for _, t in problems]) \
        if problems else np.zeros(0)
    alphas, passes = _solve_all(np.ascontiguousarray(gram, dtype=np.float64), rows, offsets,
                                y, costs, float(class_weight[0]), float(class_weight[1]),
                                float(tol), int(max_iter), int(seed))
    coefs = [alphas[lo:hi] * y[lo:hi, None] for lo, hi in zip(offsets[:-1], offsets[1:])]
    return coefs, passes

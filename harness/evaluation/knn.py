"""Weighted k-nearest-neighbour scores on frozen features, for multi-label VOC targets.

The classifier of Wu et al. (Instance Discrimination, 2018) as solo-learn implements it
(vturrisi/solo-learn ``solo/utils/knn.py``, read, not copied): cosine similarity to every
bank (training) image, the ``k`` most similar vote, each with weight ``exp(sim / T)``;
defaults ``k = 20``, ``T = 0.07``, cosine distance (lines 30-33; the weights, line 153).

VOC is multi-label, so instead of an arg-max over summed one-hot votes, the score of a
class for a query is the share of the vote weight carried by neighbours in which that
class is present: ``sum_j w_j [class in neighbour j] / sum_j w_j``. The per-class scores of
all queries are then ranked into AP (:mod:`harness.evaluation.ap`). Dividing by the total weight makes
scores of different queries comparable (without it a query with close neighbours would
rank above the others for every class). Difficult-only labels of a neighbour count as
absent.
"""

from __future__ import annotations

import numpy as np

from harness.api.errors import BadInputError

#: solo-learn's defaults (solo/utils/knn.py lines 30-33)
K_DEFAULT = 20
TEMPERATURE_DEFAULT = 0.07


def knn_scores(bank: np.ndarray, bank_targets: np.ndarray, queries: np.ndarray, *,
               k: int = K_DEFAULT, temperature: float = TEMPERATURE_DEFAULT,
               batch: int = 1024) -> np.ndarray:
    """float64 [N_query, C]: each class's share of the weighted votes of the k neighbours."""
    if k < 1:
        raise BadInputError(f"knn: k must be >= 1, got {k}")
    if not temperature > 0:
        raise BadInputError(f"knn: temperature must be > 0, got {temperature}")
    if len(bank) < k:
        raise BadInputError(f"knn: the bank has {len(bank)} images, fewer than k = {k}")
    import torch     # here, so that reading K_DEFAULT needs no torch

    b = torch.nn.functional.normalize(torch.from_numpy(np.asarray(bank, dtype=np.float32)), dim=1)
    present = torch.from_numpy((np.asarray(bank_targets) == 1).astype(np.float64))
    out = []
    q_all = torch.from_numpy(np.asarray(queries, dtype=np.float32))
    for lo in range(0, len(q_all), batch):
        q = torch.nn.functional.normalize(q_all[lo:lo + batch], dim=1)
        sim, idx = (q @ b.T).topk(k, dim=1)
        # subtracting the row maximum leaves every share unchanged and keeps exp finite
        w = torch.exp((sim.double() - sim[:, :1].double()) / temperature)
        votes = (w[:, :, None] * present[idx]).sum(dim=1)
        out.append((votes / w.sum(dim=1, keepdim=True)).numpy())
    return np.concatenate(out) if out else np.zeros((0, bank_targets.shape[1]))

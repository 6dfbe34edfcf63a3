"""The layout of the statistics vector: which band pairs are correlated, and its length.

Plain Python and numpy (no torch), so that the plugin's class can be declared, and
:mod:`.baseline` can run, without torch.
"""

from __future__ import annotations

import functools

import numpy as np


#: band offsets whose correlations are kept (Owens et al.'s subset of the toolbox's C)
CORRELATION_OFFSETS = (1, 2, 3, 5)


@functools.lru_cache(maxsize=8)
def correlation_pairs(n_channels: int = 32, offsets: tuple[int, ...] = CORRELATION_OFFSETS
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, i + o), i outer and o inner, skipping i + o beyond the last band."""
    pairs = [(i, i + o) for i in range(n_channels) for o in offsets if i + o < n_channels]
    first, second = (np.array(p, dtype=np.int64) for p in zip(*pairs))
    return first, second


def feature_dim(n_channels: int = 32, n_mod: int = 10) -> int:
    """Length of the statistics vector: 502 for 32 channels and 10 modulation filters."""
    return 2 * n_channels + len(correlation_pairs(n_channels)[0]) + n_channels * n_mod + 1

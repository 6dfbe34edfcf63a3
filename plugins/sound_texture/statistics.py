"""The 502 statistics of a batch of envelopes [B, 32, T], vectorised (steps 4-9 of the recipe).

Layout of the vector: [mu / l (32) | sigma / mu (32) | rho (117) | b~ (320) | l (1)].

* l, the loudness, is the median over time of the L2 norm of the 32-band envelope vector;
* mu and sigma are each band's mean and (population) standard deviation;
* rho is Pearson's correlation of bands i and i + o, o in (1, 2, 3, 5), i outer, o inner;
* b~_ij = sqrt(mean_t m_ij(t)^2 / sigma_i^2), m_ij being envelope i through modulation
  filter j. By Parseval the time-domain power of m_ij is a weighted sum of
  |rfft(c_i)|^2 |F_j|^2, so the ten filtered signals are never materialised.

Every statistic but l is a ratio, so 1-501 do not depend on the input level.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from . import fft
from .filters import modulation_filterbank
from .layout import CORRELATION_OFFSETS, correlation_pairs


@functools.lru_cache(maxsize=8)
def _pair_order(n_channels: int) -> list[int]:
    """Positions, in the offset-major concatenation, of the pairs in (i, o) order."""
    starts = np.cumsum([0] + [n_channels - o for o in CORRELATION_OFFSETS])
    return [int(starts[j]) + i for i in range(n_channels)
            for j, o in enumerate(CORRELATION_OFFSETS) if i + o < n_channels]


@functools.lru_cache(maxsize=16)
def _parseval_weights(n_frames: int, env_rate: float, n_mod: int, q: float,
                      device: str, dtype: torch.dtype) -> torch.Tensor:
    """[n_mod, n_frames//2 + 1]: w_k |F_j(k)|^2 / T^2, w_k = 2 except at DC and Nyquist."""
    filts = modulation_filterbank(n_frames, env_rate, n_mod, q=q)
    w = np.full(filts.shape[1], 2.0)
    w[0] = 1.0
    if n_frames % 2 == 0:
        w[-1] = 1.0
    weights = filts ** 2 * w / n_frames ** 2
    return torch.as_tensor(weights, dtype=dtype, device=torch.device(device))


@functools.lru_cache(maxsize=16)
def _supports(n_frames: int, env_rate: float, n_mod: int, q: float) -> tuple[tuple[int, int], ...]:
    """For each modulation filter, the range lo:hi of its nonzero bins (contiguous)."""
    out = []
    for row in modulation_filterbank(n_frames, env_rate, n_mod, q=q):
        nz = np.flatnonzero(row)
        out.append((int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0))
    return tuple(out)


def loudness(env: torch.Tensor) -> torch.Tensor:
    """[B]: the median over time of the across-band L2 norm (mean of the two middle values)."""
    norms = env.square().sum(dim=1).sqrt()                    # [B, T]
    ordered = norms.sort(dim=-1).values
    t = ordered.shape[-1]
    if t % 2:
        return ordered[:, t // 2]
    return (ordered[:, t // 2 - 1] + ordered[:, t // 2]) / 2


def texture_statistics(env: torch.Tensor, env_rate: float, n_mod: int = 10, q: float = 1.0
                       ) -> dict[str, torch.Tensor]:
    """All statistics of envelopes [B, C, T] (not normalised), as named tensors."""
    b, c, t = env.shape
    mean = env.mean(dim=-1)                                   # [B, C]
    centred = env - mean.unsqueeze(-1)
    var = centred.square().mean(dim=-1)                       # population variance
    std = var.sqrt()
    # covariance of bands i and i + o from shifted slices (no gathers), then the
    # (i outer, o inner) order; elementwise products and sums, not a GEMM, because a
    # GEMM's rounding can depend on the batch size and a clip's features must not
    by_offset = [(centred[:, :-o] * centred[:, o:]).mean(dim=-1) for o in CORRELATION_OFFSETS]
    cov = torch.cat(by_offset, dim=1)[:, _pair_order(c)]      # [B, 117]
    first, second = correlation_pairs(c)
    i, k = torch.as_tensor(first, device=env.device), torch.as_tensor(second, device=env.device)
    corr = cov / (std[:, i] * std[:, k])
    power = fft.rfft(env).abs().square()                      # [B, C, T//2 + 1]
    weights = _parseval_weights(t, env_rate, n_mod, q, str(env.device), env.dtype)
    # each filter's sum over its own nonzero bins only (octave-spaced: a few bins for the
    # lowest filter), not a [B, C, n_mod, T//2 + 1] product
    mod_power = torch.stack([(power[..., lo:hi] * weights[j, lo:hi]).sum(dim=-1)
                             for j, (lo, hi) in enumerate(_supports(t, env_rate, n_mod, q))], dim=-1)
    mod_power = mod_power / var.unsqueeze(-1)                 # [B, C, n_mod]
    level = loudness(env)
    return {"mean": mean, "std_over_mean": std / mean, "corr": corr,
            "mod_power": mod_power, "loudness": level, "var": var}


def assemble(stats: dict[str, torch.Tensor]) -> torch.Tensor:
    """The feature vector [B, 502]: [mu / l | sigma / mu | rho | sqrt(mod power) | l]."""
    level = stats["loudness"]
    b = level.shape[0]
    return torch.cat([stats["mean"] / level.unsqueeze(-1), stats["std_over_mean"], stats["corr"],
                      stats["mod_power"].sqrt().reshape(b, -1), level.unsqueeze(-1)], dim=1)

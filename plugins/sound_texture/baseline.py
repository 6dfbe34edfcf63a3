"""A plain single-clip numpy/scipy version of the recipe: the readable reference.

It follows the toolbox literally (subbands, scipy's Hilbert transform, compression,
Octave's polyphase resampling through ``scipy.signal.upfirdn``, one statistic at a time)
and is what the benchmarks compare the batched implementation with. It matches the
toolbox's outputs as closely as the batched version does; it is just slower.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from .filters import cochlear_filterbank, modulation_filterbank, octave_resample_kernel
from .layout import correlation_pairs


def octave_resample(x: np.ndarray, factor: int) -> np.ndarray:
    """Octave's ``resample(x, 1, factor)`` along the last axis: y[m] = sum_t h[t] x[f m - t]."""
    h = octave_resample_kernel(factor)
    half = (h.size - 1) // 2
    pre = factor - half % factor                 # Octave's prepadding, so the delay is whole
    padded = np.concatenate([np.zeros(pre), h])
    offset = (half + pre) // factor
    n_out = -(-x.shape[-1] // factor)
    y = scipy.signal.upfirdn(padded, x, up=1, down=factor, axis=-1)
    return y[..., offset:offset + n_out]


def texture_envelopes(x: np.ndarray, sample_rate: int = 20_000, factor: int = 50,
                      compression: float = 0.3) -> np.ndarray:
    """Compressed, downsampled envelopes [32, n / factor] of one clip [n]."""
    n = x.size
    filts = cochlear_filterbank(n, sample_rate)
    subbands = np.fft.irfft(np.fft.rfft(x) * filts, n=n)          # [32, n]
    env = np.abs(scipy.signal.hilbert(subbands, axis=-1)) ** compression
    env = octave_resample(env, factor)
    env[env < 0] = 0
    return env


def texture_features(x: np.ndarray, sample_rate: int = 20_000, env_rate: int = 400) -> np.ndarray:
    """The 502 statistics of one clip [n] (float64)."""
    env = texture_envelopes(np.asarray(x, dtype=np.float64), sample_rate, sample_rate // env_rate)
    level = np.median(np.sqrt((env ** 2).sum(axis=0)))
    mu = env.mean(axis=1)
    var = env.var(axis=1)
    sigma_over_mu = np.sqrt(var) / mu
    first, second = correlation_pairs(env.shape[0])
    corr = np.array([np.corrcoef(env[i], env[k])[0, 1] for i, k in zip(first, second)])
    t = env.shape[1]
    mod_filters = modulation_filterbank(t, env_rate)
    spectra = np.fft.rfft(env, axis=1)
    mod_power = np.empty((env.shape[0], len(mod_filters)))
    for j, filt in enumerate(mod_filters):
        filtered = np.fft.irfft(spectra * filt, n=t, axis=1)
        mod_power[:, j] = (filtered ** 2).mean(axis=1) / var
    return np.concatenate([mu / level, sigma_over_mu, corr, np.sqrt(mod_power).ravel(), [level]])

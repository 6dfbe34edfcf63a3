"""The three fixed filters of the texture recipe, built as numpy float64 arrays.

* the cochlear filterbank (32 ERB-spaced half-cosine channels on the clip's rfft grid),
* the modulation filterbank (10 octave-spaced channels on the envelope's rfft grid),
* the downsampling kernel of GNU Octave's ``resample(x, 1, 50)``.

Each function follows McDermott & Simoncelli's toolbox (``make_erb_cos_filters_nx``,
``make_constQ_cos_filters``) and Octave's ``resample`` step by step, including the
toolbox's strict inequalities at the band edges and its frequency grid
``0 : max_freq / nfreqs : max_freq``, because parity with the toolbox at 1e-9 depends
on such details (see ``/work/shared/specs/sound-texture-statistics.md``).
"""

from __future__ import annotations

import functools
import math

import numpy as np


# ----------------------------------------------------------------------------- ERB scale
def freq2erb(freq: np.ndarray | float) -> np.ndarray:
    """ERB number of a frequency in Hz (Glasberg & Moore): 9.265 ln(1 + f / (24.7 * 9.265))."""
    return 9.265 * np.log(1 + np.asarray(freq, dtype=np.float64) / (24.7 * 9.265))


def erb2freq(erb: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`freq2erb`."""
    return 24.7 * 9.265 * (np.exp(np.asarray(erb, dtype=np.float64) / 9.265) - 1)


def rfft_grid(n: int, sample_rate: float) -> np.ndarray:
    """The toolbox's frequency grid for an ``n``-sample signal: rfft bins 0..n//2 in Hz."""
    nfreqs = n // 2
    max_freq = sample_rate / 2 if n % 2 == 0 else sample_rate * (n - 1) / 2 / n
    return np.arange(nfreqs + 1) * (max_freq / nfreqs)


def _inside(freqs: np.ndarray, low: float, high: float) -> slice:
    """The contiguous bins strictly between ``low`` and ``high`` (the toolbox's find())."""
    idx = np.flatnonzero((freqs > low) & (freqs < high))
    return slice(idx[0], idx[-1] + 1) if idx.size else slice(0, 0)


# ----------------------------------------------------------------------------- cochlear
@functools.lru_cache(maxsize=8)
def cochlear_cutoffs(n_bands: int = 30, low_hz: float = 20.0, high_hz: float = 10_000.0) -> np.ndarray:
    """The ``n_bands + 2`` cut-off frequencies, equally spaced on the ERB scale."""
    out = erb2freq(np.linspace(freq2erb(low_hz), freq2erb(high_hz), n_bands + 2))
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=8)
def cochlear_filterbank(n: int, sample_rate: int, n_bands: int = 30, low_hz: float = 20.0,
                        high_hz: float = 10_000.0) -> np.ndarray:
    """Magnitude responses [n_bands + 2, n//2 + 1]: low-pass, 30 band-passes, high-pass.

    Band-pass k is ``cos(pi (e(f) - mid) / range)`` strictly between cut-offs k and k+2
    (ERB numbers ``e``); the low- and high-pass complete the bank so that the squared
    responses sum to one at every frequency (the bank is invertible).
    """
    freqs = rfft_grid(n, sample_rate)
    max_freq = freqs[-1]
    if high_hz > sample_rate / 2:
        high_hz = max_freq
    cutoffs = cochlear_cutoffs(n_bands, low_hz, high_hz)
    filts = np.zeros((n_bands + 2, freqs.size))
    for k in range(n_bands):  # filter construction: once per clip length, cached
        lo, hi = cutoffs[k], cutoffs[k + 2]
        sel = _inside(freqs, lo, hi)
        mid = (freq2erb(lo) + freq2erb(hi)) / 2
        rng = freq2erb(hi) - freq2erb(lo)
        filts[k + 1, sel] = np.cos((freq2erb(freqs[sel]) - mid) / rng * np.pi)
    below = np.flatnonzero(freqs < cutoffs[1])
    filts[0, below] = np.sqrt(1 - filts[1, below] ** 2)
    above = np.flatnonzero(freqs > cutoffs[n_bands])
    filts[n_bands + 1, above] = np.sqrt(1 - filts[n_bands, above] ** 2)
    filts.flags.writeable = False
    return filts


# ----------------------------------------------------------------------------- modulation
@functools.lru_cache(maxsize=8)
def modulation_centres(n_filters: int = 10, low_hz: float = 0.5, high_hz: float = 200.0) -> np.ndarray:
    """Octave-spaced centre frequencies 2^linspace(log2 low, log2 high, n)."""
    out = 2.0 ** np.linspace(np.log2(low_hz), np.log2(high_hz), n_filters)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=8)
def modulation_filterbank(n: int, sample_rate: float, n_filters: int = 10, low_hz: float = 0.5,
                          high_hz: float = 200.0, q: float = 1.0) -> np.ndarray:
    """Constant-Q half-cosine responses [n_filters, n//2 + 1] on the envelope's rfft grid.

    Filter j is ``cos(pi (f - cf_j) / (2 cf_j / Q))`` strictly inside
    ``(cf_j - cf_j/Q, cf_j + cf_j/Q)``; the bank is scaled so that the mean of the summed
    squared responses over the grid frequencies from the 4th to the (K-3)th centre is one.
    """
    freqs = rfft_grid(n, sample_rate)
    cfs = modulation_centres(n_filters, low_hz, high_hz)
    filts = np.zeros((n_filters, freqs.size))
    for j, cf in enumerate(cfs):
        lo, hi = cf - cf / q, cf + cf / q
        sel = _inside(freqs, lo, hi)
        filts[j, sel] = np.cos((freqs[sel] - cf) / (hi - lo) * np.pi)
    total = (filts ** 2).sum(axis=0)
    band = (freqs >= cfs[3]) & (freqs <= cfs[-4])
    filts = filts / np.sqrt(total[band].mean())
    filts.flags.writeable = False
    return filts


# ----------------------------------------------------------------------------- resampling
def octave_resample_kernel(factor: int) -> np.ndarray:
    """GNU Octave's ``resample(x, 1, factor)`` anti-aliasing kernel h[t], t = -L..L.

    h[t] = (1/factor) sinc(t / factor) kaiser(2L+1, beta)[t + L] with a 60 dB rejection
    design: L = ceil(52 / (28.714 * roll_off)), roll_off = 1 / (20 factor),
    beta = 0.1102 * 51.3. For factor 50, L = 1811 (3,623 taps).
    """
    cutoff = 1 / (2 * factor)
    roll_off = cutoff / 10
    rejection_db = 60.0
    half = math.ceil((rejection_db - 8) / (28.714 * roll_off))
    t = np.arange(-half, half + 1, dtype=np.float64)
    ideal = 2 * cutoff * np.sinc(2 * cutoff * t)
    beta = 0.1102 * (rejection_db - 8.7)
    return kaiser(2 * half + 1, beta) * ideal


def kaiser(length: int, beta: float) -> np.ndarray:
    """Octave's ``kaiser``: I0(beta * sqrt(1 - (2k/(N-1) - 1)^2)) / I0(beta), symmetric."""
    m = length - 1
    k = np.arange(length, dtype=np.float64)
    arg = 2 * beta / m * np.sqrt(k * (m - k))
    return np.i0(arg) / np.i0(beta)

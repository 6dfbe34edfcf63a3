"""Subband envelopes on the CPU from each band's own spectrum only (numpy + scipy.fft).

A cochlear band's analytic spectrum A_k is nonzero only on its support, bins
lo_k .. lo_k + B_k - 1 (B_k = 194 to 8,178 of the clip's 37,501). Its envelope does
not change when that spectrum is shifted down to start at bin 0 (|a(t) e^(-i w t)| =
|a(t)|), and the shifted signal is a sum of only B_k exponentials, so it can be
evaluated on any time grid from B_k coefficients:

* **exact** mode needs the envelope at every one of the n = 75,000 audio samples
  (the compression |a|^0.3 comes before the 3,623-tap Octave resampler). Write
  t = p + P m with n = P M and M >= B_k a divisor of n. Then
  a(p + P m) = (M / n) ifft_M(A_k[lo + j] exp(2 pi i j p / n))[m] up to a unit-modulus
  factor: P inverse FFTs of M points instead of one of n (the first stage of a
  decimation-in-time FFT whose input is zero outside the support). The result is the
  same envelope as the full transform, to rounding.
  The downsampler then runs in polyphase form: the 50 phases c[50 j + r] of the
  compressed envelope, each an rfft of 1,600 points (>= 1,500 + the 73-sample phase
  kernels, so the circular convolution equals the zero-padded one), weighted by the
  phase kernels' spectra, summed, and one inverse FFT give y[m] = sum_t h[t] c[50 m - t]
  exactly.
* **fast** mode evaluates the shifted band on one coarse grid of M_k = 1,500 q_k
  points (at least ``oversample`` times the band's support), compresses there, and
  applies the same kernel as a periodic convolution on that grid (its response at the
  grid's frequencies, folded onto the 1,500 frames), minus, for the frames within the
  kernel's reach of either end, the part of the kernel that falls outside the clip
  (:class:`CoarseGridFilter`). The only approximation is the aliasing of the compressed
  envelope on the coarse grid (|a|^0.3 is not band-limited); it falls about 4x per
  doubling of ``oversample`` (benchmarks/LOG.md, 2026-12-02, texture statistics, has the
  measured errors).

Each clip is computed on its own, by the same operations on arrays of the same shapes
whatever the batch, so a batch gives bit-identical rows to clip-by-clip calls; clips
are spread over a pool of threads (numpy's ufuncs and pocketfft release the GIL).
"""

from __future__ import annotations

import functools
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.sparse
import scipy.special

from .envelopes import EnvelopeConfig
from .filters import cochlear_filterbank, octave_resample_kernel

#: points of the polyphase (exact) and folded (fast) output transforms: >= 1,500 + 73
OUTPUT_FFT = 1600


@dataclass(frozen=True)
class BasebandConfig(EnvelopeConfig):
    """What determines the envelopes: the recipe's constants (:class:`EnvelopeConfig`, shared
    with the CUDA path) and this CPU path's mode and grid."""

    mode: str = "exact"
    #: fast mode: each band's grid has at least this many points per bin of its support;
    #: 12 is the smallest factor keeping every statistic within 1e-3 of exact (relative
    #: to its scale) on the four reference clips (tests/test_sound_texture.py)
    oversample: float = 12.0


@dataclass(frozen=True)
class BandGroup:
    """Bands evaluated together: one [bands, P, M] inverse FFT (P = 1 in fast mode)."""

    bands: np.ndarray          # [nb] channel indices
    index: np.ndarray          # [nb, W] rfft bins of each band's support (padded with bin 0)
    coef: np.ndarray           # exact: [nb, P, W] complex twiddled filter; fast: [nb, W]
    p: int                     # interleaved sub-grids (exact) or 1 (fast)
    m: int                     # points of each inverse FFT


class BasebandPlan:
    """The band groups and output-kernel spectra for one configuration."""

    def __init__(self, config: BasebandConfig):
        if config.mode not in ("exact", "fast"):
            raise ValueError(f"mode must be 'exact' or 'fast', got {config.mode!r}")
        n, f = config.num_samples, config.factor
        if n % f or config.num_frames > OUTPUT_FFT - 80:
            raise ValueError(f"clip length {n} must be a multiple of {f} and at most "
                             f"{(OUTPUT_FFT - 80) * f} samples")
        self.config = config
        filts = cochlear_filterbank(n, config.sample_rate, config.n_bands, config.low_hz, config.high_hz)
        weights = np.full(filts.shape[1], 2.0)        # analytic signal: one-sided spectrum
        weights[0] = 1.0
        if n % 2 == 0:
            weights[-1] = 1.0
        analytic = filts * weights
        supports = [np.flatnonzero(row) for row in analytic]
        sizes = {}
        for band, sup in enumerate(supports):
            width = sup[-1] - sup[0] + 1
            sizes.setdefault(self._grid(width), []).append(band)
        kernel = octave_resample_kernel(f)
        if config.mode == "exact":
            self.groups = [self._exact_group(analytic, supports, bands, m) for m, bands in sorted(sizes.items())]
            self.phase_spectra = _phase_kernel_spectra(kernel, f)            # [50, 801]
        else:
            self.groups = [self._fast_group(analytic, supports, bands, m) for m, bands in sorted(sizes.items())]
            self.edges = {g.m: coarse_grid_filter(kernel, n, f, g.m) for g in self.groups}
        self.n_channels = analytic.shape[0]

    def _grid(self, width: int) -> int:
        """Points M of a band's inverse FFT (exact: a divisor of n; fast: 1,500 q)."""
        cfg = self.config
        if cfg.mode == "exact":
            return min(d for d in _divisors(cfg.num_samples) if d >= width)
        frames = cfg.num_frames
        return frames * fast_grid_factor(width, frames, cfg.oversample, cfg.num_samples // frames)

    def _exact_group(self, analytic, supports, bands, m) -> BandGroup:
        n = self.config.num_samples
        p = n // m
        width = max(supports[b][-1] - supports[b][0] + 1 for b in bands)
        index = np.zeros((len(bands), width), dtype=np.int64)
        coef = np.zeros((len(bands), p, width), dtype=np.complex128)
        j = np.arange(width)
        # exp(2 pi i j p / n), the sub-grid offsets' twiddles (exact phases: j p reduced mod n)
        twiddle = np.exp(2j * np.pi * ((np.arange(p)[:, None] * j[None, :]) % n) / n)
        for row, band in enumerate(bands):
            lo, hi = supports[band][0], supports[band][-1] + 1
            index[row, : hi - lo] = np.arange(lo, hi)
            coef[row, :, : hi - lo] = analytic[band, lo:hi] * (m / n) * twiddle[:, : hi - lo]
        return BandGroup(np.asarray(bands), index, coef, p, m)

    def _fast_group(self, analytic, supports, bands, m) -> BandGroup:
        n = self.config.num_samples
        width = max(supports[b][-1] - supports[b][0] + 1 for b in bands)
        index = np.zeros((len(bands), width), dtype=np.int64)
        coef = np.zeros((len(bands), width), dtype=np.complex64)
        for row, band in enumerate(bands):
            lo, hi = supports[band][0], supports[band][-1] + 1
            index[row, : hi - lo] = np.arange(lo, hi)
            coef[row, : hi - lo] = analytic[band, lo:hi] * (m / n)
        return BandGroup(np.asarray(bands), index, coef, 1, m)

    # ------------------------------------------------------------------ computing
    def envelopes(self, x: np.ndarray, threads: int = 1) -> np.ndarray:
        """Compressed 400 Hz envelopes [B, channels, frames] (float64) of clips [B, n]."""
        cfg = self.config
        if x.ndim != 2 or x.shape[1] != cfg.num_samples:
            raise ValueError(f"expected clips of {cfg.num_samples} samples, got shape {x.shape}")
        out = np.empty((x.shape[0], self.n_channels, cfg.num_frames))
        one = self._exact_clip if cfg.mode == "exact" else self._fast_clip

        def run(i: int) -> None:
            out[i] = one(np.ascontiguousarray(x[i], dtype=np.float64))

        if threads <= 1 or x.shape[0] == 1:
            for i in range(x.shape[0]):
                run(i)
        else:
            list(_pool(threads).map(run, range(x.shape[0])))
        return out

    def _exact_clip(self, x: np.ndarray) -> np.ndarray:
        cfg = self.config
        frames, f = cfg.num_frames, cfg.factor
        spectrum = scipy.fft.rfft(x)
        env = np.empty((self.n_channels, frames))
        with np.errstate(divide="ignore"):                # log(0) = -inf -> exp gives 0
            for g in self.groups:
                nb, width = g.index.shape
                grid = _workspace(("grid", g.m), (nb, g.p, g.m), np.complex128)
                np.multiply(spectrum[g.index][:, None, :], g.coef, out=grid[:, :, :width])
                c = _compress(scipy.fft.ifft(grid, axis=-1), cfg.compression)   # t = p + P m
                # the 50 phases r of c[50 j + r], zero-padded to 1,600 points
                phases = _workspace(("phases", g.m), (nb, f, OUTPUT_FFT), np.float64)
                phases[:, :, :frames] = c.transpose(0, 2, 1).reshape(nb, frames, f).transpose(0, 2, 1)
                spec = scipy.fft.rfft(phases, axis=-1)                          # [nb, 50, 801]
                folded = np.einsum("brk,rk->bk", spec, self.phase_spectra)
                env[g.bands] = scipy.fft.irfft(folded, n=OUTPUT_FFT)[:, :frames]
        return np.maximum(env, 0, out=env)

    def _fast_clip(self, x: np.ndarray) -> np.ndarray:
        cfg = self.config
        frames = cfg.num_frames
        spectrum = scipy.fft.rfft(x.astype(np.float32))
        env = np.empty((self.n_channels, frames))
        with np.errstate(divide="ignore"):                # log(0) = -inf -> exp gives 0
            for g in self.groups:
                nb = len(g.bands)
                grid = np.zeros((nb, g.m), dtype=np.complex64)
                width = g.index.shape[1]
                np.multiply(spectrum[g.index], g.coef, out=grid[:, :width])
                c = _compress(scipy.fft.ifft(grid, axis=-1, overwrite_x=True), cfg.compression)
                edges = self.edges[g.m]
                spec = scipy.fft.rfft(c, axis=-1) * edges.response
                y = scipy.fft.irfft(_fold(spec, g.m, frames), n=frames)
                around_zero = c[:, edges.window].astype(np.float64)
                y[:, : edges.start.shape[0]] -= around_zero @ edges.start.T
                y[:, frames - edges.end.shape[0]:] -= around_zero @ edges.end.T
                env[g.bands] = y
        return np.maximum(env, 0, out=env)


def fast_grid_factor(width: int, frames: int, oversample: float, most: int) -> int:
    """q such that 1,500 q points cover ``oversample`` times a band's support, 5-smooth.

    At most ``most`` (50: the audio rate itself, where the grid is the exact one).
    """
    q = max(1, math.ceil(oversample * width / frames))
    while not _is_5_smooth(q):
        q += 1
    return min(q, most)


def _compress(a: np.ndarray, power: float) -> np.ndarray:
    """|a|^power as exp(power * log |a|) (numpy's SIMD log and exp beat its pow)."""
    c = np.abs(a)
    np.log(c, out=c)
    c *= power
    return np.exp(c, out=c)


def _fold(spec: np.ndarray, n_fft: int, k: int) -> np.ndarray:
    """The rfft bins of every q-th sample (q = n_fft / k) of the signal whose rfft is ``spec``.

    Keeping every q-th sample of an n_fft-point signal aliases its full (Hermitian)
    spectrum Y onto k = n_fft / q bins: Z[b] = sum_j Y[b + j k] / q, whose irfft over k
    points gives those samples. Returns Z's first k / 2 + 1 bins.
    """
    q = n_fft // k
    if q == 1:
        return spec
    full = np.concatenate([spec, np.conj(spec[..., 1: (n_fft + 1) // 2][..., ::-1])], axis=-1)
    return full.reshape(*spec.shape[:-1], q, k).sum(axis=-2)[..., : k // 2 + 1] / q


def _phase_kernel_spectra(kernel: np.ndarray, factor: int) -> np.ndarray:
    """[factor, 801]: rfft over 1,600 points of each phase kernel g_r[d] = h[factor d - r]."""
    half = (kernel.size - 1) // 2
    reach = half // factor + 2
    g = np.zeros((factor, OUTPUT_FFT))
    for r in range(factor):
        for d in range(-reach, reach + 1):
            t = factor * d - r
            if -half <= t <= half:
                g[r, d % OUTPUT_FFT] = kernel[t + half]
    return scipy.fft.rfft(g)


@dataclass(frozen=True)
class CoarseGridFilter:
    """The downsampler applied to an envelope known on a coarse grid of M = 1,500 q points.

    With c(t) the periodic band-limited interpolation of the M samples, the resampler's
    output y[m] = sum_{0 <= t < n} h[t'] c(t), t' = 50 m - t, is a periodic convolution
    (the rfft of the samples times the kernel's response H at the frequencies k / n,
    folded onto the 1,500-frame grid) minus, for the frames within the kernel's reach of
    either end, the part of the kernel that falls outside the clip. Those edge terms are
    small matrices applied to the samples around t = 0 (where the clip's end wraps to):
    the zero padding at both ends is honoured without evaluating c at 20 kHz.
    """

    response: np.ndarray       # [M/2 + 1] H(k) = sum_t h[t] exp(-2 pi i k t / n) (real)
    window: np.ndarray         # [W] coarse indices around t = 0, modulo M
    start: np.ndarray          # [37, W] the part before t = 0, for frames 0..36
    end: np.ndarray            # [36, W] the part after t = n, for frames 1464..1499


def coarse_grid_filter(kernel: np.ndarray, n: int, factor: int, m: int,
                       reach: int = 16, beta: float = 8.0) -> CoarseGridFilter:
    """Build :class:`CoarseGridFilter` for ``kernel`` (h[t], t = -L..L) and an M-point grid.

    Between grid points c is interpolated with a Kaiser-windowed sinc of ``reach`` grid
    points each side (its error is far below the aliasing the coarse grid already makes).
    """
    half = (kernel.size - 1) // 2
    circ = np.zeros(n)
    circ[: half + 1] = kernel[half:]
    circ[-half:] = kernel[:half]
    response = np.fft.rfft(circ).real[: m // 2 + 1]       # symmetric kernel: real response
    spacing = n / m                                       # audio samples per grid point
    width = math.ceil(half / spacing) + reach + 1
    offsets = np.arange(-width, width + 1)

    def interpolator(t: np.ndarray) -> scipy.sparse.csr_array:   # [len(t), W], sparse
        near = np.floor(t / spacing).astype(np.int64)[:, None] + np.arange(-reach, reach + 2)
        tau = t[:, None] - spacing * near
        x = tau / (spacing * reach)
        inside = np.abs(x) < 1
        window = scipy.special.i0(beta * np.sqrt(np.where(inside, 1 - x * x, 0))) * inside
        values = np.sinc(tau / spacing) * window / scipy.special.i0(beta)
        rows = np.broadcast_to(np.arange(t.size)[:, None], near.shape)
        return scipy.sparse.csr_array((values.ravel(), (rows.ravel(), (near + width).ravel())),
                                      shape=(t.size, offsets.size))

    u = np.arange(0, half + 1)
    n_start = (half - 1) // factor + 1                    # frames 0..: 50 m - L < 0
    n_end = half // factor                                # frames n/50 - j, j = 1..: 50 j <= L
    before = np.zeros((n_start, half + 1))                # h[50 m + u] on c(-u), u >= 1
    for row in range(n_start):
        us = u[(u >= 1) & (factor * row + u <= half)]
        before[row, us] = kernel[half + factor * row + us]
    after = np.zeros((n_end, half + 1))                   # h[50 j + u] on c(n + u) = c(u)
    for row, j in enumerate(range(n_end, 0, -1)):
        us = u[factor * j + u <= half]
        after[row, us] = kernel[half + factor * j + us]
    return CoarseGridFilter(response=response, window=offsets % m,
                            start=np.ascontiguousarray((interpolator(-u.astype(np.float64)).T @ before.T).T),
                            end=np.ascontiguousarray((interpolator(u.astype(np.float64)).T @ after.T).T))


def _divisors(n: int) -> list[int]:
    return sorted(d for d in range(1, n + 1) if n % d == 0)


def _is_5_smooth(n: int) -> bool:
    for p in (2, 3, 5):
        while n % p == 0:
            n //= p
    return n == 1


_buffers = threading.local()


def _workspace(key: tuple, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A zero-initialised buffer kept per thread and reused: its callers write the same
    region on every use, so the rest (the zero padding) stays zero."""
    store = _buffers.__dict__.setdefault("arrays", {})
    buf = store.get(key)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = store[key] = np.zeros(shape, dtype=dtype)
    return buf


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """One long-lived pool per thread count (starting threads per call costs more)."""
    with _pools_lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="texture")
        return _pools[threads]


@functools.lru_cache(maxsize=8)
def get_baseband_plan(config: BasebandConfig) -> BasebandPlan:
    """The cached plan of a configuration (tables are built once, in ~0.1 s)."""
    return BasebandPlan(config)

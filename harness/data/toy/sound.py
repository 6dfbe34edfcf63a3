"""Synthesize a composition's audio window: scene ambience plus the audible objects.

The ambience is Gaussian noise shaped by the scene's band (in the frequency domain) and
amplitude-modulated at the scene's rate with a random phase. Each audible object adds its
class's characteristic sound, stationary over the window (periodic with a period shorter
than an MFCC analysis frame, or steady band noise), normalised and placed 12-24 dB above
the ambience by default. A clip-wide random gain keeps loudness from being a label.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft

from harness.data.toy.config import ToyConfig
from harness.data.toy.world import SCENES, SOUNDS, Composition, Sound
from harness.data.voc import CLASSES


@lru_cache(maxsize=8)
def _spectrum_grid(n: int, rate: int) -> tuple[int, np.ndarray]:
    """An FFT-friendly length >= n and log2 of its non-negative frequencies (Hz; DC -> -inf)."""
    nfft = scipy.fft.next_fast_len(n, real=True)
    with np.errstate(divide="ignore"):
        return nfft, np.log2(np.fft.rfftfreq(nfft, 1.0 / rate)).astype(np.float32)


#: samples in one period of an object's band noise (about 50 ms)
NOISE_PERIOD = 1024


def _rms_normalise(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))), 1e-12)


def band_noise(rng: np.random.Generator, n: int, rate: int, centre: float,
               width_octaves: float) -> np.ndarray:
    """Unit-RMS Gaussian noise whose spectrum is a Gaussian bump in log frequency."""
    nfft, log2f = _spectrum_grid(n, rate)
    octaves = (log2f - np.float32(np.log2(centre))) / np.float32(width_octaves / 2)
    gain = np.exp(-0.5 * octaves * octaves)  # exp(-inf) = 0 at DC
    spec = np.empty(log2f.size, dtype=np.complex64)
    spec.real = rng.standard_normal(log2f.size, dtype=np.float32) * gain
    spec.imag = rng.standard_normal(log2f.size, dtype=np.float32) * gain
    return _rms_normalise(scipy.fft.irfft(spec, nfft)[:n])


def _tile(rng: np.random.Generator, period: np.ndarray, n: int) -> np.ndarray:
    """Repeat one period to ``n`` samples, starting at a random point of the period."""
    return np.resize(np.roll(period, -int(rng.integers(period.size))), n)


def _harmonic(rng, s: Sound, rate: int, n: int, jit: float) -> np.ndarray:
    length = max(2, int(round(rate / (s.f0 * jit))))  # one period, whole samples
    f0 = rate / length
    k = np.arange(1, max(1, int(0.45 * rate / f0)) + 1, dtype=np.float64)
    if s.odd:
        k = k[k % 2 == 1]
    amp = 10 ** (s.tilt * np.log2(k) / 20)
    if s.formants:
        amp = amp * (0.05 + sum(1.0 / (1.0 + ((k * f0 - fc * jit) / (bw / 2)) ** 2)
                                for fc, bw in s.formants))
    phase = rng.uniform(0, 2 * np.pi, k.size)
    t = np.arange(length) / length
    period = (amp[:, None] * np.sin(2 * np.pi * k[:, None] * t[None] + phase[:, None])).sum(0)
    return _tile(rng, period, n)


def _chirp(rng, s: Sound, rate: int, n: int, jit: float) -> np.ndarray:
    length = int(round(rate / (s.rate * jit)))
    sweep = np.linspace(s.f0 * jit, s.f1 * jit, length, endpoint=False)
    phase = 2 * np.pi * np.cumsum(sweep) / rate
    k = np.arange(1, s.harmonics + 1)[:, None]
    period = (np.sin(k * phase[None]) / k).sum(0) * np.hanning(length)
    return _tile(rng, period, n)


def _clicks(rng, s: Sound, rate: int, n: int, jit: float) -> np.ndarray:
    length = int(round(rate / (s.rate * jit)))
    t = np.arange(length) / rate
    period = np.exp(-np.pi * s.width * t) * np.sin(2 * np.pi * s.f0 * jit * t)
    return _tile(rng, period, n)


def _noise(rng, s: Sound, rate: int, n: int, jit: float) -> np.ndarray:
    # one 1024-sample period of band noise, repeated: a steady hiss whose spectrum is the
    # same in every MFCC frame (a fresh noise per frame would scatter the flattened MFCCs)
    return _tile(rng, band_noise(rng, NOISE_PERIOD, rate, s.f0 * jit, s.width), n)


def object_sound(rng: np.random.Generator, cls: int, cfg: ToyConfig) -> np.ndarray:
    """Unit-RMS characteristic sound of class ``cls`` for one window (per-instance jitter)."""
    s = SOUNDS[CLASSES[cls]]
    n, rate = cfg.num_samples, cfg.sample_rate
    jit = 1.0 + rng.uniform(-cfg.pitch_jitter, cfg.pitch_jitter)
    make = {"harmonic": _harmonic, "chirp": _chirp, "clicks": _clicks, "noise": _noise}[s.kind]
    return _rms_normalise(make(rng, s, rate, n, jit))


def ambience(rng: np.random.Generator, scene: int, cfg: ToyConfig) -> np.ndarray:
    """Unit-RMS ambience of a scene: band noise, amplitude-modulated at the scene's rate."""
    sc = SCENES[scene]
    n, rate = cfg.num_samples, cfg.sample_rate
    x = band_noise(rng, n, rate, sc.ambience_hz * np.exp(rng.uniform(-0.1, 0.1)),
                   sc.ambience_width)
    if sc.am_depth > 0:
        t = np.arange(n, dtype=np.float32) / np.float32(rate)
        am_rate = sc.am_rate * rng.uniform(0.9, 1.1)
        phase = np.float32(rng.uniform(0, 2 * np.pi))
        x = x * (1 + np.float32(sc.am_depth) * np.sin(np.float32(2 * np.pi * am_rate) * t + phase))
    return _rms_normalise(x)


def synthesize(rng: np.random.Generator, comp: Composition, cfg: ToyConfig) -> np.ndarray:
    """The audio window (float32 [num_samples], within [-1, 1]) of a composition."""
    level = cfg.ambience_rms * 10 ** (rng.uniform(*cfg.clip_gain_db) / 20)
    mix = (level * ambience(rng, comp.scene, cfg)).astype(np.float32)
    for obj in comp.objects:
        if obj.audible:
            mix += level * 10 ** (obj.gain_db / 20) * object_sound(rng, obj.cls, cfg)
    floor = np.float32(level * 10 ** (cfg.noise_floor_db / 20))
    mix += floor * rng.standard_normal(mix.size, dtype=np.float32)
    return np.clip(mix, -1.0, 1.0).astype(np.float32)

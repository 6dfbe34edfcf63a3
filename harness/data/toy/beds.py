"""Sound beds that real video lays under its pictures: music and narration (voice-over).

Both change over the window, unlike the toy objects' stationary sounds: music is a
melody of plucked notes over a sustained chord with a beat, in a random key and tempo;
narration is a voice whose pitch drifts, whose vowels change every syllable and which
pauses between phrases. A narration is a voice, so it sounds somewhat like the
``person`` class's tone (a harmonic source with formants), as voice-over is a person the
frame does not show. Both return unit-RMS float32 windows.
"""

from __future__ import annotations

import numpy as np

#: semitones of the major pentatonic scale the melodies use
_PENTATONIC = np.array([0, 2, 4, 7, 9])
#: chords (semitones over the key) the accompaniment moves through: I, IV, V, vi
_CHORDS = ((0, 4, 7), (5, 9, 12), (7, 11, 14), (9, 12, 16))
#: vowel formants (F1, F2, F3), Hz, of an average adult voice
_VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010],
                    [570, 840, 2410], [300, 870, 2240], [660, 1720, 2410]], dtype=np.float64)
_FORMANT_WIDTHS = np.array([90.0, 110.0, 170.0])


def _unit_rms(x: np.ndarray) -> np.ndarray:
    return (x / max(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))), 1e-12)).astype(np.float32)


def _tone(freq: float, t: np.ndarray, partials: int) -> np.ndarray:
    """A harmonic tone (partials at 1/k amplitude) at times ``t`` (s)."""
    k = np.arange(1, partials + 1)[:, None]
    return (np.sin(2 * np.pi * freq * k * t[None]) / k).sum(0)


def music_bed(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """``n`` samples of music: plucked pentatonic melody, chord pad, kick and hi-hat."""
    out = np.zeros(n, dtype=np.float64)
    beat = 60.0 / rng.uniform(80, 150)
    key = 110.0 * 2 ** (int(rng.integers(12)) / 12)
    step = beat / (2 if rng.random() < 0.5 else 1)
    start = -rng.uniform(0, step)
    nyquist = 0.45 * rate
    # melody: one plucked note per step, decaying over the step
    for t0 in np.arange(start, n / rate, step):
        note = int(rng.choice(_PENTATONIC)) + 12 * int(rng.integers(1, 3))
        freq = key * 2 ** (note / 12)
        a, b = max(0, int(t0 * rate)), min(n, int((t0 + step) * rate))
        t = (np.arange(a, b) - t0 * rate) / rate
        partials = max(1, min(5, int(nyquist / freq)))
        out[a:b] += 0.6 * _tone(freq, t, partials) * np.exp(-4.0 * t / step)
    # pad: a sustained triad, changing every four beats
    bar = 4 * beat
    for i, t0 in enumerate(np.arange(start, n / rate, bar)):
        chord = _CHORDS[int(rng.integers(len(_CHORDS)))] if i else _CHORDS[0]
        a, b = max(0, int(t0 * rate)), min(n, int((t0 + bar) * rate))
        t = np.arange(a, b) / rate
        out[a:b] += sum(0.25 * _tone(key * 2 ** (s / 12), t, 3) for s in chord)
    # beat: a kick (falling sine) on each beat, a hi-hat (noise burst) between
    for t0 in np.arange(start, n / rate, beat):
        a = max(0, int(t0 * rate))
        kick = min(n - a, int(0.15 * rate))
        t = np.arange(kick) / rate
        # its pitch falls from 90 to 50 Hz: the phase integrates 50 + 40 exp(-t / 30 ms)
        out[a:a + kick] += 0.8 * np.sin(2 * np.pi * (50 * t + 1.2 * (1 - np.exp(-t / 0.03)))) \
            * np.exp(-t / 0.05)
        h = max(0, int((t0 + beat / 2) * rate))
        hat = max(0, min(n - h, int(0.04 * rate)))
        noise = rng.standard_normal(hat)
        out[h:h + hat] += 0.2 * np.diff(noise, prepend=0.0) * np.exp(-np.arange(hat) / (0.01 * rate))
    return _unit_rms(out)


def narration_bed(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """``n`` samples of a voice talking: phrases of syllables with pauses between them."""
    f0 = rng.uniform(85, 255)
    # syllables of 0.15-0.3 s, grouped into phrases of 3-8 with 0.15-0.5 s pauses
    bounds, voiced = [], []
    t = -rng.uniform(0, 0.5)
    while t < n / rate:
        for _ in range(int(rng.integers(3, 9))):
            d = rng.uniform(0.15, 0.3)
            bounds.append((t, t + d))
            voiced.append(True)
            t += d
        d = rng.uniform(0.15, 0.5)
        bounds.append((t, t + d))
        voiced.append(False)
        t += d
    samples = np.arange(n) / rate
    # the pitch: a slow random drift of up to +-15% over the window
    drift = np.interp(samples, np.linspace(0, n / rate, 8), 1 + 0.15 * rng.uniform(-1, 1, 8))
    pitch = f0 * drift
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    harmonics = int(min(40, 0.45 * rate / (1.3 * f0)))
    envelope = np.zeros(n)
    amps = np.zeros((len(bounds), harmonics))
    index = np.zeros(n, dtype=int)
    k = np.arange(1, harmonics + 1)
    for i, ((t0, t1), on) in enumerate(zip(bounds, voiced)):
        a, b = max(0, int(t0 * rate)), min(n, int(t1 * rate))
        if b <= a:
            continue
        index[a:b] = i
        if not on:
            continue
        rise = np.sin(np.pi * (np.arange(a, b) - t0 * rate) / ((t1 - t0) * rate))
        envelope[a:b] = np.sqrt(np.clip(rise, 0, 1))
        formants = _VOWELS[int(rng.integers(len(_VOWELS)))] * rng.uniform(0.9, 1.1)
        freqs = k * f0
        amps[i] = (0.02 + (1.0 / (1.0 + ((freqs[:, None] - formants[None]) / (_FORMANT_WIDTHS / 2)) ** 2))
                   .sum(1)) / k ** 0.5
    out = np.zeros(n)
    for j in range(harmonics):
        out += amps[index, j] * np.sin((j + 1) * phase)
    return _unit_rms(out * envelope)

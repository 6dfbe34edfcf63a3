"""sound_texture: parity with the McDermott-Simoncelli toolbox, batching, level, bad clips.

The reference values (tests/data/texture/reference.json) are the toolbox's own outputs
under GNU Octave for four clips that tests/data/texture/make_test_signals.py regenerates
bit for bit; the spec (/work/shared/specs/sound-texture-statistics.md) asks for 1e-9.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from harness.api.errors import BadClipError, BadInputError
from harness.api.registry import create
from harness.api.testing import check_repr
from harness_plugins.sound_texture import SoundTexture
from harness_plugins.sound_texture.baseline import texture_features
from harness_plugins.sound_texture.filters import cochlear_cutoffs, modulation_centres

DATA = Path(__file__).parent / "data" / "texture"
SHARED = Path("/work/shared/reference/texture")
TOL = 1e-9


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_test_signals", DATA / "make_test_signals.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((DATA / "reference.json").read_text())


@pytest.fixture(scope="module")
def clips(reference) -> dict[str, np.ndarray]:
    """The four reference inputs, regenerated and checked to be bit-identical to the WAVs."""
    gen = _load_generator()
    out = {}
    for name, entry in reference["signals"].items():
        x = gen.SIGNALS[name]().astype(np.float32)   # the WAVs hold float32 samples
        assert hashlib.sha256(x.tobytes()).hexdigest() == entry["samples_sha256"], name
        out[name] = x.astype(np.float64)
    return out


@pytest.fixture(scope="module")
def exact() -> SoundTexture:
    return create("repr", "sound_texture")


@pytest.fixture(scope="module")
def exact_features(exact, clips) -> np.ndarray:
    return exact.compute(np.stack(list(clips.values())), dtype=np.float64)


@pytest.fixture(scope="module")
def exact_envelopes(exact, clips) -> np.ndarray:
    return exact.envelopes(np.stack(list(clips.values())))


def test_filter_frequencies_match_the_toolbox(reference):
    np.testing.assert_allclose(cochlear_cutoffs(), reference["audio_cutoffs_Hz"], rtol=1e-13)
    np.testing.assert_allclose(modulation_centres(), reference["mod_cfs_Hz"], rtol=1e-13)


def test_all_502_values_match_the_toolbox(reference, exact_features):
    for row, (name, entry) in zip(exact_features, reference["signals"].items()):
        expected = np.asarray(entry["feat502"])
        assert row.shape == (502,)
        err = np.abs(row - expected)
        assert err.max() < TOL, f"{name}: value {err.argmax()} off by {err.max():.3g}"
        assert row[501] == pytest.approx(entry["loudness"][0], abs=TOL)


def test_envelopes_match_the_toolbox(reference, exact_envelopes):
    env = exact_envelopes
    assert env.shape == (4, 32, 1500)
    step = reference["envelope_frames_step"]
    for got, entry in zip(env, reference["signals"].values()):
        expected = np.asarray(entry["envelopes_every_50th_frame"])   # [frames, 32]
        np.testing.assert_allclose(got.T[::step], expected, rtol=0, atol=TOL)


@pytest.mark.skipif(not (SHARED / "ref_owens_envelopes.npz").is_file(),
                    reason="full reference envelopes not available")
def test_every_envelope_sample_matches_the_toolbox(exact_envelopes, clips):
    with np.load(SHARED / "ref_owens_envelopes.npz") as ref:
        for got, name in zip(exact_envelopes, clips):
            np.testing.assert_allclose(got.T, ref[name], rtol=0, atol=TOL)


def test_plain_numpy_baseline_matches_the_toolbox(reference, clips):
    name = "harmonic_plus_noise"  # the hardest clip: near-tonal bands
    got = texture_features(clips[name])
    np.testing.assert_allclose(got, reference["signals"][name]["feat502"], rtol=0, atol=TOL)


def test_batch_equals_one_by_one(exact, clips, exact_features):
    waves = np.stack(list(clips.values()))
    for i in (0, 3):
        single = exact.compute(waves[i:i + 1], dtype=np.float64)
        assert np.array_equal(single[0], exact_features[i])
    # another batch composition and order: still the same rows
    reordered = exact.compute(waves[[3, 1, 1]], dtype=np.float64)
    assert np.array_equal(reordered, exact_features[[3, 1, 1]])


def test_statistics_do_not_depend_on_level(exact, clips, exact_features):
    gain = 10 ** (-70 / 20) / 0.05          # RMS 0.05 -> -70 dBFS
    picked = [0, 3]                         # white noise, harmonic complex
    quiet = exact.compute(np.stack(list(clips.values()))[picked] * gain, dtype=np.float64)
    np.testing.assert_allclose(quiet[:, :501], exact_features[picked, :501], rtol=0, atol=TOL)
    np.testing.assert_allclose(quiet[:, 501], exact_features[picked, 501] * gain ** 0.3, rtol=1e-12)


def test_default_output_is_float32_and_finite(exact, clips, exact_features):
    out = exact.compute(np.stack(list(clips.values()))[:2])
    assert out.dtype == np.float32
    assert np.array_equal(out, exact_features[:2].astype(np.float32))


def test_params_record_the_mode(exact):
    fast = create("repr", "sound_texture", mode="fast")
    assert exact.params()["mode"] == "exact" and exact.params()["compute_dtype"] == "float64"
    assert "3623-tap" in exact.params()["downsampler"]
    assert fast.params()["mode"] == "fast" and fast.params()["compute_dtype"] == "float32"
    assert fast.params()["envelope"] != exact.params()["envelope"]
    json.dumps(fast.params(), allow_nan=False)
    with pytest.raises(BadInputError, match="mode"):
        SoundTexture(mode="sloppy")


#: the 502-vector's statistics: (slice, scale); the scale of a correlation is its range
STATISTICS = {"mu": (slice(0, 32), None), "sigma/mu": (slice(32, 64), None),
              "rho": (slice(64, 181), 1.0), "b": (slice(181, 501), None), "l": (slice(501, 502), None)}


def fast_mode_errors(fast: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """Largest error of each statistic relative to its scale in the clip.

    The scale is the statistic's largest magnitude in that clip (mu, sigma/mu, b and l),
    and 1 for the correlations: a white-noise clip has correlations of 1e-4 between
    distant bands, where an error relative to the value itself means nothing.
    """
    out = {}
    for name, (sl, scale) in STATISTICS.items():
        err = np.abs(fast[:, sl] - exact[:, sl])
        size = scale if scale is not None else np.abs(exact[:, sl]).max(axis=1, keepdims=True)
        out[name] = float((err / size).max())
    return out


def test_fast_mode_is_within_1e_3_of_exact_on_every_reference_clip(reference, clips):
    fast = create("repr", "sound_texture", mode="fast")
    got = fast.compute(np.stack(list(clips.values())), dtype=np.float64)
    expected = np.stack([np.asarray(entry["feat502"]) for entry in reference["signals"].values()])
    errors = fast_mode_errors(got, expected)
    assert max(errors.values()) < 1e-3, errors
    assert errors["mu"] < 1e-4 and errors["l"] < 1e-4, errors     # the means barely move


def test_fast_mode_batch_equals_one_by_one(clips):
    fast = create("repr", "sound_texture", mode="fast")
    waves = np.stack(list(clips.values()))
    batch = fast.compute(waves, dtype=np.float64)
    assert np.array_equal(fast.compute(waves[2:3], dtype=np.float64)[0], batch[2])


def test_fast_mode_conforms():
    # the default mode is checked by tests/test_conformance.py with every registered plugin
    check_repr(SoundTexture, {"mode": "fast"})


# ----------------------------------------------------------------------------- bad clips
def _noise(n=75_000, seed=0, rms=0.05):
    return np.random.default_rng(seed).standard_normal(n) * rms


@pytest.mark.parametrize("make, index, words", [
    (lambda: np.stack([_noise(), np.zeros(75_000)]), 1, "silent"),
    (lambda: np.stack([_noise() * 1e-25, _noise()]), 0, "loudness"),
    (lambda: np.stack([_noise(), np.where(np.arange(75_000) == 7, np.nan, _noise())]), 1, "NaN"),
    (lambda: np.stack([np.where(np.arange(75_000) == 7, np.inf, _noise()), _noise()]), 0, "Inf"),
    (lambda: _noise(74_950)[None], 0, "samples"),
])
def test_bad_clips_are_rejected_with_their_index(exact, make, index, words):
    with pytest.raises(BadClipError) as info:
        exact.compute(make())
    assert info.value.index == index
    assert words in info.value.reason


def test_quiet_recording_is_not_silence(exact):
    # a -70 dBFS room tone and a PCM16 clip of +-1 LSB dither are data, not silence
    for wave in (_noise(rms=10 ** (-70 / 20)), np.sign(_noise()) / 32768):
        out = exact.compute(wave[None])
        assert np.isfinite(out).all()


@pytest.mark.parametrize("wave", [
    np.full(75_000, 0.5),                                   # DC only
    np.eye(1, 75_000, 37_500)[0],                           # one impulse
    np.sin(2 * np.pi * 1000 * np.arange(75_000) / 20_000),  # pure tone
    np.sign(np.sin(2 * np.pi * 3 * np.arange(75_000) / 20_000)),  # square wave
])
def test_odd_signals_never_give_nan(exact, wave):
    try:
        out = exact.compute(wave[None], dtype=np.float64)
    except BadClipError as exc:
        assert exc.index == 0
    else:
        assert np.isfinite(out).all()


@pytest.mark.gpu
def test_gpu_matches_cpu(exact, clips, reference, exact_features):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    got = exact.compute(np.stack(list(clips.values())), dtype=np.float64, device="cuda")
    for row, entry in zip(got, reference["signals"].values()):
        np.testing.assert_allclose(row, entry["feat502"], rtol=0, atol=TOL)
    np.testing.assert_allclose(got, exact_features, rtol=0, atol=1e-12)

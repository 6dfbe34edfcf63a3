"""mfcc: librosa's numbers, 155 frames, batch == single, the torch path, bad clips."""

from __future__ import annotations

import json

import librosa
import numpy as np
import pytest

from harness.api.errors import BadClipError
from harness.api.registry import create
from harness.api.testing import check_repr
from harness_plugins.mfcc import Mfcc
from harness_plugins.mfcc.torch_mfcc import torch_mfcc

N = 78_750  # 3.75 s at 21 kHz


@pytest.fixture(scope="module")
def waves() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(N) / 21_000
    return np.stack([
        0.1 * rng.standard_normal(N),
        0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(N),
        1e-3 * rng.standard_normal(N) * (1 + np.sin(2 * np.pi * 4 * t)),
    ]).astype(np.float32)


@pytest.fixture(scope="module")
def rep() -> Mfcc:
    return create("repr", "mfcc")


def test_default_gives_20_by_155(rep, waves):
    assert (rep.sample_rate, rep.num_samples, rep.dim) == (21_000, N, 3100)
    out = rep.compute(waves)
    assert out.shape == (3, 3100) and out.dtype == np.float32
    assert np.isfinite(out).all()


def test_equals_librosa_called_clip_by_clip(rep, waves):
    out = rep.compute(waves).reshape(3, 20, 155)
    for got, y in zip(out, waves):
        # librosa frames the 3.75 s window into 154 frames; the plugin's first 154 are those
        ref = librosa.feature.mfcc(y=y, sr=21_000, n_mfcc=20)
        assert ref.shape == (20, 154)
        np.testing.assert_allclose(got[:, :154], ref, rtol=1e-5, atol=2e-3)
        # the 155th frame is librosa's on the window completed to a whole number of hops
        ref155 = librosa.feature.mfcc(y=np.pad(y, (0, 155 * 512 - 512 - N)), sr=21_000, n_mfcc=20)
        np.testing.assert_allclose(got, ref155, rtol=1e-5, atol=2e-3)


def test_batch_equals_one_by_one(rep, waves):
    batch = rep.compute(waves)   # clips 80 dB apart: top_db must apply per clip
    for i in range(len(waves)):
        assert np.array_equal(rep.compute(waves[i:i + 1])[0], batch[i])


def test_float64_on_request(rep, waves):
    out = rep.compute(waves[:1].astype(np.float64), dtype=np.float64)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, rep.compute(waves[:1]), rtol=1e-4, atol=1e-2)


def test_every_parameter_is_an_option_and_recorded(waves):
    paper = create("repr", "mfcc", sample_rate=10_000, n_fft=256, hop_length=128,
                   window="hamming", n_mels=20, n_frames=293)
    y = librosa.resample(waves[0].astype(np.float64), orig_sr=21_000, target_sr=10_000)[:37_500]
    out = paper.compute(y[None], dtype=np.float64)
    ref = librosa.feature.mfcc(y=y, sr=10_000, n_mfcc=20, n_fft=256, hop_length=128,
                               window="hamming", n_mels=20)
    assert paper.dim == 20 * 293 and ref.shape == (20, 293)
    np.testing.assert_allclose(out[0], ref.ravel(), rtol=1e-9, atol=1e-9)
    params = paper.params()
    assert params["sample_rate"] == 10_000 and params["window"] == "hamming"
    json.dumps(params, allow_nan=False)
    assert params != create("repr", "mfcc").params()


def test_more_frames_than_asked_are_cut(waves):
    short = create("repr", "mfcc", n_frames=100)
    assert short.compute(waves[:1]).shape == (1, 2000)
    full = create("repr", "mfcc").compute(waves[:1]).reshape(20, 155)
    np.testing.assert_array_equal(short.compute(waves[:1]).reshape(20, 100), full[:, :100])


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-9), (np.float32, 2e-3)])
def test_torch_pipeline_matches_librosa(rep, waves, dtype, tol):
    y = rep._pad(waves.astype(dtype))
    got = torch_mfcc(y, rep.config, rep._mel_basis, "cpu")
    ref = rep._librosa_mfcc(y)
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("make, index, words", [
    (lambda w: np.stack([w[0], np.zeros(N, np.float32)]), 1, "silent"),
    (lambda w: np.stack([w[0], np.where(np.arange(N) == 5, np.nan, w[1])]), 1, "NaN"),
    (lambda w: w[:1, :-1], 0, "samples"),
])
def test_bad_clips_are_rejected(rep, waves, make, index, words):
    with pytest.raises(BadClipError) as info:
        rep.compute(make(waves))
    assert info.value.index == index and words in info.value.reason


def test_paper_configuration_conforms():
    # the default configuration is checked by tests/test_conformance.py
    check_repr(Mfcc, {"sample_rate": 10_000, "n_fft": 256, "hop_length": 128,
                      "window": "hamming", "n_mels": 20, "n_frames": 293})


@pytest.mark.gpu
def test_gpu_matches_cpu(rep, waves):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    np.testing.assert_allclose(rep.compute(waves, dtype=np.float64, device="cuda"),
                               rep.compute(waves, dtype=np.float64), rtol=1e-7, atol=1e-6)

"""``harness features`` and harness.labels.sound_features: formats, order, bad input, cache, resume, shards."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from typer.testing import CliRunner

import harness.labels.sound_features as hf
from harness.data.audio import fit_window, load_audio
from harness.cli import app
from harness.data.clips import write_dataset
from harness.api.errors import BadClipError, BadInputError
from harness.labels.audio_sources import DatasetSource, FileSource
from harness.labels.sound_features import FeatureOptions, compute_features
from harness.api.interfaces import SoundRepresentation
from harness.api.registry import create

runner = CliRunner()


#: a cache per test (conftest.py): datasets with equal content share cache keys by design
pytestmark = pytest.mark.usefixtures("own_cache")


# ----------------------------------------------------------------------------- fixtures
def _signal(seconds: float, rate: int, seed: int, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    tone = np.sin(2 * np.pi * (200 + 100 * seed) * t)[:, None]
    x = 0.2 * tone + 0.05 * rng.standard_normal((t.size, channels))
    return x if channels > 1 else x[:, 0]


def _encode(path: Path, x: np.ndarray, rate: int, codec: str, container: str | None = None,
            video: bool = False) -> Path:
    """Write stereo float audio [T, 2] with PyAV (mp3, aac in m4a, or an mp4 with video)."""
    with av.open(str(path), "w", format=container) as out:
        if video:
            vstream = out.add_stream("mpeg4", rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 32, 32, "yuv420p"
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "stereo"
        planar = stream.codec_context.format.name.endswith("p")
        step = 1152 if codec == "mp3" else 1024
        for i in range(0, len(x), step):
            chunk = np.ascontiguousarray(x[i:i + step].T, dtype=np.float32)
            frame = (av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo") if planar else
                     av.AudioFrame.from_ndarray(chunk.T.reshape(1, -1).copy(), format="flt", layout="stereo"))
            frame.sample_rate, frame.pts = rate, i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if video:
            for k in range(int(len(x) / rate * 10)):
                img = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
                img.pts = k
                for packet in vstream.encode(img):
                    out.mux(packet)
            for packet in vstream.encode():
                out.mux(packet)
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """One 4.5 s file per format: wav (PCM16 stereo 44.1 kHz), flac, ogg, mp3, m4a, mp4 video."""
    d = tmp_path_factory.mktemp("media")
    stereo = _signal(4.5, 44_100, 1, channels=2)
    files = {}
    sf.write(d / "a.wav", stereo, 44_100, subtype="PCM_16")
    sf.write(d / "b.flac", _signal(4.5, 22_050, 2), 22_050)
    sf.write(d / "c.ogg", _signal(4.5, 16_000, 3), 16_000)
    files.update({"wav": d / "a.wav", "flac": d / "b.flac", "ogg": d / "c.ogg"})
    files["mp3"] = _encode(d / "d.mp3", _signal(4.5, 22_050, 4, 2), 22_050, "mp3")
    files["m4a"] = _encode(d / "e.m4a", _signal(4.5, 22_050, 5, 2), 22_050, "aac", "mp4")
    files["mp4"] = _encode(d / "f.mp4", _signal(4.5, 22_050, 6, 2), 22_050, "aac", "mp4", video=True)
    return files


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Unusable inputs and a word their error message must contain."""
    d = tmp_path_factory.mktemp("bad")
    good = _signal(4.0, 22_050, 7)
    (d / "junk.wav").write_bytes(b"this is not audio" * 20)
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "full.wav", good, 22_050, subtype="PCM_16")
    data = (d / "full.wav").read_bytes()
    (d / "truncated.wav").write_bytes(data[: len(data) // 2])
    sf.write(d / "short.wav", good[:22_050], 22_050)
    with_nan = good.astype(np.float32)
    with_nan[100] = np.nan
    sf.write(d / "nan.wav", with_nan, 22_050, subtype="FLOAT")
    sf.write(d / "silent.wav", np.zeros(90_000), 22_050, subtype="PCM_16")
    return {"unreadable": (d / "junk.wav", "cannot decode"), "empty": (d / "empty.wav", "empty"),
            "truncated": (d / "truncated.wav", "truncated"), "short": (d / "short.wav", "shorter"),
            "nan": (d / "nan.wav", "NaN"), "silent": (d / "silent.wav", "silent"),
            "missing": (d / "missing.wav", "no such file")}


def _window(rep, path: Path) -> np.ndarray:
    x = load_audio(path, rep.sample_rate)
    return fit_window(x, rep.num_samples, source=str(path), sample_rate=rep.sample_rate)


def _make_dataset(root: Path, waves: list[np.ndarray], rate: int) -> Path:
    rows = []
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "frames").mkdir(exist_ok=True)
    for i, wave in enumerate(waves):
        sf.write(root / f"audio/{i:03d}.wav", wave, rate, subtype="PCM_16")
        Image.new("RGB", (8, 8), (i * 20 % 255, 0, 0)).save(root / f"frames/{i:03d}.png")
        rows.append({"clip_id": f"c{i:03d}", "video": "synthetic", "timestamp": 1.0 + i,
                     "frame": f"frames/{i:03d}.png", "audio": f"audio/{i:03d}.wav",
                     "sample_rate": rate})
    write_dataset(root, rows, {"source": "test"})
    return root


# ----------------------------------------------------------------------------- files
def test_every_format_in_argument_order(media, tmp_path):
    order = ["mp4", "wav", "m4a", "flac", "mp3", "ogg"]
    out = tmp_path / "feats.npy"
    result = runner.invoke(app, ["features", "--repr", "mfcc", "--out", str(out),
                                 *[str(media[k]) for k in order]])
    assert result.exit_code == 0, result.output
    feats = np.load(out)
    assert feats.shape == (6, 3100) and feats.dtype == np.float32
    rep = create("repr", "mfcc")
    expected = rep.compute(np.stack([_window(rep, media[k]) for k in order]))
    np.testing.assert_array_equal(feats, expected)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["indices"] == list(range(6)) and meta["bad"] == []
    assert meta["params"] == rep.params() and meta["repr"] == "mfcc"


def test_stereo_is_mixed_down_and_resampled(media):
    x = load_audio(media["wav"], 20_000)
    stereo, rate = sf.read(media["wav"])
    assert rate == 44_100 and stereo.ndim == 2 and x.ndim == 1
    assert abs(len(x) - 4.5 * 20_000) <= 1
    direct = load_audio(media["wav"])          # native rate: exactly the channel mean
    np.testing.assert_allclose(direct, stereo.mean(axis=1), atol=1e-12)


def test_float64_and_parameters(media, tmp_path):
    out = tmp_path / "f64.npy"
    result = runner.invoke(app, ["features", "--repr", "mfcc", "-p", "n_mfcc=13", "--dtype",
                                 "float64", "--out", str(out), str(media["flac"])])
    assert result.exit_code == 0, result.output
    feats = np.load(out)
    assert feats.dtype == np.float64 and feats.shape == (1, 13 * 155)


@pytest.mark.parametrize("case, name", [
    ("unreadable", "mfcc"), ("empty", "mfcc"), ("truncated", "mfcc"), ("short", "mfcc"),
    ("missing", "mfcc"), ("nan", "sound_texture"), ("silent", "sound_texture"), ("silent", "mfcc"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(bad_files, media, tmp_path, case, name):
    path, word = bad_files[case]
    out = tmp_path / "out.npy"
    result = runner.invoke(app, ["features", "--repr", name, "--out", str(out),
                                 str(media["wav"]), str(path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert path.name in lines[0] and word in lines[0]
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_skip_bad_keeps_order_and_records_indices(bad_files, media, tmp_path):
    out = tmp_path / "kept.npy"
    inputs = [media["wav"], bad_files["silent"][0], media["ogg"], bad_files["truncated"][0],
              bad_files["nan"][0], media["flac"]]
    result = runner.invoke(app, ["features", "--repr", "mfcc", "--skip-bad", "--out", str(out),
                                 *map(str, inputs)])
    assert result.exit_code == 0, result.output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["indices"] == [0, 2, 5]
    assert [b["index"] for b in meta["bad"]] == [1, 3, 4]
    assert "skipped 3 bad clip(s)" in result.output and "truncated.wav" in result.output
    rep = create("repr", "mfcc")
    expected = rep.compute(np.stack([_window(rep, inputs[i]) for i in (0, 2, 5)]))
    np.testing.assert_array_equal(np.load(out), expected)


def test_texture_features_of_a_file_match_the_plugin(media, tmp_path):
    out = tmp_path / "tex.npy"
    result = runner.invoke(app, ["features", "--repr", "sound_texture", "--dtype", "float64",
                                 "--window", "start", "--out", str(out), str(media["ogg"])])
    assert result.exit_code == 0, result.output
    rep = create("repr", "sound_texture")
    x = load_audio(media["ogg"], 20_000)[:75_000]
    np.testing.assert_array_equal(np.load(out), rep.compute(x[None], dtype=np.float64))


def test_audio_or_data_but_not_both(media, tmp_path):
    assert runner.invoke(app, ["features", "--repr", "mfcc"]).exit_code == 2
    both = runner.invoke(app, ["features", "--repr", "mfcc", "--data", str(tmp_path), str(media["wav"])])
    assert both.exit_code == 2 and "one of the two" in both.stderr


# ----------------------------------------------------------------------------- datasets
def test_dataset_matrix_in_clip_order_and_cached(tmp_path, monkeypatch):
    waves = [_signal(3.75, 22_050, s) for s in range(5)]
    root = _make_dataset(tmp_path / "clips", waves, 22_050)
    out = tmp_path / "ds.npy"
    args = ["features", "--repr", "mfcc", "--data", str(root), "--out", str(out), "--shard-size", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    feats = np.load(out)
    rep = create("repr", "mfcc")
    clip_files = [root / f"audio/{i:03d}.wav" for i in range(5)]
    expected = rep.compute(np.stack([_window(rep, p) for p in clip_files]))
    np.testing.assert_array_equal(feats, expected)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["source"]["clip_ids"] == [f"c{i:03d}" for i in range(5)]

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr(type(rep), "compute", refuse)
    again = runner.invoke(app, args[:-2] + ["--out", str(tmp_path / "again.npy")])
    assert again.exit_code == 0, again.output
    np.testing.assert_array_equal(np.load(tmp_path / "again.npy"), feats)


def test_dataset_skip_bad(tmp_path):
    waves = [_signal(3.75, 22_050, s) for s in range(3)]
    waves[1] = np.zeros_like(waves[1])
    root = _make_dataset(tmp_path / "clips", waves, 22_050)
    source = hf.open_dataset(root)
    with pytest.raises(BadInputError, match="001.wav: digitally silent"):
        compute_features(create("repr", "mfcc"), source, FeatureOptions(progress=False))
    matrix = compute_features(create("repr", "mfcc"), source, FeatureOptions(skip_bad=True, progress=False))
    assert matrix.indices.tolist() == [0, 2] and matrix.features.shape == (2, 3100)
    assert [(b.index, "silent" in b.reason) for b in matrix.bad] == [(1, True)]


class Counting(SoundRepresentation):
    """A tiny representation that counts the clips it computes and can be told to fail."""

    name = "counting"
    description = "test double"
    sample_rate = 1000
    clip_seconds = 0.5
    dim = 3

    def __init__(self, *, fail_after: int | None = None):
        self.calls = 0
        self.clips = 0
        self.fail_after = fail_after

    def params(self):
        return {"version": 1}

    def compute(self, waveforms, *, dtype=np.float32, device="cpu"):
        self.validate(waveforms)
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.clips += len(waveforms)
        return np.stack([waveforms.mean(1), waveforms.std(1), waveforms.max(1)], 1).astype(dtype)


@pytest.fixture
def small_dataset(tmp_path) -> DatasetSource:
    waves = [_signal(0.5, 1000, s) for s in range(7)]
    return hf.open_dataset(_make_dataset(tmp_path / "small", waves, 1000))


def _opts(**kw):
    return FeatureOptions(**{"progress": False, "batch_size": 2, "shard_size": 2, "workers": 0, **kw})


def test_resume_after_interruption_recomputes_only_unfinished_shards(small_dataset):
    reference = compute_features(Counting(), small_dataset, _opts(cache=False))
    interrupted = Counting(fail_after=1)    # finishes the first shard, dies in the second
    with pytest.raises(KeyboardInterrupt):
        compute_features(interrupted, small_dataset, _opts())
    resumed = Counting()
    matrix = compute_features(resumed, small_dataset, _opts())
    assert resumed.clips == 7 - 2            # the first shard (2 clips) came from the cache
    np.testing.assert_array_equal(matrix.features, reference.features)
    finished = Counting()
    compute_features(finished, small_dataset, _opts())
    assert finished.clips == 0


def test_batches_split_around_a_rejected_clip(tmp_path):
    waves = [_signal(0.5, 1000, s) for s in range(4)]
    waves[1] = waves[1] * 0 + 0.9
    source = hf.open_dataset(_make_dataset(tmp_path / "d", waves, 1000))

    class Picky(Counting):
        """Rejects constant clips from inside compute(), as texture does for flat bands."""

        def compute(self, waveforms, *, dtype=np.float32, device="cpu"):
            flat = np.flatnonzero(waveforms.std(axis=1) == 0)
            if flat.size:
                raise BadClipError("constant", index=int(flat[0]))
            return super().compute(waveforms, dtype=dtype, device=device)

    picky = Picky()
    matrix = compute_features(picky, source, _opts(skip_bad=True, batch_size=4, shard_size=4))
    assert matrix.indices.tolist() == [0, 2, 3] and [b.index for b in matrix.bad] == [1]
    alone = Counting().compute(np.stack([_window(picky, source.path(i)) for i in (0, 2, 3)]))
    np.testing.assert_array_equal(matrix.features, alone)


def test_ranks_compute_their_own_shards(small_dataset, monkeypatch):
    reference = compute_features(Counting(), small_dataset, _opts(cache=False))

    class Stop(Exception):
        pass

    def stop():
        raise Stop

    monkeypatch.setattr(hf, "_distributed", lambda: (1, 2))
    monkeypatch.setattr(hf, "_barrier", stop)
    rank1 = Counting()
    with pytest.raises(Stop):                  # rank 1 waits for the others at the barrier
        compute_features(rank1, small_dataset, _opts())
    assert rank1.clips == 2 + 1                # shards 1 and 3 of [2, 2, 2, 1]
    monkeypatch.setattr(hf, "_distributed", lambda: (0, 2))
    monkeypatch.setattr(hf, "_barrier", lambda: None)
    rank0 = Counting()
    matrix = compute_features(rank0, small_dataset, _opts())
    assert rank0.clips == 2 + 2                # shards 0 and 2; rank 1's came from the cache
    np.testing.assert_array_equal(matrix.features, reference.features)
    np.testing.assert_array_equal(matrix.indices, np.arange(7))


def test_loader_workers_give_the_same_matrix(small_dataset):
    inline = compute_features(Counting(), small_dataset, _opts(cache=False, workers=0))
    parallel = compute_features(Counting(), small_dataset, _opts(cache=False, workers=2))
    np.testing.assert_array_equal(inline.features, parallel.features)


def test_file_source_fingerprint_follows_content(media, tmp_path):
    copy = tmp_path / "copy.flac"
    copy.write_bytes(media["flac"].read_bytes())
    assert FileSource([copy]).fingerprint() == FileSource([media["flac"]]).fingerprint()
    before = FileSource([copy]).fingerprint()
    sf.write(copy, _signal(4.5, 22_050, 9), 22_050)
    assert FileSource([copy]).fingerprint() != before


@pytest.mark.slow
def test_torchrun_two_ranks_share_the_work(tmp_path):
    import os
    import subprocess
    import sys

    waves = [_signal(3.75, 22_050, s) for s in range(5)]
    root = _make_dataset(tmp_path / "clips", waves, 22_050)
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache"), "HARNESS_NO_PROGRESS": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ranks.npy"
    proc = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "harness", "features",
                           "--repr", "mfcc", "--data", str(root), "--out", str(out),
                           "--shard-size", "2"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rep = create("repr", "mfcc")
    expected = rep.compute(np.stack([_window(rep, root / f"audio/{i:03d}.wav") for i in range(5)]))
    np.testing.assert_array_equal(np.load(out), expected)

"""`harness data ingest`: real videos written with PyAV, good and bad, in several formats."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from harness.data.clips import ClipDataset
from harness.api.errors import BadInputError
from harness.data.ingest import STATE_DIR, IngestConfig, ingest, timing_summary
from tests.media import FORMATS, write_corrupt, write_video

SECONDS = 8.0  # two 3.75 s windows fit, a third does not
SMALL = IngestConfig(frame_size=32, sample_rate=8000)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    for ext in FORMATS:  # mp4/h264/aac, mkv/mpeg4/opus, webm/vp8/opus, avi/mpeg4/mp3
        write_video(d / f"ok.{ext}", SECONDS, tone_hz=500)
    write_video(d / "nested" / "mono.mov", SECONDS, channels=1, vcodec="mpeg4", acodec="aac",
                sample_rate=22050, tone_hz=500)
    write_video(d / "silent.mp4", 5.0, audio=False)
    write_video(d / "short.mp4", 2.0)
    write_video(d / "music.m4a", 5.0, video=False, acodec="aac")
    write_corrupt(d / "broken.mp4")
    (d / "notes.txt").write_text("not a video")
    (d / ".hidden.mp4").write_text("ignored")
    return d


@pytest.fixture(scope="module")
def dataset(videos, tmp_path_factory):
    return ingest(videos, tmp_path_factory.mktemp("out") / "ds", SMALL, jobs=1)


def _dominant_hz(wave, rate):
    spectrum = np.abs(np.fft.rfft(wave))
    return np.fft.rfftfreq(wave.size, 1 / rate)[spectrum.argmax()]


def test_every_format_gives_its_clips(dataset):
    by_video = {}
    for c in dataset.clips:
        by_video.setdefault(c.video, []).append(c.timestamp)
    expected = {f"ok.{ext}" for ext in FORMATS} | {"nested/mono.mov"}
    assert set(by_video) == expected
    for times in by_video.values():  # centred windows: 1.875 and 5.625 (+ stream start)
        assert len(times) == 2 and abs(times[0] - 1.875) < 0.05 and abs(times[1] - times[0] - 3.75) < 1e-6


def test_audio_windows_are_mono_resampled_and_right(dataset):
    for i, clip in enumerate(dataset.clips):
        wave = dataset.load_audio(i)
        assert clip.sample_rate == 8000 and wave.shape == (30000,)
        assert abs(_dominant_hz(wave, 8000) - 500) < 5, clip.video
        assert 0.15 < np.abs(wave).max() < 0.45  # the 0.3 tone, mixed down (not summed)


def test_frames_are_square_and_nearest_in_time(dataset):
    for i, clip in enumerate(dataset.clips):
        img = np.asarray(dataset.load_frame(i))
        assert img.shape == (32, 32, 3)
        # the fixture's red channel ramps with time: the picked frame is the one at t
        expected = clip.timestamp / SECONDS * 255
        assert abs(float(img[..., 0].mean()) - expected) < 25, (clip.video, clip.timestamp)


def test_skips_are_counted_and_listed(dataset):
    report = dataset.metadata["report"]
    assert report["videos"] == 10 and report["ingested"] == 5 and report["clips"] == 10
    assert report["skipped"] == {"undecodable": 2, "no_video": 1, "no_audio": 1, "too_short": 1}
    listed = {s["video"]: s["reason"] for s in report["skipped_videos"]}
    assert listed == {"broken.mp4": "undecodable", "notes.txt": "undecodable",
                      "music.m4a": "no_video", "silent.mp4": "no_audio", "short.mp4": "too_short"}
    assert all(s["detail"] for s in report["skipped_videos"])
    assert "/" not in json.dumps(report["skipped_videos"]).replace("nested/", "")  # no machine paths
    assert dataset.metadata["config"]["anchor"] == "center"
    # skipped videos leave no files behind
    keys = {c.frame.parent.name for c in dataset.clips}
    assert {p.name for p in (dataset.root / "clips").iterdir()} == keys


def test_window_start_layout(videos, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(videos / "ok.mkv", one / "v.mkv")
    ds = ingest(one, tmp_path / "ds", IngestConfig(frame_size=32, sample_rate=8000,
                                                   anchor="start"))
    times = [c.timestamp for c in ds.clips]
    assert len(times) == 2 and abs(times[0]) < 0.05 and abs(times[1] - times[0] - 3.75) < 1e-6
    ds2 = ingest(one, tmp_path / "ds2", IngestConfig(frame_size=32, sample_rate=8000, every=1.0,
                                                     window=2.0))
    assert len(ds2) == 7  # centres 1, 2, ..., 7 s in an 8 s video


def test_resume_skips_finished_videos_and_picks_up_new_ones(videos, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(videos / "ok.mp4", src / "a.mp4")
    out = tmp_path / "ds"
    first = ingest(src, out, SMALL)
    state = next((out / STATE_DIR).glob("a.mp4-*.json"))
    before = state.stat().st_mtime_ns
    shutil.copy(videos / "ok.avi", src / "b.avi")
    second = ingest(src, out, SMALL)
    assert state.stat().st_mtime_ns == before  # a.mp4 was not decoded again
    assert len(first) == 2 and len(second) == 4
    assert [c.clip_id for c in second.clips[:2]] == [c.clip_id for c in first.clips]


def test_killed_run_leaves_no_manifest_naming_missing_files(videos, tmp_path, monkeypatch):
    import harness.data.ingest as mod

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(videos / "ok.mp4", src / "a.mp4")
    shutil.copy(videos / "ok.webm", src / "b.webm")
    out = tmp_path / "ds"
    real = mod.ingest_video

    def dies_on_b(path, *args, **kwargs):
        if path.name == "b.webm":
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    monkeypatch.setattr(mod, "ingest_video", dies_on_b)
    with pytest.raises(KeyboardInterrupt):
        ingest(src, out, SMALL)
    assert not (out / "manifest.csv").exists()
    monkeypatch.setattr(mod, "ingest_video", real)
    ds = ingest(src, out, SMALL)
    assert len(ds) == 4 and all(c.frame.is_file() and c.audio.is_file() for c in ds.clips)


def test_a_crashing_decoder_skips_only_its_video(videos, tmp_path, monkeypatch):
    import os

    import harness.data.ingest as mod

    src = tmp_path / "src"
    src.mkdir()
    for name, ext in (("a", "mp4"), ("b", "mkv"), ("c", "webm")):
        shutil.copy(videos / f"ok.{ext}", src / f"{name}.{ext}")
    real = mod.ingest_video

    def crashes_on_b(path, *args, **kwargs):
        if path.name == "b.mkv":
            os._exit(3)  # what a segfaulting decoder does to its worker process
        return real(path, *args, **kwargs)

    monkeypatch.setattr(mod, "ingest_video", crashes_on_b)
    ds = ingest(src, tmp_path / "ds", SMALL, jobs=2)
    assert sorted({c.video for c in ds.clips}) == ["a.mp4", "c.webm"] and len(ds) == 4
    assert ds.metadata["report"]["skipped_videos"] == [
        {"video": "b.mkv", "reason": "undecodable", "detail": "the decoder crashed"}]


def test_parallel_equals_serial(dataset, videos, tmp_path):
    par = ingest(videos, tmp_path / "par", SMALL, jobs=2)
    assert (par.root / "manifest.csv").read_bytes() == (dataset.root / "manifest.csv").read_bytes()
    assert par.metadata["report"] == dataset.metadata["report"]


def test_timing_is_recorded(dataset):
    t = timing_summary(dataset.root)
    assert t["decode_s"] > 0 and t["total_s"] >= t["decode_s"]


def test_bad_input(videos, tmp_path, dataset):
    with pytest.raises(BadInputError, match="not a folder of videos"):
        ingest(tmp_path / "nope", tmp_path / "o")
    with pytest.raises(BadInputError, match="must not be inside the videos folder"):
        ingest(videos, videos / "out")
    with pytest.raises(BadInputError, match="frame_size|--size"):
        IngestConfig(frame_size=4)
    with pytest.raises(BadInputError, match="center"):
        IngestConfig(anchor="middle")
    with pytest.raises(BadInputError, match="other options.*frame_size"):
        ingest(videos, dataset.root, IngestConfig(frame_size=48, sample_rate=8000))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "thesis.txt").write_text("x")
    with pytest.raises(BadInputError, match="not an ingest dataset"):
        ingest(videos, tmp_path / "full", SMALL)


def test_cli(videos, tmp_path):
    from harness.cli import app

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(videos / "ok.mkv", src / "a.mkv")
    shutil.copy(videos / "short.mp4", src / "s.mp4")
    runner = CliRunner()
    result = runner.invoke(app, ["data", "ingest", "--videos", str(src), "--out",
                                 str(tmp_path / "ds"), "--size", "32", "--window", "start"])
    assert result.exit_code == 0, result.output
    assert "2 clips from 2 video(s)" in result.output and "too_short 1" in result.output
    ds = ClipDataset(tmp_path / "ds")
    assert ds.metadata["config"]["anchor"] == "start" and ds.load_frame(0).size == (32, 32)
    result = runner.invoke(app, ["data", "ingest", "--videos", str(src), "--out",
                                 str(tmp_path / "x"), "--window", "middle"])
    # an Enum option: typer's usage error lists the choices
    assert result.exit_code == 2 and "middle" in result.output and "center" in result.output

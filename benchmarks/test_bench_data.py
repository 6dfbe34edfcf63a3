"""Data stage: toy-world generation speed and quality, ingest throughput.

    .venv/bin/python -m pytest benchmarks/test_bench_data.py -m slow -s \\
        --benchmark-columns=min --benchmark-sort=name

* ``toy_clips``: 1,000 toy clips written with 2 worker processes (target < 30 s on 2
  cores, writing included); ``toy_voc``: the default toy VOC (1,000 + 1,000 images).
* ``toy_quality``: k-means (k = 15, the kmeans labeler's defaults) on the mfcc and
  sound_texture plugins' features of those 1,000 clips; NMI against the true scene, the
  set of visible objects and the loudest sounding object (``extra_info``). The world is
  meant to make sound clusters follow objects more than scenes.
* ``ingest``: 8 generated 30 s videos (320 x 240, 25 fps, H.264 + AAC stereo 44.1 kHz),
  one process: clips/s per core and the share of time outside FFmpeg decoding (target
  < 20 %: ingest is decode-bound).

Timings on a shared machine are noisy; ``extra_info`` also holds CPU seconds.
Figures: benchmarks/README.md (section "Data").
"""

from __future__ import annotations

import os
import resource
import shutil
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bench-toy") / "clips"


def test_toy_clips(benchmark, toy_dir):
    from harness.data.toy import generate_clips

    cpu0 = _cpu_seconds()
    start = time.perf_counter()
    ds = benchmark.pedantic(generate_clips, args=(toy_dir, 1000, 0),
                            kwargs={"jobs": 2, "progress": False}, rounds=1, iterations=1)
    wall = time.perf_counter() - start
    benchmark.extra_info.update(clips=len(ds), wall_s=round(wall, 2),
                                cpu_s=round(_cpu_seconds() - cpu0, 2))
    print(f"\ntoy clips: 1000 in {wall:.1f} s wall, {_cpu_seconds() - cpu0:.1f} CPU s")
    assert len(ds) == 1000
    assert wall < 30.0 or os.environ.get("HARNESS_BENCH_NO_TARGETS")


def test_toy_voc(benchmark, tmp_path):
    from harness.data.toy import generate_voc

    start = time.perf_counter()
    benchmark.pedantic(generate_voc, args=(tmp_path, 1), kwargs={"jobs": 2, "progress": False},
                       rounds=1, iterations=1)
    benchmark.extra_info["wall_s"] = round(time.perf_counter() - start, 2)


def _features(ds, name):
    from harness.api.registry import default_registry
    import scipy.signal

    rep = default_registry().create("repr", name)
    rows = []
    for i in range(len(ds)):
        w = ds.load_audio(i)
        rate = ds.clips[i].sample_rate
        if rate != rep.sample_rate:
            g = np.gcd(rate, rep.sample_rate)
            w = scipy.signal.resample_poly(w, rep.sample_rate // g, rate // g).astype(np.float32)
        rows.append(w[: rep.num_samples])
    feats = []
    for b in range(0, len(rows), 50):
        feats.append(rep.compute(np.stack(rows[b:b + 50])))
    return np.concatenate(feats)


@pytest.mark.parametrize("repr_name", ["mfcc", "sound_texture"])
def test_toy_quality(benchmark, toy_dir, repr_name):
    from sklearn.metrics import normalized_mutual_info_score as nmi

    from harness.data.clips import ClipDataset
    from harness.api.registry import default_registry
    from harness.data.toy import generate_clips

    if not (toy_dir / "manifest.csv").exists():
        generate_clips(toy_dir, 1000, 0, jobs=2, progress=False)
    ds = ClipDataset(toy_dir)
    start = time.perf_counter()
    feats = _features(ds, repr_name)
    labeler = default_registry().create("labeler", "kmeans", k=15, seed=0)
    labels = benchmark.pedantic(labeler.fit_predict, args=(feats,), rounds=1, iterations=1).values
    scores = {f"nmi_{col}": round(float(nmi(ds.column(col), labels)), 3)
              for col in ("scene", "objects", "loudest")}
    benchmark.extra_info.update(scores, seconds=round(time.perf_counter() - start, 1))
    print(f"\n{repr_name}: {scores}")
    assert scores["nmi_objects"] > scores["nmi_scene"]


def test_ingest(benchmark, tmp_path):
    from harness.data.ingest import IngestConfig, ingest, timing_summary
    from tests.media import write_video

    videos = tmp_path / "videos"
    for i in range(8):
        write_video(videos / f"v{i}.mp4", 30.0, fps=25, size=(320, 240), tone_hz=300 + 50 * i)
    out = tmp_path / "ds"

    def run():
        shutil.rmtree(out, ignore_errors=True)
        return ingest(videos, out, IngestConfig(), jobs=1, progress=False)

    cpu0 = _cpu_seconds()
    start = time.perf_counter()
    ds = benchmark.pedantic(run, rounds=1, iterations=1)
    wall = time.perf_counter() - start
    t = timing_summary(out)
    outside = 1 - t["decode_s"] / t["total_s"]
    info = {"clips": len(ds), "wall_s": round(wall, 2), "cpu_s": round(_cpu_seconds() - cpu0, 2),
            "clips_per_s_per_core": round(len(ds) / wall, 2),
            "decode_s": round(t["decode_s"], 2), "per_video_total_s": round(t["total_s"], 2),
            "share_outside_decoding": round(outside, 3)}
    benchmark.extra_info.update(info)
    print(f"\ningest: {info}")
    assert len(ds) == 8 * 8  # 30 s: windows centred at 1.875, 5.625, ..., 28.125 s
    assert outside < 0.2 or os.environ.get("HARNESS_BENCH_NO_TARGETS")

"""Frames per second that streaming worker processes deliver from a memory-mapped store.

    .venv/bin/python -m pytest benchmarks/test_bench_stream.py -m slow -s

A store of random 256-pixel frames (the paper profile's store size for 224-pixel crops)
is written once, then read back in shuffled batches of 256 by :mod:`harness.data.framestream`
with 1 and 2 worker processes (in pinned memory when CUDA is present), from the page
cache. The figure is frames/s per worker, set against what one H100 consumes at the
pretext targets (AlexNet 15,000 and ResNet-18 7,000 images/s at 224 px): the workers a
GPU needs. A store larger than RAM is read from disk instead, and then the disk's rate
(bytes/s / 196,608 bytes per frame) bounds the stream whatever the worker count.
Figures: benchmarks/README.md (section "GPU check"; LOG.md, 2026-12-06).
"""

from __future__ import annotations

import math
import os
import resource
import time
from pathlib import Path

import numpy as np
import pytest

#: images/s one H100 consumes at the pretext targets (224-pixel crops)
GPU_TARGETS = {"alexnet": 15_000.0, "resnet18": 7_000.0}
STORE_SIZE = 256
BATCH = 256


def synthetic_store(path: Path, n: int, size: int = STORE_SIZE, seed: int = 0) -> Path:
    """A frame store of ``n`` random frames at ``path`` (written once)."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    rng = np.random.default_rng(seed)
    for lo in range(0, n, 256):
        images[lo:lo + 256] = rng.integers(0, 256, images[lo:lo + 256].shape, dtype=np.uint8)
    images.flush()
    del images
    return path


def _children_cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def stream_rate(path: Path, workers: int, batches: int, batch: int = BATCH,
                seed: int = 0) -> dict:
    """Stream ``batches`` shuffled batches; frames/s after the first batch (which includes
    starting the workers), per worker and in bytes; and frames per CPU-second of the
    workers (all batches; the workers' CPU time is counted once they have exited), the
    figure a busy machine does not distort."""
    import torch

    from harness.data.framestream import stream_batches

    images = np.load(path, mmap_mode="r")
    n, frame_bytes = len(images), int(images[0].nbytes)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n) for _ in range(math.ceil(batches * batch / n))])
    wanted = [order[i * batch:(i + 1) * batch] for i in range(batches)]
    started, frames, cpu0 = None, 0, _children_cpu_s()
    for k, (x, _) in enumerate(stream_batches(path, wanted, workers=workers,
                                              pin=torch.cuda.is_available())):
        if k == 0:
            started = time.perf_counter()
        else:
            frames += len(x)
    seconds = time.perf_counter() - started
    worker_cpu = _children_cpu_s() - cpu0
    rate = frames / seconds
    return {"workers": workers, "frames_per_s": round(rate, 1),
            "frames_per_s_per_worker": round(rate / max(1, workers), 1),
            "gb_per_s": round(rate * frame_bytes / 1e9, 3), "frame_bytes": frame_bytes,
            "frames_per_worker_cpu_s": (round(batches * batch / worker_cpu, 1)
                                        if workers and worker_cpu > 0 else None),
            "pinned": bool(torch.cuda.is_available())}


def workers_needed(per_worker: float) -> dict[str, int]:
    """Workers whose summed rate meets each GPU target, at ``per_worker`` frames/s each."""
    return {name: math.ceil(target / per_worker) for name, target in GPU_TARGETS.items()}


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_streamed_frames_per_second(benchmark, machine, tmp_path_factory, workers):
    root = Path(os.environ.get("HARNESS_BENCH_DIR") or tmp_path_factory.mktemp("bench-stream"))
    path = synthetic_store(root / "stream-store-1024.npy", 1024)
    np.load(path, mmap_mode="r").sum(axis=(1, 2, 3))                # into the page cache
    out = {}
    benchmark.pedantic(lambda: out.update(stream_rate(path, workers, 24)), rounds=1,
                       iterations=1)
    # per worker CPU-second: what a worker with a core of its own delivers
    need = workers_needed(out["frames_per_worker_cpu_s"] or out["frames_per_s_per_worker"])
    benchmark.extra_info.update(out, workers_for_target=need)
    print(f"\n{workers} worker(s): {out['frames_per_s']:,.0f} frames/s "
          f"({out['frames_per_s_per_worker']:,.0f} per worker, {out['gb_per_s']} GB/s; "
          f"{out['frames_per_worker_cpu_s'] or 0:,.0f} per worker CPU-second); "
          f"workers for an H100 at the targets: AlexNet {need['alexnet']}, "
          f"ResNet-18 {need['resnet18']}; load average {machine['load_average_1min']}")

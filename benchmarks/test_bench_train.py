"""Pretext-training throughput, end to end: frame store -> augmentation -> network -> loss -> step.

    # CPU: alexnet / resnet18 at 64 px (the toy default) and 224 px, batch 64: the default
    # path (bf16 autocast where the CPU runs it natively, channels-last, fused AdamW) and a
    # plain loop (fp32, contiguous, for-loop AdamW) back to back; the figure is the ratio.
    # Targets at 64 px on 2 cores: alexnet >= 400 images/s, resnet18 >= 450, >= 3x plain.
    .venv/bin/python -m pytest benchmarks/test_bench_train.py -m slow -s
    # on a shared, busy machine, one thread (see benchmarks/README.md)
    HARNESS_BENCH_THREADS=1 .venv/bin/python -m pytest benchmarks/test_bench_train.py -m slow -s

    # GPU (CUDA): 224 px, batch 256, bf16 + channels-last, eager and torch.compile.
    # Targets on one H100: alexnet >= 15,000 images/s, resnet18 >= 7,000 images/s.
    .venv/bin/python -m pytest benchmarks/test_bench_train.py -m gpu -s

Each case runs ``harness.pretext.train.pretrain`` itself on a synthetic clip dataset whose
frame store is written directly (random pixels; decoding is done once in real runs and is
not part of the training loop), with no validation split. The figure is the images/s of
the last epoch as the loop measures it (the first epochs warm up oneDNN / cuDNN /
torch.compile); ``extra_info`` also holds the share of the epoch the host spent on input
(``data_wait_share``: gathering and augmenting on a CPU, waiting for the input queue on a
GPU) and the images per second of process CPU time (``images_per_cpu_s``, the better
estimate on a shared machine). Figures: benchmarks/README.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from harness.data.clips import ClipDataset, write_dataset
from harness.data.framestore import store_path
from harness.pretext.config import PretrainConfig
from harness.pretext.train import pretrain

CLUSTERS = 15
#: torch threads for the CPU cases (default: torch's choice, all cores)
THREADS = int(os.environ.get("HARNESS_BENCH_THREADS", "0")) or None
#: (backbone, image size) -> images/s targets on a quiet 2-core CPU and on one H100
CPU_TARGETS = {("alexnet", 64): 400.0, ("resnet18", 64): 450.0}
GPU_TARGETS = {("alexnet", 224): 15_000.0, ("resnet18", 224): 7_000.0}


def synthetic_clips(root: Path, n: int, size: int, seed: int = 0) -> tuple[Path, Path]:
    """A clip dataset of ``n`` clips with a ready frame store of random pixels, and labels.

    Every manifest row names the same small frame and audio file: the trainer reads frames
    only from the store, which is written here straight into the cache.
    """
    data = root / f"clips-{n}-{size}"
    labels = data / "labels.npy"
    if not labels.is_file():
        data.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (size, size)).save(data / "frame.png")
        sf.write(data / "audio.wav", np.zeros(160, np.float32), 16000)
        rows = [dict(clip_id=f"c{i}", video="synthetic", timestamp=float(i), frame="frame.png",
                     audio="audio.wav", sample_rate=16000) for i in range(n)]
        write_dataset(data, rows, {"source": "benchmark", "seed": seed})
        rng = np.random.default_rng(seed)
        np.save(labels, rng.integers(0, CLUSTERS, n))
        labels.with_suffix(".json").write_text(json.dumps({"kind": "classes",
                                                           "num_outputs": CLUSTERS}))
    path = store_path(ClipDataset(data), size)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        store = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
        rng = np.random.default_rng(seed)
        for lo in range(0, n, 1024):
            store[lo:lo + 1024] = rng.integers(0, 256, store[lo:lo + 1024].shape, dtype=np.uint8)
        store.flush()
    return data, labels


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory):
    """A folder for the synthetic data (``$HARNESS_BENCH_DIR`` keeps it between sessions)."""
    root = Path(os.environ.get("HARNESS_BENCH_DIR") or tmp_path_factory.mktemp("bench-train"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(root / "cache"))   # the synthetic stores live here
        yield root


def throughput(root: Path, backbone: str, size: int, batch: int, steps: int, epochs: int,
               **options) -> dict:
    """Train ``epochs`` epochs of ``steps`` batches; the last epoch's metrics line."""
    data, labels = synthetic_clips(root, batch * steps, size)
    out = root / "runs" / "-".join([backbone, str(size), str(batch)] +
                                   [f"{k}={v}" for k, v in sorted(options.items())])
    config = PretrainConfig(backbone=backbone, labels=labels, data=data, out=out, epochs=epochs,
                            batch_size=batch, image_size=size, val_fraction=0.0,
                            checkpoint_every=epochs, restart=True, progress=False, **options)
    pretrain(config)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return rows[-1]


def report(benchmark, backbone: str, size: int, mode: str, row: dict, target: float | None,
           prefix: str = "") -> dict:
    """Print one mode's figures and store them in ``extra_info`` (keys after ``prefix``)."""
    images = row["images_per_s"] * row["epoch_seconds"]
    info = {"images_per_s": row["images_per_s"], "data_wait_share": row["data_wait_share"],
            "epoch_seconds": row["epoch_seconds"], "cpu_seconds": row["cpu_seconds"],
            "images_per_cpu_s": round(images / max(row["cpu_seconds"], 1e-9), 1),
            "target_images_per_s": target, "torch_threads": THREADS or torch.get_num_threads()}
    benchmark.extra_info.update({prefix + k: v for k, v in info.items()})
    print(f"\n{backbone:>9} {size:>3} px {mode:<11} {row['images_per_s']:>8,.0f} images/s "
          f"{info['images_per_cpu_s']:>8,.0f} per CPU-s  data wait "
          f"{100 * row['data_wait_share']:.1f}%" + (f"  (target {target:,.0f})" if target else ""))
    return info


# ----------------------------------------------------------------------------- CPU
CPU_MODES = {
    # a plain loop: fp32, contiguous memory, for-loop AdamW (the baseline of every ratio)
    "plain-fp32": {"precision": "fp32", "channels_last": False, "fused_adamw": False},
    # the default: channels-last, fused AdamW, bf16 autocast where the CPU has native bf16
    "default": {},
}
#: the default path's images/s over the plain loop's, timed in the same test
CPU_TARGET_RATIO = 3.0


@pytest.mark.slow
@pytest.mark.parametrize("backbone, size", [("alexnet", 64), ("resnet18", 64),
                                            ("alexnet", 224), ("resnet18", 224)])
def test_cpu_training_throughput(benchmark, bench_root, machine, backbone, size):
    """The default path and the plain fp32 loop back to back; the ratio is the figure."""
    steps = 6 if size == 64 else 2
    rows = {}

    def both() -> None:
        for mode, options in CPU_MODES.items():
            rows[mode] = throughput(bench_root, backbone, size, 64, steps, 2, device="cpu",
                                    threads=THREADS, **options)

    benchmark.pedantic(both, rounds=1, iterations=1)
    info = {mode: report(benchmark, backbone, size, mode, row, CPU_TARGETS.get((backbone, size)),
                         prefix=f"{mode}.") for mode, row in rows.items()}
    ratio = info["default"]["images_per_s"] / info["plain-fp32"]["images_per_s"]
    cpu_ratio = info["default"]["images_per_cpu_s"] / info["plain-fp32"]["images_per_cpu_s"]
    benchmark.extra_info.update(ratio_to_plain=round(ratio, 2),
                                cpu_time_ratio_to_plain=round(cpu_ratio, 2),
                                target_ratio=CPU_TARGET_RATIO)
    print(f"{backbone:>9} {size:>3} px default / plain fp32: {ratio:.2f}x wall, "
          f"{cpu_ratio:.2f}x per CPU-s (target {CPU_TARGET_RATIO:.0f}x); "
          f"load average {machine['load_average_1min']}")


# ----------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile_", [False, True], ids=["eager", "compile"])
@pytest.mark.parametrize("backbone", ["alexnet", "resnet18"])
def test_gpu_training_throughput(benchmark, bench_root, machine, backbone, compile_):
    size = 224
    row = benchmark.pedantic(throughput, args=(bench_root, backbone, size, 256, 40, 3),
                             kwargs={"device": "cuda", "compile": compile_}, rounds=1,
                             iterations=1)
    report(benchmark, backbone, size, "compile" if compile_ else "eager", row,
           GPU_TARGETS[(backbone, size)])

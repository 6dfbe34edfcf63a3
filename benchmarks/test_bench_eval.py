"""Wall time of the VOC07 evaluators ("Head" = voc07_linear, "All" = voc07_full).

    # GPU, paper profile, AlexNet, krahenbuhl preset, full length (80,000 iterations of 16
    # = 1.28 M training crops, then 10-crop testing). Targets: Head < 3 min, All < 5 min.
    HARNESS_VOC07=/data/VOCdevkit .venv/bin/python -m pytest benchmarks/test_bench_eval.py -m gpu

    # CPU, toy profile, both evaluators on the default toy VOC. Target: < 2 min together.
    .venv/bin/python -m pytest benchmarks/test_bench_eval.py -m slow

Without ``HARNESS_VOC07`` the GPU benchmark builds a stand-in with VOC2007's shape (5,011
trainval and 4,952 test JPEGs of 500 x 375 / 375 x 500 pixels) under the cache: the timing
depends on image count and size, not on content. A never-trained ``random:alexnet`` is
timed (the cost does not depend on the weights). ``extra_info`` holds every stage's time,
the iteration rate and the mAP, and the session header the CPU (benchmarks/conftest.py).
Times are reported against their targets, never asserted. Figures: benchmarks/README.md.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.runtime.cache import cache_root
from harness.evaluation.stage import run_evaluator
from harness.data.voc import CLASSES

TARGET_S = {("voc07_linear", "gpu"): 180.0, ("voc07_full", "gpu"): 300.0, ("both", "cpu"): 120.0}
VOC07_SHAPE = {"trainval": 5011, "test": 4952}


def _voc_shaped_standin(root: Path) -> Path:
    """A VOC2007-shaped folder (counts and image sizes of the real one), built once."""
    from PIL import Image

    voc = root / "VOC2007"
    if (voc / "ImageSets" / "Main" / "test.txt").is_file():
        return voc
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    ids = {split: [f"{split[:2]}{i:06d}" for i in range(n)] for split, n in VOC07_SHAPE.items()}

    def write(args):
        k, image_id = args
        rng = np.random.default_rng(k)
        w, h = (500, 375) if rng.random() < 0.7 else (375, 500)
        small = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        img = np.array(Image.fromarray(small).resize((w, h), Image.BILINEAR))
        classes = {k % 20, int(rng.integers(20))}
        objs = ""
        for c in classes:
            x0, y0 = int(rng.integers(0, w - 100)), int(rng.integers(0, h - 100))
            img[y0:y0 + 100, x0:x0 + 100] = (37 * c) % 256
            objs += (f"<object><name>{CLASSES[c]}</name><difficult>0</difficult><bndbox>"
                     f"<xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x0 + 100}</xmax>"
                     f"<ymax>{y0 + 100}</ymax></bndbox></object>")
        Image.fromarray(img).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=90)
        (voc / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename>{objs}</annotation>")

    jobs = list(enumerate(ids["trainval"] + ids["test"]))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(write, jobs))
    half = len(ids["trainval"]) // 2
    lists = {"train": ids["trainval"][:half], "val": ids["trainval"][half:], **ids}
    for split, lst in lists.items():
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(lst) + "\n")
    return voc


def _flat(metrics) -> dict:
    """EvalMetrics as the flat dict these benchmarks read: details, map and protocol."""
    return {**metrics.details, "map": metrics.value, "protocol": metrics.protocol}


def _record(benchmark, metrics: dict) -> None:
    benchmark.extra_info.update({f"{k}": v for k, v in metrics["timings"].items()})
    p = metrics["protocol"]
    benchmark.extra_info["iterations"] = p["iterations"]
    benchmark.extra_info["iterations_per_s"] = round(p["iterations"] / metrics["timings"]["train_s"], 1)
    benchmark.extra_info["map"] = round(metrics["map"], 2)
    benchmark.extra_info["device"] = metrics["device"]


# ----------------------------------------------------------------------------- GPU, paper
@pytest.mark.gpu
@pytest.mark.parametrize("evaluator", ["voc07_linear", "voc07_full"])
def test_paper_alexnet_krahenbuhl_on_gpu(benchmark, machine, evaluator):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from harness.networks.checkpoint import load_pretrained
    from harness.api.registry import create

    voc = Path(os.environ["HARNESS_VOC07"]) if os.environ.get("HARNESS_VOC07") \
        else _voc_shaped_standin(cache_root() / "bench-voc07-shaped")
    ev = create("evaluator", evaluator, preset="krahenbuhl")
    model = load_pretrained("random:alexnet", seed=0)
    out = {}

    def run():
        out["m"] = _flat(run_evaluator(ev, model, voc, profile="paper", seed=0, device="cuda",
                                       work_dir=cache_root() / "bench-eval-work" / evaluator,
                                       progress=False))

    benchmark.pedantic(run, rounds=1, iterations=1)
    m = out["m"]
    _record(benchmark, m)
    benchmark.extra_info["gpu"] = torch.cuda.get_device_name()
    target = TARGET_S[(evaluator, "gpu")]
    benchmark.extra_info["target_s"] = target
    print(f"\n{evaluator}: {m['timings']['total_s']:.0f} s on {torch.cuda.get_device_name()} "
          f"(target {target:.0f} s)")


# ----------------------------------------------------------------------------- CPU, toy
@pytest.mark.slow
def test_toy_both_evaluators_on_cpu(benchmark, machine):
    from harness.networks.checkpoint import load_pretrained
    from harness.cli.evaluate import default_toy_voc
    from harness.profiles import PROFILES
    from harness.api.registry import create

    voc = default_toy_voc(PROFILES["toy"], progress=False)
    model = load_pretrained("random:alexnet", seed=0,
                            backbone_params=PROFILES["toy"].backbone_params["alexnet"])
    out = {}

    def run():
        start = time.perf_counter()
        for name in ("voc07_linear", "voc07_full"):
            ev = create("evaluator", name, preset="krahenbuhl")
            out[name] = _flat(run_evaluator(ev, model, voc, profile="toy", seed=0, device="cpu",
                                            work_dir=cache_root() / "bench-eval-work" / name,
                                            progress=False))
        out["total"] = time.perf_counter() - start

    benchmark.pedantic(run, rounds=1, iterations=1)
    for name in ("voc07_linear", "voc07_full"):
        for k, v in out[name]["timings"].items():
            benchmark.extra_info[f"{name}.{k}"] = v
        benchmark.extra_info[f"{name}.map"] = round(out[name]["map"], 2)
    target = TARGET_S[("both", "cpu")]
    benchmark.extra_info.update(total_s=round(out["total"], 1), target_s=target)
    print(f"\ntoy Head + All: {out['total']:.0f} s (Head {out['voc07_linear']['timings']['total_s']:.0f}"
          f" s, All {out['voc07_full']['timings']['total_s']:.0f} s; target {target:.0f} s); "
          f"load average {machine['load_average_1min']}")

"""Runs per hour of a small sweep: inline on 2 threads against ``--launcher local --jobs 2``.

    .venv/bin/python -m pytest benchmarks/test_bench_launchers.py -m slow -s

The same four runs (MFCC + k-means, k = 4 and 8, seeds 0 and 1, AlexNet at reduced size)
run twice from the same generated toy data, each time from a cache holding nothing else:
once one after another in this process with 2 torch threads (``inline``), once as two
worker processes of 1 thread each (``local``). The figure is the ratio of their runs per
hour (the issue's target: at least 1.3x on two cores). Then one of the runs is made again
inline on 1 thread, and its metrics must be bit-identical to the same run's as a local job.
Run it on a quiet machine: it measures wall time.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

#: reduced-size runs: long enough that compute, not process start-up, dominates
SIZE = dict(backbone="alexnet", toy_clips=96, toy_voc_images=(200, 160), epochs=3,
            eval_params={"iterations": 300}, progress=False,
            evaluators=("voc07_linear", "voc07_full"))


def _figures(value):
    """Metrics without wall-clock timings and cache paths (which differ by design)."""
    if isinstance(value, dict):
        return {k: _figures(v) for k, v in value.items() if k != "timings"}
    if isinstance(value, list):
        return [_figures(v) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        return "<path>"
    return value


def _by_run(results: Path) -> dict[tuple, dict]:
    out = {}
    for path in results.glob("*.json"):
        record = json.loads(path.read_text())
        out[(record["config"]["k"], record["config"]["seed"])] = _figures(record["metrics"])
    return out


@pytest.mark.slow
def test_local_jobs_against_inline_runs_per_hour(tmp_path, monkeypatch):
    from threadpoolctl import threadpool_limits

    from harness.runtime.devices import torch_threads
    from harness.launch import LaunchOptions, launch
    from harness.pipeline.config import RunConfig
    from harness.pipeline.data_stage import profile_toy_voc, toy_clips
    from harness.pipeline.sweep import sweep

    def fresh_cache(name: str) -> Path:
        cache = tmp_path / name
        shutil.copytree(tmp_path / "data" / "toy", cache / "toy")
        monkeypatch.setenv("HARNESS_CACHE", str(cache))
        return cache

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "data"))
    base = RunConfig(**SIZE, results=tmp_path / "unused")
    profile = base.resolved_profile()
    toy_clips(profile, 0, progress=False)
    profile_toy_voc(profile, 0, progress=False)

    def run_sweep(results: Path, execute=None) -> float:
        start = time.perf_counter()
        sweep(RunConfig(**SIZE, results=results), ["mfcc"], [4, 8], ["alexnet"], [0, 1],
              echo=lambda line: None, execute=execute)
        return time.perf_counter() - start

    fresh_cache("inline")
    monkeypatch.setenv("HARNESS_CPUS", "2")
    with torch_threads(2), threadpool_limits(2):
        inline_s = run_sweep(tmp_path / "inline-results")
    monkeypatch.delenv("HARNESS_CPUS")

    fresh_cache("local")
    options = LaunchOptions("local", jobs=2, threads_per_job=1, job_dir=tmp_path / "jobs",
                            live=False)
    local_s = run_sweep(tmp_path / "local-results",
                        execute=lambda configs, lines: launch(configs, lines, options,
                                                              echo=lambda line: None))

    fresh_cache("one-thread")
    monkeypatch.setenv("HARNESS_CPUS", "1")
    with torch_threads(1), threadpool_limits(1):
        sweep(RunConfig(**SIZE, results=tmp_path / "one-results"), ["mfcc"], [4], ["alexnet"],
              [0], echo=lambda line: None)
    local = _by_run(tmp_path / "local-results")
    assert len(local) == 4 and len(_by_run(tmp_path / "inline-results")) == 4
    assert _by_run(tmp_path / "one-results")[(4, 0)] == local[(4, 0)]

    ratio = inline_s / local_s
    print(f"\n4 runs: inline 2 threads {inline_s:.1f} s ({4 * 3600 / inline_s:.1f} runs/h), "
          f"local 2 jobs x 1 thread {local_s:.1f} s ({4 * 3600 / local_s:.1f} runs/h): "
          f"{ratio:.2f}x; metrics of an inline one-thread run and the same local job "
          f"bit-identical; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at the end")

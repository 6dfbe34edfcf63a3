"""benchmarks/gpu-check in its CPU mode: every stage runs at tiny sizes, so it cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu-check"


def _check(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_CACHE": str(cwd / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_the_cpu_mode_runs_every_stage_and_writes_both_summaries(tmp_path):
    out = tmp_path / "out"
    proc = _check("--cpu", "--quick", "--out", str(out), cwd=tmp_path)
    report = json.loads((out / "gpu-check.json").read_text())
    failed = {k: v.get("error") for k, v in report["stages"].items() if v["status"] != "ok"}
    assert proc.returncode == 0 and not failed, (failed, proc.stderr[-3000:])
    stages = report["stages"]
    assert set(stages) == {"gpu_tests", "pretext", "texture", "voc07", "stream", "micro_run"}
    assert "collected" in stages["gpu_tests"]["figures"]["summary"]
    modes = stages["pretext"]["figures"]["modes"]
    assert set(modes) == {"alexnet/eager", "resnet18/eager"}
    assert all(m["images_per_s"] > 0 for m in modes.values())
    assert stages["texture"]["figures"]["parity_ok"]
    for name in ("voc07_linear", "voc07_full"):
        voc = stages["voc07"]["figures"][name]
        assert voc["steps_per_s"] > 0 and voc["paper_iterations"] == 80_000
    assert stages["stream"]["figures"]["one_worker"]["frames_per_s"] > 0
    assert stages["micro_run"]["figures"]["metrics"]
    # on a CPU the GPU targets are listed but not judged
    assert [row["met"] for row in report["targets"][:4]] == [None] * 4
    page = (out / "gpu-check.md").read_text()
    assert page.startswith("# GPU check: CPU") and "micro_run | ok" in page


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_the_gpu_mode_is_refused_in_one_line(tmp_path):
    proc = _check("--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "--cpu" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "gpu-check.json").exists()

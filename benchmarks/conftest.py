"""What every benchmark reports about the machine it ran on.

The header of a benchmark session names the CPU model, the instruction-set flags that
decide which kernels run (AVX2, AVX-512, AVX512-BF16, AMX), whether oneDNN runs bf16
natively, torch's thread count and the GPU, and the ``machine`` fixture puts the same
facts into each benchmark's ``extra_info`` (so they are in ``--benchmark-json`` output).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from harness.runtime.devices import KERNEL_FLAGS, cpu_has_native_bf16, cpu_model_and_flags

def machine_facts() -> dict[str, Any]:
    """CPU model, kernel flags, core count, torch threads, native bf16 and the GPU."""
    import torch

    model, flags = cpu_model_and_flags()
    facts: dict[str, Any] = {
        "cpu_model": model, "cpu_flags": flags,
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "onednn_native_bf16": cpu_has_native_bf16(), "torch": str(torch.__version__),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    return facts


def pytest_report_header(config) -> str:
    f = machine_facts()
    return (f"machine: {f['cpu_model']}, {f['cpu_count']} CPUs, flags "
            f"{' '.join(f['cpu_flags']) or 'none of ' + ' '.join(KERNEL_FLAGS)}, oneDNN native "
            f"bf16 {f['onednn_native_bf16']}, torch {f['torch']} with {f['torch_threads']} "
            f"threads, GPU {f['gpu'] or 'none'}, load average {f['load_average_1min']}")


@pytest.fixture
def machine(benchmark) -> dict[str, Any]:
    """The machine's facts, also stored in the benchmark's ``extra_info``."""
    facts = machine_facts()
    benchmark.extra_info.update(facts)
    return facts

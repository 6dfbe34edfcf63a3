"""Devices and precision for every stage, resolved in one place.

``--device`` is ``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda`` or
``cuda:N``; ``--precision`` is ``auto`` (bf16 autocast on CUDA and on CPUs with native
bf16, else fp32), ``bf16`` or ``fp32``. Every command (``features``, ``pretrain``,
``eval``, ``figures``, ``run``) resolves its options through :func:`resolve_device` and
:func:`resolve_precision`, so a device string means the same thing everywhere and a
missing GPU is the same one-line error.
"""

from __future__ import annotations

import contextlib
import os
import platform
from enum import Enum

from harness.api.errors import BadInputError


class Precision(str, Enum):
    """What ``--precision`` accepts."""

    auto = "auto"
    bf16 = "bf16"
    fp32 = "fp32"


def resolve_device(device: str | None = "auto") -> str:
    """``auto`` -> ``cuda`` (``cuda:LOCAL_RANK`` under torchrun) or ``cpu``; others checked.

    Raises BadInputError for an unknown device or a CUDA device on a machine without one.
    """
    import torch

    device = (device or "auto").strip()
    if device == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        local = os.environ.get("LOCAL_RANK")
        return f"cuda:{local}" if local is not None else "cuda"
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise BadInputError(f"--device {device!r}: unknown device (use auto, cpu, cuda or "
                            "cuda:N)") from None
    if kind not in ("cpu", "cuda"):
        raise BadInputError(f"--device {device!r}: unsupported device (use auto, cpu, cuda "
                            "or cuda:N)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"--device {device!r}: CUDA is not available on this machine")
    return device


#: the /proc/cpuinfo flags that choose the matrix kernels torch and oneDNN use
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """The CPU's model name and which of :data:`KERNEL_FLAGS` it has.

    Read from /proc/cpuinfo (Linux); elsewhere the platform's processor string and no
    flags. Figures and records carry both, since the same seed gives the same metrics
    only on the same CPU kind.
    """
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model, [flag for flag in KERNEL_FLAGS if flag in flags]


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 natively (AVX512-BF16 or AMX); elsewhere it is emulated."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str | Precision, device: str) -> bool:
    """Whether to train under bf16 autocast on ``device`` (a resolved device string)."""
    import torch

    value = precision.value if isinstance(precision, Precision) else str(precision)
    if value not in Precision.__members__:
        raise BadInputError(f"--precision {value!r}: choose from auto, bf16, fp32")
    if value != "auto":
        return value == "bf16"
    if torch.device(device).type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


#: environment variable that overrides :func:`usable_cpus` (a positive integer)
CPUS_ENV = "HARNESS_CPUS"


def usable_cpus() -> int:
    """How many CPUs this process may use: ``$HARNESS_CPUS`` if set, else the CPUs of its
    affinity mask (what a container or ``taskset`` grants, which ``os.cpu_count`` ignores).

    Every CPU-side worker count (SVM threads, k-means threads, audio-loading and
    frame-streaming processes, image-decoding threads) is sized from this one figure, so a
    64-core GPU box is used as one and a 2-core container is not oversubscribed.
    Raises BadInputError for a ``$HARNESS_CPUS`` that is not a positive integer.
    """
    value = os.environ.get(CPUS_ENV, "").strip()
    if value:
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise BadInputError(f"${CPUS_ENV}={value!r}: expected a positive integer "
                                "(the number of CPUs the harness may use)")
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):    # no affinity masks (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def free_device_bytes(device: str | object) -> int | None:
    """Free memory on a CUDA device in bytes (what ``cudaMemGetInfo`` says); None on a CPU."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(dev)
    return int(free)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch's intra-op thread count set to ``n`` inside the block (None: left alone)."""
    import torch

    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

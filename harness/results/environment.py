"""Where a run ran: the harness's version and git commit, the versions of the packages it
used, the machine (no host name) and the device; a record's ``code`` and
``environment`` sections.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


#: packages whose versions a record keeps (missing ones are recorded as null)
TRACKED_PACKAGES = (
    "harness", "torch", "torchvision", "timm", "numpy", "scipy", "scikit-learn", "librosa",
    "soundfile", "av", "pillow", "faiss-cpu", "pluggy", "matplotlib", "jsonschema",
)


def _source_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    root = _source_root()
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def code_info() -> dict[str, Any]:
    """The harness version, and the git commit and dirty flag when run from a checkout."""
    from harness import __version__

    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"version": __version__,
            "git_commit": commit.strip() if commit and commit.strip() else None,
            "git_dirty": None if status is None else bool(status.strip())}


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each named distribution (None if it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info() -> dict[str, Any]:
    """Operating system, architecture, CPU model and kernel flags, and memory (no host name)."""
    from harness.runtime.devices import cpu_model_and_flags

    cpu_model, cpu_flags = cpu_model_and_flags()
    info: dict[str, Any] = {
        "system": platform.system(), "release": platform.release(),
        "platform": platform.platform(), "machine": platform.machine(),
        "processor": platform.processor() or None, "cpu_model": cpu_model,
        "cpu_flags": cpu_flags, "cpu_count": os.cpu_count(),
    }
    with contextlib.suppress(AttributeError, ValueError, OSError):
        info["memory_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return info


def device_info(device: str = "cpu") -> dict[str, Any]:
    """What ``device`` is: the GPU's name, capability and CUDA/cuDNN versions, or the CPU."""
    import torch

    from harness.runtime.devices import cpu_model_and_flags

    info: dict[str, Any] = {"device": device, "torch_threads": torch.get_num_threads()}
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        info.update({"type": "cuda", "name": props.name,
                     "capability": f"{props.major}.{props.minor}",
                     "memory_bytes": props.total_memory, "count": torch.cuda.device_count(),
                     "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()})
    else:
        info.update({"type": torch.device(device).type,
                     "name": cpu_model_and_flags()[0]})
    return info


def environment_info(device: str = "cpu") -> dict[str, Any]:
    """The ``environment`` section: Python, package versions, machine and device."""
    return {"python": sys.version.split()[0], "implementation": platform.python_implementation(),
            "packages": package_versions(), "machine": machine_info(),
            "device": device_info(device)}

"""Content-addressed cache keys and the default cache folder.

Every stage's output lives under a key derived from its inputs' content and its own
parameters, so a run with one thing changed recomputes only what depends on it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

#: environment variable that moves the cache (default: ``./.harness-cache``)
CACHE_ENV = "HARNESS_CACHE"


def cache_root() -> Path:
    """The cache folder: ``$HARNESS_CACHE`` or ``.harness-cache`` in the working directory.

    A file in its place is refused now (BadInputError naming the variable), not when the
    first stage tries to write there.
    """
    from harness.errors import BadInputError

    root = Path(os.environ.get(CACHE_ENV, ".harness-cache"))
    for p in (root, *root.parents):
        if p.exists():
            if not p.is_dir():
                raise BadInputError(f"${CACHE_ENV}={root}: {p} is a file, not a cache folder")
            break
    return root


def _canonical(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def hash_params(obj: Any) -> str:
    """A stable hex digest of JSON-like parameters (key order does not matter)."""
    blob = json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def hash_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_array(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def stage_key(stage: str, *parts: Any) -> str:
    """Short key for one stage's output: the stage name and a digest of its inputs."""
    return f"{stage}-{hash_params([stage, *parts])[:16]}"

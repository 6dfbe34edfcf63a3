"""Content-addressed cache keys and the default cache folder.

Every stage's output lives under a key derived from its inputs' content and its own
parameters, so a run with one thing changed recomputes only what depends on it.

Data files (a clip dataset's frames and audio windows, VOC images) enter the keys by a
cheap stamp, their size and modification time, so that a key costs no read of the data:
a file replaced by another of the same size with its old modification time restored is
not noticed. ``HARNESS_VERIFY_CACHE=1`` (or ``harness --verify-cache COMMAND``) keys them
by the sha256 of their bytes instead (:func:`file_stamp`): every data file is read once
per command, and results cached under size + mtime keys are not reused by such a run.
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
#: the cache folder when ``$HARNESS_CACHE`` is unset or empty
DEFAULT_CACHE = ".harness-cache"
#: environment variable that, set to anything but ``""`` or ``0``, keys data files by content
VERIFY_ENV = "HARNESS_VERIFY_CACHE"


def cache_root() -> Path:
    """The cache folder: ``$HARNESS_CACHE`` or ``.harness-cache`` in the working directory.

    ``HARNESS_CACHE=`` (set but empty, or only blanks) counts as unset, giving the default
    ``.harness-cache``: an empty path would otherwise mean the working folder itself, and
    the stages' cache folders would be written straight into it. A file in the cache
    folder's place is refused now (BadInputError naming the variable), not when the first
    stage tries to write there.
    """
    from harness.api.errors import BadInputError

    root = Path(os.environ.get(CACHE_ENV, "").strip() or DEFAULT_CACHE)
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


def canonical_json(obj: Any, *, ascii_only: bool = True) -> str:
    """``obj`` as canonical JSON: keys (as strings) sorted, no whitespace, paths as strings,
    numpy scalars as Python numbers, NaN and infinities refused (ValueError).

    ``ascii_only=False`` keeps non-ASCII characters as themselves rather than ``\\u``
    escapes (what a result record's digest is computed over).
    """
    return json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"), allow_nan=False,
                      ensure_ascii=ascii_only)


def hash_params(obj: Any, *, ascii_only: bool = True) -> str:
    """The sha256 (hex) of ``obj``'s :func:`canonical_json`: a stable digest of JSON-like
    parameters (key order does not matter). The one digest of JSON content everywhere:
    cache keys, protocol fingerprints, leaderboard row keys, plot data, record digests."""
    blob = canonical_json(obj, ascii_only=ascii_only)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def hash_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_cache() -> bool:
    """Whether data files enter cache keys by their content (``$HARNESS_VERIFY_CACHE``)."""
    return os.environ.get(VERIFY_ENV, "").strip() not in ("", "0")


def file_stamp(path: str | os.PathLike) -> list[Any]:
    """What a data file contributes to a cache key: ``[size, mtime_ns]``, or with
    :func:`verify_cache` ``["sha256", digest of the bytes]``; ``["missing"]`` for a file
    that cannot be read (the stage that reads it then says why)."""
    try:
        if verify_cache():
            return ["sha256", hash_file(path)]
        st = os.stat(path)
    except OSError:
        return ["missing"]
    return [st.st_size, st.st_mtime_ns]


def hash_array(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def stage_key(stage: str, *parts: Any) -> str:
    """Short key for one stage's output: the stage name and a digest of its inputs."""
    return f"{stage}-{hash_params([stage, *parts])[:16]}"

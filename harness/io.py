"""Atomic writes: a reader never sees a half-written file (write to a temp file, then rename).

Temporary files are named ``.<name>.<pid>-<random>.tmp`` beside their target and created
with mode 0666 minus the umask (like any other file, not 0600). A writer killed before its
rename leaves one behind; the next write of the same target removes every such file whose
process is gone, so a rerun cleans what a kill left (:func:`remove_stale_temps`).

A matrix and its JSON sidecar are written as a pair (:func:`write_array_pair`): the
sidecar records the sha256 of the values it describes, and :func:`check_pair` refuses a
pair whose halves come from different writes (a crash between the two renames).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from harness.errors import BadInputError

#: age after which a temporary without a writer pid in its name counts as left over
UNNAMED_TEMP_AGE_S = 600

#: the sidecar field that binds a sidecar to the bytes of its values file
VALUES_SHA256 = "values_sha256"


def check_output_path(path: str | os.PathLike) -> Path:
    """``path`` as a file to write: refuse a directory, or a parent that is a file (exit 2)."""
    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{path}: is a directory; give a file name to write")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise BadInputError(f"{path}: cannot write there, {parent} is not a directory")
            break
    return path


def ensure_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create the folder ``path`` (and its parents); a file in the way is BadInputError."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise BadInputError(f"{path}: cannot use as {what}, it (or a parent) is a file") from None
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's live process
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> int:
    """Remove temporary files of ``path`` left by writers that no longer run; return how many."""
    path = Path(path)
    removed = 0
    if not path.parent.is_dir():
        return 0
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        owner = tmp.name[len(path.name) + 2:].split("-", 1)[0]
        stale = False
        if owner.isdigit():
            stale = int(owner) != os.getpid() and not _pid_alive(int(owner))
        else:   # no writer pid (an older harness): stale once untouched for a while
            with contextlib.suppress(FileNotFoundError):
                stale = time.time() - tmp.stat().st_mtime > UNNAMED_TEMP_AGE_S
        if stale:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed += 1
    return removed


def remove_stale_temps_in(folder: str | os.PathLike) -> int:
    """:func:`remove_stale_temps` for every target in ``folder`` (not recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    # ".last.pt.123-ab12cd34.tmp" is a temporary of "last.pt"
    targets = {tmp.name[1:].split(".tmp", 1)[0].rsplit(".", 1)[0] for tmp in folder.glob(".*.tmp*")}
    return sum(remove_stale_temps(folder / name) for name in targets)


def _create_temp(path: Path, suffix: str) -> Path:
    """A new empty file beside ``path``, owned by this process (mode 0666 & ~umask)."""
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    ``suffix`` is appended to the temporary name for writers (like numpy) that insist on
    an extension. Stale temporaries of ``path`` (from killed writers) are removed first.
    """
    path = check_output_path(path)
    ensure_dir(path.parent)
    remove_stale_temps(path)
    tmp_path = _create_temp(path, suffix)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def temp_beside(path: str | os.PathLike) -> Path:
    """A new temporary file beside ``path`` that the caller renames or removes itself."""
    path = Path(path)
    remove_stale_temps(path)
    return _create_temp(path, "")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any) -> str:
    """``obj`` as indented, key-sorted JSON (stable bytes for stable content)."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (stable bytes for stable content)."""
    write_text(path, json_text(obj))


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def write_array_pair(path: str | os.PathLike, array: np.ndarray, sidecar: str | os.PathLike,
                     meta: dict[str, Any]) -> None:
    """Write ``array`` to ``path`` (.npy) and ``meta`` to ``sidecar`` (.json) as one unit.

    Both are written to temporary files first; the sidecar gets the sha256 of the values'
    bytes (:data:`VALUES_SHA256`). The values are renamed into place, then the sidecar; if
    the second rename fails the previous values are put back. A crash between the two
    renames leaves new values beside an old sidecar, which :func:`check_pair` refuses.
    """
    from harness.cache import hash_file

    path, sidecar = check_output_path(path), check_output_path(sidecar)
    ensure_dir(path.parent)
    ensure_dir(sidecar.parent)
    remove_stale_temps(path)
    remove_stale_temps(sidecar)
    tmp_values, tmp_meta = _create_temp(path, ".npy"), _create_temp(sidecar, "")
    backup = temp_beside(path) if path.is_file() else None
    try:
        np.save(tmp_values, array)
        tmp_meta.write_text(json_text({**meta, VALUES_SHA256: hash_file(tmp_values)}),
                            encoding="utf-8")
        if backup is not None:
            os.replace(path, backup)
        os.replace(tmp_values, path)
        try:
            os.replace(tmp_meta, sidecar)
        except BaseException:
            if backup is not None:
                os.replace(backup, path)
            raise
    finally:
        for leftover in (tmp_values, tmp_meta, backup):
            if leftover is not None and leftover.exists():
                leftover.unlink()


def check_pair(path: str | os.PathLike, sidecar: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Refuse values whose sidecar was written for other bytes (an interrupted pair write)."""
    from harness.cache import hash_file

    expected = meta.get(VALUES_SHA256)
    if expected is not None and hash_file(path) != expected:
        raise BadInputError(f"{sidecar}: describes other values than {path} (a write of the "
                            f"pair was interrupted); rewrite both")


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` atomically (checkpoints are loaded with ``weights_only=True``)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)

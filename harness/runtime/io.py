"""Atomic writes: a reader never sees a half-written file (write to a temp file, then rename).

Temporary files are named ``.<name>.<pid>-<random>.tmp`` beside their target and created
with mode 0666 minus the umask (like any other file, not 0600). A writer killed before its
rename leaves one behind; the next write of the same target removes every such file whose
process is gone, so a rerun cleans what a kill left (:func:`remove_stale_temps`).

A matrix and its JSON sidecar are written as a pair (:func:`write_array_pair`): the
sidecar records the sha256 of the values it describes, and :func:`check_pair` refuses a
pair whose halves come from different writes (a crash between the two renames).

A write that fails for want of space -- a full disk or quota (ENOSPC, EDQUOT), the file
size limit (EFBIG), or a short write that numpy or torch report in their own words
("3100 requested and 992 written", "unexpected pos") -- raises :class:`NoSpaceError`, one
line naming the path and about how many bytes it needs; the temporary is removed first
and the previous file, if any, stays whole.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import secrets
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from harness.api.errors import BadInputError

#: age after which a temporary without a writer pid in its name counts as left over
UNNAMED_TEMP_AGE_S = 600

#: the sidecar field that binds a sidecar to the bytes of its values file
VALUES_SHA256 = "values_sha256"


class NoSpaceError(BadInputError):
    """A write stopped for want of space: the disk or quota is full, or the file is larger
    than the file size limit allows (exit code 2; nothing was half-written)."""


#: how numpy and torch's zip writer report a short write (they give no errno)
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written|unexpected pos \d+ vs \d+")


def _space_problem(path: Path, needed: int | None, written: int,
                   exc: BaseException) -> str | None:
    """What to tell the user about ``exc`` raised while writing ``path``: the path, the
    bytes the write needs and what is free (or the size limit); None if ``exc`` is not
    about space. ``needed`` is an estimate; without one the bytes already written give a
    lower bound. Called after the temporary is removed, so "free" is what is free now."""
    code = exc.errno if isinstance(exc, OSError) else None
    short = code is None and bool(_SHORT_WRITE.search(str(exc)))
    if code not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) and not short:
        return None
    size = (f"about {needed:,} bytes" if needed is not None
            else f"more than {written:,} bytes")
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    import resource

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    limited = limit != resource.RLIM_INFINITY and max(needed or 0, written) >= limit
    if code == errno.EFBIG or (short and limited):
        cap = (f"the file size limit is {limit:,} bytes (ulimit -f)" if limited
               else "larger than the file system allows")
        return f"file too large writing {path} (needs {size}; {cap})"
    if code is None and free is not None and needed is not None and needed < free:
        # a short write with room to spare: not for want of space
        first = str(exc).splitlines()[0]
        return f"writing {path} failed: only part of the data was written ({first})"
    free_text = f"{free:,} free" if free is not None else "free space unknown"
    what = "disk quota exceeded" if code == errno.EDQUOT else "no space left on device"
    return f"{what} writing {path} (needs {size}, {free_text})"


class _Write:
    """The file a block is writing, about how many bytes it needs, and how many it had
    written when it failed (the lower bound a message gives when ``needed`` is unknown)."""

    def __init__(self, path: Path, needed: int | None):
        self.path, self.needed, self.written = path, needed, 0


@contextmanager
def _reporting_no_space(path: Path, needed: int | None) -> Iterator[_Write]:
    """Turn a failure for want of space inside the block into :class:`NoSpaceError`
    naming the file being written (the block may move on to another file)."""
    write = _Write(path, needed)
    try:
        yield write
    except (OSError, RuntimeError) as exc:
        problem = _space_problem(write.path, write.needed, write.written, exc)
        if problem is None:
            raise
        raise NoSpaceError(problem) from None


def nbytes_of(obj: Any) -> int:
    """About how many bytes ``obj`` takes on disk: its arrays' and tensors' data (each
    tensor storage once) plus a little for the structure around them."""
    seen: set[int] = set()

    def walk(o: Any) -> int:
        if isinstance(o, np.ndarray):
            return o.nbytes + 128
        if hasattr(o, "untyped_storage") and hasattr(o, "element_size"):   # a torch tensor
            storage = o.untyped_storage()
            key = storage.data_ptr()
            if key in seen and key:
                return 64
            seen.add(key)
            return storage.nbytes() + 128
        if isinstance(o, dict):
            return sum(walk(k) + walk(v) for k, v in o.items()) + 16
        if isinstance(o, (list, tuple)):
            return sum(walk(v) for v in o) + 16
        if isinstance(o, (str, bytes)):
            return len(o) + 8
        return 16

    return walk(obj) + 1024


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
def atomic_path(path: str | os.PathLike, suffix: str = "",
                needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    ``suffix`` is appended to the temporary name for writers (like numpy) that insist on
    an extension. Stale temporaries of ``path`` (from killed writers) are removed first.
    ``needed`` (about how many bytes the file takes) goes into the :class:`NoSpaceError`
    that a full disk or the file size limit turns into.
    """
    path = check_output_path(path)
    ensure_dir(path.parent)
    remove_stale_temps(path)
    with _reporting_no_space(path, needed) as write:
        tmp_path = _create_temp(path, suffix)
        try:
            yield tmp_path
            os.replace(tmp_path, path)
        finally:
            if tmp_path.exists():
                with contextlib.suppress(OSError):
                    write.written = tmp_path.stat().st_size
                tmp_path.unlink()


def temp_beside(path: str | os.PathLike) -> Path:
    """A new temporary file beside ``path`` that the caller renames or removes itself."""
    path = Path(path)
    remove_stale_temps(path)
    return _create_temp(path, "")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path, needed=len(data)) as tmp:
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
    with atomic_path(path, suffix=".npy", needed=nbytes_of(array)) as tmp:
        np.save(tmp, array)


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where the JSON description of the array file ``path`` goes: ``labels.npy`` ->
    ``labels.json`` (a name without ``.npy`` gets ``.json`` added)."""
    path = Path(path)
    return path.with_suffix(".json") if path.suffix == ".npy" else path.with_name(path.name + ".json")


def write_array_pair(path: str | os.PathLike, array: np.ndarray, sidecar: str | os.PathLike,
                     meta: dict[str, Any]) -> None:
    """Write ``array`` to ``path`` (.npy) and ``meta`` to ``sidecar`` (.json) as one unit.

    Both are written to temporary files first; the sidecar gets the sha256 of the values'
    bytes (:data:`VALUES_SHA256`). The values are renamed into place, then the sidecar; if
    the second rename fails the previous values are put back. A crash between the two
    renames leaves new values beside an old sidecar, which :func:`check_pair` refuses.
    """
    from harness.runtime.cache import hash_file

    path, sidecar = check_output_path(path), check_output_path(sidecar)
    ensure_dir(path.parent)
    ensure_dir(sidecar.parent)
    remove_stale_temps(path)
    remove_stale_temps(sidecar)
    with _reporting_no_space(path, nbytes_of(array)) as write:
        tmp_values, tmp_meta = _create_temp(path, ".npy"), _create_temp(sidecar, "")
        backup = temp_beside(path) if path.is_file() else None
        try:
            np.save(tmp_values, array)
            text = json_text({**meta, VALUES_SHA256: hash_file(tmp_values)}).encode("utf-8")
            write.path, write.needed = sidecar, len(text)
            tmp_meta.write_bytes(text)
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
    from harness.runtime.cache import hash_file

    expected = meta.get(VALUES_SHA256)
    if expected is not None and hash_file(path) != expected:
        raise BadInputError(f"{sidecar}: describes other values than {path} (a write of the "
                            f"pair was interrupted); rewrite both")


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` atomically (checkpoints are loaded with ``weights_only=True``)."""
    import torch

    with atomic_path(path, needed=nbytes_of(obj)) as tmp:
        short_write = None
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:
            if not _SHORT_WRITE.search(str(exc)):
                raise
            short_write = str(exc)
        if short_write is not None:
            # raised anew once the handler is left: the old traceback holds torch's writer,
            # which keeps the file (and its disk space) until it is released
            raise RuntimeError(short_write)


# --------------------------------------------------------------------------- partial folders
#: how a folder being built is named beside its destination: ``.<name>.<pid>-<random>.partial``
PARTIAL_SUFFIX = ".partial"


def partial_prefix(name: str) -> str:
    """The prefix of a folder this process builds for destination ``name`` (for
    ``tempfile.mkdtemp(prefix=..., suffix=PARTIAL_SUFFIX)``): it carries the writer's pid,
    so that :func:`remove_stale_partials` can tell a killed writer's folder from a live one."""
    return f".{name}.{os.getpid()}-"


def _newest_mtime(folder: Path, depth: int = 2) -> float:
    """The latest modification time of ``folder`` and its subfolders ``depth`` levels down
    (a writer adding files to ``frames/000/`` touches that folder, not the top one)."""
    newest = folder.stat().st_mtime
    if depth > 0:
        with contextlib.suppress(OSError):
            for child in folder.iterdir():
                if child.is_dir() and not child.is_symlink():
                    newest = max(newest, _newest_mtime(child, depth - 1))
    return newest


def remove_stale_partials(folder: str | os.PathLike, name: str | None = None) -> int:
    """Remove the partial folders in ``folder`` whose writer no longer runs; return how many.

    A folder built beside its destination and renamed into place when complete
    (:func:`partial_prefix`) is left behind when its writer is killed with SIGKILL. One
    whose name carries the pid of a process that is gone is removed, whatever destination
    it was for; one without a pid (an older harness's ``.<name>.<random>.partial``) only
    if it is for ``name`` and nothing in it has changed for :data:`UNNAMED_TEMP_AGE_S`.
    """
    import re
    import shutil

    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for entry in folder.glob(f".*{PARTIAL_SUFFIX}"):
        if entry.is_symlink() or not entry.is_dir():
            continue
        target, _, tail = entry.name[1:-len(PARTIAL_SUFFIX)].rpartition(".")
        owner = re.fullmatch(r"(\d+)-[A-Za-z0-9_]+", tail)
        if owner:
            pid = int(owner.group(1))
            stale = pid != os.getpid() and not _pid_alive(pid)
        else:
            try:
                stale = (name is not None and target == name
                         and time.time() - _newest_mtime(entry) > UNNAMED_TEMP_AGE_S)
            except FileNotFoundError:
                stale = False
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed += not entry.exists()
    return removed

"""One lock per cache entry, so that jobs sharing a cache never compute a stage twice at once.

Several processes may share one cache folder: the workers of ``harness sweep --launcher
local``, SLURM jobs on a shared file system, or two commands a person started. Every entry
is keyed by its inputs' content, so two jobs that need the same features or the same
pretext checkpoint look for the same folder. Each entry's compute-or-load runs under
:func:`entry_lock`: the first job computes it, a second waits and then finds it done and
loads it. The lock is an advisory file lock (the ``filelock`` package) in
``<cache>/.locks/``; the operating system drops it when its holder dies, so a killed job
never leaves a stage locked.

Ranks of one distributed run share entries on purpose (each writes its own shards, see
:mod:`harness.labels.sound_features`), so inside a process group of more than one process the lock is
not taken: the group's own barriers order its writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator

#: the folder beside the stage folders that holds the lock files
LOCKS_DIR = ".locks"

_held: dict[str, object] = {}
_guard = threading.Lock()


def _in_process_group() -> bool:
    """Whether this process is one rank of a distributed run of several processes."""
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return True
    except ValueError:
        pass
    torch_dist = sys.modules.get("torch.distributed")
    return bool(torch_dist is not None and torch_dist.is_available()
                and torch_dist.is_initialized() and torch_dist.get_world_size() > 1)


def lock_path(entry: str | os.PathLike) -> Path:
    """The lock file of the cache entry at ``entry`` (a folder or file of the cache):
    ``<cache>/.locks/<entry name>-<digest of its absolute path>.lock``."""
    from harness.runtime.cache import cache_root

    entry = Path(entry).absolute()
    digest = hashlib.sha256(str(entry).encode("utf-8")).hexdigest()[:12]
    root = cache_root().absolute()
    base = root if root in entry.parents else entry.parent
    return base / LOCKS_DIR / f"{entry.name}-{digest}.lock"


def _lock_for(path: Path):
    """One FileLock object per lock file in this process, so that a nested request for the
    same entry re-enters it instead of waiting on itself."""
    from filelock import FileLock

    with _guard:
        lock = _held.get(str(path))
        if lock is None:
            lock = _held[str(path)] = FileLock(str(path), thread_local=False)
        return lock


@contextlib.contextmanager
def entry_lock(entry: str | os.PathLike,
               say: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the lock of cache entry ``entry`` inside the block.

    If another process holds it, ``say`` (default: stderr) is told once that this one waits,
    then it blocks until the holder finishes (or dies). The caller checks inside the block
    whether the entry is complete before computing it.
    """
    if _in_process_group():
        yield
        return
    from filelock import Timeout

    path = lock_path(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock_for(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        (say or _stderr)(f"waiting for another job that computes {Path(entry).name}")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)

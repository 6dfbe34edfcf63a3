"""Upper bounds on sizes, checked before the work they would exhaust starts.

A size given on the command line (clips to generate, an image side, a batch) is refused
when what it needs -- disk for the files it writes, memory for what it holds at once --
is more than the machine has, with one line that names the option, the estimate and the
limit it was compared with. The estimates are simple products of the sizes (and say
"about"); they exist so that a mistyped ``--clips 1000000000`` stops at once instead of
filling the disk or the memory for minutes first.

:func:`probe_writable` checks an output folder by creating (and removing) a file there:
permission bits say nothing for root, and a read-only mount or an immutable folder is
refused only by an actual write.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from harness.api.errors import BadInputError

#: bytes of a uint8 RGB pixel
RGB_BYTES = 3
#: bytes of a float32 value (images as a network sees them)
FLOAT_BYTES = 4


def format_bytes(n: float) -> str:
    """``n`` bytes in decimal units: ``3.1 TB``, ``512 MB``, ``12 kB``."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" or abs(n) >= 100 else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def existing_ancestor(path: str | os.PathLike) -> Path:
    """``path`` itself if it exists, else its nearest existing parent folder."""
    path = Path(path).absolute()
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path(path.anchor or "/")


def free_disk(path: str | os.PathLike) -> int:
    """Bytes free to an unprivileged writer on the file system that holds (or would
    hold) ``path``."""
    return shutil.disk_usage(existing_ancestor(path)).free


def available_memory() -> int | None:
    """Bytes of memory a new allocation can get without swapping: the kernel's
    MemAvailable, lowered to the room left under a cgroup (container) limit; None where
    neither can be read."""
    found: list[int] = []
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            found.append(max(0, int(limit) - used))
    return min(found) if found else None


def check_disk(option: str, value: object, need: int, where: str | os.PathLike,
               what: str) -> None:
    """Refuse ``option value`` if ``what`` (about ``need`` bytes) would not fit in the
    free space where it is written."""
    free = free_disk(where)
    if need > free:
        raise BadInputError(f"{option} {value}: {what} would need about {format_bytes(need)} "
                            f"on disk (limit: the {format_bytes(free)} free in "
                            f"{existing_ancestor(where)})")


def check_memory(option: str, value: object, need: int, what: str) -> None:
    """Refuse ``option value`` if ``what`` (about ``need`` bytes held at once) is more than
    the memory available now (no check where that cannot be read)."""
    available = available_memory()
    if available is not None and need > available:
        raise BadInputError(f"{option} {value}: {what} would need about {format_bytes(need)} "
                            f"of memory (limit: the {format_bytes(available)} available)")


def frame_store_bytes(n_clips: int, size: int) -> int:
    """Bytes of a frame store (:mod:`harness.data.framestore`): every frame, ``size`` square, RGB."""
    return int(n_clips) * int(size) ** 2 * RGB_BYTES


def batch_bytes(batch_size: int, size: int) -> int:
    """Bytes of one training batch as float32 images (a floor of what a step holds: the
    network's activations come on top)."""
    return int(batch_size) * RGB_BYTES * int(size) ** 2 * FLOAT_BYTES


def check_pretext_sizes(*, n_clips: int, store_size: int, image_size: int, batch_size: int,
                        store: Path | None, store_option: str = "--image-size",
                        size_option: str = "--image-size",
                        batch_option: str = "--batch-size") -> None:
    """Refuse a pretext training whose frame store (``n_clips`` frames of ``store_size``
    px, to be written at ``store`` unless it is there already; None: into the frame cache,
    not built yet) would not fit on disk, or whose one batch of ``image_size`` images would
    not fit in memory."""
    from harness.runtime.cache import cache_root

    if store is None or not store.is_file():
        folder = store.parent if store is not None else cache_root() / "frames"
        check_disk(store_option, store_size, frame_store_bytes(n_clips, store_size), folder,
                   f"the frame store of {n_clips} clips at {store_size} x {store_size} px")
    check_memory(f"{batch_option} {batch_size} with {size_option}", image_size,
                 batch_bytes(batch_size, image_size),
                 f"one batch of {batch_size} images of {image_size} x {image_size} px")


def probe_writable(path: str | os.PathLike, option: str) -> None:
    """Refuse ``path`` (a folder to write into, or a file to write) unless a file can be
    created in it (in the folder of an existing file), or in its nearest existing parent
    when it is still to be created.

    The probe is a real file, removed at once: ``os.access`` answers yes to root for a
    read-only mount or an immutable folder, where every write then fails.
    """
    where = existing_ancestor(path)
    if where == Path(path).absolute() and where.is_file():   # a file to be replaced
        where = where.parent
    if not where.is_dir():
        raise BadInputError(f"{option} {path}: cannot write there, {where} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".harness-write-probe.", dir=where)
    except OSError as exc:
        raise BadInputError(f"{option} {path}: cannot write in {where} "
                            f"({exc.strerror or exc})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)

"""``leaderboards/archive/``: where a test-split record goes when its protocol is superseded.

A test-split result is never deleted: a record made under a protocol other than the frozen
one (:mod:`harness.results.protocol`) moves, with its per-image scores, from the results
folder into the archive, byte for byte, and the leaderboard lists it there. The move is
safe to interrupt: each file is first linked (or copied) into the archive under its own
name, and only then removed from the results folder, the record before its sidecar, so a
record is never without its scores; a rerun finishes an interrupted move.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from harness.api.errors import BadInputError

#: the archive's folder name, inside the leaderboard's folder
ARCHIVE_DIR = "archive"


def record_files(record_path: Path, record: Mapping[str, Any]) -> list[Path]:
    """The record file and, if it has one, its sidecar."""
    from harness.results.store import scores_path

    sidecar = scores_path(record_path, record)
    return [record_path] + ([sidecar] if sidecar is not None else [])


def _place(src: Path, dst: Path) -> None:
    """``dst`` becomes a byte-identical copy of ``src`` (never replacing another file)."""
    if dst.exists():
        if dst.read_bytes() == src.read_bytes():
            return                                  # an interrupted move's first half
        raise BadInputError(f"{dst}: already in the archive with other content than {src}; "
                            f"refusing to replace an archived result")
    try:
        os.link(src, dst)
        return
    except OSError:                                 # another file system: copy, then rename
        pass
    tmp = dst.with_name(f".{dst.name}.partial")
    try:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def move_to_archive(record_path: Path, record: Mapping[str, Any],
                    archive_dir: Path) -> list[Path]:
    """Move a record (and its sidecar) into ``archive_dir``; return the archived paths."""
    archive_dir.mkdir(parents=True, exist_ok=True)
    files = record_files(Path(record_path), record)
    for src in files:
        if not src.is_file():
            raise BadInputError(f"{src}: missing; cannot archive {Path(record_path).name}")
    placed = []
    for src in files:
        _place(src, archive_dir / src.name)
        placed.append(archive_dir / src.name)
    for src in files:                               # the record first, then its sidecar
        src.unlink()
    return placed


def archive_superseded(results_dir: Path, archive_dir: Path, frozen) -> list[tuple[str, str]]:
    """Move every record of ``results_dir`` that is not under ``frozen`` into the archive.

    Returns (file name, why superseded) of every record moved, in file-name order.
    """
    from harness.results.store import read_record_files

    moved = []
    for path, record in read_record_files(results_dir):
        if frozen.is_current(record):
            continue
        reason = frozen.why_superseded(record)
        move_to_archive(path, record, archive_dir)
        moved.append((path.name, reason))
    return moved

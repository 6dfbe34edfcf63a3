"""The clip dataset: one video frame and the audio window around it, per row of a manifest.

On disk a clip dataset is a folder holding

* ``manifest.csv`` -- one row per clip with the columns :data:`COLUMNS` (``clip_id``,
  ``video``, ``timestamp``, ``frame``, ``audio``, ``sample_rate``) and optionally extra
  columns (the toy world writes its ground truth as ``scene`` and ``objects``, the latter
  ``;``-joined VOC class names);
* ``dataset.json`` -- metadata: how the dataset was made and a report of what was skipped;
  ``"source_column"`` names the column that holds each clip's source video (``video``
  for ingested datasets; see :meth:`ClipDataset.source_groups`);
* the frames (PNG/JPEG) and audio windows (WAV, mono, PCM16 or float32) that the
  manifest names, by paths relative to the folder.

Paths are confined: a manifest naming an absolute path, a ``..`` component or a link that
leads outside the folder is rejected, so a dataset can be moved, shared and read without
trusting its author. The manifest is written last and atomically (:func:`write_dataset`),
so it only ever names files that were completely written: it is the dataset's commit point.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterable, Mapping

import numpy as np
import torch.utils.data

from harness.api.errors import BadInputError
from harness.runtime.io import write_json, write_text

#: format tag written into dataset.json
FORMAT = "harness-clips/1"
MANIFEST_NAME = "manifest.csv"
METADATA_NAME = "dataset.json"
#: the columns every manifest has, in this order (extra columns follow)
COLUMNS = ("clip_id", "video", "timestamp", "frame", "audio", "sample_rate")
#: ``dataset.json``'s ``generator`` for datasets cut from videos by :mod:`harness.data.ingest`,
#: whose ``video`` column is always the source video
INGEST_GENERATOR = "harness.ingest"  # an identity string in records


@dataclass
class Clip:
    """One row of a manifest, with the file paths made absolute."""

    clip_id: str
    #: the source video (a path relative to the ingested folder, or a generator's name)
    video: str
    #: seconds from the start of the video to the frame
    timestamp: float
    frame: Path
    audio: Path
    sample_rate: int
    #: the manifest's extra columns (e.g. ``scene``, ``objects``)
    extra: dict[str, str] = field(default_factory=dict)


def confined_path(root: Path, relative: str, where: str) -> Path:
    """``root / relative`` as an absolute path, refusing anything that leaves ``root``.

    ``where`` names the offending place (manifest file and line) in the error message.
    """
    if not relative:
        raise BadInputError(f"{where}: empty path")
    if "\\" in relative or PureWindowsPath(relative).drive:
        raise BadInputError(f"{where}: path {relative!r} must use '/' and no drive letter")
    pure = PurePosixPath(relative)
    if pure.is_absolute():
        raise BadInputError(f"{where}: absolute path {relative!r} is not allowed "
                            "(paths are relative to the dataset folder)")
    if ".." in pure.parts:
        raise BadInputError(f"{where}: path {relative!r} leaves the dataset folder ('..')")
    try:
        root = root.resolve()
        full = (root / pure).resolve()
    except (RuntimeError, OSError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise BadInputError(f"{where}: path {relative!r} cannot be resolved (a symlink "
                            f"loop?): {exc}") from None
    if not full.is_relative_to(root):
        raise BadInputError(f"{where}: path {relative!r} resolves outside the dataset folder")
    return full


class ClipDataset(torch.utils.data.Dataset):
    """A clip dataset folder, read and checked; a torch Dataset of clips.

    ``dataset[i]`` is ``{"image": PIL.Image (RGB), "waveform": float32 [T], "clip": Clip}``.
    With ``check_files`` (the default) every file the manifest names must exist, so a
    missing file is reported now, by name, and not halfway through a long stage.
    """

    def __init__(self, root: str | Path, *, check_files: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise BadInputError(f"{self.root}: not a clip dataset folder (no such directory)")
        self.manifest_path = self.root / MANIFEST_NAME
        self.metadata_path = self.root / METADATA_NAME
        self.metadata: dict[str, Any] = _read_metadata(self.metadata_path)
        self.clips: list[Clip] = _read_manifest(self.root, self.manifest_path, check_files)
        self.extra_columns: list[str] = _extra_columns(self.manifest_path)
        self._fingerprint: str | None = None
        self._cache_key: str | None = None

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.load_frame(i), "waveform": self.load_audio(i), "clip": self.clips[i]}

    def load_frame(self, i: int):
        """The frame of clip ``i`` as an 8-bit RGB PIL image (high-depth frames are
        scaled, see :func:`harness.data.images.load_rgb`)."""
        from harness.data.images import load_rgb

        return load_rgb(self.clips[i].frame, "frame image")

    def load_audio(self, i: int) -> np.ndarray:
        """The audio window of clip ``i``: float32 mono samples at the clip's sample rate."""
        import soundfile as sf

        clip = self.clips[i]
        try:
            data, rate = sf.read(clip.audio, dtype="float32", always_2d=True)
        except (OSError, RuntimeError, sf.LibsndfileError) as exc:
            raise BadInputError(f"{clip.audio}: cannot read audio window ({exc})") from None
        if rate != clip.sample_rate:
            raise BadInputError(f"{clip.audio}: sample rate {rate} Hz, but the manifest says "
                                f"{clip.sample_rate} Hz")
        return np.ascontiguousarray(data.mean(axis=1, dtype=np.float32))

    def column(self, name: str) -> list[str]:
        """The values of one extra column (e.g. ``scene``) for every clip, in order."""
        if name not in self.extra_columns:
            raise BadInputError(f"{self.manifest_path}: no column {name!r} "
                                f"(extra columns: {', '.join(self.extra_columns) or 'none'})")
        return [c.extra[name] for c in self.clips]

    def source_groups(self) -> np.ndarray:
        """int64 [N]: clips cut from one source video share a number (numbered in order of
        first appearance). Pretext training splits train/val by these groups.

        The ``video`` column names a clip's source video where the dataset says so:
        ``dataset.json`` has ``"source_column": "video"`` (what ``harness data ingest``
        writes; its datasets from before the key existed count too). Elsewhere ``video``
        may be a generator's name shared by unrelated clips, so every clip is its own
        group (the toy world, hand-made datasets), as is a clip with an empty ``video``.
        """
        column = self.metadata.get("source_column")
        if column is None and self.metadata.get("generator") == INGEST_GENERATOR:
            column = "video"
        numbers: dict[str, int] = {}
        out = np.empty(len(self.clips), dtype=np.int64)
        for i, clip in enumerate(self.clips):
            source = clip.video if column == "video" else clip.extra.get(column or "", "")
            out[i] = numbers.setdefault(source if source else f"\0{i}", len(numbers))
        return out

    def fingerprint(self) -> str:
        """A content hash of the dataset for cache keys: sha256 of manifest + dataset.json.

        This is the dataset's identity in result records: ingest and the toy generator
        write each file once, to a name that belongs to one clip of one configuration, and
        publish it by (atomically) rewriting the manifest and dataset.json, whose bytes
        change whenever the set of clips, a source, or a generation option does. Caches
        use :meth:`cache_key`, which also follows files replaced behind the manifest.
        """
        if self._fingerprint is None:
            h = hashlib.sha256(FORMAT.encode())
            for path in (self.manifest_path, self.metadata_path):
                h.update(b"\0" + path.read_bytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def cache_key(self) -> str:
        """What the caches of this dataset's frames and features are keyed on.

        :meth:`fingerprint` plus the size and modification time (ns) of every frame and
        audio file the manifest names: a cheap proxy for their content (no file is read),
        so replacing a WAV or a JPEG behind an unchanged manifest computes anew instead of
        reusing results of the old file. With ``HARNESS_VERIFY_CACHE=1`` the sha256 of
        each file's bytes takes the place of size and time (:func:`harness.runtime.cache.file_stamp`),
        which also catches a file replaced with its modification time restored. The record
        keeps :meth:`fingerprint`, which does not depend on when the files were written.
        """
        from harness.runtime.cache import file_stamp

        if self._cache_key is None:
            h = hashlib.sha256(self.fingerprint().encode())
            for clip in self.clips:
                for path in (clip.frame, clip.audio):
                    stamp = ":".join(map(str, file_stamp(path)))
                    h.update(f"\0{path}:{stamp}".encode())
            self._cache_key = h.hexdigest()
        return self._cache_key


def _read_metadata(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BadInputError(f"{path}: missing (not a clip dataset, or an unfinished one)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path}: malformed JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise BadInputError(f"{path}: expected a JSON object")
    if meta.get("format", FORMAT) != FORMAT:
        raise BadInputError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f), [])


def _extra_columns(path: Path) -> list[str]:
    return [c for c in _header(path) if c not in COLUMNS]


def _read_manifest(root: Path, path: Path, check_files: bool) -> list[Clip]:
    if not path.is_file():
        raise BadInputError(f"{path}: missing (not a clip dataset, or an unfinished one)")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not a column name
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: not UTF-8 text ({exc})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise BadInputError(f"{path}: missing column(s) {', '.join(missing)}")
    if len(set(header)) != len(header):
        raise BadInputError(f"{path}: duplicate column names in the header")
    extras = [c for c in header if c not in COLUMNS]
    clips: list[Clip] = []
    seen: set[str] = set()
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if None in row or any(row[c] is None for c in header):
            raise BadInputError(f"{where}: expected {len(header)} fields")
        clips.append(_parse_row(root, row, extras, where, check_files))
        if clips[-1].clip_id in seen:
            raise BadInputError(f"{where}: duplicate clip_id {clips[-1].clip_id!r}")
        seen.add(clips[-1].clip_id)
    return clips


def _parse_row(root: Path, row: Mapping[str, str], extras: list[str], where: str,
               check_files: bool) -> Clip:
    if not row["clip_id"]:
        raise BadInputError(f"{where}: empty clip_id")
    try:
        timestamp = float(row["timestamp"])
        rate = int(row["sample_rate"])
    except ValueError:
        raise BadInputError(f"{where}: timestamp {row['timestamp']!r} / sample_rate "
                            f"{row['sample_rate']!r} are not numbers") from None
    if not math.isfinite(timestamp) or timestamp < 0 or rate <= 0:
        raise BadInputError(f"{where}: timestamp must be >= 0 and sample_rate > 0")
    frame = confined_path(root, row["frame"], where)
    audio = confined_path(root, row["audio"], where)
    if check_files:
        for p in (frame, audio):
            if not p.is_file():
                raise BadInputError(f"{where}: names missing file {p}")
    return Clip(clip_id=row["clip_id"], video=row["video"], timestamp=timestamp, frame=frame,
                audio=audio, sample_rate=rate, extra={c: row[c] for c in extras})


def write_dataset(root: str | Path, clips_rows: Iterable[Mapping[str, Any]],
                  metadata: Mapping[str, Any]) -> ClipDataset:
    """Publish a clip dataset: check the rows, write dataset.json, then the manifest.

    ``clips_rows`` are mappings with the :data:`COLUMNS` (``frame`` and ``audio`` relative
    to ``root``, files already written) plus the same extra columns in every row. Both
    files are written atomically and the manifest last, so an interrupted writer leaves
    either the previous manifest or the new one, never one naming missing files.
    Returns the dataset as read back.
    """
    root = Path(root)
    rows = [dict(r) for r in clips_rows]
    extras: list[str] = []
    for r in rows:
        for key in r:
            if key not in COLUMNS and key not in extras:
                extras.append(key)
    header = [*COLUMNS, *extras]
    for n, r in enumerate(rows):
        where = f"{root / MANIFEST_NAME} row {n + 1}"
        missing = [c for c in header if c not in r]
        if missing:
            raise BadInputError(f"{where}: missing field(s) {', '.join(missing)}")
        for key in ("frame", "audio"):
            if not confined_path(root, str(r[key]), where).is_file():
                raise BadInputError(f"{where}: {key} file {r[key]!r} does not exist")
    meta = {**metadata, "format": FORMAT, "num_clips": len(rows), "columns": header}
    write_json(root / METADATA_NAME, meta)
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _cell(r[k]) for k in header})
    write_text(root / MANIFEST_NAME, buf.getvalue())
    return ClipDataset(root)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(round(value, 6))
    if isinstance(value, Path):
        return value.as_posix()
    return str(value)

"""Turn a folder of videos into a clip dataset (FFmpeg through PyAV).

Each video gives a frame every ``every`` seconds (3.75 s by default) and the audio window
of ``window`` seconds around it: centred on the frame by default, or starting at it
(``anchor="start"``, the seed's layout). Audio is mixed down to mono and resampled by
FFmpeg; frames are scaled (shorter side to ``frame_size``) and centre-cropped square.

Robustness and resuming. Videos are processed in parallel, each on its own: a file that
cannot be decoded, has no audio (or no video) track, or is shorter than one window is
skipped, with its reason, and never stops the run. Each finished video leaves a small
state record (``.ingest/<key>.json``) written atomically after its files; a rerun skips
videos whose record matches the file's size and modification time. The manifest is
written last, atomically, from the records, so a killed run never leaves a manifest
naming missing files. A video's files live under a key derived from its path, size and
mtime, so files a manifest names are never rewritten (what makes the dataset's cheap
fingerprint safe).

A video whose path is not valid UTF-8 cannot be named in the (UTF-8) manifest: it is
skipped as ``bad_name``, listed with its bytes escaped (``\\xff``). An ingest refused
because no video gave a clip (or for any other bad input once it started) removes the
state and clip folders it made when no dataset was published there, so the folder can
be used again, with other options too.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

from harness.api.errors import BadInputError
from harness.data.video_clips import ingest_video, video_key
from harness.runtime.io import write_json
from harness.runtime.processes import die_with_parent
from harness.runtime.progress import make_progress

GENERATOR = "harness.ingest"  # an identity string in records: kept as first written
STATE_DIR = ".ingest"
Anchor = Literal["center", "start"]
#: why a video gave no clips (each counted in the report, 0 included)
SKIP_REASONS = ("undecodable", "no_video", "no_audio", "too_short")
#: a video skipped for its path, not valid UTF-8 (counted in the report when it occurs)
BAD_NAME = "bad_name"
#: consecutive audio windows sharing more than this share of their length are warned about
OVERLAP_WARN = 0.5


@dataclass(frozen=True)
class IngestConfig:
    """How clips are cut from a video (recorded in dataset.json; fixed for a dataset)."""

    #: seconds between consecutive frames
    every: float = 3.75
    #: audio window length, seconds
    window: float = 3.75
    #: where the frame sits in its window: ``center`` (default) or ``start`` (the seed's)
    anchor: Anchor = "center"
    #: sample rate of the written audio windows, Hz
    sample_rate: int = 21000
    #: side of the square frames, pixels
    frame_size: int = 256
    #: JPEG quality of the frames
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if not (self.every > 0 and self.window > 0):
            raise BadInputError("--every and --window must be positive")
        if self.anchor not in ("center", "start"):
            raise BadInputError(f"--window must be 'center' or 'start', got {self.anchor!r}")
        if not 4000 <= self.sample_rate <= 192000:
            raise BadInputError(f"--sample-rate must be in 4000..192000, got {self.sample_rate}")
        if not 16 <= self.frame_size <= 4096:
            raise BadInputError(f"--size must be in 16..4096, got {self.frame_size}")
        if not 1 <= self.jpeg_quality <= 100:
            raise BadInputError(f"JPEG quality must be in 1..100, got {self.jpeg_quality}")

    def targets(self, start: float, end: float) -> list[float]:
        """Frame times whose whole audio window lies in [start, end]."""
        lead = self.window / 2 if self.anchor == "center" else 0.0
        times, k = [], 0
        while True:
            t = start + lead + k * self.every
            if t - lead + self.window > end + 1e-9:
                return times
            times.append(round(t, 6))
            k += 1

    def window_start(self, t: float) -> float:
        """Start time of the audio window of the frame at ``t``."""
        return t - self.window / 2 if self.anchor == "center" else t

    def overlap(self) -> float:
        """The share of an audio window that the next clip's window repeats (0 when
        ``every >= window``)."""
        return max(0.0, (self.window - self.every) / self.window)

    def overlap_warning(self) -> str | None:
        """A warning when consecutive windows overlap by more than :data:`OVERLAP_WARN`."""
        share = self.overlap()
        if share <= OVERLAP_WARN:
            return None
        return (f"windows overlap by {share:.0%}: near-duplicate clips (each {self.window:g} s "
                f"audio window repeats {share:.0%} of the previous one, frames {self.every:g} s "
                f"apart); pretext training keeps the clips of one video on one side of its "
                f"train/val split, but such clips add little: --every {self.window:g} or more "
                f"gives windows that do not overlap")


def _ingest_one(args: tuple[Path, str, str, dict[str, Any], Path, IngestConfig]) -> dict[str, Any]:
    """Worker: ingest one video and persist its state record (atomically, files first)."""
    import av  # noqa: F401 - imported before timing: a worker's first import is not decoding

    path, rel, key, signature, out, cfg = args
    t0 = time.perf_counter()
    record = ingest_video(path, rel, key, out, cfg)
    record["source"] = signature
    record["timing"]["total_s"] = round(time.perf_counter() - t0, 4)
    write_json(out / STATE_DIR / f"{key}.json", record)
    return record


# --------------------------------------------------------------------------- the folder
def list_videos(videos: Path) -> list[Path]:
    """Every non-hidden regular file under ``videos`` (FFmpeg decides what it can read)."""
    if not videos.is_dir():
        raise BadInputError(f"{videos}: not a folder of videos")
    files = [p for p in videos.rglob("*")
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(videos).parts)
             and not p.name.endswith((".part", ".ytdl", ".json"))]
    return sorted(files)


def _check_out(out: Path, videos: Path, cfg: IngestConfig) -> None:
    """Refuse an output folder this ingest did not start: it never overwrites a dataset.

    ``out`` must be absent, empty, or a dataset ingested from the same videos folder with
    the same options (then the run resumes). Anything else, including a copy of another
    dataset, is BadInputError (exit 2) and nothing in it is touched.
    """
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: is a file, not a dataset folder")
    saved = out / STATE_DIR / "config.json"
    current = {**asdict(cfg), "videos": str(videos.resolve())}
    if saved.is_file():
        previous = _load_state(saved) or {}
        previous.setdefault("videos", current["videos"])   # datasets from before it was saved
        if previous != current:
            changed = sorted(k for k in current if previous.get(k) != current.get(k))
            raise BadInputError(f"{out}: was ingested with other options or videos "
                                f"({', '.join(changed)} differ); use a new --out folder or the "
                                f"same videos and options")
    elif out.is_dir() and any(p.name != STATE_DIR for p in out.iterdir()):
        raise BadInputError(f"{out}: folder is not empty and is not an ingest dataset (not "
                            f"started by `harness data ingest`); refusing to overwrite it "
                            f"(use a new --out folder)")


def _save_config(out: Path, videos: Path, cfg: IngestConfig) -> None:
    saved = out / STATE_DIR / "config.json"
    if not saved.is_file():
        write_json(saved, {**asdict(cfg), "videos": str(videos.resolve())})


def _load_state(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def ingest(videos: str | Path, out: str | Path, config: IngestConfig | None = None, *,
           jobs: int = 1, progress: bool = True, extra_metadata: dict[str, Any] | None = None):
    """Ingest every video under ``videos`` into the clip dataset ``out``; return it.

    Returns the :class:`harness.data.clips.ClipDataset`; its ``metadata["report"]`` counts
    videos, clips and skipped videos by reason and lists the skipped files.
    """
    from harness.data.clips import write_dataset

    cfg = config or IngestConfig()
    videos, out = Path(videos), Path(out)
    files = list_videos(videos)
    if not files:
        raise BadInputError(f"{videos}: no video files in the folder; nothing to ingest")
    if out.resolve().is_relative_to(videos.resolve()):
        raise BadInputError(f"{out}: the dataset folder must not be inside the videos folder")
    _check_out(out, videos, cfg)
    if cfg.overlap_warning():       # said before the decoding starts; kept in the report too
        print(f"warning: {cfg.overlap_warning()}", file=sys.stderr)
    created_out = not out.exists()
    try:
        return _ingest_into(out, videos, files, cfg, jobs, progress, extra_metadata,
                            write_dataset)
    except BadInputError:
        _remove_unpublished(out, created_out)
        raise


def _ingest_into(out: Path, videos: Path, files: list[Path], cfg: IngestConfig, jobs: int,
                 progress: bool, extra_metadata: dict[str, Any] | None, write_dataset):
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    _save_config(out, videos, cfg)
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for path in files:
        rel = path.relative_to(videos).as_posix()
        if not _is_utf8(rel):
            records[rel] = {"video": shown_name(rel), "status": "skipped", "reason": BAD_NAME,
                            "detail": "the file name is not valid UTF-8; rename the file"}
            continue
        st = path.stat()
        signature = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        key = video_key(rel, st.st_size, st.st_mtime_ns)
        previous = _load_state(out / STATE_DIR / f"{key}.json")
        if previous is not None and previous.get("source") == signature:
            records[rel] = previous
        else:
            todo.append((path, rel, key, signature, out, cfg))
    _run(todo, records, jobs, progress)
    return _publish(out, videos, cfg, files, records, extra_metadata, write_dataset)


def _is_utf8(name: str) -> bool:
    """Whether ``name`` (a path as Python decodes it from the file system) is valid UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_name(name: str) -> str:
    """``name`` printable: bytes that are not UTF-8 shown escaped (``\\xff``)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _remove_unpublished(out: Path, created_out: bool) -> None:
    """After a refused ingest: remove the state and clip folders when ``out`` holds no
    published dataset (they are this ingest's, or an unfinished one's; a manifest there
    means a dataset that stays whole), and ``out`` itself if this ingest created it."""
    import shutil

    from harness.data.clips import MANIFEST_NAME

    if (out / MANIFEST_NAME).exists():
        return
    for name in (STATE_DIR, "clips"):
        shutil.rmtree(out / name, ignore_errors=True)
    if created_out:
        try:
            out.rmdir()
        except OSError:  # something else was put there meanwhile: leave it
            pass


def _run(todo: list, records: dict[str, dict[str, Any]], jobs: int, progress: bool) -> None:
    if jobs < 1:
        raise BadInputError(f"--jobs must be >= 1, got {jobs}")
    with make_progress(transient=not progress) as bar:
        task = bar.add_task("ingest videos", total=len(todo), visible=progress)
        if jobs == 1 or len(todo) <= 1:
            for item in todo:
                records[item[1]] = _ingest_one(item)
                bar.advance(task)
            return
        try:
            with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), initializer=die_with_parent,
                                     initargs=(os.getpid(),)) as pool:
                futures = {pool.submit(_ingest_one, item): item[1] for item in todo}
                for future in as_completed(futures):
                    records[futures[future]] = future.result()
                    bar.advance(task)
        except BrokenProcessPool:
            # a decoder crashed its worker process: redo the unfinished videos one per
            # process, so only the video that crashes is lost (and recorded as skipped)
            for item in todo:
                if item[1] not in records:
                    records[item[1]] = _ingest_isolated(item)
                    bar.advance(task)


def _ingest_isolated(item: tuple) -> dict[str, Any]:
    """Ingest one video in its own process; a crash there skips only this video."""
    path, rel, key, signature, out, cfg = item
    try:
        with ProcessPoolExecutor(max_workers=1, initializer=die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            return pool.submit(_ingest_one, item).result()
    except BrokenProcessPool:
        record = {"video": rel, "key": key, "status": "skipped", "reason": "undecodable",
                  "detail": "the decoder crashed", "source": signature,
                  "timing": {"decode_s": 0.0, "other_s": 0.0, "total_s": 0.0}}
        write_json(out / STATE_DIR / f"{key}.json", record)
        return record


def _publish(out: Path, videos: Path, cfg: IngestConfig, files: Iterable[Path],
             records: dict[str, dict[str, Any]], extra: dict[str, Any] | None, write_dataset):
    rels = [p.relative_to(videos).as_posix() for p in files]
    rows, skipped = [], []
    counts = {reason: 0 for reason in SKIP_REASONS}
    for rel in rels:
        rec = records[rel]
        if rec.get("status") == "done":
            rows.extend(rec["rows"])
        else:
            counts[rec.get("reason", "undecodable")] = counts.get(rec.get("reason"), 0) + 1
            skipped.append({"video": shown_name(rel), "reason": rec.get("reason"),
                            "detail": rec.get("detail")})
    done = sum(1 for rel in rels if records[rel].get("status") == "done")
    if not rows:
        first = skipped[0] if skipped else {"video": "?", "reason": "?", "detail": ""}
        raise BadInputError(f"{videos}: none of {len(rels)} video(s) gave a clip (first: "
                            f"{first['video']}: {first['reason']}, {first['detail']}); "
                            f"no dataset written")
    # every clip's `video` is the video it was cut from: pretext training keeps the clips
    # of one video on one side of its train/val split (ClipDataset.source_groups)
    meta = {"generator": GENERATOR, "config": asdict(cfg), "source_column": "video",
            **(extra or {}),
            "report": {"videos": len(rels), "ingested": done, "clips": len(rows),
                       "skipped": counts, "skipped_videos": skipped,
                       "warnings": [w for w in [cfg.overlap_warning()] if w]}}
    return write_dataset(out, rows, meta)


def timing_summary(out: str | Path) -> dict[str, float]:
    """Totals of decode / other / total seconds over the dataset's state records."""
    totals = {"decode_s": 0.0, "other_s": 0.0, "total_s": 0.0}
    for path in (Path(out) / STATE_DIR).glob("*.json"):
        rec = _load_state(path)
        if rec and "timing" in rec:
            for k in totals:
                totals[k] += float(rec["timing"].get(k, 0.0))
    return totals

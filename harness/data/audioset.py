"""Download AudioSet segments with yt-dlp (the optional ``download`` extra).

AudioSet's segment CSVs hold three comment lines, then ``YTID, start, end, "labels"``
(YouTube IDs may start with ``-``). For each segment only its time range is fetched
(``--download-sections``), by running yt-dlp with an argument list (never a shell), the
ID validated first and passed after ``--``. A failure is classified (unavailable, private,
rate-limited, other); rate limits and other transient failures are retried with
exponential back-off; no failure aborts the run. Each segment's outcome is recorded
(``.audioset/<segment>.json``), so a rerun resumes. The segments obtained are part of the
result: they are listed in ``audioset.json`` and ``obtained.csv`` beside the videos.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.api.errors import BadInputError, HarnessError
from harness.runtime.io import write_json, write_text
from harness.runtime.progress import make_progress

YTID = re.compile(r"^[A-Za-z0-9_-]{11}$")
FAILURES = ("unavailable", "private", "rate_limited", "other")
#: failures worth retrying (the others will not change by asking again)
TRANSIENT = ("rate_limited", "other")
STATE_DIR = ".audioset"

_PATTERNS = (  # (failure kind, pattern in yt-dlp's stderr), first match wins
    ("private", re.compile(r"private video|video is private", re.I)),
    ("rate_limited", re.compile(r"HTTP Error 429|too many requests|rate[- ]limit|"
                                r"confirm you.re not a bot", re.I)),
    ("unavailable", re.compile(r"video unavailable|not available|has been removed|"
                               r"account .*terminated|does not exist|no longer available|"
                               r"copyright", re.I)),
)


@dataclass(frozen=True)
class Segment:
    """One row of a segment CSV."""

    ytid: str
    start: float
    end: float
    labels: tuple[str, ...]

    @property
    def name(self) -> str:
        """File stem for this segment: ID and range in milliseconds."""
        return f"{self.ytid}_{int(round(self.start * 1000))}_{int(round(self.end * 1000))}"

    @property
    def url(self) -> str:
        return f"https://www.youtube.com/watch?v={self.ytid}"


def parse_segments(path: str | Path) -> list[Segment]:
    """Segments of an AudioSet CSV; BadInputError names the file and line of a bad row."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such segment CSV")
    segments, seen = [], set()
    # utf-8-sig: a spreadsheet's byte-order mark is not part of the first field
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        for n, row in enumerate(csv.reader(f, skipinitialspace=True), 1):
            if not row or row[0].lstrip().startswith("#"):
                continue
            if len(row) != 4:
                raise BadInputError(f"{path}:{n}: expected 4 fields (YTID, start, end, labels), "
                                    f"got {len(row)}")
            ytid = row[0].strip()
            if not YTID.match(ytid):
                raise BadInputError(f"{path}:{n}: invalid YouTube ID {ytid!r}")
            try:
                start, end = float(row[1]), float(row[2])
            except ValueError:
                raise BadInputError(f"{path}:{n}: start/end are not numbers") from None
            if not 0 <= start < end or end - start > 3600:
                raise BadInputError(f"{path}:{n}: bad time range {start}-{end}")
            labels = tuple(lab.strip() for lab in row[3].split(",") if lab.strip())
            seg = Segment(ytid, start, end, labels)
            if seg.name not in seen:
                seen.add(seg.name)
                segments.append(seg)
    return segments


def classify_failure(stderr: str) -> str:
    """One of FAILURES for yt-dlp's error output."""
    for kind, pattern in _PATTERNS:
        if pattern.search(stderr):
            return kind
    return "other"


@dataclass(frozen=True)
class DownloadConfig:
    """How segments are fetched."""

    #: yt-dlp executable (name on PATH or a path)
    ytdlp: str = "yt-dlp"
    #: yt-dlp format selector (small video with audio is plenty for 256 px frames)
    format: str = "bv*[height<=360]+ba/b[height<=360]/bv*+ba/b"
    #: attempts after the first for transient failures
    retries: int = 3
    #: first back-off delay, seconds (doubled each attempt, with jitter)
    backoff: float = 5.0
    #: seconds one yt-dlp call may take
    timeout: float = 600.0


def _command(exe: str, seg: Segment, template: str, cfg: DownloadConfig) -> list[str]:
    if not YTID.match(seg.ytid):  # the ID reaches a command line: check it here too
        raise BadInputError(f"invalid YouTube ID {seg.ytid!r}")
    return [exe, "--quiet", "--no-warnings", "--no-progress", "--no-playlist",
            "--format", cfg.format, "--download-sections", f"*{seg.start:.3f}-{seg.end:.3f}",
            "--output", template, "--", seg.url]


def download_segment(seg: Segment, videos: Path, cfg: DownloadConfig, exe: str,
                     sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Fetch one segment into ``videos``; return its outcome record (never raises for a
    failed download)."""
    attempts, record = 0, {"ytid": seg.ytid, "start": seg.start, "end": seg.end,
                           "labels": list(seg.labels), "name": seg.name}
    while True:
        attempts += 1
        work = Path(tempfile.mkdtemp(prefix=f".{seg.name}.", dir=videos.parent))
        try:
            cmd = _command(exe, seg, str(work / f"{seg.name}.%(ext)s"), cfg)
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=cfg.timeout,
                                      check=False, stdin=subprocess.DEVNULL)
                stderr, code = proc.stderr or "", proc.returncode
            except subprocess.TimeoutExpired:
                stderr, code = f"timed out after {cfg.timeout} s", -1
            produced = [p for p in work.iterdir()
                        if p.is_file() and not p.name.endswith((".part", ".ytdl"))]
            if code == 0 and produced:
                target = videos / produced[0].name
                os.replace(produced[0], target)
                record.update(status="ok", file=target.name, attempts=attempts)
                return record
            if code == 0:
                stderr = stderr or "yt-dlp reported success but wrote no file"
        finally:
            shutil.rmtree(work, ignore_errors=True)
        kind = classify_failure(stderr)
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        detail = lines[-1][:300] if lines else f"exit status {code}"
        if kind not in TRANSIENT or attempts > cfg.retries:
            record.update(status="failed", reason=kind, detail=detail, attempts=attempts)
            return record
        delay = cfg.backoff * 2 ** (attempts - 1)
        sleep(delay * (0.75 + 0.5 * random.random()))


def find_ytdlp(exe: str) -> str:
    """The yt-dlp executable's path, or a clear error saying how to install it."""
    found = shutil.which(exe)
    if found is None:
        raise HarnessError(f"yt-dlp not found ({exe!r}); install the optional extra: "
                           "pip install 'harness[download]'")
    return found


def _state(path: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def download(csv_path: str | Path, out: str | Path, *, limit: int | None = None, jobs: int = 4,
             config: DownloadConfig | None = None, retry_failed: bool = False,
             progress: bool = True, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Download the segments of ``csv_path`` (the first ``limit``) into ``out/videos``.

    Resumes: segments already obtained are kept; permanent failures are not retried
    unless ``retry_failed``. Writes and returns the summary ``out/audioset.json``.
    """
    cfg = config or DownloadConfig()
    csv_path, out = Path(csv_path), Path(out)
    segments = parse_segments(csv_path)
    if limit is not None:
        if limit < 1:
            raise BadInputError(f"--limit must be >= 1, got {limit}")
        segments = segments[:limit]
    if jobs < 1:
        raise BadInputError(f"--jobs must be >= 1, got {jobs}")
    exe = find_ytdlp(cfg.ytdlp)
    videos, states = out / "videos", out / STATE_DIR
    videos.mkdir(parents=True, exist_ok=True)
    states.mkdir(exist_ok=True)
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for seg in segments:
        prev = _state(states / f"{seg.name}.json")
        if prev and prev.get("status") == "ok" and (videos / prev.get("file", "")).is_file():
            records[seg.name] = prev
        elif prev and prev.get("status") == "failed" and prev.get("reason") not in TRANSIENT \
                and not retry_failed:
            records[seg.name] = prev
        else:
            todo.append(seg)

    def fetch(seg: Segment) -> dict[str, Any]:
        rec = download_segment(seg, videos, cfg, exe, sleep)
        write_json(states / f"{seg.name}.json", rec)
        return rec

    with make_progress(transient=not progress) as bar:
        task = bar.add_task("audioset downloads", total=len(todo), visible=progress)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(fetch, seg) for seg in todo]
            for future in as_completed(futures):
                rec = future.result()
                records[rec["name"]] = rec
                bar.advance(task)
    return _summarise(csv_path, out, segments, records, cfg)


def _summarise(csv_path: Path, out: Path, segments: list[Segment],
               records: dict[str, dict[str, Any]], cfg: DownloadConfig) -> dict[str, Any]:
    obtained = [records[s.name] for s in segments if records[s.name].get("status") == "ok"]
    failed = [records[s.name] for s in segments if records[s.name].get("status") != "ok"]
    counts = {kind: sum(1 for r in failed if r.get("reason") == kind) for kind in FAILURES}
    summary = {
        "csv": csv_path.name,
        "csv_sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest(),
        "requested": len(segments), "obtained": len(obtained), "failed": counts,
        "format": cfg.format,
        "segments": [{k: r[k] for k in ("ytid", "start", "end", "labels", "file")}
                     for r in obtained],
        "failures": [{k: r.get(k) for k in ("ytid", "start", "end", "reason", "detail")}
                     for r in failed],
    }
    write_json(out / "audioset.json", summary)
    lines = ["# AudioSet segments obtained by harness data audioset",
             f"# from {csv_path.name}: {len(obtained)} of {len(segments)} segments",
             "# YTID, start_seconds, end_seconds, positive_labels"]
    lines += [f'{r["ytid"]}, {r["start"]:.3f}, {r["end"]:.3f}, "{",".join(r["labels"])}"'
              for r in obtained]
    write_text(out / "obtained.csv", "\n".join(lines) + "\n")
    return summary


def ingest_metadata(summary: dict[str, Any]) -> dict[str, Any]:
    """What a clip dataset made from these downloads records about them."""
    return {"audioset": {k: summary[k] for k in ("csv", "csv_sha256", "requested", "obtained",
                                                  "failed")}
            | {"obtained_ids": [f'{s["ytid"]}:{s["start"]:g}' for s in summary["segments"]]}}


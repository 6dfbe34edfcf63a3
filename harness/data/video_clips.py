"""One video cut into clips: its audio decoded, mixed down to mono and resampled by
FFmpeg (through PyAV), the frame nearest each target time scaled and centre-cropped
square, and each frame's audio window written as a 16-bit WAV
(:func:`ingest_video`). :mod:`harness.data.ingest` runs it over a folder of videos.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from harness.data.ingest import IngestConfig


class SkipVideo(Exception):
    """A video that gives no clips; ``reason`` is one of SKIP_REASONS."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class _Timer:
    decode: float = 0.0
    other: float = 0.0


def video_key(rel: str, size: int, mtime_ns: int) -> str:
    """A folder name for one version of one video: readable slug + content-version hash."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", rel)[-60:].strip("._") or "video"
    digest = hashlib.sha1(f"{rel}\0{size}\0{mtime_ns}".encode()).hexdigest()[:10]
    return f"{slug}-{digest}"


def _decode_audio(path: Path, cfg: IngestConfig, timer: _Timer) -> tuple[float, np.ndarray]:
    """(start time, mono float32 samples at cfg.sample_rate) of the first audio track."""
    import av

    t_open = time.perf_counter()
    with av.open(str(path)) as container:
        timer.decode += time.perf_counter() - t_open
        if not container.streams.audio:
            raise SkipVideo("no_audio", "no audio track")
        if not container.streams.video:
            raise SkipVideo("no_video", "no video track")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=cfg.sample_rate)
        chunks, start = [], None
        t0 = time.perf_counter()
        for packet in container.demux(stream):
            for frame in packet.decode():
                if start is None:
                    start = float(frame.time) if frame.time is not None else 0.0
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        timer.decode += time.perf_counter() - t0
    if start is None or not chunks:
        raise SkipVideo("no_audio", "audio track holds no decodable samples")
    return start, np.concatenate(chunks).astype(np.float32, copy=False)


def _square(frame, size: int) -> np.ndarray:
    """The frame scaled so its shorter side is ``size``, centre-cropped: uint8 [size, size, 3]."""
    w, h = frame.width, frame.height
    scale = size / min(w, h)
    sw, sh = max(size, round(w * scale)), max(size, round(h * scale))
    rgb = frame.reformat(width=sw, height=sh, format="rgb24", interpolation="AREA").to_ndarray()
    y0, x0 = (sh - size) // 2, (sw - size) // 2
    return rgb[y0:y0 + size, x0:x0 + size]


def _decode_frames(path: Path, cfg: IngestConfig, audio_start: float, audio_end: float,
                   out_dir: Path, timer: _Timer) -> list[tuple[float, str]]:
    """Save the frame nearest each target time; return [(time, file name)] in order."""
    import av
    from PIL import Image

    saved: list[tuple[float, str]] = []
    t_open = time.perf_counter()
    with av.open(str(path)) as container:
        timer.decode += time.perf_counter() - t_open
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        targets: list[float] | None = None
        prev = None  # (time, frame) of the previous decoded frame
        t0 = time.perf_counter()

        def take(t_target: float, t_frame: float, frame) -> None:
            nonlocal t0
            timer.decode += time.perf_counter() - t0
            t1 = time.perf_counter()
            name = f"f{len(saved):05d}.jpg"
            Image.fromarray(_square(frame, cfg.frame_size)).save(out_dir / name,
                                                                 quality=cfg.jpeg_quality)
            saved.append((t_target, name))
            timer.other += time.perf_counter() - t1
            t0 = time.perf_counter()

        for i, frame in enumerate(container.decode(stream)):
            t = float(frame.time) if frame.time is not None else i / rate
            if targets is None:
                targets = cfg.targets(max(t, audio_start), audio_end)
                if not targets:
                    break
            while len(saved) < len(targets) and t >= targets[len(saved)]:
                target = targets[len(saved)]
                if prev is not None and abs(prev[0] - target) < abs(t - target):
                    take(target, *prev)
                else:
                    take(target, t, frame)
            if len(saved) == len(targets):
                break
            prev = (t, frame)
        else:  # the video ended: the next target may still be within a frame of the last one
            if targets and prev is not None and len(saved) < len(targets) \
                    and targets[len(saved)] - prev[0] <= 1.0 / rate + 1e-6:
                take(targets[len(saved)], *prev)
        timer.decode += time.perf_counter() - t0
        if targets is None:
            raise SkipVideo("no_video", "video track holds no decodable frames")
    return saved


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    import soundfile as sf

    buf = io.BytesIO()  # soundfile fsyncs files it closes; writing the bytes is faster
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    path.write_bytes(buf.getvalue())


def ingest_video(path: Path, rel: str, key: str, out: Path, cfg: IngestConfig) -> dict[str, Any]:
    """Cut one video into clips under ``out/clips/<key>``; return its state record.

    Never raises for a bad video: the record then says ``skipped`` with the reason.
    """
    import av

    timer = _Timer()
    record: dict[str, Any] = {"video": rel, "key": key}
    clip_dir = out / "clips" / key
    try:
        clip_dir.mkdir(parents=True, exist_ok=True)
        audio_start, audio = _decode_audio(path, cfg, timer)
        audio_end = audio_start + audio.size / cfg.sample_rate
        if audio_end - audio_start < cfg.window:
            raise SkipVideo("too_short", f"{audio_end - audio_start:.2f} s of audio, "
                                         f"the window is {cfg.window} s")
        frames = _decode_frames(path, cfg, audio_start, audio_end, clip_dir, timer)
        if not frames:
            raise SkipVideo("too_short", f"no frame with a whole {cfg.window} s audio window")
        t1 = time.perf_counter()
        n = int(round(cfg.window * cfg.sample_rate))
        rows = []
        for k, (t, frame_name) in enumerate(frames):
            begin = int(round((cfg.window_start(t) - audio_start) * cfg.sample_rate))
            begin = min(max(begin, 0), audio.size - n)
            wav_name = f"a{k:05d}.wav"
            _write_wav(clip_dir / wav_name, np.clip(audio[begin:begin + n], -1, 1), cfg.sample_rate)
            rows.append({"clip_id": f"{key}-{k:05d}", "video": rel, "timestamp": t,
                         "frame": f"clips/{key}/{frame_name}", "audio": f"clips/{key}/{wav_name}",
                         "sample_rate": cfg.sample_rate})
        timer.other += time.perf_counter() - t1
        record.update(status="done", rows=rows)
    except SkipVideo as skip:
        record.update(status="skipped", reason=skip.reason, detail=skip.detail)
    except (av.FFmpegError, OSError, ValueError, RuntimeError, IndexError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        detail = detail.replace(f": '{path}'", "").replace(str(path), rel)
        record.update(status="skipped", reason="undecodable", detail=detail)
    if record["status"] == "skipped":
        import shutil

        shutil.rmtree(clip_dir, ignore_errors=True)
    record["timing"] = {"decode_s": round(timer.decode, 4), "other_s": round(timer.other, 4)}
    return record

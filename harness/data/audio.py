"""Reading audio: any file soundfile or PyAV decodes, as a mono float waveform at a chosen rate.

:func:`load_audio` reads WAV/FLAC/OGG/... with soundfile (libsndfile) and everything else
(MP3, M4A/AAC, the audio track of a video) with PyAV (FFmpeg); it averages the channels,
scales integer samples to [-1, 1] and resamples with soxr (its "very high quality"
setting). :func:`fit_window` then takes the exact window a representation needs.

Every problem is a :class:`harness.api.errors.BadInputError` whose message starts with the
file's path: missing, empty, undecodable, truncated, no audio stream, no samples, NaN or
Inf samples, shorter than the window.
"""

from __future__ import annotations

import math
import os
import struct
from enum import Enum
from pathlib import Path

import numpy as np

from harness.api.errors import BadInputError

#: bumped when loading changes in a way that changes the samples (part of cache keys)
LOADER_VERSION = "audio/1 soundfile|pyav mean-mix soxr-VHQ"
#: window placements accepted by :func:`fit_window`
WINDOW_POSITIONS = ("center", "start")


class Window(str, Enum):
    """Where a window sits in a longer recording, or where a frame sits in its window
    (``--window`` of ``harness features`` and ``harness data ingest``)."""

    center = "center"
    start = "start"


def load_audio(path: str | os.PathLike, sample_rate: int | None = None) -> np.ndarray:
    """Mono float64 samples of ``path``, resampled to ``sample_rate`` (None: keep the file's)."""
    data, rate = read_audio(path)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(mono)):
        raise BadInputError(f"{path}: contains NaN or Inf samples")
    if sample_rate is not None and sample_rate != rate:
        mono = resample(mono, rate, sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float64)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """All channels of ``path`` as float64 [frames, channels] in [-1, 1], and the sample rate."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise BadInputError(f"{path}: empty file")
    try:
        data, rate = _read_soundfile(path)
    except _NotForSoundfile as exc:
        try:
            data, rate = _read_pyav(path)
        except _NotForPyAV as exc2:
            raise BadInputError(f"{path}: cannot decode audio (soundfile: {exc}; PyAV: {exc2})") from None
    if data.shape[0] == 0:
        raise BadInputError(f"{path}: no audio samples")
    return data, rate


def resample(x: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling (soxr, very high quality) of a 1-D float signal."""
    import soxr

    return soxr.resample(np.asarray(x, dtype=np.float64), source_rate, target_rate, quality="VHQ")


def fit_window(x: np.ndarray, num_samples: int, *, source: str, position: str = "center",
               sample_rate: int | None = None, source_rate: int | None = None) -> np.ndarray:
    """Exactly ``num_samples`` samples of ``x``: the centred (or first) window of a longer clip.

    A clip shorter than the window is rejected, never padded with silence (that would
    change every statistic) -- except for the rounding of resampling: a window saved with
    round(seconds x rate) samples at another rate may come out a sample or two short, and
    those are filled by reflecting the last samples.
    """
    if position not in WINDOW_POSITIONS:
        raise BadInputError(f"window position must be one of {WINDOW_POSITIONS}, got {position!r}")
    n = x.shape[0]
    if n >= num_samples:
        start = (n - num_samples) // 2 if position == "center" else 0
        return x[start:start + num_samples]
    tolerance = 1
    if sample_rate and source_rate:
        tolerance = max(1, math.ceil(sample_rate / source_rate))
    if num_samples - n <= tolerance and n > tolerance:
        return np.pad(x, (0, num_samples - n), mode="reflect")
    rate = f" at {sample_rate} Hz" if sample_rate else ""
    need = f"{num_samples / sample_rate:.3f} s" if sample_rate else f"{num_samples} samples"
    have = f"{n / sample_rate:.3f} s" if sample_rate else f"{n} samples"
    raise BadInputError(f"{source}: clip is {have}{rate}, shorter than the {need} window")


def audio_rate(path: str | os.PathLike) -> int | None:
    """The file's own sample rate if soundfile can tell cheaply, else None."""
    import soundfile as sf

    try:
        return int(sf.info(str(path)).samplerate)
    except Exception:  # noqa: BLE001 - only a hint for fit_window's tolerance
        return None


# ----------------------------------------------------------------------------- soundfile
class _NotForSoundfile(Exception):
    """soundfile cannot read the file (maybe PyAV can)."""


class _NotForPyAV(Exception):
    """PyAV cannot read the file either."""


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            declared = f.frames
            rate = f.samplerate
            data = f.read(dtype="float64", always_2d=True)
            fmt = f.format
    except sf.LibsndfileError as exc:
        raise _NotForSoundfile(str(exc).split(":")[-1].strip() or str(exc)) from None
    except (RuntimeError, TypeError, ValueError) as exc:
        raise _NotForSoundfile(str(exc)) from None
    if data.shape[0] < declared:
        raise BadInputError(f"{path}: truncated file (its header declares {declared} frames, "
                            f"only {data.shape[0]} could be read)")
    if fmt in ("WAV", "WAVEX"):
        _check_wav_length(path)
    return data, int(rate)


def _check_wav_length(path: Path) -> None:
    """libsndfile silently reads a cut WAV: compare its data chunk's declared size to the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                available = size - offset - 8
                if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > available:
                    raise BadInputError(f"{path}: truncated file (the WAV header declares "
                                        f"{chunk_size} bytes of samples, the file holds {available})")
                return
            offset += 8 + chunk_size + (chunk_size & 1)


# ----------------------------------------------------------------------------- PyAV
def _read_pyav(path: Path) -> tuple[np.ndarray, int]:
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _NotForPyAV(str(exc)) from None
    with container:
        if not container.streams.audio:
            raise BadInputError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate or stream.rate
        chunks: list[np.ndarray] = []
        # convert every frame to float64 planar without touching rate or channel layout
        converter = None
        try:
            for frame in container.decode(stream):
                if converter is None:
                    converter = av.AudioResampler(format="dblp", layout=frame.layout, rate=frame.sample_rate)
                for out in converter.resample(frame):
                    chunks.append(out.to_ndarray())
            if converter is not None:
                for out in converter.resample(None):
                    chunks.append(out.to_ndarray())
        except (av.FFmpegError, ValueError) as exc:
            decoded = sum(c.shape[1] for c in chunks) / rate if rate else 0.0
            raise BadInputError(f"{path}: truncated or corrupt audio (decoding failed after "
                                f"{decoded:.2f} s: {exc})") from None
        declared = float(stream.duration * stream.time_base) if stream.duration else None
    if not chunks:
        raise BadInputError(f"{path}: no audio samples")
    data = np.concatenate(chunks, axis=1).T
    if declared is not None and rate:
        decoded = data.shape[0] / rate
        if decoded < declared - max(0.5, 0.1 * declared):
            raise BadInputError(f"{path}: truncated file (the container declares {declared:.2f} s "
                                f"of audio, only {decoded:.2f} s could be decoded)")
    return np.ascontiguousarray(data, dtype=np.float64), int(rate)

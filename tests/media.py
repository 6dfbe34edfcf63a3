"""Small real-format media fixtures for the data tests (written with PyAV, no downloads)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

#: (container suffix, video codec, audio codec) combinations the tests exercise
FORMATS = {
    "mp4": ("libx264", "aac"),
    "mkv": ("mpeg4", "libopus"),
    "webm": ("libvpx", "libopus"),
    "avi": ("mpeg4", "libmp3lame"),
}
#: audio channel layouts by channel count
LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def write_video(path: str | Path, seconds: float, *, fps: int = 10, size: tuple[int, int] = (64, 48),
                audio: bool = True, video: bool = True, sample_rate: int = 44100,
                channels: int = 2, tone_hz: float = 440.0, vcodec: str | None = None,
                acodec: str | None = None, audio_seconds: float | None = None) -> Path:
    """A short video: a moving colour gradient and a tone (frequency ``tone_hz``) on
    ``channels`` channels (1 mono, 2 stereo, 6 the 5.1 layout), ``audio_seconds`` long
    (default: as long as the picture).

    The frame's red channel encodes time (brightness ramps with t), so tests can check
    which frame was picked.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    default_v, default_a = FORMATS.get(path.suffix.lstrip("."), ("mpeg4", "aac"))
    w, h = size
    with av.open(str(path), mode="w") as out:
        vs = as_ = None
        if video:
            vs = out.add_stream(vcodec or default_v, rate=fps)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if audio:
            codec = acodec or default_a
            rate = 48000 if codec == "libopus" else sample_rate
            as_ = out.add_stream(codec, rate=rate)
            as_.layout = LAYOUTS[channels]
        n_frames = int(round(seconds * fps))
        if vs is not None:
            for i in range(n_frames):
                t = i / fps
                img = np.zeros((h, w, 3), np.uint8)
                img[..., 0] = int(min(255, t / max(seconds, 1e-9) * 255))
                img[..., 1] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
                img[..., 2] = (i * 7) % 256
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = i
                frame.time_base = Fraction(1, fps)
                for packet in vs.encode(frame):
                    out.mux(packet)
            for packet in vs.encode():
                out.mux(packet)
        if as_ is not None:
            rate = as_.rate
            total = int(round((seconds if audio_seconds is None else audio_seconds) * rate))
            chunk = as_.codec_context.frame_size or 1024
            layout = LAYOUTS[channels]
            for start in range(0, total, chunk):
                t = (np.arange(start, min(total, start + chunk)) / rate).astype(np.float32)
                tone = 0.3 * np.sin(2 * np.pi * tone_hz * t)
                data = np.stack([tone] * channels).astype(np.float32)
                frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=layout)
                frame.sample_rate = rate
                frame.pts = start
                frame.time_base = Fraction(1, rate)
                for packet in as_.encode(frame):
                    out.mux(packet)
            for packet in as_.encode():
                out.mux(packet)
    return path


def write_corrupt(path: str | Path, seconds: float = 4.0) -> Path:
    """A real video whose middle is overwritten with garbage (header intact or not)."""
    path = write_video(path, seconds)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    data[len(data) // 8:] = rng.integers(0, 256, len(data) - len(data) // 8, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path

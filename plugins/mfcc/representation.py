"""The ``mfcc`` representation: librosa's MFCCs of a 3.75 s window, flattened (20 x 155 = 3,100).

Why 155 frames. The paper's text (10 kHz, 256-point Hamming window, 12.8 ms hop) would
give 1 + 37,500 // 128 = 293 frames, not the 155 it reports; the seed's own code
resampled to 21 kHz and called librosa with its defaults (n_fft 2048, hop 512, Hann,
centred frames, 128 mel bands). A 3.75 s window is then 78,750 samples, which librosa
frames as 1 + 78,750 // 512 = 154 frames; the 155th is the window's last, partial hop
(78,750 = 153 * 512 + 414). We count it, as 1 + ceil(n / hop) = 155, by completing that hop
with zeros (98 samples) before framing, so every window gives exactly ``n_frames`` frames:
fewer frames are completed with zeros the same way, more are cut. Every parameter is an
option; ``sample_rate=10000, n_fft=256, hop_length=128, window="hamming", n_mels=20,
n_frames=293`` is the paper's text taken literally.

On the CPU the batch goes through librosa itself; on a GPU through an equivalent torch
pipeline (:mod:`.torch_mfcc`), checked against librosa in the tests.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Annotated, Any, ClassVar

import librosa
import numpy as np

from harness.api.errors import BadClipError, BadInputError
from harness.api.interfaces import Bounds, SoundRepresentation

#: the largest FFT, window, hop and frame count accepted (2^16 samples is 3 s at 21 kHz)
_SAMPLES = Bounds(1, 1 << 16)


#: clips per librosa call on the CPU (their spectrograms, ~10 MB, stay in cache)
CPU_BLOCK = 8


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _blas_single_thread():
    """A context in which BLAS (numpy's matmul) uses one thread; restored on exit."""
    return _blas_controller().limit(limits=1, user_api="blas")


@dataclass(frozen=True)
class MfccConfig:
    """Every parameter of the MFCC computation (librosa's names and defaults)."""

    sample_rate: int = 21_000
    clip_seconds: float = 3.75
    n_mfcc: int = 20
    n_frames: int = 155
    n_fft: int = 2048
    hop_length: int = 512
    win_length: int | None = None
    window: str = "hann"
    center: bool = True
    pad_mode: str = "constant"
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    htk: bool = False
    mel_norm: str | None = "slaney"
    power: float = 2.0
    amin: float = 1e-10
    top_db: float | None = 80.0
    dct_type: int = 2
    dct_norm: str | None = "ortho"
    lifter: float = 0.0

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def padded_length(self) -> int:
        """Samples after completing the window with zeros so it frames into n_frames."""
        if self.center:
            needed = (self.n_frames - 1) * self.hop_length
        else:
            needed = (self.n_frames - 1) * self.hop_length + self.n_fft
        return max(self.num_samples, needed)


class Mfcc(SoundRepresentation):
    """librosa MFCCs of the window, a fixed number of frames, flattened coefficient-major."""

    name: ClassVar[str] = "mfcc"
    description: ClassVar[str] = "librosa MFCC, 20 coefficients x 155 frames = 3,100 values (21 kHz, 3.75 s)"
    sample_rate: int = MfccConfig.sample_rate
    dim: int = MfccConfig.n_mfcc * MfccConfig.n_frames

    def __init__(self, *, sample_rate: Annotated[int, Bounds(1000, 192_000)] = 21_000,
                 clip_seconds: Annotated[float, Bounds(0.01, 60.0)] = 3.75,
                 n_mfcc: Annotated[int, Bounds(1, 1024)] = 20,
                 n_frames: Annotated[int, _SAMPLES] = 155,
                 n_fft: Annotated[int, _SAMPLES] = 2048,
                 hop_length: Annotated[int, _SAMPLES] = 512,
                 win_length: Annotated[int, _SAMPLES] | None = None, window: str = "hann",
                 center: bool = True, pad_mode: str = "constant",
                 n_mels: Annotated[int, Bounds(1, 1024)] = 128,
                 fmin: Annotated[float, Bounds(0.0, None)] = 0.0,
                 fmax: Annotated[float, Bounds(0.0, None)] | None = None, htk: bool = False,
                 mel_norm: str | None = "slaney", power: Annotated[float, Bounds(0.0, None)] = 2.0,
                 amin: Annotated[float, Bounds(0.0, None)] = 1e-10,
                 top_db: Annotated[float, Bounds(0.0, None)] | None = 80.0,
                 dct_type: Annotated[int, Bounds(1, 3)] = 2, dct_norm: str | None = "ortho",
                 lifter: Annotated[float, Bounds(0.0, None)] = 0.0):
        self.config = MfccConfig(
            sample_rate=int(sample_rate), clip_seconds=float(clip_seconds), n_mfcc=int(n_mfcc),
            n_frames=int(n_frames), n_fft=int(n_fft), hop_length=int(hop_length),
            win_length=None if win_length is None else int(win_length), window=str(window),
            center=bool(center), pad_mode=str(pad_mode), n_mels=int(n_mels), fmin=float(fmin),
            fmax=None if fmax is None else float(fmax), htk=bool(htk), mel_norm=mel_norm,
            power=float(power), amin=float(amin), top_db=None if top_db is None else float(top_db),
            dct_type=int(dct_type), dct_norm=dct_norm, lifter=float(lifter))
        c = self.config
        for field_name in ("sample_rate", "n_mfcc", "n_frames", "n_fft", "hop_length", "n_mels"):
            if getattr(c, field_name) < 1:
                raise BadInputError(f"mfcc: {field_name} must be >= 1")
        if c.n_mfcc > c.n_mels:
            raise BadInputError("mfcc: n_mfcc cannot exceed n_mels")
        self.sample_rate = c.sample_rate
        self.clip_seconds = c.clip_seconds
        self.dim = c.n_mfcc * c.n_frames
        self._mel_basis = librosa.filters.mel(sr=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels,
                                              fmin=c.fmin, fmax=c.fmax, htk=c.htk, norm=c.mel_norm)

    def params(self) -> dict[str, Any]:
        return {**asdict(self.config), "librosa": librosa.__version__}

    def invalid_reason(self, waveform: np.ndarray) -> str | None:
        reason = super().invalid_reason(waveform)
        if reason is None and not np.any(waveform):
            reason = "digitally silent clip (every sample is zero)"
        return reason

    def compute(self, waveforms: np.ndarray, *, dtype: Any = np.float32,
                device: str = "cpu") -> np.ndarray:
        """MFCCs [B, n_mfcc * n_frames]; computed in float64 when float64 is asked for."""
        waveforms = np.asarray(waveforms)
        self.validate(waveforms)
        work = np.float64 if np.dtype(dtype) == np.float64 else np.float32
        y = self._pad(waveforms.astype(work, copy=False))
        if device == "cpu":  # blocks of clips keep the spectrograms in cache
            coeffs = np.concatenate([self._librosa_mfcc(y[i:i + CPU_BLOCK])
                                     for i in range(0, len(y), CPU_BLOCK)])
        else:
            from .torch_mfcc import torch_mfcc

            coeffs = torch_mfcc(y, self.config, self._mel_basis, device)
        out = coeffs[..., : self.config.n_frames].reshape(len(y), -1).astype(dtype, copy=False)
        if not np.isfinite(out).all():  # cannot happen with amin > 0; never let it out
            raise BadClipError("MFCCs are not finite", index=int(np.flatnonzero(~np.isfinite(out).all(1))[0]))
        return out

    def _pad(self, y: np.ndarray) -> np.ndarray:
        extra = self.config.padded_length - y.shape[-1]
        return np.pad(y, ((0, 0), (0, extra))) if extra > 0 else y

    def _librosa_mfcc(self, y: np.ndarray) -> np.ndarray:
        """librosa, batched: [B, n] -> [B, n_mfcc, frames]."""
        c = self.config
        spec = np.abs(librosa.stft(y, n_fft=c.n_fft, hop_length=c.hop_length,
                                   win_length=c.win_length, window=c.window, center=c.center,
                                   pad_mode=c.pad_mode)) ** c.power
        # one small GEMM per clip (not librosa's einsum over the whole batch, whose float32
        # rounding depends on the batch), single-threaded: for GEMMs this small, BLAS threads
        # cost more in synchronisation than they save
        with _blas_single_thread():
            mel = np.matmul(self._mel_basis.astype(y.dtype), spec)
        db = librosa.power_to_db(mel, ref=1.0, amin=c.amin, top_db=None)
        if c.top_db is not None:  # per clip: librosa's top_db would use the batch's maximum
            db = np.maximum(db, db.max(axis=(-2, -1), keepdims=True) - c.top_db)
        return librosa.feature.mfcc(S=db, n_mfcc=c.n_mfcc, dct_type=c.dct_type,
                                    norm=c.dct_norm, lifter=c.lifter)

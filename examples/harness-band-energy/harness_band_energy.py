"""A sound representation in one module: mean and spread of log band energies.

Split the window into 50 ms frames, take the power spectrum of each, sum it in ``bands``
equal-width bands, and describe each band's log energy over time by its mean and standard
deviation: a ``2 * bands`` vector per clip.
"""

from __future__ import annotations

import numpy as np

from harness.api.hookspecs import hookimpl
from harness.api.interfaces import SoundRepresentation


class BandEnergy(SoundRepresentation):
    """Mean and std of log energy in equal-width frequency bands."""

    name = "band_energy"
    description = "Mean and std of log energy in equal-width bands (example plugin)"

    def __init__(self, *, bands: int = 16, sample_rate: int = 16000, frame_ms: float = 50.0):
        self.bands = bands
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.dim = 2 * bands

    def params(self) -> dict:
        return {"bands": self.bands, "sample_rate": self.sample_rate, "frame_ms": self.frame_ms}

    def invalid_reason(self, waveform: np.ndarray) -> str | None:
        reason = super().invalid_reason(waveform)
        if reason is None and not np.any(waveform):
            reason = "clip is digitally silent"
        return reason

    def compute(self, waveforms, *, dtype=np.float32, device="cpu"):
        waveforms = np.asarray(waveforms, dtype=np.float64)
        self.validate(waveforms)
        frame = int(self.sample_rate * self.frame_ms / 1000)
        n_frames = waveforms.shape[1] // frame
        frames = waveforms[:, : n_frames * frame].reshape(len(waveforms), n_frames, frame)
        power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2             # [B, T, F]
        edges = np.linspace(0, power.shape[-1], self.bands + 1).astype(int)
        energy = np.add.reduceat(power, edges[:-1], axis=-1)          # [B, T, bands]
        log_e = np.log(energy + 1e-12)
        out = np.concatenate([log_e.mean(axis=1), log_e.std(axis=1)], axis=1)
        return out.astype(dtype)


@hookimpl
def harness_register_reprs(register):
    register(BandEnergy)

"""The ``sound_texture`` representation: 502 McDermott-Simoncelli texture statistics per clip.

Two modes, recorded in :meth:`SoundTexture.params`:

* ``exact`` (default): float64 throughout and GNU Octave's 3,623-tap resampling kernel, as
  the toolbox computes it; matches the toolbox's outputs to ~1e-13. On a CPU each band
  is inverse-transformed from its own support (:mod:`.baseband`); on a GPU the
  full-length transforms of :mod:`.envelopes` run instead (same numbers to ~1e-15).
* ``fast``: on a CPU, each band's envelope is computed on a coarse grid of a few times
  its bandwidth (:mod:`.baseband`, ``BasebandConfig.oversample``) and low-passed with the same
  kernel; the only error is the aliasing of the compressed envelope, measured on the
  reference clips in tests/test_sound_texture.py and benchmarks/LOG.md (2026-12-02). On a GPU,
  fast mode is the full-length computation in float32 (that torch code, run on a CPU,
  is within 5e-7 of exact on the reference clips by the same measure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from harness.api.errors import BadClipError, BadInputError
from harness.api.interfaces import SoundRepresentation

from .layout import feature_dim

if TYPE_CHECKING:  # torch is imported when features are computed, so listing plugins needs none
    import torch

#: mode -> GPU compute dtype (the CPU path is float64 in exact mode, see baseband.py)
MODES: dict[str, str] = {
    "exact": "float64",
    "fast": "float32",
}


class SoundTexture(SoundRepresentation):
    """McDermott & Simoncelli's sound-texture statistics, Owens et al.'s 502-d subset."""

    name: ClassVar[str] = "sound_texture"
    description: ClassVar[str] = ("502 sound-texture statistics (McDermott & Simoncelli "
                                  "toolbox, Owens et al.'s subset), 20 kHz, 3.75 s")
    sample_rate: ClassVar[int] = 20_000
    clip_seconds: ClassVar[float] = 3.75
    n_bands: ClassVar[int] = 30
    n_mod: ClassVar[int] = 10
    env_rate: ClassVar[int] = 400
    dim: ClassVar[int] = feature_dim(n_bands + 2, n_mod)

    def __init__(self, *, mode: str = "exact", loudness_floor: float = 1e-6,
                 chunk_rows: int | None = None):
        """``loudness_floor``: clips whose loudness l is below it are digital silence.

        l grows like level^0.3: the reference clips (RMS 0.05) have l ~ 1.4, a -70 dBFS
        room tone ~ 0.12, and l = 1e-6 needs an RMS near 1e-22, far below any recording's
        noise floor; only (nearly) all-zero input falls below it. ``chunk_rows`` bounds
        GPU memory (rows of clip x band processed at once, default 4,096) and does not
        change the output; the CPU path works one clip at a time on torch's thread count.
        """
        if mode not in MODES:
            raise BadInputError(f"sound_texture: mode must be one of {sorted(MODES)}, got {mode!r}")
        if not loudness_floor >= 0:
            raise BadInputError("sound_texture: loudness_floor must be >= 0")
        if chunk_rows is not None and chunk_rows < 1:
            raise BadInputError("sound_texture: chunk_rows must be >= 1")
        self.mode = mode
        self.loudness_floor = float(loudness_floor)
        self.chunk_rows = chunk_rows
        # the envelope settings' modules import torch: here, not when the class is declared
        from .baseband import BasebandConfig
        from .envelopes import EnvelopeConfig

        factor = self.sample_rate // self.env_rate
        self.config = EnvelopeConfig(num_samples=self.num_samples, sample_rate=self.sample_rate,
                                     n_bands=self.n_bands, factor=factor, downsampler="octave")
        self.cpu_config = BasebandConfig(num_samples=self.num_samples, sample_rate=self.sample_rate,
                                         n_bands=self.n_bands, factor=factor, mode=mode)

    @property
    def compute_dtype(self) -> torch.dtype:
        """The torch dtype of the GPU path in this mode (:data:`MODES`)."""
        import torch

        return getattr(torch, MODES[self.mode])

    def params(self) -> dict[str, Any]:
        from .envelopes import resample_kernel

        taps = resample_kernel(self.config).size
        if self.mode == "exact":
            envelope = "full-rate envelopes, float64 (CPU: per-band pruned inverse FFTs)"
        else:
            envelope = (f"CPU: coarse grid of {self.cpu_config.oversample:g}x each band's support, "
                        "complex64 transforms; GPU: full-rate envelopes, float32")
        return {
            "mode": self.mode,
            "compute_dtype": "float64" if self.mode == "exact" else "float32",
            "envelope": envelope,
            "downsampler": f"octave ({taps}-tap Kaiser FIR, {self.sample_rate} -> {self.env_rate} Hz)",
            "loudness_floor": self.loudness_floor,
            "sample_rate": self.sample_rate,
            "clip_seconds": self.clip_seconds,
            "cochlear_channels": self.n_bands + 2,
            "modulation_channels": self.n_mod,
            "compression": self.config.compression,
        }

    def invalid_reason(self, waveform: np.ndarray) -> str | None:
        reason = super().invalid_reason(waveform)
        if reason is None and not np.any(waveform):
            reason = "digitally silent clip (every sample is zero)"
        return reason

    # ------------------------------------------------------------------ computing
    def envelopes(self, waveforms: np.ndarray, device: str = "cpu") -> np.ndarray:
        """The compressed 400 Hz subband envelopes [B, 32, 1500] (float64 in exact mode)."""
        import torch

        self.validate(np.asarray(waveforms))
        with torch.inference_mode():
            return self._envelopes(waveforms, device).cpu().numpy()

    def compute(self, waveforms: np.ndarray, *, dtype: Any = np.float32,
                device: str = "cpu") -> np.ndarray:
        import torch

        from .statistics import assemble, texture_statistics

        waveforms = np.asarray(waveforms)
        self.validate(waveforms)
        with torch.inference_mode():
            stats = texture_statistics(self._envelopes(waveforms, device), self.env_rate, self.n_mod)
            self._reject_degenerate(stats)
            feats = assemble(stats)
        out = feats.cpu().numpy().astype(dtype, copy=False)
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if bad.size:  # e.g. float32 overflow; never let NaN/Inf out
            raise BadClipError("texture statistics are not finite", index=int(bad[0]))
        return out

    def _envelopes(self, waveforms: np.ndarray, device: str) -> torch.Tensor:
        import torch

        from .baseband import get_baseband_plan
        from .envelopes import envelopes, get_plan

        dev = torch.device(device)
        if dev.type == "cpu":
            plan = get_baseband_plan(self.cpu_config)
            env = plan.envelopes(np.asarray(waveforms), threads=torch.get_num_threads())
            return torch.from_numpy(env)
        plan = get_plan(self.config, str(dev), self.compute_dtype)
        x = torch.as_tensor(np.asarray(waveforms), device=dev).to(self.compute_dtype)
        chunk = self.chunk_rows or 4096
        return envelopes(x, plan, chunk_rows=chunk)

    def _reject_degenerate(self, stats: dict[str, torch.Tensor]) -> None:
        """Raise BadClipError for the first clip that is silent or has a flat band."""
        import torch

        quiet = stats["loudness"] < self.loudness_floor
        flat_bands = (stats["var"] <= 0) | (stats["mean"] <= 0)
        bad = torch.nonzero(quiet | flat_bands.any(dim=1))
        if bad.numel() == 0:
            return
        index = int(bad[0, 0])
        if quiet[index]:
            raise BadClipError(f"digitally silent clip: loudness {float(stats['loudness'][index]):.3g}"
                               f" is below the floor {self.loudness_floor:g}", index=index)
        bands = torch.nonzero(flat_bands[index]).flatten().tolist()
        raise BadClipError("texture statistics undefined: constant envelope in cochlear "
                           f"band(s) {bands}", index=index)

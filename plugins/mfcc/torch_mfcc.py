"""The same MFCC pipeline as librosa's, in torch, for a batch on a GPU.

Framing (centred, padded with ``pad_mode``), the window (librosa's ``get_window``, padded
to ``n_fft``), the mel basis (librosa's own matrix), power_to_db with a per-clip
``top_db`` floor, the DCT (as a matrix: scipy's DCT of the identity) and the lifter all
follow librosa; tests compare the two on the CPU.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import torch
from librosa.filters import get_window
from librosa.util import pad_center

from .representation import MfccConfig


def torch_mfcc(y: np.ndarray, config: MfccConfig, mel_basis: np.ndarray, device: str) -> np.ndarray:
    """[B, n] (already padded to config.padded_length) -> [B, n_mfcc, frames] as numpy."""
    c = config
    dtype = torch.float64 if y.dtype == np.float64 else torch.float32
    dev = torch.device(device)
    win_length = c.win_length or c.n_fft
    window = pad_center(get_window(c.window, win_length, fftbins=True), size=c.n_fft)
    with torch.inference_mode():
        x = torch.as_tensor(y, device=dev, dtype=dtype)
        spec = torch.stft(x, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.n_fft,
                          window=torch.as_tensor(window, device=dev, dtype=dtype),
                          center=c.center, pad_mode=c.pad_mode, return_complex=True)
        power = spec.abs().pow(c.power)
        mel = torch.as_tensor(mel_basis, device=dev, dtype=dtype) @ power
        db = 10.0 * torch.log10(mel.clamp_min(c.amin))
        if c.top_db is not None:
            peak = db.amax(dim=(-2, -1), keepdim=True)
            db = torch.maximum(db, peak - c.top_db)
        dct = scipy.fft.dct(np.eye(c.n_mels), type=c.dct_type, norm=c.dct_norm, axis=0)[: c.n_mfcc]
        coeffs = torch.as_tensor(dct, device=dev, dtype=dtype) @ db
        if c.lifter > 0:
            k = torch.arange(1, c.n_mfcc + 1, device=dev, dtype=dtype)
            coeffs = coeffs * (1 + (c.lifter / 2) * torch.sin(torch.pi * k / c.lifter)).unsqueeze(-1)
        return coeffs.cpu().numpy()

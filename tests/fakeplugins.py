"""Small plugins, good and broken, for testing the plugin core."""

from types import SimpleNamespace

import numpy as np

from harness.api.hookspecs import hookimpl
from harness.api.interfaces import Labeler, Labels, SoundRepresentation


class TinyRepr(SoundRepresentation):
    """Mean and RMS of the waveform."""

    name = "tiny"
    description = "Mean and RMS (test plugin)"
    sample_rate = 1000
    dim = 2

    def __init__(self, *, scale: float = 1.0):
        self.scale = scale

    def params(self):
        return {"scale": self.scale}

    def compute(self, waveforms, *, dtype=np.float32, device="cpu"):
        w = np.asarray(waveforms, dtype=np.float64)
        self.validate(w)
        return (self.scale * np.stack([w.mean(1), np.sqrt((w**2).mean(1))], 1)).astype(dtype)


class WrongShapeRepr(TinyRepr):
    """Returns one column too many."""

    name = "wrong_shape"

    def compute(self, waveforms, *, dtype=np.float32, device="cpu"):
        out = super().compute(waveforms, dtype=dtype)
        return np.concatenate([out, out[:, :1]], axis=1)


class NoValidationRepr(TinyRepr):
    """Forgets to reject bad clips."""

    name = "no_validation"

    def compute(self, waveforms, *, dtype=np.float32, device="cpu"):
        w = np.nan_to_num(np.asarray(waveforms, dtype=np.float64))
        return np.stack([w.mean(1), np.sqrt((w**2).mean(1))], 1).astype(dtype)


class BatchDependentRepr(TinyRepr):
    """Normalises by the batch: a row depends on its neighbours."""

    name = "batch_dependent"

    def compute(self, waveforms, *, dtype=np.float32, device="cpu"):
        out = super().compute(waveforms, dtype=np.float64)
        return (out / np.abs(out).max()).astype(dtype)


class RandomLabeler(Labeler):
    """Unseeded random labels: not reproducible."""

    name = "unseeded"
    description = "random labels (test plugin)"
    output_kind = "classes"

    def params(self):
        return {}

    def fit_predict(self, features):
        return Labels(np.random.randint(0, 3, len(features)), "classes", 3)


def plugin_providing(kind_hook: str, *classes) -> SimpleNamespace:
    """A plugin object implementing one registration hook with ``classes``."""

    def impl(register):
        for cls in classes:
            register(cls)

    return SimpleNamespace(**{kind_hook: hookimpl(impl)})

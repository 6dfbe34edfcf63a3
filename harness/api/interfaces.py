"""The typed contract of each plugin kind.

Each kind is an abstract base class. A plugin provides a *class*; the core instantiates it
with keyword parameters (all optional, with documented defaults) and records
``params()`` in caches and result records, so two objects with equal ``params()`` must
produce equal outputs. :mod:`harness.api.testing` checks these promises.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily so that `harness --version` stays fast
    from harness.evaluation.ap import SplitScores
    from harness.networks.shape import BackboneNet

OutputKind = Literal["classes", "bits"]


@dataclass(frozen=True)
class Bounds:
    """The allowed range of a numeric plugin parameter: ``n_fft: Annotated[int, Bounds(1, 65536)]``.

    The registry checks every parameter against its annotation and Bounds before it
    builds the plugin (:mod:`harness.api.params`); ``None`` leaves a side open.
    """

    min: float | None = None
    max: float | None = None


#: the range of every seed (numpy's and scikit-learn's seeds are 32-bit unsigned)
SEED_BOUNDS = Bounds(0, 2**32 - 1)


class Plugin(ABC):
    """What every provided class has: a registry name, a one-line description, parameters."""

    #: the name users type (``--repr mfcc``); unique within its kind
    name: ClassVar[str]
    #: one line shown by ``harness plugins``
    description: ClassVar[str] = ""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Every parameter that determines the output, as JSON-serialisable values."""


# --------------------------------------------------------------------------- repr
class SoundRepresentation(Plugin):
    """A fixed-length vector per audio window (kind ``repr``).

    Input: a batch of mono waveforms, float, shape [B, num_samples], already at
    ``sample_rate`` (the core loads, mixes down and resamples files). Output: [B, dim],
    float32 by default, rows in input order, each row equal to what the clip alone gives.
    A clip the representation cannot describe (wrong length, NaN/Inf, digital silence)
    raises :class:`harness.api.errors.BadClipError` with its batch index; no NaN or Inf ever
    leaves ``compute``.
    """

    #: samples per second the waveforms must have
    sample_rate: int
    #: window length in seconds (the paper's 3.75 s)
    clip_seconds: float = 3.75
    #: length of the output vector
    dim: int

    @property
    def num_samples(self) -> int:
        """Samples in one window at ``sample_rate``."""
        return int(round(self.sample_rate * self.clip_seconds))

    def invalid_reason(self, waveform: np.ndarray) -> str | None:
        """Why one clip cannot be used, or None. Subclasses extend (e.g. a loudness floor)."""
        if waveform.ndim != 1:
            return f"expected a mono waveform, got shape {tuple(waveform.shape)}"
        if waveform.shape[0] != self.num_samples:
            return (f"clip has {waveform.shape[0]} samples, the window needs "
                    f"{self.num_samples} ({self.clip_seconds} s at {self.sample_rate} Hz)")
        if not np.all(np.isfinite(waveform)):
            return "clip contains NaN or Inf samples"
        return None

    def validate(self, waveforms: np.ndarray) -> None:
        """Raise BadClipError for the first clip of the batch that cannot be used."""
        from harness.api.errors import BadClipError

        if waveforms.ndim != 2:
            raise BadClipError(f"expected a batch [B, samples], got shape {tuple(waveforms.shape)}")
        for i, w in enumerate(waveforms):
            reason = self.invalid_reason(w)
            if reason is not None:
                raise BadClipError(reason, index=i)

    @abstractmethod
    def compute(self, waveforms: np.ndarray, *, dtype: Any = np.float32,
                device: str = "cpu") -> np.ndarray:
        """Features of a batch: [B, num_samples] -> [B, dim] of ``dtype``, in input order."""


# --------------------------------------------------------------------------- labeler
@dataclass
class Labels:
    """Pseudo-labels and what the trainer needs to know about them."""

    #: int64 [N] cluster ids for ``classes``; uint8 0/1 [N, L] for ``bits``
    values: np.ndarray
    kind: OutputKind
    #: number of classes, or number of bits
    num_outputs: int
    #: sizes, inertia, ... (JSON-serialisable); shown by ``harness label``
    diagnostics: dict[str, Any] = field(default_factory=dict)


class Labeler(Plugin):
    """Turns a feature matrix [N, D] into pseudo-labels (kind ``labeler``).

    ``output_kind`` says whether the labels are classes (softmax + cross-entropy) or
    bits (sigmoids + binary cross-entropy); the trainer picks its loss from it.
    The same parameters (including ``seed``) give the same labels.
    """

    output_kind: ClassVar[OutputKind]
    #: the constructor parameter that sets the number of outputs (``k`` for k-means,
    #: ``bits`` for a binary code), which ``--k`` sets; None if the labeler has none
    size_param: ClassVar[str | None] = None

    @abstractmethod
    def fit_predict(self, features: np.ndarray) -> Labels:
        """Labels for every row of ``features``; raise BadInputError on unusable input."""


# --------------------------------------------------------------------------- backbone
class Backbone(Plugin):
    """A randomly initialised network family (kind ``backbone``).

    ``create(num_outputs)`` returns a :class:`harness.networks.shape.BackboneNet`: a trunk (the
    convolutional part) and a head (the fully connected part, ending in the output layer),
    so that downstream "Head" evaluation can freeze the trunk. Nothing is downloaded.
    """

    #: the input side length the architecture was designed for (e.g. 224)
    input_size: int = 224
    #: per-channel normalisation applied to [0, 1] RGB input
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @abstractmethod
    def create(self, num_outputs: int) -> "BackboneNet":
        """A freshly initialised network with ``num_outputs`` outputs."""


# --------------------------------------------------------------------------- evaluator
@dataclass
class PretrainedModel:
    """A network to evaluate and where it came from.

    ``origin`` is ``"pretext"`` (trained by ``harness pretrain``), ``"random"`` (never
    trained: ``random:<backbone>``) or ``"supervised"``; evaluators that freeze the trunk
    recompute BatchNorm statistics for a random one.
    """

    backbone: Backbone
    net: "BackboneNet"
    origin: str
    checkpoint: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalContext:
    """Everything the core passes to an evaluator besides the model and the data.

    ``profile`` names the world the protocol is scaled to (``"toy"``, ``"paper"``; its
    typed settings, e.g. the evaluation scaling, are ``harness.profiles.get_profile(profile)``);
    ``seed`` seeds every random choice the evaluator makes; ``device`` is already resolved
    (``"cpu"``, ``"cuda:0"``); ``work_dir`` is the evaluator's own folder for resumable
    state and caches (it exists, and nothing else writes there); ``progress`` says whether
    to draw progress bars.
    """

    profile: str
    seed: int
    device: str
    work_dir: Path
    progress: bool = True


@dataclass
class EvalMetrics:
    """What every evaluator returns (the record schema requires exactly this).

    ``headline`` names the headline figure (e.g. ``"map"``) and ``formula`` says how it is
    computed (e.g. scikit-learn's non-interpolated AP, mean over 20 classes, percent);
    ``value`` is that figure. ``breakdown`` holds the per-class or per-task values it
    summarises (class name -> AP, layer -> mAP, ...), ``protocol`` every setting that
    determines the result, and ``details`` anything else JSON-serialisable the evaluator
    wants recorded (other AP formulas, loss curves, timings).

    ``test_scores`` (optional, not part of the JSON) holds the per-image class scores of
    the test split the headline was computed on (:class:`harness.evaluation.ap.SplitScores`); the
    core stores them beside the record (:mod:`harness.results.scores`) so that the leaderboard can
    resample test images for its confidence intervals.
    """

    headline: str
    formula: str
    value: float
    breakdown: dict[str, float]
    protocol: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    test_scores: "SplitScores | None" = field(default=None, repr=False, compare=False)


class Evaluator(Plugin):
    """Scores a pretrained network on a downstream task (kind ``evaluator``).

    The core calls only :meth:`evaluate`: with the network, the downstream data's folder
    (for the built-in VOC07 evaluators a VOCdevkit or VOC2007 folder) and an
    :class:`EvalContext`; it records the returned :class:`EvalMetrics` as they are.
    Settings that belong to the evaluator (a protocol preset, an iteration count) are its
    constructor parameters and appear in ``params()``; the profile and seed of the run come
    in the context. An evaluator's cache key is its ``params()`` with the context's
    profile and seed, so equal inputs must give equal metrics.
    """

    @abstractmethod
    def evaluate(self, model: PretrainedModel, data_root: Path,
                 context: EvalContext) -> EvalMetrics:
        """Train/test on ``data_root`` and return the metrics; resumable through
        ``context.work_dir``."""

    def planned_protocol(self, profile: str, seed: int = 0) -> dict[str, Any] | None:
        """The ``protocol`` dict :meth:`evaluate` would record under ``profile`` and
        ``seed``, if it can be known without running (None: it cannot).

        ``harness leaderboard --freeze`` fingerprints it, so that a protocol can be frozen
        before any test-split result is made under it.
        """
        return None


# --------------------------------------------------------------------------- logger
class Logger(Plugin):
    """Writes a run's figures where people watch them (kind ``logger``): TensorBoard event
    files, a CSV file, an experiment tracker.

    The core makes one per run, on rank 0 only, and calls :meth:`start` once, then
    :meth:`log_config` and :meth:`log_metrics` in any order and number, then :meth:`close`
    once. ``log_metrics`` receives finite numbers only, named without the prefix; a logger
    shows each as ``<prefix>/<name>`` (e.g. ``pretext/train_loss`` at step = epoch). A
    logger writes only under the folder :meth:`start` gives it, and :meth:`files` names
    what it wrote there (the run's record lists them). Logging never changes a run's
    results.
    """

    @abstractmethod
    def start(self, folder: Path, run_name: str) -> None:
        """Begin writing under ``folder`` (it exists) for the run called ``run_name``."""

    @abstractmethod
    def log_metrics(self, step: int, metrics: dict[str, float], prefix: str = "") -> None:
        """Record ``metrics`` (name -> finite number) at ``step``."""

    @abstractmethod
    def log_config(self, config: dict[str, Any]) -> None:
        """Record the run's resolved configuration (JSON-serialisable)."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release everything; the files are complete afterwards."""

    def files(self) -> list[Path]:
        """The files this logger wrote under its folder."""
        return []


KIND_CLASSES: dict[str, type[Plugin]] = {
    "repr": SoundRepresentation,
    "labeler": Labeler,
    "backbone": Backbone,
    "evaluator": Evaluator,
    "logger": Logger,
}


"""What a pretext training run does, as typed objects: :class:`PretrainConfig` and its
:class:`AugmentConfig`, and the names of the files a run writes into its folder.

Neither class holds a number of its own. Every schedule and augmentation setting a
profile sets (epochs, batch size, learning rate, image size, warm-up, augmentation ...)
defaults to the default profile's value (:data:`harness.profiles.DEFAULT_PROFILE`), read
when an object is made; ``harness run`` and ``harness pretrain`` pass the chosen profile's
values explicitly (:func:`harness.profiles.pretrain_settings`). This module imports no
torch, so the profiles, which hold :class:`AugmentConfig` objects, stay light.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from harness.api.errors import BadInputError

Precision = Literal["auto", "bf16", "fp32"]
#: the files of a run folder: the checkpoint, one metrics row per epoch, the run's settings
CHECKPOINT_NAME = "last.pt"
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.json"


def _from_profile(read: Callable[[Any], Any]) -> Any:
    """A dataclass field whose default is ``read(default profile)``, looked up each time an
    object is made (the profiles module holds objects of this module's classes, so it is
    imported only then)."""

    def default() -> Any:
        from harness.profiles import DEFAULT_PROFILE, get_profile

        return read(get_profile(DEFAULT_PROFILE))

    return field(default_factory=default)


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation. Jitter strengths are torchvision ``ColorJitter`` arguments.

    Each field defaults to the default profile's ``pretext_augment``; a profile spells out
    every field of its own.
    """

    #: range of the crop's area as a fraction of the frame
    crop_scale: tuple[float, float] = _from_profile(lambda p: p.pretext_augment.crop_scale)
    #: range of the crop's aspect ratio (width / height)
    crop_ratio: tuple[float, float] = _from_profile(lambda p: p.pretext_augment.crop_ratio)
    #: probability of a horizontal flip
    flip: float = _from_profile(lambda p: p.pretext_augment.flip)
    brightness: float = _from_profile(lambda p: p.pretext_augment.brightness)
    contrast: float = _from_profile(lambda p: p.pretext_augment.contrast)
    saturation: float = _from_profile(lambda p: p.pretext_augment.saturation)
    #: hue shift in [-hue, hue] turns (at most 0.5)
    hue: float = _from_profile(lambda p: p.pretext_augment.hue)

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < lo <= hi, got {self.crop_ratio}")
        if not 0 <= self.flip <= 1:
            raise ValueError(f"flip must be a probability, got {self.flip}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")


@dataclass(frozen=True)
class PretrainConfig:
    """Everything ``harness pretrain`` does, as one typed object.

    The schedule's fields default to the default profile's values (the module docstring
    says why); ``backbone_params`` defaults to none, i.e. the backbone plugin's own.
    """

    backbone: str
    labels: Path
    data: Path
    out: Path
    backbone_params: dict[str, Any] = field(default_factory=dict)
    epochs: int = _from_profile(lambda p: p.pretext_epochs)
    #: global batch size (split evenly across DDP ranks)
    batch_size: int = _from_profile(lambda p: p.pretext_batch_size)
    #: peak learning rate of the one-cycle schedule
    lr: float = _from_profile(lambda p: p.pretext_lr)
    weight_decay: float = _from_profile(lambda p: p.pretext_weight_decay)
    #: share of the steps spent warming up to the peak learning rate
    pct_start: float = _from_profile(lambda p: p.pretext_pct_start)
    #: a linear warm-up on top of the one-cycle schedule: step ``s`` < ``warmup_steps``
    #: trains at ``(s + 1) / (warmup_steps + 1)`` of the one-cycle's rate (0: none)
    warmup_steps: int = _from_profile(lambda p: p.pretext_warmup_steps)
    #: side of the square images the network sees
    image_size: int = _from_profile(lambda p: p.image_size)
    #: side of the cached frames (None: ``image_size``)
    store_size: int | None = _from_profile(lambda p: p.pretext_store_size)
    val_fraction: float = _from_profile(lambda p: p.pretext_val_fraction)
    seed: int = 0
    augment: AugmentConfig = _from_profile(lambda p: p.pretext_augment)
    #: "auto" (CUDA if present, else CPU), "cpu", "cuda", "cuda:1", ...
    device: str = "auto"
    #: "auto": bf16 autocast on CUDA and on CPUs with native bf16, else fp32
    precision: Precision = "auto"
    channels_last: bool = True
    #: AdamW's fused kernel (CPU and CUDA); False gives the plain per-tensor loop
    fused_adamw: bool = True
    compile: bool = False
    #: write a checkpoint every this many epochs (and always after the last)
    checkpoint_every: int = 1
    #: ... and only once this many seconds have passed since the last one (0: no wait);
    #: an interrupted run then redoes at most about this much training
    checkpoint_seconds: float = 0.0
    #: recorded in the checkpoint: "pretext" (sound labels) or "supervised" (true labels)
    origin: str = "pretext"
    #: ignore (and overwrite) a checkpoint of another run found in ``out``
    restart: bool = False
    #: CPU threads for torch (default: torch's choice; 1 is faster on a busy machine)
    threads: int | None = None
    progress: bool = True
    #: recorded only: the profile the settings came from, and the ones given explicitly
    #: over it (both are already in the values above, so neither is part of the run key)
    profile: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 2, f"batch size must be >= 2, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
            (self.image_size >= 16, f"image size must be >= 16, got {self.image_size}"),
            (0 <= self.val_fraction < 1, f"val fraction must be in [0, 1), got {self.val_fraction}"),
            (0 < self.pct_start < 1, f"pct_start must be in (0, 1), got {self.pct_start}"),
            (self.warmup_steps >= 0, f"warm-up steps must be >= 0, got {self.warmup_steps}"),
            (self.store_size is None or self.store_size >= self.image_size,
             f"store size {self.store_size} is smaller than the image size {self.image_size}: "
             "frames would be enlarged, not cropped (give --store-size of at least the image "
             "size)"),
            (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
            (self.checkpoint_seconds >= 0, "checkpoint_seconds must be >= 0"),
            (self.precision in ("auto", "bf16", "fp32"), f"unknown precision {self.precision!r}"),
            (0 <= self.seed < 2**32, f"seed must be in [0, 2^32), got {self.seed}"),
            (not Path(self.out).exists() or Path(self.out).is_dir(),
             f"--out {self.out}: is a file, not a run folder"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInputError(message)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("labels", "data", "out"):
            out[key] = str(out[key])
        # settings added after runs were recorded are written only when in use, so a run
        # that leaves them at their default keeps its run key, cache key and leaderboard
        # row (all are digests of this dictionary)
        for key, default in _ADDED_SETTINGS.items():
            if out[key] == default:
                del out[key]
        return out


#: PretrainConfig fields left out of :meth:`PretrainConfig.to_json` at these values
_ADDED_SETTINGS: dict[str, Any] = {"warmup_steps": 0}

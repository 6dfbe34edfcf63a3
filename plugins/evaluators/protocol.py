"""The VOC07 classification protocols, as typed objects.

A :class:`Preset` is one published evaluation code's settings at full length; the run
profile's :class:`harness.profiles.EvalScaling` scales it to a world (``paper``: real VOC
as published; ``toy``: the toy VOC on a CPU: fewer iterations, a smaller crop);
:func:`resolve` combines the two with
the mode ("head" or "all") and the reading of "Head" into a :class:`Protocol`, the complete
list of what determines a result, recorded with every metric.

Sources (read, not copied):

- ``krahenbuhl``: github.com/philkr/voc-classification ``src/train_cls.py`` (Krähenbühl et
  al. 2015). Caffe SGD, ``base_lr`` 0.001, ``lr_policy=step, gamma=0.5, stepsize=10000``,
  80,000 iterations of 16, ``weight_decay=1e-6``, ``clip_gradients=10``, learning-rate
  multipliers (1, 2) for (weights, biases), input rescaled by 0.5-2x then a random 227 crop
  with mirroring; layers from ``--random-from drop7`` on (the classifier) initialised
  N(0, 0.01), bias 0.1; test = sum of fc8 over 10 crops drawn like training.
- ``deepcluster``: github.com/facebookresearch/deepcluster ``eval_voc_classif.py``:
  ``RandomResizedCrop(224, scale=(0.1, 0.5), ratio=(1, 1))`` and flip, lr 0.003,
  ``--nit 80000``, ``--stepsize 5000`` (lr halved), weight decay 1e-6, momentum 0.9,
  gradient-norm clipping at 10, every ``nn.Linear`` of the classifier re-initialised
  N(0, 0.01), bias 0.1, ``model.features.eval()`` while training (BatchNorm uses running
  statistics), ten random crops at test.

Both shuffle the training list once and then cycle through it in that order; both sum the
raw outputs (logits) of the ten test crops; both divide the masked binary cross-entropy
summed over labels by the batch size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from harness.errors import BadInputError
from harness.profiles import get_profile

Mode = Literal["head", "all"]
HeadInit = Literal["pretext", "random"]
Augmentation = Literal["rescale_crop", "resized_crop"]
BNStats = Literal["batch", "running"]

HEAD_INITS: tuple[str, ...] = ("pretext", "random")
SPLIT_PAIRS: dict[str, str] = {"trainval": "test", "train": "val"}

#: VOC2007's typical image short side (500 x 375): the reference for the toy geometry
VOC_SHORT_SIDE = 375


@dataclass(frozen=True)
class Preset:
    """One published protocol at full length (the numbers its code sets)."""

    name: str
    source: str
    lr: float
    #: iterations between learning-rate multiplications by ``lr_gamma``
    lr_step: int
    lr_gamma: float
    iterations: int
    batch_size: int
    momentum: float
    weight_decay: float
    #: total gradient L2 norm is clipped to this
    grad_clip_norm: float
    #: learning-rate multiplier of every bias (Caffe's ``lr_mult`` 2)
    bias_lr_mult: float
    augmentation: Augmentation
    crop_size: int
    #: rescale factor range (``rescale_crop``) or crop-area fraction (``resized_crop``)
    scale_min: float
    scale_max: float
    #: aspect-ratio range of ``resized_crop`` crops
    aspect_min: float
    aspect_max: float
    mirror: bool
    #: this code's own reading of "Head": keep fc6-fc7 ("pretext") or re-initialise them
    head_init: HeadInit
    init_std: float
    init_bias: float
    #: BatchNorm statistics in the trunk while "All" trains it
    all_trunk_bn: BNStats
    test_crops: int
    data_order: str = "shuffled once (seeded), then cycled in that order"
    loss: str = "sum over non-difficult labels of BCE-with-logits, divided by the batch size"
    test_score: str = "sum of the logits of the test crops, each drawn with the training augmentation"


PRESETS: dict[str, Preset] = {
    "krahenbuhl": Preset(
        name="krahenbuhl",
        source="philkr/voc-classification src/train_cls.py (Krähenbühl et al. 2015)",
        lr=0.001, lr_step=10_000, lr_gamma=0.5, iterations=80_000, batch_size=16,
        momentum=0.9, weight_decay=1e-6, grad_clip_norm=10.0, bias_lr_mult=2.0,
        augmentation="rescale_crop", crop_size=227, scale_min=0.5, scale_max=2.0,
        aspect_min=1.0, aspect_max=1.0, mirror=True, head_init="pretext",
        init_std=0.01, init_bias=0.1, all_trunk_bn="batch", test_crops=10),
    "deepcluster": Preset(
        name="deepcluster",
        source="facebookresearch/deepcluster eval_voc_classif.py (defaults)",
        lr=0.003, lr_step=5_000, lr_gamma=0.5, iterations=80_000, batch_size=16,
        momentum=0.9, weight_decay=1e-6, grad_clip_norm=10.0, bias_lr_mult=1.0,
        augmentation="resized_crop", crop_size=224, scale_min=0.1, scale_max=0.5,
        aspect_min=1.0, aspect_max=1.0, mirror=True, head_init="random",
        init_std=0.01, init_bias=0.1, all_trunk_bn="running", test_crops=10),
}


@dataclass(frozen=True)
class Protocol:
    """Everything that determines an evaluation's result (recorded in the metrics)."""

    preset: str
    profile: str
    mode: Mode
    head_init: HeadInit
    train_split: str
    test_split: str
    seed: int
    lr: float
    lr_step: int
    lr_gamma: float
    iterations: int
    batch_size: int
    momentum: float
    weight_decay: float
    grad_clip_norm: float
    bias_lr_mult: float
    augmentation: Augmentation
    crop_size: int
    scale_min: float
    scale_max: float
    aspect_min: float
    aspect_max: float
    mirror: bool
    #: short side images are scaled to before augmentation (None: as stored)
    base_short_side: int | None
    init_std: float
    init_bias: float
    #: what is trained: "head" (trunk frozen, BatchNorm in eval mode) or everything
    trained: str
    #: BatchNorm statistics used in the trunk during training: "running" or "batch"
    trunk_bn: BNStats
    test_crops: int
    #: "Head" only: augmented views per training image encoded once by the frozen trunk
    #: (None: every iteration draws fresh crops)
    head_views: int | None
    data_order: str
    loss: str
    test_score: str
    source: str
    #: parameters given explicitly, differing from the preset/profile
    overrides: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["overrides"] = list(self.overrides)
        return d


def resolve(preset: str, profile: str, mode: Mode, *, head_init: str | None = None,
            train_split: str = "trainval", seed: int = 0, iterations: int | None = None,
            lr: float | None = None) -> Protocol:
    """The full protocol for ``mode`` under ``preset`` scaled by ``profile``.

    ``iterations`` and ``lr`` override the resolved values (for tuning on ``val``; they are
    listed in ``overrides``). The learning-rate step keeps its share of the schedule when
    iterations are scaled.
    """
    if preset not in PRESETS:
        raise BadInputError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    if mode not in ("head", "all"):
        raise BadInputError(f"unknown mode {mode!r}; choose head or all")
    if head_init is not None and head_init not in HEAD_INITS:
        raise BadInputError(f"unknown head_init {head_init!r}; choose from "
                            f"{', '.join(HEAD_INITS)}")
    if train_split not in SPLIT_PAIRS:
        raise BadInputError(f"cannot train on split {train_split!r}: train on trainval "
                            "(reported on test) or on train (tuning, reported on val)")
    p, prof = PRESETS[preset], get_profile(profile).evaluation
    overrides = []
    n_iter = (prof.head_iterations if mode == "head" else prof.all_iterations) or p.iterations
    if iterations is not None:
        if iterations < 1:
            raise BadInputError(f"iterations must be positive, got {iterations}")
        n_iter = iterations
        overrides.append("iterations")
    if lr is not None:
        if not lr > 0:
            raise BadInputError(f"learning rate must be positive, got {lr}")
        overrides.append("lr")
    lr_step = max(1, round(p.lr_step * n_iter / p.iterations))
    crop = prof.crop_size or p.crop_size
    base = round(crop * VOC_SHORT_SIDE / PRESETS["krahenbuhl"].crop_size) \
        if prof.rescale_to_voc_geometry else None
    return Protocol(
        preset=p.name, profile=get_profile(profile).name, mode=mode, head_init=head_init or p.head_init,
        train_split=train_split, test_split=SPLIT_PAIRS[train_split], seed=seed,
        lr=lr if lr is not None else p.lr, lr_step=lr_step, lr_gamma=p.lr_gamma,
        iterations=n_iter, batch_size=p.batch_size, momentum=p.momentum,
        weight_decay=p.weight_decay, grad_clip_norm=p.grad_clip_norm,
        bias_lr_mult=p.bias_lr_mult, augmentation=p.augmentation, crop_size=crop,
        scale_min=p.scale_min, scale_max=p.scale_max, aspect_min=p.aspect_min,
        aspect_max=p.aspect_max, mirror=p.mirror, base_short_side=base,
        init_std=p.init_std, init_bias=p.init_bias,
        trained="head" if mode == "head" else "all",
        trunk_bn="running" if mode == "head" else p.all_trunk_bn,
        test_crops=p.test_crops,
        head_views=prof.head_views if mode == "head" else None, data_order=p.data_order, loss=p.loss,
        test_score=p.test_score, source=p.source, overrides=tuple(overrides))

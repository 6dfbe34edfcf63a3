"""The VOC07 classification protocols, as typed objects.

A :class:`Preset` is one published evaluation code's settings at full length, for "Head"
and for "All"; the run profile's :class:`harness.profiles.EvalScaling` scales it to a
world (``paper``: real VOC as published; ``toy``: the toy VOC on a CPU: fewer iterations, a
smaller crop); :func:`resolve` combines the two with the mode ("head" or "all") and the
reading of "Head" into a :class:`Protocol`, the complete list of what determines a result,
recorded with every metric.

Sources (read, not copied; line numbers at the commits named):

- ``krahenbuhl``: github.com/philkr/voc-classification ``src/train_cls.py`` (Krähenbühl et
  al. 2015). Caffe SGD, ``base_lr`` 0.001, ``lr_policy=step, gamma=0.5, stepsize=10000``,
  80,000 iterations of 16, ``weight_decay=1e-6``, ``clip_gradients=10``, learning-rate
  multipliers (1, 2) for (weights, biases); layers from ``--random-from drop7`` on (the
  classifier) initialised N(0, 0.01), bias 0.1; test = sum of fc8 over 10 crops drawn like
  training. The crop (``window_crop``) is the transformation layer of its Caffe fork,
  github.com/philkr/caffe branch ``transforming_fast_hdf5`` (commit 09f7266a)
  ``src/caffe/layers/transformation_layer.cpp`` ``generate()``, lines 102-108: with an
  output of Wo x Ho and an image of W x H, ``max_scale = min(max_scale_, H/Ho, W/Wo)``,
  ``scale ~ U(min(min_scale_, max_scale), max_scale)``, a window of ``Wo*scale x Ho*scale``
  image pixels whose centre offset is uniform over the positions inside the image, mirrored
  with probability 1/2; ``min_scale_``, ``max_scale_`` = 0.5, 2.0 from ``train_cls.py``
  lines 25-26. The window never leaves the image.
- ``deepcluster``: github.com/facebookresearch/deepcluster (commit 2d1927e8). "Head" is
  ``eval_voc_classif.py`` with its defaults: ``RandomResizedCrop(224, scale=(0.1, 0.5),
  ratio=(1, 1))`` and flip, lr 0.003, ``--nit 80000``, ``--stepsize 5000`` (lr halved),
  weight decay 1e-6, momentum 0.9, gradient-norm clipping at 10, every ``nn.Linear`` of the
  classifier re-initialised N(0, 0.01), bias 0.1, ``model.features.eval()`` while training
  (lines 207-209: BatchNorm uses running statistics), ten random crops at test. "All" is
  what the published "All" figure came from, ``eval_voc_classif_all.sh``: Krähenbühl's
  ``train_cls.py`` (so its crop, bias multiplier and test crops) with ``stepsize`` 20000
  (lines 29-30), lr 0.001 and batch 16 (lines 37-38), ``--train-from ConvNdBackward5``
  (line 43: every layer from conv1) and ``-nit 150000`` (line 45); ``--random-from
  DropoutBackward23`` re-initialises fc6-fc8 (node 23 of the autograd graph of
  ``models/alexnet.py`` is the Dropout in front of fc6: conv1 is node 5, relu7 is the
  ``ThresholdBackward28`` it clips at).

BatchNorm while "All" trains the trunk: Krähenbühl's AlexNet has no BatchNorm, so his code
sets nothing for it. Both presets keep the trunk's BatchNorm layers in eval mode (running
statistics), as the one published VOC07 code for a BatchNorm AlexNet does whether or not it
trains the trunk (DeepCluster ``eval_voc_classif.py`` lines 207-209: ``model.train()`` then
``model.features.eval()``); this also makes a crop's score independent of the other 15
images of its batch, as it is at test time. A never-trained trunk first gets its running
statistics from one pass over training crops (:func:`.training.recompute_trunk_bn`).

Both shuffle the training list once and then cycle through it in that order; both sum the
raw outputs (logits) of the ten test crops; both divide the masked binary cross-entropy
summed over labels by the batch size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from harness.api.errors import BadInputError
from harness.api import get_profile

Mode = Literal["head", "all"]
HeadInit = Literal["pretext", "random"]
Augmentation = Literal["window_crop", "resized_crop"]
BNStats = Literal["batch", "running"]
#: the evaluation's arithmetic: "auto" is bf16 autocast on CUDA and on CPUs with native
#: bf16, float32 elsewhere (as for every stage: harness.runtime.devices.resolve_precision)
Precision = Literal["auto", "bf16", "fp32"]
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")

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
    #: window-side-to-crop ratio range (``window_crop``) or crop-area fraction
    #: (``resized_crop``)
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
    #: fields whose "All" value differs from the "Head" one (this code's "All" script)
    all_changes: tuple[tuple[str, Any], ...] = ()
    data_order: str = "shuffled once (seeded), then cycled in that order"
    loss: str = "sum over non-difficult labels of BCE-with-logits, divided by the batch size"
    test_score: str = "sum of the logits of the test crops, each drawn with the training augmentation"

    def for_mode(self, mode: Mode) -> "Preset":
        """The settings of ``mode``: "all" applies :attr:`all_changes`."""
        if mode == "all" and self.all_changes:
            return dataclasses.replace(self, all_changes=(), **dict(self.all_changes))
        return self


PRESETS: dict[str, Preset] = {
    "krahenbuhl": Preset(
        name="krahenbuhl",
        source="philkr/voc-classification src/train_cls.py (Krähenbühl et al. 2015)",
        lr=0.001, lr_step=10_000, lr_gamma=0.5, iterations=80_000, batch_size=16,
        momentum=0.9, weight_decay=1e-6, grad_clip_norm=10.0, bias_lr_mult=2.0,
        augmentation="window_crop", crop_size=227, scale_min=0.5, scale_max=2.0,
        aspect_min=1.0, aspect_max=1.0, mirror=True, head_init="pretext",
        init_std=0.01, init_bias=0.1, all_trunk_bn="running", test_crops=10),
    "deepcluster": Preset(
        name="deepcluster",
        source="facebookresearch/deepcluster eval_voc_classif.py (defaults); All: "
               "eval_voc_classif_all.sh (Krähenbühl's train_cls.py)",
        lr=0.003, lr_step=5_000, lr_gamma=0.5, iterations=80_000, batch_size=16,
        momentum=0.9, weight_decay=1e-6, grad_clip_norm=10.0, bias_lr_mult=1.0,
        augmentation="resized_crop", crop_size=224, scale_min=0.1, scale_max=0.5,
        aspect_min=1.0, aspect_max=1.0, mirror=True, head_init="random",
        init_std=0.01, init_bias=0.1, all_trunk_bn="running", test_crops=10,
        all_changes=(("lr", 0.001), ("lr_step", 20_000), ("iterations", 150_000),
                     ("bias_lr_mult", 2.0), ("augmentation", "window_crop"),
                     ("crop_size", 227), ("scale_min", 0.5), ("scale_max", 2.0))),
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
    #: arithmetic of training and test scoring (:data:`Precision`)
    precision: Precision
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
            lr: float | None = None, precision: str | None = None) -> Protocol:
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
    p, prof = PRESETS[preset].for_mode(mode), get_profile(profile).evaluation
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
    if precision is not None:
        if precision not in PRECISIONS:
            raise BadInputError(f"unknown precision {precision!r}; choose from "
                                f"{', '.join(PRECISIONS)}")
        overrides.append("precision")
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
        test_crops=p.test_crops, precision=precision or prof.precision,
        head_views=prof.head_views if mode == "head" else None, data_order=p.data_order, loss=p.loss,
        test_score=p.test_score, source=p.source, overrides=tuple(overrides))

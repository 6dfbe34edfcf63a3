"""Profiles: the one home of every default a run's stages share.

A :class:`Profile` (``toy``: the paper's pipeline scaled to a 2-core CPU; ``paper``: the
paper's schedule on real data) holds the pretext schedule and augmentation, the backbone
parameters, the toy world's size and how evaluation protocols are scaled. ``harness run``,
``sweep``, ``pretrain``, ``eval`` and ``data toy`` / ``toy-voc`` take ``--profile`` and read
their defaults from here; an explicit option overrides one value and is recorded as an
override. (``features``, ``label`` and ``figures`` read no profile setting: their defaults
are the plugins' own typed parameters, e.g. ``kmeans``'s ``k = 15``.) Evaluator plugins read the scaling through
:func:`get_profile` with the profile name the core passes in
:class:`harness.api.interfaces.EvalContext`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from harness.pretext.config import AugmentConfig
from harness.api.errors import BadInputError


class ProfileName(str, Enum):
    """The profiles a command line accepts."""

    toy = "toy"
    paper = "paper"


@dataclass(frozen=True)
class EvalScaling:
    """How a published evaluation protocol is scaled to a world; None keeps its own value.

    Read by evaluators (the VOC07 ones resolve their protocol from it).
    """

    #: iterations of "Head" training (frozen trunk)
    head_iterations: int | None = None
    #: iterations of "All" training (every layer)
    all_iterations: int | None = None
    #: side of the training and test crops
    crop_size: int | None = None
    #: images are first scaled so their short side is ``crop_size * 375 / 227`` (VOC's
    #: image-to-crop geometry) -- for worlds whose images are smaller than VOC's
    rescale_to_voc_geometry: bool = False
    #: "Head" only: draw each training crop from a fixed pool of this many augmented views
    #: per image, run through the frozen trunk once (None: a fresh crop every iteration)
    head_views: int | None = None
    #: the evaluators' arithmetic: "auto" (bf16 autocast on CUDA and on CPUs with native
    #: bf16, float32 elsewhere), "bf16" or "fp32"
    precision: str = "auto"
    #: dtype frozen features are cached in (:mod:`harness.evaluation.layer_features`): "float16" halves the
    #: cache and is what the toy profile's committed results were made with; "float32"
    #: holds any finite activation (a trained network's fc7 can exceed float16's 65504)
    frozen_storage: str = "float16"
    description: str = ""


@dataclass(frozen=True)
class Profile:
    """The schedule of one run: the toy world on a CPU, or the paper's."""

    name: str
    #: clips in the toy world
    toy_clips: int
    #: images in the toy VOC's trainval and test splits
    toy_voc_images: tuple[int, int]
    #: side of the frames the pretext network sees
    image_size: int
    pretext_epochs: int
    pretext_batch_size: int
    pretext_lr: float
    #: the pretext training's augmentation (every field spelled out: this is its home)
    pretext_augment: AugmentConfig
    #: backbone parameters this profile sets, by backbone name
    backbone_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: AdamW's weight decay, the one-cycle's share of steps rising to the peak rate, and
    #: the share of clips held out to validate the pretext (the same in every profile)
    pretext_weight_decay: float = 0.01
    pretext_pct_start: float = 0.3
    pretext_val_fraction: float = 0.1
    #: steps of linear warm-up in front of the one-cycle schedule (0: none;
    #: :class:`harness.pretext.train.WarmOneCycleLR`)
    pretext_warmup_steps: int = 0
    #: side of the stored frames the pretext's random-resized crops are cut from (None:
    #: ``image_size``, so crops only zoom in; larger, they also vary the scale)
    pretext_store_size: int | None = None
    #: pretext training images/s of one CPU thread at ``image_size``, by backbone: what a
    #: CPU run's time estimate (:func:`cpu_estimate`) is computed from
    cpu_images_per_s: dict[str, float] = field(default_factory=dict)
    #: how evaluation protocols are scaled
    evaluation: EvalScaling = EvalScaling()
    #: the toy VOC's sealed test split is drawn from this seed plus the world seed (a seed
    #: no choice was ever made on); None draws it from the trainval seed
    toy_test_seed: int | None = None
    #: the toy world's preset and knobs, ``{"preset": NAME, KNOB: VALUE}`` (empty: the
    #: oracle preset; docs/toy-worlds.md); the toy VOC is the same under every preset
    toy_world: dict[str, Any] = field(default_factory=dict)

    def backbone_params_for(self, backbone: str) -> dict[str, Any]:
        """The parameters this profile gives ``backbone`` (empty for one it does not name)."""
        return dict(self.backbone_params.get(backbone, {}))


#: the toy Head schedule: the length at which a random-initialisation row stops rising on
#: train -> val (doubling it adds under 0.5 mAP). Random AlexNet under the protocol of
#: plugins/evaluators/protocol.py (seed 0, world 0, bf16): 31.5 / 33.0 / 34.4 / 34.4 mAP at
#: 8k / 16k / 32k / 64k (benchmarks/LOG.md, 2026-12-02, "The "Head" length re-checked")
HEAD_ITERATIONS_TOY = 32000

#: the toy All schedule, chosen by the same rule on train -> val (seed 0, world 0, the
#: protocol of plugins/evaluators/protocol.py, bf16): random AlexNet 30.7 / 34.6 / 37.3 /
#: 38.9 / 37.3 mAP at 1.2k / 2.4k / 4.8k / 9.6k / 19.2k (doubling 9.6k adds nothing);
#: supervised 47.5 / 47.6 / 46.7 at 2.4k / 4.8k / 9.6k (benchmarks/LOG.md, 2026-12-02, "The
#: frozen toy protocol and how each setting was chosen")
ALL_ITERATIONS_TOY = 9600

PROFILES: dict[str, Profile] = {
    # At 64 px AlexNet's conv5 output is 1 x 1: pooling it to 6 x 6 only copies one vector
    # 36 times into fc6 (36x fc6's effective learning rate: lr 0.01 collapsed to the
    # majority class in a test run). pool=1 sees the same information; fc6-fc7 of 1,024
    # units cost 20x less per step than 4,096 on a CPU. The pretext schedule was chosen on
    # pretext validation accuracy and VOC train -> val (never test; benchmarks/LOG.md has
    # the figures, 2026-11-25 and 2026-12-01): lr 0.01 stalled at 13% cluster accuracy, 0.001 reached 35-40%; batch 16
    # (4x the optimizer steps of batch 64 for 25% more time per epoch) and a gentler
    # augmentation (crops of at least 40% of the frame, so that they rarely cut out the
    # small objects the sound label is about; saturation 0.2 and no hue shift, so that
    # the colour half of a toy class survives) each added 1-2 points of Head mAP, and
    # 30 -> 60 -> 90 epochs another 5 and 1 (90 epochs take under 4 minutes on two cores).
    "toy": Profile(
        name="toy", toy_clips=1000, toy_voc_images=(1000, 1000), image_size=64,
        pretext_epochs=90, pretext_batch_size=16, pretext_lr=0.001,
        backbone_params={"alexnet": {"pool": 1, "fc_units": 1024}},
        pretext_augment=AugmentConfig(crop_scale=(0.4, 1.0), crop_ratio=(3 / 4, 4 / 3),
                                      flip=0.5, brightness=0.4, contrast=0.4,
                                      saturation=0.2, hue=0.0),
        evaluation=EvalScaling(
            head_iterations=HEAD_ITERATIONS_TOY, all_iterations=ALL_ITERATIONS_TOY, crop_size=64,
            rescale_to_voc_geometry=True, head_views=10,
            description=("toy VOC on a CPU: iterations scaled down (learning-rate steps "
                         "scaled with them), 64-pixel crops with VOC's crop-to-image "
                         "geometry; Head crops drawn from 10 trunk-encoded views per image; "
                         "Head and All each long enough that a random-initialisation row "
                         "has stopped improving on train -> val")),
        toy_test_seed=20261202),
    # The pretext learning rate and warm-up were chosen on the pretext's own validation split
    # (never VOC) at the largest scale a shared 2-vCPU Xeon allowed in ~20 CPU-minutes
    # (2026-12-06): this profile's AlexNet at 224 px, random-resized crops of 256-px stored
    # frames, batch 256, on 1,024 toy clips (`harness data toy --clips 1024 --image-size
    # 112`) with k = 15 MFCC k-means labels; 5 epochs of 4 steps, one thread:
    # `harness pretrain --profile paper --backbone alexnet --epochs 5 --lr LR
    # --warmup-steps W --threads 1`. Final validation loss (predicting the label prior
    # gives 2.43, the majority class 18.6% accuracy): lr 1e-4 2.26, 3e-4 2.19 (falling
    # every epoch, 25.5%), 1e-3 2.25 after a spike to 5.3, 3e-3 2.50 and 1e-2 2.69 (no
    # better than the prior; validation losses of 111 and 738 after the first epoch: the
    # divergence a micro rehearsal saw at the paper's 0.01). A one-epoch (4-step) linear
    # warm-up changed little: 1e-3 2.33, 3e-3 2.46, 1e-2 2.59 (1.1e4 after epoch 1),
    # 3e-4 2.19 again. So lr 3e-4 and no warm-up; docs/real-data.md has the
    # curves and what a full-scale GPU run must confirm (20 steps here, 38,800 there).
    "paper": Profile(
        name="paper", toy_clips=1000, toy_voc_images=(1000, 1000), image_size=224,
        pretext_epochs=200, pretext_batch_size=256, pretext_lr=3e-4,
        pretext_store_size=256,
        # crops of 20-100% of the frame and ColorJitter(0.4, 0.4, 0.4, 0.1)
        pretext_augment=AugmentConfig(crop_scale=(0.2, 1.0), crop_ratio=(3 / 4, 4 / 3),
                                      flip=0.5, brightness=0.4, contrast=0.4,
                                      saturation=0.4, hue=0.1),
        cpu_images_per_s={"alexnet": 50.0, "resnet18": 24.0},
        evaluation=EvalScaling(frozen_storage="float32",
                               description="the preset at full length on real VOC2007")),
}


#: the profile a command uses when none is named, and whose values the pretext's typed
#: settings (:class:`harness.pretext.config.PretrainConfig`) default to
DEFAULT_PROFILE = "toy"

# The plugins and settings a run uses unless told otherwise (harness.pipeline.config.RunConfig
# and the CLI's options read them here). The core names plugins only in this block.
#: what a run initialises its network from (one of harness.results.schema.INITS)
DEFAULT_INIT = "sound"
#: the sound representation, labeler and backbone of a run
DEFAULT_REPR = "mfcc"
DEFAULT_LABELER = "kmeans"
DEFAULT_BACKBONE = "alexnet"
#: the downstream evaluators of a run: Table 1's Head and All
DEFAULT_EVALUATORS: tuple[str, ...] = ("voc07_linear", "voc07_full")
#: the column each of them heads in the Table-1 row a run prints
TABLE1_LABELS = {"voc07_linear": "Head mAP", "voc07_full": "All mAP"}
#: the evaluators that keep their headline layer's per-image test scores (the frozen-feature
#: ones; voc07_lowshot's figure averages sampled training sets and has none): the
#: leaderboard says that their runs without such scores were recorded before they kept them
EVALUATORS_WITH_TEST_SCORES: tuple[str, ...] = ("linear_probe", "voc07_svm", "knn")
#: the comparison a toy board leads with, fixed before any result: the paper's own (its
#: Table 1 rows for MFCC and sound texture statistics at k = 15 on AlexNet, against random
#: AlexNet), on the oracle world and on the realistic one side by side (the pictures, and
#: so the random row, are the same in both); harness.leaderboard.presentation.HEADLINE
HEADLINE_COMPARISON: dict = {"representations": ("mfcc", "sound_texture"), "labeler": "kmeans",
                             "k": 15, "backbone": "alexnet", "baseline": "random",
                             "worlds": ("oracle", "realistic")}
#: the toy worlds (docs/toy-worlds.md) whose runs the frozen toy protocol admits, each in
#: :func:`harness.data.toy.config.world_overrides` form: the oracle world every record
#: before the presets ran on; the realistic preset, every knob from the public labels its
#: fields cite (none tuned); and the realistic preset with one of its two biggest knobs off
#: (off-screen sources; music and narration beds), whose runs measure that knob alone
FROZEN_TOY_WORLDS: tuple[dict, ...] = (
    {}, {"preset": "realistic"}, {"preset": "realistic", "offscreen_prob": 0.0},
    {"preset": "realistic", "music_prob": 0.0, "narration_prob": 0.0})
#: a run's seed, the toy world's seed, its device and the folder its record goes in
DEFAULT_SEED = 0
DEFAULT_WORLD_SEED = 0
DEFAULT_DEVICE = "auto"
DEFAULT_RESULTS = "results"
#: epochs between a pretext monitor's evaluations (:mod:`harness.pretext.monitor`): 9 in
#: the toy profile's 90 epochs, about 7% of the pretext stage on two cores
#: (benchmarks/README.md, "Frozen-feature evaluation")
MONITOR_EVERY = 10
#: the declared size of a pooled layer in frozen-feature evaluation (DeepCluster
#: eval_linear.py lines 163-181; :mod:`harness.evaluation.layer_features` pools to it)
FROZEN_TARGET_VALUES = 9216


def get_profile(name: str | ProfileName) -> Profile:
    """The profile called ``name``; BadInputError listing the choices for an unknown one."""
    key = name.value if isinstance(name, ProfileName) else str(name)
    if key not in PROFILES:
        raise BadInputError(f"unknown profile {key!r}; choose from {', '.join(PROFILES)}")
    return PROFILES[key]


def pretrain_settings(profile: Profile, backbone: str) -> dict[str, Any]:
    """The :class:`harness.pretext.config.PretrainConfig` fields this profile sets for ``backbone``.

    ``harness run`` and ``harness pretrain`` both start from these, so the two train alike.
    """
    return {"epochs": profile.pretext_epochs, "batch_size": profile.pretext_batch_size,
            "lr": profile.pretext_lr, "image_size": profile.image_size,
            "augment": profile.pretext_augment,
            "warmup_steps": profile.pretext_warmup_steps,
            "store_size": profile.pretext_store_size,
            "weight_decay": profile.pretext_weight_decay,
            "pct_start": profile.pretext_pct_start,
            "val_fraction": profile.pretext_val_fraction,
            "backbone_params": profile.backbone_params_for(backbone)}


def cpu_estimate(profile: Profile, backbone: str, *, clips: int, epochs: int | None = None,
                 image_size: int | None = None, val_fraction: float | None = None,
                 threads: int | None = None) -> str | None:
    """One line saying how long ``profile``'s pretext would train on this CPU, or None for a
    profile that declares no CPU rate (the toy one: its whole run takes minutes).

    The time is training images (``clips`` less the validation share, times ``epochs``)
    over the profile's one-thread rate times ``threads`` (default: torch's thread count),
    scaled by pixel count for another ``image_size``. Threads rarely scale that well, so
    the figure is a lower bound; validation adds a few per cent.
    """
    if not profile.cpu_images_per_s:
        return None
    epochs = epochs or profile.pretext_epochs
    size = image_size or profile.image_size
    if val_fraction is None:
        val_fraction = profile.pretext_val_fraction
    train = max(1, round(clips * (1 - val_fraction)))
    head = f"{profile.name} profile on CPU: "
    advice = "; use a GPU or --epochs"
    per_thread = profile.cpu_images_per_s.get(backbone)
    if per_thread is None:
        return (head + f"{epochs} epochs x {train:,} training clips = {epochs * train:,} "
                f"training images, at a rate not measured for {backbone}" + advice)
    rate = _rate(profile, backbone, size, threads)
    return (head + f"about {_duration(epochs * train / rate)} for the pretext ({epochs} "
            f"epochs x {train:,} training clips at ~{rate:,.0f} images/s at {size} px)" + advice)


def _rate(profile: Profile, backbone: str, size: int, threads: int | None) -> float:
    """Declared images/s of ``backbone`` on ``threads`` CPU threads at ``size`` px."""
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    scale = (profile.image_size / size) ** 2
    return profile.cpu_images_per_s[backbone] * max(1, threads) * scale


def _duration(seconds: float) -> str:
    """``seconds`` in the largest unit that keeps a number >= 1: "9.6 days", "3.2 hours"."""
    for unit, length in (("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0)):
        if seconds >= length:
            return f"{seconds / length:.1f} {unit}"
    return f"{seconds:.0f} seconds"

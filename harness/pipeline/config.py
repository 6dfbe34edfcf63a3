"""What a run is: :class:`RunConfig`, the checks of its overrides, and the parameters each
evaluator of the run gets.

Every field left at its default takes the value from the profile
(:mod:`harness.profiles`, the one home of every default); a value given overrides it and
is recorded under the record's ``config.overrides``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.api.errors import BadInputError
from harness.profiles import (DEFAULT_BACKBONE, DEFAULT_DEVICE, DEFAULT_EVALUATORS, DEFAULT_INIT,
                              DEFAULT_LABELER, DEFAULT_PROFILE, DEFAULT_REPR, DEFAULT_RESULTS,
                              DEFAULT_SEED, DEFAULT_WORLD_SEED, MONITOR_EVERY, Profile,
                              get_profile)


#: the inits that train a network on clips (the others read none)
TRAINED_INITS: tuple[str, ...] = ("sound", "supervised")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on; recorded in full in the result record.

    The plugins, seeds, device and results folder default to :mod:`harness.profiles`'
    ``DEFAULT_*`` values. Fields left None take their value from the profile or from the
    plugin's own defaults; a value given here overrides it and is recorded under
    ``config.overrides``.
    """

    repr: str = DEFAULT_REPR
    repr_params: dict[str, Any] = field(default_factory=dict)
    labeler: str = DEFAULT_LABELER
    labeler_params: dict[str, Any] = field(default_factory=dict)
    #: the labeler's size parameter (its ``size_param``: clusters for k-means, bits for
    #: pca_binary); None keeps the labeler's default
    k: int | None = None
    backbone: str = DEFAULT_BACKBONE
    #: one of :data:`harness.results.schema.INITS`
    init: str = DEFAULT_INIT
    profile: str = DEFAULT_PROFILE
    seed: int = DEFAULT_SEED
    #: the toy world's own seed (the same world for every run seed)
    world_seed: int = DEFAULT_WORLD_SEED
    device: str = DEFAULT_DEVICE
    #: a clip dataset (default: the toy world)
    clips: Path | None = None
    #: a VOCdevkit / VOC2007 folder (default: the toy VOC)
    voc: Path | None = None
    evaluators: tuple[str, ...] = DEFAULT_EVALUATORS
    #: overrides the profile's pretext epochs
    epochs: int | None = None
    #: overrides the profile's pretext learning rate
    lr: float | None = None
    #: overrides the profile's pretext batch size
    batch_size: int | None = None
    #: overrides the profile's side of the stored frames pretext crops are cut from
    store_size: int | None = None
    #: torch.compile the pretext network (same weights, faster on a GPU)
    compile: bool = False
    #: overrides the profile's number of toy clips
    toy_clips: int | None = None
    #: overrides the profile's toy VOC size (trainval, test images)
    toy_voc_images: tuple[int, int] | None = None
    #: the toy world's preset and knobs, ``{"preset": "realistic", "music_prob": 0}``
    #: (docs/toy-worlds.md); recorded as an override only where they change the profile's world
    toy_world: dict[str, Any] = field(default_factory=dict)
    #: extra backbone parameters (on top of the profile's)
    backbone_params: dict[str, Any] = field(default_factory=dict)
    #: parameters of every evaluator, e.g. {"iterations": 100} (recorded in their params)
    eval_params: dict[str, Any] = field(default_factory=dict)
    results: Path = Path(DEFAULT_RESULTS)
    progress: bool = True
    #: watch the pretext run: "knn" or "linear_probe" on the downstream train -> val split
    monitor: str | None = None
    #: epochs between monitor evaluations (and after the last)
    monitor_every: int = MONITOR_EVERY
    #: with ``init="imported"``: another framework's weights, ``torchvision:alexnet=PATH``
    #: (:mod:`harness.networks.foreign`)
    imported: str | None = None
    #: logger plugins that watch the run (``csv``, ``tensorboard``); their files go in
    #: ``<results>/<run_id>.logs/`` and the record names them
    loggers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_overrides(epochs=self.epochs, lr=self.lr, seed=self.seed, toy_clips=self.toy_clips,
                        batch_size=self.batch_size)
        _toy_world_override(self)   # a bad preset or knob is refused here, before any work

    def overrides(self) -> dict[str, Any]:
        """The profile values this configuration overrides, by profile field name."""
        given = {"pretext_epochs": self.epochs, "pretext_lr": self.lr,
                 "pretext_batch_size": self.batch_size, "pretext_store_size": self.store_size,
                 "toy_clips": self.toy_clips,
                 "toy_voc_images": self.toy_voc_images,
                 "toy_world": _toy_world_override(self)}
        return {k: v for k, v in given.items() if v is not None}

    def resolved_profile(self) -> Profile:
        return replace(get_profile(self.profile), **self.overrides())

    def resolved_backbone_params(self) -> dict[str, Any]:
        return {**self.resolved_profile().backbone_params_for(self.backbone),
                **self.backbone_params}


def _toy_world_override(config: RunConfig) -> dict[str, Any] | None:
    """The toy world ``config`` runs on, in canonical form, where its ``toy_world`` changes
    the profile's (None where it does not, so a run on the profile's world records nothing).
    A bad preset or knob is a BadInputError naming ``--toy-preset`` / ``--toy-knob``."""
    from harness.data.toy.config import world_overrides

    if not config.toy_world:
        return None
    base = get_profile(config.profile).toy_world
    option = lambda name: f"--toy-knob {name}"                    # noqa: E731
    try:
        world = world_overrides({**base, **config.toy_world}, option=option)
    except BadInputError as exc:
        if "unknown preset" in str(exc):
            raise BadInputError(f"--toy-preset: {exc}") from None
        raise
    return None if world == world_overrides(base) else world


def check_overrides(*, epochs: int | None, lr: float | None, seed: int,
                    toy_clips: int | None, batch_size: int | None = None) -> None:
    """Refuse overrides that cannot mean anything (0 epochs, a learning rate <= 0, a seed < 0).

    An override of ``None`` leaves the profile's value; any other value is used as given.
    """
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise BadInputError(f"--epochs must be an integer >= 1, got {epochs!r}")
    if lr is not None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise BadInputError(f"--lr must be a finite number > 0, got {lr!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise BadInputError(f"--seed must be an integer in [0, 2^32), got {seed!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise BadInputError(f"--batch-size must be an integer >= 1, got {batch_size!r}")
    if toy_clips is not None and toy_clips < 2:
        raise BadInputError(f"toy_clips must be >= 2, got {toy_clips!r}")


@dataclass
class RunResult:
    record: dict[str, Any]
    path: Path


def evaluator_params(config: RunConfig, name: str) -> dict[str, Any]:
    """``config.eval_params`` for evaluator ``name``: the unprefixed keys it declares, and
    every ``name.key`` one.

    An unprefixed key goes to each evaluator of the run that declares it (``iterations``
    to the VOC07 ones, not to ``knn``); one that no evaluator of the run declares is
    refused, with the scoped form that gives a parameter to one evaluator.
    """
    scoped = {k.partition(".")[2]: v for k, v in config.eval_params.items()
              if k.startswith(f"{name}.")}
    unknown = sorted({k.partition(".")[0] for k in config.eval_params if "." in k}
                     - set(config.evaluators))
    if unknown:
        raise BadInputError(f"--eval-param {unknown[0]}.*: {unknown[0]!r} is not an evaluator "
                            f"of this run ({', '.join(config.evaluators)})")
    shared = {k: v for k, v in config.eval_params.items() if "." not in k}
    for key in shared:
        if not any(_declares(evaluator, key) for evaluator in config.evaluators):
            takes = "; ".join(f"{e} takes {', '.join(_declared(e) or ['nothing'])}"
                              for e in config.evaluators)
            raise BadInputError(
                f"--eval-param {key}: no evaluator of this run has a parameter {key!r} "
                f"({takes}); to give one evaluator a parameter, scope it: --eval-param "
                f"{config.evaluators[0]}.NAME=VALUE")
    return {**{k: v for k, v in shared.items() if _declares(name, k)}, **scoped}


def _declared(evaluator: str) -> list[str] | None:
    """The parameters the evaluator plugin ``evaluator`` declares; None if it accepts any
    keyword, or is not installed (the registry refuses it with its own message)."""
    from harness.api.errors import HarnessError
    from harness.api.params import _takes_kwargs, declared_params
    from harness.api.registry import default_registry

    try:
        cls = default_registry().get("evaluator", evaluator).cls
    except HarnessError:
        return None
    return None if _takes_kwargs(cls) else list(declared_params(cls))


def _declares(evaluator: str, param: str) -> bool:
    """Whether the evaluator plugin ``evaluator`` takes a parameter called ``param``."""
    declared = _declared(evaluator)
    return declared is None or param in declared

"""``harness run``: every stage of the benchmark, each cached under a key of its inputs.

Read it top to bottom: :func:`run` resolves the data, then features -> labels -> pretext
network -> downstream metrics -> result record. Each stage's output sits in the cache
folder under :func:`harness.cache.stage_key` of everything it depends on, so a second
identical run recomputes nothing, changing ``k`` redoes clustering onwards only, and an
interrupted run resumes (pretext training and evaluation resume inside their stage).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Literal

from harness.cache import cache_root, stage_key
from harness.errors import BadInputError

Init = Literal["sound", "random", "supervised"]
INITS: tuple[str, ...] = ("sound", "random", "supervised")


@dataclass(frozen=True)
class Profile:
    """The schedule of one run: the toy world on a CPU, or the paper's."""

    name: str
    #: clips in the toy world (ignored with --clips)
    toy_clips: int
    #: side of the frames the pretext network sees
    image_size: int
    pretext_epochs: int
    pretext_batch_size: int
    pretext_lr: float
    #: profile name passed to the evaluators
    eval_profile: str


PROFILES: dict[str, Profile] = {
    "toy": Profile(name="toy", toy_clips=1000, image_size=64, pretext_epochs=30,
                   pretext_batch_size=64, pretext_lr=0.01, eval_profile="toy"),
    "paper": Profile(name="paper", toy_clips=1000, image_size=224, pretext_epochs=200,
                     pretext_batch_size=256, pretext_lr=0.01, eval_profile="paper"),
}


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on; recorded in full in the result record."""

    repr: str = "mfcc"
    repr_params: dict[str, Any] = field(default_factory=dict)
    labeler: str = "kmeans"
    labeler_params: dict[str, Any] = field(default_factory=dict)
    k: int = 15
    backbone: str = "alexnet"
    init: Init = "sound"
    profile: str = "toy"
    seed: int = 0
    world_seed: int = 0
    device: str = "auto"
    clips: Path | None = None
    voc: Path | None = None
    evaluators: tuple[str, ...] = ("voc07_linear", "voc07_full")
    preset: str = "krahenbuhl"
    pretext_epochs: int | None = None
    results: Path = Path("results")

    def resolved_profile(self) -> Profile:
        if self.profile not in PROFILES:
            raise BadInputError(f"unknown profile {self.profile!r}; choose from {', '.join(PROFILES)}")
        p = PROFILES[self.profile]
        return replace(p, pretext_epochs=self.pretext_epochs) if self.pretext_epochs else p


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = round(time.perf_counter() - start, 3)

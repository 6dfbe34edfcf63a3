"""How frozen per-layer features are extracted (:class:`FrozenConfig`) and the sizes
and dtypes it allows: the settings half of :mod:`harness.evaluation.layer_features`.

Kept apart from the extraction, which needs torch, so that an evaluator can be created
and its parameters read (as ``harness leaderboard`` does) without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.api.errors import BadInputError
from harness.profiles import FROZEN_TARGET_VALUES

#: the declared size of a pooled layer (its home: :mod:`harness.profiles`)
TARGET_VALUES = FROZEN_TARGET_VALUES
#: the image side per evaluation profile: toy frames are 64 px (the pretext's size);
#: the benchmark suite resizes VOC images to 224 (its extract_features configs)
PROFILE_IMAGE_SIZE: dict[str, int] = {"toy": 64, "paper": 224}
#: the dtypes features may be cached in
STORAGE_DTYPES = ("float16", "float32")
#: the largest finite float16
FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class FrozenConfig:
    """How features are extracted; every field is part of the cache key."""

    #: side of the square network input (None: the profile's, :data:`PROFILE_IMAGE_SIZE`)
    image_size: int | None = None
    #: fixed views per image (view 0: the whole image); features are their mean
    views: int = 1
    #: pooled size of a convolutional layer
    target_values: int = TARGET_VALUES
    #: layers to capture (None: every layer the network declares)
    layers: tuple[str, ...] | None = None
    #: images per forward pass (does not change the features)
    batch_size: int = 64
    #: dtype of the cached features, "float16" or "float32" (None: the profile's,
    #: :attr:`harness.profiles.EvalScaling.frozen_storage`)
    storage: str | None = None

    def __post_init__(self) -> None:
        if self.storage is not None and self.storage not in STORAGE_DTYPES:
            raise BadInputError(f"frozen features: storage must be one of "
                                f"{', '.join(STORAGE_DTYPES)}, got {self.storage!r}")
        if self.views < 1:
            raise BadInputError(f"frozen features: views must be >= 1, got {self.views}")
        if self.target_values < 1:
            raise BadInputError("frozen features: target_values must be >= 1")
        if self.image_size is not None and self.image_size < 16:
            raise BadInputError(f"frozen features: image_size must be >= 16, got {self.image_size}")

    def resolved_size(self, profile: str) -> int:
        if self.image_size is not None:
            return self.image_size
        if profile not in PROFILE_IMAGE_SIZE:
            raise BadInputError(f"unknown profile {profile!r}; choose from "
                                f"{', '.join(PROFILE_IMAGE_SIZE)}")
        return PROFILE_IMAGE_SIZE[profile]

    def resolved_storage(self, profile: str) -> str:
        """The storage dtype: as given, else the profile's."""
        if self.storage is not None:
            return self.storage
        from harness.profiles import get_profile

        return get_profile(profile).evaluation.frozen_storage

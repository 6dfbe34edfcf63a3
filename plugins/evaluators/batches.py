"""What VOC07 training and scoring feed the network, and in which arithmetic: the images
of each iteration's batch, their training-augmented crops (a random resized crop or the
protocol's window crop, mirrored), and bf16 autocast or float32.

Each draw takes a generator the caller seeded from the protocol's seed and the iteration
(or view, or test crop) number alone, so a resumed run sees exactly the batches of an
uninterrupted one.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from .augment import ImageStore, base_scales, sample_resized_crop, sample_window_crop
from .protocol import Protocol


def _bf16(dev: torch.device, proto: Protocol) -> bool:
    from harness.api import resolve_precision

    return resolve_precision(proto.precision, str(dev))


def autocast(dev: torch.device, proto: Protocol):
    """The protocol's arithmetic: bf16 autocast or float32. ``auto`` means what it means for
    every stage (:func:`harness.runtime.devices.resolve_precision`): bf16 on CUDA and on a CPU
    with native bf16 (AVX512-BF16 or AMX), float32 elsewhere."""
    if _bf16(dev, proto):
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_used(dev: torch.device, proto: Protocol) -> str:
    """What :func:`autocast` runs on ``dev``, in words (recorded with the metrics)."""
    if _bf16(dev, proto):
        return "bf16 autocast" + (", channels-last" if dev.type == "cuda" else "")
    return "float32"


def sample_boxes(store: ImageStore, indices: np.ndarray, proto: Protocol,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Training-augmentation crop boxes and flips for ``store[indices]``."""
    sizes = store.sizes[indices]
    if proto.augmentation == "window_crop":
        return sample_window_crop(rng, sizes, proto.crop_size, proto.scale_min,
                                  proto.scale_max, proto.mirror,
                                  base_scales(sizes, proto.base_short_side))
    return sample_resized_crop(rng, sizes, proto.scale_min, proto.scale_max,
                               proto.aspect_min, proto.aspect_max, proto.mirror)


def to_input(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cuda" else x


def augmented_crops(store: ImageStore, indices: np.ndarray, proto: Protocol,
               rng: np.random.Generator) -> torch.Tensor:
    """Training-augmented crops of ``store[indices]`` (the test crops use this too)."""
    boxes, flips = sample_boxes(store, indices, proto, rng)
    return to_input(store.crops(indices, boxes, flips, proto.crop_size))


def batch_images(order: np.ndarray, batch_size: int, it: int) -> np.ndarray:
    """The images of iteration ``it``: the next ``batch_size`` of the cycled order."""
    return order[(it * batch_size + np.arange(batch_size)) % len(order)]

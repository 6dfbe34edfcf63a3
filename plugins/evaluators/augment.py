"""Decoded VOC images in memory and the two training augmentations, batched on the device.

Every image of a split is decoded once into a uint8 tensor, padded to a common size with
the normalisation mean (so that padding reads as zero after normalisation, like Caffe's
mean-subtracted zero padding) and kept on the device. A batch is then one gather, one
normalisation and one ``torchvision.ops.roi_align`` that crops and resizes every sample at
once (averaging several samples per output pixel when shrinking, so downscaling is
anti-aliased). This is what lets 80,000 iterations run in minutes on a GPU, and it is the
same code on the CPU.

The images stay uint8 on the device; only the images of one crop call are converted to
float32, and a call whose float32 images would exceed the store's ``workspace_bytes``
(from the device's free memory on a GPU, :func:`crop_workspace`) is cut into chunks of
images. ``roi_align`` computes each output box from its own image alone, so a chunked call
returns exactly (bit for bit) what one call over the whole batch returns: 400 padded VOC
images are 1.2 GB of float32, a chunk is what the device can spare.

Crop parameters are drawn with numpy from a generator the caller seeds per iteration, so
a run resumed from a checkpoint draws exactly the crops an uninterrupted run draws.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from harness.api import free_device_bytes
from harness.api.errors import BadInputError

#: float32 bytes one crop call may convert at once on a CPU (85 padded VOC images; the toy
#: VOC's batches of 400 64-pixel images take 20 MB, one call)
CPU_CROP_WORKSPACE = 1 << 28
#: on a GPU: this share of the free memory at loading time, within the bounds below
GPU_CROP_SHARE = 0.125
GPU_CROP_WORKSPACE_BOUNDS = (1 << 26, 1 << 31)


def crop_workspace(device: str | torch.device) -> int:
    """The float32 bytes a crop call may use on ``device`` (see the module's docstring)."""
    free = free_device_bytes(device)
    if free is None:
        return CPU_CROP_WORKSPACE
    lo, hi = GPU_CROP_WORKSPACE_BOUNDS
    return int(min(hi, max(lo, GPU_CROP_SHARE * free)))


@dataclass
class ImageStore:
    """A split's images, decoded: ``pixels`` uint8 [N, 3, H, W] padded, ``sizes`` [N, 2] (h, w).

    ``workspace_bytes`` bounds the float32 images one :meth:`crops` call holds at once.
    """

    pixels: torch.Tensor
    sizes: np.ndarray
    mean: torch.Tensor
    std: torch.Tensor
    workspace_bytes: int = CPU_CROP_WORKSPACE

    def __len__(self) -> int:
        return self.pixels.shape[0]

    @property
    def images_per_chunk(self) -> int:
        """Images whose float32 copies fit ``workspace_bytes`` (at least one)."""
        per_image = 4 * self.pixels[0].numel()
        return max(1, self.workspace_bytes // per_image)

    def crops(self, indices, boxes, flips, crop_size: int) -> torch.Tensor:
        """Normalised float32 [B, 3, crop, crop]: box ``boxes[b]`` of image ``indices[b]``.

        ``boxes`` are (x0, y0, x1, y1) in source pixel coordinates; a box that extends past
        the image reads the mean colour there; ``flips[b]`` mirrors sample ``b``. Arguments
        may be numpy arrays or tensors already on the device (no transfer then).
        """
        device = self.pixels.device
        idx = torch.as_tensor(indices, dtype=torch.long, device=device)
        boxes = torch.as_tensor(boxes, dtype=torch.float32, device=device)
        flips = torch.as_tensor(flips, dtype=torch.bool, device=device)
        step = self.images_per_chunk
        if len(idx) <= step:
            return self._crops(idx, boxes, flips, crop_size)
        return torch.cat([self._crops(idx[lo:lo + step], boxes[lo:lo + step],
                                      flips[lo:lo + step], crop_size)
                          for lo in range(0, len(idx), step)])

    def _crops(self, idx: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor,
               crop_size: int) -> torch.Tensor:
        """:meth:`crops` of one chunk: the only place images are converted to float32."""
        from torchvision.ops import roi_align

        device = self.pixels.device
        batch = self.pixels.index_select(0, idx).float().div_(255.0)
        batch = batch.sub_(self.mean).div_(self.std)
        slot = torch.arange(len(idx), dtype=torch.float32, device=device)[:, None]
        out = roi_align(batch, torch.cat([slot, boxes], dim=1), output_size=(crop_size, crop_size),
                        spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        return torch.where(flips[:, None, None, None], out.flip(-1), out)


def _decode(path: Path) -> np.ndarray:
    from harness.api import load_rgb

    if not path.is_file():
        raise BadInputError(f"{path}: missing image")
    return np.array(load_rgb(path))


def _check_header(path: Path) -> None:
    from harness.api import open_image

    if not path.is_file():
        raise BadInputError(f"{path}: missing image")
    with open_image(path):          # reads the header only
        pass


def check_readable(paths: Sequence[Path], threads: int = 8) -> None:
    """Raise BadInputError for the first of ``paths`` that is missing or not an image
    (headers only: a fraction of a millisecond per image)."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for _ in pool.map(_check_header, paths):
            pass


def load_images(paths: Sequence[Path], mean: Sequence[float], std: Sequence[float],
                device: str | torch.device, *, threads: int = 8,
                progress=None) -> ImageStore:
    """Decode ``paths`` (threads; PIL releases the GIL) into an :class:`ImageStore`."""
    if not paths:
        raise BadInputError("no images to load")
    arrays: list[np.ndarray] = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for a in pool.map(_decode, paths):
            arrays.append(a)
            if progress is not None:
                progress()
    sizes = np.array([a.shape[:2] for a in arrays], dtype=np.int64)
    h_max, w_max = sizes.max(axis=0)
    fill = torch.tensor([round(255 * m) for m in mean], dtype=torch.uint8)
    pixels = fill.view(1, 3, 1, 1).repeat(len(arrays), 1, int(h_max), int(w_max))
    for i, a in enumerate(arrays):
        h, w = a.shape[:2]
        pixels[i, :, :h, :w] = torch.from_numpy(a).permute(2, 0, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    pixels = pixels.to(device)
    return ImageStore(pixels=pixels, sizes=sizes, mean=mean_t.to(device), std=std_t.to(device),
                      workspace_bytes=crop_workspace(device))


# --------------------------------------------------------------------------- crop sampling
def base_scales(sizes: np.ndarray, base_short_side: int | None) -> np.ndarray:
    """Per-image factor that brings the short side to ``base_short_side`` (1 if None)."""
    if base_short_side is None:
        return np.ones(len(sizes))
    return base_short_side / sizes.min(axis=1)


def sample_window_crop(rng: np.random.Generator, sizes: np.ndarray, crop: int,
                       scale_min: float, scale_max: float, mirror: bool,
                       base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Krähenbühl's crop: a square window of ``crop * scale`` pixels inside the image.

    As the transformation layer of philkr/caffe draws it (``generate()``, see
    :mod:`.protocol`): ``scale`` is uniform in [min(scale_min, m), m] with ``m =
    min(scale_max, H / crop, W / crop)`` on the image scaled by ``base``, the window's
    offset is uniform over the positions that keep it inside the image, and the window is
    then resized to ``crop`` x ``crop``. The window never leaves the image. Returns
    (boxes [B, 4] in source pixels, flips [B]).
    """
    n = len(sizes)
    h, w = sizes[:, 0] * base, sizes[:, 1] * base
    top = np.minimum(scale_max, np.minimum(h, w) / crop)
    scale = rng.uniform(np.minimum(scale_min, top), top, size=n)
    side = np.minimum(crop * scale, np.minimum(h, w))
    y0 = rng.uniform(0.0, h - side)
    x0 = rng.uniform(0.0, w - side)
    boxes = np.stack([x0, y0, x0 + side, y0 + side], axis=1) / base[:, None]
    flips = rng.random(n) < 0.5 if mirror else np.zeros(n, dtype=bool)
    return boxes, flips


def sample_resized_crop(rng: np.random.Generator, sizes: np.ndarray, area_min: float,
                        area_max: float, aspect_min: float, aspect_max: float,
                        mirror: bool) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's ``RandomResizedCrop`` sampling (10 tries, then a centre crop).

    Flip first, as DeepCluster composes them (the order does not change the distribution).
    """
    n = len(sizes)
    flips = rng.random(n) < 0.5 if mirror else np.zeros(n, dtype=bool)
    boxes = np.zeros((n, 4))
    log_lo, log_hi = math.log(aspect_min), math.log(aspect_max)
    for b, (height, width) in enumerate(sizes):
        boxes[b] = _one_resized_crop(rng, int(height), int(width), area_min, area_max,
                                     log_lo, log_hi, aspect_min, aspect_max)
    return boxes, flips


def _one_resized_crop(rng, height, width, area_min, area_max, log_lo, log_hi,
                      aspect_min, aspect_max) -> tuple[float, float, float, float]:
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(area_min, area_max)
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = int(rng.integers(0, height - h + 1))
            j = int(rng.integers(0, width - w + 1))
            return j, i, j + w, i + h
    ratio = width / height                           # fallback: torchvision's centre crop
    if ratio < aspect_min:
        w, h = width, int(round(width / aspect_min))
    elif ratio > aspect_max:
        h, w = height, int(round(height * aspect_max))
    else:
        w, h = width, height
    i, j = (height - h) // 2, (width - w) // 2
    return j, i, j + w, i + h

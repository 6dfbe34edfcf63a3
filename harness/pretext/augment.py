"""Batched image augmentation on the training device: uint8 frames in, normalised floats out.

Per-image augmentation in data-loader workers (decode, crop, jitter, one image at a time)
is what usually limits training speed on a fast GPU. Here a whole batch of uint8 frames
[B, S, S, 3] is augmented at once, on the device that trains:

* random resized crop and horizontal flip in one ``grid_sample`` call (one affine map per
  image: the crop box, mirrored when flipped);
* colour jitter (brightness, contrast, saturation, hue) as one 3x3 colour matrix and one
  offset per image, applied with a batched matrix product;
* clamp to [0, 1], normalise with the backbone's mean and std.

The random draws (:func:`sample_params`) come from a seeded CPU ``torch.Generator`` in a
fixed amount per image, so a batch is augmented identically on CPU and GPU, in one
process or split across several.

Differences from torchvision's per-image transforms, kept on purpose for speed: the crop
box is continuous rather than whole pixels; the four jitter operations are applied in a
fixed order (brightness, contrast, saturation, hue) with one final clamp instead of a
random order with a clamp after each; hue is a rotation about the grey axis in YIQ space
(as NVIDIA DALI's hue operator does; it keeps luma, where torchvision's HSV hue shift keeps
the largest channel, so the two differ in detail but turn hues the same way).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.pretext.config import AugmentConfig

#: ITU-R 601 luma weights (what torchvision's rgb_to_grayscale uses)
_LUMA = (0.299, 0.587, 0.114)
#: RGB -> YIQ; its I and Q rows sum to zero, so grey stays grey under a hue rotation
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
#: crop proposals drawn per image before falling back to the whole frame (as torchvision)
_CROP_TRIES = 10


@dataclass
class AugmentParams:
    """The random choices for one batch (CPU tensors; rows are images)."""

    #: crop boxes as fractions of the frame: x0, y0, width, height
    boxes: torch.Tensor
    #: True where the image is mirrored
    flips: torch.Tensor
    #: brightness, contrast, saturation factors and hue shift (turns)
    colour: torch.Tensor

    def rows(self, index: slice | torch.Tensor) -> "AugmentParams":
        """The parameters of a subset of the batch (one rank's share)."""
        return AugmentParams(self.boxes[index], self.flips[index], self.colour[index])


def sample_params(n: int, config: AugmentConfig, generator: torch.Generator) -> AugmentParams:
    """Draw crop boxes, flips and jitter factors for ``n`` images.

    Always draws the same amount of random numbers per image, so the stream stays aligned
    whatever the outcome of the crop proposals.
    """
    # random resized crop, vectorised form of torchvision's proposal loop
    u = torch.rand(n, _CROP_TRIES, 2, generator=generator, dtype=torch.float64)
    lo, hi = config.crop_scale
    area = lo + (hi - lo) * u[..., 0]
    log_lo, log_hi = math.log(config.crop_ratio[0]), math.log(config.crop_ratio[1])
    ratio = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    w, h = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
    fits = (w <= 1) & (h <= 1)
    first = torch.argmax(fits.to(torch.int8), dim=1)          # first proposal that fits
    found = fits.any(dim=1)
    rows = torch.arange(n)
    w = torch.where(found, w[rows, first], torch.ones(n, dtype=torch.float64))
    h = torch.where(found, h[rows, first], torch.ones(n, dtype=torch.float64))
    pos = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    boxes = torch.stack([pos[:, 0] * (1 - w), pos[:, 1] * (1 - h), w, h], dim=1).float()

    flips = torch.rand(n, generator=generator) < config.flip

    c = torch.rand(n, 4, generator=generator) * 2 - 1                # uniform in [-1, 1]
    strengths = torch.tensor([config.brightness, config.contrast, config.saturation])
    factors = 1 + c[:, :3] * strengths
    hue = c[:, 3:] * config.hue
    return AugmentParams(boxes=boxes, flips=flips, colour=torch.cat([factors, hue], dim=1))


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [0, 1] (channels-last in memory)."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images [B, H, W, 3], got {images.dtype} "
                         f"{tuple(images.shape)}")
    return images.permute(0, 3, 1, 2).float().div_(255)


# ---- the per-image maps, computed on the CPU (tiny) and sent to the device in one copy
def crop_thetas(boxes: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Affine maps [B, 2, 3] from output coordinates to each crop box (mirrored if flipped)."""
    x0, y0, w, h = boxes.double().unbind(1)
    sign = 1 - 2 * flips.double()
    theta = torch.zeros(boxes.shape[0], 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = w * sign                # grid x in [-1, 1] -> the crop's x range
    theta[:, 0, 2] = 2 * x0 + w - 1          # crop centre, normalised
    theta[:, 1, 1] = h
    theta[:, 1, 2] = 2 * y0 + h - 1
    return theta.float()


def colour_transforms(colour: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image jitter as ``out = M x + g * mean_grey(x)``: matrices M [B, 3, 3], weights g [B].

    Brightness b scales, contrast c blends towards the mean grey level, saturation s
    blends towards the pixel's grey, hue rotates about the grey axis. Saturation and hue
    keep grey unchanged, so contrast's blend is one offset added to all three channels.
    """
    c = colour.double()
    n = c.shape[0]
    brightness, contrast, sat = c[:, 0].view(n, 1, 1), c[:, 1].view(n, 1, 1), c[:, 2].view(n, 1, 1)
    luma = torch.tensor(_LUMA, dtype=torch.float64)
    saturation = sat * torch.eye(3, dtype=torch.float64) + (1 - sat) * luma.view(1, 3).expand(3, 3)
    yiq = torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)
    angle = -2 * math.pi * c[:, 3]          # this sign turns hues the way torchvision does
    rotation = torch.zeros(n, 3, 3, dtype=torch.float64)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = torch.cos(angle), -torch.sin(angle)
    rotation[:, 2, 1], rotation[:, 2, 2] = torch.sin(angle), torch.cos(angle)
    hue = torch.linalg.inv(yiq) @ rotation @ yiq
    matrices = contrast * brightness * (hue @ saturation)
    grey_weight = ((1 - contrast) * brightness).view(n)
    return matrices.float(), grey_weight.float()


@dataclass
class DeviceMaps:
    """One batch's crop maps and colour transforms, on the training device."""

    thetas: torch.Tensor
    matrices: torch.Tensor
    grey_weight: torch.Tensor


def device_maps(params: AugmentParams, device: torch.device) -> DeviceMaps:
    """Compute the maps on the CPU and move them in one copy that does not block the host
    (a plain host-to-GPU copy waits for the GPU to finish its queue)."""
    thetas = crop_thetas(params.boxes, params.flips)
    matrices, grey_weight = colour_transforms(params.colour)
    n = thetas.shape[0]
    packed = torch.cat([thetas.view(n, 6), matrices.view(n, 9), grey_weight.view(n, 1)], dim=1)
    if device.type == "cuda":
        packed = packed.pin_memory().to(device, non_blocking=True)
    return DeviceMaps(packed[:, :6].view(n, 2, 3), packed[:, 6:15].view(n, 3, 3), packed[:, 15])


@functools.lru_cache(maxsize=32)
def _constant(values: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A small constant [1, 3, 1, 1] on the device, made once (not one copy per batch)."""
    return torch.tensor(values, dtype=dtype).view(1, 3, 1, 1).to(device)


# ---- the batched operations, on the device
def resample(x: torch.Tensor, thetas: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resampling of each image through its affine map to ``size`` x ``size``."""
    grid = F.affine_grid(thetas.to(x.dtype), [x.shape[0], 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def apply_colour(x: torch.Tensor, matrices: torch.Tensor, grey_weight: torch.Tensor) -> torch.Tensor:
    """``M x + g * mean_grey(x)`` per image, clamped to [0, 1]."""
    b = x.shape[0]
    luma = _constant(_LUMA, x.device, x.dtype)
    mean_grey = (x * luma).sum(1).mean(dim=(1, 2))
    offset = (grey_weight.to(x.dtype) * mean_grey).view(b, 1, 1, 1)
    out = torch.einsum("bij,bjhw->bihw", matrices.to(x.dtype), x) + offset
    return out.clamp_(0, 1)


def normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
              channels_last: bool = True) -> torch.Tensor:
    """(x - mean) / std per channel, in the memory format the network wants."""
    m = _constant(tuple(mean), x.device, x.dtype)
    s = _constant(tuple(std), x.device, x.dtype)
    out = (x - m) / s
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return out.contiguous(memory_format=fmt)


def crop_flip(x: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's crop box resampled to ``size`` x ``size``, mirrored where ``flips``."""
    return resample(x, crop_thetas(boxes, flips).to(x.device), size)


def jitter(x: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation and hue (rows of ``colour``) applied to each image."""
    matrices, grey_weight = colour_transforms(colour)
    return apply_colour(x, matrices.to(x.device), grey_weight.to(x.device))


def augment(images: torch.Tensor, params: AugmentParams, size: int, mean: tuple[float, ...],
            std: tuple[float, ...], channels_last: bool = True) -> torch.Tensor:
    """A training batch: uint8 [B, S, S, 3] -> normalised float [B, 3, size, size]."""
    maps = device_maps(params, images.device)
    x = resample(to_float(images), maps.thetas, size)
    return normalise(apply_colour(x, maps.matrices, maps.grey_weight), mean, std, channels_last)


def center(images: torch.Tensor, size: int, mean: tuple[float, ...], std: tuple[float, ...],
           channels_last: bool = True) -> torch.Tensor:
    """An evaluation batch: the whole frame resized to ``size``, normalised; no randomness."""
    x = to_float(images)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)
    return normalise(x, mean, std, channels_last)

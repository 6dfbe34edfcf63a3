"""Render a composition as a small RGB picture (numpy, vectorised; no per-pixel loops).

A scene background (two jittered colours mixed by a scene pattern), clutter (specks and
strokes, half of them in the object colours), then the objects: a shape in a colour,
randomly sized, stretched, rotated and placed, anti-aliased through a signed distance.
Brightness, contrast, colour balance and pixel noise are jittered last. Which object is
where is returned for annotation (boxes of the visible part, visibility, truncation).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from harness.data.toy.config import ToyConfig
from harness.data.toy.world import COLOURS, LOOKS, SCENES, Composition, Scene
from harness.data.voc import CLASSES

#: area of each shape in units of (half side)^2, for the visible share of an object
_SHAPE_AREA = {"disc": np.pi, "square": 1.64 ** 2, "triangle": 3 * np.sqrt(3) * 0.55 ** 2,
               "cross": 2 * 2 * 0.64 - 0.64 ** 2, "ring": np.pi * (1.0 - 0.4 ** 2)}
_OBJECT_COLOURS = np.array(list(COLOURS.values()), dtype=np.float32)


@dataclass(frozen=True)
class Placed:
    """Where one object ended up in the picture."""

    cls: int
    #: box of the visible part, 1-based inclusive (xmin, ymin, xmax, ymax); None if unseen
    bbox: tuple[int, int, int, int] | None
    #: share of the object's area that is visible (not occluded, inside the frame)
    visible: float
    #: part of the object lies outside the frame
    truncated: bool


@lru_cache(maxsize=32)
def _interp(size: int, cells: int) -> np.ndarray:
    """Matrix [size, cells+1] that linearly interpolates a coarse grid to ``size`` pixels."""
    p = (np.arange(size) + 0.5) / size * cells
    i0 = np.minimum(np.floor(p).astype(int), cells - 1)
    f = p - i0
    w = np.zeros((size, cells + 1), dtype=np.float32)
    w[np.arange(size), i0] = 1 - f
    w[np.arange(size), i0 + 1] = f
    return w


def smooth_noise(rng: np.random.Generator, size: int, cells_y: int, cells_x: int) -> np.ndarray:
    """Value noise [size, size]: a coarse Gaussian grid, bilinearly interpolated."""
    grid = rng.standard_normal((cells_y + 1, cells_x + 1)).astype(np.float32)
    return _interp(size, cells_y) @ grid @ _interp(size, cells_x).T


@lru_cache(maxsize=8)
def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), each [size, size]."""
    c = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(c, c, indexing="ij")


def _jitter(rng: np.random.Generator, colour, amount: float) -> np.ndarray:
    c = np.asarray(colour, dtype=np.float32) + rng.uniform(-amount, amount, 3).astype(np.float32)
    return np.clip(c, 0, 1)


def _mix(c0: np.ndarray, c1: np.ndarray, t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0, 1)[..., None]
    return c0 * (1 - t) + c1 * t


# --------------------------------------------------------------------------- backgrounds
def _background(rng: np.random.Generator, scene: Scene, size: int, cfg: ToyConfig) -> np.ndarray:
    c0, c1 = (_jitter(rng, c, cfg.colour_jitter) for c in scene.colours)
    y, x = _coords(size)
    s = float(size)
    if scene.pattern == "ripples":
        wavelength = rng.uniform(0.06, 0.14) * s
        warp = 2.0 * smooth_noise(rng, size, 2, 3)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * y / wavelength + warp + rng.uniform(0, 2 * np.pi))
        img = _mix(c0, c1, t ** 1.5)
    elif scene.pattern == "streaks":
        t = 0.5 + 0.6 * smooth_noise(rng, size, 3, max(4, size // 3))
        img = _mix(c0, c1, t)
    elif scene.pattern == "road":
        img = _mix(c0, c1, 0.5 + 0.3 * smooth_noise(rng, size, 6, 6))
        x0, slope = rng.uniform(0.3, 0.7) * s, rng.uniform(-0.4, 0.4)
        period, offset = rng.uniform(0.12, 0.2) * s, rng.uniform(0, s)
        lane = (np.abs(x - x0 - slope * (y - s / 2)) < 0.02 * s + 0.5) & \
               (((y + offset) % period) < 0.6 * period)
        img[lane] = _jitter(rng, (0.92, 0.9, 0.75), cfg.colour_jitter)
    elif scene.pattern == "clouds":
        sky = _mix(c0, c0 * 0.8, y / s)
        cloud = np.clip(2.5 * (smooth_noise(rng, size, 3, 4) - rng.uniform(0.0, 0.6)), 0, 1)
        img = sky * (1 - cloud[..., None]) + c1 * cloud[..., None]
    elif scene.pattern == "indoor":
        split = rng.uniform(0.5, 0.75) * s
        panels = 0.08 * np.sign(np.sin(2 * np.pi * x / (rng.uniform(0.12, 0.3) * s)))
        wall = c0 * (1 + panels[..., None])
        floor = c1 * (1 + 0.15 * smooth_noise(rng, size, 2, 8)[..., None])
        img = np.where((y < split)[..., None], wall, floor)
    elif scene.pattern == "beach":
        shore = rng.uniform(0.3, 0.55) * s + 0.05 * s * np.sin(
            2 * np.pi * x / (rng.uniform(0.2, 0.4) * s) + rng.uniform(0, 2 * np.pi))
        sea = c1 * (1 + 0.12 * np.sin(2 * np.pi * y / (0.08 * s))[..., None])
        sand = c0 * (1 + 0.1 * smooth_noise(rng, size, 8, 8)[..., None])
        img = np.where((y < shore)[..., None], sea, sand)
    elif scene.pattern == "trunks":
        img = _mix(c0, c0 * 1.6, 0.5 + 0.5 * smooth_noise(rng, size, 5, 5))
        n = int(rng.integers(3, 7))
        xs = rng.uniform(0, s, n)[:, None, None]
        widths = rng.uniform(0.03, 0.08, n)[:, None, None] * s
        trunk = np.any(np.abs(x[None] - xs) < widths / 2, axis=0)
        img[trunk] = c1
    elif scene.pattern == "crowd":
        img = _mix(c0, c1, 0.5 + 0.5 * smooth_noise(rng, size, 4, 4))
        n = int(rng.integers(25, 50))
        centres = rng.uniform(0, s, (n, 2)).astype(np.float32)
        radii = (rng.uniform(0.025, 0.05, n) * s).astype(np.float32)
        colours = (0.5 * rng.uniform(0.1, 0.9, (n, 3)) + 0.25).astype(np.float32)
        d = np.hypot(y[None] - centres[:, 0, None, None], x[None] - centres[:, 1, None, None])
        cover = np.clip(radii[:, None, None] + 0.5 - d, 0, 1)
        for k in range(n):  # blobs overlap in order; n small images-worth of array ops
            img = img * (1 - cover[k][..., None]) + colours[k] * cover[k][..., None]
    else:  # pragma: no cover - the scene table only names the patterns above
        raise ValueError(f"unknown scene pattern {scene.pattern!r}")
    texture = 0.05 * smooth_noise(rng, size, size // 4, size // 4)
    return np.clip(img * (1 + texture[..., None]), 0, 1).astype(np.float32)


def _clutter(rng: np.random.Generator, img: np.ndarray, cfg: ToyConfig) -> np.ndarray:
    """Specks and strokes, half in the object colours: colour alone is never a class."""
    n = int(rng.poisson(cfg.clutter))
    if n == 0:
        return img
    size = img.shape[0]
    y, x = _coords(size)
    p0 = rng.uniform(0, size, (n, 2)).astype(np.float32)
    length = rng.uniform(0.04, 0.16, n).astype(np.float32) * size
    length[rng.random(n) < 0.5] = 0.0  # specks: zero-length strokes, i.e. dots
    angle = rng.uniform(0, np.pi, n)
    direction = np.stack([np.sin(angle), np.cos(angle)], axis=1).astype(np.float32)
    width = rng.uniform(0.6, 1.6, n).astype(np.float32) * max(1.0, size / 64)
    # distance of every pixel to every segment p0 + s * direction, s in [0, length]
    dy, dx = y[None] - p0[:, 0, None, None], x[None] - p0[:, 1, None, None]
    along = np.clip(dy * direction[:, 0, None, None] + dx * direction[:, 1, None, None],
                    0, length[:, None, None])
    dist = np.hypot(dy - along * direction[:, 0, None, None], dx - along * direction[:, 1, None, None])
    cover = np.clip(width[:, None, None] + 0.5 - dist, 0, 1)
    palette = _OBJECT_COLOURS[rng.integers(len(_OBJECT_COLOURS), size=n)]
    colours = np.where(rng.random((n, 1)) < 0.5, palette, rng.uniform(0, 1, (n, 3)))
    for k in range(n):
        img = img * (1 - cover[k][..., None]) + colours[k].astype(np.float32) * cover[k][..., None]
    return img


# --------------------------------------------------------------------------- objects
def _signed_distance(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) to a shape spanning about [-1, 1]^2."""
    if shape == "disc":
        return np.hypot(u, v) - 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.82
    if shape == "triangle":  # equilateral, inradius 0.55, apex up
        return np.maximum.reduce([v, -0.866 * u - 0.5 * v, 0.866 * u - 0.5 * v]) - 0.55
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return np.minimum(np.maximum(au - 1.0, av - 0.32), np.maximum(au - 0.32, av - 1.0))
    if shape == "ring":
        return np.abs(np.hypot(u, v) - 0.7) - 0.3
    raise ValueError(f"unknown shape {shape!r}")  # pragma: no cover


def _object_mask(rng: np.random.Generator, shape: str, nearness: float, size: int,
                 cfg: ToyConfig) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Anti-aliased coverage [size, size] of one randomly placed object (bigger when
    nearer), its area in pixels (inside the frame or not), and its local coordinates."""
    lo, hi = cfg.object_scale
    c = cfg.nearness_coupling
    t = c * nearness + (1 - c) * rng.random()
    half = float(np.exp(np.log(lo) + t * (np.log(hi) - np.log(lo)))) * size / 2
    aspect = float(np.exp(rng.uniform(-np.log(cfg.max_aspect), np.log(cfg.max_aspect))))
    theta = rng.uniform(0, 2 * np.pi)
    margin = 0.6 * half
    cy, cx = rng.uniform(margin, size - margin, 2) if size > 2 * margin else (size / 2, size / 2)
    y, x = _coords(size)
    ry, rx = y - cy, x - cx
    cos, sin = np.cos(theta), np.sin(theta)
    u = (rx * cos + ry * sin) / (half * np.sqrt(aspect))
    v = (-rx * sin + ry * cos) / (half / np.sqrt(aspect))
    mask = np.clip(0.5 - _signed_distance(shape, u, v) * half, 0, 1)
    return mask.astype(np.float32), _SHAPE_AREA[shape] * half * half, u, v


def _box(visible: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.nonzero(visible > 0.5)
    if rows.size == 0:
        return None
    return int(cols.min()) + 1, int(rows.min()) + 1, int(cols.max()) + 1, int(rows.max()) + 1


def render(rng: np.random.Generator, comp: Composition,
           cfg: ToyConfig) -> tuple[np.ndarray, list[Placed]]:
    """The picture (uint8 [S, S, 3]) of a composition and where its objects are."""
    size = cfg.image_size
    img = _background(rng, SCENES[comp.scene], size, cfg)
    img = _clutter(rng, img, cfg)
    masks, areas = [], []
    for obj in comp.objects:
        shape, colour = LOOKS[CLASSES[obj.cls]]
        mask, area, u, v = _object_mask(rng, shape, obj.nearness, size, cfg)
        fill = _jitter(rng, COLOURS[colour], cfg.colour_jitter) * rng.uniform(0.85, 1.15)
        angle = rng.uniform(0, 2 * np.pi)
        shading = 1 + 0.2 * np.clip(np.cos(angle) * u + np.sin(angle) * v, -1, 1)
        img = img * (1 - mask[..., None]) + np.clip(fill * shading[..., None], 0, 1) * mask[..., None]
        masks.append(mask)
        areas.append(area)
    placed = []
    for i, obj in enumerate(comp.objects):
        visible = masks[i].copy()
        for later in masks[i + 1:]:
            visible *= 1 - later
        placed.append(Placed(cls=obj.cls, bbox=_box(visible),
                             visible=float(min(1.0, visible.sum() / areas[i])),
                             truncated=bool(masks[i].sum() < 0.9 * areas[i])))
    img = _photometric(rng, img, cfg)
    return (img * 255 + 0.5).astype(np.uint8), placed


def _photometric(rng: np.random.Generator, img: np.ndarray, cfg: ToyConfig) -> np.ndarray:
    """Contrast, brightness, colour balance and sensor noise, drawn per picture."""
    j = cfg.brightness_jitter
    mean = img.mean()
    img = (img - mean) * rng.uniform(1 - j, 1 + j) + mean
    gains = rng.uniform(1 - cfg.colour_jitter, 1 + cfg.colour_jitter, 3).astype(np.float32)
    img = img * rng.uniform(1 - j, 1 + j) * gains
    img = img + rng.standard_normal(img.shape).astype(np.float32) * cfg.pixel_noise
    return np.clip(img, 0, 1)

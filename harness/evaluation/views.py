"""The fixed views frozen features are taken through: each image's whole frame and seeded
crops of it, rendered to square uint8 arrays (:mod:`harness.evaluation.layer_features`
averages a network's features over them; the pretext monitor probes view 0).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np


def view_boxes(sizes: np.ndarray, views: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (x0, y0, x1, y1) [N, V, 4] and flips [N, V] of every image's fixed views.

    ``sizes`` is [N, 2] (height, width). View 0 is the whole image, unflipped; views 1..V-1
    are square-ish crops of 40-100% of the area (aspect 3/4-4/3), mirrored with
    probability 1/2, from ``numpy.random.default_rng([seed, 7411])``.
    """
    n = len(sizes)
    boxes = np.zeros((n, views, 4), dtype=np.float64)
    flips = np.zeros((n, views), dtype=bool)
    boxes[:, 0, 2] = sizes[:, 1]
    boxes[:, 0, 3] = sizes[:, 0]
    rng = np.random.default_rng([seed, 7411])
    for v in range(1, views):
        area = rng.uniform(0.4, 1.0, size=n)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3), size=n))
        h, w = sizes[:, 0].astype(float), sizes[:, 1].astype(float)
        cw = np.minimum(w, np.sqrt(area * h * w * aspect))
        ch = np.minimum(h, np.sqrt(area * h * w / aspect))
        x0 = rng.uniform(0, 1, size=n) * (w - cw)
        y0 = rng.uniform(0, 1, size=n) * (h - ch)
        boxes[:, v] = np.stack([x0, y0, x0 + cw, y0 + ch], axis=1)
        flips[:, v] = rng.random(n) < 0.5
    return boxes, flips


def image_size(path: Path) -> tuple[int, int]:
    from harness.data.images import image_size as header_size

    return header_size(path)


def _render(path: Path, boxes: np.ndarray, flips: np.ndarray, size: int) -> np.ndarray:
    """uint8 [V, size, size, 3]: each view's box of the image, resized (antialiased)."""
    from PIL import Image

    from harness.data.images import load_rgb

    rgb = load_rgb(path)
    out = np.empty((len(boxes), size, size, 3), dtype=np.uint8)
    for v, (box, flip) in enumerate(zip(boxes, flips)):
        view = rgb.resize((size, size), Image.Resampling.BILINEAR, box=tuple(float(b) for b in box))
        if flip:
            view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out[v] = np.asarray(view)
    return out


def render_views(paths: Sequence[Path], boxes: np.ndarray, flips: np.ndarray,
                 size: int) -> np.ndarray:
    """uint8 [N, V, size, size, 3] of every image's views (decoded in threads)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return np.stack(list(pool.map(_render, paths, boxes, flips, [size] * len(paths))))

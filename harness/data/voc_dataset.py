"""VOC07 classification as a torch dataset (:class:`VOCClassification`).

Kept apart from :mod:`harness.data.voc`, which reads the VOC layout without torch, so that
what only needs the class names and the split lists (the toy world, the leaderboard, the
evaluator plugins' declarations) imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.utils.data

from harness.data.voc import CLASSES, read_voc, targets_matrix


class VOCClassification(torch.utils.data.Dataset):
    """VOC07 multi-label classification: item ``i`` is ``(image, targets)``.

    ``image`` is an RGB PIL image, or ``transform(image)`` when a transform is given;
    ``targets`` is an int8 tensor [20] with 1 / 0 / -1 (present / absent / difficult-only).
    """

    def __init__(self, root: str | Path, split: str,
                 transform: Callable | None = None):
        self.split = split
        self.images = read_voc(root, split)
        self.transform = transform
        self.classes = CLASSES

    def __len__(self) -> int:
        return len(self.images)

    def targets(self) -> np.ndarray:
        """int8 [N, 20] targets of the whole split (no image is opened)."""
        return targets_matrix(self.images)

    def __getitem__(self, i: int):
        from harness.data.images import load_rgb

        item = self.images[i]
        image = load_rgb(item.path)
        if self.transform is not None:
            image = self.transform(image)
        return image, torch.from_numpy(item.targets.copy())

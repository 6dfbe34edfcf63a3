"""An example third-party evaluator: class centroids of frozen trunk features.

Each VOC image is resized to ``size`` pixels, normalised with the backbone's mean and std
and run once through the frozen trunk. A class's score for a test image is the cosine
similarity of its feature to the mean feature of the class's positive training images
minus that to the mean of its negatives; AP per class comes from scikit-learn on the
test images whose label is not "difficult only". No training, so it runs in seconds: a
quick check of what a trunk's features hold, not a replacement for the VOC07 protocol.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import average_precision_score

from harness.api.hookspecs import hookimpl
from harness.api.interfaces import EvalContext, EvalMetrics, Evaluator, PretrainedModel
from harness.api import CLASSES, read_voc, targets_matrix, voc2007_dir


class CentroidProbe(Evaluator):
    """VOC07 mAP of nearest-centroid scores on frozen trunk features."""

    name = "centroid_probe"
    description = "VOC07 mAP from class centroids of frozen trunk features (example plugin)"

    def __init__(self, *, size: int = 64, train_split: str = "trainval", batch: int = 64):
        if train_split not in ("trainval", "train"):
            raise ValueError(f"train_split must be trainval or train, got {train_split!r}")
        self.size, self.train_split, self.batch = size, train_split, batch

    def params(self) -> dict:
        return {"size": self.size, "train_split": self.train_split}

    def evaluate(self, model: PretrainedModel, data_root: Path,
                 context: EvalContext) -> EvalMetrics:
        test_split = "test" if self.train_split == "trainval" else "val"
        voc = voc2007_dir(data_root)
        train, test = read_voc(voc, self.train_split), read_voc(voc, test_split)
        x_train = self._features(model, train, context.device)
        x_test = self._features(model, test, context.device)
        y_train, y_test = targets_matrix(train), targets_matrix(test)
        ap = {}
        for c, name in enumerate(CLASSES):
            pos, neg = x_train[y_train[:, c] == 1], x_train[y_train[:, c] == 0]
            direction = pos.mean(0) - neg.mean(0)
            scores = x_test @ direction
            keep = y_test[:, c] >= 0
            ap[name] = float(100 * average_precision_score(y_test[keep, c] == 1, scores[keep]))
        return EvalMetrics(
            headline="map",
            formula="scikit-learn average_precision_score per class, mean over 20 classes, percent",
            value=float(np.mean(list(ap.values()))), breakdown=ap,
            protocol={"size": self.size, "train_split": self.train_split,
                      "test_split": test_split, "features": "frozen trunk, L2-normalised",
                      "score": "cosine to positive mean minus negative mean",
                      "profile": context.profile, "seed": context.seed},
            details={"n_train": len(train), "n_test": len(test)})

    @torch.no_grad()
    def _features(self, model: PretrainedModel, images, device: str) -> np.ndarray:
        """L2-normalised trunk features of ``images``, in order."""
        mean = torch.tensor(model.backbone.mean).view(1, 3, 1, 1)
        std = torch.tensor(model.backbone.std).view(1, 3, 1, 1)
        trunk = model.net.trunk.to(device).eval()
        out = []
        for lo in range(0, len(images), self.batch):
            pixels = [np.asarray(Image.open(im.path).convert("RGB")
                                 .resize((self.size, self.size), Image.BILINEAR))
                      for im in images[lo:lo + self.batch]]
            x = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255
            feats = trunk(((x - mean) / std).to(device)).flatten(1)
            out.append(torch.nn.functional.normalize(feats, dim=1).cpu().numpy())
        return np.concatenate(out).astype(np.float64)


@hookimpl
def harness_register_evaluators(register):
    register(CentroidProbe)

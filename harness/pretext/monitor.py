"""A cheap probe that watches pretraining: kNN or a linear probe on VOC train -> val.

The pretext loop calls a :class:`Monitor` once per epoch with the network it is training;
every ``every`` epochs (and after the last) the monitor captures one frozen layer of the
VOC ``train`` and ``val`` images (view 0, :mod:`harness.evaluation.layer_features`; BatchNorm and dropout in
eval mode, the network's modes restored afterwards), fits kNN (:mod:`harness.evaluation.knn`) or
the linear probe (:mod:`harness.evaluation.logreg`, one weight decay) on train and returns the val
mAP, which the loop logs with the epoch's metrics. It never reads the test split. It does
not touch any random generator the training uses, so a monitored run trains exactly the
same weights as an unmonitored one.

Images are decoded once, when the monitor is built; each evaluation is one forward pass
over the 2 x 500 toy images and a kNN (about a second on two cores).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.evaluation import knn as knn_mod
from harness.evaluation import logreg
from harness.api.errors import BadInputError
from harness.evaluation.layer_config import TARGET_VALUES
from harness.evaluation.layer_features import capture, resolve_layers
from harness.evaluation.views import image_size, render_views, view_boxes
from harness.data.voc import read_voc, targets_matrix, voc2007_dir
from harness.profiles import MONITOR_EVERY

KINDS: tuple[str, ...] = ("knn", "linear_probe")
#: the linear probe's weight decay when monitoring: the middle of the linear probe's grid,
#: where its train -> val choice fell on the toy (harness.evaluation.logreg.WEIGHT_DECAYS)
MONITOR_WEIGHT_DECAY = 1e-5
#: epochs between evaluations by default (their home: :mod:`harness.profiles`)
EVERY = MONITOR_EVERY


@dataclass(frozen=True)
class MonitorConfig:
    """What to monitor, on which VOC folder, how often."""

    kind: str
    voc: Path
    every: int = EVERY
    #: layer to probe (None: the trunk's output)
    layer: str | None = None
    #: side of the images probed (default: the default profile's image size)
    image_size: int = field(default_factory=lambda: _default_image_size())
    batch_size: int = 128

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadInputError(f"unknown monitor {self.kind!r}; choose from {', '.join(KINDS)}")
        if self.every < 1:
            raise BadInputError(f"monitor: every must be >= 1 epoch, got {self.every}")


def _default_image_size() -> int:
    from harness.profiles import DEFAULT_PROFILE, get_profile

    return get_profile(DEFAULT_PROFILE).image_size


def build_monitor(kind: str | None, voc: Path | None, *, backbone: str,
                  backbone_params: dict[str, Any], image_size: int, every: int | None = None,
                  voc_missing: str = "the monitor needs the downstream VOC folder"
                  ) -> Monitor | None:
    """The monitor of ``kind`` (None: no monitor) probing the VOC folder ``voc`` with the
    images normalised as ``backbone`` normalises them, every ``every`` epochs (None:
    :data:`EVERY`); ``voc_missing`` is the error when ``voc`` is None (each command names
    its own option). ``harness pretrain`` and ``harness run`` both build theirs here."""
    if kind is None:
        return None
    from harness.networks.checkpoint import build_backbone

    if voc is None:
        raise BadInputError(voc_missing)
    bb = build_backbone(backbone, backbone_params)
    given = {"every": every} if every is not None else {}
    return Monitor(MonitorConfig(kind=kind, voc=voc, image_size=image_size, **given),
                   bb.mean, bb.std)


class Monitor:
    """Called as ``monitor(net, epoch, epochs)`` after each epoch; returns the row entries
    to log (empty on epochs it skips)."""

    def __init__(self, config: MonitorConfig, mean, std):
        self.config = config
        self.mean, self.std = tuple(mean), tuple(std)
        voc = voc2007_dir(config.voc)
        self.splits = {}
        for split in ("train", "val"):
            images = read_voc(voc, split)
            if not images:
                raise BadInputError(f"{voc}: split {split!r} lists no images")
            sizes = np.array([image_size(im.path) for im in images], dtype=np.int64)
            boxes, flips = view_boxes(sizes, 1, 0)
            pixels = render_views([im.path for im in images], boxes, flips, config.image_size)
            self.splits[split] = (pixels[:, 0], targets_matrix(images))
        self.history: list[dict[str, Any]] = []

    @property
    def key(self) -> str:
        return f"monitor_{self.config.kind}_val_map"

    def __call__(self, net: torch.nn.Module, epoch: int, epochs: int) -> dict[str, Any]:
        if epoch % self.config.every and epoch != epochs:
            return {}
        started = time.perf_counter()
        layers = resolve_layers(net, None)
        name = self.config.layer or next((k for k, v in layers.items() if v == "trunk"),
                                         list(layers)[-1])
        chosen = resolve_layers(net, [name])
        device = next(net.parameters()).device
        feats = {split: capture(net, self._batches(pixels, device), chosen, TARGET_VALUES)[name]
                 for split, (pixels, _) in self.splits.items()}
        (_, t_train), (_, t_val) = self.splits["train"], self.splits["val"]
        if self.config.kind == "knn":
            scores = knn_mod.knn_scores(feats["train"], t_train, feats["val"])
        else:
            scores = logreg.fit_scores(feats["train"], t_train, feats["val"], MONITOR_WEIGHT_DECAY)
        value = val_map(t_val, scores)
        row = {self.key: round(value, 4), "monitor_layer": name,
               "monitor_seconds": round(time.perf_counter() - started, 3)}
        self.history.append({"epoch": epoch, **row})
        return row

    def _batches(self, pixels: np.ndarray, device: torch.device):
        m = torch.tensor(self.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        s = torch.tensor(self.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        for lo in range(0, len(pixels), self.config.batch_size):
            x = torch.from_numpy(pixels[lo:lo + self.config.batch_size]).to(device)
            yield x.permute(0, 3, 1, 2).float().div_(255.0).sub_(m).div_(s)

    def protocol(self) -> dict[str, Any]:
        """What the monitored figure is, for the record."""
        c = self.config
        return {"kind": c.kind, "every_epochs": c.every, "layer": c.layer or "trunk output",
                "train_split": "train", "scored_split": "val", "image_size": c.image_size,
                "view": "whole image resized", "knn": {"k": knn_mod.K_DEFAULT,
                                                       "temperature": knn_mod.TEMPERATURE_DEFAULT}
                if c.kind == "knn" else None,
                "weight_decay": MONITOR_WEIGHT_DECAY if c.kind == "linear_probe" else None}


def val_map(targets: np.ndarray, scores: np.ndarray) -> float:
    """Headline mAP (percent) of val scores from a classifier fitted on train."""
    from harness.evaluation import ap
    from harness.data.voc import CLASSES

    report = ap.score_split(ap.SplitScores(
        split="val", trained_on="train", image_ids=tuple(str(i) for i in range(len(targets))),
        class_names=CLASSES, scores=np.asarray(scores, np.float64), labels=targets),
        formulas=(ap.HEADLINE,))
    return report.mean(ap.HEADLINE)


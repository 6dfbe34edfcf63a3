"""VOC07 classification evaluators: ``voc07_linear`` ("Head") and ``voc07_full`` ("All").

One run: read the training and test splits (through :mod:`harness.data.voc`), check them (disjoint,
every class has a positive in each), decode the training images onto the device, put 20 new
outputs on the network as the protocol says, recompute BatchNorm statistics of a
never-trained trunk that will be used frozen, train with SGD (resumable through
the context's work folder), free the training images and decode the test images (one
split on the device at a time: 3.8 GB of padded uint8 VOC images each), score each test
image as the sum of ten augmented crops, and
report AP three ways (:mod:`harness.evaluation.ap`). The network-side steps live in :mod:`.training`; everything
that determines the result is in :class:`~harness_plugins.evaluators.protocol.Protocol`
and is recorded in the metrics.
"""

from __future__ import annotations

import contextlib
import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import numpy as np

from harness.api import ap as ap_mod
from harness.api.errors import BadInputError
from harness.api import resolve_device, usable_cpus
from harness.api.interfaces import Bounds, EvalContext, EvalMetrics, Evaluator, PretrainedModel
from harness.api import write_text
from harness.api import make_progress, progress_enabled
from harness.api import CLASSES, VOCImage, read_voc, targets_matrix, voc2007_dir

from .protocol import Mode, Precision, Protocol, resolve

if TYPE_CHECKING:  # torch and the training code are imported when an evaluation runs, so
    # that creating an evaluator and reading its parameters need no torch
    import torch
    from torch import nn

    from .augment import ImageStore


@dataclass
class EvalResult:
    """What a run produces: the metrics, the per-image test scores, the trained network."""

    metrics: EvalMetrics
    scores: ap_mod.SplitScores
    net: nn.Module


#: the test split's per-image summed class scores, written into the work folder
SCORES_FILE = "test-scores.csv"


class VOC07Evaluator(Evaluator):
    """Shared machinery of the two VOC07 evaluators; ``mode`` says what is trained.

    The parameters are this evaluator's own: the published protocol (``preset``), the
    reading of "Head" (``head_init``), the training split and explicit overrides of the
    iteration count and learning rate. How the preset is scaled comes from the run profile
    and the seed from the run (both through :class:`~harness.api.interfaces.EvalContext`).
    """

    mode: ClassVar[Mode]
    #: a short run for harness.api.testing.check_evaluator
    test_params: ClassVar[dict[str, Any]] = {"iterations": 2}

    def __init__(self, *, preset: str = "krahenbuhl", head_init: str | None = None,
                 train_split: str = "trainval",
                 iterations: Annotated[int | None, Bounds(1, 100_000_000)] = None,
                 lr: float | None = None, precision: Precision | None = None,
                 checkpoint_seconds: float = 120.0, threads: int | None = None):
        # resolving once checks every parameter now, before any data is read
        resolve(preset, "paper", self.mode, head_init=head_init, train_split=train_split,
                iterations=iterations, lr=lr, precision=precision)
        self.preset, self.head_init, self.train_split = preset, head_init, train_split
        self.iterations, self.lr, self.precision = iterations, lr, precision
        #: how often training state is saved to the work folder (does not change results)
        self.checkpoint_seconds = checkpoint_seconds
        self.threads = threads or usable_cpus()

    def params(self) -> dict[str, Any]:
        return {"preset": self.preset, "head_init": self.head_init,
                "train_split": self.train_split, "iterations": self.iterations, "lr": self.lr,
                "precision": self.precision}

    def protocol(self, context: EvalContext) -> Protocol:
        """The full protocol this evaluator runs under ``context``'s profile and seed."""
        return resolve(self.preset, context.profile, self.mode, head_init=self.head_init,
                       train_split=self.train_split, seed=context.seed,
                       iterations=self.iterations, lr=self.lr, precision=self.precision)

    def planned_protocol(self, profile: str, seed: int = 0) -> dict[str, Any]:
        """The protocol dict a run under ``profile`` and ``seed`` records (nothing is read)."""
        context = EvalContext(profile=profile, seed=seed, device="cpu", work_dir=Path("."),
                              progress=False)
        return self.protocol(context).to_dict()

    # ------------------------------------------------------------------ public API
    def evaluate(self, model: PretrainedModel, data_root: Path,
                 context: EvalContext) -> EvalMetrics:
        """Train on the training split, test on the test split; return the metrics.

        The per-image test scores are written to ``SCORES_FILE`` in the work folder
        (named in ``details["scores_file"]``), so anyone can recompute the APs, and
        returned in ``test_scores`` (the core keeps them beside the record); the
        resumable training state is removed once they are written.
        """
        from . import training

        result = self.run(model, data_root, context)
        path = Path(context.work_dir) / SCORES_FILE
        write_text(path, scores_csv(result.scores))
        result.metrics.details["scores_file"] = str(path)
        result.metrics.test_scores = result.scores
        # the resumable training state (hundreds of MB for AlexNet) is for an interrupted
        # evaluation; once the scores exist nothing needs it
        (Path(context.work_dir) / training.STATE_FILE).unlink(missing_ok=True)
        return result.metrics

    def run(self, model: PretrainedModel, data_root: Path, context: EvalContext) -> EvalResult:
        """Like :meth:`evaluate`, also returning the per-image test scores and the network."""
        import torch

        from harness.api import weights_digest

        from . import training
        from .augment import check_readable

        proto = self.protocol(context)
        dev = _device(context.device)
        workdir = Path(context.work_dir)
        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        train_images, test_images, voc = _read_splits(data_root, proto)
        # the test images are decoded after training: a bad one is found now, not then
        check_readable([im.path for im in test_images], self.threads)
        bar = make_progress() if progress_enabled(context.progress) else _NoProgress()
        with bar, torch.random.fork_rng(devices=_cuda_index(dev)), _cudnn_benchmark(dev):
            t = time.perf_counter()
            train_store = _load(bar, f"decode {proto.train_split}", train_images, model, dev,
                                self.threads)
            timings["load_s"] = time.perf_counter() - t

            net = training.prepare_net(model, proto, dev)
            net_hash = weights_digest(model.net)
            bn_recomputed = False
            t = time.perf_counter()
            if training.trunk_needs_bn_recompute(model, net, proto):
                training.recompute_trunk_bn(bar, net, train_store, proto, dev)
                bn_recomputed = True
            timings["bn_recompute_s"] = time.perf_counter() - t

            t = time.perf_counter()
            y_train = torch.from_numpy(targets_matrix(train_images)).to(dev)
            key = training.state_key(proto, net_hash, train_images, model)
            curve, resumed_from = training.train(bar, net, train_store, y_train, proto, dev,
                                                  workdir, key, self.checkpoint_seconds)
            timings["train_s"] = time.perf_counter() - t

            del train_store          # its device memory is reused by the test split's
            t = time.perf_counter()
            test_store = _load(bar, f"decode {proto.test_split}", test_images, model, dev,
                               self.threads)
            timings["load_s"] += time.perf_counter() - t

            t = time.perf_counter()
            summed = training.score_test_split(bar, net, test_store, proto, dev)
            timings["test_s"] = time.perf_counter() - t

        scores = ap_mod.SplitScores(
            split=proto.test_split, trained_on=proto.train_split,
            image_ids=tuple(im.image_id for im in test_images), class_names=CLASSES,
            scores=summed, labels=targets_matrix(test_images))
        report = ap_mod.score_split(scores)
        timings["total_s"] = time.perf_counter() - t_start
        metrics = self._metrics(model, report, proto, dev, voc, train_images, test_images,
                                bn_recomputed, curve, resumed_from, timings)
        return EvalResult(metrics=metrics, scores=scores, net=net)

    # ------------------------------------------------------------------ metrics
    def _metrics(self, model, report, proto, dev, voc, train_images, test_images,
                 bn_recomputed, curve, resumed_from, timings) -> EvalMetrics:
        from harness.api import backbone_name

        from . import batches, training

        figures = report.to_metrics()
        details: dict[str, Any] = {
            "evaluator": self.name,
            "mode": proto.mode,
            **{k: v for k, v in figures.items() if k not in ("map", "ap")},
            "n_train": len(train_images),
            "n_test": len(test_images),
            "classes": list(CLASSES),
            "bn_recomputed": bn_recomputed,
            "bn_recompute": ({"images": len(train_images), "passes": 1,
                              "augmentation": "training", "batch": training.BN_BATCH}
                             if bn_recomputed else None),
            "model": {"backbone": backbone_name(model),
                      "backbone_params": model.backbone.params(), "origin": model.origin,
                      "checkpoint": str(model.checkpoint),
                      "init_seed": model.meta.get("init_seed"),
                      "input_size": model.meta.get("input_size")},
            "voc": str(voc),
            "device": str(dev),
            "precision": batches.precision_used(dev, proto),
            "train_loss_curve": curve,
            "resumed_from_iteration": resumed_from,
            "timings": {k: round(v, 3) for k, v in timings.items()},
        }
        return EvalMetrics(
            headline="map",
            formula=(f"{ap_mod.HEADLINE} AP (Table 1's formula), mean over the 20 classes, "
                     "percent"),
            value=figures["map"], breakdown=dict(figures["ap"]), protocol=proto.to_dict(),
            details=details)


class VOC07Linear(VOC07Evaluator):
    """VOC07 classification "Head": the fully connected layers trained on a frozen trunk."""

    name = "voc07_linear"
    description = ('VOC07 classification mAP, "Head": fc layers trained on a frozen trunk '
                   "(BatchNorm in eval mode)")
    mode = "head"


class VOC07Full(VOC07Evaluator):
    """VOC07 classification "All": every layer fine-tuned."""

    name = "voc07_full"
    description = 'VOC07 classification mAP, "All": the whole network fine-tuned'
    mode = "all"


# ---------------------------------------------------------------------------- data
def _read_splits(data_root: Path, proto: Protocol) -> tuple[list[VOCImage], list[VOCImage], Path]:
    """Both splits, checked: disjoint, and every class with a positive image in each."""
    voc = voc2007_dir(data_root)
    train = read_voc(voc, proto.train_split)
    test = read_voc(voc, proto.test_split)
    for split, images in ((proto.train_split, train), (proto.test_split, test)):
        if not images:
            raise BadInputError(f"{voc}: split {split!r} lists no images")
        positives = (targets_matrix(images) == 1).sum(axis=0)
        missing = [CLASSES[c] for c in np.flatnonzero(positives == 0)]
        if missing:
            raise BadInputError(f"{voc}: class {missing[0]!r} has no positive image in split "
                                f"{split!r} (AP undefined; {len(missing)} class(es) affected)")
    shared = {im.image_id for im in train} & {im.image_id for im in test}
    if shared:
        raise BadInputError(f"{voc}: splits {proto.train_split!r} and {proto.test_split!r} "
                            f"share {len(shared)} image(s), e.g. {sorted(shared)[0]!r}: "
                            "training images cannot be scored as test images")
    return train, test, voc


def _load(bar, label: str, images: list[VOCImage], model: PretrainedModel,
          dev: torch.device, threads: int) -> ImageStore:
    from .augment import load_images

    task = bar.add_task(label, total=len(images))
    return load_images([im.path for im in images], model.backbone.mean, model.backbone.std,
                       dev, threads=threads, progress=lambda: bar.advance(task))


# ---------------------------------------------------------------------------- device
def _device(device: str | torch.device) -> torch.device:
    """The context's device (resolved by the core; checked again for direct callers)."""
    import torch

    return torch.device(resolve_device(str(device)))


def _cuda_index(dev: torch.device) -> list[int]:
    import torch

    if dev.type != "cuda":
        return []
    return [dev.index if dev.index is not None else torch.cuda.current_device()]


@contextlib.contextmanager
def _cudnn_benchmark(dev: torch.device):
    """Let cuDNN pick the fastest kernels for the fixed crop size (restored afterwards)."""
    import torch

    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = before or dev.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


class _NoProgress:
    """Stand-in for a rich Progress when bars are off."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def advance(self, *args, **kwargs) -> None:
        pass

    def update(self, *args, **kwargs) -> None:
        pass


def scores_csv(scores: ap_mod.SplitScores) -> str:
    """CSV text: image_id, split, trained_on, 20 summed scores, 20 labels (1/0/-1 difficult)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    names = list(scores.class_names)
    writer.writerow(["image_id", "split", "trained_on"] + [f"score_{c}" for c in names]
                    + [f"label_{c}" for c in names])
    for i, image_id in enumerate(scores.image_ids):
        writer.writerow([image_id, scores.split, scores.trained_on]
                        + [repr(float(s)) for s in scores.scores[i]]
                        + [int(v) for v in scores.labels[i]])
    return buf.getvalue()

"""VOC07 classification evaluators: ``voc07_linear`` ("Head") and ``voc07_full`` ("All").

One run: read the training and test splits (through :mod:`harness.voc`), check them (disjoint,
every class has a positive in each), decode their images onto the device, put 20 new
outputs on the network as the protocol says, recompute BatchNorm statistics of a
never-trained trunk that will be used frozen, train with SGD (resumable through
``workdir``), score each test image as the sum of ten augmented crops, and report AP three
ways (:mod:`harness.ap`). Everything that determines the result is in
:class:`~harness_plugins.evaluators.protocol.Protocol` and is recorded in the metrics.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from harness import ap as ap_mod
from harness.errors import BadInputError, HarnessError
from harness.interfaces import Evaluator, PretrainedModel
from harness.progress import enabled as progress_enabled, make_progress
from harness.voc import CLASSES, VOCImage, read_voc, targets_matrix, voc2007_dir

from .augment import (ImageStore, base_scales, load_images, sample_rescale_crop,
                      sample_resized_crop)
from .protocol import Mode, Protocol, resolve

STATE_FILE = "train-state.pt"
STATE_FORMAT = "harness-voc07-train-state/1"
#: test crops are scored this many images at a time
TEST_BATCH = 128
#: BatchNorm statistics are re-estimated over batches of this many training crops
BN_BATCH = 64
#: iterations whose batches are drawn (and, for "Head", run through the trunk) together
PLAN_CHUNK = 100
#: crops per trunk call when a chunk's "Head" features are computed
FEATURE_BATCH = 400


@dataclass
class EvalResult:
    """What a run produces: the metrics, the per-image test scores, the trained network."""

    metrics: dict[str, Any]
    scores: ap_mod.SplitScores
    net: nn.Module


class VOC07Evaluator(Evaluator):
    """Shared machinery of the two VOC07 evaluators; ``mode`` says what is trained."""

    mode: ClassVar[Mode]

    def __init__(self, *, preset: str = "krahenbuhl", profile: str = "toy",
                 head_init: str | None = None, seed: int = 0, train_split: str = "trainval",
                 iterations: int | None = None, lr: float | None = None,
                 checkpoint_seconds: float = 120.0, threads: int | None = None):
        self.protocol: Protocol = resolve(preset, profile, self.mode, head_init=head_init,
                                          train_split=train_split, seed=seed,
                                          iterations=iterations, lr=lr)
        self._explicit = {"iterations": iterations, "lr": lr}
        #: how often training state is saved to ``workdir`` (does not change results)
        self.checkpoint_seconds = checkpoint_seconds
        self.threads = threads or min(16, os.cpu_count() or 1)

    def params(self) -> dict[str, Any]:
        p = self.protocol
        return {"preset": p.preset, "profile": p.profile, "head_init": p.head_init,
                "seed": p.seed, "train_split": p.train_split, **self._explicit}

    # ------------------------------------------------------------------ public API
    def evaluate(self, model: PretrainedModel, data_root: Path, *, device: str = "cpu",
                 workdir: Path | None = None, progress: bool = True) -> dict[str, Any]:
        """Train on the training split, test on the test split; return the metrics."""
        return self.run(model, data_root, device=device, workdir=workdir,
                        progress=progress).metrics

    def run(self, model: PretrainedModel, data_root: Path, *, device: str = "cpu",
            workdir: Path | None = None, progress: bool = True) -> EvalResult:
        """Like :meth:`evaluate`, also returning the per-image test scores."""
        proto = self.protocol
        dev = _device(device)
        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        train_images, test_images, voc = _read_splits(data_root, proto)
        bar = make_progress() if progress_enabled(progress) else _NoProgress()
        with bar, torch.random.fork_rng(devices=_cuda_index(dev)), _cudnn_benchmark(dev):
            t = time.perf_counter()
            stores = [_load(bar, f"decode {split}", images, model, dev, self.threads)
                      for split, images in ((proto.train_split, train_images),
                                            (proto.test_split, test_images))]
            train_store, test_store = stores
            timings["load_s"] = time.perf_counter() - t

            net = _prepare_net(model, proto, dev)
            fingerprint = _fingerprint(model.net)
            bn_recomputed = False
            t = time.perf_counter()
            if _needs_bn_recompute(model, net, proto):
                _recompute_bn(bar, net, train_store, proto, dev)
                bn_recomputed = True
            timings["bn_recompute_s"] = time.perf_counter() - t

            t = time.perf_counter()
            y_train = torch.from_numpy(targets_matrix(train_images)).to(dev)
            key = _state_key(proto, fingerprint, train_images, model)
            curve, resumed_from = _train(bar, net, train_store, y_train, proto, dev,
                                         workdir, key, self.checkpoint_seconds)
            timings["train_s"] = time.perf_counter() - t

            t = time.perf_counter()
            summed = _test_scores(bar, net, test_store, proto, dev)
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
                 bn_recomputed, curve, resumed_from, timings) -> dict[str, Any]:
        m: dict[str, Any] = {
            "evaluator": self.name,
            "mode": proto.mode,
            "preset": proto.preset,
            "profile": proto.profile,
            "head_init": proto.head_init,
            "seed": proto.seed,
            "protocol": proto.to_dict(),
            **report.to_metrics(),
            "headline": ("map: " + ap_mod.HEADLINE + " (Table 1's formula), percent, mean "
                         "over the 20 classes"),
            "n_train": len(train_images),
            "n_test": len(test_images),
            "classes": list(CLASSES),
            "bn_recomputed": bn_recomputed,
            "bn_recompute": ({"images": len(train_images), "passes": 1,
                              "augmentation": "training", "batch": BN_BATCH}
                             if bn_recomputed else None),
            "model": {"backbone": backbone_name(model),
                      "backbone_params": model.backbone.params(), "origin": model.origin,
                      "checkpoint": str(model.checkpoint),
                      "init_seed": model.meta.get("init_seed"),
                      "input_size": model.meta.get("input_size")},
            "voc": str(voc),
            "device": str(dev),
            "precision": "bf16 autocast, channels-last" if dev.type == "cuda" else "float32",
            "train_loss_curve": curve,
            "resumed_from_iteration": resumed_from,
            "timings": {k: round(v, 3) for k, v in timings.items()},
        }
        return m


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


def backbone_name(model: PretrainedModel) -> str:
    """The registry name of the model's backbone (a family member keeps its full name)."""
    name = model.backbone.name
    variant = getattr(model.backbone, "variant", None)
    return f"{name}{variant}" if name.endswith(":") and variant else name


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
    task = bar.add_task(label, total=len(images))
    return load_images([im.path for im in images], model.backbone.mean, model.backbone.std,
                       dev, threads=threads, progress=lambda: bar.advance(task))


def _sample_boxes(store: ImageStore, indices: np.ndarray, proto: Protocol,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Training-augmentation crop boxes and flips for ``store[indices]``."""
    sizes = store.sizes[indices]
    if proto.augmentation == "rescale_crop":
        return sample_rescale_crop(rng, sizes, proto.crop_size, proto.scale_min,
                                   proto.scale_max, proto.mirror,
                                   base_scales(sizes, proto.base_short_side))
    return sample_resized_crop(rng, sizes, proto.scale_min, proto.scale_max,
                               proto.aspect_min, proto.aspect_max, proto.mirror)


def _to_input(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cuda" else x


def _augmented(store: ImageStore, indices: np.ndarray, proto: Protocol,
               rng: np.random.Generator) -> torch.Tensor:
    """Training-augmented crops of ``store[indices]`` (the test crops use this too)."""
    boxes, flips = _sample_boxes(store, indices, proto, rng)
    return _to_input(store.crops(indices, boxes, flips, proto.crop_size))


@dataclass
class _Plan:
    """The batches of iterations ``first .. first + len - 1``, already on the device."""

    first: int
    indices: torch.Tensor   # long [C, B]
    boxes: torch.Tensor     # float [C, B, 4]
    flips: torch.Tensor     # bool [C, B]
    #: "Head" only: the frozen trunk's output for every crop of the chunk [C, B, F]
    features: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.indices.shape[0]

    def inputs(self, k: int, store: ImageStore, crop_size: int) -> torch.Tensor:
        """What iteration ``first + k`` feeds the trained layers: features or images."""
        if self.features is not None:
            return self.features[k]
        return _to_input(store.crops(self.indices[k], self.boxes[k], self.flips[k], crop_size))


def _plan(store: ImageStore, order: np.ndarray, proto: Protocol, first: int, count: int,
          dev: torch.device, net: nn.Module) -> _Plan:
    """Draw the images and crops of ``count`` iterations and send them in one transfer.

    Iteration ``it`` takes the next ``batch_size`` images of the (once-shuffled, cycled)
    order and draws its crops from a generator seeded by (seed, it) alone, so a resumed
    run sees exactly the batches of an uninterrupted one. For "Head" the frozen trunk
    (eval mode, so its output does not depend on the batch it is in) is run here on the
    whole chunk in large batches, which is what makes the Head fast on a GPU.
    """
    b = proto.batch_size
    idx, boxes, flips = [], [], []
    for it in range(first, first + count):
        i = order[(it * b + np.arange(b)) % len(order)]
        bx, fl = _sample_boxes(store, i, proto, np.random.default_rng(_seed(proto.seed, 5, it)))
        idx.append(i)
        boxes.append(bx)
        flips.append(fl)
    plan = _Plan(first=first,
                 indices=torch.as_tensor(np.stack(idx), dtype=torch.long).to(dev),
                 boxes=torch.as_tensor(np.stack(boxes), dtype=torch.float32).to(dev),
                 flips=torch.as_tensor(np.stack(flips), dtype=torch.bool).to(dev))
    if proto.trained == "head":
        plan.features = _trunk_features(net, store, plan, proto, dev)
    return plan


@torch.no_grad()
def _trunk_features(net: nn.Module, store: ImageStore, plan: _Plan, proto: Protocol,
                    dev: torch.device) -> torch.Tensor:
    idx, boxes = plan.indices.reshape(-1), plan.boxes.reshape(-1, 4)
    flips = plan.flips.reshape(-1)
    out = []
    for lo in range(0, len(idx), FEATURE_BATCH):
        sl = slice(lo, lo + FEATURE_BATCH)
        x = _to_input(store.crops(idx[sl], boxes[sl], flips[sl], proto.crop_size))
        with _autocast(dev):
            out.append(net.trunk(x))
    return torch.cat(out).view(len(plan), proto.batch_size, -1)


# ---------------------------------------------------------------------------- network
def _device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"device {device!r} requested but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise BadInputError(f"unsupported device {device!r} (use cpu or cuda)")
    return dev


def _cuda_index(dev: torch.device) -> list[int]:
    if dev.type != "cuda":
        return []
    return [dev.index if dev.index is not None else torch.cuda.current_device()]


@contextlib.contextmanager
def _cudnn_benchmark(dev: torch.device):
    """Let cuDNN pick the fastest kernels for the fixed crop size (restored afterwards)."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = before or dev.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def _autocast(dev: torch.device):
    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _prepare_net(model: PretrainedModel, proto: Protocol, dev: torch.device) -> nn.Module:
    """A copy of the network with 20 new outputs initialised as the protocol says."""
    from harness.nets import BackboneNet

    if not isinstance(model.net, BackboneNet):
        raise HarnessError(f"{model.checkpoint}: the network is not a harness BackboneNet")
    net = copy.deepcopy(model.net).cpu()
    n_classes = len(CLASSES)
    if proto.head_init == "random":
        net.reset_head(n_classes)
        new_layers = [m for m in net.head.modules() if isinstance(m, nn.Linear)]
    else:
        net.reset_classifier(n_classes)
        new_layers = [net.classifier()]
    gen = torch.Generator().manual_seed(_seed(proto.seed, 4))
    with torch.no_grad():
        for layer in new_layers:
            nn.init.normal_(layer.weight, 0.0, proto.init_std, generator=gen)
            if layer.bias is not None:
                layer.bias.fill_(proto.init_bias)
    net = net.to(dev)
    if dev.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    return net


def _bn_modules(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _needs_bn_recompute(model: PretrainedModel, net: nn.Module, proto: Protocol) -> bool:
    """A never-trained trunk whose BatchNorm statistics will be used frozen."""
    return model.origin == "random" and proto.trunk_bn == "running" and bool(_bn_modules(net.trunk))


def _recompute_bn(bar, net: nn.Module, store: ImageStore, proto: Protocol,
                  dev: torch.device) -> None:
    """Running statistics of the trunk's BatchNorm layers from one pass of training crops."""
    from torch.optim.swa_utils import update_bn

    rng = np.random.default_rng(_seed(proto.seed, 3))
    order = rng.permutation(len(store))
    batches = [order[i:i + BN_BATCH] for i in range(0, len(order), BN_BATCH)]
    task = bar.add_task("batch-norm statistics", total=len(batches))

    def crops():
        for idx in batches:
            yield _augmented(store, idx, proto, rng)
            bar.advance(task)

    with _autocast(dev):
        update_bn(crops(), net.trunk)


# ---------------------------------------------------------------------------- training
def _param_groups(net: nn.Module, proto: Protocol) -> list[dict[str, Any]]:
    module = net.head if proto.trained == "head" else net
    weights, biases = [], []
    for name, p in module.named_parameters():
        (biases if name.endswith("bias") else weights).append(p)
    return [{"params": weights, "lr_mult": 1.0},
            {"params": biases, "lr_mult": proto.bias_lr_mult}]


def _set_train_mode(net: nn.Module, proto: Protocol) -> None:
    net.train()
    if proto.trained == "head":
        net.trunk.eval()
        net.trunk.requires_grad_(False)
    elif proto.trunk_bn == "running":
        for bn in _bn_modules(net.trunk):
            bn.eval()


def _train(bar, net: nn.Module, store: ImageStore, targets: torch.Tensor, proto: Protocol,
           dev: torch.device, workdir: Path | None, key: str,
           checkpoint_seconds: float) -> tuple[list[list[float]], int]:
    """SGD for ``proto.iterations``; returns the loss curve and the iteration resumed from."""
    groups = _param_groups(net, proto)
    optimizer = _sgd(groups, proto)
    trained = [p for g in groups for p in g["params"]]
    start, curve = 0, []
    state_path = Path(workdir) / STATE_FILE if workdir is not None else None
    if state_path is not None and state_path.is_file():
        start, curve = _load_state(state_path, key, net, optimizer, dev)
    resumed_from = start

    order = np.random.default_rng(_seed(proto.seed, 1)).permutation(len(store))
    window = max(1, proto.iterations // 40)
    pending: list[torch.Tensor] = []
    task = bar.add_task(f"train {proto.trained}", total=proto.iterations, completed=start)
    last_save = time.monotonic()
    it, plan, consistent = start, None, True
    _set_train_mode(net, proto)
    try:
        while it < proto.iterations:
            for g in optimizer.param_groups:
                g["lr"] = proto.lr * g["lr_mult"] * proto.lr_gamma ** (it // proto.lr_step)
            if plan is None or it >= plan.first + len(plan):
                first = it - it % PLAN_CHUNK          # chunks at fixed places, resumed or not
                plan = _plan(store, order, proto, first,
                             min(PLAN_CHUNK, proto.iterations - first), dev, net)
            k = it - plan.first
            torch.manual_seed(_seed(proto.seed, 2, it))          # dropout of this iteration
            loss = _gradients(net, optimizer, trained, plan.inputs(k, store, proto.crop_size),
                              targets[plan.indices[k]], proto, dev)
            consistent = False                        # weights and `it` change together
            optimizer.step()
            it += 1
            consistent = True
            pending.append(loss)
            if it % window == 0 or it == proto.iterations:
                mean = torch.stack(pending).mean().item()
                curve.append([it, round(mean, 6)])
                pending.clear()
                bar.update(task, completed=it, description=f"train {proto.trained} "
                           f"loss {mean:.4f}")
            if state_path is not None and time.monotonic() - last_save >= checkpoint_seconds:
                _save_state(state_path, key, it, net, optimizer, curve)
                last_save = time.monotonic()
    except KeyboardInterrupt:
        if state_path is not None and consistent:    # never save half of a step
            _save_state(state_path, key, it, net, optimizer, curve)
        raise
    if state_path is not None and resumed_from < proto.iterations:
        _save_state(state_path, key, it, net, optimizer, curve)
    net.eval()
    return curve, resumed_from


def _sgd(groups: list[dict[str, Any]], proto: Protocol) -> torch.optim.Optimizer:
    """SGD with momentum; the fused kernel (one pass over memory, ~10x faster on a CPU)."""
    try:
        return torch.optim.SGD(groups, lr=proto.lr, momentum=proto.momentum,
                               weight_decay=proto.weight_decay, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.SGD(groups, lr=proto.lr, momentum=proto.momentum,
                               weight_decay=proto.weight_decay)


def _clip(params: list[nn.Parameter], max_norm: float, dev: torch.device) -> None:
    """Scale gradients so that their total L2 norm is at most ``max_norm`` (Caffe's clip).

    On a CPU the norm is checked first (no device sync to avoid) so the common unclipped
    step costs one pass over the gradients instead of two.
    """
    if dev.type == "cuda":
        nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        return
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    coef = max_norm / (norm + 1e-6)                   # as torch.nn.utils.clip_grad_norm_
    if coef < 1:
        torch._foreach_mul_(grads, coef)


def _gradients(net: nn.Module, optimizer: torch.optim.Optimizer, trained: list[nn.Parameter],
               inputs: torch.Tensor, y: torch.Tensor, proto: Protocol,
               dev: torch.device) -> torch.Tensor:
    """Loss and clipped gradients of one batch (trunk features for "Head", images for "All").

    Returns the detached loss; the caller takes the optimizer step.
    """
    with _autocast(dev):
        logits = net.head(inputs) if proto.trained == "head" else net(inputs)
    loss = _loss(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    _clip(trained, proto.grad_clip_norm, dev)
    return loss.detach()


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits summed over non-difficult labels, divided by the batch size."""
    mask = y >= 0
    per_label = nn.functional.binary_cross_entropy_with_logits(
        logits, y.clamp(min=0).to(logits.dtype), reduction="none")
    return (per_label * mask).sum() / y.shape[0]


# ---------------------------------------------------------------------------- testing
@torch.no_grad()
def _test_scores(bar, net: nn.Module, store: ImageStore, proto: Protocol,
                 dev: torch.device) -> np.ndarray:
    """float64 [N, 20]: per image, the sum of the logits of ``test_crops`` augmented crops."""
    net.eval()
    n = len(store)
    total = torch.zeros((n, len(CLASSES)), dtype=torch.float64, device=dev)
    task = bar.add_task(f"test {proto.test_crops} crops", total=proto.test_crops * n)
    for crop in range(proto.test_crops):
        rng = np.random.default_rng(_seed(proto.seed, 6, crop))
        for lo in range(0, n, TEST_BATCH):
            idx = np.arange(lo, min(n, lo + TEST_BATCH))
            with _autocast(dev):
                logits = net(_augmented(store, idx, proto, rng))
            total[lo:lo + len(idx)] += logits.double()
            bar.advance(task, len(idx))
    return total.cpu().numpy()


# ---------------------------------------------------------------------------- resumable state
def _seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (stable across runs and machines)."""
    digest = hashlib.sha256(repr(tuple(int(p) for p in parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _fingerprint(net: nn.Module) -> str:
    """sha256 of a network's parameters and buffers (identifies the starting point)."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _state_key(proto: Protocol, fingerprint: str, train_images: list[VOCImage],
               model: PretrainedModel) -> str:
    from harness.cache import hash_params

    return hash_params({"format": STATE_FORMAT, "protocol": proto.to_dict(),
                        "net": fingerprint, "origin": model.origin,
                        "train": [im.image_id for im in train_images],
                        "targets": targets_matrix(train_images).tolist()})


def _save_state(path: Path, key: str, iteration: int, net: nn.Module,
                optimizer: torch.optim.Optimizer, curve: list[list[float]]) -> None:
    from harness.io import save_torch

    save_torch(path, {"format": STATE_FORMAT, "key": key, "iteration": iteration,
                      "net": net.state_dict(), "optimizer": optimizer.state_dict(),
                      "curve": curve})


def _load_state(path: Path, key: str, net: nn.Module, optimizer: torch.optim.Optimizer,
                dev: torch.device) -> tuple[int, list[list[float]]]:
    """Restore a saved run of the same key; a state of another run is ignored (overwritten)."""
    try:
        state = torch.load(path, map_location=dev, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt state file is reported, not a traceback
        raise HarnessError(f"{path}: cannot read the saved training state ({exc}); delete it "
                           "to start over") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT \
            or state.get("key") != key:
        return 0, []
    net.load_state_dict(state["net"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["iteration"]), [list(p) for p in state["curve"]]


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

"""Training and scoring one network under a VOC07 protocol.

The steps :class:`~harness_plugins.evaluators.voc07.VOC07Evaluator` runs, in order:
:func:`prepare_net` (20 new outputs, initialised as the protocol says),
:func:`recompute_trunk_bn` (BatchNorm statistics of a never-trained trunk used frozen),
:func:`train` (SGD, resumable from a state file in ``workdir``) and :func:`test_scores`
(each test image scored as the sum of ``test_crops`` augmented crops). The crops they
draw and the arithmetic they run in are :mod:`.batches`'.

Every random draw is seeded from the protocol's seed and the iteration number alone
(crop boxes, views, dropout), so a run resumed from its state file ends exactly where an
uninterrupted one does (on the CPU; on a GPU up to kernel nondeterminism).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.api import batchnorm_layers, hashed_seed, recompute_bn, torch_threads
from harness.api import needs_bn_recompute as never_trained_with_bn
from harness.api.errors import HarnessError
from harness.api.interfaces import PretrainedModel
from harness.api import CLASSES, VOCImage, targets_matrix

from .augment import ImageStore
from .batches import augmented_crops, autocast, batch_images, sample_boxes, to_input
from .protocol import Protocol

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


# ---------------------------------------------------------------------------- batches
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
        return to_input(store.crops(self.indices[k], self.boxes[k], self.flips[k], crop_size))


def _plan(store: ImageStore, order: np.ndarray, proto: Protocol, first: int, count: int,
          dev: torch.device, net: nn.Module, views: torch.Tensor | None = None) -> _Plan:
    """Draw the images and crops of ``count`` iterations and send them in one transfer.

    Iteration ``it`` takes the next ``batch_size`` images of the (once-shuffled, cycled)
    order and draws its crops from a generator seeded by (seed, it) alone, so a resumed
    run sees exactly the batches of an uninterrupted one. For "Head" the frozen trunk
    (eval mode, so its output does not depend on the batch it is in) is run here on the
    whole chunk in large batches, which is what makes the Head fast on a GPU. With a pool
    of trunk-encoded ``views`` [V, N, F], each crop is instead one of its image's V views,
    drawn from the same per-iteration generator.
    """
    b = proto.batch_size
    if views is not None:
        idx = [batch_images(order, b, it) for it in range(first, first + count)]
        pick = [np.random.default_rng(hashed_seed(proto.seed, 5, it)).integers(0, views.shape[0], b)
                for it in range(first, first + count)]
        indices = torch.as_tensor(np.stack(idx), dtype=torch.long).to(dev)
        which = torch.as_tensor(np.stack(pick), dtype=torch.long).to(dev)
        return _Plan(first=first, indices=indices, boxes=torch.empty(0), flips=torch.empty(0),
                     features=views[which, indices])
    idx, boxes, flips = [], [], []
    for it in range(first, first + count):
        i = batch_images(order, b, it)
        rng = np.random.default_rng(hashed_seed(proto.seed, 5, it))
        bx, fl = sample_boxes(store, i, proto, rng)
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
def encode_views(bar, net: nn.Module, store: ImageStore, proto: Protocol,
                 dev: torch.device) -> torch.Tensor:
    """[V, N, F]: the frozen trunk's output for ``proto.head_views`` augmented crops of every
    training image (view ``v`` drawn from a generator seeded by (seed, v) alone)."""
    n, n_views = len(store), int(proto.head_views or 0)
    task = bar.add_task(f"encode {n_views} views", total=n_views * n)
    out = []
    for v in range(n_views):
        rng = np.random.default_rng(hashed_seed(proto.seed, 7, v))
        for lo in range(0, n, FEATURE_BATCH):
            idx = np.arange(lo, min(n, lo + FEATURE_BATCH))
            with autocast(dev, proto):
                out.append(net.trunk(augmented_crops(store, idx, proto, rng)).float())
            bar.advance(task, len(idx))
    return torch.cat(out).view(n_views, n, -1)


@torch.no_grad()
def _trunk_features(net: nn.Module, store: ImageStore, plan: _Plan, proto: Protocol,
                    dev: torch.device) -> torch.Tensor:
    idx, boxes = plan.indices.reshape(-1), plan.boxes.reshape(-1, 4)
    flips = plan.flips.reshape(-1)
    out = []
    for lo in range(0, len(idx), FEATURE_BATCH):
        sl = slice(lo, lo + FEATURE_BATCH)
        x = to_input(store.crops(idx[sl], boxes[sl], flips[sl], proto.crop_size))
        with autocast(dev, proto):
            out.append(net.trunk(x))
    return torch.cat(out).view(len(plan), proto.batch_size, -1)


# ---------------------------------------------------------------------------- network
def prepare_net(model: PretrainedModel, proto: Protocol, dev: torch.device) -> nn.Module:
    """A copy of the network with 20 new outputs initialised as the protocol says."""
    from harness.api import BackboneNet

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
    gen = torch.Generator().manual_seed(hashed_seed(proto.seed, 4))
    with torch.no_grad():
        for layer in new_layers:
            nn.init.normal_(layer.weight, 0.0, proto.init_std, generator=gen)
            if layer.bias is not None:
                layer.bias.fill_(proto.init_bias)
    net = net.to(dev)
    if dev.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    return net


def trunk_needs_bn_recompute(model: PretrainedModel, net: nn.Module, proto: Protocol) -> bool:
    """A never-trained trunk whose BatchNorm statistics will be used frozen."""
    return proto.trunk_bn == "running" and never_trained_with_bn(model.origin, net.trunk)


def recompute_trunk_bn(bar, net: nn.Module, store: ImageStore, proto: Protocol,
                       dev: torch.device) -> None:
    """Running statistics of the trunk's BatchNorm layers from one pass of training crops
    (:func:`harness.networks.batchnorm.recompute_bn`)."""
    rng = np.random.default_rng(hashed_seed(proto.seed, 3))
    order = rng.permutation(len(store))
    batches = [order[i:i + BN_BATCH] for i in range(0, len(order), BN_BATCH)]
    task = bar.add_task("batch-norm statistics", total=len(batches))

    def crops():
        for idx in batches:
            yield augmented_crops(store, idx, proto, rng)
            bar.advance(task)

    with autocast(dev, proto):
        recompute_bn(net.trunk, crops())


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
        for bn in batchnorm_layers(net.trunk):
            bn.eval()


def train(bar, net: nn.Module, store: ImageStore, targets: torch.Tensor, proto: Protocol,
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

    order = np.random.default_rng(hashed_seed(proto.seed, 1)).permutation(len(store))
    window = max(1, proto.iterations // 40)
    pending: list[torch.Tensor] = []
    task = bar.add_task(f"train {proto.trained}", total=proto.iterations, completed=start)
    last_save = time.monotonic()
    it, plan, consistent = start, None, True
    _set_train_mode(net, proto)
    views = None
    if proto.trained == "head" and proto.head_views and start < proto.iterations:
        views = encode_views(bar, net, store, proto, dev)
    # a "Head" step on encoded views is the fc layers at batch 16: a second CPU thread only
    # adds OpenMP barriers (4.9 against 4.35 ms a step, benchmarks/LOG.md, 2026-12-04)
    one_thread = views is not None and dev.type == "cpu"
    dropout_gen = dropout_generator(dev)
    try:
        with torch_threads(1 if one_thread else None):
            while it < proto.iterations:
                for g in optimizer.param_groups:
                    g["lr"] = proto.lr * g["lr_mult"] * proto.lr_gamma ** (it // proto.lr_step)
                if plan is None or it >= plan.first + len(plan):
                    first = it - it % PLAN_CHUNK    # chunks at fixed places, resumed or not
                    plan = _plan(store, order, proto, first,
                                 min(PLAN_CHUNK, proto.iterations - first), dev, net, views)
                k = it - plan.first
                dropout_gen.manual_seed(hashed_seed(proto.seed, 2, it))  # this iteration's dropout
                loss = _gradients(net, optimizer, trained,
                                  plan.inputs(k, store, proto.crop_size),
                                  targets[plan.indices[k]], proto, dev)
                consistent = False                  # weights and `it` change together
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
                if state_path is not None \
                        and time.monotonic() - last_save >= checkpoint_seconds:
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


def dropout_generator(dev: torch.device) -> torch.Generator:
    """The generator dropout draws from on ``dev``: the CPU's default generator, or the
    default generator of that one CUDA device.

    Each iteration's dropout is seeded from (seed, iteration) alone (what makes a resumed
    run exact), so the loop seeds this generator once per step: 7 us on a CPU (0.2% of a
    toy "Head" step), a host-side assignment on CUDA (Philox takes a seed and an offset).
    ``torch.manual_seed`` would give the same draws but seeds every device of every
    backend, 170 us a step on a CUDA build of torch: about as long as a "Head" step on a
    GPU. A single unseeded stream (its state saved in the training state file) would
    remove even this, but draws other masks, so it would change every result of the
    frozen protocol.
    """
    if dev.type == "cpu":
        return torch.random.default_generator
    torch.cuda.init()
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    return torch.cuda.default_generators[index]


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
    with autocast(dev, proto):
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
def score_test_split(bar, net: nn.Module, store: ImageStore, proto: Protocol,
                     dev: torch.device) -> np.ndarray:
    """float64 [N, 20]: per image, the sum of the logits of ``test_crops`` augmented crops."""
    net.eval()
    n = len(store)
    total = torch.zeros((n, len(CLASSES)), dtype=torch.float64, device=dev)
    task = bar.add_task(f"test {proto.test_crops} crops", total=proto.test_crops * n)
    for crop in range(proto.test_crops):
        rng = np.random.default_rng(hashed_seed(proto.seed, 6, crop))
        for lo in range(0, n, TEST_BATCH):
            idx = np.arange(lo, min(n, lo + TEST_BATCH))
            with autocast(dev, proto):
                logits = net(augmented_crops(store, idx, proto, rng))
            total[lo:lo + len(idx)] += logits.double()
            bar.advance(task, len(idx))
    return total.cpu().numpy()


# ---------------------------------------------------------------------------- resumable state
def state_key(proto: Protocol, net_hash: str, train_images: list[VOCImage],
              model: PretrainedModel) -> str:
    """Identifies one training run: protocol, starting network, training images."""
    from harness.api import hash_params

    return hash_params({"format": STATE_FORMAT, "protocol": proto.to_dict(),
                        "net": net_hash, "origin": model.origin,
                        "train": [im.image_id for im in train_images],
                        "targets": targets_matrix(train_images).tolist()})


def _save_state(path: Path, key: str, iteration: int, net: nn.Module,
                optimizer: torch.optim.Optimizer, curve: list[list[float]]) -> None:
    from harness.api import save_torch

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

"""Pretext training: a backbone learns to predict each frame's sound pseudo-label.

Read :func:`_pretrain` top to bottom; it is the whole loop, in the spirit of nanoGPT's
``train.py``: prepare the data, build the network, resume, then train one epoch
(:func:`train_epoch`) and write one checkpoint at a time. What it does, as the paper and
its seed code did: cross-entropy on cluster ids (or binary cross-entropy on bit codes),
AdamW, a one-cycle learning-rate schedule over a fixed number of epochs, random resized
crop + flip + colour jitter, accuracy on a held-out validation split after every epoch.

The package, in the order a run uses it: :mod:`~harness.pretext.config` (the settings,
defaulting to the profile's), :mod:`~harness.pretext.distributed` (device, precision,
DDP), :mod:`~harness.pretext.data` (labels, split, frame batches), this module (network,
optimizer, the loop), :mod:`~harness.pretext.augment` (batched augmentation),
:mod:`~harness.pretext.checkpoints` (resume, write, stop on divergence),
:mod:`~harness.pretext.log` (one line per epoch), :mod:`~harness.pretext.monitor` (an
optional downstream probe).

What it adds for speed and robustness:

* frames are decoded once into a uint8 array (:mod:`harness.data.framestore`) and augmented
  in batches on the training device (:mod:`harness.pretext.augment`);
* bf16 autocast and channels-last memory where they pay, fused AdamW, optional
  ``torch.compile``;
* a checkpoint after every epoch, written atomically; a rerun with the same ``out``
  resumes from it and ends with the same weights (on CPU) as an uninterrupted run,
  because every random stream is re-seeded from (seed, epoch) at each epoch start;
* under ``torchrun`` the same call trains with DistributedDataParallel (NCCL on GPUs, gloo
  on CPU), each rank on its share of every global batch; only rank 0 writes files.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from harness.networks.checkpoint import build_backbone
from harness.pretext.augment import augment, center, sample_params
from harness.pretext.checkpoints import (check_finite, diverged, resume, run_key, run_meta,
                                         write_checkpoint)
from harness.pretext.config import CHECKPOINT_NAME, CONFIG_NAME, PretrainConfig
from harness.pretext.data import (_AUGMENT, _DROPOUT, _INIT, FrameSource, TrainingData,
                                  prepare_data)
from harness.pretext.distributed import Meter, Runtime, setup_runtime, wrap_model
from harness.pretext.log import EpochLog
from harness.runtime.io import remove_stale_temps_in, write_json
from harness.runtime.seeds import derive_seed


class WarmOneCycleLR(torch.optim.lr_scheduler.OneCycleLR):
    """The one-cycle schedule with a linear warm-up over its first ``warmup_steps`` steps.

    The one-cycle rise alone starts at the peak rate / 25 and takes ``pct_start`` of the
    run (60 of the paper profile's 200 epochs); the warm-up scales the first few hundred
    steps further, when AdamW's moment estimates rest on few gradients. Step ``s`` trains
    at ``(s + 1) / (warmup_steps + 1)`` of the one-cycle's rate, then at the rate itself.
    The factor is a function of the step alone, so resuming from a checkpoint's state
    gives the same rates.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, warmup_steps: int, **kwargs: Any):
        self.warmup_steps = int(warmup_steps)
        super().__init__(optimizer, **kwargs)

    def get_lr(self) -> list[float]:
        factor = min(1.0, (self.last_epoch + 1) / (self.warmup_steps + 1))
        return [lr * factor for lr in super().get_lr()]


def loss_and_correct(logits: torch.Tensor, targets: torch.Tensor,
                     kind: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean loss, number of correct predictions, and how many predictions were made."""
    logits = logits.float()
    if kind == "classes":
        loss = F.cross_entropy(logits, targets)
        return loss, (logits.argmax(1) == targets).sum(), targets.numel()
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    return loss, ((logits > 0).float() == targets).sum(), targets.numel()


def initial_net(backbone, num_outputs: int, seed: int):
    """The network pretext training starts from: ``backbone`` initialised under ``seed``."""
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(seed, _INIT))
        return backbone.create(num_outputs)


@dataclass
class TrainingState:
    """The network and what updates it."""

    backbone: Any
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    key: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: ``time.monotonic()`` when the last checkpoint was written (or training started)
    saved_at: float = field(default_factory=time.monotonic)


def build(config: PretrainConfig, rt: Runtime, data: TrainingData) -> TrainingState:
    """The seeded network, AdamW and the one-cycle schedule over every epoch's steps
    (after a linear warm-up when ``config.warmup_steps`` asks for one)."""
    backbone = build_backbone(config.backbone, config.backbone_params)
    net = initial_net(backbone, data.labels.num_outputs, config.seed).to(rt.device)
    if rt.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay,
                                  fused=config.fused_adamw or None)
    schedule = {"max_lr": config.lr, "total_steps": config.epochs * data.steps_per_epoch,
                "pct_start": config.pct_start}
    scheduler = (WarmOneCycleLR(optimizer, warmup_steps=config.warmup_steps, **schedule)
                 if config.warmup_steps else
                 torch.optim.lr_scheduler.OneCycleLR(optimizer, **schedule))
    return TrainingState(backbone=backbone, net=net, optimizer=optimizer, scheduler=scheduler,
                         key=run_key(config, data.labels, data.dataset, rt),
                         mean=tuple(backbone.mean), std=tuple(backbone.std))


def pretrain(config: PretrainConfig, monitor: Callable[..., dict] | None = None,
             loggers=None) -> Path:
    """Train ``config.backbone`` on the pseudo-labels; return the path of ``out/last.pt``.

    ``monitor`` (e.g. :class:`harness.pretext.monitor.Monitor`) is called on rank 0 after each
    epoch as ``monitor(net, epoch, epochs)``; what it returns is logged with the epoch.
    ``loggers`` (a :class:`harness.pipeline.loggers.RunLogs`) receive every epoch's row on rank 0,
    the epochs an earlier start already trained first (a resumed or finished run logs its
    whole history).
    """
    rt = setup_runtime(config)
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        # the run seeds torch's global generators; the caller's are restored afterwards
        with torch.random.fork_rng(devices=[rt.device] if rt.device.type == "cuda" else []):
            return _pretrain(config, rt, monitor, loggers)
    finally:
        torch.set_num_threads(threads)
        if rt.owns_group:
            dist.destroy_process_group()


def _pretrain(config: PretrainConfig, rt: Runtime, monitor=None, loggers=None) -> Path:
    """The loop: data, model, resume, then one epoch and one checkpoint at a time."""
    remove_stale_temps_in(Path(config.out))      # what a kill during a checkpoint write left
    ckpt_path = Path(config.out) / CHECKPOINT_NAME
    data = prepare_data(config, rt)
    run = build(config, rt, data)
    log = EpochLog(config, rt, data.steps_per_epoch)
    start_epoch, history = resume(config, rt, run, ckpt_path, log)
    loggers = loggers if loggers and rt.is_main else None
    for row in history if loggers else ():      # what earlier starts trained
        loggers.log_epoch(row)
    if start_epoch >= config.epochs:
        return ckpt_path
    model = wrap_model(config, rt, run.net)
    meta = run_meta(config, rt, data, run)
    if rt.is_main:
        write_json(Path(config.out) / CONFIG_NAME,
                   {**meta, "steps_per_epoch": data.steps_per_epoch})
    with log.running(config.epochs - start_epoch):
        for epoch in range(start_epoch, config.epochs):
            row = train_epoch(config, rt, data, run, model, epoch, log, ckpt_path, history)
            if monitor is not None and rt.is_main:      # a downstream probe, train -> val
                row.update(monitor(run.net, epoch + 1, config.epochs))
            history.append(row)
            log.epoch(row)
            if loggers:
                loggers.log_epoch(row)
            if rt.is_main:
                write_checkpoint(config, run, data, meta, history, ckpt_path)
    log.done(history)
    if rt.world > 1:
        dist.barrier()  # rank 0 has written the last checkpoint before anyone returns
    return ckpt_path


def train_epoch(config: PretrainConfig, rt: Runtime, data: TrainingData, run: TrainingState,
                model: torch.nn.Module, epoch: int, log: EpochLog, ckpt_path: Path,
                history: list[dict]) -> dict[str, Any]:
    """One pass over this rank's share of the training split, then validation; the row of
    metrics.jsonl it gives."""
    # every random stream restarts from (seed, epoch): resuming is exact
    sampler = DistributedSampler(range(len(data.train_idx)), num_replicas=rt.world,
                                 rank=rt.rank, shuffle=True, seed=config.seed, drop_last=True)
    sampler.set_epoch(epoch)
    order = data.train_idx[np.fromiter(iter(sampler), dtype=np.int64)]
    aug_gen = torch.Generator().manual_seed(derive_seed(config.seed, _AUGMENT, epoch))
    torch.manual_seed(derive_seed(config.seed, _DROPOUT, epoch, rt.rank))
    batches = data.source.batches(order, data.bounds)
    autocast = (torch.autocast(rt.device.type, dtype=torch.bfloat16) if rt.bf16
                else nullcontext())
    log_every = 1 if rt.device.type == "cpu" else 25
    steps, kind = data.steps_per_epoch, data.labels.kind
    log.start_epoch(epoch)
    model.train()
    meter = Meter(rt.device)
    started, cpu_started, waited = time.perf_counter(), time.process_time(), 0.0
    for step in range(steps):
        t0 = time.perf_counter()   # the host's time on input (all of it, on a CPU)
        frames, idx = next(batches)
        # draw augmentations for the whole global batch, keep this rank's rows
        params = sample_params(len(idx) * rt.world, config.augment, aug_gen)
        x = augment(frames, params.rows(slice(rt.rank, None, rt.world)),
                    config.image_size, run.mean, run.std, rt.channels_last)
        y = data.targets[idx]
        waited += time.perf_counter() - t0
        with autocast:
            logits = model(x)
        loss, correct, count = loss_and_correct(logits, y, kind)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.scheduler.step()
        meter.add(loss, correct, count, len(idx))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            check_finite(loss, rt, epoch, step, ckpt_path, history)
            rate = (step + 1) * len(idx) * rt.world / (time.perf_counter() - started)
            log.step(epoch, step, loss, correct, count, rate)
    if rt.device.type == "cuda":
        torch.cuda.synchronize(rt.device)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    train_loss, train_acc = meter.reduce(rt.world)
    # the plain network: DDP's forward is a collective, and ranks may hold
    # different numbers of validation batches
    val_loss, val_acc = validate(run.net, data.source, data.val_idx, data.targets, kind, rt,
                                 config.image_size, run.mean, run.std, 2 * data.local_batch,
                                 autocast)
    if not all(math.isfinite(v) for v in (train_loss, val_loss) if v is not None):
        diverged(epoch, steps, ckpt_path, history)
    return {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc,
            "val_loss": val_loss, "val_accuracy": val_acc,
            "lr": run.scheduler.get_last_lr()[0],
            "images_per_s": round(data.bounds[-1][1] * rt.world / seconds, 1),
            "epoch_seconds": round(seconds, 3),
            # CPU time of this process (all threads): well under threads x wall
            # time means the machine is shared and the wall-clock rate understated
            "cpu_seconds": round(cpu_seconds, 3),
            "data_wait_share": round(waited / seconds, 4)}


@torch.no_grad()
def validate(model: torch.nn.Module, source: FrameSource, val_idx: np.ndarray,
             targets: torch.Tensor, kind: str, rt: Runtime, size: int,
             mean: tuple[float, ...], std: tuple[float, ...], batch: int,
             autocast) -> tuple[float | None, float | None]:
    """Mean loss and accuracy on the validation split (each rank scores its share)."""
    if len(val_idx) == 0:
        return None, None
    model.eval()
    meter = Meter(rt.device)
    mine = val_idx[rt.rank::rt.world]
    bounds = [(lo, min(lo + batch, len(mine))) for lo in range(0, len(mine), batch)]
    for frames, idx in source.batches(mine, bounds):
        x = center(frames, size, mean, std, rt.channels_last)
        with autocast:
            logits = model(x)
        loss, correct, count = loss_and_correct(logits, targets[idx], kind)
        meter.add(loss, correct, count, len(idx))
    return meter.reduce(rt.world)


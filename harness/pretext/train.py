"""Pretext training: a backbone learns to predict each frame's sound pseudo-label.

Read :func:`_pretrain` top to bottom; it is the whole loop, in the spirit of nanoGPT's
``train.py``: prepare the data, build the network, resume, then train one epoch and write
one checkpoint at a time (:func:`_train_epoch`, :func:`_checkpoint`); :class:`EpochLog`
prints one line per epoch. What it does, as the paper and its seed code did: cross-entropy on cluster
ids (or binary cross-entropy on bit codes), AdamW, a one-cycle learning-rate schedule
over a fixed number of epochs, random resized crop + flip + colour jitter, accuracy on a
held-out validation split after every epoch.

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

import contextlib
import json
import math
import os
import queue
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.console import Console
from rich.progress import TextColumn
from torch.utils.data import DistributedSampler

from harness import __version__
from harness.pretext.augment import AugmentConfig, augment, center, sample_params
from harness.runtime.cache import hash_file, hash_params
from harness.networks.checkpoint import build_backbone, first_nonfinite, read_checkpoint, save_checkpoint
from harness.data.clips import ClipDataset
from harness.runtime.devices import cpu_has_native_bf16, resolve_device, resolve_precision  # noqa: F401
from harness.api.errors import BadInputError, HarnessError
from harness.data.framestore import FrameStore, frame_store
from harness.runtime.io import remove_stale_temps_in, write_json, write_text
from harness.runtime.progress import enabled as progress_enabled
from harness.runtime.progress import make_progress

Precision = Literal["auto", "bf16", "fp32"]
CHECKPOINT_NAME = "last.pt"
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.json"
#: a uint8 store smaller than this share of free GPU memory is kept on the GPU whole
RESIDENT_SHARE = 0.25
# independent random streams, each seeded from (seed, stream, ...)
_SPLIT, _INIT, _AUGMENT, _DROPOUT = 0, 1, 2, 3


@dataclass(frozen=True)
class PretrainConfig:
    """Everything ``harness pretrain`` does, as one typed object."""

    backbone: str
    labels: Path
    data: Path
    out: Path
    backbone_params: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    #: global batch size (split evenly across DDP ranks); the seed's code used 256
    batch_size: int = 256
    #: peak learning rate of the one-cycle schedule (the paper's 0.01)
    lr: float = 0.01
    weight_decay: float = 0.01
    #: share of the steps spent warming up to the peak learning rate
    pct_start: float = 0.3
    #: a linear warm-up on top of the one-cycle schedule: step ``s`` < ``warmup_steps``
    #: trains at ``(s + 1) / (warmup_steps + 1)`` of the one-cycle's rate (0: none)
    warmup_steps: int = 0
    #: side of the square images the network sees
    image_size: int = 64
    #: side of the cached frames (default: ``image_size``)
    store_size: int | None = None
    val_fraction: float = 0.1
    seed: int = 0
    augment: AugmentConfig = AugmentConfig()
    #: "auto" (CUDA if present, else CPU), "cpu", "cuda", "cuda:1", ...
    device: str = "auto"
    #: "auto": bf16 autocast on CUDA and on CPUs with native bf16, else fp32
    precision: Precision = "auto"
    channels_last: bool = True
    #: AdamW's fused kernel (CPU and CUDA); False gives the plain per-tensor loop
    fused_adamw: bool = True
    compile: bool = False
    #: write a checkpoint every this many epochs (and always after the last)
    checkpoint_every: int = 1
    #: ... and only once this many seconds have passed since the last one (0: no wait);
    #: an interrupted run then redoes at most about this much training
    checkpoint_seconds: float = 0.0
    #: recorded in the checkpoint: "pretext" (sound labels) or "supervised" (true labels)
    origin: str = "pretext"
    #: ignore (and overwrite) a checkpoint of another run found in ``out``
    restart: bool = False
    #: CPU threads for torch (default: torch's choice; 1 is faster on a busy machine)
    threads: int | None = None
    progress: bool = True
    #: recorded only: the profile the settings came from, and the ones given explicitly
    #: over it (both are already in the values above, so neither is part of the run key)
    profile: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 2, f"batch size must be >= 2, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
            (self.image_size >= 16, f"image size must be >= 16, got {self.image_size}"),
            (0 <= self.val_fraction < 1, f"val fraction must be in [0, 1), got {self.val_fraction}"),
            (0 < self.pct_start < 1, f"pct_start must be in (0, 1), got {self.pct_start}"),
            (self.warmup_steps >= 0, f"warm-up steps must be >= 0, got {self.warmup_steps}"),
            (self.store_size is None or self.store_size >= self.image_size,
             f"store size {self.store_size} is smaller than the image size {self.image_size}: "
             "frames would be enlarged, not cropped (give --store-size of at least the image "
             "size)"),
            (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
            (self.checkpoint_seconds >= 0, "checkpoint_seconds must be >= 0"),
            (self.precision in ("auto", "bf16", "fp32"), f"unknown precision {self.precision!r}"),
            (0 <= self.seed < 2**32, f"seed must be in [0, 2^32), got {self.seed}"),
            (not Path(self.out).exists() or Path(self.out).is_dir(),
             f"--out {self.out}: is a file, not a run folder"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInputError(message)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("labels", "data", "out"):
            out[key] = str(out[key])
        # settings added after runs were recorded are written only when in use, so a run
        # that leaves them at their default keeps its run key, cache key and leaderboard
        # row (all are digests of this dictionary)
        for key, default in _ADDED_SETTINGS.items():
            if out[key] == default:
                del out[key]
        return out


#: PretrainConfig fields left out of :meth:`PretrainConfig.to_json` at these values
_ADDED_SETTINGS: dict[str, Any] = {"warmup_steps": 0}


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


# ----------------------------------------------------------------------------- labels
@dataclass
class PseudoLabels:
    """The labeler's output as the trainer needs it."""

    #: int64 [N] class ids, or float32 [N, L] bits
    values: np.ndarray
    kind: Literal["classes", "bits"]
    num_outputs: int
    path: Path
    sha256: str
    #: the sidecar JSON (labeler, params, ...), empty if there was none
    info: dict[str, Any]
    #: sorted indices of clips with no label (their audio was unusable): never trained on
    excluded: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def usable(self) -> np.ndarray:
        """Indices of the clips that have a label."""
        return np.setdiff1d(np.arange(len(self.values)), self.excluded)


def read_labels(path: str | Path) -> PseudoLabels:
    """The labels file as the trainer needs it (read by :func:`harness.labels.pseudo_labels.read_labels`).

    Classes: int64 [N] in [0, num_outputs). Bits: float32 0/1 [N, L].
    """
    from harness.labels import pseudo_labels as labels_format

    path = Path(path)
    labels, info = labels_format.read_labels(path)
    values = labels.values.astype(np.float32) if labels.kind == "bits" else labels.values
    return PseudoLabels(values=values, kind=labels.kind, num_outputs=labels.num_outputs,
                        path=path, sha256=hash_file(path), info=info,
                        excluded=np.asarray(info.get("excluded", []), dtype=np.int64))


def loss_and_correct(logits: torch.Tensor, targets: torch.Tensor,
                     kind: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean loss, number of correct predictions, and how many predictions were made."""
    logits = logits.float()
    if kind == "classes":
        loss = F.cross_entropy(logits, targets)
        return loss, (logits.argmax(1) == targets).sum(), targets.numel()
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    return loss, ((logits > 0).float() == targets).sum(), targets.numel()


# ----------------------------------------------------------------------------- runtime
@dataclass(frozen=True)
class Runtime:
    """Where and how this process trains."""

    device: torch.device
    rank: int
    world: int
    #: bf16 autocast on, or off (fp32)
    bf16: bool
    channels_last: bool
    #: True if this process started the process group (and must end it)
    owns_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_runtime(config: PretrainConfig) -> Runtime:
    """Pick the device and precision; join the process group when run under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(resolve_device(config.device))
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank if world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if config.batch_size % world:
        raise BadInputError(f"batch size {config.batch_size} does not split evenly over "
                            f"{world} processes")
    owns_group = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        owns_group = True
    bf16 = resolve_precision(config.precision, str(device))
    return Runtime(device=device, rank=rank, world=world, bf16=bf16,
                   channels_last=config.channels_last, owns_group=owns_group)


def initial_net(backbone, num_outputs: int, seed: int):
    """The network pretext training starts from: ``backbone`` initialised under ``seed``."""
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(seed, _INIT))
        return backbone.create(num_outputs)


def derive_seed(*parts: int) -> int:
    """An independent 63-bit seed for one random stream, from the run seed and stream ids."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> 1)


def split_indices(n: int, val_fraction: float, seed: int,
                  groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train / validation split of ``range(n)`` (both sorted).

    ``groups`` (int [n], e.g. :meth:`harness.data.clips.ClipDataset.source_groups`) keeps the
    items of one group on one side: clips cut from one video are near-duplicates, and one
    on each side would make the validation loss measure memory. Whole groups, in a seeded
    order, go to validation until it holds ``round(n * val_fraction)`` items or more (never
    every item). When every item is its own group (the toy world) the split is the
    ungrouped one, item for item.
    """
    gen = torch.Generator().manual_seed(derive_seed(seed, _SPLIT))
    n_val = int(round(n * val_fraction))
    if groups is None or len(np.unique(groups)) == n:
        perm = torch.randperm(n, generator=gen).numpy()
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])
    ids, inverse = np.unique(np.asarray(groups), return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(ids))
    chosen, count = [], 0
    for g in torch.randperm(len(ids), generator=gen).numpy():
        if count >= n_val or count + sizes[g] >= n:
            break
        chosen.append(g)
        count += int(sizes[g])
    is_val = np.isin(inverse, chosen)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def batch_bounds(n: int, batch: int) -> list[tuple[int, int]]:
    """[start, stop) of each batch over ``n`` items; a last batch of one is dropped
    (batch normalisation cannot train on a single image) unless it is the only one."""
    bounds = [(lo, min(lo + batch, n)) for lo in range(0, n, batch)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < 2:
        bounds.pop()
    return bounds


# ----------------------------------------------------------------------------- input
class FrameSource:
    """Batches of uint8 frames and their indices on the training device.

    Three ways, chosen by ``mode`` (``auto``: resident on a GPU when the store fits,
    streamed on a GPU when it does not, gathered on a CPU), each giving the same batches:

    * ``resident``: the whole store is copied to the device once; a batch is one
      on-device gather;
    * ``stream``: worker processes gather each batch from the memory-mapped store into
      pinned memory (:mod:`harness.data.framestream`) and it is copied without blocking;
      nothing here makes the host wait for the GPU, which a plain host-to-GPU copy would;
    * ``gather``: this process gathers each batch when it is needed (on a CPU the network
      takes far longer than the copy).
    """

    MODES = ("auto", "resident", "stream", "gather")

    def __init__(self, store: FrameStore, device: torch.device, mode: str = "auto",
                 workers: int | None = None):
        if mode not in self.MODES:
            raise BadInputError(f"frame source {mode!r}: choose from {', '.join(self.MODES)}")
        self.store = store
        self.device = torch.device(device)
        self.workers = workers
        if mode == "auto":
            mode = "gather"
            if self.device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(self.device)
                mode = "resident" if store.nbytes < RESIDENT_SHARE * free else "stream"
        self.mode = mode
        self.resident = store.to_tensor(self.device) if mode == "resident" else None

    def batches(self, order: np.ndarray, bounds: list[tuple[int, int]]
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(frames [B, S, S, 3], indices [B]) for ``order[lo:hi]`` of each of ``bounds``."""
        if self.resident is not None:
            on_device = torch.from_numpy(order).to(self.device)      # one copy per epoch
            for lo, hi in bounds:
                idx = on_device[lo:hi]
                yield self.resident.index_select(0, idx), idx
        elif self.mode == "stream":
            from harness.data.framestream import stream_batches

            cuda = self.device.type == "cuda"
            wanted = [order[lo:hi] for lo, hi in bounds]
            for frames, idx in stream_batches(self.store.path, wanted, workers=self.workers,
                                              pin=cuda):
                yield (frames.to(self.device, non_blocking=cuda),
                       idx.to(self.device, non_blocking=cuda))
        else:
            for lo, hi in bounds:
                yield self.store.gather(order[lo:hi]), torch.from_numpy(order[lo:hi])


def prefetched(load, index_batches: list[np.ndarray], depth: int = 3) -> Iterator[Any]:
    """``load(i)`` for each index batch, computed ``depth`` batches ahead in a thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)

    def worker() -> None:
        try:
            for idx in index_batches:
                q.put(load(idx))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    threading.Thread(target=worker, daemon=True).start()
    for _ in index_batches:
        item = q.get()
        if isinstance(item, BaseException):
            raise item
        yield item


class Meter:
    """Sums of loss, correct predictions and counts, kept on the device (no sync per step)."""

    def __init__(self, device: torch.device):
        #: loss x images, correct predictions, predictions, images
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)

    def add(self, loss: torch.Tensor, correct: torch.Tensor, count: int, images: int) -> None:
        self.sums[0] += loss.detach().double() * images
        self.sums[1] += correct.double()
        self.sums[2] += count
        self.sums[3] += images

    def reduce(self, world: int) -> tuple[float, float]:
        """(mean loss per image, accuracy) over every rank."""
        sums = self.sums.clone()
        if world > 1:
            dist.all_reduce(sums)
        loss_sum, correct, count, images = sums.tolist()
        return loss_sum / max(images, 1), correct / max(count, 1)


# ----------------------------------------------------------------------------- the loop
class TrainingDiverged(HarnessError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def run_key(config: PretrainConfig, labels: PseudoLabels, dataset: ClipDataset,
            rt: Runtime) -> str:
    """What a checkpoint must match to be resumed: everything that changes the weights."""
    parts = config.to_json()
    for key in ("out", "labels", "data", "device", "channels_last", "fused_adamw", "compile",
                "checkpoint_every", "checkpoint_seconds", "restart", "threads", "progress",
                "precision", "profile", "overrides"):
        parts.pop(key)
    parts.update(labels_sha256=labels.sha256, data=dataset.cache_key(), bf16=rt.bf16)
    return hash_params(parts)


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
    data = _prepare_data(config, rt)
    run = _build(config, rt, data)
    log = EpochLog(config, rt, data.steps_per_epoch)
    start_epoch, history = _resume(config, rt, run, ckpt_path, log)
    loggers = loggers if loggers and rt.is_main else None
    for row in history if loggers else ():      # what earlier starts trained
        loggers.log_epoch(row)
    if start_epoch >= config.epochs:
        return ckpt_path
    model = _wrap(config, rt, run.net)
    meta = _meta(config, rt, data, run)
    if rt.is_main:
        write_json(Path(config.out) / CONFIG_NAME,
                   {**meta, "steps_per_epoch": data.steps_per_epoch})
    with log.running(config.epochs - start_epoch):
        for epoch in range(start_epoch, config.epochs):
            row = _train_epoch(config, rt, data, run, model, epoch, log, ckpt_path, history)
            if monitor is not None and rt.is_main:      # a downstream probe, train -> val
                row.update(monitor(run.net, epoch + 1, config.epochs))
            history.append(row)
            log.epoch(row)
            if loggers:
                loggers.log_epoch(row)
            if rt.is_main:
                _checkpoint(config, run, data, meta, history, ckpt_path)
    log.done(history)
    if rt.world > 1:
        dist.barrier()  # rank 0 has written the last checkpoint before anyone returns
    return ckpt_path


@dataclass
class TrainingData:
    """The labels, the frames and the split one run trains on."""

    labels: PseudoLabels
    dataset: ClipDataset
    train_idx: np.ndarray
    val_idx: np.ndarray
    #: [start, stop) of this rank's batches within an epoch's order
    bounds: list[tuple[int, int]]
    local_batch: int
    targets: torch.Tensor
    source: FrameSource

    @property
    def steps_per_epoch(self) -> int:
        return len(self.bounds)


def _prepare_data(config: PretrainConfig, rt: Runtime) -> TrainingData:
    """Labels, frames (decoded once, rank 0 first), the seeded train/validation split."""
    labels = read_labels(config.labels)
    dataset = ClipDataset(config.data)
    if len(labels.values) != len(dataset):
        raise BadInputError(f"{labels.path}: {len(labels.values)} labels, but the clip dataset "
                            f"{dataset.root} has {len(dataset)} clips")
    store_size = config.store_size or config.image_size
    if rt.is_main:
        store = frame_store(dataset, store_size, progress=config.progress)
    if rt.world > 1:
        dist.barrier()
    if not rt.is_main:
        store = frame_store(dataset, store_size, progress=False)
    usable = labels.usable()            # all clips unless some had no usable audio
    train_pos, val_pos = split_indices(len(usable), config.val_fraction, config.seed,
                                       groups=dataset.source_groups()[usable])
    train_idx, val_idx = usable[train_pos], usable[val_pos]
    per_rank = len(train_idx) // rt.world
    local_batch = config.batch_size // rt.world
    if per_rank < 2:
        raise BadInputError(f"{dataset.root}: {len(train_idx)} training clips are too few")
    return TrainingData(labels=labels, dataset=dataset, train_idx=train_idx, val_idx=val_idx,
                        bounds=batch_bounds(per_rank, local_batch), local_batch=local_batch,
                        targets=torch.from_numpy(labels.values).to(rt.device),
                        source=FrameSource(store, rt.device))


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


def _build(config: PretrainConfig, rt: Runtime, data: TrainingData) -> TrainingState:
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


def _resume(config: PretrainConfig, rt: Runtime, run: TrainingState, ckpt_path: Path,
            log: "EpochLog") -> tuple[int, list[dict]]:
    """(first epoch to train, history so far): from ``out/last.pt`` when it is this run's."""
    if not ckpt_path.is_file() or config.restart:
        return 0, []
    ckpt = read_checkpoint(ckpt_path, map_location="cpu", mmap=False, check_train_state=True)
    state = ckpt.get("train_state") or {}
    if state.get("run_key") != run.key:
        raise BadInputError(f"{ckpt_path}: a checkpoint of a different run (other labels, "
                            "data or settings); use another --out, or --restart")
    history = list(state["history"])
    if state["epoch"] >= config.epochs:
        log.note(f"pretrain: {ckpt_path} is complete ({state['epoch']} epochs)")
        return int(state["epoch"]), history
    run.net.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    log.note(f"pretrain: resuming {ckpt_path} after epoch {state['epoch']}")
    return int(state["epoch"]), history


def _wrap(config: PretrainConfig, rt: Runtime, net: torch.nn.Module) -> torch.nn.Module:
    """The module the steps call: DDP across ranks, compiled when asked."""
    model: torch.nn.Module = net
    if rt.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    if config.compile:
        model = torch.compile(model)
    return model


def _meta(config: PretrainConfig, rt: Runtime, data: TrainingData,
          run: TrainingState) -> dict[str, Any]:
    """What the checkpoint and config.json say about the run."""
    labels, dataset = data.labels, data.dataset
    return {
        "origin": config.origin, "config": config.to_json(), "run_key": run.key,
        "labels": {"path": str(labels.path), "sha256": labels.sha256, "kind": labels.kind,
                   "num_outputs": labels.num_outputs, "labeler": labels.info.get("labeler"),
                   "params": labels.info.get("params")},
        "data": {"path": str(dataset.root), "fingerprint": dataset.fingerprint(),
                 "num_clips": len(dataset), "train": len(data.train_idx),
                 "val": len(data.val_idx), "excluded": len(labels.excluded)},
        "device": str(rt.device), "world_size": rt.world,
        "precision": "bf16" if rt.bf16 else "fp32", "channels_last": rt.channels_last,
        "harness_version": __version__, "torch_version": str(torch.__version__),
    }


def _train_epoch(config: PretrainConfig, rt: Runtime, data: TrainingData, run: TrainingState,
                 model: torch.nn.Module, epoch: int, log: "EpochLog", ckpt_path: Path,
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
            _check_finite(loss, rt, epoch, step, ckpt_path, history)
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
        _diverged(epoch, steps, ckpt_path, history)
    return {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc,
            "val_loss": val_loss, "val_accuracy": val_acc,
            "lr": run.scheduler.get_last_lr()[0],
            "images_per_s": round(data.bounds[-1][1] * rt.world / seconds, 1),
            "epoch_seconds": round(seconds, 3),
            # CPU time of this process (all threads): well under threads x wall
            # time means the machine is shared and the wall-clock rate understated
            "cpu_seconds": round(cpu_seconds, 3),
            "data_wait_share": round(waited / seconds, 4)}


def _checkpoint(config: PretrainConfig, run: TrainingState, data: TrainingData,
                meta: dict[str, Any], history: list[dict], ckpt_path: Path) -> None:
    """``last.pt`` when :func:`checkpoint_due` and after the last epoch; metrics.jsonl always.

    Weights that hold NaN or infinite values stop the run before anything is written
    (a finite loss does not guarantee finite weights: a monitor, or a layer the loss
    does not reach, may hold them); the last good checkpoint stays."""
    epoch, row = history[-1]["epoch"], history[-1]
    bad = first_nonfinite(run.net.state_dict())
    if bad is not None:
        _diverged(epoch - 1, None, ckpt_path, history[:-1], f"weights (tensor {bad!r})")
    last = epoch == config.epochs
    if last or checkpoint_due(config, epoch, run.saved_at):
        state = {"epoch": epoch, "run_key": run.key, "history": history}
        if not last:  # the final checkpoint carries no optimizer state
            state.update(optimizer=run.optimizer.state_dict(),
                         scheduler=run.scheduler.state_dict())
        save_checkpoint(ckpt_path, backbone_name=config.backbone, backbone=run.backbone,
                        net=run.net, output_kind=data.labels.kind,
                        image_size=config.image_size, mean=run.mean, std=run.std,
                        meta={**meta, "epoch": epoch, "val_accuracy": row["val_accuracy"],
                              "train_accuracy": row["train_accuracy"]},
                        train_state=state)
        run.saved_at = time.monotonic()
    write_text(Path(config.out) / METRICS_NAME, "".join(json.dumps(r) + "\n" for r in history))


def checkpoint_due(config: PretrainConfig, epochs_done: int, saved_at: float) -> bool:
    """Whether the end of epoch ``epochs_done`` (1-based) gets a checkpoint: every
    ``checkpoint_every`` epochs, once ``checkpoint_seconds`` have passed since the last one
    (``saved_at``, a ``time.monotonic()`` reading). A toy epoch takes about 2 s and a
    checkpoint with AdamW's moments about 0.1 s, so one per epoch costs ~5% of the stage."""
    return (epochs_done % config.checkpoint_every == 0
            and time.monotonic() - saved_at >= config.checkpoint_seconds)


class EpochLog:
    """What a run prints (rank 0, unless progress is off): one line per epoch, always.

    On a terminal a live bar also shows the current step's loss, accuracy and rate; in a
    file, a pipe or CI there is no bar, only the epoch lines (each one whole line: loss,
    accuracy, learning rate and images/s of training, then validation) and a last line
    with the final epoch's figures.
    """

    def __init__(self, config: PretrainConfig, rt: Runtime, steps_per_epoch: int):
        self.console = Console(stderr=True, soft_wrap=True)
        self.show = rt.is_main and config.progress and progress_enabled()
        self.live = self.show and self.console.is_terminal
        self.epochs, self.steps = config.epochs, steps_per_epoch
        self.bar = make_progress(TextColumn("{task.fields[stats]}"))
        self.task = None
        self.first_epoch = 0

    def note(self, text: str) -> None:
        if self.show:
            self.console.print(text)

    @contextlib.contextmanager
    def running(self, epochs: int):
        if not self.live:
            yield
            return
        self.task = self.bar.add_task("pretrain", total=epochs * self.steps, stats="")
        with self.bar:
            yield

    def start_epoch(self, epoch: int) -> None:
        if self.task is None:
            self.first_epoch = epoch
        if self.live and self.task is not None:
            self.bar.update(self.task, description=f"epoch {epoch + 1}/{self.epochs}")

    def step(self, epoch: int, step: int, loss, correct, count: int, rate: float) -> None:
        if self.live and self.task is not None:
            done = (epoch - self.first_epoch) * self.steps + step + 1
            self.bar.update(self.task, completed=done,
                            stats=f"loss {loss.item():.3f}  acc {correct.item() / count:.3f}  "
                                  f"{rate:,.0f} img/s")

    def epoch(self, row: dict[str, Any]) -> None:
        if self.show:
            (self.bar.console if self.live else self.console).print(
                _epoch_line(row, self.epochs))

    def done(self, history: list[dict]) -> None:
        if self.show and history:
            self.console.print("pretrain: finished; " + _epoch_line(history[-1], self.epochs))


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


def _check_finite(loss: torch.Tensor, rt: Runtime, epoch: int, step: int, ckpt_path: Path,
                  history: list[dict]) -> None:
    bad = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0], device=loss.device)
    if rt.world > 1:
        dist.all_reduce(bad)   # every rank stops together
    if bad.item():
        _diverged(epoch, step + 1, ckpt_path, history)


def _diverged(epoch: int, step: int | None, ckpt_path: Path, history: list[dict],
              what: str = "loss") -> None:
    kept = (f"the last good checkpoint, {ckpt_path} (epoch {history[-1]['epoch']}), is kept"
            if history and ckpt_path.is_file() else "no checkpoint had been written yet")
    where = f"epoch {epoch + 1}" + (f", step {step}" if step is not None else "")
    raise TrainingDiverged(f"{what} became NaN or infinite at {where}; "
                           f"training stopped and {kept}. Try a lower --lr.")


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    val = ("" if row["val_accuracy"] is None else
           f"  val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f}")
    return (f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_accuracy']:.3f}{val}  {row['images_per_s']:,.0f} img/s  "
            f"lr {row['lr']:.2e}" + "".join(
                f"  {k[len('monitor_'):]} {v:.2f}" for k, v in row.items()
                if k.startswith("monitor_") and k.endswith("_map")))


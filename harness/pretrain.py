"""Pretext training: a backbone learns to predict each frame's sound pseudo-label.

Read :func:`pretrain` top to bottom; it is the whole loop, in the spirit of nanoGPT's
``train.py``. What it does, as the paper and its seed code did: cross-entropy on cluster
ids (or binary cross-entropy on bit codes), AdamW, a one-cycle learning-rate schedule
over a fixed number of epochs, random resized crop + flip + colour jitter, accuracy on a
held-out validation split after every epoch.

What it adds for speed and robustness:

* frames are decoded once into a uint8 array (:mod:`harness.framestore`) and augmented
  in batches on the training device (:mod:`harness.augment`);
* bf16 autocast and channels-last memory where they pay, fused AdamW, optional
  ``torch.compile``;
* a checkpoint after every epoch, written atomically; a rerun with the same ``out``
  resumes from it and ends with the same weights (on CPU) as an uninterrupted run,
  because every random stream is re-seeded from (seed, epoch) at each epoch start;
* under ``torchrun`` the same call trains with DistributedDataParallel (NCCL on GPUs, gloo
  on CPU), each rank on its share of every global batch; only rank 0 writes files.
"""

from __future__ import annotations

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
from harness.augment import AugmentConfig, augment, center, sample_params
from harness.cache import hash_file, hash_params
from harness.checkpoint import build_backbone, read_checkpoint, save_checkpoint
from harness.clips import ClipDataset
from harness.errors import BadInputError, HarnessError
from harness.framestore import FrameStore, frame_store
from harness.io import write_json, write_text
from harness.progress import enabled as progress_enabled
from harness.progress import make_progress

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
    #: recorded in the checkpoint: "pretext" (sound labels) or "supervised" (true labels)
    origin: str = "pretext"
    #: ignore (and overwrite) a checkpoint of another run found in ``out``
    restart: bool = False
    #: CPU threads for torch (default: torch's choice; 1 is faster on a busy machine)
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 2, f"batch size must be >= 2, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
            (self.image_size >= 16, f"image size must be >= 16, got {self.image_size}"),
            (0 <= self.val_fraction < 1, f"val fraction must be in [0, 1), got {self.val_fraction}"),
            (0 < self.pct_start < 1, f"pct_start must be in (0, 1), got {self.pct_start}"),
            (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
            (self.precision in ("auto", "bf16", "fp32"), f"unknown precision {self.precision!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInputError(message)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("labels", "data", "out"):
            out[key] = str(out[key])
        return out


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
    """Read ``LABELS.npy`` and its sidecar ``LABELS.json`` (inferred when missing).

    Classes: integer [N] in [0, num_outputs). Bits: 0/1 [N, L].
    """
    path = Path(path)
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path}: cannot read labels ({str(exc).splitlines()[0]})") from None
    sidecar = path.with_suffix(".json")
    info: dict[str, Any] = {}
    if sidecar.is_file():
        try:
            info = json.loads(sidecar.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadInputError(f"{sidecar}: malformed JSON ({exc})") from None
    kind = info.get("kind", "classes" if values.ndim == 1 else "bits")
    if kind == "classes":
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise BadInputError(f"{path}: class labels must be integers of shape [N], got "
                                f"{values.dtype} {values.shape}")
        num = int(info.get("num_outputs", int(values.max()) + 1 if values.size else 0))
        if values.size and (values.min() < 0 or values.max() >= num):
            raise BadInputError(f"{path}: class ids must lie in [0, {num}), found "
                                f"{values.min()}..{values.max()}")
        values = values.astype(np.int64)
    elif kind == "bits":
        if values.ndim != 2 or not np.isin(values, (0, 1)).all():
            raise BadInputError(f"{path}: bit labels must be 0/1 of shape [N, L], got "
                                f"{values.dtype} {values.shape}")
        num = int(info.get("num_outputs", values.shape[1]))
        if num != values.shape[1]:
            raise BadInputError(f"{path}: {values.shape[1]} bits, but {sidecar.name} says {num}")
        values = values.astype(np.float32)
    else:
        raise BadInputError(f"{sidecar}: kind must be 'classes' or 'bits', got {kind!r}")
    if num < 2 and kind == "classes":
        raise BadInputError(f"{path}: need at least 2 classes, found {num}")
    try:
        excluded = np.unique(np.asarray(info.get("excluded", []), dtype=np.int64))
    except (TypeError, ValueError):
        raise BadInputError(f"{sidecar}: 'excluded' must be a list of clip indices") from None
    if excluded.size and (excluded[0] < 0 or excluded[-1] >= len(values)):
        raise BadInputError(f"{sidecar}: 'excluded' names clip {int(excluded[-1])} of "
                            f"{len(values)}")
    return PseudoLabels(values=values, kind=kind, num_outputs=num, path=path,
                        sha256=hash_file(path), info=info, excluded=excluded)


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


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 natively (AVX512-BF16 or AMX); elsewhere it is emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def setup_runtime(config: PretrainConfig) -> Runtime:
    """Pick the device and precision; join the process group when run under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want = config.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(want)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BadInputError(f"device {config.device!r} asked for, but CUDA is not available")
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
    if config.precision == "auto":
        bf16 = (torch.cuda.is_bf16_supported() if device.type == "cuda"
                else cpu_has_native_bf16())
    else:
        bf16 = config.precision == "bf16"
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


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train / validation split of ``range(n)`` (both sorted)."""
    gen = torch.Generator().manual_seed(derive_seed(seed, _SPLIT))
    perm = torch.randperm(n, generator=gen).numpy()
    n_val = int(round(n * val_fraction))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


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

    On a GPU the whole store is copied to GPU memory when it fits (a batch is then one
    on-device gather); otherwise batches are gathered from the memory-mapped store by a
    background thread into pinned memory and copied without blocking. Nothing here makes
    the host wait for the GPU: a plain host-to-GPU copy would.
    """

    def __init__(self, store: FrameStore, device: torch.device):
        self.store = store
        self.device = device
        self.resident: torch.Tensor | None = None
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if store.nbytes < RESIDENT_SHARE * free:
                self.resident = store.to_tensor(device)

    def batches(self, order: np.ndarray, bounds: list[tuple[int, int]]
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(frames [B, S, S, 3], indices [B]) for ``order[lo:hi]`` of each of ``bounds``."""
        if self.resident is not None:
            on_device = torch.from_numpy(order).to(self.device)      # one copy per epoch
            for lo, hi in bounds:
                idx = on_device[lo:hi]
                yield self.resident.index_select(0, idx), idx
        elif self.device.type == "cuda":
            yield from prefetched(self._pinned_batch, [order[lo:hi] for lo, hi in bounds])
        else:
            for lo, hi in bounds:
                yield self.store.gather(order[lo:hi]), torch.from_numpy(order[lo:hi])

    def _pinned_batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.store.size
        pinned = torch.empty((len(idx), s, s, 3), dtype=torch.uint8, pin_memory=True)
        frames = self.store.gather(idx, out=pinned).to(self.device, non_blocking=True)
        return frames, torch.from_numpy(idx).pin_memory().to(self.device, non_blocking=True)


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
                "checkpoint_every", "restart", "threads", "progress", "precision"):
        parts.pop(key)
    parts.update(labels_sha256=labels.sha256, data=dataset.fingerprint(), bf16=rt.bf16)
    return hash_params(parts)


def pretrain(config: PretrainConfig, monitor: Callable[..., dict] | None = None) -> Path:
    """Train ``config.backbone`` on the pseudo-labels; return the path of ``out/last.pt``.

    ``monitor`` (e.g. :class:`harness.monitor.Monitor`) is called on rank 0 after each
    epoch as ``monitor(net, epoch, epochs)``; what it returns is logged with the epoch.
    """
    rt = setup_runtime(config)
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        # the run seeds torch's global generators; the caller's are restored afterwards
        with torch.random.fork_rng(devices=[rt.device] if rt.device.type == "cuda" else []):
            return _pretrain(config, rt, monitor)
    finally:
        torch.set_num_threads(threads)
        if rt.owns_group:
            dist.destroy_process_group()


def _pretrain(config: PretrainConfig, rt: Runtime, monitor=None) -> Path:
    out = Path(config.out)
    ckpt_path = out / CHECKPOINT_NAME
    console = Console(stderr=True)

    # ---- data: labels, frames (decoded once, rank 0 first), split
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
    train_pos, val_pos = split_indices(len(usable), config.val_fraction, config.seed)
    train_idx, val_idx = usable[train_pos], usable[val_pos]
    per_rank = len(train_idx) // rt.world
    local_batch = config.batch_size // rt.world
    bounds = batch_bounds(per_rank, local_batch)
    if per_rank < 2:
        raise BadInputError(f"{dataset.root}: {len(train_idx)} training clips are too few")
    steps_per_epoch = len(bounds)
    total_steps = config.epochs * steps_per_epoch
    targets = torch.from_numpy(labels.values).to(rt.device)
    source = FrameSource(store, rt.device)

    # ---- model, optimizer, schedule
    backbone = build_backbone(config.backbone, config.backbone_params)
    mean, std = tuple(backbone.mean), tuple(backbone.std)
    net = initial_net(backbone, labels.num_outputs, config.seed).to(rt.device)
    if rt.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay,
                                  fused=config.fused_adamw or None)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                    total_steps=total_steps,
                                                    pct_start=config.pct_start)

    # ---- resume from out/last.pt when it belongs to this run
    key = run_key(config, labels, dataset, rt)
    start_epoch, history = 0, []
    if ckpt_path.is_file() and not config.restart:
        ckpt = read_checkpoint(ckpt_path, map_location="cpu", mmap=False)
        state = ckpt.get("train_state") or {}
        if state.get("run_key") != key:
            raise BadInputError(f"{ckpt_path}: a checkpoint of a different run (other labels, "
                                "data or settings); use another --out, or --restart")
        history = list(state["history"])
        if state["epoch"] >= config.epochs:
            if rt.is_main and config.progress:
                console.print(f"pretrain: {ckpt_path} is complete ({state['epoch']} epochs)")
            return ckpt_path
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"])
        if rt.is_main and config.progress:
            console.print(f"pretrain: resuming {ckpt_path} after epoch {start_epoch}")

    model: torch.nn.Module = net
    if rt.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    if config.compile:
        model = torch.compile(model)
    autocast = (torch.autocast(rt.device.type, dtype=torch.bfloat16) if rt.bf16
                else nullcontext())
    sampler = DistributedSampler(range(len(train_idx)), num_replicas=rt.world, rank=rt.rank,
                                 shuffle=True, seed=config.seed, drop_last=True)
    meta = {
        "origin": config.origin, "config": config.to_json(), "run_key": key,
        "labels": {"path": str(labels.path), "sha256": labels.sha256, "kind": labels.kind,
                   "num_outputs": labels.num_outputs, "labeler": labels.info.get("labeler"),
                   "params": labels.info.get("params")},
        "data": {"path": str(dataset.root), "fingerprint": dataset.fingerprint(),
                 "num_clips": len(dataset), "train": len(train_idx), "val": len(val_idx),
                 "excluded": len(labels.excluded)},
        "device": str(rt.device), "world_size": rt.world,
        "precision": "bf16" if rt.bf16 else "fp32", "channels_last": rt.channels_last,
        "harness_version": __version__, "torch_version": str(torch.__version__),
    }
    if rt.is_main:
        write_json(out / CONFIG_NAME, {**meta, "steps_per_epoch": steps_per_epoch})
    log_every = 1 if rt.device.type == "cpu" else 25

    # ---- train
    show = rt.is_main and config.progress and progress_enabled()
    stats = make_progress(TextColumn("{task.fields[stats]}"))
    task = stats.add_task("pretrain", total=(config.epochs - start_epoch) * steps_per_epoch,
                          stats="")
    with stats if show else nullcontext():
        for epoch in range(start_epoch, config.epochs):
            # every random stream restarts from (seed, epoch): resuming is exact
            sampler.set_epoch(epoch)
            order = train_idx[np.fromiter(iter(sampler), dtype=np.int64)]
            aug_gen = torch.Generator().manual_seed(derive_seed(config.seed, _AUGMENT, epoch))
            torch.manual_seed(derive_seed(config.seed, _DROPOUT, epoch, rt.rank))
            batches = source.batches(order, bounds)
            stats.update(task, description=f"epoch {epoch + 1}/{config.epochs}")
            model.train()
            meter = Meter(rt.device)
            started, cpu_started, waited = time.perf_counter(), time.process_time(), 0.0
            for step in range(steps_per_epoch):
                t0 = time.perf_counter()   # the host's time on input (all of it, on a CPU)
                frames, idx = next(batches)
                # draw augmentations for the whole global batch, keep this rank's rows
                params = sample_params(len(idx) * rt.world, config.augment, aug_gen)
                x = augment(frames, params.rows(slice(rt.rank, None, rt.world)),
                            config.image_size, mean, std, rt.channels_last)
                y = targets[idx]
                waited += time.perf_counter() - t0
                with autocast:
                    logits = model(x)
                loss, correct, count = loss_and_correct(logits, y, labels.kind)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                meter.add(loss, correct, count, len(idx))
                if (step + 1) % log_every == 0 or step + 1 == steps_per_epoch:
                    _check_finite(loss, rt, epoch, step, ckpt_path, history)
                    seen = (step + 1) * len(idx) * rt.world
                    rate = seen / (time.perf_counter() - started)
                    stats.update(task, completed=(epoch - start_epoch) * steps_per_epoch + step + 1,
                                 stats=f"loss {loss.item():.3f}  "
                                       f"acc {correct.item() / count:.3f}  {rate:,.0f} img/s")
            if rt.device.type == "cuda":
                torch.cuda.synchronize(rt.device)
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
            train_loss, train_acc = meter.reduce(rt.world)
            # the plain network: DDP's forward is a collective, and ranks may hold
            # different numbers of validation batches
            val_loss, val_acc = validate(net, source, val_idx, targets, labels.kind, rt,
                                         config.image_size, mean, std, 2 * local_batch,
                                         autocast)
            if not all(math.isfinite(v) for v in (train_loss, val_loss) if v is not None):
                _diverged(epoch, steps_per_epoch, ckpt_path, history)
            row = {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc,
                   "val_loss": val_loss, "val_accuracy": val_acc,
                   "lr": scheduler.get_last_lr()[0],
                   "images_per_s": round(bounds[-1][1] * rt.world / seconds, 1),
                   "epoch_seconds": round(seconds, 3),
                   # CPU time of this process (all threads): well under threads x wall
                   # time means the machine is shared and the wall-clock rate understated
                   "cpu_seconds": round(cpu_seconds, 3),
                   "data_wait_share": round(waited / seconds, 4)}
            if monitor is not None and rt.is_main:      # a downstream probe, train -> val
                row.update(monitor(net, epoch + 1, config.epochs))
            history.append(row)
            if show:
                stats.console.print(_epoch_line(row, config.epochs))
            if rt.is_main:
                last = epoch + 1 == config.epochs
                if last or (epoch + 1) % config.checkpoint_every == 0:
                    state = {"epoch": epoch + 1, "run_key": key, "history": history}
                    if not last:  # the final checkpoint carries no optimizer state
                        state.update(optimizer=optimizer.state_dict(),
                                     scheduler=scheduler.state_dict())
                    save_checkpoint(ckpt_path, backbone_name=config.backbone, backbone=backbone,
                                    net=net, output_kind=labels.kind,
                                    image_size=config.image_size, mean=mean, std=std,
                                    meta={**meta, "epoch": epoch + 1, "val_accuracy": val_acc,
                                          "train_accuracy": train_acc},
                                    train_state=state)
                write_text(out / METRICS_NAME, "".join(json.dumps(r) + "\n" for r in history))
    if rt.world > 1:
        dist.barrier()  # rank 0 has written the last checkpoint before anyone returns
    return ckpt_path


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


def _diverged(epoch: int, step: int, ckpt_path: Path, history: list[dict]) -> None:
    kept = (f"the last good checkpoint, {ckpt_path} (epoch {history[-1]['epoch']}), is kept"
            if history and ckpt_path.is_file() else "no checkpoint had been written yet")
    raise TrainingDiverged(f"loss became NaN or infinite at epoch {epoch + 1}, step {step}; "
                           f"training stopped and {kept}. Try a lower --lr.")


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    val = ("" if row["val_accuracy"] is None else
           f"  val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f}")
    return (f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_accuracy']:.3f}{val}  {row['images_per_s']:,.0f} img/s  "
            f"lr {row['lr']:.2e}" + "".join(
                f"  {k[len('monitor_'):]} {v:.2f}" for k, v in row.items()
                if k.startswith("monitor_") and k.endswith("_map")))


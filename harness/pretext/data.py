"""What one pretext run trains on: its pseudo-labels, its seeded train/validation split,
and batches of uint8 frames on the training device.

:func:`prepare_data` gathers it all into a :class:`TrainingData`: the labels file read
(:func:`read_labels`), the frames decoded once into a uint8 store
(:mod:`harness.data.framestore`, rank 0 first under DDP), the split (:func:`split_indices`,
clips of one video on one side) and this rank's batches (:func:`batch_bounds`), served by a
:class:`FrameSource`.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal

import numpy as np
import torch
import torch.distributed as dist

from harness.api.errors import BadInputError
from harness.data.clips import ClipDataset
from harness.data.framestore import FrameStore, frame_store
from harness.pretext.config import PretrainConfig
from harness.runtime.cache import hash_file
from harness.runtime.seeds import derive_seed

if TYPE_CHECKING:
    from harness.pretext.distributed import Runtime

#: a uint8 store smaller than this share of free GPU memory is kept on the GPU whole
RESIDENT_SHARE = 0.25
# independent random streams, each seeded from (seed, stream, ...)
_SPLIT, _INIT, _AUGMENT, _DROPOUT = 0, 1, 2, 3


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


def prepare_data(config: PretrainConfig, rt: Runtime) -> TrainingData:
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


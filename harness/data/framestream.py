"""Frames streamed from a memory-mapped store by worker processes into pinned memory.

A frame store that fits on the GPU is copied there whole (:class:`harness.pretext.data.FrameSource`);
past that (the paper's 55,000 clips of 256-pixel frames are 10.8 GB, AudioSet's 2 million
about 390 GB) each batch has to come from the host. One gather thread in the training
process competes with the Python thread that launches the kernels and is bounded by one
core's copy rate, so batches are instead gathered by worker processes:

* each worker opens the store memory-mapped (the operating system's page cache is shared
  by all of them; a store larger than RAM is read from disk) and gathers the rows of one
  batch, in the batch's order, into a shared-memory tensor;
* the loader's pin thread copies it into pinned (page-locked) memory, and the training
  process sends it to the GPU without blocking;
* batches arrive in order, ``prefetch`` per worker ahead, so a batch here is exactly the
  batch the resident path gathers for the same indices (tests/test_framestream.py).

The worker count comes from :func:`harness.runtime.devices.usable_cpus` (two CPUs per training
process are left to it and its pin thread), or ``$HARNESS_STREAM_WORKERS``.

Measured on a CPU (benchmarks/test_bench_stream.py): a worker delivers about 5,400
256-pixel frames per CPU-second from the page cache, about half of what a plain gather
does (9,700): the rest is page faults on each batch's fresh shared-memory block. A ring
of shared buffers registered as pinned memory and reused would remove both that and the
pin thread's copy.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.utils.data

from harness.runtime.devices import usable_cpus
from harness.api.errors import BadInputError

#: overrides :func:`stream_workers`
WORKERS_ENV = "HARNESS_STREAM_WORKERS"
#: more workers than this gain nothing: eight already copy several GB/s
MAX_WORKERS = 8
#: batches each worker prepares ahead of the one being trained on
PREFETCH = 4


def stream_workers() -> int:
    """Worker processes for streaming, per training process: ``$HARNESS_STREAM_WORKERS``,
    else this process's share of the usable CPUs (under torchrun the machine's ranks share
    them) less two (the training process and the pin thread), between 1 and
    :data:`MAX_WORKERS`."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise BadInputError(f"${WORKERS_ENV}={value!r}: expected a positive integer")
        return int(value)
    ranks_here = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, min(MAX_WORKERS, usable_cpus() // ranks_here - 2))


class _StoreBatches(torch.utils.data.Dataset):
    """Item ``i`` is batch ``i``: (uint8 frames [B, S, S, 3], int64 indices [B]).

    The store is opened in each worker on first use (a memory map does not cross a fork
    or a pickle as one), and the frames are gathered straight into shared memory, the
    form in which a worker hands a tensor to the training process.
    """

    def __init__(self, path: Path, batches: Sequence[np.ndarray]):
        self.path = Path(path)
        self.batches = [np.asarray(b, dtype=np.int64) for b in batches]
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._images is None:
            self._images = np.load(self.path, mmap_mode="r", allow_pickle=False)
        idx = torch.from_numpy(self.batches[i])
        shape = (len(idx),) + tuple(self._images.shape[1:])
        out = torch.empty(shape, dtype=torch.uint8)
        if torch.utils.data.get_worker_info() is not None:
            out.share_memory_()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            source = torch.from_numpy(self._images)
        torch.index_select(source, 0, idx, out=out)
        return out, idx


def stream_batches(path: Path, batches: Sequence[np.ndarray], *, workers: int | None = None,
                   pin: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(frames, indices) on the host for each of ``batches``, in order, gathered from the
    store at ``path`` by ``workers`` processes (0: in this process) and, with ``pin``,
    placed in pinned memory."""
    from harness.runtime.processes import die_with_parent

    workers = stream_workers() if workers is None else workers
    data = _StoreBatches(path, batches)
    if not len(data):
        return
    workers = min(workers, len(data))
    loader = torch.utils.data.DataLoader(
        data, batch_size=None, shuffle=False, num_workers=workers,
        pin_memory=pin and torch.cuda.is_available(), collate_fn=None,
        prefetch_factor=PREFETCH if workers else None, persistent_workers=False,
        worker_init_fn=functools.partial(die_with_parent, os.getpid()) if workers else None)
    yield from loader

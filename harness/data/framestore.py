"""Frames decoded once into a fixed-size uint8 array on disk, read back memory-mapped.

Training reads every frame once per epoch. Decoding PNG/JPEG files each time would make
the CPU decoder, not the network, the limit; instead the frames of a clip dataset are
decoded once, resized (shorter side to ``size``, centre crop) into a ``.npy`` array of
shape [N, size, size, 3] uint8, and cached under the dataset's fingerprint and the size.
A batch is then one gather from the memory-mapped array (the operating system keeps it in
its page cache), and all augmentation happens later, batched, on the training device.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.runtime.cache import cache_root, stage_key
from harness.data.clips import ClipDataset
from harness.runtime.devices import usable_cpus
from harness.api.errors import BadInputError
from harness.runtime.io import atomic_path
from harness.runtime.progress import track

#: bump when the way frames are resized changes, so old stores are not reused
STORE_VERSION = "framestore/1"


@dataclass
class FrameStore:
    """A read-only uint8 array [N, size, size, 3] of frames, memory-mapped from ``path``."""

    path: Path
    images: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.images.nbytes)

    def gather(self, indices: np.ndarray | torch.Tensor,
               out: torch.Tensor | None = None) -> torch.Tensor:
        """The frames at ``indices`` as a uint8 tensor [B, size, size, 3] on the CPU
        (written into ``out`` if given, e.g. a pinned buffer; torch copies in parallel,
        without holding the GIL)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return torch.index_select(self._tensor(), 0, idx, out=out)

    def _tensor(self) -> torch.Tensor:
        """The memory-mapped array seen as a tensor (read only: never written through)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(self.images)

    def to_tensor(self, device: torch.device | str, chunk_bytes: int = 1 << 28) -> torch.Tensor:
        """The whole store as one uint8 tensor on ``device`` (for stores that fit there),
        copied in chunks so that host memory never holds a second copy."""
        out = torch.empty(self.images.shape, dtype=torch.uint8, device=device)
        source = self._tensor()
        step = max(1, chunk_bytes // max(1, self.images[0].nbytes))
        for lo in range(0, len(self), step):
            out[lo:lo + step].copy_(source[lo:lo + step])
        return out


def store_path(dataset: ClipDataset, size: int) -> Path:
    """Where the store of ``dataset`` at ``size`` pixels lives in the cache."""
    key = stage_key("frames", STORE_VERSION, dataset.cache_key(), int(size))
    return cache_root() / "frames" / f"{key}.npy"


def open_store(path: Path, num_frames: int | None = None, size: int | None = None) -> FrameStore:
    """Open an existing store, checking its shape."""
    try:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path}: unreadable frame store ({exc})") from None
    expected = (num_frames, size, size, 3)
    if (images.dtype != np.uint8 or images.ndim != 4
            or any(e is not None and e != a for e, a in zip(expected, images.shape))):
        raise BadInputError(f"{path}: frame store has {images.dtype} {images.shape}, expected "
                            f"uint8 {expected}")
    return FrameStore(path=path, images=images)


def square_frame(image, size: int) -> np.ndarray:
    """A PIL image resized so its shorter side is ``size`` and centre-cropped: uint8 [S, S, 3]."""
    from PIL import Image

    w, h = image.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def build_store(dataset: ClipDataset, size: int, path: Path, *, progress: bool = True,
                threads: int | None = None) -> FrameStore:
    """Decode every frame of ``dataset`` into a new store at ``path`` (written atomically)."""
    if len(dataset) == 0:
        raise BadInputError(f"{dataset.root}: the clip dataset has no clips")
    threads = threads or min(16, usable_cpus())
    with atomic_path(path, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                        shape=(len(dataset), size, size, 3))

        def decode(i: int) -> None:   # PIL releases the GIL while decoding and resizing
            out[i] = square_frame(dataset.load_frame(i), size)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            for _ in track(pool.map(decode, range(len(dataset))), "decoding frames",
                           total=len(dataset), show=progress):
                pass
        out.flush()
        del out
    return open_store(path, len(dataset), size)


def frame_store(dataset: ClipDataset, size: int, *, progress: bool = True) -> FrameStore:
    """The cached store of ``dataset`` at ``size`` pixels, built on first use."""
    from harness.runtime.cache_lock import entry_lock

    path = store_path(dataset, size)
    with entry_lock(path):
        if path.is_file():
            return open_store(path, len(dataset), size)
        return build_store(dataset, size, path, progress=progress)

"""The clips' audio: where each clip's sound is (:class:`FileSource`, :class:`DatasetSource`)
and its windows loaded, resampled and checked in DataLoader worker processes while the
feature stage computes (:func:`load_batches`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Protocol, Sequence

import numpy as np

from harness.api.errors import BadInputError
from harness.api.interfaces import SoundRepresentation
from harness.data.audio import audio_rate, fit_window, load_audio
from harness.runtime.cache import hash_file, hash_params
from harness.runtime.devices import usable_cpus

if TYPE_CHECKING:
    from harness.labels.sound_features import FeatureOptions


class AudioSource(Protocol):
    """Clips in order: a path per clip and a content fingerprint for the cache key."""

    def __len__(self) -> int: ...

    def path(self, index: int) -> Path: ...

    def fingerprint(self) -> str: ...

    def describe(self) -> dict[str, Any]: ...


class FileSource:
    """Audio or video files given by path, in the given order."""

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self.paths = [Path(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, index: int) -> Path:
        return self.paths[index]

    def fingerprint(self) -> str:
        """Hash of every file's bytes, in order (a missing file hashes as 'missing')."""
        parts = [hash_file(p) if p.is_file() else f"missing:{p}" for p in self.paths]
        return hash_params(["files", parts])

    def describe(self) -> dict[str, Any]:
        return {"kind": "files", "paths": [str(p) for p in self.paths]}


class DatasetSource:
    """The audio windows of a clip dataset (:class:`harness.data.clips.ClipDataset`), in clip order."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset.clips)

    def path(self, index: int) -> Path:
        return Path(self.dataset.clips[index].audio)

    def fingerprint(self) -> str:
        """The dataset's cache key: its manifest and the size and mtime of every file."""
        return self.dataset.cache_key()

    def describe(self) -> dict[str, Any]:
        return {"kind": "dataset", "root": str(self.dataset.root),
                "fingerprint": self.dataset.fingerprint(),
                "clip_ids": [c.clip_id for c in self.dataset.clips]}


class WindowDataset:
    """Loads clip windows for a DataLoader: (index, waveform or None, error or None)."""

    def __init__(self, source: AudioSource, sample_rate: int, num_samples: int, window: str):
        self.source = source
        self.sample_rate = sample_rate
        self.num_samples = num_samples
        self.window = window

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | None, str | None]:
        path = self.source.path(index)
        try:
            wave = load_audio(path, self.sample_rate)
            wave = fit_window(wave, self.num_samples, source=str(path), position=self.window,
                              sample_rate=self.sample_rate, source_rate=audio_rate(path))
        except BadInputError as exc:
            return index, None, _reason(exc, path)
        return index, wave, None


def _reason(exc: BadInputError, path: Path) -> str:
    """The error message without the leading 'path: ' (the path is reported separately)."""
    text = str(exc)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def load_batches(rep: SoundRepresentation, source: AudioSource, batches: list[tuple[int, list[int]]],
                  options: FeatureOptions) -> Iterator[tuple[int, list]]:
    """Yield (shard id, loaded items) per batch, loading in worker processes when asked."""
    data = WindowDataset(source, rep.sample_rate, rep.num_samples, options.window)
    workers = _workers(options.workers, len(batches))
    if workers == 0:
        for shard_id, idx in batches:
            yield shard_id, [data[i] for i in idx]
        return
    import functools

    import torch.utils.data

    from harness.runtime.processes import die_with_parent

    loader = torch.utils.data.DataLoader(data, batch_sampler=[idx for _, idx in batches],
                                         num_workers=workers, collate_fn=list,
                                         persistent_workers=False,
                                         worker_init_fn=functools.partial(die_with_parent,
                                                                          os.getpid()))
    for (shard_id, _), items in zip(batches, loader):
        yield shard_id, items


#: audio-loading processes at most (each holds a decoder and a copy of torch's imports)
AUDIO_WORKERS_MAX = 16


def _workers(requested: int | None, n_batches: int) -> int:
    if requested is not None:
        return max(0, requested)
    if n_batches <= 1:
        return 0
    return min(AUDIO_WORKERS_MAX, max(1, usable_cpus() - 1))

"""Feature matrices: a sound representation over audio files or a clip dataset, cached.

:func:`compute_features` is the whole stage. It

1. keys the result by the audio's content (a dataset's fingerprint, or each file's hash),
   the representation's name and ``params()``, the output dtype and the window rule;
2. splits the clips into shards of ``shard_size`` in input order; under ``torchrun`` each
   rank takes every ``world_size``-th shard; shards already in the cache are skipped, so
   an interrupted run resumes where it stopped;
3. loads and resamples audio in DataLoader workers while the main process computes
   batches (on the GPU when there is one), with a progress bar;
4. writes each finished shard atomically, then assembles the matrix in input order.

A clip that cannot be used (unreadable, empty or truncated file, shorter than the window,
NaN/Inf samples, digital silence, or anything the representation rejects) is recorded
with its index, file and reason. Without ``skip_bad`` the first one stops the stage with
a one-line :class:`BadInputError` (exit code 2) and no output is written; with it the
matrix holds the good clips in order and :attr:`FeatureMatrix.indices` says which.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.api.errors import BadClipError, BadInputError, HarnessError
from harness.api.interfaces import SoundRepresentation
from harness.data.audio import LOADER_VERSION, WINDOW_POSITIONS
from harness.labels.audio_sources import AudioSource, DatasetSource, load_batches
from harness.labels.feature_matrix import DTYPES, BadClip, FeatureMatrix, Shard, ShardStore
from harness.runtime.cache import cache_root, stage_key
from harness.runtime.cache_lock import entry_lock
from harness.runtime.devices import resolve_device


# ----------------------------------------------------------------------------- options
@dataclass(frozen=True)
class FeatureOptions:
    """How to compute (none of these but ``dtype`` and ``window`` change the numbers)."""

    dtype: str = "float32"
    #: which window of a longer file to use: "center" or "start"
    window: str = "center"
    skip_bad: bool = False
    batch_size: int = 64
    #: DataLoader worker processes; None: one per spare usable CPU (at most 16), 0: inline
    workers: int | None = None
    #: "auto" (cuda when available), "cpu", "cuda", "cuda:N"
    device: str = "auto"
    shard_size: int = 1024
    #: use and fill the cache (False: compute everything, keep nothing)
    cache: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise BadInputError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.window not in WINDOW_POSITIONS:
            raise BadInputError(f"window must be one of {', '.join(WINDOW_POSITIONS)}, got {self.window!r}")
        if self.batch_size < 1 or self.shard_size < 1:
            raise BadInputError("batch size and shard size must be >= 1")


def open_dataset(root: str | os.PathLike) -> DatasetSource:
    """A :class:`DatasetSource` for the clip dataset folder ``root``."""
    from harness.data.clips import ClipDataset

    return DatasetSource(ClipDataset(root))


# ----------------------------------------------------------------------------- the stage
def compute_features(rep: SoundRepresentation, source: AudioSource,
                     options: FeatureOptions = FeatureOptions()) -> FeatureMatrix:
    """The feature matrix of every clip of ``source`` (see the module docstring)."""
    total = len(source)
    if total == 0:
        raise BadInputError("no audio to compute features of (the input is empty)")
    params = rep.params()
    key = stage_key("features", source.fingerprint(), rep.name, params, options.dtype,
                    options.window, LOADER_VERSION)
    folder = cache_root() / "features" / key
    with entry_lock(folder) if options.cache else contextlib.nullcontext():
        store = ShardStore(folder, options.shard_size) if options.cache else None
        if store is not None and store.final_ready():
            return _finish(store.load_final(), options)

        rank, world = _distributed()
        if world > 1 and store is None:
            raise HarnessError("distributed feature extraction needs the cache: ranks share shards through it")
        device = resolve_device(options.device)
        shards = [range(s, min(s + options.shard_size, total)) for s in range(0, total, options.shard_size)]
        results: dict[int, Shard] = {}
        mine = [k for k in range(len(shards)) if k % world == rank]
        _compute_shards(rep, source, shards, mine, store, results, device, options)
        if world > 1:
            _barrier()                          # every rank has written its shards
            if rank != 0:
                _barrier()                      # rank 0 has assembled the matrix
                return _finish(store.load_final(), options)
        # whatever is still missing (a rank that died, or a single process): compute it here
        rest = [k for k in range(len(shards)) if k not in results]
        _compute_shards(rep, source, shards, rest, store, results, device, options)
        parts = [results[k] if k in results else store.load(k) for k in range(len(shards))]
        matrix = FeatureMatrix(
            features=_stack([p.features for p in parts], rep.dim, DTYPES[options.dtype]),
            indices=np.concatenate([p.indices for p in parts]).astype(np.int64),
            bad=[b for p in parts for b in p.bad], num_inputs=total, repr_name=rep.name,
            params=params, dtype=options.dtype, key=key, source=source.describe())
        if store is not None:
            store.save_final(matrix)
        if world > 1:
            _barrier()
        return _finish(matrix, options)


def _finish(matrix: FeatureMatrix, options: FeatureOptions) -> FeatureMatrix:
    """Apply the bad-clip policy: stop at the first bad clip unless skipping, and always
    when no clip at all is usable (an empty matrix is not a result)."""
    if matrix.bad and not options.skip_bad:
        raise _bad_clips_error(matrix.bad)
    if matrix.bad and len(matrix.indices) == 0:
        raise BadInputError(f"all {matrix.num_inputs} clip(s) are unusable (first: "
                            f"{matrix.bad[0].line()}); no features written")
    return matrix


def _bad_clips_error(bad: list[BadClip]) -> BadInputError:
    """One line: the first bad clip's file and reason, and how many more there are."""
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return BadInputError(f"{bad[0].line()}{more}; rerun with --skip-bad to leave bad clips out")


def _compute_shards(rep: SoundRepresentation, source: AudioSource, shards: list[range],
                    todo: list[int], store: "ShardStore | None", results: dict[int, Shard],
                    device: str, options: FeatureOptions) -> None:
    """Compute the shards ``todo`` that are not cached yet, writing each as it completes."""
    todo = [k for k in todo if not (store and store.has(k))]
    if not todo:
        return
    batches = [(k, list(shards[k][i:i + options.batch_size]))
               for k in todo for i in range(0, len(shards[k]), options.batch_size)]
    n_clips = sum(len(shards[k]) for k in todo)
    pending: dict[int, list[Shard]] = {k: [] for k in todo}
    remaining = {k: len(shards[k]) for k in todo}
    dtype = DTYPES[options.dtype]
    with _ProgressBar(options.progress, f"features ({rep.name})", n_clips) as advance:
        for shard_id, items in load_batches(rep, source, batches, options):
            part = _compute_batch(rep, items, source, dtype, device)
            pending[shard_id].append(part)
            remaining[shard_id] -= len(items)
            advance(len(items))
            if remaining[shard_id] == 0:
                done = _merge(pending.pop(shard_id), rep.dim, dtype)
                results[shard_id] = done
                if store is not None:
                    store.save(shard_id, done)
                if done.bad and not options.skip_bad:    # stop early, the shard is cached
                    raise _bad_clips_error(done.bad)


def _merge(parts: list[Shard], dim: int, dtype: Any) -> Shard:
    order = np.argsort(np.concatenate([p.indices for p in parts]), kind="stable")
    feats = _stack([p.features for p in parts], dim, dtype)[order]
    idx = np.concatenate([p.indices for p in parts]).astype(np.int64)[order]
    bad = sorted((b for p in parts for b in p.bad), key=lambda b: b.index)
    return Shard(feats, idx, bad)


def _stack(blocks: list[np.ndarray], dim: int, dtype: Any) -> np.ndarray:
    blocks = [b for b in blocks if len(b)]
    return np.concatenate(blocks).astype(dtype, copy=False) if blocks else np.zeros((0, dim), dtype)


def _compute_batch(rep: SoundRepresentation, items: list[tuple[int, np.ndarray | None, str | None]],
                   source: AudioSource, dtype: Any, device: str) -> Shard:
    """Features of one loaded batch; clips the representation rejects are set aside."""
    bad: list[BadClip] = []
    good: list[tuple[int, np.ndarray]] = []
    for index, wave, error in items:
        reason = error if error is not None else rep.invalid_reason(wave)
        if reason is None:
            good.append((index, wave))
        else:
            bad.append(BadClip(index, str(source.path(index)), reason))
    feats = np.zeros((0, rep.dim), dtype)
    while good:
        try:
            feats = rep.compute(np.stack([w for _, w in good]), dtype=dtype, device=device)
            break
        except BadClipError as exc:
            if exc.index is None or not 0 <= exc.index < len(good):
                raise HarnessError(f"representation {rep.name!r} rejected a clip without saying "
                                   f"which: {exc.reason}") from exc
            index, _ = good.pop(exc.index)
            bad.append(BadClip(index, str(source.path(index)), exc.reason))
    if feats.shape != (len(good), rep.dim):
        raise HarnessError(f"representation {rep.name!r} returned shape {feats.shape}, "
                           f"expected {(len(good), rep.dim)}")
    finite = np.isfinite(feats).all(axis=1)
    for row in np.flatnonzero(~finite):  # the contract forbids it; never let it through
        bad.append(BadClip(good[row][0], str(source.path(good[row][0])),
                           "the representation returned NaN or Inf"))
    indices = np.array([i for i, _ in good], dtype=np.int64)[finite]
    return Shard(feats[finite], indices, sorted(bad, key=lambda b: b.index))


# ----------------------------------------------------------------------------- ranks
def _distributed() -> tuple[int, int]:
    """(rank, world size): from torch.distributed, or torchrun's environment (then joined)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and "MASTER_ADDR" in os.environ:
        dist.init_process_group(backend="gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


class _ProgressBar:
    """A progress bar over clips (no bar when disabled); ``advance(n)`` moves it."""

    def __init__(self, show: bool, description: str, total: int):
        from harness.runtime.progress import enabled, make_progress

        self.bar = make_progress() if enabled(show) else None
        self.description = description
        self.total = total

    def __enter__(self):
        if self.bar is None:
            return lambda n: None
        self.bar.__enter__()
        task = self.bar.add_task(self.description, total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False

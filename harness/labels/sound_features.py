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
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np

from harness.data.audio import LOADER_VERSION, WINDOW_POSITIONS, audio_rate, fit_window, load_audio
from harness.runtime.cache import cache_root, hash_file, hash_params, stage_key
from harness.runtime.cache_lock import entry_lock
from harness.runtime.devices import resolve_device, usable_cpus
from harness.api.errors import BadClipError, BadInputError, HarnessError
from harness.api.interfaces import SoundRepresentation
from harness.runtime.io import check_pair, write_array_pair

DTYPES = {"float32": np.float32, "float64": np.float64}
FORMAT = "harness-features/1"


# ----------------------------------------------------------------------------- options & results
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


@dataclass(frozen=True)
class BadClip:
    """A clip left out: its position in the input, its file, and why."""

    index: int
    source: str
    reason: str

    def line(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class FeatureMatrix:
    """The features of the good clips, in input order, and what was left out."""

    features: np.ndarray
    #: int64 [N_good]: each row's position among the input clips
    indices: np.ndarray
    bad: list[BadClip]
    num_inputs: int
    repr_name: str
    params: dict[str, Any]
    dtype: str
    key: str
    #: the cached .npy, when the cache was used
    path: Path | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        """JSON description written beside the matrix."""
        return {"format": FORMAT, "repr": self.repr_name, "params": self.params,
                "dtype": self.dtype, "shape": list(self.features.shape),
                "num_inputs": self.num_inputs, "indices": self.indices.tolist(),
                "bad": [asdict(b) for b in self.bad], "key": self.key, "source": self.source,
                "loader": LOADER_VERSION}

    def save(self, out: str | os.PathLike) -> Path:
        """Write the matrix to ``out`` (.npy) and its description beside it (.json)."""
        out = Path(out)
        meta_path = sidecar_path(out)
        write_array_pair(out, self.features, meta_path, self.meta())
        return meta_path


def read_matrix(path: str | os.PathLike) -> np.ndarray:
    """A feature matrix .npy: a real-valued [N, D] array, checked before it is allocated.

    The header is read first, so an empty file, a 1-D or structured array, or a header
    claiming more values than the file holds is a one-line BadInputError naming the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if size == 0:
                raise ValueError("the file is empty")
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _fortran, dtype = read_header(f, max_header_size=10_000)
            offset = f.tell()
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise BadInputError(f"{path}: cannot read a feature matrix "
                            f"({str(exc).splitlines()[0] or type(exc).__name__})") from None
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "fiu":
        raise BadInputError(f"{path}: a feature matrix holds numbers, not {dtype}")
    if len(shape) != 2:
        raise BadInputError(f"{path}: a feature matrix has shape [N, D], not {list(shape)}")
    needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if needed > size - offset:
        raise BadInputError(f"{path}: the header claims {shape[0]} x {shape[1]} values but the "
                            f"file holds {size - offset} bytes of data (truncated or forged)")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise BadInputError(f"{path}: cannot read a feature matrix "
                            f"({str(exc).splitlines()[0]})") from None


def sidecar_path(out: str | os.PathLike) -> Path:
    """``features.npy`` -> ``features.json``: where a matrix's description goes."""
    out = Path(out)
    return out.with_suffix(".json") if out.suffix == ".npy" else out.with_name(out.name + ".json")


# ----------------------------------------------------------------------------- audio sources
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
        store = _ShardStore(folder, options.shard_size) if options.cache else None
        if store is not None and store.final_ready():
            return _finish(store.load_final(), options)

        rank, world = _distributed()
        if world > 1 and store is None:
            raise HarnessError("distributed feature extraction needs the cache: ranks share shards through it")
        device = resolve_device(options.device)
        shards = [range(s, min(s + options.shard_size, total)) for s in range(0, total, options.shard_size)]
        results: dict[int, _Shard] = {}
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


@dataclass
class _Shard:
    features: np.ndarray
    indices: np.ndarray
    bad: list[BadClip]


def _compute_shards(rep: SoundRepresentation, source: AudioSource, shards: list[range],
                    todo: list[int], store: "_ShardStore | None", results: dict[int, _Shard],
                    device: str, options: FeatureOptions) -> None:
    """Compute the shards ``todo`` that are not cached yet, writing each as it completes."""
    todo = [k for k in todo if not (store and store.has(k))]
    if not todo:
        return
    batches = [(k, list(shards[k][i:i + options.batch_size]))
               for k in todo for i in range(0, len(shards[k]), options.batch_size)]
    n_clips = sum(len(shards[k]) for k in todo)
    pending: dict[int, list[_Shard]] = {k: [] for k in todo}
    remaining = {k: len(shards[k]) for k in todo}
    dtype = DTYPES[options.dtype]
    with _ProgressBar(options.progress, f"features ({rep.name})", n_clips) as advance:
        for shard_id, items in _load_batches(rep, source, batches, options):
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


def _merge(parts: list[_Shard], dim: int, dtype: Any) -> _Shard:
    order = np.argsort(np.concatenate([p.indices for p in parts]), kind="stable")
    feats = _stack([p.features for p in parts], dim, dtype)[order]
    idx = np.concatenate([p.indices for p in parts]).astype(np.int64)[order]
    bad = sorted((b for p in parts for b in p.bad), key=lambda b: b.index)
    return _Shard(feats, idx, bad)


def _stack(blocks: list[np.ndarray], dim: int, dtype: Any) -> np.ndarray:
    blocks = [b for b in blocks if len(b)]
    return np.concatenate(blocks).astype(dtype, copy=False) if blocks else np.zeros((0, dim), dtype)


def _compute_batch(rep: SoundRepresentation, items: list[tuple[int, np.ndarray | None, str | None]],
                   source: AudioSource, dtype: Any, device: str) -> _Shard:
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
    return _Shard(feats[finite], indices, sorted(bad, key=lambda b: b.index))


# ----------------------------------------------------------------------------- loading
class _WindowDataset:
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


def _load_batches(rep: SoundRepresentation, source: AudioSource, batches: list[tuple[int, list[int]]],
                  options: FeatureOptions) -> Iterator[tuple[int, list]]:
    """Yield (shard id, loaded items) per batch, loading in worker processes when asked."""
    data = _WindowDataset(source, rep.sample_rate, rep.num_samples, options.window)
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


# ----------------------------------------------------------------------------- cache
class _ShardStore:
    """A cache folder of finished shards plus, once complete, the assembled matrix."""

    def __init__(self, folder: Path, shard_size: int):
        self.folder = folder
        self.shard_size = shard_size

    def _shard_path(self, k: int) -> Path:
        return self.folder / f"shard-{self.shard_size}-{k:06d}.npz"

    def has(self, k: int) -> bool:
        return self._shard_path(k).is_file()

    def save(self, k: int, shard: _Shard) -> None:
        from harness.runtime.io import atomic_path, nbytes_of

        bad = json.dumps([asdict(b) for b in shard.bad])
        needed = nbytes_of([shard.features, shard.indices, bad])
        with atomic_path(self._shard_path(k), suffix=".npz", needed=needed) as tmp:
            np.savez(tmp, features=shard.features, indices=shard.indices, bad=np.array(bad))

    def load(self, k: int) -> _Shard:
        with np.load(self._shard_path(k), allow_pickle=False) as z:
            bad = [BadClip(**b) for b in json.loads(str(z["bad"]))]
            return _Shard(z["features"], z["indices"], bad)

    @property
    def final_path(self) -> Path:
        return self.folder / "features.npy"

    def final_ready(self) -> bool:
        """The assembled matrix is there, and its sidecar describes these very values."""
        if not (self.final_path.is_file() and sidecar_path(self.final_path).is_file()):
            return False
        try:
            meta = json.loads(sidecar_path(self.final_path).read_text())
            check_pair(self.final_path, sidecar_path(self.final_path), meta)
        except (OSError, ValueError, BadInputError):   # a pair broken by a crash: redo it
            return False
        return True

    def save_final(self, matrix: FeatureMatrix) -> Path:
        matrix.path = self.final_path
        matrix.save(self.final_path)
        return self.final_path

    def load_final(self) -> FeatureMatrix:
        meta = json.loads(sidecar_path(self.final_path).read_text())
        return FeatureMatrix(
            features=np.load(self.final_path, allow_pickle=False),
            indices=np.asarray(meta["indices"], dtype=np.int64),
            bad=[BadClip(**b) for b in meta["bad"]], num_inputs=meta["num_inputs"],
            repr_name=meta["repr"], params=meta["params"], dtype=meta["dtype"], key=meta["key"],
            path=self.final_path, source=meta["source"])


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

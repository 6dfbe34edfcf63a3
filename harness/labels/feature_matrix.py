"""A feature matrix as it is written: the good clips' features in input order, the clips
left out and why (:class:`FeatureMatrix`, a .npy with a JSON sidecar), and the cache
folder of finished shards it is assembled from (:class:`ShardStore`), which lets an
interrupted feature stage resume. :mod:`harness.labels.sound_features` computes them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.api.errors import BadInputError
from harness.data.audio import LOADER_VERSION
from harness.runtime.io import check_pair, sidecar_path, write_array_pair

DTYPES = {"float32": np.float32, "float64": np.float64}
FORMAT = "harness-features/1"


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


@dataclass
class Shard:
    """A part of the matrix: some clips' features, their input positions, the bad ones."""

    features: np.ndarray
    indices: np.ndarray
    bad: list[BadClip]


class ShardStore:
    """A cache folder of finished shards plus, once complete, the assembled matrix."""

    def __init__(self, folder: Path, shard_size: int):
        self.folder = folder
        self.shard_size = shard_size

    def _shard_path(self, k: int) -> Path:
        return self.folder / f"shard-{self.shard_size}-{k:06d}.npz"

    def has(self, k: int) -> bool:
        return self._shard_path(k).is_file()

    def save(self, k: int, shard: Shard) -> None:
        from harness.runtime.io import atomic_path, nbytes_of

        bad = json.dumps([asdict(b) for b in shard.bad])
        needed = nbytes_of([shard.features, shard.indices, bad])
        with atomic_path(self._shard_path(k), suffix=".npz", needed=needed) as tmp:
            np.savez(tmp, features=shard.features, indices=shard.indices, bad=np.array(bad))

    def load(self, k: int) -> Shard:
        with np.load(self._shard_path(k), allow_pickle=False) as z:
            bad = [BadClip(**b) for b in json.loads(str(z["bad"]))]
            return Shard(z["features"], z["indices"], bad)

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

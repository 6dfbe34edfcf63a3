"""Pseudo-labels on disk: ``LABELS.npy`` plus ``LABELS.json`` (what made them), and their cache.

The sidecar holds ``format``, ``kind`` ("classes" or "bits"), ``num_outputs``, the
labeler's ``name`` and ``params``, the ``features`` they came from (content key, path) and
the labeler's diagnostics. :func:`read_labels` is the one reader of the pair, for every
stage (pretext training, figures, the pipeline).
:func:`make_labels` is the labeling stage: it returns cached labels when the same features
met the same labeler with the same parameters before, and computes and stores them
otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.runtime.cache import cache_root, hash_array, stage_key
from harness.runtime.cache_lock import entry_lock
from harness.api.errors import BadInputError
from harness.api.interfaces import Labeler, Labels
from harness.runtime.io import check_pair, sidecar_path, write_array_pair

FORMAT = "harness-labels/1"


def write_labels(path: str | os.PathLike, labels: Labels, info: dict[str, Any]) -> Path:
    """Write the values and the sidecar as one pair (:func:`harness.runtime.io.write_array_pair`)."""
    path = Path(path)
    meta = {"format": FORMAT, "kind": labels.kind, "num_outputs": labels.num_outputs,
            "shape": list(labels.values.shape), "diagnostics": labels.diagnostics, **info}
    write_array_pair(path, labels.values, sidecar_path(path), meta)
    return path


#: the most outputs a labeling may declare (the largest k the kmeans labeler accepts)
MAX_OUTPUTS = 100_000


def _num_outputs(meta: dict[str, Any], sidecar: Path, default: int) -> int:
    """The sidecar's ``num_outputs``: an integer in [1, MAX_OUTPUTS]."""
    num = meta.get("num_outputs", default)
    if isinstance(num, bool) or not isinstance(num, int):
        raise BadInputError(f"{sidecar}: num_outputs must be an integer, got {num!r}")
    if not 1 <= num <= MAX_OUTPUTS:
        raise BadInputError(f"{sidecar}: num_outputs {num} must lie in [1, {MAX_OUTPUTS}]")
    return num


def read_labels(path: str | os.PathLike) -> tuple[Labels, dict[str, Any]]:
    """Labels and their sidecar (the one reader of the format, for every stage).

    The sidecar may be missing (hand-made labels): the kind is then inferred from the
    shape, ``classes`` for [N] integers and ``bits`` for [N, L] 0/1. Classes come back as
    int64 ids in [0, num_outputs), bits as uint8 0/1; ``meta["excluded"]`` (clips without
    a label) is checked to be a list of clip indices. Anything else is a BadInputError
    naming the file.
    """
    path = Path(path)
    meta_path = sidecar_path(path)
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path}: cannot read labels ({str(exc).splitlines()[0]})") from None
    meta: dict[str, Any] = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadInputError(f"{meta_path}: malformed JSON ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format", FORMAT) != FORMAT:
            raise BadInputError(f"{meta_path}: not a {FORMAT} sidecar")
        check_pair(path, meta_path, meta)
    kind = meta.get("kind", "classes" if values.ndim == 1 else "bits")
    if kind == "classes":
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise BadInputError(f"{path}: class labels must be integers of shape [N], got "
                                f"{values.dtype} {values.shape}")
        num = _num_outputs(meta, meta_path, int(values.max()) + 1 if values.size else 0)
        if values.size and (values.min() < 0 or values.max() >= num):
            raise BadInputError(f"{path}: class ids must lie in [0, {num}), found "
                                f"{values.min()}..{values.max()}")
        if num < 2:
            raise BadInputError(f"{path}: need at least 2 classes, found {num}")
        values = values.astype(np.int64)
    elif kind == "bits":
        if values.ndim != 2 or not np.isin(values, (0, 1)).all():
            raise BadInputError(f"{path}: bit labels must be 0/1 of shape [N, L], got "
                                f"{values.dtype} {values.shape}")
        num = _num_outputs(meta, meta_path, values.shape[1])
        if num != values.shape[1]:
            raise BadInputError(f"{path}: {values.shape[1]} bits, but {meta_path.name} says {num}")
        values = values.astype(np.uint8)
    else:
        raise BadInputError(f"{meta_path}: kind must be 'classes' or 'bits', got {kind!r}")
    try:
        excluded = np.unique(np.asarray(meta.get("excluded", []), dtype=np.int64))
    except (TypeError, ValueError):
        raise BadInputError(f"{meta_path}: 'excluded' must be a list of clip indices") from None
    if excluded.size and (excluded[0] < 0 or excluded[-1] >= len(values)):
        raise BadInputError(f"{meta_path}: 'excluded' names clip {int(excluded[-1])} of "
                            f"{len(values)}")
    meta = {**meta, "excluded": excluded.tolist()} if "excluded" in meta else meta
    labels = Labels(values=values, kind=kind, num_outputs=num,
                    diagnostics=meta.get("diagnostics", {}))
    return labels, meta


def labels_ready(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a whole pair of labels and sidecar (else write it anew)."""
    try:
        read_labels(path)
    except BadInputError:
        return False
    return True


@dataclass(frozen=True)
class LabelsResult:
    """The labels, what made them (the sidecar's fields), where they are cached, and
    whether they came from the cache."""

    labels: Labels
    info: dict[str, Any]
    path: Path | None
    cached: bool


def labels_key(features_key: str, labeler: Labeler) -> str:
    """Cache key of a labeling: the features' content key, labeler name and parameters."""
    return stage_key("labels", features_key, labeler.name, labeler.params())


def make_labels(features: np.ndarray, labeler: Labeler, *, features_key: str | None = None,
                features_info: dict[str, Any] | None = None, cache: bool = True) -> LabelsResult:
    """Run ``labeler`` on ``features`` unless the cache has the result; store it there.

    ``features_key`` identifies the features' content (a features-stage key or a hash);
    it defaults to a hash of the array. Bad features raise BadInputError before anything
    is written.
    """
    features_key = features_key or hash_array(features)
    key = labels_key(features_key, labeler)
    path = cache_root() / "labels" / key / "labels.npy"
    with entry_lock(path.parent) if cache else contextlib.nullcontext():
        if cache and sidecar_path(path).is_file():
            try:
                labels, meta = read_labels(path)
            except BadInputError:   # a pair broken by a crash: compute it again
                pass
            else:
                info = {k: v for k, v in meta.items() if k not in _VALUE_FIELDS}
                return LabelsResult(labels, info, path, cached=True)
        labels = labeler.fit_predict(features)
        info = {"labeler": labeler.name, "params": labeler.params(), "key": key,
                "features": {"key": features_key, **(features_info or {})}}
        if cache:
            write_labels(path, labels, info)
        return LabelsResult(labels, info, path if cache else None, cached=False)


#: sidecar fields that describe the values rather than how they were made
_VALUE_FIELDS = ("format", "kind", "num_outputs", "shape", "diagnostics", "values_sha256")


def size_param(labeler_cls: type[Labeler], name: str) -> str:
    """The constructor parameter ``--k`` sets for a labeler (its declared ``size_param``).

    A labeler without one refuses ``--k`` with a line naming how its own parameters are
    given.
    """
    param = getattr(labeler_cls, "size_param", None)
    if not param:
        raise BadInputError(f"--k: labeler {name!r} declares no size parameter; set its "
                            f"parameters with --labeler-param NAME=VALUE")
    return param

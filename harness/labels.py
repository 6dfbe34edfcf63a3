"""Pseudo-labels on disk: ``LABELS.npy`` plus ``LABELS.json`` (what made them), and their cache.

The sidecar holds ``format``, ``kind`` ("classes" or "bits"), ``num_outputs``, the
labeler's ``name`` and ``params``, the ``features`` they came from (content key, path) and
the labeler's diagnostics; :func:`harness.pretrain.read_labels` reads the same pair.
:func:`make_labels` is the labeling stage: it returns cached labels when the same features
met the same labeler with the same parameters before, and computes and stores them
otherwise.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.cache import cache_root, hash_array, stage_key
from harness.errors import BadInputError
from harness.interfaces import Labeler, Labels
from harness.io import check_pair, write_array_pair

FORMAT = "harness-labels/1"


def sidecar_path(path: str | os.PathLike) -> Path:
    """``labels.npy`` -> ``labels.json``."""
    path = Path(path)
    return path.with_suffix(".json") if path.suffix == ".npy" else path.with_name(path.name + ".json")


def write_labels(path: str | os.PathLike, labels: Labels, info: dict[str, Any]) -> Path:
    """Write the values and the sidecar as one pair (:func:`harness.io.write_array_pair`)."""
    path = Path(path)
    meta = {"format": FORMAT, "kind": labels.kind, "num_outputs": labels.num_outputs,
            "shape": list(labels.values.shape), "diagnostics": labels.diagnostics, **info}
    write_array_pair(path, labels.values, sidecar_path(path), meta)
    return path


def read_labels(path: str | os.PathLike) -> tuple[Labels, dict[str, Any]]:
    """Labels and their sidecar, as :func:`write_labels` left them."""
    path = Path(path)
    meta_path = sidecar_path(path)
    try:
        values = np.load(path, allow_pickle=False)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path}: cannot read labels ({str(exc).splitlines()[0]})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BadInputError(f"{meta_path}: not a {FORMAT} sidecar")
    check_pair(path, meta_path, meta)
    labels = Labels(values=values, kind=meta["kind"], num_outputs=int(meta["num_outputs"]),
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

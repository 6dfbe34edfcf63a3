"""The features and labels stage: every clip's sound features, clustered (or coded) into
pseudo-labels by the run's labeler; or, for the supervised row, the toy world's true
objects.

Clips whose audio cannot be read are skipped, counted and listed in the record; the
labels keep one row per clip, those rows marked excluded.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from harness.api.errors import BadInputError
from harness.api.interfaces import Labels
from harness.pipeline.config import RunConfig
from harness.runtime.cache import cache_root, stage_key


def sound_labels(config: RunConfig, dataset, device: str) -> tuple[Path, dict[str, Any], Any, Any]:
    """Features of every clip, then pseudo-labels; returns (labels path, info, repr, labeler)."""
    from harness.labels.audio_sources import DatasetSource
    from harness.labels.sound_features import FeatureOptions, compute_features
    from harness.labels.pseudo_labels import make_labels
    from harness.api.registry import default_registry

    registry = default_registry()
    rep = registry.create("repr", config.repr, **config.repr_params)
    matrix = compute_features(rep, DatasetSource(dataset),
                              FeatureOptions(device=device, skip_bad=True, progress=config.progress))
    if len(matrix.indices) < 2:
        raise BadInputError(f"{dataset.root}: {len(matrix.bad)} of {len(dataset)} clips have "
                            f"unusable audio (first: {matrix.bad[0].line()}); nothing to cluster")
    labeler = make_labeler(config, registry)
    result = make_labels(matrix.features, labeler, features_key=matrix.key,
                         features_info={"repr": rep.name, "params": rep.params()})
    diagnostics = dict(result.labels.diagnostics)
    truth = clip_truth(dataset, matrix.indices)
    if truth:       # the record's copy only: the cached labels are left as they were
        from harness.labels.diagnostics import score_against_truth

        diagnostics["truth"] = score_against_truth(result.labels.values, result.labels.kind,
                                                   truth)
    info = {**result.info, "diagnostics": diagnostics}
    if not matrix.bad:
        return result.path, info, rep, labeler
    path, info = _with_excluded_clips(result, matrix, len(dataset), info)
    return path, info, rep, labeler


#: the clips' ground-truth columns the labels are scored against, where a dataset has them
#: (the toy world's clips do: what each clip shows and what it sounds like)
TRUTH_COLUMNS = ("objects", "sounding", "scene")


def clip_truth(dataset, rows) -> dict[str, list[str]]:
    """The ground-truth columns (:data:`TRUTH_COLUMNS`) of the clips behind the feature
    ``rows``; empty when the dataset's clips carry none (real clips)."""
    clips = getattr(dataset, "clips", None) or []
    present = [c for c in TRUTH_COLUMNS if clips and c in (clips[0].extra or {})]
    return {c: [str(clips[int(i)].extra.get(c, "")) for i in rows] for c in present}


def make_labeler(config: RunConfig, registry):
    """The labeler of a sound run: its ``--labeler-param``s, ``--k`` as its size parameter,
    the run's seed unless given. A refusal of the size (its Bounds) names ``--k``."""
    from harness.labels.pseudo_labels import size_param

    params = dict(config.labeler_params)
    labeler_cls = registry.get("labeler", config.labeler).cls
    size = size_param(labeler_cls, config.labeler) if config.k is not None else None
    if size is not None:
        params[size] = config.k
    if "seed" in inspect.signature(labeler_cls.__init__).parameters:
        params.setdefault("seed", config.seed)
    try:
        return registry.create("labeler", config.labeler, **params)
    except BadInputError as exc:
        if size is None or f"parameter {size} " not in str(exc):
            raise
        raise BadInputError(f"--k {config.k}: {exc}") from None


def labeler_size_of(labeler) -> tuple[str, int] | None:
    """(parameter, value) of a labeler plugin's size, as its record will show it
    (:func:`harness.results.naming.labeler_size`); None without a labeler or a declared
    ``size_param``."""
    from harness.results.naming import labeler_size
    from harness.results.records import plugin_entry

    param = getattr(labeler, "size_param", None) if labeler is not None else None
    return labeler_size(plugin_entry(labeler), param) if param else None


def _with_excluded_clips(result, matrix, n_clips: int,
                         info: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Labels for every clip of the dataset, the clips without usable audio marked excluded.

    Pretext training needs one row per clip; an excluded clip's row is a placeholder that
    training never reads (its index is in the sidecar's ``excluded``).
    """
    from harness.labels.pseudo_labels import labels_ready, write_labels

    labels = result.labels
    values = np.zeros((n_clips, *labels.values.shape[1:]), dtype=labels.values.dtype)
    values[matrix.indices] = labels.values
    excluded = sorted(b.index for b in matrix.bad)
    info = {**info, "excluded": excluded,
            "excluded_reasons": [{"index": b.index, "file": str(b.source), "reason": b.reason}
                                 for b in matrix.bad]}
    path = (cache_root() / "labels" / stage_key("labels-all-clips", info["key"], excluded)
            / "labels.npy")
    if not labels_ready(path):
        write_labels(path, Labels(values, labels.kind, labels.num_outputs, labels.diagnostics),
                     {k: v for k, v in info.items() if k != "diagnostics"})
    return path, info


def true_object_labels(dataset) -> tuple[Path, dict[str, Any]]:
    """The toy world's true objects as 20 bits per clip: the supervised row's labels
    (an in-domain reference, not a bound)."""
    from harness.labels.pseudo_labels import labels_ready, write_labels
    from harness.data.voc import CLASS_INDEX, CLASSES

    if "objects" not in dataset.clips[0].extra:
        raise BadInputError(f"{dataset.root}: --init supervised needs true object labels "
                            "(the manifest's `objects` column, as the toy world writes)")
    bits = np.zeros((len(dataset), len(CLASSES)), dtype=np.uint8)
    for i, clip in enumerate(dataset.clips):
        for name in filter(None, clip.extra["objects"].split(";")):
            bits[i, CLASS_INDEX[name]] = 1
    info = {"labeler": "true-objects", "params": {"column": "objects"},
            "dataset": dataset.fingerprint()}
    path = cache_root() / "labels" / stage_key("true-objects", dataset.fingerprint()) / "labels.npy"
    if not labels_ready(path):
        write_labels(path, Labels(bits, "bits", len(CLASSES),
                                  {"positives_per_class": bits.sum(0).tolist()}), info)
    return path, info

"""``harness label``: pseudo-labels from a feature matrix, with a diagnosis of the clustering.

    harness label --labeler kmeans --k 15 --out labels.npy feats.npy
    harness label --labeler kmeans --k 30 --data clips/ --repr mfcc --out labels.npy
    harness label --labeler pca_binary --k 30 --out bits.npy feats.npy --truth truth.csv

Writes ``labels.npy`` (int64 [N] cluster ids, or uint8 0/1 [N, L] bits) and ``labels.json``
beside it (labeler, parameters, features, diagnostics). Results are cached under a key of
the features' content and the parameters, so a rerun is instant. Prints the cluster-size
histogram (warning about empty and dominating clusters), the inertia, and NMI / purity
against ground truth when there is some: a ``--truth`` CSV (one row per feature row, one
column per labelling; ``clip_id`` is ignored) or the ``scene`` / ``objects`` columns of a
clip dataset's manifest (``--data``; also ``sounding`` and ``loudest`` when present).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, List, Optional

import numpy as np
import typer

from harness.api.errors import BadInputError
from harness.profiles import DEFAULT_LABELER, DEFAULT_REPR

#: manifest columns of a clip dataset that hold ground truth (the toy world writes them)
TRUTH_COLUMNS = ("scene", "objects", "sounding", "loudest")


def label(
    features: Optional[Path] = typer.Argument(None, help="Feature matrix .npy [N, D] (from "
                                              "`harness features`)."),
    labeler_name: str = typer.Option(DEFAULT_LABELER, "--labeler", "-l", help="Labeler (see "
                                     "`harness plugins --kind labeler`)."),
    k: Optional[int] = typer.Option(None, "--k", help="The labeler's size parameter: clusters "
                                    "(kmeans k) or bits (pca_binary); default: the labeler's."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Random seed (default: the labeler's)."),
    param: List[str] = typer.Option([], "--labeler-param", "-p", help="Labeler parameter NAME=VALUE "
                                    "(repeatable), e.g. -p preprocess=l2 -p backend=faiss."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the labels here (.npy; "
                                       "a .json sidecar goes beside it)."),
    data: Optional[Path] = typer.Option(None, "--data", help="A clip dataset: its features "
                                        "(computed or cached with --repr) and ground truth."),
    repr_name: str = typer.Option(DEFAULT_REPR, "--repr", "-r", help="Sound representation for --data "
                                  "without a FEATURES file."),
    repr_param: List[str] = typer.Option([], "--repr-param", help="Representation parameter "
                                         "NAME=VALUE for --data (repeatable)."),
    truth: Optional[Path] = typer.Option(None, "--truth", help="Ground-truth CSV, one row per "
                                         "feature row."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Use the label cache."),
) -> None:
    """Cluster sound features into pseudo-labels and diagnose the clustering."""
    from harness.cli.params import parse_params
    from harness.labels.pseudo_labels import make_labels, size_param, write_labels
    from harness.api.registry import default_registry
    from harness.labels.diagnostics import format_report, score_against_truth

    if features is None and data is None:
        raise BadInputError("give a FEATURES.npy file or --data DATASET")
    if truth is not None and data is not None:
        raise BadInputError("give ground truth by --truth or by --data, not both")
    if out is not None:
        from harness.runtime.io import check_output_path

        check_output_path(out)
    registry = default_registry()
    entry = registry.get("labeler", labeler_name)
    params = parse_params(param)
    if k is not None:
        params[size_param(entry.cls, labeler_name)] = k
    if seed is not None:
        params["seed"] = seed
    labeler = registry.create("labeler", labeler_name, **params)

    x, key, source, rows = _load_features(features, data, repr_name, parse_params(repr_param))
    truth_columns = (_read_truth_csv(truth, len(x)) if truth is not None
                     else _dataset_truth(data, rows, len(x)) if data is not None else {})
    typer.echo(f"{labeler.name} {json.dumps(labeler.params())} on {x.shape[0]} x {x.shape[1]} "
               f"features of {source}", err=True)
    try:
        result = make_labels(x, labeler, features_key=key, features_info={"source": source},
                             cache=cache)
    except BadInputError as exc:
        raise BadInputError(f"{source}: {exc}") from None
    labels = result.labels
    if truth_columns:
        labels.diagnostics["truth"] = score_against_truth(labels.values, labels.kind, truth_columns)
    if out is not None:
        write_labels(out, labels, result.info)
    typer.echo(format_report(labels.kind, labels.diagnostics))
    where = out or result.path
    shape = "x".join(str(s) for s in labels.values.shape)
    saved = f"-> {where}" if where else "(not saved: give --out)"
    typer.echo(f"{labels.kind} [{shape}] {saved}" + (" (from the cache)" if result.cached else ""))


def _load_features(path: Path | None, data: Path | None, repr_name: str,
                   repr_params: dict[str, Any]) -> tuple[np.ndarray, str | None, str, np.ndarray | None]:
    """The matrix, its content key (None: hash it), a description, and its clip rows.

    ``rows`` maps feature rows to positions among the dataset's clips (features left out
    bad clips), when known: from the features' sidecar, or from the features stage.
    """
    if path is not None:
        return _read_npy(path), None, str(path), _sidecar_rows(path)
    from harness.labels.sound_features import FeatureOptions, compute_features, open_dataset
    from harness.api.registry import default_registry

    rep = default_registry().create("repr", repr_name, **repr_params)
    # no skipping: one label per clip, so the labels line up with the dataset in pretraining
    matrix = compute_features(rep, open_dataset(data), FeatureOptions())
    return matrix.features, matrix.key, f"{data} ({rep.name})", matrix.indices


def _read_npy(path: Path) -> np.ndarray:
    from harness.labels.feature_matrix import read_matrix

    return read_matrix(path)


def _sidecar_rows(path: Path) -> np.ndarray | None:
    """Row -> clip positions recorded by ``harness features`` beside the matrix, if any."""
    from harness.labels.feature_matrix import sidecar_path

    meta_path = sidecar_path(path)
    if not meta_path.is_file():
        return None
    from harness.runtime.io import check_pair

    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        indices = meta.get("indices")
    except (OSError, ValueError, AttributeError):
        return None
    check_pair(path, meta_path, meta)      # rows of other values would misalign the truth
    return None if indices is None else np.asarray(indices, dtype=np.int64)


def _read_truth_csv(path: Path, n: int) -> dict[str, list[str]]:
    """Columns of a ground-truth CSV (``clip_id`` ignored), which must have ``n`` rows."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInputError(f"{path}: cannot read ground truth ({exc})") from None
    columns = [c for c in (rows[0].keys() if rows else []) if c and c != "clip_id"]
    if not columns:
        raise BadInputError(f"{path}: no ground-truth columns (need a header and rows)")
    if len(rows) != n:
        raise BadInputError(f"{path}: {len(rows)} rows of ground truth for {n} feature rows")
    return {c: [r[c] or "" for r in rows] for c in columns}


def _dataset_truth(root: Path, rows: np.ndarray | None, n: int) -> dict[str, list[str]]:
    """``scene`` / ``objects`` of the clips behind the feature rows (empty if none)."""
    from harness.data.clips import ClipDataset

    clips = ClipDataset(root).clips
    rows = np.arange(len(clips)) if rows is None else rows
    if len(rows) != n or (len(rows) and rows.max() >= len(clips)):
        raise BadInputError(f"{root}: {len(clips)} clips do not match the {n} feature rows "
                            f"(write the features with `harness features --data` to align them)")
    present = [c for c in TRUTH_COLUMNS if clips and c in clips[0].extra]
    return {c: [clips[i].extra.get(c, "") for i in rows] for c in present}

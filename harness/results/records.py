"""Result records: one JSON file per run, the source of truth for every leaderboard.

A record holds what was run (the full resolved configuration, every plugin's ``params()``),
on what (the clip dataset and the list of clips it held, the downstream dataset), with
which code and machine, how long each stage took, and what it measured. This module
builds one (:func:`build_record`); the rest of the package does the other jobs:

- :mod:`harness.results.schema`: the JSON schema ``record_schema.json`` and its checks
  (a record is validated when built, written and read), :data:`~harness.results.schema.INITS`;
- :mod:`harness.results.store`: writing (atomically, never over an existing file, with a
  digest of the content) and reading (digest and test-score sidecar checked);
- :mod:`harness.results.naming`: run ids, run labels and the labeler's size;
- :mod:`harness.results.environment`: the code, packages, machine and device;
- :mod:`harness.results.metrics`: every evaluator's metrics in one shape, whatever the
  record's schema;
- :mod:`harness.results.scores`, :mod:`~harness.results.verify`,
  :mod:`~harness.results.protocol`, :mod:`~harness.results.archive`: the per-image test
  scores, the re-computation of every figure, the frozen protocol, the archive.

The names a user of records needs are importable from here as well (``from
harness.results import records``; ``records.write_record``, ``records.read_records``...).

Typical use (what ``harness run`` does)::

    timer = StageTimer()
    with timer.stage("features"):
        ...
    record = build_record(config=..., dataset=dataset_identity(ds, "toy"), downstream=...,
                          timings=timer.seconds, labels=labels.diagnostics, pretext=...,
                          metrics={"voc07_linear": metrics_dict(head), "voc07_full": ...})
    path = write_record(record, results_dir)

Each metrics entry is an evaluator's :class:`harness.api.interfaces.EvalMetrics` as a dict
(``headline``, ``formula``, ``value``, ``breakdown``, ``protocol``, ``details``). Records of
the older schema ``harness-record/1`` (VOC07-shaped metrics: ``map``, ``ap``, ``preset``)
still validate and are read through :func:`metrics_entries`, which presents both in the
new shape.
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from harness.results.environment import code_info, environment_info
from harness.results.metrics import legacy_headline_ap, metrics_entries
from harness.results.naming import labeler_size, new_run_id, run_label, utc_now
from harness.results.schema import (INITS, LEGACY_SCHEMA_ID, SCHEMA_ID, check_finite,
                                    record_problem, record_schema, to_jsonable,
                                    validate_record)
from harness.results.store import (DIGEST_FIELD, check_results_dir, digest_problem,
                                   read_record, read_record_files, read_records,
                                   read_test_scores, record_digest, record_paths, scores_path,
                                   write_record)

if TYPE_CHECKING:
    from harness.evaluation.ap import SplitScores
    from harness.api.interfaces import Plugin

#: the record API in one place: built here, or defined in the modules named above
__all__ = [
    "DIGEST_FIELD", "INITS", "LEGACY_SCHEMA_ID", "SCHEMA_ID", "StageTimer", "build_record",
    "check_results_dir", "code_info", "dataset_identity", "digest_problem",
    "environment_info", "labeler_size", "legacy_headline_ap", "make_config",
    "metrics_entries", "new_run_id", "plugin_entry", "read_record", "read_record_files",
    "read_records", "read_test_scores", "record_digest", "record_paths", "record_problem",
    "record_schema", "run_label", "scores_path", "to_jsonable", "utc_now", "validate_record",
    "write_record",
]


def plugin_entry(plugin: "Plugin") -> dict[str, Any]:
    """``{"name", "params"}`` of a plugin instance, as a record's config stores it."""
    return {"name": plugin.name, "params": to_jsonable(plugin.params())}


def make_config(*, init: str, backbone: "Plugin", evaluators: "list[Plugin]",
                profile: str, seed: int, device: str, repr: "Plugin | None" = None,
                labeler: "Plugin | None" = None,
                pretrain: Mapping[str, Any] | None = None,
                **extra: Any) -> dict[str, Any]:
    """The ``config`` section from plugin instances (None for a baseline's repr/labeler).

    ``pretrain`` holds the pretext-training parameters (epochs, batch size, lr, image
    size...); ``extra`` keys (e.g. ``world_seed``) are recorded as given.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, not {init!r}")
    return {"init": init, "repr": plugin_entry(repr) if repr is not None else None,
            "labeler": plugin_entry(labeler) if labeler is not None else None,
            "backbone": plugin_entry(backbone),
            "pretrain": to_jsonable(dict(pretrain)) if pretrain is not None else None,
            "evaluators": {e.name: plugin_entry(e) for e in evaluators},
            "profile": profile, "seed": int(seed), "device": device, **to_jsonable(extra)}


def dataset_identity(dataset: Any, kind: str, path: str | os.PathLike | None = None
                     ) -> dict[str, Any]:
    """The ``dataset`` section for a :class:`harness.data.clips.ClipDataset`.

    ``kind`` is ``"toy"`` (generated by the toy world) or ``"clips"`` (ingested videos).
    """
    if kind not in ("toy", "clips"):
        raise ValueError(f"dataset kind must be 'toy' or 'clips', not {kind!r}")
    clip_ids = [str(c.clip_id) for c in dataset.clips]
    root = path if path is not None else getattr(dataset, "root", None)
    return {"kind": kind, "fingerprint": dataset.fingerprint(), "n_clips": len(clip_ids),
            "clip_ids": clip_ids, "path": None if root is None else str(root)}


class StageTimer:
    """Wall-clock seconds per named stage: ``with timer.stage("pretrain"): ...``.

    With ``echo``, each stage that completes says so in one line with its time and the
    clock (``pretrain: 270.4 s (at 21:56:02)``), so a run's log shows where it is even with
    progress bars off or output going to a file.
    """

    #: called with a stage's name as it starts (a launched job reports its stage so)
    on_start: list[Callable[[str], None]] = []

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.echo = echo

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        for hook in StageTimer.on_start:
            hook(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - start
            self.seconds[name] = self.seconds.get(name, 0.0) + took
        if self.echo is not None:
            self.echo(f"{name}: {took:.1f} s (at {datetime.now():%H:%M:%S})")


def build_record(*, config: Mapping[str, Any], downstream: Mapping[str, Any],
                 metrics: Mapping[str, Mapping[str, Any]],
                 dataset: Mapping[str, Any] | None = None,
                 timings: Mapping[str, float] | None = None,
                 labels: Mapping[str, Any] | None = None,
                 pretext: Mapping[str, Any] | None = None,
                 environment: Mapping[str, Any] | None = None,
                 code: Mapping[str, Any] | None = None,
                 created: str | None = None, run_id: str | None = None,
                 test_scores: "Mapping[str, SplitScores] | None" = None) -> dict[str, Any]:
    """Assemble and validate a record; everything not given is measured now.

    ``config`` holds ``init`` ("sound" | "random" | "supervised"), ``repr`` and ``labeler``
    (``plugin_entry(...)`` or None), ``backbone``, ``pretrain`` (dict or None),
    ``evaluators`` ({name: plugin_entry}), ``profile``, ``seed``, ``device``.
    ``metrics`` maps each evaluator's name to its EvalMetrics as a dict
    (:func:`harness.evaluation.stage.metrics_dict`); ``test_scores`` maps evaluators to their
    per-image test scores, which :func:`write_record` (given the same scores) writes beside
    the record: the record names that file and its sha256.
    Raises BadInputError if the result does not follow the schema.
    """
    created = created or utc_now()
    config = to_jsonable(config)
    record = {
        "schema": SCHEMA_ID,
        "run_id": run_id or new_run_id(config, created),
        "created": created,
        "config": config,
        "code": to_jsonable(code) if code is not None else code_info(),
        "environment": (to_jsonable(environment) if environment is not None
                        else environment_info(str(config.get("device", "cpu")))),
        "dataset": to_jsonable(dataset),
        "downstream": to_jsonable(downstream),
        "timings": to_jsonable(dict(timings or {})),
        "labels": to_jsonable(labels),
        "pretext": to_jsonable(pretext),
        "metrics": to_jsonable(metrics),
    }
    if test_scores:
        from harness.results.scores import npz_bytes, sha256_bytes, sidecar_name

        record["test_scores"] = {"file": sidecar_name(record["run_id"]),
                                 "sha256": sha256_bytes(npz_bytes(test_scores)),
                                 "evaluators": sorted(test_scores)}
    check_finite(record)
    validate_record(record, source=f"run {record['run_id']}")
    return record

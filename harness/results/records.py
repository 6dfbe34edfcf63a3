"""Result records: one JSON file per run, the source of truth for every leaderboard.

A record holds what was run (the full resolved configuration, every plugin's ``params()``),
on what (the clip dataset and the list of clips it held, the downstream dataset), with
which code and machine, how long each stage took, and what it measured. Its shape is the
JSON schema ``harness/results/record_schema.json``; a record is validated when written and when
read, so a leaderboard is never built from a malformed file.

A record is written once: atomically (a reader never sees half a file) and never over an
existing one. ``harness run`` writes it only after every stage has succeeded. Beside it,
``<run_id>.scores.npz`` (:mod:`harness.results.scores`) holds the evaluators' per-image test
scores; the record's ``test_scores`` section names that file and its sha256, checked
whenever the record is read. The record's ``digest`` field is the sha256 of the rest of
its content (:func:`record_digest`), also checked whenever it is read, so a record edited
after it was written is refused; records written before the digest existed have none,
and the leaderboard checks every record's figures against its evidence
(:mod:`harness.results.verify`) with or without one.

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
import functools
import hashlib
import importlib.metadata as md
import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from harness.api.errors import BadInputError, HarnessError

if TYPE_CHECKING:
    from harness.evaluation.ap import SplitScores
    from harness.api.interfaces import Plugin

#: the value of the ``schema`` field of every record written now
SCHEMA_ID = "harness-record/2"
#: records written before the EvalMetrics contract (still read: :func:`metrics_entries`)
LEGACY_SCHEMA_ID = "harness-record/1"

#: packages whose versions a record keeps (missing ones are recorded as null)
TRACKED_PACKAGES = (
    "harness", "torch", "torchvision", "timm", "numpy", "scipy", "scikit-learn", "librosa",
    "soundfile", "av", "pillow", "faiss-cpu", "pluggy", "matplotlib", "jsonschema",
)

#: "imported": another framework's weights (harness.networks.foreign); config["imported"] says whose
INITS = ("sound", "random", "supervised", "imported")

#: the record field that holds the sha256 of the rest of the record (see :func:`record_digest`)
DIGEST_FIELD = "digest"


# --------------------------------------------------------------------------- schema
@functools.lru_cache(maxsize=1)
def record_schema() -> dict[str, Any]:
    """The JSON schema of a record (package data ``harness/results/record_schema.json``)."""
    text = resources.files("harness.results").joinpath("record_schema.json").read_text("utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator

    schema = record_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def record_problem(record: Any) -> str | None:
    """Why ``record`` is not a valid record (one line), or None if it is."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(record))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        message = " ".join(error.message.split())
        if len(message) > 200:
            message = message[:197] + "..."
        return f"at {where}: {message}"
    return _semantic_problem(record)


def _semantic_problem(record: Mapping[str, Any]) -> str | None:
    """Checks a JSON schema cannot express."""
    try:
        created = datetime.fromisoformat(record["created"].replace("Z", "+00:00"))
    except ValueError:
        return f"at created: {record['created']!r} is not a valid ISO 8601 time"
    if created.tzinfo is None:
        return "at created: the time has no UTC offset"
    dataset = record["dataset"]
    if dataset is not None and len(dataset["clip_ids"]) != dataset["n_clips"]:
        return (f"at dataset: n_clips is {dataset['n_clips']} but clip_ids lists "
                f"{len(dataset['clip_ids'])} clips")
    return None


def validate_record(record: Any, source: str | os.PathLike = "record") -> None:
    """Raise BadInputError naming ``source`` if ``record`` does not follow the schema."""
    problem = record_problem(record)
    if problem is not None:
        raise BadInputError(f"{source}: not a valid result record ({SCHEMA_ID}): {problem}")


# --------------------------------------------------------------------------- building
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


def to_jsonable(obj: Any) -> Any:
    """Plain JSON values from numpy scalars/arrays, paths, tuples and nested mappings."""
    import numpy as np

    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def utc_now() -> str:
    """The current time as ISO 8601 with microseconds and a UTC offset."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def new_run_id(config: Mapping[str, Any], created: str) -> str:
    """A readable, unique run id: time, what was run, seed, and a hash of it all.

    e.g. ``20250101T120000-sound-mfcc-k15-alexnet-s0-1a2b3c4d``, or
    ``...-sound-mfcc-pca_binary-bits15-alexnet-s0-...`` for a labeler other than k-means.
    The hash covers the configuration, the creation time and 8 random bytes, so two runs
    never share an id.
    """
    stamp = datetime.fromisoformat(created.replace("Z", "+00:00")).strftime("%Y%m%dT%H%M%S")
    parts = [stamp, str(config.get("init", "run"))]
    if config.get("repr"):
        parts.append(str(config["repr"]["name"]))
    labeler = config.get("labeler")
    if labeler and labeler.get("name", "kmeans") != "kmeans":
        parts.append(str(labeler["name"]))
    size = labeler_size(labeler)
    if size is not None:
        parts.append(f"{'bits' if 'bits' in size[0] else 'k'}{size[1]}")
    if config.get("backbone"):
        parts.append(str(config["backbone"]["name"]))
    parts.append(f"s{config.get('seed', 0)}")
    digest = hashlib.sha256(
        json.dumps([to_jsonable(config), created, os.urandom(8).hex()], sort_keys=True,
                   default=str).encode()).hexdigest()[:8]
    safe = "-".join(parts).replace(":", "_").replace("/", "_")
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in safe)
    return f"{safe[:150]}-{digest}"


def labeler_size(labeler: Mapping[str, Any] | None) -> tuple[str, int] | None:
    """(parameter name, value) of a labeler entry's size: ``("k", 15)``, ``("bits", 30)``."""
    if not labeler:
        return None
    params = labeler.get("params") or {}
    for key in ("k", "n_clusters", "num_clusters", "clusters", "bits", "n_bits", "num_bits"):
        value = params.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return key, value
    return None


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
    _check_finite(record)
    validate_record(record, source=f"run {record['run_id']}")
    return record


def _check_finite(obj: Any, where: str = "") -> None:
    """JSON has no NaN or Infinity: name the first offending field instead of failing later."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise HarnessError(f"result record field {where or '(top level)'} is {obj}; "
                           f"a record holds finite numbers only (use null for 'undefined')")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_finite(v, f"{where}[{i}]")


# --------------------------------------------------------------------------- environment
def _source_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    root = _source_root()
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def code_info() -> dict[str, Any]:
    """The harness version, and the git commit and dirty flag when run from a checkout."""
    from harness import __version__

    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"version": __version__,
            "git_commit": commit.strip() if commit and commit.strip() else None,
            "git_dirty": None if status is None else bool(status.strip())}


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each named distribution (None if it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info() -> dict[str, Any]:
    """Operating system, architecture, CPU model and kernel flags, and memory (no host name)."""
    from harness.runtime.devices import cpu_model_and_flags

    cpu_model, cpu_flags = cpu_model_and_flags()
    info: dict[str, Any] = {
        "system": platform.system(), "release": platform.release(),
        "platform": platform.platform(), "machine": platform.machine(),
        "processor": platform.processor() or None, "cpu_model": cpu_model,
        "cpu_flags": cpu_flags, "cpu_count": os.cpu_count(),
    }
    with contextlib.suppress(AttributeError, ValueError, OSError):
        info["memory_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return info


def device_info(device: str = "cpu") -> dict[str, Any]:
    """What ``device`` is: the GPU's name, capability and CUDA/cuDNN versions, or the CPU."""
    import torch

    from harness.runtime.devices import cpu_model_and_flags

    info: dict[str, Any] = {"device": device, "torch_threads": torch.get_num_threads()}
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        info.update({"type": "cuda", "name": props.name,
                     "capability": f"{props.major}.{props.minor}",
                     "memory_bytes": props.total_memory, "count": torch.cuda.device_count(),
                     "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()})
    else:
        info.update({"type": torch.device(device).type,
                     "name": cpu_model_and_flags()[0]})
    return info


def environment_info(device: str = "cpu") -> dict[str, Any]:
    """The ``environment`` section: Python, package versions, machine and device."""
    return {"python": sys.version.split()[0], "implementation": platform.python_implementation(),
            "packages": package_versions(), "machine": machine_info(),
            "device": device_info(device)}


# --------------------------------------------------------------------------- digest
def record_digest(record: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of ``record``'s content: the canonical JSON (keys sorted, no
    whitespace, UTF-8) of every field but :data:`DIGEST_FIELD`.

    :func:`write_record` stores it in the record and :func:`read_record` recomputes it, so
    a record edited after it was written is refused. Canonical JSON does not depend on the
    file's layout, and Python writes floats in their shortest round-trip form, so a record
    read back gives the digest it was written with. It detects edits, not forgeries:
    whoever edits a record can recompute it (the leaderboard also recomputes every figure
    from the record's own evidence, :mod:`harness.results.verify`).
    """
    body = {k: v for k, v in record.items() if k != DIGEST_FIELD}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def digest_problem(record: Mapping[str, Any]) -> str | None:
    """Why ``record``'s digest does not fit its content (one line), or None if it does.
    Records written before records carried a digest have none, and pass."""
    recorded = record.get(DIGEST_FIELD)
    if recorded is None:
        return None
    actual = record_digest(record)
    if actual == recorded:
        return None
    return (f"its digest says {recorded[:23]}... but its content gives {actual[:23]}...; "
            f"the record was changed after it was written")


# --------------------------------------------------------------------------- files
def record_filename(record: Mapping[str, Any]) -> str:
    return f"{record['run_id']}.json"


def write_record(record: Mapping[str, Any], results_dir: str | os.PathLike,
                 test_scores: "Mapping[str, SplitScores] | None" = None) -> Path:
    """Validate ``record`` and write it as ``<results_dir>/<run_id>.json``; return the path.

    A record whose ``test_scores`` section names a sidecar needs the same scores here
    (``test_scores``, as given to :func:`build_record`): they are written first, as
    ``<run_id>.scores.npz``, and must hash to the sha256 the record names.
    Each file appears whole or not at all (written to a temporary file, then hard-linked
    into place), and an existing record is never replaced: if the name is taken this
    raises HarnessError and leaves the existing file untouched. The file holds the record
    with its digest (:func:`record_digest`, computed here; one the record already has is
    replaced).
    """
    _check_finite(dict(record))
    record = {**{k: v for k, v in record.items() if k != DIGEST_FIELD},
              DIGEST_FIELD: record_digest(record)}
    validate_record(record, source=f"run {record.get('run_id', '?')}")
    from harness.runtime.io import ensure_dir

    results_dir = ensure_dir(check_results_dir(results_dir), "results folder")
    path = results_dir / record_filename(record)
    if path.exists():
        raise HarnessError(f"{path}: a result record with this run id already exists; "
                           f"records are never overwritten")
    sidecar = _sidecar_bytes(record, test_scores)
    written: list[Path] = []
    try:
        if sidecar is not None:
            _write_new(results_dir / record["test_scores"]["file"], sidecar)
            written.append(results_dir / record["test_scores"]["file"])
        data = (json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()
        _write_new(path, data)
    except BaseException:
        for p in written:           # a sidecar without its record is no result
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        raise
    return path


def _sidecar_bytes(record: Mapping[str, Any],
                   test_scores: "Mapping[str, SplitScores] | None") -> bytes | None:
    """The sidecar's bytes, checked against what the record says about them."""
    section = record.get("test_scores")
    if section is None:
        if test_scores:
            raise HarnessError(f"run {record['run_id']}: test scores given, but the record "
                               f"names no sidecar (pass them to build_record)")
        return None
    from harness.results.scores import npz_bytes, sha256_bytes

    if not test_scores or sorted(test_scores) != section["evaluators"]:
        raise HarnessError(f"run {record['run_id']}: the record names test scores of "
                           f"{section['evaluators']}; give write_record those scores")
    data = npz_bytes(test_scores)
    if sha256_bytes(data) != section["sha256"]:
        raise HarnessError(f"run {record['run_id']}: the test scores given differ from the "
                           f"ones whose sha256 the record names")
    return data


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to the new file ``path`` atomically (HarnessError if it exists)."""
    from harness.runtime.io import temp_beside

    tmp = temp_beside(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _link_no_clobber(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _link_no_clobber(src: Path, dst: Path) -> None:
    """Put ``src`` at ``dst`` atomically, failing if ``dst`` exists."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise HarnessError(f"{dst}: a result file with this run id already exists; "
                           f"records are never overwritten") from None
    except OSError:  # a file system without hard links: check, then rename
        if dst.exists():
            raise HarnessError(f"{dst}: a result file with this run id already exists; "
                               f"records are never overwritten") from None
        os.replace(src, dst)


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate one record; BadInputError (naming the file) if it is unusable,
    its digest does not fit its content, or its sidecar's sha256 is not the one it names."""
    path = Path(path)
    try:
        record = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such result record") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read result record: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{path}: not JSON: {exc}") from None
    try:
        _check_finite(record)
    except HarnessError as exc:
        raise BadInputError(f"{path}: {exc}") from None
    validate_record(record, source=path)
    problem = digest_problem(record)
    if problem is not None:
        raise BadInputError(f"{path}: {problem}")
    sidecar = sidecar_path(path, record)
    if sidecar is not None:
        from harness.results.scores import checked_bytes

        checked_bytes(sidecar, record["test_scores"]["sha256"], f"result record {path.name}")
    return record


def sidecar_path(record_path: str | os.PathLike, record: Mapping[str, Any]) -> Path | None:
    """Where the per-image test scores of the record at ``record_path`` are (None: it has
    none; records older than the sidecars have none)."""
    section = record.get("test_scores")
    return None if section is None else Path(record_path).parent / section["file"]


def read_test_scores(record_path: str | os.PathLike, record: Mapping[str, Any]
                     ) -> "dict[str, SplitScores] | None":
    """Evaluator name -> per-image test scores of a record (None if it has no sidecar);
    BadInputError naming the file if it is missing, altered or unreadable."""
    sidecar = sidecar_path(record_path, record)
    if sidecar is None:
        return None
    from harness.results.scores import read_sidecar

    return read_sidecar(sidecar, record["test_scores"]["sha256"])


def check_results_dir(results_dir: str | os.PathLike) -> Path:
    """``results_dir`` as a folder for records: BadInputError now if a file is in the way,
    so that a run does not find out only after every stage has run."""
    results_dir = Path(results_dir)
    for p in (results_dir, *results_dir.parents):
        if p.exists():
            if not p.is_dir():
                raise BadInputError(f"--results {results_dir}: {p} is a file, not a folder "
                                    f"of result records")
            break
    return results_dir


def record_paths(results_dir: str | os.PathLike) -> list[Path]:
    """The record files of a folder (``*.json``, hidden temporary files skipped), sorted."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return []
    return sorted(p for p in results_dir.glob("*.json") if not p.name.startswith("."))


def read_records(results_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record in ``results_dir`` (sorted by file name; empty if the folder is absent).

    Two files with the same ``run_id`` are an error: a copied record would count twice.
    """
    return [record for _, record in read_record_files(results_dir)]


def read_record_files(results_dir: str | os.PathLike) -> list[tuple[Path, dict[str, Any]]]:
    """(path, record) of every record in ``results_dir``, as :func:`read_records` reads them."""
    out, seen = [], {}
    for path in record_paths(results_dir):
        record = read_record(path)
        if record["run_id"] in seen:
            raise BadInputError(f"{path}: run id {record['run_id']!r} is also used by "
                                f"{seen[record['run_id']]}")
        seen[record["run_id"]] = path
        out.append((path, record))
    return out


# --------------------------------------------------------------------------- reading metrics
def metrics_entries(record: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every evaluator's metrics of ``record`` in the EvalMetrics shape, whatever its schema.

    A ``harness-record/1`` entry is converted: ``map`` becomes ``value`` (headline
    ``"map"``), the headline formula's per-class AP the ``breakdown``, ``protocol`` stays,
    and everything else goes to ``details``.
    """
    if record.get("schema") != LEGACY_SCHEMA_ID:
        return {name: dict(m) for name, m in record["metrics"].items()}
    out = {}
    for name, m in record["metrics"].items():
        protocol = dict(m.get("protocol") or {})
        protocol.setdefault("preset", m["preset"])
        formula = m.get("headline") or "mean AP over classes, percent"
        details = {k: v for k, v in m.items() if k not in ("map", "ap", "protocol", "headline")}
        out[name] = {"headline": "map", "formula": formula, "value": m["map"],
                     "breakdown": legacy_headline_ap(m), "protocol": protocol,
                     "details": details}
    return out


def legacy_headline_ap(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """Per-class AP of a ``harness-record/1`` entry's headline formula.

    ``ap`` is either {class: AP} (taken as is) or {AP kind: {class: AP}}; for the latter,
    the kind whose mean over classes matches ``map`` is the headline one.
    """
    import statistics

    ap = metrics["ap"]
    if all(not isinstance(v, dict) for v in ap.values()):
        return dict(ap)
    for kind in sorted(ap):
        vals = [v for v in ap[kind].values() if v is not None]
        if vals and math.isclose(statistics.fmean(vals), metrics["map"], abs_tol=0.05):
            return dict(ap[kind])
    if len(ap) == 1:
        return dict(next(iter(ap.values())))
    raise HarnessError(f"cannot tell which of the AP kinds {sorted(ap)} gives map="
                       f"{metrics['map']}: no kind's per-class mean matches it")

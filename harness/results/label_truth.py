"""How much a sound run's pseudo-labels said about its clips, for records that predate the figure.

A sound run's labels stage scores its clusters against the toy clips' ground truth
(:func:`harness.labels.diagnostics.score_against_truth`) into ``labels.diagnostics.truth``.
Older records lack it and are never rewritten, but their pseudo-labels follow from their
configuration (world seed, representation, labeler, size, seed): this module rebuilds them
through the run's own stages (:func:`harness.pipeline.data_stage.toy_clips`,
:func:`harness.pipeline.labels_stage.sound_labels`, under a run's cache keys) and keeps the
scores in an evidence file beside the records, one entry per run id.

An entry is pinned to its record by what the record says about its labels, each
recomputed from the rebuilt ones before the entry is written (a rebuild that disagrees is
refused, naming the run):

- ``dataset``: the clip dataset's fingerprint (``dataset.fingerprint`` of the record);
- ``diagnostics``: a digest of the record's ``labels.diagnostics``, which the rebuilt
  labels must give field for field (every cluster's size, the k-means objective to the
  last bit; for binary codes each bit's share of ones) under the same labeler and
  representation parameters;
- ``record``: the record's digest (:func:`harness.results.records.record_digest`) when
  the entry was made, so an entry does not outlive a change of its record.

The record's labels and features cache keys cannot be recomputed elsewhere (the features
key follows the paths and modification times of the clip files in the cache that ran
it), so the entry copies the labels key for reference and adds ``labels_sha256``, the
sha256 of the rebuilt ``labels.npy``: the input the run's pretext stage was keyed on.
Each entry carries a digest of its own content, so an entry edited by hand is refused
when the file is read; like a record's digest it detects edits, not forgeries, and
``harness label-truth --recompute`` checks an entry by rebuilding its labels.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from harness.api.errors import BadInputError
from harness.runtime.cache import hash_params

#: the evidence file's format tag
FORMAT = "harness-label-truth/1"
#: where the committed board keeps it (relative to the working directory)
DEFAULT_EVIDENCE = Path("leaderboards") / "evidence" / "label-truth.json"
#: the fields of an entry that pin it to its record (see the module docstring)
PIN_FIELDS = ("record", "dataset", "labels_key", "diagnostics")
ABOUT = ("NMI and purity of older sound records' pseudo-labels against the toy clips' truth, "
         "rebuilt from each record's configuration by `harness label-truth`")


def recorded_truth(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The truth scores the record itself holds (None: it was made before runs kept them)."""
    truth = ((record.get("labels") or {}).get("diagnostics") or {}).get("truth")
    return truth if isinstance(truth, dict) else None


def needs_evidence(record: Mapping[str, Any]) -> bool:
    """Whether a record is a sound run on the toy world's clips without its own truth scores."""
    return (record["config"].get("init") == "sound" and recorded_truth(record) is None
            and (record.get("dataset") or {}).get("kind") == "toy")


def record_pins(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the record says about its labels, in an entry's pin fields."""
    from harness.results.records import record_digest

    labels = record.get("labels") or {}
    diagnostics = {k: v for k, v in (labels.get("diagnostics") or {}).items() if k != "truth"}
    return {"record": record_digest(record),
            "dataset": (record.get("dataset") or {}).get("fingerprint"),
            "labels_key": labels.get("key"), "diagnostics": hash_params(diagnostics)}


def _entry_digest(entry: Mapping[str, Any]) -> str:
    return "sha256:" + hash_params({k: v for k, v in entry.items() if k != "digest"})


# ----------------------------------------------------------------------------- rebuilding
def _run_config(record: Mapping[str, Any]):
    """The :class:`harness.pipeline.config.RunConfig` whose labels stage made its labels."""
    from harness.pipeline.config import RunConfig

    config = record["config"]
    size = config.get("size_param")     # given as k, as the run did
    return RunConfig(repr=config["repr"]["name"], labeler=config["labeler"]["name"],
                     labeler_params={k: v for k, v in config["labeler"]["params"].items()
                                     if k != size},
                     k=config.get("k"), seed=config["seed"],
                     world_seed=config.get("world_seed", 0), profile=config["profile"],
                     toy_clips=(config.get("overrides") or {}).get("toy_clips"),
                     toy_world=(config.get("overrides") or {}).get("toy_world") or {},
                     progress=False)


def _differences(said: Mapping[str, Any], gives: Mapping[str, Any]) -> list[str]:
    return [k for k in sorted(set(said) | set(gives)) if said.get(k) != gives.get(k)]


def rebuild_labels(record: Mapping[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The record's pseudo-labels made again by the run's stages: (``labels.npy`` path,
    the labels stage's info, its ``diagnostics`` with ``truth``). BadInputError, naming
    the run and what differs, where the rebuilt world or labels are not the record's."""
    from harness.api.registry import default_registry
    from harness.data.clips import ClipDataset
    from harness.pipeline.data_stage import toy_clips
    from harness.pipeline.labels_stage import make_labeler, sound_labels

    run_id = record["run_id"]
    if (record["config"].get("init") != "sound"
            or (record.get("dataset") or {}).get("kind") != "toy"):
        raise BadInputError(f"run {run_id}: not a sound run on the toy world's clips; only "
                            f"those have pseudo-labels and clips whose truth is known")
    said = record["labels"]
    config = _run_config(record)
    # the plugins as the labels stage makes them, checked before any compute
    registry = default_registry()
    rep = registry.create("repr", config.repr, **config.repr_params)
    labeler = make_labeler(config, registry)
    checks = (("representation", said["features"].get("repr"), rep.name),
              ("representation parameters", said["features"].get("params"), rep.params()),
              ("labeler", said.get("labeler"), labeler.name),
              ("labeler parameters", said.get("params"), labeler.params()))
    for what, says, gives in checks:
        if says != gives:
            fields = (f" ({', '.join(_differences(says, gives))})"
                      if isinstance(says, dict) and isinstance(gives, dict) else "")
            raise BadInputError(f"run {run_id}: its {what} differ from what this code makes"
                                f"{fields}; its labels cannot be rebuilt")
    root = toy_clips(config.resolved_profile(), config.world_seed, progress=False)
    dataset = ClipDataset(root)
    if dataset.fingerprint() != record["dataset"]["fingerprint"]:
        raise BadInputError(f"run {run_id}: world {config.world_seed} rebuilt by this code has "
                            f"clip dataset {dataset.fingerprint()[:16]}..., the record's is "
                            f"{record['dataset']['fingerprint'][:16]}...; its labels cannot "
                            f"be rebuilt")
    path, info, _, _ = sound_labels(config, dataset, device="cpu")
    rebuilt = {k: v for k, v in info["diagnostics"].items() if k != "truth"}
    recorded = {k: v for k, v in (said.get("diagnostics") or {}).items() if k != "truth"}
    if rebuilt != recorded:
        raise BadInputError(f"run {run_id}: the rebuilt labels are not the ones the record "
                            f"used (their diagnostics differ in "
                            f"{', '.join(_differences(recorded, rebuilt))})")
    if "truth" not in info["diagnostics"]:
        raise BadInputError(f"run {run_id}: its clips carry no ground truth to score against")
    return path, info


def evidence_entry(record: Mapping[str, Any]) -> dict[str, Any]:
    """The evidence entry of a record: its labels rebuilt and scored, with the pins."""
    from harness.runtime.cache import hash_file

    path, info = rebuild_labels(record)
    entry = {"run_id": record["run_id"], **record_pins(record),
             "labels_sha256": hash_file(path), "truth": info["diagnostics"]["truth"]}
    entry["digest"] = _entry_digest(entry)
    return entry


# ----------------------------------------------------------------------------- the file
def read_evidence(path: str | os.PathLike = DEFAULT_EVIDENCE) -> dict[str, dict[str, Any]]:
    """Run id -> entry of an evidence file ({} if there is none). BadInputError naming
    the file and the run where it is malformed or an entry's content is not what its
    digest says (an entry edited by hand)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadInputError(f"{path}: unreadable label-truth evidence ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT \
            or not isinstance(data.get("entries"), dict):
        raise BadInputError(f"{path}: not a {FORMAT} evidence file")
    for run_id, entry in data["entries"].items():
        if not isinstance(entry, dict) or entry.get("run_id") != run_id \
                or not isinstance(entry.get("truth"), dict):
            raise BadInputError(f"{path}: entry {run_id!r} is malformed")
        if entry.get("digest") != _entry_digest(entry):
            raise BadInputError(f"{path}: entry {run_id!r} does not match its digest; it was "
                                f"changed after it was written (regenerate it with "
                                f"`harness label-truth --recompute --run {run_id}`)")
    return data["entries"]


def write_evidence(path: str | os.PathLike, entries: Mapping[str, Mapping[str, Any]]) -> None:
    """Write the evidence file atomically (:func:`harness.runtime.io.write_json`)."""
    from harness.runtime.io import ensure_dir, write_json

    ensure_dir(Path(path).parent, "evidence folder")
    write_json(path, {"format": FORMAT, "about": ABOUT,
                      "entries": {k: dict(entries[k]) for k in sorted(entries)}})


def entry_problem(entry: Mapping[str, Any], record: Mapping[str, Any]) -> str | None:
    """Why ``entry`` does not belong to ``record`` (one line), or None if every pin fits."""
    pins = record_pins(record)
    wrong = [k for k in PIN_FIELDS if entry.get(k) != pins[k]]
    if not wrong:
        return None
    what = {"record": "the record changed since the entry was made", "dataset": "another clip "
            "dataset", "labels_key": "other labels", "diagnostics": "other label diagnostics"}
    return (f"run {record['run_id']}: its label-truth entry does not pin to the record ("
            + "; ".join(what[k] for k in wrong) + ")")


def truth_of(record: Mapping[str, Any],
             entries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """The truth scores of a record, in the shape of ``labels.diagnostics.truth``: its own
    where it holds them, else its evidence entry's (checked against the record), else None.
    BadInputError if the entry does not pin to the record."""
    own = recorded_truth(record)
    if own is not None or record["run_id"] not in entries:
        return own
    entry = entries[record["run_id"]]
    problem = entry_problem(entry, record)
    if problem is not None:
        raise BadInputError(problem)
    return dict(entry["truth"])


def truth_for(run_id: str, results: Iterable[str | os.PathLike] = (),
              evidence: str | os.PathLike = DEFAULT_EVIDENCE) -> dict[str, Any] | None:
    """:func:`truth_of` for one run id, its record looked up in the ``results`` folders
    (default: the committed board's live and archived records)."""
    from harness.results.records import read_record

    board = DEFAULT_EVIDENCE.parents[1]
    folders = [Path(p) for p in results] or [board / "results", board / "archive"]
    for folder in folders:
        path = folder / f"{run_id}.json"
        if path.is_file():
            return truth_of(read_record(path), read_evidence(evidence))
    raise BadInputError(f"run {run_id}: no record in {', '.join(map(str, folders))}")


def check_evidence(entries: Mapping[str, Mapping[str, Any]],
                   records: Iterable[Mapping[str, Any]],
                   archived: Iterable[Mapping[str, Any]] = ()) -> tuple[list[str], list[str]]:
    """(problems, missing): one line per entry without its record (in ``records`` or
    ``archived``) or not pinned to it, and the run ids of ``records`` that need an entry
    and have none (an archived record may have none: earlier code made its labels)."""
    required = {r["run_id"]: r for r in records}
    known = {**{r["run_id"]: r for r in archived}, **required}
    problems = [f"run {run_id}: label-truth entry without a record"
                for run_id in sorted(set(entries) - set(known))]
    problems += [p for run_id in sorted(set(entries) & set(known))
                 if (p := entry_problem(entries[run_id], known[run_id])) is not None]
    missing = [run_id for run_id, r in sorted(required.items())
               if needs_evidence(r) and run_id not in entries]
    return problems, missing


def regenerate(path: str | os.PathLike, records: Iterable[Mapping[str, Any]],
               archived: Iterable[Mapping[str, Any]] = (), *, only: Iterable[str] = (),
               recompute: bool = False,
               echo: Callable[[str], None] = print) -> dict[str, int]:
    """Add an entry for every record that needs one and lacks a valid one (``only``: those
    run ids; ``recompute``: rebuild existing entries too, refusing one whose rebuilt scores
    differ). A record of ``records`` whose labels cannot be rebuilt is refused
    (BadInputError); one of ``archived`` (made by earlier code, superseded) is reported in
    a line and counted as ``refused``. The file is rewritten after each entry, so an
    interrupted run keeps what it made. Returns counts of entries made, kept, confirmed
    by rebuilding and refused."""
    entries = dict(read_evidence(path))
    wanted = set(only)
    counts = {"made": 0, "kept": 0, "confirmed": 0, "refused": 0}
    old_code = {r["run_id"] for r in archived}
    todo = [r for r in [*records, *archived]
            if needs_evidence(r) and (not wanted or r["run_id"] in wanted)]
    unknown = wanted - {r["run_id"] for r in todo}
    if unknown:
        raise BadInputError(f"--run {sorted(unknown)[0]}: no sound record without its own "
                            f"truth scores has that run id")
    for i, record in enumerate(todo, 1):
        run_id, old = record["run_id"], entries.get(record["run_id"])
        if old is not None and not recompute and entry_problem(old, record) is None:
            counts["kept"] += 1
            continue
        try:
            entry = evidence_entry(record)
        except BadInputError as exc:
            if run_id not in old_code:
                raise
            counts["refused"] += 1
            echo(f"[{i}/{len(todo)}] archived, not rebuilt: {exc}")
            continue
        if old is not None and recompute and entry_problem(old, record) is None:
            if old != entry:
                raise BadInputError(f"run {run_id}: its label-truth entry is not what its "
                                    f"labels give when rebuilt "
                                    f"({', '.join(_differences(old, entry))})")
            counts["confirmed"] += 1
            echo(f"[{i}/{len(todo)}] {run_id}: entry confirmed")
            continue
        entries[run_id] = entry
        write_evidence(path, entries)
        counts["made"] += 1
        objects = entry["truth"].get("objects", {})
        shown = ", ".join(f"{k} {v:.3f}" for k, v in objects.items() if isinstance(v, float))
        echo(f"[{i}/{len(todo)}] {run_id}: objects {shown}")
    return counts

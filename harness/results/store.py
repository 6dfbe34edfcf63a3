"""Reading and writing result records: one JSON file per run, written once.

A record is written atomically (a reader never sees half a file) and never over an
existing one. Beside it, ``<run_id>.scores.npz`` (:mod:`harness.results.scores`) holds
the evaluators' per-image test scores; the record's ``test_scores`` section names that
file and its sha256, checked whenever the record is read. The record's ``digest`` field
is the sha256 of the rest of its content (:func:`record_digest`), also checked whenever
it is read, so a record edited after it was written is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from harness.api.errors import BadInputError, HarnessError
from harness.results.schema import check_finite, validate_record
from harness.runtime.cache import hash_params

if TYPE_CHECKING:
    from harness.evaluation.ap import SplitScores


#: the record field that holds the sha256 of the rest of the record (see :func:`record_digest`)
DIGEST_FIELD = "digest"


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
    return "sha256:" + hash_params(body, ascii_only=False)


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
    check_finite(dict(record))
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
        check_finite(record)
    except HarnessError as exc:
        raise BadInputError(f"{path}: {exc}") from None
    validate_record(record, source=path)
    problem = digest_problem(record)
    if problem is not None:
        raise BadInputError(f"{path}: {problem}")
    sidecar = scores_path(path, record)
    if sidecar is not None:
        from harness.results.scores import checked_bytes

        checked_bytes(sidecar, record["test_scores"]["sha256"], f"result record {path.name}")
    return record


def scores_path(record_path: str | os.PathLike, record: Mapping[str, Any]) -> Path | None:
    """Where the per-image test scores of the record at ``record_path`` are (None: it has
    none; records older than the sidecars have none)."""
    section = record.get("test_scores")
    return None if section is None else Path(record_path).parent / section["file"]


def read_test_scores(record_path: str | os.PathLike, record: Mapping[str, Any]
                     ) -> "dict[str, SplitScores] | None":
    """Evaluator name -> per-image test scores of a record (None if it has no sidecar);
    BadInputError naming the file if it is missing, altered or unreadable."""
    sidecar = scores_path(record_path, record)
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

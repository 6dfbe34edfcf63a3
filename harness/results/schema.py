"""What a result record may hold: its JSON schema (``harness/results/record_schema.json``),
the checks a schema cannot express, and plain JSON values from Python ones.

A record is validated when it is built, written and read (:mod:`harness.results.store`),
so a leaderboard is never built from a malformed file.
"""

from __future__ import annotations

import functools
import json
import math
import os
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from harness.api.errors import BadInputError, HarnessError


#: the value of the ``schema`` field of every record written now
SCHEMA_ID = "harness-record/2"


#: records written before the EvalMetrics contract (still read: :func:`metrics_entries`)
LEGACY_SCHEMA_ID = "harness-record/1"


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


def check_finite(obj: Any, where: str = "") -> None:
    """JSON has no NaN or Infinity: name the first offending field instead of failing later."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise HarnessError(f"result record field {where or '(top level)'} is {obj}; "
                           f"a record holds finite numbers only (use null for 'undefined')")
    if isinstance(obj, dict):
        for k, v in obj.items():
            check_finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            check_finite(v, f"{where}[{i}]")


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


#: what a run's network starts from: "sound" (pretext training on sound labels), "random",
#: "supervised" (the toy world's true objects), "imported" (another framework's weights,
#: harness.networks.foreign; config["imported"] says whose). The schema's list is the one list.
INITS: tuple[str, ...] = tuple(
    record_schema()["$defs"]["config"]["properties"]["init"]["enum"])

"""What data and settings a leaderboard row stands for, read from its result record.

The leaderboard (:mod:`harness.leaderboard.rows`) keeps apart runs whose numbers are not
comparable. Besides the configuration, that takes the data on both sides of a run:

- the **pretext clips** (the record's ``dataset``): two clip datasets are two rows, however
  alike their configurations. The toy world's clips are the exception: each world draws its
  own clips and its own VOC from one recipe, and a toy row pools the worlds of a recipe
  (the world is told by the downstream data, :attr:`harness.leaderboard.rows.Run.world`), so
  for a toy downstream the clips add nothing to the row's identity;
- the **downstream VOC folder** (the record's ``downstream``): already part of the table's
  identity by its fingerprint. Only a folder whose splits have PASCAL VOC2007's sizes
  (:data:`VOC2007_SPLITS`) is named ``voc07`` and tabled beside the paper's reported rows;
  any other real folder is ``voc-<fingerprint>``.

It also lists a run's **overrides**: the profile values its options replaced
(``config.overrides``) and the evaluator parameters that differ from the evaluator's
defaults, so that a page can say which settings its numbers were made with.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Mapping

from harness.api.errors import HarnessError
from harness.results.records import metrics_entries

#: the split sizes of PASCAL VOC2007 (images in trainval and in test)
VOC2007_SPLITS = (5011, 4952)
#: the downstream kind of the toy world's VOC, and the name real VOC2007 is tabled under
TOY_DOWNSTREAM = "toy-voc"
VOC07 = "voc07"
#: parameters that are seeds: never an override worth naming (rows ignore them too)
_SEED_PARAMS = {"seed", "random_state", "world_seed"}


def is_toy(downstream_name: str) -> bool:
    """Whether a table's downstream data is the toy world's VOC."""
    return downstream_name == TOY_DOWNSTREAM


def _only(values: set[int]) -> int | None:
    return next(iter(values)) if len(values) == 1 else None


def voc_split_sizes(record: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(trainval, test) image counts of the record's downstream VOC folder.

    From the ``downstream`` section where it records them (the toy VOC does), else from
    the evaluators' own counts (``n_train`` / ``n_bank`` of a model trained on trainval,
    ``n_test`` of one tested on test); None for a count the record does not establish
    (absent, or evaluators that disagree).
    """
    down = record.get("downstream") or {}
    trainval, test = down.get("n_trainval"), down.get("n_test")
    if isinstance(trainval, int) and isinstance(test, int):
        return trainval, test
    trains: set[int] = set()
    tests: set[int] = set()
    try:
        entries = metrics_entries(record)
    except (HarnessError, KeyError, TypeError):
        entries = {}
    for m in entries.values():
        protocol, details = m.get("protocol") or {}, m.get("details") or {}
        n_train = details.get("n_train", details.get("n_bank"))
        if (protocol.get("train_split", protocol.get("bank")) == "trainval"
                and isinstance(n_train, int)):
            trains.add(n_train)
        if protocol.get("test_split") == "test" and isinstance(details.get("n_test"), int):
            tests.add(details["n_test"])
    return _only(trains), _only(tests)


def downstream_name(record: Mapping[str, Any]) -> str:
    """The name a record's downstream data is tabled under: ``toy-voc``; ``voc07`` for a
    real folder with VOC2007's split sizes; ``voc-<fingerprint>`` for any other real folder
    (including one whose split sizes the record does not establish)."""
    down = record["downstream"]
    if down["kind"] != VOC07:
        return down["kind"]
    if voc_split_sizes(record) == VOC2007_SPLITS:
        return VOC07
    return f"voc-{down['fingerprint'][:8]}"


def pretext_key(record: Mapping[str, Any]) -> str:
    """What a row's identity takes from its pretext clips: the clip dataset's fingerprint;
    "" when there are none (a random-init run) or they are the toy world's clips for a toy
    downstream (one clip set per world, told apart by the world's VOC)."""
    dataset = record.get("dataset")
    if not dataset:
        return ""
    if dataset.get("kind") == "toy" and record["downstream"]["kind"] == TOY_DOWNSTREAM:
        return ""
    return str(dataset.get("fingerprint") or "")


@functools.lru_cache(maxsize=None)
def _evaluator_defaults(plugin: str) -> str | None:
    """The evaluator plugin's default parameters (canonical JSON), None if it cannot be
    created here (not installed, or it needs parameters)."""
    from harness.api.registry import default_registry

    try:
        params = default_registry().create("evaluator", plugin).params()
    except Exception:      # any plugin failure: its defaults are unknown, not an error
        return None
    return json.dumps(params, sort_keys=True, default=str)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _flat(prefix: str, value: Any) -> list[str]:
    if isinstance(value, Mapping) and value:
        return [item for k, v in sorted(value.items()) for item in _flat(f"{prefix}.{k}", v)]
    return [f"{prefix}={_text(value)}"]


def overrides(record: Mapping[str, Any]) -> tuple[str, ...]:
    """Every setting the run changed, as ``name=value``: the profile values its options
    replaced (``config.overrides``, e.g. ``pretext_epochs=3``), then each evaluator's
    parameters that differ from that evaluator's defaults (``voc07_linear.iterations=20``;
    where the defaults are unknown, the parameters its recorded protocol lists as
    overridden). Seeds are not settings here."""
    config = record.get("config") or {}
    out = [item for k, v in sorted((config.get("overrides") or {}).items())
           for item in _flat(k, v)]
    try:
        entries = metrics_entries(record)
    except (HarnessError, KeyError, TypeError):
        entries = {}
    for name, entry in sorted((config.get("evaluators") or {}).items()):
        params = (entry or {}).get("params") or {}
        blob = _evaluator_defaults(str((entry or {}).get("name") or name))
        if blob is None:
            protocol = (entries.get(name) or {}).get("protocol") or {}
            out += [f"{name}.{p}={_text(protocol.get(p, params.get(p)))}"
                    for p in protocol.get("overrides") or ()]
            continue
        defaults = json.loads(blob)
        for p, v in sorted(params.items()):
            if p in _SEED_PARAMS:
                continue
            if p not in defaults or json.dumps(defaults[p], sort_keys=True) != json.dumps(
                    v, sort_keys=True, default=str):
                out.append(f"{name}.{p}={_text(v)}")
    return tuple(out)

"""The frozen protocol: what a test-split result must have been made under to be shown.

A record's **protocol fingerprint**, per evaluator, is a digest of

- the evaluator's name and the ``protocol`` dict it recorded, seeds removed (every
  setting that determines its result, e.g. iterations, learning-rate steps, crops);
- the run profile's name;
- the downstream data's recipe: its kind, and for a toy VOC the world version, the split
  sizes, a digest of the world's configuration and the sealed test seed (the test seed
  minus the world seed: the profile's ``toy_test_seed``, the same for every world).

The toy VOC is drawn from the pictures alone, so a toy world's audio preset and knobs are
not in that digest; the frozen protocol lists instead the toy **worlds** whose clips a
current record may have been trained on (``profiles.FROZEN_TOY_WORLDS``: a preset and its
knob values), so a run on another world, or on a preset whose knobs were changed after the
freeze, is not current.

``leaderboards/PROTOCOL.json`` holds the fingerprints the code produced when the protocol
was frozen (``harness leaderboard --freeze``), with the protocol dicts themselves, the
date and the commit. A record is *current* when every one of its evaluators' fingerprints
is a frozen one; the live leaderboard shows current records only, and ``harness
leaderboard --archive-superseded`` moves the others to ``leaderboards/archive/``.
Without a PROTOCOL.json (a fresh results folder of one's own) every record is current.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.api.errors import BadInputError
from harness.profiles import DEFAULT_EVALUATORS, FROZEN_TOY_WORLDS
from harness.runtime.cache import hash_params

#: file name of the frozen protocol, in the leaderboard's folder
PROTOCOL_FILE = "PROTOCOL.json"
SCHEMA = "harness-protocol/1"
#: the keys that hold seeds in an evaluator's protocol: the fingerprint leaves them out
#: (a seed does not change what a protocol is)
SEED_KEYS = frozenset({"seed", "random_state"})
#: the keys a leaderboard row leaves out of a record's configuration: the protocol's seeds
#: and the toy world's seed (the runs of every world of one recipe make one row)
ROW_SEED_KEYS = SEED_KEYS | {"world_seed"}


def strip_seeds(obj: Any, keys: Iterable[str] = SEED_KEYS) -> Any:
    """``obj`` without the entries named in ``keys``, at every depth (seeds do not change
    what a protocol or a row is)."""
    keys = frozenset(keys)
    if isinstance(obj, dict):
        return {k: strip_seeds(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [strip_seeds(v, keys) for v in obj]
    return obj


def data_recipe(downstream: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a record's ``downstream`` section that the protocol fixes (no world
    seed, no path): kind, world version, split sizes, world configuration, sealed seed."""
    world, test = downstream.get("world_seed"), downstream.get("test_seed")
    return {"kind": downstream.get("kind"), "world_version": downstream.get("world_version"),
            "n_trainval": downstream.get("n_trainval"), "n_test": downstream.get("n_test"),
            "toy_config": downstream.get("toy_config"),
            "test_seed": test - world if test is not None and world is not None else test}


def world_form(profile: str, world: Mapping[str, Any] | None) -> dict[str, Any]:
    """A toy world given as ``{"preset": NAME, KNOB: VALUE}`` on top of the profile's, in
    canonical form (:func:`harness.data.toy.config.world_overrides`; ``{}`` the oracle)."""
    from harness.data.toy.config import world_overrides
    from harness.profiles import get_profile

    return world_overrides({**get_profile(profile).toy_world, **dict(world or {})})


def record_world(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The toy world a record's clips came from, in canonical form; None for a record whose
    clips are not the toy world's (its own videos)."""
    if (record.get("dataset") or {}).get("kind") != "toy":
        return None
    config = record["config"]
    return world_form(config["profile"], (config.get("overrides") or {}).get("toy_world"))


def frozen_world(profile: str, world: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A world's name (its preset and changed knobs) and its PROTOCOL.json entry: its
    canonical form and the value of every preset knob, so a preset changed in the code after
    the freeze shows as drift."""
    from harness.data.toy.config import PRESET_KNOBS, world_config

    form = world_form(profile, world)
    cfg = world_config(form)
    knobs = {k: list(v) if isinstance(v := getattr(cfg, k), tuple) else v for k in PRESET_KNOBS}
    return cfg.preset_label, {"world": form, "knobs": knobs}


def evaluator_fingerprint(evaluator: str, protocol: Mapping[str, Any], profile: str,
                          recipe: Mapping[str, Any]) -> str:
    """The protocol fingerprint of one evaluator's result (see the module docstring)."""
    return hash_params({"evaluator": evaluator, "protocol": strip_seeds(dict(protocol)),
                        "profile": profile, "data": dict(recipe)})


def record_fingerprints(record: Mapping[str, Any]) -> dict[str, str]:
    """Evaluator name -> protocol fingerprint, for every evaluator of ``record``."""
    from harness.results.metrics import metrics_entries

    recipe = data_recipe(record["downstream"])
    return {name: evaluator_fingerprint(name, m["protocol"], record["config"]["profile"],
                                        recipe)
            for name, m in sorted(metrics_entries(record).items())}


def record_fingerprint(record: Mapping[str, Any]) -> str:
    """One digest of all of a record's evaluator fingerprints (shown in the archive)."""
    return hash_params(record_fingerprints(record))


@dataclass
class FrozenProtocol:
    """The content of PROTOCOL.json."""

    profile: str
    #: the data recipe (:func:`data_recipe`) every current record has
    data: dict[str, Any]
    #: evaluator name -> {"params", "protocol" (seeds removed), "fingerprint"}
    evaluators: dict[str, dict[str, Any]]
    frozen_at: str = ""
    commit: str | None = None
    notes: list[str] = field(default_factory=list)
    #: world name -> {"world": canonical form, "knobs": every preset knob's value}: the toy
    #: worlds a current record's clips may come from (none listed: the oracle alone, as
    #: before the presets)
    worlds: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def test_seed(self) -> int | None:
        """The sealed test seed (world 0's; world ``w`` draws its test split from it + w)."""
        return self.data.get("test_seed")

    def fingerprints(self) -> dict[str, str]:
        return {name: e["fingerprint"] for name, e in sorted(self.evaluators.items())}

    def is_current(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record`` ran exactly the frozen evaluators, each under its frozen
        protocol (a record missing one would leave a gap in that evaluator's table)."""
        frozen, mine = self.fingerprints(), record_fingerprints(record)
        return (set(mine) == set(frozen) and all(frozen[name] == fp for name, fp in mine.items())
                and self.admits_world(record))

    def admits_world(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record``'s toy world (if its clips are toy ones) is a frozen one."""
        world = record_world(record)
        allowed = [w["world"] for w in self.worlds.values()] if self.worlds else [{}]
        return world is None or world in allowed

    def why_superseded(self, record: Mapping[str, Any]) -> str:
        """What differs between ``record`` and the frozen protocol, in a few words."""
        from harness.results.metrics import metrics_entries

        if self.is_current(record):
            return ""
        reasons = []
        recipe = data_recipe(record["downstream"])
        if recipe.get("test_seed") is None and self.test_seed is not None:
            reasons.append("no sealed test split (made before it)")
        changed = sorted(k for k in self.data if k != "test_seed"
                         and recipe.get(k) != self.data[k])
        if recipe.get("test_seed") is not None and recipe["test_seed"] != self.test_seed:
            changed.append("test seed")
        if record["config"]["profile"] != self.profile:
            changed.append("profile")
        if changed and recipe.get("world_version") is not None:
            reasons.append("data: " + ", ".join(changed) + " differ")
        elif "profile" in changed:
            reasons.append("profile differs")
        entries = metrics_entries(record)
        missing = sorted(set(self.evaluators) - set(entries))
        if missing:
            reasons.append("no " + ", ".join(missing))
        if not self.admits_world(record):
            from harness.data.toy.config import world_config

            label = world_config(record_world(record)).preset_label
            reasons.append(f"toy world {label!r} is not a frozen one")
        for name, m in sorted(entries.items()):
            frozen = self.evaluators.get(name)
            if frozen is None:
                reasons.append(f"{name} is not in the frozen protocol")
                continue
            mine = strip_seeds(dict(m["protocol"]))
            keys = sorted(k for k in set(mine) | set(frozen["protocol"])
                          if mine.get(k) != frozen["protocol"].get(k))
            if keys:
                shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6
                                               else "")
                reasons.append(f"{name} protocol: {shown}")
        return "; ".join(reasons) or "protocol fingerprint differs"

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "frozen_at": self.frozen_at, "commit": self.commit,
                "profile": self.profile, "test_seed": self.test_seed, "data": self.data,
                "evaluators": self.evaluators, "notes": self.notes, "worlds": self.worlds}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str | os.PathLike) -> "FrozenProtocol":
        try:
            if data.get("schema") != SCHEMA:
                raise ValueError(f"schema is {data.get('schema')!r}, not {SCHEMA!r}")
            evaluators = {str(k): dict(v) for k, v in data["evaluators"].items()}
            for name, e in evaluators.items():
                if not isinstance(e.get("fingerprint"), str) or not isinstance(
                        e.get("protocol"), dict):
                    raise ValueError(f"evaluator {name!r} lacks a fingerprint or protocol")
            return cls(profile=str(data["profile"]), data=dict(data["data"]),
                       evaluators=evaluators, frozen_at=str(data.get("frozen_at", "")),
                       commit=data.get("commit"), notes=list(data.get("notes") or []),
                       worlds={str(k): dict(v) for k, v in (data.get("worlds") or {}).items()})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadInputError(f"{source}: not a frozen protocol file ({exc})") from None


def current_protocol(profile_name: str, evaluators: Iterable[str] = DEFAULT_EVALUATORS,
                     params: Mapping[str, Mapping[str, Any]] | None = None) -> FrozenProtocol:
    """The protocol the code gives now, for the profile's toy VOC and the named evaluators
    with their default parameters (or ``params[name]``); not yet dated."""
    from harness.api.registry import default_registry
    from harness.profiles import get_profile
    from harness.data.toy import WORLD_VERSION, ToyConfig

    profile = get_profile(profile_name)
    data = {"kind": "toy-voc", "world_version": WORLD_VERSION,
            "n_trainval": profile.toy_voc_images[0], "n_test": profile.toy_voc_images[1],
            "toy_config": hash_params(ToyConfig().to_dict()),
            "test_seed": profile.toy_test_seed}
    frozen = {}
    registry = default_registry()
    for name in evaluators:
        given = dict((params or {}).get(name, {}))
        ev = registry.create("evaluator", name, **given)
        protocol = ev.planned_protocol(profile.name, 0)
        if protocol is None:
            raise BadInputError(f"evaluator {name!r} cannot say its protocol without running "
                                f"(its planned_protocol() returns None); it cannot be frozen")
        from harness.results.schema import to_jsonable

        protocol = strip_seeds(to_jsonable(protocol))
        frozen[name] = {"params": to_jsonable(given), "protocol": protocol,
                        "fingerprint": evaluator_fingerprint(name, protocol, profile.name,
                                                             data)}
    worlds = dict(frozen_world(profile.name, w) for w in FROZEN_TOY_WORLDS)
    return FrozenProtocol(profile=profile.name, data=data, evaluators=frozen, worlds=worlds)


def frozen_for_results(results: str | os.PathLike) -> tuple[Path, FrozenProtocol] | None:
    """The frozen protocol that governs a results folder: ``PROTOCOL.json`` beside it (the
    leaderboard's layout, ``leaderboards/results`` and ``leaderboards/PROTOCOL.json``)."""
    path = Path(results).parent / PROTOCOL_FILE
    frozen = read_frozen(path)
    return None if frozen is None else (path, frozen)


def read_frozen(path: str | os.PathLike) -> FrozenProtocol | None:
    """The frozen protocol in ``path`` (None if there is no such file)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read the frozen protocol: {exc}") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: not a frozen protocol file (not a JSON object)")
    return FrozenProtocol.from_json(data, path)


def write_frozen(path: str | os.PathLike, frozen: FrozenProtocol) -> None:
    """Write PROTOCOL.json atomically."""
    from harness.runtime.io import write_text

    write_text(path, json.dumps(frozen.to_json(), indent=2, sort_keys=True) + "\n")


def code_drift(frozen: FrozenProtocol) -> list[str]:
    """How the code's protocol now differs from the frozen one (empty: it does not)."""
    now = current_protocol(frozen.profile, list(frozen.evaluators),
                           {n: e.get("params") or {} for n, e in frozen.evaluators.items()})
    problems = []
    if now.data != frozen.data:
        keys = sorted(k for k in set(now.data) | set(frozen.data)
                      if now.data.get(k) != frozen.data.get(k))
        problems.append(f"the toy VOC recipe differs ({', '.join(keys)})")
    if frozen.worlds and now.worlds != frozen.worlds:
        names = sorted(k for k in set(now.worlds) | set(frozen.worlds)
                       if now.worlds.get(k) != frozen.worlds.get(k))
        problems.append(f"the toy worlds differ ({', '.join(names)})")
    for name, e in sorted(frozen.evaluators.items()):
        if now.evaluators[name]["fingerprint"] != e["fingerprint"]:
            p_now, p_then = now.evaluators[name]["protocol"], e["protocol"]
            keys = sorted(k for k in set(p_now) | set(p_then) if p_now.get(k) != p_then.get(k))
            problems.append(f"{name}'s protocol differs ({', '.join(keys) or 'fingerprint'})")
    return problems

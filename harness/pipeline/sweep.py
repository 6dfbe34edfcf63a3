"""``harness sweep``: the runs of a grid (representations x sizes x backbones x seeds x
worlds), checked before the first starts, the ones already recorded skipped on request,
run here in turn or handed to a launcher (:mod:`harness.launch`).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from harness.api.errors import BadInputError
from harness.pipeline.checks import check_run
from harness.pipeline.config import RunConfig, RunResult, evaluator_params
from harness.pipeline.labels_stage import labeler_size_of, make_labeler
from harness.pipeline.run import run


def sweep_configs(base: RunConfig, reprs: list[str], ks: list[int | None],
                  backbones: list[str], seeds: list[int], *, inits: tuple[str, ...] = ("sound",),
                  world_seeds: tuple[int, ...] = (0,)) -> list[RunConfig]:
    """The runs of a sweep: sound runs for every repr x k, the random and supervised rows
    once per backbone (they read no sound), each for every world seed and run seed."""
    configs = []
    for world, init, bb in itertools.product(world_seeds, inits, backbones):
        pairs = itertools.product(reprs, ks) if init == "sound" else [(base.repr, None)]
        for (rep, k), seed in itertools.product(list(pairs), seeds):
            configs.append(replace(base, init=init, repr=rep, k=k, backbone=bb, seed=seed,
                                   world_seed=world))
    return configs


def is_recorded_by(config: RunConfig, record: dict[str, Any]) -> bool:
    """Whether ``record`` is a run of ``config``: the same init, representation, labeler and
    its size, backbone, profile, seeds, overrides, data sources and evaluators (with the
    parameters ``config`` gives them). The representation's, labeler's and backbone's other
    parameters are not compared (a sweep sets none of them), so a record of a run with
    ``--repr-param`` would count as the sweep's. A record whose protocol was superseded
    stops counting once ``harness leaderboard --archive-superseded`` moves it out of the
    results folder."""
    from harness.api.registry import default_registry

    c = record.get("config", {})
    name = lambda entry: (entry or {}).get("name")           # noqa: E731
    same = (c.get("init") == config.init and c.get("seed") == config.seed
            and c.get("world_seed", 0) == config.world_seed and c.get("profile") == config.profile
            and _spec(c.get("backbone")) == config.backbone
            and c.get("overrides", {}) == _jsonable(config.overrides())
            and (record.get("downstream") or {}).get("kind") == ("voc07" if config.voc else "toy-voc"))
    if same and config.init == "sound":
        size = labeler_size_of(make_labeler(config, default_registry()))
        same = (name(c.get("repr")) == config.repr and name(c.get("labeler")) == config.labeler
                and c.get("k") == (size[1] if size else None))
    if same and config.init != "random":
        same = (record.get("dataset") or {}).get("kind") == ("clips" if config.clips else "toy")
    if not same:
        return False
    registry, evaluators = default_registry(), c.get("evaluators") or {}
    return all(name in evaluators and evaluators[name]["params"] == _jsonable(
        registry.create("evaluator", name, **evaluator_params(config, name)).params())
        for name in config.evaluators)


def _spec(entry: dict[str, Any] | None) -> str | None:
    """The name a plugin entry of a record was asked for: a family's (``timm:``) with its
    variant (``timm:resnet18``), which the registry gave it as ``variant``."""
    name = (entry or {}).get("name")
    if name and name.endswith(":"):
        return f"{name}{((entry or {}).get('params') or {}).get('variant')}"
    return name


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from a record's JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def sweep(base: RunConfig, reprs: list[str], ks: list[int | None], backbones: list[str],
          seeds: list[int], echo: Callable[[str], None] = print, *,
          inits: tuple[str, ...] = ("sound",), world_seeds: tuple[int, ...] = (0,),
          skip_recorded: bool = False, dry_run: bool = False,
          execute: Callable[[list[RunConfig], list[str]], list[RunResult]] | None = None
          ) -> list[RunResult]:
    """Every run of :func:`sweep_configs`, in order, sharing cached stages.

    ``skip_recorded``: leave out a run that a record in ``base.results`` already holds
    (:func:`is_recorded_by`), so that a long batch can be stopped and started again.
    ``dry_run``: list the runs (and which are recorded) and run none.
    Every run is checked (:func:`check_run`) before the first one starts: one that would be
    refused stops the sweep before any compute, its line saying ``refused: <why>``; a dry
    run lists it so.
    ``execute``: runs the runs left to do, given with their lines, and returns their
    results (a launcher of :mod:`harness.launch`; in a dry run it is given the runs to
    run and says how it would run them); by default each runs here, in turn.
    """
    from harness.api.errors import HarnessError
    from harness.results.store import read_records

    configs = sweep_configs(base, reprs, ks, backbones, seeds, inits=inits,
                            world_seeds=world_seeds)
    lines = []
    for i, cfg in enumerate(configs, 1):
        what = (f"repr={cfg.repr} labeler={cfg.labeler} k={cfg.k} " if cfg.init == "sound"
                else "")
        lines.append(f"sweep {i}/{len(configs)}: init={cfg.init} {what}"
                     f"backbone={cfg.backbone} seed={cfg.seed} world_seed={cfg.world_seed}")
    refused: dict[int, HarnessError] = {}
    clip_counts: dict[Path, int] = {}
    for i, cfg in enumerate(configs):
        try:
            check_run(cfg, clip_counts)
        except HarnessError as exc:
            refused[i] = exc
    if refused and not dry_run:
        for i, exc in refused.items():
            echo(f"{lines[i]}: refused: {exc}")
        first, exc = next(iter(refused.items()))
        error = BadInputError if exc.exit_code == 2 else HarnessError
        raise error(f"{len(refused)} of {len(configs)} runs of the sweep are refused, so none "
                    f"was started (run {first + 1}: {exc})")
    recorded = read_records(base.results) if (skip_recorded or dry_run) else []
    results, todo = [], []
    for i, (cfg, line) in enumerate(zip(configs, lines)):
        if i in refused:
            echo(f"{line}: refused: {refused[i]}")
            continue
        held = next((r["run_id"] for r in recorded if is_recorded_by(cfg, r)), None)
        if dry_run or (skip_recorded and held):
            echo(f"{line}: {'recorded as ' + held if held else 'to run'}"
                 f"{'' if dry_run else ', skipped'}")
            if dry_run and not held and execute is not None:
                todo.append((cfg, line))        # the launcher says how it would run them
            continue
        if execute is not None:
            todo.append((cfg, line))
            continue
        echo(line)
        results.append(run(cfg, echo=echo))
    if execute is not None and todo:
        results = execute([cfg for cfg, _ in todo], [line for _, line in todo])
    return results

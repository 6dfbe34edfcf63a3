"""``harness run`` and ``harness sweep``: the whole benchmark in one command.

Options left out take their value from ``--profile`` (:mod:`harness.profiles`) or from
the plugin's own defaults; an option given overrides it and is recorded.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from harness.cli.params import parse_params
from harness.profiles import ProfileName

_RESULTS_HELP = "Folder for result records (the committed leaderboard's live in leaderboards/results)."
_EVAL_HELP = ("Evaluator plugin (repeat the option); default: the evaluators of the "
              "protocol frozen beside --results (its parent's PROTOCOL.json), else "
              "voc07_linear and voc07_full (Table 1's Head and All).")
_WORLD_HELP = ("Seed of the toy world's clips and toy VOC (another sample of the same world); "
               "ignored with --clips and --voc.")
_EVAL_PARAM_HELP = "NAME=VALUE for every evaluator (repeatable), e.g. iterations=100, preset=deepcluster."


class MonitorKind(str, Enum):
    """A cheap downstream probe run during pretext training (:mod:`harness.monitor`)."""

    knn = "knn"
    linear_probe = "linear_probe"


class Init(str, Enum):
    """What the network starts from before evaluation."""

    sound = "sound"
    random = "random"
    supervised = "supervised"


def _config(**kw):
    from harness.pipeline import RunConfig

    kw["evaluators"] = tuple(kw.get("evaluators") or default_evaluators(kw["results"]))
    return RunConfig(**{k: v for k, v in kw.items() if v is not None})


def default_evaluators(results: Path) -> tuple[str, ...]:
    """The evaluators a run writing to ``results`` gets when ``--eval`` is not given: those
    of the protocol frozen beside it, so that its records are current there (Head and All
    first); otherwise Table 1's Head and All."""
    from harness.pipeline import DEFAULT_EVALUATORS
    from harness.protocol_lock import frozen_for_results

    found = frozen_for_results(results)
    if found is None:
        return DEFAULT_EVALUATORS
    path, frozen = found
    names = [n for n in DEFAULT_EVALUATORS if n in frozen.evaluators]
    names += [n for n in frozen.evaluators if n not in names]
    typer.echo(f"evaluators of the protocol frozen in {path}: {', '.join(names)}")
    return tuple(names)


def run(
    repr: str = typer.Option("mfcc", "--repr", help="Sound representation plugin."),
    backbone: str = typer.Option("alexnet", "--backbone", help="Backbone plugin (alexnet, resnet18, timm:<name>)."),
    k: Optional[int] = typer.Option(None, "--k", help="The labeler's size parameter (k of kmeans, bits of pca_binary); default: the labeler's."),
    labeler: str = typer.Option("kmeans", "--labeler", help="Labeler plugin."),
    init: Init = typer.Option(Init.sound, "--init", help="sound (pretext on sound clusters), random or supervised (true toy labels)."),
    profile: ProfileName = typer.Option(ProfileName.toy, "--profile", help="toy (CPU-sized) or paper (200 epochs, full VOC07 protocol)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of clustering, pretext training and evaluation."),
    world_seed: int = typer.Option(0, "--world-seed", min=0, help=_WORLD_HELP),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
    clips: Optional[Path] = typer.Option(None, "--clips", help="A clip dataset (default: the toy world)."),
    voc: Optional[Path] = typer.Option(None, "--voc", help="A VOCdevkit/VOC2007 folder (default: the toy VOC)."),
    evaluators: Optional[List[str]] = typer.Option(None, "--eval", help=_EVAL_HELP),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Pretext epochs (default: the profile's)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Pretext learning rate (default: the profile's)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Pretext batch size (default: the profile's)."),
    repr_param: Optional[List[str]] = typer.Option(None, "--repr-param", help="NAME=VALUE for the representation."),
    labeler_param: Optional[List[str]] = typer.Option(None, "--labeler-param", help="NAME=VALUE for the labeler."),
    backbone_param: Optional[List[str]] = typer.Option(None, "--backbone-param", help="NAME=VALUE for the backbone (on top of the profile's)."),
    eval_param: Optional[List[str]] = typer.Option(None, "--eval-param", help=_EVAL_PARAM_HELP),
    results: Path = typer.Option(Path("results"), "--results", help=_RESULTS_HELP),
    monitor: Optional[MonitorKind] = typer.Option(
        None, "--monitor", help="Watch the pretext run: knn or linear_probe on VOC train -> "
        "val every --monitor-every epochs (never test)."),
    monitor_every: Optional[int] = typer.Option(None, "--monitor-every", min=1,
                                                help="Epochs between monitor evaluations "
                                                     "(default: 10)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """Run the whole benchmark: data, features, labels, pretext training, evaluation, record."""
    from harness.pipeline import run as run_pipeline

    config = _config(repr=repr, repr_params=parse_params(repr_param), labeler=labeler,
                     labeler_params=parse_params(labeler_param), k=k, backbone=backbone,
                     backbone_params=parse_params(backbone_param), init=init.value,
                     profile=profile.value, seed=seed, world_seed=world_seed, device=device,
                     clips=clips, voc=voc,
                     evaluators=evaluators, eval_params=parse_params(eval_param),
                     epochs=epochs, lr=lr, batch_size=batch_size, results=results,
                     progress=progress, monitor=monitor.value if monitor else None,
                     monitor_every=monitor_every)
    result = run_pipeline(config, echo=typer.echo)
    typer.echo(f"record: {result.path}")


def sweep(
    repr: List[str] = typer.Option(["mfcc"], "--repr", help="Representations (repeat the option)."),
    k: Optional[List[int]] = typer.Option(None, "--k", help="Labeler sizes (repeat the option); default: the labeler's."),
    backbone: List[str] = typer.Option(["alexnet"], "--backbone", help="Backbones (repeat the option)."),
    seed: List[int] = typer.Option([0], "--seed", min=0, help="Seeds (repeat the option)."),
    init: List[Init] = typer.Option([Init.sound], "--init", help="sound, random, supervised (repeat the option); random and supervised run once per backbone, world and seed."),
    world_seed: List[int] = typer.Option([0], "--world-seed", min=0, help="Toy world seeds (repeat the option)."),
    labeler: str = typer.Option("kmeans", "--labeler", help="Labeler plugin."),
    profile: ProfileName = typer.Option(ProfileName.toy, "--profile", help="toy or paper."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
    clips: Optional[Path] = typer.Option(None, "--clips", help="A clip dataset (default: the toy world)."),
    voc: Optional[Path] = typer.Option(None, "--voc", help="A VOCdevkit/VOC2007 folder (default: the toy VOC)."),
    evaluators: Optional[List[str]] = typer.Option(None, "--eval", help=_EVAL_HELP),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Pretext epochs (default: the profile's)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Pretext learning rate (default: the profile's)."),
    eval_param: Optional[List[str]] = typer.Option(None, "--eval-param", help=_EVAL_PARAM_HELP),
    results: Path = typer.Option(Path("results"), "--results", help=_RESULTS_HELP),
    skip_recorded: bool = typer.Option(False, "--skip-recorded", help="Leave out the runs a "
                                       "record in --results already holds (resume a batch)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs (and which are "
                                 "recorded in --results); run none."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """Run every combination of --init x --repr x --k x --backbone x --seed x --world-seed
    (Table 1 over worlds, Figures 3 and 4)."""
    from harness.pipeline import sweep as sweep_pipeline

    base = _config(labeler=labeler, profile=profile.value, device=device, clips=clips, voc=voc,
                   evaluators=evaluators, eval_params=parse_params(eval_param), epochs=epochs,
                   lr=lr, results=results, progress=progress)
    done = sweep_pipeline(base, repr, k or [None], backbone, seed, echo=typer.echo,
                          inits=tuple(dict.fromkeys(i.value for i in init)),
                          world_seeds=tuple(dict.fromkeys(world_seed)),
                          skip_recorded=skip_recorded, dry_run=dry_run)
    if not dry_run:
        typer.echo(f"{len(done)} records in {results}")

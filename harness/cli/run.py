"""``harness run`` and ``harness sweep``: the whole benchmark in one command.

Options left out take their value from ``--profile`` (:mod:`harness.profiles`) or from
the plugin's own defaults; an option given overrides it and is recorded.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

import typer

from harness.cli import launch_options as lo
from harness.cli.launch_options import Launcher
from harness.cli.defaults import PROFILE, from_profile
from harness.cli.params import parse_params
from harness.profiles import (DEFAULT_BACKBONE, DEFAULT_DEVICE, DEFAULT_EVALUATORS, DEFAULT_INIT,
                              DEFAULT_LABELER, DEFAULT_REPR, DEFAULT_RESULTS, DEFAULT_SEED,
                              DEFAULT_WORLD_SEED, MONITOR_EVERY, ProfileName)
from harness.results.schema import INITS

_RESULTS_HELP = "Folder for result records (the committed leaderboard's live in leaderboards/results)."
_EVAL_HELP = ("Evaluator plugin (repeat the option); default: the evaluators of the "
              "protocol frozen beside --results (its parent's PROTOCOL.json), else "
              f"{' and '.join(DEFAULT_EVALUATORS)} (Table 1's Head and All).")
_WORLD_HELP = ("Seed of the toy world's clips and toy VOC (another sample of the same world); "
               "ignored with --clips and --voc.")
_EVAL_PARAM_HELP = "NAME=VALUE for every evaluator (repeatable), e.g. iterations=100, preset=deepcluster."
_TOY_PRESET_HELP = ("Toy world preset of the clips: oracle (sound names the objects) or realistic "
                    "(the audio of real video); the toy VOC is the same under both "
                    "(docs/toy-worlds.md). Default: the profile's (oracle).")
_TOY_KNOB_HELP = ("NAME=VALUE for one knob of the toy world (repeatable), e.g. music_prob=0, "
                  "object_gain_db=0,24 (docs/toy-worlds.md).")


class MonitorKind(str, Enum):
    """A cheap downstream probe run during pretext training (:mod:`harness.pretext.monitor`)."""

    knn = "knn"
    linear_probe = "linear_probe"


#: what the network starts from before evaluation: the schema's inits but "imported", which
#: ``--init`` spells as the weights to import (``torchvision:alexnet=PATH``)
Init = Enum("Init", {name: name for name in INITS if name != "imported"}, type=str)


def _config(**kw):
    from harness.pipeline.config import RunConfig

    kw["evaluators"] = tuple(kw.get("evaluators") or default_evaluators(kw["results"]))
    return RunConfig(**{k: v for k, v in kw.items() if v is not None})


def default_evaluators(results: Path) -> tuple[str, ...]:
    """The evaluators a run writing to ``results`` gets when ``--eval`` is not given: those
    of the protocol frozen beside it, so that its records are current there (Head and All
    first); otherwise Table 1's Head and All."""
    from harness.profiles import DEFAULT_EVALUATORS
    from harness.results.protocol import frozen_for_results

    found = frozen_for_results(results)
    if found is None:
        return DEFAULT_EVALUATORS
    path, frozen = found
    names = [n for n in DEFAULT_EVALUATORS if n in frozen.evaluators]
    names += [n for n in frozen.evaluators if n not in names]
    typer.echo(f"evaluators of the protocol frozen in {path}: {', '.join(names)}")
    return tuple(names)


def run(
    repr: str = typer.Option(DEFAULT_REPR, "--repr", help="Sound representation plugin."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help=f"Backbone plugin (alexnet, resnet18, timm:<name>); default: {DEFAULT_BACKBONE}, or the one imported weights fit."),
    k: Optional[int] = typer.Option(None, "--k", help="The labeler's size parameter (k of kmeans, bits of pca_binary); default: the labeler's."),
    labeler: str = typer.Option(DEFAULT_LABELER, "--labeler", help="Labeler plugin."),
    init: str = typer.Option(DEFAULT_INIT, "--init", help="sound (pretext on sound clusters), random, supervised (true toy labels), or another framework's weights: torchvision:alexnet=PATH, torchvision:resnet18=PATH, timm:NAME=PATH (docs/foreign-checkpoints.md)."),
    profile: ProfileName = typer.Option(PROFILE, "--profile", help="toy (CPU-sized) or paper (200 epochs, full VOC07 protocol)."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", min=0, help="Seed of clustering, pretext training and evaluation."),
    world_seed: int = typer.Option(DEFAULT_WORLD_SEED, "--world-seed", min=0, help=_WORLD_HELP),
    toy_preset: Optional[str] = typer.Option(None, "--toy-preset", help=_TOY_PRESET_HELP),
    toy_knob: Optional[List[str]] = typer.Option(None, "--toy-knob", help=_TOY_KNOB_HELP),
    device: str = typer.Option(DEFAULT_DEVICE, "--device", help="auto, cpu, cuda, cuda:N."),
    clips: Optional[Path] = typer.Option(None, "--clips", help="A clip dataset (default: the toy world)."),
    voc: Optional[Path] = typer.Option(None, "--voc", help="A VOCdevkit/VOC2007 folder (default: the toy VOC)."),
    evaluators: Optional[List[str]] = typer.Option(None, "--eval", help=_EVAL_HELP),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Pretext epochs (default: the profile's).", show_default=from_profile("pretext_epochs")),
    lr: Optional[float] = typer.Option(None, "--lr", help="Pretext learning rate (default: the profile's).", show_default=from_profile("pretext_lr")),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Pretext batch size (default: the profile's).", show_default=from_profile("pretext_batch_size")),
    store_size: Optional[int] = typer.Option(None, "--store-size", help="Side of the stored frames pretext crops are cut from, px (default: the profile's, None: the image size; larger than the image size, crops also vary the scale).", show_default=from_profile("pretext_store_size")),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the pretext network (faster on a GPU)."),
    repr_param: Optional[List[str]] = typer.Option(None, "--repr-param", help="NAME=VALUE for the representation."),
    labeler_param: Optional[List[str]] = typer.Option(None, "--labeler-param", help="NAME=VALUE for the labeler."),
    backbone_param: Optional[List[str]] = typer.Option(None, "--backbone-param", help="NAME=VALUE for the backbone (on top of the profile's)."),
    eval_param: Optional[List[str]] = typer.Option(None, "--eval-param", help=_EVAL_PARAM_HELP),
    results: Path = typer.Option(Path(DEFAULT_RESULTS), "--results", help=_RESULTS_HELP),
    monitor: Optional[MonitorKind] = typer.Option(
        None, "--monitor", help="Watch the pretext run: knn or linear_probe on VOC train -> "
        "val every --monitor-every epochs (never test)."),
    monitor_every: Optional[int] = typer.Option(None, "--monitor-every", min=1,
                                                help="Epochs between monitor evaluations.",
                                                show_default=str(MONITOR_EVERY)),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
    logger: Optional[List[str]] = typer.Option(None, "--logger", help="Logger plugin (repeatable): csv, tensorboard; files in RESULTS/<run_id>.logs, named in the record (docs/watching-runs.md)."),
    launcher: Launcher = lo.LAUNCHER,
    threads_per_job: Optional[int] = lo.THREADS,
    job_dir: Optional[Path] = lo.JOB_DIR,
    live: Optional[bool] = lo.LIVE,
    slurm_partition: Optional[str] = lo.PARTITION,
    slurm_time: str = lo.TIME,
    slurm_gpus: Optional[int] = lo.GPUS,
    slurm_cpus: Optional[int] = lo.CPUS,
    slurm_mem: Optional[str] = lo.MEM,
    slurm_account: Optional[str] = lo.ACCOUNT,
    slurm_qos: Optional[str] = lo.QOS,
    slurm_param: Optional[List[str]] = lo.PARAM,
    slurm_nodes: int = lo.NODES,
    slurm_tasks_per_node: Optional[int] = lo.TASKS,
    slurm_setup: Optional[List[str]] = lo.SETUP,
) -> None:
    """Run the whole benchmark: data, features, labels, pretext training, evaluation, record."""
    from harness.pipeline.run import run as run_pipeline

    init, imported, backbone = _init(init, backbone)
    config = _config(repr=repr, repr_params=parse_params(repr_param), labeler=labeler,
                     labeler_params=parse_params(labeler_param), k=k, backbone=backbone,
                     backbone_params=parse_params(backbone_param), init=init,
                     imported=imported, loggers=tuple(logger or ()),
                     profile=profile.value, seed=seed, world_seed=world_seed, device=device,
                     clips=clips, voc=voc, toy_world=_toy_world(toy_preset, toy_knob),
                     evaluators=evaluators, eval_params=parse_params(eval_param),
                     epochs=epochs, lr=lr, batch_size=batch_size, store_size=store_size,
                     compile=compile_ or None, results=results,
                     progress=progress, monitor=monitor.value if monitor else None,
                     monitor_every=monitor_every)
    if config.init not in ("random", "imported"):   # those train nothing
        _say_cpu_estimate(config)
    options = lo.launch_options(launcher, 1, threads_per_job, job_dir, live,
                                **lo.slurm_args(locals()))
    execute = lo.executor(options)
    result = (execute([config], [f"run: init={config.init} backbone={config.backbone} "
                                 f"seed={config.seed}"])[0]
              if execute else run_pipeline(config, echo=typer.echo))
    typer.echo(f"record: {result.path}")
    trained = (result.record.get("pretext") or {}).get("checkpoint")
    if trained:     # a random network is trained on nothing and has no checkpoint
        typer.echo(f"checkpoint: {trained}")


def _toy_world(preset: str | None, knobs: list[str] | None) -> dict[str, Any] | None:
    """``--toy-preset`` and ``--toy-knob``s as a run's ``toy_world`` (None: the profile's)."""
    world = {**({"preset": preset} if preset is not None else {}), **parse_params(knobs)}
    return world or None


def _init(init: str, backbone: str | None) -> tuple[str, str | None, str | None]:
    """(init, imported weights spec, backbone) from ``--init`` and ``--backbone``: another
    framework's weights are init "imported", and name the backbone they fit."""
    from harness.api.errors import BadInputError
    from harness.networks.foreign import check_backbone, is_foreign_spec, parse_spec

    if is_foreign_spec(init):
        return "imported", init, check_backbone(parse_spec(init), backbone)
    if init not in {i.value for i in Init}:
        raise BadInputError(f"--init {init!r}: choose sound, random, supervised, or another "
                            f"framework's weights, e.g. torchvision:alexnet=PATH")
    return init, None, backbone


def _say_cpu_estimate(config) -> None:
    """Before anything runs: how long the pretext would take on this CPU, for a profile
    that declares its CPU rate (:func:`harness.profiles.cpu_estimate`). Nothing waits:
    the run goes on, and Ctrl-C stops it."""
    from harness.data.clips import ClipDataset
    from harness.runtime.devices import resolve_device
    from harness.profiles import cpu_estimate

    if resolve_device(config.device) != "cpu":
        return
    profile = config.resolved_profile()
    clips = len(ClipDataset(config.clips)) if config.clips else profile.toy_clips
    line = cpu_estimate(profile, config.backbone, clips=clips)
    if line:
        typer.echo(line, err=True)


def sweep(
    repr: List[str] = typer.Option([DEFAULT_REPR], "--repr", help="Representations (repeat the option)."),
    k: Optional[List[int]] = typer.Option(None, "--k", help="Labeler sizes (repeat the option); default: the labeler's."),
    backbone: List[str] = typer.Option([DEFAULT_BACKBONE], "--backbone", help="Backbones (repeat the option)."),
    seed: List[int] = typer.Option([DEFAULT_SEED], "--seed", min=0, help="Seeds (repeat the option)."),
    init: List[Init] = typer.Option([Init(DEFAULT_INIT)], "--init", help="sound, random, supervised (repeat the option); random and supervised run once per backbone, world and seed."),
    world_seed: List[int] = typer.Option([DEFAULT_WORLD_SEED], "--world-seed", min=0, help="Toy world seeds (repeat the option)."),
    toy_preset: Optional[str] = typer.Option(None, "--toy-preset", help=_TOY_PRESET_HELP),
    toy_knob: Optional[List[str]] = typer.Option(None, "--toy-knob", help=_TOY_KNOB_HELP),
    labeler: str = typer.Option(DEFAULT_LABELER, "--labeler", help="Labeler plugin."),
    profile: ProfileName = typer.Option(PROFILE, "--profile", help="toy or paper."),
    device: str = typer.Option(DEFAULT_DEVICE, "--device", help="auto, cpu, cuda, cuda:N."),
    clips: Optional[Path] = typer.Option(None, "--clips", help="A clip dataset (default: the toy world)."),
    voc: Optional[Path] = typer.Option(None, "--voc", help="A VOCdevkit/VOC2007 folder (default: the toy VOC)."),
    evaluators: Optional[List[str]] = typer.Option(None, "--eval", help=_EVAL_HELP),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Pretext epochs (default: the profile's).", show_default=from_profile("pretext_epochs")),
    lr: Optional[float] = typer.Option(None, "--lr", help="Pretext learning rate (default: the profile's).", show_default=from_profile("pretext_lr")),
    eval_param: Optional[List[str]] = typer.Option(None, "--eval-param", help=_EVAL_PARAM_HELP),
    results: Path = typer.Option(Path(DEFAULT_RESULTS), "--results", help=_RESULTS_HELP),
    skip_recorded: bool = typer.Option(False, "--skip-recorded", help="Leave out the runs a "
                                       "record in --results already holds (resume a batch)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs (and which are "
                                 "recorded in --results); run none."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
    launcher: Launcher = lo.LAUNCHER,
    jobs: int = lo.JOBS,
    threads_per_job: Optional[int] = lo.THREADS,
    job_dir: Optional[Path] = lo.JOB_DIR,
    live: Optional[bool] = lo.LIVE,
    slurm_partition: Optional[str] = lo.PARTITION,
    slurm_time: str = lo.TIME,
    slurm_gpus: Optional[int] = lo.GPUS,
    slurm_cpus: Optional[int] = lo.CPUS,
    slurm_mem: Optional[str] = lo.MEM,
    slurm_account: Optional[str] = lo.ACCOUNT,
    slurm_qos: Optional[str] = lo.QOS,
    slurm_param: Optional[List[str]] = lo.PARAM,
    slurm_nodes: int = lo.NODES,
    slurm_tasks_per_node: Optional[int] = lo.TASKS,
    slurm_setup: Optional[List[str]] = lo.SETUP,
    slurm_array: bool = lo.ARRAY,
) -> None:
    """Run every combination of --init x --repr x --k x --backbone x --seed x --world-seed
    (Table 1 over worlds, Figures 3 and 4)."""
    from harness.pipeline.sweep import sweep as sweep_pipeline

    base = _config(labeler=labeler, profile=profile.value, device=device, clips=clips, voc=voc,
                   toy_world=_toy_world(toy_preset, toy_knob),
                   evaluators=evaluators, eval_params=parse_params(eval_param), epochs=epochs,
                   lr=lr, results=results, progress=progress)
    done = sweep_pipeline(base, repr, k or [None], backbone, seed, echo=typer.echo,
                          inits=tuple(dict.fromkeys(i.value for i in init)),
                          world_seeds=tuple(dict.fromkeys(world_seed)),
                          skip_recorded=skip_recorded, dry_run=dry_run,
                          execute=lo.executor(lo.launch_options(
                              launcher, jobs, threads_per_job, job_dir, live, dry_run,
                              **lo.slurm_args(locals()))))
    if not dry_run:
        typer.echo(f"{len(done)} records in {results}")

"""``harness pretrain``: train a backbone to predict each frame's sound pseudo-label.

    harness pretrain --backbone alexnet --labels labels.npy --data clips/ --out runs/a
    torchrun --nproc-per-node 4 -m harness pretrain --backbone resnet18 ...   # DDP

Writes ``OUT/last.pt`` (the checkpoint ``harness eval --checkpoint`` takes; rewritten
after every epoch), ``OUT/metrics.jsonl`` (one line per epoch) and ``OUT/config.json``.
Rerunning the same command resumes an interrupted run from its last checkpoint.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from harness.cli.defaults import PROFILE, field_default, from_profile
from harness.cli.run import MonitorKind
from harness.pretext.config import PretrainConfig
from harness.profiles import DEFAULT_DEVICE, DEFAULT_SEED, MONITOR_EVERY, ProfileName
from harness.runtime.devices import Precision


class Origin(str, Enum):
    """What the labels a network learns from are."""

    pretext = "pretext"
    supervised = "supervised"


def pretrain(
    backbone: str = typer.Option(..., "--backbone", "-b", help="Backbone (see `harness plugins`), "
                                 "e.g. alexnet, resnet18, timm:resnet50."),
    labels: Path = typer.Option(..., "--labels", help="Pseudo-labels .npy from `harness label` "
                                "(with its .json sidecar)."),
    data: Path = typer.Option(..., "--data", help="The clip dataset the labels belong to."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: last.pt, metrics.jsonl."),
    profile: ProfileName = typer.Option(PROFILE, "--profile",
                                        help="Where the schedule, augmentation and backbone "
                                             "parameters come from (as in `harness run`)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Fixed number of epochs "
                                         "(default: the profile's).",
                                         show_default=from_profile("pretext_epochs")),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Global batch size "
                                             "(default: the profile's).",
                                             show_default=from_profile("pretext_batch_size")),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate of the one-cycle "
                                       "schedule (default: the profile's).",
                                       show_default=from_profile("pretext_lr")),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="AdamW weight decay "
                                                 "(default: the profile's).",
                                                 show_default=from_profile("pretext_weight_decay")),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Side of the training "
                                             "images, px (default: the profile's).",
                                             show_default=from_profile("image_size")),
    store_size: Optional[int] = typer.Option(None, "--store-size", help="Side of the stored "
                                             "frames crops are cut from, px (default: the "
                                             "profile's, else the image size).",
                                             show_default=from_profile("pretext_store_size")),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", min=0, help="Steps of "
                                               "linear warm-up before the one-cycle schedule "
                                               "(default: the profile's).",
                                               show_default=from_profile("pretext_warmup_steps")),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Share of clips held "
                                                 "out (default: the profile's).",
                                                 show_default=from_profile("pretext_val_fraction")),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", min=0, help="Seed of the split, initialisation and augmentation."),
    param: List[str] = typer.Option([], "--backbone-param", "-p", help="Backbone parameter "
                                    "NAME=VALUE (repeatable, on top of the profile's), e.g. "
                                    "-p img_size=64."),
    device: str = typer.Option(DEFAULT_DEVICE, "--device", help="auto | cpu | cuda | cuda:N"),
    precision: Precision = typer.Option(Precision(field_default(PretrainConfig, "precision")), "--precision", help="auto: bf16 "
                                        "autocast on CUDA and on CPUs with native bf16."),
    channels_last: bool = typer.Option(field_default(PretrainConfig, "channels_last"),
                                       "--channels-last/--no-channels-last",
                                       help="Channels-last memory format."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the network."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Epochs between checkpoints.",
                                                   show_default=str(field_default(PretrainConfig, "checkpoint_every"))),
    origin: Origin = typer.Option(Origin(field_default(PretrainConfig, "origin")), "--origin", help="Recorded in the checkpoint: "
                                  "pretext (sound labels) or supervised (true labels)."),
    restart: bool = typer.Option(False, "--restart", help="Overwrite a checkpoint of another run in OUT."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch "
                                          "(default or 0: torch's choice)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    monitor: Optional[MonitorKind] = typer.Option(
        None, "--monitor", help="Watch representation quality while training: knn or "
        "linear_probe on VOC train -> val (needs --monitor-voc; never test)."),
    monitor_voc: Optional[Path] = typer.Option(None, "--monitor-voc", help="VOCdevkit/VOC2007 "
                                               "folder the monitor reads (train and val only)."),
    monitor_every: Optional[int] = typer.Option(None, "--monitor-every", min=1,
                                                help="Epochs between monitor evaluations (and "
                                                     "after the last).",
                                                show_default=str(MONITOR_EVERY)),
    logger: List[str] = typer.Option([], "--logger", help="Logger plugin writing each "
                                      "epoch's figures to OUT/logs (repeatable): csv, "
                                      "tensorboard (see `harness plugins --kind logger`)."),
) -> None:
    """Train a backbone on pseudo-labels (cross-entropy or BCE, AdamW, one-cycle schedule)."""
    from harness.cli.params import parse_params
    from harness.api.errors import BadInputError
    from harness.pretext.train import pretrain as run_pretrain
    from harness.pretext.monitor import build_monitor
    from harness.profiles import get_profile, pretrain_settings

    if threads is not None and threads < 0:
        raise BadInputError(f"--threads {threads}: must be a number of CPU threads >= 1 "
                            "(0: torch's choice)")
    settings = pretrain_settings(get_profile(profile), backbone)
    settings["backbone_params"].update(parse_params(param))
    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
             "image_size": image_size, "val_fraction": val_fraction,
             "checkpoint_every": checkpoint_every, "store_size": store_size,
             "warmup_steps": warmup_steps}
    overrides = {k: v for k, v in given.items() if v is not None}
    config = PretrainConfig(
        backbone=backbone, labels=labels, data=data, out=out, seed=seed, device=device,
        precision=precision.value, channels_last=channels_last, compile=compile_,
        origin=origin.value, restart=restart, threads=threads, progress=progress,
        profile=profile.value, overrides=overrides, **{**settings, **overrides})
    check_sizes(config)
    if _rank() == 0:
        _say_cpu_estimate(config)
    if overrides and progress and _rank() == 0:
        typer.echo("pretrain: profile {} with {}".format(
            profile.value, ", ".join(f"{k}={v}" for k, v in overrides.items())), err=True)
    watch = build_monitor(monitor.value if monitor else None, monitor_voc,
                          backbone=config.backbone, backbone_params=config.backbone_params,
                          image_size=config.image_size, every=monitor_every,
                          voc_missing="--monitor needs --monitor-voc (the VOC folder to probe on)")
    logs = _loggers(logger, config)
    try:
        path = run_pretrain(config, monitor=watch, loggers=logs)
    finally:
        files = logs.close()
    if _rank() == 0:
        typer.echo(f"pretrain: {backbone} -> {path}")
        if files:
            typer.echo(f"pretrain: logs in {logs.folder}: {', '.join(files)}")


def _loggers(names, config):
    """The loggers ``--logger`` names, writing to ``OUT/logs`` (rank 0 only), with the
    run's configuration logged."""
    from harness.api.registry import default_registry
    from harness.pipeline.loggers import RunLogs

    for name in names:      # an unknown name is refused before anything is trained
        default_registry().get("logger", name)
    logs = RunLogs.open(names, Path(config.out) / "logs", Path(config.out).name)
    if logs:
        logs.log_config(config.to_json())
    return logs


def check_sizes(config) -> None:
    """Refuse, before anything is decoded or trained, an image size whose frame store would
    not fit on disk or a batch whose images would not fit in memory (:mod:`harness.runtime.bounds`).
    A data folder that is no clip dataset is left for training to report as before."""
    from harness.runtime.bounds import check_pretext_sizes
    from harness.data.clips import ClipDataset
    from harness.api.errors import BadInputError
    from harness.data.framestore import store_path

    try:
        dataset = ClipDataset(config.data)
    except BadInputError:
        return
    size = config.store_size or config.image_size
    ranks = max(1, int(os.environ.get("WORLD_SIZE", "1")))
    check_pretext_sizes(n_clips=len(dataset), store_size=size, image_size=config.image_size,
                        batch_size=max(1, config.batch_size // ranks),
                        store=store_path(dataset, size),
                        store_option="--store-size" if config.store_size else "--image-size")


def _say_cpu_estimate(config) -> None:
    """How long the run would take on this CPU, for a profile that declares its CPU rate
    (:func:`harness.profiles.cpu_estimate`); training goes on without waiting."""
    from harness.data.clips import ClipDataset
    from harness.runtime.devices import resolve_device
    from harness.api.errors import BadInputError
    from harness.profiles import cpu_estimate, get_profile

    if resolve_device(config.device) != "cpu":
        return
    try:
        clips = len(ClipDataset(config.data))
    except BadInputError:       # training reports a folder that is no clip dataset
        return
    line = cpu_estimate(get_profile(config.profile), config.backbone, clips=clips,
                        epochs=config.epochs, image_size=config.image_size,
                        val_fraction=config.val_fraction, threads=config.threads or None)
    if line:
        typer.echo(line, err=True)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


"""``harness pretrain``: train a backbone to predict each frame's sound pseudo-label.

    harness pretrain --backbone alexnet --labels labels.npy --data clips/ --out runs/a
    torchrun --nproc-per-node 4 -m harness pretrain --backbone resnet18 ...   # DDP

Writes ``OUT/last.pt`` (the checkpoint ``harness eval --checkpoint`` takes; rewritten
after every epoch), ``OUT/metrics.jsonl`` (one line per epoch) and ``OUT/config.json``.
Rerunning the same command resumes an interrupted run from its last checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer


def pretrain(
    backbone: str = typer.Option(..., "--backbone", "-b", help="Backbone (see `harness plugins`), "
                                 "e.g. alexnet, resnet18, timm:resnet50."),
    labels: Path = typer.Option(..., "--labels", help="Pseudo-labels .npy from `harness label` "
                                "(with its .json sidecar)."),
    data: Path = typer.Option(..., "--data", help="The clip dataset the labels belong to."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: last.pt, metrics.jsonl."),
    epochs: int = typer.Option(30, "--epochs", help="Fixed number of epochs (the paper: 200)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Global batch size."),
    lr: float = typer.Option(0.01, "--lr", help="Peak learning rate of the one-cycle schedule."),
    weight_decay: float = typer.Option(0.01, "--weight-decay", help="AdamW weight decay."),
    image_size: int = typer.Option(64, "--image-size", help="Side of the training images (px)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of clips held out."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, initialisation and augmentation."),
    param: List[str] = typer.Option([], "--backbone-param", "-p", help="Backbone parameter "
                                    "NAME=VALUE (repeatable), e.g. -p img_size=64."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    precision: str = typer.Option("auto", "--precision", help="auto | bf16 | fp32 (auto: bf16 "
                                  "autocast on CUDA and on CPUs with native bf16)."),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last",
                                       help="Channels-last memory format."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the network."),
    checkpoint_every: int = typer.Option(1, "--checkpoint-every", help="Epochs between checkpoints."),
    origin: str = typer.Option("pretext", "--origin", help="Recorded in the checkpoint: pretext "
                               "(sound labels) or supervised (true labels)."),
    restart: bool = typer.Option(False, "--restart", help="Overwrite a checkpoint of another run in OUT."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    monitor: Optional[str] = typer.Option(None, "--monitor", help="Watch representation quality "
                                          "while training: knn or linear_probe on VOC train -> "
                                          "val (needs --monitor-voc)."),
    monitor_voc: Optional[Path] = typer.Option(None, "--monitor-voc", help="VOCdevkit/VOC2007 "
                                               "folder the monitor reads (train and val only)."),
    monitor_every: int = typer.Option(10, "--monitor-every", help="Epochs between monitor "
                                      "evaluations (and after the last)."),
) -> None:
    """Train a backbone on pseudo-labels (cross-entropy or BCE, AdamW, one-cycle schedule)."""
    from harness.cli.params import parse_params
    from harness.pretrain import PretrainConfig
    from harness.pretrain import pretrain as run_pretrain

    config = PretrainConfig(
        backbone=backbone, labels=labels, data=data, out=out, backbone_params=parse_params(param),
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
        image_size=image_size, val_fraction=val_fraction, seed=seed, device=device,
        precision=precision, channels_last=channels_last, compile=compile_,
        checkpoint_every=checkpoint_every, origin=origin, restart=restart, threads=threads,
        progress=progress)
    path = run_pretrain(config, monitor=_monitor(monitor, monitor_voc, monitor_every, backbone,
                                                 parse_params(param), image_size))
    if _rank() == 0:
        typer.echo(f"pretrain: {backbone} -> {path}")


def _monitor(kind, voc, every, backbone, params, image_size):
    """The per-epoch monitor the options ask for, or None."""
    if kind is None:
        return None
    from harness.checkpoint import build_backbone
    from harness.errors import BadInputError
    from harness.monitor import Monitor, MonitorConfig

    if voc is None:
        raise BadInputError("--monitor needs --monitor-voc (the VOC folder to probe on)")
    bb = build_backbone(backbone, params)
    return Monitor(MonitorConfig(kind=kind, voc=voc, every=every, image_size=image_size),
                   bb.mean, bb.std)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


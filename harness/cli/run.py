"""``harness run`` and ``harness sweep``: the whole benchmark in one command."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.params import parse_params

_RESULTS_HELP = "Folder for result records (the committed leaderboard's live in leaderboards/results)."


def _config(**kw):
    from harness.pipeline import RunConfig

    return RunConfig(**kw)


def run(
    repr: str = typer.Option("mfcc", "--repr", help="Sound representation plugin."),
    backbone: str = typer.Option("alexnet", "--backbone", help="Backbone plugin (alexnet, resnet18, timm:<name>)."),
    k: int = typer.Option(15, "--k", help="Number of clusters (for labelers that take k)."),
    labeler: str = typer.Option("kmeans", "--labeler", help="Labeler plugin."),
    init: str = typer.Option("sound", "--init", help="sound (pretext on sound clusters), random or supervised (true toy labels)."),
    profile: str = typer.Option("toy", "--profile", help="toy (CPU-sized) or paper (200 epochs, full VOC07 protocol)."),
    seed: int = typer.Option(0, "--seed", help="Seed of clustering, pretext training and evaluation."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
    clips: Path = typer.Option(None, "--clips", help="A clip dataset (default: the toy world)."),
    voc: Path = typer.Option(None, "--voc", help="A VOCdevkit/VOC2007 folder (default: the toy VOC)."),
    preset: str = typer.Option("krahenbuhl", "--preset", help="VOC07 protocol preset: krahenbuhl or deepcluster."),
    epochs: int = typer.Option(None, "--epochs", help="Override the profile's pretext epochs."),
    lr: float = typer.Option(None, "--lr", help="Override the profile's pretext learning rate."),
    repr_param: list[str] = typer.Option(None, "--repr-param", help="key=value for the representation."),
    labeler_param: list[str] = typer.Option(None, "--labeler-param", help="key=value for the labeler."),
    results: Path = typer.Option(Path("results"), "--results", help=_RESULTS_HELP),
    monitor: str = typer.Option(None, "--monitor", help="Watch the pretext run: knn or "
                                "linear_probe on VOC train -> val every --monitor-every epochs."),
    monitor_every: int = typer.Option(10, "--monitor-every", help="Epochs between monitor evaluations."),
) -> None:
    """Run the whole benchmark: data, features, labels, pretext training, VOC07, record."""
    from harness.pipeline import run as run_pipeline

    config = _config(repr=repr, repr_params=parse_params(repr_param), labeler=labeler,
                     labeler_params=parse_params(labeler_param), k=k, backbone=backbone,
                     init=init, profile=profile, seed=seed, device=device, clips=clips, voc=voc,
                     preset=preset, epochs=epochs, lr=lr, results=results, monitor=monitor,
                     monitor_every=monitor_every)
    result = run_pipeline(config, echo=typer.echo)
    typer.echo(f"record: {result.path}")


def sweep(
    repr: list[str] = typer.Option(["mfcc"], "--repr", help="Representations (repeat the option)."),
    k: list[int] = typer.Option([15], "--k", help="Cluster counts (repeat the option)."),
    backbone: list[str] = typer.Option(["alexnet"], "--backbone", help="Backbones (repeat the option)."),
    seed: list[int] = typer.Option([0], "--seed", help="Seeds (repeat the option)."),
    labeler: str = typer.Option("kmeans", "--labeler"),
    profile: str = typer.Option("toy", "--profile"),
    device: str = typer.Option("auto", "--device"),
    clips: Path = typer.Option(None, "--clips"),
    voc: Path = typer.Option(None, "--voc"),
    preset: str = typer.Option("krahenbuhl", "--preset"),
    epochs: int = typer.Option(None, "--epochs"),
    lr: float = typer.Option(None, "--lr"),
    results: Path = typer.Option(Path("results"), "--results", help=_RESULTS_HELP),
) -> None:
    """Run every combination of --repr x --k x --backbone x --seed (Figures 3 and 4)."""
    from harness.pipeline import sweep as sweep_pipeline

    base = _config(labeler=labeler, profile=profile, device=device, clips=clips, voc=voc,
                   preset=preset, epochs=epochs, lr=lr, results=results)
    done = sweep_pipeline(base, repr, k, backbone, seed, echo=typer.echo)
    typer.echo(f"{len(done)} records in {results}")

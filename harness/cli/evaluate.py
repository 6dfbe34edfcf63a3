"""``harness eval``: one evaluator's metrics for a checkpoint (or a ``random:`` network).

The evaluator is called through the contract alone (:mod:`harness.evaluation.stage`), so any
installed evaluator works here as in ``harness run``. Prints the headline figure and the
breakdown table; ``--out`` writes the metrics (the EvalMetrics fields) as JSON, and an
evaluator's per-image test scores beside it (``<name>.scores.npz``, as a record's);
``--scores-out`` copies the per-image score file an evaluator names in
``details["scores_file"]`` (the VOC07 evaluators write one, so anyone can recompute the
APs). Without ``--voc`` the profile's toy VOC is used, as ``harness run`` does.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

import typer

from harness.api.errors import BadInputError, HarnessError, PluginError
from harness.cli.defaults import PROFILE
from harness.profiles import DEFAULT_DEVICE, DEFAULT_EVALUATORS, DEFAULT_SEED, ProfileName

#: the toy world whose VOC is used when ``--voc`` is not given (as ``harness run``'s default)
TOY_WORLD_SEED = 0


class Preset(str, Enum):
    """The VOC07 evaluators' published protocols (their ``preset`` parameter)."""

    krahenbuhl = "krahenbuhl"
    deepcluster = "deepcluster"


class HeadInit(str, Enum):
    """The VOC07 evaluators' readings of "Head" (their ``head_init`` parameter)."""

    pretext = "pretext"
    random = "random"


class Split(str, Enum):
    """The VOC07 evaluators' training split (their ``train_split`` parameter)."""

    trainval = "trainval"
    train = "train"


def evaluate(
    evaluator: str = typer.Option(DEFAULT_EVALUATORS[0], "--evaluator", "-e",
                                  help="Evaluator plugin, e.g. {} (\"Head\") or {} "
                                       "(\"All\").".format(*DEFAULT_EVALUATORS)),
    checkpoint: str = typer.Option(..., "--checkpoint", "-c",
                                   help="A pretext checkpoint (.pt), random:<backbone> for "
                                        "a never-trained network (with the profile's "
                                        "backbone parameters), or another framework's "
                                        "weights: torchvision:alexnet=PATH, "
                                        "torchvision:resnet18=PATH, timm:NAME=PATH "
                                        "(.pth, .pt, .safetensors)."),
    voc: Optional[Path] = typer.Option(None, "--voc",
                                       help="VOCdevkit or VOC2007 folder. Default: the "
                                            "profile's toy VOC, generated into the cache on "
                                            "first use (the one `harness run` uses)."),
    profile: ProfileName = typer.Option(PROFILE, "--profile",
                                        help="Scales the protocol and sets the backbone of a "
                                             "random: network."),
    eval_param: List[str] = typer.Option([], "--eval-param", "-p",
                                         help="Evaluator parameter NAME=VALUE (repeatable)."),
    preset: Optional[Preset] = typer.Option(None, "--preset",
                                            help="Shorthand for -p preset=...; default: the "
                                                 "evaluator's."),
    head_init: Optional[HeadInit] = typer.Option(None, "--head-init",
                                                 help="Shorthand for -p head_init=...: keep "
                                                      "fc6-fc7 (pretext) or re-initialise "
                                                      "them (random); default: the preset's."),
    split: Optional[Split] = typer.Option(None, "--split",
                                          help="Shorthand for -p train_split=...: train on "
                                               "trainval (report on test), or on train to "
                                               "tune (report on val)."),
    iterations: Optional[int] = typer.Option(None, "--iterations",
                                             help="Shorthand for -p iterations=N (recorded "
                                                  "as an override of the profile's)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Shorthand for -p lr=X (tune it on "
                                                           "--split train)."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", min=0, help="Seed of the evaluation's own randomness."),
    backbone: Optional[str] = typer.Option(None, "--backbone",
                                           help="Expected backbone: refuse a checkpoint of "
                                                "another one."),
    device: str = typer.Option(DEFAULT_DEVICE, "--device", help="auto | cpu | cuda | cuda:N"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the metrics JSON here."),
    scores_out: Optional[Path] = typer.Option(None, "--scores-out",
                                              help="Copy the evaluator's per-image test "
                                                   "scores here (VOC07: CSV of image id, "
                                                   "split, the 20 summed class scores, the 20 "
                                                   "labels: 1 present, 0 absent, -1 "
                                                   "difficult-only)."),
    workdir: Optional[Path] = typer.Option(None, "--workdir",
                                           help="Resumable training state (default: under "
                                                "the cache)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """Evaluate a checkpoint with one evaluator (default: VOC07 classification "Head")."""
    from harness.runtime.cache import cache_root, stage_key
    from harness.cli.params import parse_params
    from harness.runtime.devices import resolve_device
    from harness.evaluation.stage import metrics_dict, run_evaluator
    from harness.runtime.io import check_output_path, write_bytes, write_json
    from harness.api.registry import default_registry
    from harness.profiles import get_profile

    from harness.runtime.bounds import probe_writable

    for option, path in (("--out", out), ("--scores-out", scores_out)):
        if path is not None:    # refused now, not after the evaluation
            check_output_path(path)
            probe_writable(path, option)
    prof = get_profile(profile)
    shorthands = {"preset": preset, "head_init": head_init, "train_split": split,
                  "iterations": iterations, "lr": lr}
    params = {**parse_params(eval_param),
              **{k: (v.value if isinstance(v, Enum) else v)
                 for k, v in shorthands.items() if v is not None}}
    ev = default_registry().create("evaluator", evaluator, **params)
    dev = resolve_device(device)
    voc_root = voc if voc is not None else default_toy_voc(prof, progress)
    model = load_model(checkpoint, seed, backbone, prof)
    if model.origin == "imported":      # where the weights came from, before minutes of work
        i = model.meta["imported"]
        typer.echo(f"imported {i['source']}:{i['architecture']} weights from {i['file']} "
                   f"(sha256 {i['sha256']}) into backbone {model.backbone.name!r}", err=True)
    if workdir is None:
        workdir = cache_root() / "eval" / stage_key(
            "eval-cli", ev.name, ev.params(), prof.name, seed, checkpoint,
            str(Path(voc_root).resolve()))
    metrics = run_evaluator(ev, model, Path(voc_root), profile=prof.name, seed=seed,
                            device=dev, work_dir=workdir, progress=progress)
    scores_file = metrics.details.get("scores_file")
    if scores_out is not None and not scores_file:
        raise BadInputError(f"--scores-out: evaluator {ev.name!r} writes no per-image scores")
    typer.echo(format_table(ev.name, metrics_dict(metrics)))
    if out is not None:
        write_json(out, metrics_dict(metrics))
        typer.echo(f"metrics written to {out}")
        if metrics.test_scores is not None:
            from harness.results.scores import npz_bytes

            sidecar = scores_sidecar(out)
            write_bytes(sidecar, npz_bytes({ev.name: metrics.test_scores}))
            typer.echo(f"per-image test scores written to {sidecar}")
    if scores_out is not None:
        write_bytes(scores_out, Path(scores_file).read_bytes())
        typer.echo(f"test scores written to {scores_out}")


# ----------------------------------------------------------------------------- helpers
def scores_sidecar(out: Path) -> Path:
    """Where ``--out FILE.json`` puts the per-image test scores: ``FILE.scores.npz``, the
    sidecar format of a result record (:mod:`harness.results.scores`)."""
    from harness.results.scores import SUFFIX

    return out.with_name(out.name.removesuffix(".json") + SUFFIX)


def default_toy_voc(profile, progress: bool = True) -> Path:
    """The toy VOC that ``harness run`` uses (world seed 0, the profile's size and sealed
    test split)."""
    from harness.pipeline.data_stage import profile_toy_voc

    return profile_toy_voc(profile, TOY_WORLD_SEED, progress)


def load_model(spec: str, seed: int, expected_backbone: str | None, profile=None):
    """The network of ``spec`` (a random one initialised from ``seed`` with the profile's
    backbone parameters); check its backbone."""
    from harness.networks.checkpoint import RANDOM_PREFIX, backbone_name, load_pretrained
    from harness.networks.foreign import is_foreign_spec, load_foreign

    if is_foreign_spec(spec):       # another framework's weights: the spec names the backbone
        return load_foreign(spec, seed=seed, expected_backbone=expected_backbone)
    params = None
    if profile is not None and spec.startswith(RANDOM_PREFIX):
        params = profile.backbone_params_for(spec[len(RANDOM_PREFIX):])
    try:
        model = load_pretrained(spec, seed=seed, backbone_params=params)
    except PluginError as exc:     # e.g. a file naming a backbone with parameters it lacks
        raise BadInputError(f"{spec}: {exc}") from None
    except HarnessError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken file gets one line, not a traceback
        raise BadInputError(f"{spec}: cannot load checkpoint ({type(exc).__name__}: {exc})") \
            from None
    name = backbone_name(model)
    if expected_backbone is not None and name != expected_backbone:
        raise BadInputError(f"{spec}: checkpoint is for backbone {name!r}, "
                            f"not {expected_backbone!r}")
    return model


def format_table(name: str, metrics: dict[str, Any]) -> str:
    """The breakdown table and the headline line, as printed by ``harness eval``.

    Columns: the headline figure's breakdown, then every ``details`` entry keyed exactly
    like it with a number per key (for VOC07: the per-class AP of the 11-point and VOC10
    formulas; for the frozen-feature evaluators, whose per-layer details are per-class
    tables, none).
    """
    from tabulate import tabulate

    breakdown = metrics["breakdown"]
    extra = {k: v for k, v in sorted(metrics["details"].items())
             if isinstance(v, dict) and v and set(v) == set(breakdown)
             and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                     for x in v.values())}
    rows = [[key, value, *(e[key] for e in extra.values())] for key, value in breakdown.items()]
    table = tabulate(rows, headers=["", metrics["headline"], *extra], floatfmt=".1f")
    p = metrics["protocol"]
    shown = ", ".join(f"{k} {v}" for k, v in p.items()
                      if isinstance(v, (str, int, float)) and not isinstance(v, bool)
                      and len(str(v)) <= 24 and k != "source")
    timings = metrics["details"].get("timings", {})
    seconds = f"; {timings['total_s']:.0f} s" if "total_s" in timings else ""
    where = f" on {metrics['details']['device']}" if "device" in metrics["details"] else ""
    head = f"{name}: {shown}"
    foot = (f"{metrics['headline']} {metrics['value']:.1f} ({metrics['formula']})"
            f"{seconds}{where}")
    return f"{head}\n{table}\n{foot}"

"""``harness eval``: a checkpoint's VOC07 classification mAP ("Head" or "All").

Prints mAP and the per-class AP table; ``--out`` writes the metrics (every AP kind, per
class, the protocol's full parameters, timings) as JSON; ``--scores-out`` writes each test
image's summed class scores and labels as CSV, so anyone can recompute the APs.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Any, Optional

import typer

from harness.errors import BadInputError, HarnessError, PluginError

#: the toy world whose VOC is used when ``--voc`` is not given (as ``harness run``'s default)
TOY_WORLD_SEED = 0


def evaluate(
    evaluator: str = typer.Option("voc07_linear", "--evaluator", "-e",
                                  help="voc07_linear (\"Head\") or voc07_full (\"All\")."),
    checkpoint: str = typer.Option(..., "--checkpoint", "-c",
                                   help="A pretext checkpoint (.pt), or random:<backbone> for "
                                        "a never-trained network."),
    voc: Optional[Path] = typer.Option(None, "--voc",
                                       help="VOCdevkit or VOC2007 folder. Default: the toy "
                                            "VOC, generated into the cache on first use."),
    profile: str = typer.Option("toy", "--profile", help="toy | paper"),
    preset: str = typer.Option("krahenbuhl", "--preset", help="krahenbuhl | deepcluster"),
    head_init: Optional[str] = typer.Option(None, "--head-init",
                                            help="pretext (keep fc6-fc7) | random "
                                                 "(re-initialise them); default: the preset's."),
    split: str = typer.Option("trainval", "--split",
                              help="Train on trainval (report on test), or on train to tune "
                                   "hyperparameters (report on val)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the evaluation's own randomness."),
    iterations: Optional[int] = typer.Option(None, "--iterations",
                                             help="Override the profile's iteration count "
                                                  "(recorded as an override)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Override the learning rate "
                                                           "(tune it on --split train)."),
    backbone: Optional[str] = typer.Option(None, "--backbone",
                                           help="Expected backbone: refuse a checkpoint of "
                                                "another one."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the metrics JSON here."),
    scores_out: Optional[Path] = typer.Option(None, "--scores-out",
                                              help="Write per-image test scores (CSV) here: "
                                                   "image id, split, the 20 summed class "
                                                   "scores, the 20 labels (1 present, 0 "
                                                   "absent, -1 difficult-only)."),
    workdir: Optional[Path] = typer.Option(None, "--workdir",
                                           help="Resumable training state (default: under "
                                                "the cache)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """Evaluate a checkpoint on PASCAL VOC 2007 classification ("Head" or "All")."""
    from harness.cache import cache_root, stage_key
    from harness.io import check_output_path, write_json, write_text
    from harness.plugins import default_registry

    for path in (out, scores_out):     # refused now, not after the evaluation
        if path is not None:
            check_output_path(path)

    ev = default_registry().create(
        "evaluator", evaluator, preset=preset, profile=profile, head_init=head_init,
        seed=seed, train_split=split, iterations=iterations, lr=lr)
    voc_root = voc if voc is not None else default_toy_voc(progress)
    model = load_model(checkpoint, seed, backbone)
    dev = resolve_device(device)
    own_workdir = workdir is None
    if own_workdir:
        workdir = cache_root() / "eval" / stage_key(
            "eval", ev.name, ev.params(), checkpoint, str(Path(voc_root).resolve()))
    result = ev.run(model, Path(voc_root), device=dev, workdir=workdir, progress=progress)
    if own_workdir:   # resumable state is for interrupted runs; a finished one needs none
        shutil.rmtree(workdir, ignore_errors=True)
    metrics = result.metrics
    typer.echo(format_table(metrics))
    if out is not None:
        write_json(out, metrics)
        typer.echo(f"metrics written to {out}")
    if scores_out is not None:
        write_text(scores_out, scores_csv(result.scores))
        typer.echo(f"test scores written to {scores_out}")


# ----------------------------------------------------------------------------- helpers
def default_toy_voc(progress: bool = True) -> Path:
    """The toy VOC that ``harness run`` uses (world seed 0), generated once into the cache."""
    from harness.pipeline import toy_voc

    return toy_voc(TOY_WORLD_SEED, progress)


def load_model(spec: str, seed: int, expected_backbone: str | None):
    """The network of ``spec`` (a random one initialised from ``seed``); check its backbone."""
    from harness.checkpoint import load_pretrained
    from harness_plugins.evaluators.voc07 import backbone_name

    try:
        model = load_pretrained(spec, seed=seed)
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


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def format_table(metrics: dict[str, Any]) -> str:
    """Per-class AP table (three formulas) and the mAP line, as printed by ``harness eval``."""
    from tabulate import tabulate

    rows = [[c, metrics["ap"][c], metrics["ap_voc07_11pt"][c], metrics["ap_voc10"][c]]
            for c in metrics["classes"]]
    rows.append(["mAP", metrics["map"], metrics["map_voc07_11pt"], metrics["map_voc10"]])
    table = tabulate(rows, headers=["class", "AP (sklearn, pessimistic ties)", "VOC07 11-pt",
                                    "VOC10 all-point"], floatfmt=".1f")
    p = metrics["protocol"]
    head = (f"{metrics['evaluator']} ({'Head' if p['mode'] == 'head' else 'All'}): preset "
            f"{p['preset']}, profile {p['profile']}, head_init {p['head_init']}, seed "
            f"{p['seed']}, {p['iterations']} iterations, trained on {p['train_split']}, "
            f"tested on {p['test_split']} ({metrics['n_test']} images)")
    bn = "; BatchNorm statistics recomputed on the training images" \
        if metrics.get("bn_recomputed") else ""
    foot = (f"mAP {metrics['map']:.1f} (sklearn_pessimistic, Table 1's formula){bn}; "
            f"{metrics['timings']['total_s']:.0f} s on {metrics['device']}")
    return f"{head}\n{table}\n{foot}"


def scores_csv(scores) -> str:
    """CSV text: image_id, split, trained_on, 20 summed scores, 20 labels (1/0/-1 difficult)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    names = list(scores.class_names)
    writer.writerow(["image_id", "split", "trained_on"] + [f"score_{c}" for c in names]
                    + [f"label_{c}" for c in names])
    for i, image_id in enumerate(scores.image_ids):
        writer.writerow([image_id, scores.split, scores.trained_on]
                        + [repr(float(s)) for s in scores.scores[i]]
                        + [int(v) for v in scores.labels[i]])
    return buf.getvalue()

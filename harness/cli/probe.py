"""``harness probe``: the frozen-feature evaluators on one checkpoint, sharing one extraction.

    harness probe --checkpoint runs/a/last.pt -e linear_probe -e voc07_svm -e knn --out m.json
    harness probe --checkpoint random:alexnet -p pool=1 -p fc_units=1024 -e knn

Features of trainval and test are extracted once (cached under the checkpoint's weights,
the split and the views) and read by every evaluator named. Prints test mAP per layer and
evaluator; ``--out`` writes each evaluator's metrics (the evaluator contract's fields) as
JSON.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional

import typer

#: the frozen-feature evaluators run when none is named
DEFAULT_EVALUATORS = ("linear_probe", "voc07_svm", "knn")


def probe(
    checkpoint: str = typer.Option(..., "--checkpoint", "-c", help="A checkpoint (.pt) or "
                                   "random:<backbone>."),
    evaluator: List[str] = typer.Option(list(DEFAULT_EVALUATORS), "--evaluator", "-e",
                                        help="Frozen-feature evaluator (repeatable): "
                                             "linear_probe, voc07_svm, voc07_lowshot, knn."),
    voc: Optional[Path] = typer.Option(None, "--voc", help="VOCdevkit or VOC2007 folder "
                                       "(default: the toy VOC)."),
    profile: str = typer.Option("toy", "--profile", help="toy | paper"),
    seed: int = typer.Option(0, "--seed", help="Seed of the views, samples and a random network."),
    layer: List[str] = typer.Option([], "--layer", help="Layer to capture (repeatable; "
                                    "default: every layer the network declares)."),
    param: List[str] = typer.Option([], "--backbone-param", "-p", help="NAME=VALUE for a "
                                    "random:<backbone> network (repeatable)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the metrics JSON here."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """Score a checkpoint's frozen features: per-layer linear probes, VOC07 SVMs, kNN."""
    from tabulate import tabulate

    from harness.cache import cache_root
    from harness.checkpoint import load_pretrained
    from harness.cli.params import parse_params
    from harness.interfaces import EvalContext
    from harness.io import write_json
    from harness.plugins import default_registry

    registry = default_registry()
    extra = {"layers": list(layer)} if layer else {}
    evaluators = [registry.create("evaluator", name, profile=profile, seed=seed, **extra)
                  for name in evaluator]
    voc_root = voc if voc is not None else _toy_voc(progress)
    dev = _device(device)
    model = load_pretrained(checkpoint, seed=seed, backbone_params=parse_params(param) or None)
    work = cache_root() / "probe"
    work.mkdir(parents=True, exist_ok=True)
    context = EvalContext(profile=profile, seed=seed, device=dev, work_dir=work,
                          progress=progress)
    results, rows = {}, {}
    for ev in evaluators:
        started = time.perf_counter()
        metrics = ev.evaluate(model, Path(voc_root), context)
        typer.echo(f"{ev.name}: {metrics.headline} = {metrics.value:.2f} "
                   f"({time.perf_counter() - started:.1f} s)")
        results[ev.name] = asdict(metrics)
        for key, value in metrics.breakdown.items():
            rows.setdefault(key, {})[ev.name] = value
    names = [ev.name for ev in evaluators]
    table = [[key, *(f"{rows[key][n]:.1f}" if n in rows[key] else "—" for n in names)]
             for key in rows]
    typer.echo(tabulate(table, headers=["layer / k", *names], tablefmt="github",
                        disable_numparse=True))
    if out is not None:
        write_json(out, {"checkpoint": checkpoint, "voc": str(voc_root), "metrics": results})
        typer.echo(f"metrics written to {out}")


def _toy_voc(progress: bool) -> Path:
    from harness.pipeline import toy_voc

    return toy_voc(0, (1000, 1000), progress)


def _device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device

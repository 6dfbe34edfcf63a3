"""The checkpoint format shared by pretext training and the downstream evaluators.

A checkpoint is one file written by ``torch.save`` and read with ``weights_only=True``
(plain tensors, numbers, strings, lists and dicts; no pickled code). It holds::

    format           "harness-checkpoint/1"
    backbone         registry name of the backbone plugin ("alexnet", "timm:resnet50", ...)
    backbone_params  the plugin's params() (JSON-able)
    num_outputs      size of the output layer
    output_kind      "classes" (softmax, cross-entropy) or "bits" (sigmoids, BCE)
    input_size       side of the square images the network was trained on
    mean, std        the normalisation applied to [0, 1] RGB input
    model            the BackboneNet's state_dict
    meta             JSON-able facts: origin, labels, data, configuration, metrics, versions
    train_state      (optional) what resuming needs: optimizer and scheduler state, epoch

:func:`load_pretrained` turns a checkpoint path -- or ``random:<backbone>`` for an untrained
network -- into a :class:`harness.interfaces.PretrainedModel` for the evaluators.
"""

from __future__ import annotations

import math
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from harness.errors import BadInputError
from harness.interfaces import Backbone, OutputKind, PretrainedModel
from harness.io import save_torch
from harness.nets import BackboneNet

FORMAT = "harness-checkpoint/1"
#: the prefix of a spec naming an untrained network: ``random:alexnet``
RANDOM_PREFIX = "random:"
#: output layer size of a ``random:`` network (evaluators replace the output layer anyway)
RANDOM_NUM_OUTPUTS = 20
REQUIRED_KEYS = ("backbone", "backbone_params", "num_outputs", "output_kind", "input_size",
                 "mean", "std", "model", "meta")


def unwrap(net: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DistributedDataParallel and/or ``torch.compile`` wrappers."""
    while True:
        if hasattr(net, "module") and isinstance(net.module, torch.nn.Module):
            net = net.module
        elif hasattr(net, "_orig_mod"):
            net = net._orig_mod
        else:
            return net


def save_checkpoint(path: str | Path, *, backbone_name: str, backbone: Backbone,
                    net: torch.nn.Module, output_kind: OutputKind, image_size: int,
                    mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                    meta: dict[str, Any] | None = None,
                    train_state: dict[str, Any] | None = None) -> None:
    """Write a checkpoint atomically (a reader sees the old file or the new one, never half).

    ``backbone_name`` is the name the registry knows the backbone by (a family member such
    as ``timm:resnet50`` keeps its full name); ``net`` may be wrapped in DDP or compiled.
    ``mean`` and ``std`` default to the backbone's normalisation.
    """
    plain = unwrap(net)
    if not isinstance(plain, BackboneNet):
        raise TypeError("save_checkpoint expects a harness.nets.BackboneNet")
    obj = {
        "format": FORMAT,
        "backbone": backbone_name,
        "backbone_params": backbone.params(),
        "num_outputs": plain.num_outputs,
        "output_kind": output_kind,
        "input_size": int(image_size),
        "mean": [float(m) for m in (backbone.mean if mean is None else mean)],
        "std": [float(s) for s in (backbone.std if std is None else std)],
        "model": {k: v.detach().cpu() for k, v in plain.state_dict().items()},
        "meta": dict(meta or {}),
    }
    if train_state is not None:
        obj["train_state"] = train_state
    # Skipping the zip records' CRC32 halves the time to write AlexNet's 0.7 GB training
    # state; the atomic rename already guarantees that no reader sees a partial file.
    crc = torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(False)
    try:
        save_torch(path, obj)
    finally:
        torch.serialization.set_crc32_options(crc)


def read_checkpoint(path: str | Path, map_location: Any = "cpu", *,
                    mmap: bool = True) -> dict[str, Any]:
    """Load and check a checkpoint file; a file that is not one raises a one-line error.

    By default the file is memory-mapped, so an evaluator that needs only the weights does
    not read the optimizer state a resumable checkpoint also holds. Resuming reads it
    whole (``mmap=False``): the file is replaced while training goes on.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such checkpoint file (expected a .pt written by "
                            f"`harness pretrain`, or {RANDOM_PREFIX}<backbone>)")
    if not zipfile.is_zipfile(path):
        raise BadInputError(f"{path}: not a harness checkpoint (not a file written by torch.save)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError,
            AttributeError, TypeError) as exc:
        raise BadInputError(f"{path}: not a harness checkpoint (torch.load with "
                            f"weights_only=True failed: {_reason(exc)})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise BadInputError(f"{path}: not a harness checkpoint (format {found!r}, "
                            f"expected {FORMAT!r})")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise BadInputError(f"{path}: damaged harness checkpoint (missing {', '.join(missing)})")
    _check_fields(path, obj)
    return obj


def _check_fields(path: Path, obj: dict[str, Any]) -> None:
    """The declared sizes and normalisation must make sense before any network is built."""
    def bad(field: str, why: str) -> BadInputError:
        return BadInputError(f"{path}: damaged harness checkpoint ({field} {obj[field]!r}: {why})")

    for field, low, high in (("input_size", 8, 8192), ("num_outputs", 1, 100_000)):
        value = obj[field]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise bad(field, f"must be an integer in [{low}, {high}]")
    if obj["output_kind"] not in ("classes", "bits"):
        raise bad("output_kind", "must be 'classes' or 'bits'")
    for field in ("mean", "std"):
        values = obj[field]
        if (not isinstance(values, (list, tuple)) or len(values) != 3
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)):
            raise bad(field, "must be three finite numbers")
    if not all(v > 0 for v in obj["std"]):
        raise bad("std", "must be positive")
    if not isinstance(obj["backbone"], str) or not isinstance(obj["backbone_params"], dict):
        raise BadInputError(f"{path}: damaged harness checkpoint (backbone must be a name and "
                            f"backbone_params a dictionary)")


#: lines of torch.load's message that are advice (to turn the protection off), not a reason
_ADVICE = ("Weights only load failed", "Re-running `torch.load`", "Check the documentation",
           "In PyTorch 2.6")


def _reason(exc: Exception) -> str:
    """Why torch.load refused the file, in one line: the refused code or type it names
    (``unsupported GLOBAL posix.system``), without torch's advice to disable the check."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line] or [type(exc).__name__]
    useful = [line for line in lines if not line.startswith(_ADVICE)] or lines[:1]
    detail = next((line for line in useful if "GLOBAL" in line or "WeightsUnpickler" in line),
                  useful[0])
    detail = detail.split(" Please use ")[0]
    if "GLOBAL" in detail:
        detail = f"it holds pickled code: {detail.rstrip('.')}; refused, never executed"
    return detail[:200]


def build_backbone(name: str, params: dict[str, Any] | None = None) -> Backbone:
    """The backbone plugin ``name`` from the installed plugins."""
    from harness.plugins import default_registry

    return default_registry().create("backbone", name, **(params or {}))


def load_pretrained(spec: str | Path, map_location: Any = "cpu", *, seed: int = 0,
                    num_outputs: int = RANDOM_NUM_OUTPUTS,
                    backbone_params: dict[str, Any] | None = None) -> PretrainedModel:
    """A network to evaluate: a checkpoint file, or ``random:<backbone>`` (untrained).

    A ``random:`` network is initialised from ``seed`` (the global RNG is left untouched),
    with ``num_outputs`` outputs and ``backbone_params`` (a checkpoint file carries its own). ``meta`` of the result holds the checkpoint's meta plus
    ``input_size``, ``mean``, ``std``, ``output_kind`` and ``num_outputs``.
    """
    spec_str = str(spec)
    if spec_str.startswith(RANDOM_PREFIX):
        name = spec_str[len(RANDOM_PREFIX):]
        backbone = build_backbone(name, backbone_params)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = backbone.create(num_outputs)
        meta = {"init_seed": seed, "input_size": backbone.input_size, "mean": list(backbone.mean),
                "std": list(backbone.std), "output_kind": None, "num_outputs": num_outputs}
        return PretrainedModel(backbone=backbone, net=net.to(map_location), origin="random",
                               checkpoint=spec_str, meta=meta)

    path = Path(spec)
    ckpt = read_checkpoint(path, map_location)
    backbone = build_backbone(ckpt["backbone"], ckpt["backbone_params"])
    # the normalisation the network was trained with, whatever the plugin's default is now
    backbone.mean = tuple(ckpt["mean"])
    backbone.std = tuple(ckpt["std"])
    net = backbone.create(int(ckpt["num_outputs"]))
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise BadInputError(f"{path}: weights do not fit backbone {ckpt['backbone']!r} "
                            f"({first[:200]})") from None
    meta = dict(ckpt["meta"])
    meta.update(input_size=ckpt["input_size"], mean=list(ckpt["mean"]), std=list(ckpt["std"]),
                output_kind=ckpt["output_kind"], num_outputs=ckpt["num_outputs"])
    return PretrainedModel(backbone=backbone, net=net.to(map_location),
                           origin=str(meta.get("origin", "pretext")), checkpoint=str(path),
                           meta=meta)


def backbone_name(model: PretrainedModel) -> str:
    """The registry name of the model's backbone (a family member keeps its full name)."""
    name = model.backbone.name
    variant = getattr(model.backbone, "variant", None)
    return f"{name}{variant}" if name.endswith(":") and variant else name

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
    digest           {"method": DIGEST_METHOD, "model": sha256, "train_state": sha256}: a
                     digest of the tensors of ``model`` (and of ``train_state``)

The file's zip records carry their CRC-32. Reading checks the CRC of every small record
(the pickled structure: names, parameters, meta, the digest itself) and the digest of the
weights, so a flipped byte anywhere an evaluation depends on is refused naming the file,
including in a memory-mapped load that never reads the tensor records through the zip
layer. A checkpoint written before digests existed is checked by the CRC of every record
(when it has CRCs). Weights that hold NaN or infinite values are refused too.

:func:`load_pretrained` turns a checkpoint path -- or ``random:<backbone>`` for an untrained
network -- into a :class:`harness.api.interfaces.PretrainedModel` for the evaluators.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Iterator

import torch

from harness.api.errors import BadInputError, HarnessError
from harness.api.interfaces import Backbone, OutputKind, PretrainedModel
from harness.runtime.io import save_torch
from harness.networks.shape import BackboneNet

FORMAT = "harness-checkpoint/1"
#: the prefix of a spec naming an untrained network: ``random:alexnet``
RANDOM_PREFIX = "random:"
#: output layer size of a ``random:`` network (evaluators replace the output layer anyway)
RANDOM_NUM_OUTPUTS = 20
REQUIRED_KEYS = ("backbone", "backbone_params", "num_outputs", "output_kind", "input_size",
                 "mean", "std", "model", "meta")
#: how the digest is computed (:func:`tensor_digest`)
DIGEST_METHOD = "sha256-tensors/1"


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
        raise TypeError("save_checkpoint expects a harness.networks.shape.BackboneNet")
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
    digest = {"method": DIGEST_METHOD, "model": tensor_digest(obj["model"])}
    if train_state is not None:
        obj["train_state"] = train_state
        digest["train_state"] = tensor_digest(train_state)
    obj["digest"] = digest
    # the zip records' CRC-32 lets a reader find a damaged record (read_checkpoint)
    crc = torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(True)
    try:
        save_torch(path, obj)
    finally:
        torch.serialization.set_crc32_options(crc)


def _tensors(tree: Any, name: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in nested dicts, lists and tuples with its path (``a/b/0``), in an
    order that depends only on the content: dict keys sorted."""
    if isinstance(tree, torch.Tensor):
        yield name, tree
    elif isinstance(tree, dict):
        for key in sorted(tree, key=str):
            yield from _tensors(tree[key], f"{name}/{key}" if name else str(key))
    elif isinstance(tree, (list, tuple)):
        for i, item in enumerate(tree):
            yield from _tensors(item, f"{name}/{i}" if name else str(i))


def tensor_digest(tree: Any) -> str:
    """sha256 over every tensor in ``tree`` (a state dict, or nested dicts and lists of
    them): each one's path, dtype, shape and the bytes of its values in row-major order,
    so the same values give the same digest whatever device or memory layout they had."""
    h = hashlib.sha256()
    for name, tensor in _tensors(tree):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\n".encode())
        if flat.numel():
            h.update(flat.view(torch.uint8).numpy())
    return h.hexdigest()


def first_nonfinite(state: dict[str, Any]) -> str | None:
    """The name of the first floating-point tensor of ``state`` (sorted) holding a NaN or
    an infinity, or None."""
    for name, tensor in _tensors(state):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def read_checkpoint(path: str | Path, map_location: Any = "cpu", *, mmap: bool = True,
                    check_train_state: bool = False) -> dict[str, Any]:
    """Load and check a checkpoint file; a file that is not one, or a damaged one, raises
    a one-line error naming it.

    By default the file is memory-mapped, so an evaluator that needs only the weights does
    not read the optimizer state a resumable checkpoint also holds. Resuming reads it
    whole (``mmap=False``): the file is replaced while training goes on; it also checks
    the digest of the training state (``check_train_state``).
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such checkpoint file (expected a .pt written by "
                            f"`harness pretrain`, or {RANDOM_PREFIX}<backbone>)")
    if not zipfile.is_zipfile(path):
        with path.open("rb") as f:
            if f.read(4) == b"PK\x03\x04":      # a zip archive's start, without its end
                raise BadInputError(f"{path}: damaged checkpoint file (a zip archive without "
                                    f"its central directory: truncated?)")
        raise BadInputError(f"{path}: not a harness checkpoint (not a file written by torch.save)")
    _check_zip_records(path, tensors=False)
    obj = load_weights_only(path, "checkpoint", "not a harness checkpoint",
                            map_location=map_location, mmap=mmap)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        hint = ("; another framework's weights? name it: torchvision:alexnet=PATH, "
                "timm:NAME=PATH (docs/foreign-checkpoints.md)" if isinstance(obj, dict)
                and "format" not in obj else "")
        raise BadInputError(f"{path}: not a harness checkpoint (format {found!r}, "
                            f"expected {FORMAT!r}){hint}")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise BadInputError(f"{path}: damaged harness checkpoint (missing {', '.join(missing)})")
    _check_fields(path, obj)
    _check_content(path, obj, check_train_state)
    return obj


def load_weights_only(path: Path, kind: str, not_ours: str, **options: Any) -> Any:
    """``torch.load(path, weights_only=True)``, its failures turned into one line naming the
    file: a damaged zip archive (``damaged <kind> file``), or anything else torch refuses
    (``<not_ours>``, with the code or type it refused). Pickled code is never run."""
    try:
        return torch.load(path, weights_only=True, **options)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError,
            AttributeError, TypeError) as exc:
        if "PytorchStreamReader" in str(exc):
            raise BadInputError(f"{path}: damaged {kind} file (its zip archive cannot be "
                                f"read: {_zip_reason(exc)})") from None
        raise BadInputError(f"{path}: {not_ours} (torch.load with weights_only=True "
                            f"failed: {_reason(exc)})") from None


def _zip_reason(exc: Exception) -> str:
    """miniz's reason from torch's zip reader error, without torch's advice around it."""
    text = re.sub(r"\s+", " ", str(exc))
    found = re.search(r"failed reading zip archive: ([^.]*)", text)
    return found.group(1).strip() if found else text[:160]


def _check_zip_records(path: Path, tensors: bool) -> None:
    """Check the CRC-32 of the file's zip records: the small ones (the pickled structure),
    or only the tensor data records (``tensors``). A file whose records were all written
    without a CRC (a harness before CRCs were turned on) has nothing to check."""
    try:
        with zipfile.ZipFile(path) as archive:
            records = [r for r in archive.infolist() if r.file_size]
            if all(r.CRC == 0 for r in records):
                return
            for record in records:
                if bool(re.search(r"(^|/)data/\d+$", record.filename)) != tensors:
                    continue
                with archive.open(record) as f:
                    while f.read(1 << 22):
                        pass
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInputError(f"{path}: damaged checkpoint file (zip check failed: "
                            f"{detail[:160]})") from None


def _check_content(path: Path, obj: dict[str, Any], check_train_state: bool) -> None:
    """The weights match the digest written with them (or, in a file without one, every
    zip record its CRC), and they are finite numbers."""
    digest = obj.get("digest")
    if digest is None:
        _check_zip_records(path, tensors=True)
    else:
        if (not isinstance(digest, dict) or digest.get("method") != DIGEST_METHOD
                or not isinstance(digest.get("model"), str)):
            raise BadInputError(f"{path}: damaged harness checkpoint (digest {digest!r} is "
                                f"not one this harness writes: expected method "
                                f"{DIGEST_METHOD!r})")
        parts = ["model"] + (["train_state"] if check_train_state and "train_state" in obj
                             else [])
        for part in parts:
            if tensor_digest(obj.get(part)) != digest.get(part):
                raise BadInputError(f"{path}: checkpoint content does not match its digest "
                                    f"(damaged or edited)")
    bad = first_nonfinite(obj["model"]) if isinstance(obj["model"], dict) else None
    if bad is not None:
        raise BadInputError(f"{path}: the weights hold NaN or infinite values (first in "
                            f"tensor {bad!r}); a diverged or damaged checkpoint, refused")


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
    from harness.api.registry import default_registry

    return default_registry().create("backbone", name, **(params or {}))


def _checkpoint_backbone(path: Path, ckpt: dict[str, Any]) -> Backbone:
    """The backbone a checkpoint names, with its parameters; a name or parameter the
    plugins refuse is the file's fault, and the message says so."""
    name = ckpt["backbone"]
    try:
        return build_backbone(name, ckpt["backbone_params"])
    except (HarnessError, TypeError, ValueError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        detail = detail.removeprefix(f"backbone {name!r}: ")
        raise BadInputError(f"{path}: backbone {name!r} in this checkpoint: {detail}") from None


def load_pretrained(spec: str | Path, map_location: Any = "cpu", *, seed: int = 0,
                    num_outputs: int = RANDOM_NUM_OUTPUTS,
                    backbone_params: dict[str, Any] | None = None) -> PretrainedModel:
    """A network to evaluate: a checkpoint file, ``random:<backbone>`` (untrained), or
    another framework's weights, ``torchvision:alexnet=PATH`` (:mod:`harness.networks.foreign`).

    A ``random:`` network is initialised from ``seed`` (the global RNG is left untouched),
    with ``num_outputs`` outputs and ``backbone_params`` (a checkpoint file carries its own). ``meta`` of the result holds the checkpoint's meta plus
    ``input_size``, ``mean``, ``std``, ``output_kind`` and ``num_outputs``.
    """
    spec_str = str(spec)
    from harness.networks.foreign import is_foreign_spec, load_foreign

    if is_foreign_spec(spec_str):   # another framework's weights (harness.networks.foreign)
        return load_foreign(spec_str, map_location, seed=seed, backbone_params=backbone_params)
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
    backbone = _checkpoint_backbone(path, ckpt)
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

"""Weights from another framework: a torchvision or timm state dict, scored under the harness.

A spec names the framework, the architecture and the file::

    torchvision:alexnet=alexnet-owt-7be5be79.pth      -> backbone alexnet_tv
    torchvision:resnet18=resnet18-f37072fd.pth       -> backbone resnet18
    timm:resnet50=model.safetensors                  -> backbone timm:resnet50

``harness eval --checkpoint SPEC`` and ``harness run --init SPEC`` take one. The file is read
without running any code from it (``torch.load(weights_only=True)``, or the safetensors
format), the common wrappers are undone (a nested ``state_dict`` / ``model`` /
``state_dict_ema`` entry; a ``module.`` prefix from DistributedDataParallel, ``backbone.``,
``encoder.``, ``model.``), and each key is mapped by name onto the harness backbone
(:data:`TORCHVISION` and the per-backbone rules of :func:`map_keys`). The mapped weights
must fit the network exactly: every missing, unexpected or mis-shaped key is listed in the
refusal, never skipped. Only the final output layer may be absent (it is made fresh from
the seed; every evaluator replaces it anyway); a timm classifier is always dropped for the
backbone's own new output layer.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.api.errors import BadInputError, HarnessError

#: the frameworks a spec may name
SOURCES = ("torchvision", "timm")
#: torchvision architectures the harness has a backbone of the same layout for
TORCHVISION: dict[str, str] = {"alexnet": "alexnet_tv", "resnet18": "resnet18"}
#: how an architecture reads in a message
_DESCRIBED = {
    ("torchvision", "alexnet"): "torchvision's AlexNet (no batch normalisation; "
                                "64-192-384-256-256 channels)",
    ("torchvision", "resnet18"): "torchvision's ResNet-18",
    "alexnet": "the AlexNet with batch normalisation after every convolution, DeepCluster's, "
               "of 96-256-384-384-256 channels",
}
#: prefixes that training wrappers put in front of every key, undone in this order
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "backbone.", "encoder.", "model.")
#: entries of a training checkpoint that hold the state dict, in order of preference
NESTED_KEYS = ("state_dict", "model", "state_dict_ema")
_SPEC = re.compile(r"^(?P<source>[a-z]+):(?P<arch>[A-Za-z0-9_.\-]+)=(?P<path>.+)$")
#: keys torch fills in itself when a state dict lacks them (BatchNorm's counter)
_OPTIONAL_SUFFIXES = (".num_batches_tracked",)
#: mismatched keys named per kind in a refusal
_SHOWN = 8


@dataclass(frozen=True)
class ForeignSpec:
    """``SOURCE:ARCH=PATH``: a weights file of another framework and what it holds."""

    source: str
    arch: str
    path: Path

    @property
    def backbone(self) -> str:
        """The harness backbone whose layout the file's keys map onto."""
        return TORCHVISION[self.arch] if self.source == "torchvision" else f"timm:{self.arch}"

    @property
    def described(self) -> str:
        return _DESCRIBED.get((self.source, self.arch), f"{self.source}'s {self.arch}")


def is_foreign_spec(spec: str | Path) -> bool:
    """Whether ``spec`` names a foreign weights file (``torchvision:...=`` / ``timm:...=``)."""
    text = str(spec)
    return any(text.startswith(f"{s}:") for s in SOURCES) and "=" in text


def parse_spec(spec: str) -> ForeignSpec:
    """The parts of ``SOURCE:ARCH=PATH``; BadInputError naming what is wrong with it."""
    found = _SPEC.match(str(spec))
    if found is None or found["source"] not in SOURCES:
        raise BadInputError(f"{spec}: not a weights spec; write SOURCE:ARCH=PATH with SOURCE "
                            f"one of {', '.join(SOURCES)}, e.g. torchvision:alexnet=alexnet.pth")
    source, arch = found["source"], found["arch"]
    if source == "torchvision" and arch not in TORCHVISION:
        raise BadInputError(f"{spec}: the harness has no backbone with torchvision's {arch!r} "
                            f"layout (torchvision: {', '.join(TORCHVISION)}); for other "
                            f"architectures use the timm name, e.g. timm:{arch}=PATH")
    return ForeignSpec(source, arch, Path(found["path"]))


def check_backbone(spec: ForeignSpec, backbone: str | None, option: str = "--backbone") -> str:
    """The backbone the file loads into; a different ``backbone`` asked for is refused,
    saying why and which one takes the file."""
    if backbone is None or backbone == spec.backbone:
        return spec.backbone
    what = _DESCRIBED.get(backbone)
    what = f" ({what})" if what else ""
    raise BadInputError(f"{spec.path}: backbone {backbone!r}{what} cannot take "
                        f"{spec.described} weights; backbone {spec.backbone!r} can: leave out "
                        f"{option} or pass {option} {spec.backbone}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- reading
def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors of a weights file, unwrapped, and how they were found (``nested_key``,
    ``stripped_prefixes``). ``.safetensors`` is read with the safetensors package, anything
    else with ``torch.load(weights_only=True)``: no code in the file is ever run."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        obj = _read_safetensors(path)
    else:
        obj = _read_torch(path)
    state, nested = _find_state_dict(path, obj)
    state, stripped = strip_wrappers(state)
    from harness.networks.checkpoint import first_nonfinite

    bad = first_nonfinite(state)
    if bad is not None:
        raise BadInputError(f"{path}: the weights hold NaN or infinite values (first in "
                            f"tensor {bad!r}); refused")
    return state, {"nested_key": nested, "stripped_prefixes": stripped}


def _read_safetensors(path: Path) -> Any:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise BadInputError(f"{path}: reading .safetensors files needs the safetensors "
                            f"package: pip install 'harness[safetensors]'") from None
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInputError(f"{path}: damaged or not a safetensors file ({detail[:160]})") \
            from None


def _read_torch(path: Path) -> Any:
    from harness.networks.checkpoint import load_weights_only

    return load_weights_only(path, "weights", "not a PyTorch weights file this harness reads",
                             map_location="cpu")


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, dict) and bool(obj)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def _find_state_dict(path: Path, obj: Any) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state dict itself, or the one a training checkpoint keeps under one of
    :data:`NESTED_KEYS`."""
    if _is_state_dict(obj):
        return dict(obj), None
    if isinstance(obj, dict):
        from harness.networks.checkpoint import FORMAT

        if obj.get("format") == FORMAT:
            raise BadInputError(f"{path}: a harness checkpoint, not another framework's "
                                f"weights: pass the path alone")
        for key in NESTED_KEYS:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key]), key
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        raise BadInputError(f"{path}: no state dict in this file (a dictionary of tensors, "
                            f"or one under {', '.join(map(repr, NESTED_KEYS))}); its "
                            f"entries: {keys}")
    raise BadInputError(f"{path}: holds a {type(obj).__name__}, not a state dict")


def strip_wrappers(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``state`` without the prefixes a wrapper put in front of *every* key (``module.``
    of DDP, ``backbone.``, ``encoder.``, ``model.``), outermost first."""
    stripped: list[str] = []
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped.append(prefix)
                changed = True
    return state, stripped


# ----------------------------------------------------------------------------- mapping
def map_keys(spec: ForeignSpec, state: dict[str, torch.Tensor],
             net: torch.nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The file's keys renamed to the harness network's (``trunk.*`` / ``head.*``), and the
    keys dropped on purpose (a timm classifier, which the backbone's new head replaces)."""
    if all(k.startswith(("trunk.", "head.")) for k in state):    # already the harness layout
        return dict(state), []
    mapped: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    if spec.source == "timm":
        cfg = getattr(net.trunk, "pretrained_cfg", None) or {}
        names = cfg.get("classifier") or ()
        classifier = (names,) if isinstance(names, str) else tuple(names)
        for key, value in state.items():
            if any(key == c or key.startswith(c + ".") for c in classifier):
                dropped.append(key)
            else:
                mapped[f"trunk.{key}"] = value
        return mapped, dropped
    if spec.backbone == "alexnet_tv":       # features.N -> trunk.0.N, classifier.N -> head.N
        rules = (("features.", "trunk.0."), ("classifier.", "head."))
    else:                                   # resnet18: the trunk keeps torchvision's names
        rules = (("fc.", "head.0."),) + tuple(
            (f"{part}.", f"trunk.{part}.") for part in ("conv1", "bn1", "layer1", "layer2",
                                                       "layer3", "layer4"))
    for key, value in state.items():
        new = next((to + key[len(fro):] for fro, to in rules if key.startswith(fro)), key)
        mapped[new] = value
    return mapped, dropped


def check_fit(spec: ForeignSpec, mapped: dict[str, torch.Tensor],
              expected: dict[str, torch.Tensor], optional: tuple[str, ...] = ()) -> None:
    """Refuse weights that do not fit the network exactly, listing the missing, unexpected
    and mis-shaped keys (in the network's names; ``optional`` ones may be absent)."""
    missing = [k for k in expected if k not in mapped and k not in optional
               and not k.endswith(_OPTIONAL_SUFFIXES)]
    unexpected = [k for k in mapped if k not in expected]
    shaped = [f"{k} (file {list(mapped[k].shape)}, network {list(expected[k].shape)})"
              for k in mapped if k in expected and mapped[k].shape != expected[k].shape]
    if not (missing or unexpected or shaped):
        return
    parts = [f"{len(keys)} {what}: {_listed(keys)}" for what, keys in
             (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)) if keys]
    raise BadInputError(f"{spec.path}: the weights do not fit {spec.described} in backbone "
                        f"{spec.backbone!r} ({'; '.join(parts)}); is the file of another "
                        f"architecture? nothing was loaded")


def _listed(keys: list[str]) -> str:
    more = f", and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


# ----------------------------------------------------------------------------- loading
def load_foreign(spec_text: str, map_location: Any = "cpu", *, seed: int = 0,
                 backbone_params: dict[str, Any] | None = None,
                 expected_backbone: str | None = None,
                 option: str = "--backbone"):
    """A :class:`harness.api.interfaces.PretrainedModel` of origin ``"imported"`` from a spec.

    The network is the backbone the spec implies, built from ``seed`` (only a layer the
    file does not hold -- the output layer -- keeps those values) and filled with the file's
    weights. ``meta["imported"]`` records the source, architecture, file name and sha256,
    and how the keys were found; a record and the leaderboard carry it.
    """
    from harness.networks.checkpoint import RANDOM_NUM_OUTPUTS, build_backbone
    from harness.api.interfaces import PretrainedModel

    spec = parse_spec(spec_text)
    name = check_backbone(spec, expected_backbone, option)
    state, found = read_state_dict(spec.path)
    try:
        backbone = build_backbone(name, backbone_params)
    except HarnessError as exc:
        raise BadInputError(f"{spec_text}: {exc}") from None

    def create(outputs: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return backbone.create(outputs)

    net = create(RANDOM_NUM_OUTPUTS)
    mapped, dropped = map_keys(spec, state, net)
    final = f"head.{len(net.head) - 1}"
    file_final = mapped.get(f"{final}.weight")
    if file_final is not None and file_final.ndim == 2 and file_final.shape[0] != net.num_outputs:
        net = create(int(file_final.shape[0]))     # the file's own output layer, kept
    expected = net.state_dict()
    check_fit(spec, mapped, expected, optional=(f"{final}.weight", f"{final}.bias"))
    kept_final = f"{final}.weight" in mapped
    net.load_state_dict({**{k: v for k, v in expected.items() if k not in mapped}, **mapped})
    imported = {"source": spec.source, "architecture": spec.arch, "file": spec.path.name,
                "sha256": sha256_file(spec.path), "nested_key": found["nested_key"],
                "stripped_prefixes": found["stripped_prefixes"], "dropped_keys": dropped,
                "output_layer": "from the file" if kept_final else "new (seeded)"}
    meta = {"origin": "imported", "imported": imported, "init_seed": seed,
            "input_size": backbone.input_size, "mean": list(backbone.mean),
            "std": list(backbone.std), "output_kind": None, "num_outputs": net.num_outputs}
    return PretrainedModel(backbone=backbone, net=net.to(map_location), origin="imported",
                           checkpoint=spec_text, meta=meta)

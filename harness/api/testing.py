"""Conformance checks a plugin author runs on their own plugin.

In the spirit of scikit-learn's ``check_estimator``: ``check_plugin(MyClass)`` raises
:class:`ConformanceError` with a message saying which promise of
:mod:`harness.api.interfaces` the class breaks. The project's own test suite runs these checks
on every registered plugin, so a new plugin is tested without anyone writing a test for it.

A class may set ``test_params`` (a dict of constructor parameters) to be checked in a
small, fast configuration, e.g. a backbone family naming one small variant.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.api.errors import BadClipError, BadInputError
from harness.api.interfaces import (Backbone, EvalContext, EvalMetrics, Evaluator, Labeler,
                                Labels, Logger, Plugin, PretrainedModel, SoundRepresentation)

if TYPE_CHECKING:
    from harness.networks.shape import BackboneNet


class ConformanceError(AssertionError):
    """A plugin breaks its kind's contract."""


def _require(condition: bool, cls: type, message: str) -> None:
    if not condition:
        raise ConformanceError(f"{getattr(cls, '__name__', cls)}: {message}")


def _instantiate(cls: type, params: dict[str, Any] | None) -> Any:
    params = dict(getattr(cls, "test_params", {}) if params is None else params)
    try:
        return cls(**params)
    except Exception as exc:  # noqa: BLE001 - reported as a contract failure
        raise ConformanceError(f"{cls.__name__}({params}) failed: {type(exc).__name__}: {exc}") from exc


def _check_common(cls: type, base: type[Plugin], params: dict[str, Any] | None) -> Any:
    _require(isinstance(cls, type) and issubclass(cls, base), cls,
             f"must subclass harness.api.interfaces.{base.__name__}")
    _require(isinstance(getattr(cls, "name", None), str) and bool(cls.name), cls,
             "needs a non-empty class attribute `name`")
    _require(bool(getattr(cls, "description", "") or cls.__doc__), cls,
             "needs a one-line `description` (or a docstring)")
    obj = _instantiate(cls, params)
    p = obj.params()
    _require(isinstance(p, dict), cls, "params() must return a dict")
    try:
        json.dumps(p, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConformanceError(f"{cls.__name__}: params() is not JSON-serialisable: {exc}") from exc
    _require(obj.params() == p, cls, "params() must be stable")
    return obj


# ----------------------------------------------------------------------------- repr
def check_repr(cls: type, params: dict[str, Any] | None = None, batch_size: int = 3) -> None:
    """Shape, dtype, finiteness, determinism, batch == one-by-one, bad clips rejected."""
    rep = _check_common(cls, SoundRepresentation, params)
    _require(isinstance(rep.sample_rate, int) and rep.sample_rate > 0, cls, "sample_rate must be a positive int")
    _require(isinstance(rep.dim, int) and rep.dim > 0, cls, "dim must be a positive int")
    n = rep.num_samples
    rng = np.random.default_rng(0)
    gains = np.array([0.05, 0.3, 0.001])[:, None]
    t = np.arange(n) / rep.sample_rate
    tone = np.sin(2 * np.pi * 440.0 * t)
    waves = np.stack([rng.standard_normal(n), tone + 0.1 * rng.standard_normal(n),
                      rng.standard_normal(n) * (1 + np.sin(2 * np.pi * 4 * t))])
    waves = (waves * gains)[:batch_size]

    out = rep.compute(waves)
    _require(isinstance(out, np.ndarray), cls, "compute() must return a numpy array")
    _require(out.shape == (len(waves), rep.dim), cls,
             f"compute() returned shape {out.shape}, expected {(len(waves), rep.dim)}")
    _require(out.dtype == np.float32, cls, f"default dtype must be float32, got {out.dtype}")
    _require(bool(np.all(np.isfinite(out))), cls, "compute() returned NaN or Inf")
    out64 = rep.compute(waves, dtype=np.float64)
    _require(out64.dtype == np.float64, cls, "compute(dtype=np.float64) must return float64")
    _require(np.array_equal(rep.compute(waves), out), cls, "compute() is not deterministic")
    for i in range(len(waves)):
        single = rep.compute(waves[i:i + 1], dtype=np.float64)
        _require(np.allclose(single[0], out64[i], rtol=1e-6, atol=1e-9), cls,
                 f"batch result row {i} differs from computing that clip alone")

    with_nan = waves[:2].copy()
    with_nan[1, n // 3] = np.nan
    _expect_bad_clip(rep, waves[:1, : n - 1], "a clip shorter than the window", index=0)
    _expect_bad_clip(rep, with_nan, "NaN samples in the second clip", index=1)
    try:
        silent = rep.compute(np.zeros((1, n)))
        _require(bool(np.all(np.isfinite(silent))), cls, "a silent clip produced NaN or Inf")
    except BadClipError:
        pass


def _expect_bad_clip(rep: SoundRepresentation, batch: np.ndarray, what: str, index: int) -> None:
    name = type(rep).__name__
    try:
        rep.compute(batch)
    except BadClipError as exc:
        _require(exc.index == index, type(rep), f"BadClipError for {what} must carry batch index {index}")
        return
    except Exception as exc:  # noqa: BLE001
        raise ConformanceError(f"{name}: {what} raised {type(exc).__name__}, "
                               "expected harness.api.errors.BadClipError") from exc
    raise ConformanceError(f"{name}: {what} was accepted; expected BadClipError")


# ----------------------------------------------------------------------------- labeler
def _blobs(n: int = 90, d: int = 6, centres: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 8, size=(centres, d))
    x = means[np.arange(n) % centres] + rng.normal(0, 1, size=(n, d))
    return x.astype(np.float32)


def check_labeler(cls: type, params: dict[str, Any] | None = None) -> None:
    """Output kind and shape, determinism, JSON diagnostics, NaN input rejected."""
    lab = _check_common(cls, Labeler, params)
    _require(getattr(cls, "output_kind", None) in ("classes", "bits"), cls,
             "output_kind must be 'classes' or 'bits'")
    x = _blobs()
    res = lab.fit_predict(x)
    _require(isinstance(res, Labels), cls, "fit_predict() must return harness.api.interfaces.Labels")
    _require(res.kind == cls.output_kind, cls, f"Labels.kind {res.kind!r} != output_kind {cls.output_kind!r}")
    _require(isinstance(res.num_outputs, int) and res.num_outputs >= 2, cls, "num_outputs must be an int >= 2")
    v = res.values
    if res.kind == "classes":
        _require(v.shape == (len(x),) and np.issubdtype(v.dtype, np.integer), cls,
                 f"class labels must be int [N], got {v.dtype} {v.shape}")
        _require(v.min() >= 0 and v.max() < res.num_outputs, cls, "class labels out of range")
    else:
        _require(v.shape == (len(x), res.num_outputs), cls, f"bit labels must be [N, L], got {v.shape}")
        _require(set(np.unique(v).tolist()) <= {0, 1}, cls, "bit labels must be 0/1")
    _require(np.array_equal(_instantiate(cls, params).fit_predict(x).values, v), cls,
             "the same parameters must give the same labels")
    try:
        json.dumps(res.diagnostics, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConformanceError(f"{cls.__name__}: diagnostics are not JSON-serialisable: {exc}") from exc
    bad = x.copy()
    bad[3, 2] = np.nan
    try:
        lab.fit_predict(bad)
    except BadInputError:
        return
    except Exception as exc:  # noqa: BLE001
        raise ConformanceError(f"{cls.__name__}: NaN features raised {type(exc).__name__}, "
                               "expected harness.api.errors.BadInputError") from exc
    raise ConformanceError(f"{cls.__name__}: NaN features were accepted; expected BadInputError")


# ----------------------------------------------------------------------------- backbone
def check_backbone(cls: type, params: dict[str, Any] | None = None, image_size: int = 64) -> None:
    """Output shape, trunk/head split, classifier reset, seeded determinism."""
    import torch

    from harness.networks.shape import BackboneNet

    bb = _check_common(cls, Backbone, params)
    _require(len(bb.mean) == 3 and len(bb.std) == 3, cls, "mean and std need 3 channels")
    torch.manual_seed(0)
    net = bb.create(5)
    _require(isinstance(net, BackboneNet), cls, "create() must return a harness.networks.shape.BackboneNet")
    net.eval()
    x = torch.rand(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = net(x)
    _require(tuple(y.shape) == (2, 5), cls, f"output shape {tuple(y.shape)}, expected (2, 5)")
    head = {id(p) for p in net.head_parameters()}
    trunk = {id(p) for p in net.trunk_parameters()}
    every = {id(p) for p in net.parameters()}
    _require(bool(head) and bool(trunk), cls, "both the head and the trunk need parameters")
    _require(not head & trunk and head | trunk == every, cls,
             "every parameter must be in exactly one of trunk and head")
    torch.manual_seed(0)
    again = bb.create(5)
    same = all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    _require(same, cls, "create() under the same torch seed must give the same weights")
    net.reset_classifier(7)
    with torch.no_grad():
        _require(tuple(net(x).shape) == (2, 7), cls, "reset_classifier(7) must give 7 outputs")


# ----------------------------------------------------------------------------- evaluator
def check_evaluator(cls: type, params: dict[str, Any] | None = None,
                    work_dir: str | Path | None = None) -> EvalMetrics:
    """Run the evaluator on a tiny VOC with a tiny network, as the core does; check its output.

    The evaluator is called only through ``evaluate(model, data_root, context)`` with an
    :class:`EvalContext` (profile ``toy``, seed 0, CPU); what it returns must satisfy the
    :class:`EvalMetrics` contract that the record schema requires, and must be JSON; an
    evaluator whose ``planned_protocol()`` says its protocol must record that protocol. Give
    ``params`` (or a class attribute ``test_params``) to keep the run short.
    """
    import tempfile

    from harness.evaluation.stage import metrics_dict, metrics_problem

    ev = _check_common(cls, Evaluator, params)
    sig = inspect.signature(ev.evaluate)
    for arg in ("model", "data_root", "context"):
        _require(arg in sig.parameters, cls, f"evaluate() must accept `{arg}`")
    with tempfile.TemporaryDirectory(prefix="harness-check-") as tmp:
        root = Path(tmp)
        data = make_tiny_voc(root / "data")
        work = Path(work_dir) if work_dir is not None else root / "work"
        work.mkdir(parents=True, exist_ok=True)
        context = EvalContext(profile="toy", seed=0, device="cpu", work_dir=work,
                              progress=False)
        metrics = ev.evaluate(tiny_model(), data, context)
        problem = metrics_problem(metrics)
        _require(problem is None, cls, f"evaluate(): {problem}")
        try:
            json.dumps(metrics_dict(metrics), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConformanceError(f"{cls.__name__}: evaluate() returned metrics that are "
                                   f"not JSON ({exc})") from None
        planned = ev.planned_protocol(context.profile, context.seed)
        if planned is not None:
            from harness.results.protocol import strip_seeds
            from harness.results.records import to_jsonable

            _require(strip_seeds(to_jsonable(planned)) == strip_seeds(to_jsonable(
                metrics.protocol)), cls, "planned_protocol() differs from the protocol "
                "evaluate() recorded (a frozen protocol would never match its results)")
    return metrics


# ----------------------------------------------------------------------------- test data
#: a distinct colour per class: a class is visible as a square of its colour
_COLOURS = (np.stack(np.meshgrid([30, 100, 170, 240], [40, 140, 240], [60, 200]), -1)
            .reshape(-1, 3)[:20].astype(np.uint8))


def make_tiny_voc(root: Path, n: dict[str, int] | None = None, size: int = 40, seed: int = 0) -> Path:
    """A VOCdevkit/VOC2007 folder: JPEGs, Annotations with difficult flags, ImageSets/Main.

    Each image shows 1-2 coloured squares on grey noise; class c is the colour ``_COLOURS[c]``.
    Every class has a positive in every split (class c is forced into image c mod N); about
    one object in eight is marked difficult.
    """
    from PIL import Image

    from harness.data.voc import CLASSES

    n = n or {"train": 20, "val": 20, "test": 24}
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    counter = 0
    ids: dict[str, list[str]] = {}
    for split in ("train", "val", "test"):
        ids[split] = []
        for i in range(n[split]):
            image_id = f"{counter:06d}"
            counter += 1
            classes = [i % 20] + ([int(rng.integers(20))] if rng.random() < 0.5 else [])
            img = rng.integers(90, 150, size=(size, size, 3)).astype(np.uint8)
            objects = []
            for k, c in enumerate(classes):
                side = size // 2
                y, x = (0, 0) if k == 0 else (size - side, size - side)
                img[y:y + side, x:x + side] = _COLOURS[c]
                difficult = int(k == 1 and rng.random() < 0.25)
                objects.append((CLASSES[c], x + 1, y + 1, x + side, y + side, difficult))
            Image.fromarray(img).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
            (voc / "Annotations" / f"{image_id}.xml").write_text(_xml(image_id, size, objects))
            ids[split].append(image_id)
    ids["trainval"] = ids["train"] + ids["val"]
    for split, lst in ids.items():
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(lst) + "\n")
    return root / "VOCdevkit"


def _xml(image_id: str, size: int, objects) -> str:
    objs = "".join(
        f"<object><name>{name}</name><difficult>{d}</difficult><bndbox><xmin>{x0}</xmin>"
        f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, x0, y0, x1, y1, d in objects)
    return (f"<annotation><filename>{image_id}.jpg</filename><size><width>{size}</width>"
            f"<height>{size}</height><depth>3</depth></size>{objs}</annotation>")


class TinyBackbone(Backbone):
    """A small conv trunk with BatchNorm and an fc6-fc8-like head, for fast tests."""

    name = "tiny_test"
    description = "tiny test network"
    input_size = 64

    def params(self):
        return {}

    def create(self, num_outputs: int) -> "BackboneNet":
        from torch import nn

        from harness.networks.shape import BackboneNet

        trunk = nn.Sequential(
            nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten())
        head = nn.Sequential(nn.Dropout(0.5), nn.Linear(64, 32), nn.ReLU(),
                             nn.Linear(32, num_outputs))
        return BackboneNet(trunk, head)


def tiny_model(origin: str = "random", seed: int = 0, outputs: int = 7) -> PretrainedModel:
    """A TinyBackbone network initialised from ``seed`` (the global torch RNG is reseeded)."""
    import torch

    torch.manual_seed(seed)
    bb = TinyBackbone()
    return PretrainedModel(backbone=bb, net=bb.create(outputs), origin=origin,
                           checkpoint=f"{origin}:tiny_test")



# ----------------------------------------------------------------------------- logger
def check_logger(cls: type, params: dict[str, Any] | None = None) -> None:
    """A logger takes a configuration and three steps of figures under two prefixes, then
    closes; it names at least one file it wrote, each inside the folder it was given, and
    writes nothing beside that folder."""
    import tempfile

    logger = _check_common(cls, Logger, params)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "logs"
        folder.mkdir()
        logger.start(folder, "conformance")
        logger.log_config({"backbone": {"name": "alexnet", "params": {"pool": 1}}, "seed": 0})
        for step in (1, 2, 3):
            logger.log_metrics(step, {"train_loss": 1.0 / step, "lr": 0.01}, "pretext")
        logger.log_metrics(0, {"map": 42.0}, "final/voc07_linear")
        logger.close()
        files = [Path(f) for f in logger.files()]
        _require(bool(files), cls, "files() names no file after logging (a run's record "
                                   "lists what its loggers wrote)")
        for f in files:
            path = f if f.is_absolute() else folder / f
            _require(path.is_file(), cls, f"files() names {f}, which does not exist")
            _require(path.resolve().is_relative_to(folder.resolve()), cls,
                     f"wrote {f} outside the folder start() gave it")
        _require(sorted(p.name for p in Path(tmp).iterdir()) == ["logs"], cls,
                 "wrote files beside the folder start() gave it")


_CHECKS = {SoundRepresentation: check_repr, Labeler: check_labeler,
           Backbone: check_backbone, Evaluator: check_evaluator, Logger: check_logger}


def check_plugin(cls: type, params: dict[str, Any] | None = None) -> None:
    """Run the checks of whichever kind ``cls`` belongs to."""
    for base, check in _CHECKS.items():
        if isinstance(cls, type) and issubclass(cls, base):
            check(cls, params)
            return
    raise ConformanceError(f"{cls!r} is not a subclass of any plugin kind in harness.api.interfaces")

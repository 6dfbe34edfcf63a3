"""Conformance checks a plugin author runs on their own plugin.

In the spirit of scikit-learn's ``check_estimator``: ``check_plugin(MyClass)`` raises
:class:`ConformanceError` with a message saying which promise of
:mod:`harness.interfaces` the class breaks. The project's own test suite runs these checks
on every registered plugin, so a new plugin is tested without anyone writing a test for it.

A class may set ``test_params`` (a dict of constructor parameters) to be checked in a
small, fast configuration, e.g. a backbone family naming one small variant.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import numpy as np

from harness.errors import BadClipError, BadInputError
from harness.interfaces import (Backbone, Evaluator, Labeler, Labels, Plugin,
                                SoundRepresentation)


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
             f"must subclass harness.interfaces.{base.__name__}")
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
                               "expected harness.errors.BadClipError") from exc
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
    _require(isinstance(res, Labels), cls, "fit_predict() must return harness.interfaces.Labels")
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
                               "expected harness.errors.BadInputError") from exc
    raise ConformanceError(f"{cls.__name__}: NaN features were accepted; expected BadInputError")


# ----------------------------------------------------------------------------- backbone
def check_backbone(cls: type, params: dict[str, Any] | None = None, image_size: int = 64) -> None:
    """Output shape, trunk/head split, classifier reset, seeded determinism."""
    import torch

    from harness.nets import BackboneNet

    bb = _check_common(cls, Backbone, params)
    _require(len(bb.mean) == 3 and len(bb.std) == 3, cls, "mean and std need 3 channels")
    torch.manual_seed(0)
    net = bb.create(5)
    _require(isinstance(net, BackboneNet), cls, "create() must return a harness.nets.BackboneNet")
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
def check_evaluator(cls: type, params: dict[str, Any] | None = None) -> None:
    """Name, parameters and the ``evaluate`` signature (a full run needs data: see tests)."""
    ev = _check_common(cls, Evaluator, params)
    sig = inspect.signature(ev.evaluate)
    for arg in ("model", "data_root", "device", "workdir", "progress"):
        _require(arg in sig.parameters, cls, f"evaluate() must accept `{arg}`")


_CHECKS = {SoundRepresentation: check_repr, Labeler: check_labeler,
           Backbone: check_backbone, Evaluator: check_evaluator}


def check_plugin(cls: type, params: dict[str, Any] | None = None) -> None:
    """Run the checks of whichever kind ``cls`` belongs to."""
    for base, check in _CHECKS.items():
        if isinstance(cls, type) and issubclass(cls, base):
            check(cls, params)
            return
    raise ConformanceError(f"{cls!r} is not a subclass of any plugin kind in harness.interfaces")

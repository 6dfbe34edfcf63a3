"""The plugin API: everything a plugin author reads (hook specs, interfaces, registry,
parameter checks, errors and the conformance kit), and the few core services a plugin
may use.

A plugin imports from here and nowhere else in ``harness``::

    from harness.api import Backbone, BadInputError, hookimpl

The built-in plugins in ``plugins/`` are held to the same rule (a test checks it), so
this module is the whole contract between the core and its plugins.

``import harness.api`` stays light: the contract itself (hook specs, interfaces, errors)
is imported at once, and every other name -- the registry, the conformance kit and the
core services, some of which need torch -- is imported on first use (PEP 562), so that a
plugin module can be imported, and ``harness plugins`` can list it, without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from harness.api.errors import (BadClipError, BadInputError, HarnessError, PluginError,
                                UnknownPluginError)
from harness.api.hookspecs import KIND_HOOKS, hookimpl
from harness.api.interfaces import (KIND_CLASSES, SEED_BOUNDS, Backbone, Bounds, EvalContext,
                                    EvalMetrics, Evaluator, Labeler, Labels, Logger,
                                    OutputKind, Plugin, PretrainedModel, SoundRepresentation)

#: name -> (module, attribute in it; None for the module itself), imported on first use
_LAZY: dict[str, tuple[str, str | None]] = {
    # parameter checks (what the registry applies before it builds a plugin)
    "check_params": ("harness.api.params", "check_params"),
    "declared_params": ("harness.api.params", "declared_params"),
    # the registry
    "Registry": ("harness.api.registry", "Registry"),
    "Entry": ("harness.api.registry", "Entry"),
    "default_registry": ("harness.api.registry", "default_registry"),
    "create": ("harness.api.registry", "create"),
    "get_plugin_manager": ("harness.api.registry", "get_plugin_manager"),
    "build_registry": ("harness.api.registry", "build_registry"),
    # the conformance kit
    "ConformanceError": ("harness.api.testing", "ConformanceError"),
    "check_plugin": ("harness.api.testing", "check_plugin"),
    "check_repr": ("harness.api.testing", "check_repr"),
    "check_labeler": ("harness.api.testing", "check_labeler"),
    "check_backbone": ("harness.api.testing", "check_backbone"),
    "check_evaluator": ("harness.api.testing", "check_evaluator"),
    "check_logger": ("harness.api.testing", "check_logger"),
    "make_tiny_voc": ("harness.api.testing", "make_tiny_voc"),
    "tiny_model": ("harness.api.testing", "tiny_model"),
    # profiles: the schedule an evaluator scales its protocol to (EvalContext.profile)
    "get_profile": ("harness.profiles", "get_profile"),
    "Profile": ("harness.profiles", "Profile"),
    # networks: what a backbone's build() returns, and how a model is named and digested
    "BackboneNet": ("harness.networks.shape", "BackboneNet"),
    "weights_digest": ("harness.networks.shape", "weights_digest"),
    "backbone_name": ("harness.networks.checkpoint", "backbone_name"),
    # BatchNorm statistics of a never-trained network used frozen
    "batchnorm_layers": ("harness.networks.batchnorm", "batchnorm_layers"),
    "needs_bn_recompute": ("harness.networks.batchnorm", "needs_bn_recompute"),
    "recompute_bn": ("harness.networks.batchnorm", "recompute_bn"),
    # seeds of independent random streams
    "derive_seed": ("harness.runtime.seeds", "derive_seed"),
    "hashed_seed": ("harness.runtime.seeds", "hashed_seed"),
    # devices and threads
    "resolve_device": ("harness.runtime.devices", "resolve_device"),
    "resolve_precision": ("harness.runtime.devices", "resolve_precision"),
    "usable_cpus": ("harness.runtime.devices", "usable_cpus"),
    "torch_threads": ("harness.runtime.devices", "torch_threads"),
    "free_device_bytes": ("harness.runtime.devices", "free_device_bytes"),
    # atomic writes and cache keys
    "write_text": ("harness.runtime.io", "write_text"),
    "write_json": ("harness.runtime.io", "write_json"),
    "save_torch": ("harness.runtime.io", "save_torch"),
    "hash_params": ("harness.runtime.cache", "hash_params"),
    # progress bars that respect --no-progress
    "progress_enabled": ("harness.runtime.progress", "enabled"),
    "make_progress": ("harness.runtime.progress", "make_progress"),
    # images and the VOC2007 classification task
    "load_rgb": ("harness.data.images", "load_rgb"),
    "open_image": ("harness.data.images", "open_image"),
    "CLASSES": ("harness.data.voc", "CLASSES"),
    "VOCImage": ("harness.data.voc", "VOCImage"),
    "read_voc": ("harness.data.voc", "read_voc"),
    "targets_matrix": ("harness.data.voc", "targets_matrix"),
    "voc2007_dir": ("harness.data.voc", "voc2007_dir"),
    # pseudo-label diagnostics a labeler reports
    "cluster_sizes": ("harness.labels.diagnostics", "cluster_sizes"),
    "size_warnings": ("harness.labels.diagnostics", "size_warnings"),
    # evaluation arithmetic: average precision, kNN and the logistic-regression probe (as
    # modules), and frozen per-layer features
    "ap": ("harness.evaluation.ap", None),
    "knn": ("harness.evaluation.knn", None),
    "logreg": ("harness.evaluation.logreg", None),
    "TARGET_VALUES": ("harness.profiles", "FROZEN_TARGET_VALUES"),
    "FrozenConfig": ("harness.evaluation.layer_config", "FrozenConfig"),
    "FrozenFeatures": ("harness.evaluation.layer_features", "FrozenFeatures"),
    "split_features": ("harness.evaluation.layer_features", "split_features"),
}

__all__ = [
    # errors
    "HarnessError", "BadInputError", "BadClipError", "PluginError", "UnknownPluginError",
    # hook specs and the plugin kinds
    "hookimpl", "KIND_HOOKS", "KIND_CLASSES",
    # interfaces
    "Plugin", "SoundRepresentation", "Labeler", "Labels", "Backbone", "PretrainedModel",
    "EvalContext", "EvalMetrics", "Evaluator", "Logger", "Bounds", "SEED_BOUNDS", "OutputKind",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    """Import a lazy name on first use and keep it (PEP 562)."""
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from harness.api.params import check_params, declared_params
    from harness.api.registry import (Entry, Registry, build_registry, create,
                                      default_registry, get_plugin_manager)
    from harness.api.testing import (ConformanceError, check_backbone, check_evaluator,
                                     check_labeler, check_logger, check_plugin, check_repr,
                                     make_tiny_voc, tiny_model)
    from harness.data.images import load_rgb, open_image
    from harness.data.voc import CLASSES, VOCImage, read_voc, targets_matrix, voc2007_dir
    from harness.evaluation import ap, knn, logreg
    from harness.evaluation.layer_config import FrozenConfig
    from harness.evaluation.layer_features import FrozenFeatures, split_features
    from harness.labels.diagnostics import cluster_sizes, size_warnings
    from harness.networks.batchnorm import batchnorm_layers, needs_bn_recompute, recompute_bn
    from harness.networks.checkpoint import backbone_name
    from harness.networks.shape import BackboneNet, weights_digest
    from harness.profiles import FROZEN_TARGET_VALUES as TARGET_VALUES
    from harness.profiles import Profile, get_profile
    from harness.runtime.cache import hash_params
    from harness.runtime.devices import (free_device_bytes, resolve_device, resolve_precision,
                                         torch_threads, usable_cpus)
    from harness.runtime.io import save_torch, write_json, write_text
    from harness.runtime.progress import enabled as progress_enabled
    from harness.runtime.progress import make_progress
    from harness.runtime.seeds import derive_seed, hashed_seed

"""Frozen features: a network run once over a VOC split, chosen layers captured and cached.

What the per-layer probes, the VOC07 SVMs and kNN read (:mod:`harness.evaluation.logreg`,
the ``voc07_svm`` evaluator plugin, :mod:`harness.evaluation.knn`). One extraction:

- **views**: each image is seen through ``views`` fixed views. View 0 is the whole image
  resized to ``image_size`` square (the benchmark suite's "resize" features,
  fair_self_supervision_benchmark ``configs/benchmark_tasks/image_classification/voc07/
  *_extract_features.yaml``); the others are crops of 40-100% of the image's area, mirrored
  at random, drawn from a generator seeded by ``seed``. The features of an image are the
  mean over its views. The boxes and flips are recorded (their digest is part of the key).
- **layers**: the network declares them (:meth:`harness.networks.shape.BackboneNet.feature_layers`:
  AlexNet conv1-conv5, pool5, fc6, fc7; ResNet stages and the pooled output; timm's feature
  stages); each is captured by a forward hook on its module.
- **pooling**: a convolutional map [C, H, W] is average-pooled to s x s, with s the largest
  side for which C x s x s <= ``target_values`` (9,216 by default: DeepCluster
  ``eval_linear.py`` lines 163-181 pool conv1-conv5 to 9,600 / 9,216 values, as Zhang et
  al. do); a token sequence [N, D] is averaged over tokens; a vector is kept as is.
- **frozen**: BatchNorm uses its running statistics and dropout is off (``net.eval()``
  under ``torch.inference_mode``); the network's own modes are restored afterwards, so a
  monitor can extract features in the middle of pretext training. A never-trained
  (``random``) network first gets BatchNorm statistics recomputed on the training split
  (on a copy), as the VOC07 "Head" evaluator does, and the record says so.
- **checks**: every layer's values must be finite, and, when stored as float16, within
  float16's range (|x| <= 65504), or the extraction stops with one error naming the
  checkpoint, the split and the layer (:class:`FeatureValuesError`): a value float16
  cannot hold would be read back as inf, and the classifiers would then score NaN.
- **cache**: one folder per (weights digest, split content, views, layers, pooling, image
  size, normalisation, storage dtype) under ``<cache>/frozen/``, written beside its final
  name and renamed when complete. The storage dtype (``FrozenConfig.storage``) is the
  profile's (:attr:`harness.profiles.EvalScaling.frozen_storage`: float16 for the toy
  profile, whose committed results were made with it, float32 for the paper's); features
  are read back as float32 either way.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.networks.batchnorm import recompute_bn
from harness.runtime.cache import cache_root, hash_array, hash_file, hash_params, stage_key
from harness.api.errors import BadInputError
from harness.data.voc import VOCImage, read_voc, targets_matrix, voc2007_dir
from harness.evaluation.views import image_size, render_views, view_boxes
# STORAGE_DTYPES is read through this module by tests/test_frozen_features.py
from harness.evaluation.layer_config import FLOAT16_MAX, STORAGE_DTYPES, FrozenConfig  # noqa: F401

FORMAT = "harness-frozen/1"


class FeatureValuesError(BadInputError):
    """A layer's features are not finite, or do not fit the storage dtype (exit code 2)."""


@dataclass
class FrozenFeatures:
    """The captured layers of one split: ``layers[name]`` is float32 [N, D_name]."""

    split: str
    image_ids: tuple[str, ...]
    #: int8 [N, 20]: 1 present, 0 absent, -1 difficult-only (:mod:`harness.data.voc`)
    targets: np.ndarray
    layers: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def subset(self, split: str, image_ids: Sequence[str]) -> "FrozenFeatures":
        """The rows of ``image_ids`` (a split contained in this one, e.g. train in trainval)."""
        where = {image_id: i for i, image_id in enumerate(self.image_ids)}
        missing = [i for i in image_ids if i not in where]
        if missing:
            raise BadInputError(f"split {split!r} has image {missing[0]!r} that split "
                                f"{self.split!r} lacks")
        rows = np.array([where[i] for i in image_ids], dtype=np.int64)
        return FrozenFeatures(split=split, image_ids=tuple(image_ids), targets=self.targets[rows],
                              layers={k: v[rows] for k, v in self.layers.items()},
                              meta={**self.meta, "split": split, "subset_of": self.split})


# --------------------------------------------------------------------------- capture
def pool_to_size(x: torch.Tensor, target_values: int) -> torch.Tensor:
    """[B, ...] -> [B, D]: conv maps average-pooled to at most ``target_values`` values."""
    if x.ndim == 4:
        c, h, w = x.shape[1:]
        side = int(np.floor(np.sqrt(target_values / c))) if c <= target_values else 1
        side = max(1, min(side, h, w))
        return F.adaptive_avg_pool2d(x, (side, side)).flatten(1)
    if x.ndim == 3:                        # tokens [B, N, D]: their mean
        return x.mean(dim=1)
    return x.flatten(1)


@contextlib.contextmanager
def frozen_mode(net: nn.Module) -> Iterator[nn.Module]:
    """``net`` in eval mode (BatchNorm running statistics, no dropout) with gradients off;
    every module's own training flag is restored on exit."""
    modes = {m: m.training for m in net.modules()}
    net.eval()
    try:
        with torch.inference_mode():
            yield net
    finally:
        for m, mode in modes.items():
            m.training = mode


def capture(net: nn.Module, batches: Iterator[torch.Tensor], layers: dict[str, str],
            target_values: int, progress: Callable[[int], None] | None = None
            ) -> dict[str, np.ndarray]:
    """Run ``net`` (frozen) over ``batches`` [B, 3, H, W]; float32 [N, D] per named layer."""
    modules = dict(net.named_modules())
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    handles = []

    def hook_for(name: str):
        def hook(module, inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            outputs[name].append(pool_to_size(out.float(), target_values).cpu().numpy())
        return hook

    try:
        for name, path in layers.items():
            if path not in modules:
                raise BadInputError(f"network has no module {path!r} (layer {name!r})")
            handles.append(modules[path].register_forward_hook(hook_for(name)))
        with frozen_mode(net):
            for x in batches:
                net(x)
                if progress is not None:
                    progress(len(x))
    finally:
        for h in handles:
            h.remove()
    return {name: np.concatenate(chunks) for name, chunks in outputs.items()}


def _normalised_batches(pixels: np.ndarray, view: int, mean, std, batch: int,
                        device: torch.device) -> Iterator[torch.Tensor]:
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    for lo in range(0, len(pixels), batch):
        x = torch.from_numpy(pixels[lo:lo + batch, view]).to(device).permute(0, 3, 1, 2)
        yield x.float().div_(255.0).sub_(m).div_(s)


# --------------------------------------------------------------------------- extraction
def extract(net: nn.Module, paths: Sequence[Path], *, size: int, mean, std, views: int,
            seed: int, layers: dict[str, str], target_values: int, batch_size: int = 64,
            device: str | torch.device = "cpu", bn_images: Sequence[Path] | None = None,
            progress: Callable[[int], None] | None = None
            ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Features of ``paths`` (mean over their views) and what was done, uncached.

    ``bn_images``: recompute BatchNorm statistics on these images' view 0 first (on a copy
    of ``net``; for a never-trained network).
    """
    device = torch.device(device)
    sizes = np.array([image_size(p) for p in paths], dtype=np.int64)
    boxes, flips = view_boxes(sizes, views, seed)
    info: dict[str, Any] = {"views_digest": hash_array(np.concatenate(
        [boxes.reshape(len(paths), -1), flips.astype(np.float64)], axis=1))}
    if bn_images is not None:
        net = copy.deepcopy(net)
        bn_sizes = np.array([image_size(p) for p in bn_images], dtype=np.int64)
        b_boxes, b_flips = view_boxes(bn_sizes, 1, seed)
        bn_pixels = render_views(bn_images, b_boxes, b_flips, size)
        info["bn_recomputed"] = recompute_bn(
            net, _normalised_batches(bn_pixels, 0, mean, std, batch_size, device))
        info["bn_recompute_images"] = len(bn_images)
    pixels = render_views(paths, boxes, flips, size)
    total: dict[str, np.ndarray] | None = None
    for v in range(views):
        got = capture(net, _normalised_batches(pixels, v, mean, std, batch_size, device),
                      layers, target_values, progress)
        if total is None:
            total = got
        else:
            for k in total:
                total[k] += got[k]
    assert total is not None
    return {k: (a / views).astype(np.float32) for k, a in total.items()}, info


def check_values(layers: dict[str, np.ndarray], storage: str, where: str) -> None:
    """Refuse features a classifier cannot use, naming ``where`` (the checkpoint and split)
    and the first bad layer: a non-finite value, or (for float16 storage) a value beyond
    float16's range, which the cast would turn into inf."""
    for name, values in layers.items():
        finite = np.isfinite(values)
        if not finite.all():
            bad = int(values.size - np.count_nonzero(finite))
            raise FeatureValuesError(
                f"{where}: layer {name} has {bad} non-finite values (NaN or inf) out of "
                f"{values.size}; the network's activations overflow or its weights are "
                f"corrupt (a diverged checkpoint?), so no classifier can use this layer")
        if storage == "float16":
            big = int(np.count_nonzero(np.abs(values) > FLOAT16_MAX))
            if big:
                raise FeatureValuesError(
                    f"{where}: layer {name} has {big} values beyond float16's range (max "
                    f"{FLOAT16_MAX:.0f}; largest {float(np.abs(values).max()):.4g}); store "
                    f"the features as float32 (--eval-param storage=float32, the paper "
                    f"profile's default)")


def split_digest(images: Sequence[VOCImage]) -> str:
    """A digest of a split's content: ids, targets and the bytes of every image."""
    return hash_params([[im.image_id, hash_file(im.path), im.targets.tolist()] for im in images])


def resolve_layers(net: nn.Module, wanted: Sequence[str] | None) -> dict[str, str]:
    """The network's declared layers (all, or those named in ``wanted``, in its order)."""
    declared = net.feature_layers() if hasattr(net, "feature_layers") else {"trunk": "trunk"}
    if wanted is None:
        return declared
    unknown = [w for w in wanted if w not in declared]
    if unknown:
        raise BadInputError(f"unknown layer {unknown[0]!r}; this network declares "
                            f"{', '.join(declared)}")
    return {k: v for k, v in declared.items() if k in wanted}


def split_features(model, data_root: Path, split: str, config: FrozenConfig, *, profile: str,
                   seed: int, device: str = "cpu", progress: bool = False,
                   cache: Path | None = None) -> FrozenFeatures:
    """The frozen features of ``split`` of the VOC folder at ``data_root``, cached.

    ``model`` is a :class:`harness.api.interfaces.PretrainedModel`. ``train`` and ``val`` are
    read from the ``trainval`` features when they are part of it (one extraction serves
    the tuning and the reporting protocol).
    """
    voc = voc2007_dir(data_root)
    if split in ("train", "val"):
        images = read_voc(voc, split)
        trainval = split_features(model, voc, "trainval", config, profile=profile, seed=seed,
                                  device=device, progress=progress, cache=cache)
        ids = [im.image_id for im in images]
        if set(ids) <= set(trainval.image_ids):
            return trainval.subset(split, ids)
    images = read_voc(voc, split)
    if not images:
        raise BadInputError(f"{voc}: split {split!r} lists no images")
    net = model.net
    layers = resolve_layers(net, config.layers)
    size = config.resolved_size(profile)
    storage = config.resolved_storage(profile)
    bn_split = "trainval" if model.origin == "random" else None
    from harness.networks.shape import weights_digest

    params = {"format": FORMAT, "weights": weights_digest(net), "split": split,
              "content": split_digest(images), "config": asdict(config), "size": size,
              "layers": layers, "seed": seed, "mean": list(model.backbone.mean),
              "std": list(model.backbone.std), "bn_recompute_on": bn_split,
              "storage": storage}
    if bn_split is not None:
        params["bn_content"] = split_digest(read_voc(voc, bn_split))
    key = stage_key("frozen", params)
    folder = (cache or cache_root()) / "frozen" / key
    if (folder / "meta.json").is_file():
        return _load(folder)

    bar = _progress_bar(progress, f"features {split}", len(images) * config.views)
    with bar as advance:
        layers_out, info = extract(
            net, [im.path for im in images], size=size, mean=model.backbone.mean,
            std=model.backbone.std, views=config.views, seed=seed, layers=layers,
            target_values=config.target_values, batch_size=config.batch_size, device=device,
            bn_images=[im.path for im in read_voc(voc, bn_split)] if bn_split else None,
            progress=advance)
    check_values(layers_out, storage, f"{model.checkpoint}: split {split!r}")
    meta = {"format": FORMAT, "split": split, "key": key, "params": params, **info,
            "image_ids": [im.image_id for im in images],
            "dims": {k: int(v.shape[1]) for k, v in layers_out.items()},
            "layer_order": list(layers_out)}
    _store(folder, layers_out, targets_matrix(images), meta, storage)
    return _load(folder)


def _store(folder: Path, layers: dict[str, np.ndarray], targets: np.ndarray,
           meta: dict[str, Any], storage: str) -> None:
    """Write the folder beside its final name, then rename it (never half a cache entry);
    the layers in the ``storage`` dtype (:func:`check_values` has passed them)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for i, (name, array) in enumerate(layers.items()):
            np.save(tmp / f"layer{i}.npy", array.astype(storage))
        np.save(tmp / "targets.npy", targets)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "meta.json").is_file():   # not a concurrent writer's result
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _load(folder: Path) -> FrozenFeatures:
    meta = json.loads((folder / "meta.json").read_text())
    layers = {name: np.load(folder / f"layer{i}.npy").astype(np.float32)
              for i, name in enumerate(meta["layer_order"])}
    return FrozenFeatures(split=meta["split"], image_ids=tuple(meta["image_ids"]),
                          targets=np.load(folder / "targets.npy"), layers=layers, meta=meta)


@contextlib.contextmanager
def _progress_bar(show: bool, label: str, total: int):
    from harness.runtime.progress import enabled, make_progress

    if not enabled(show):
        yield None
        return
    bar = make_progress()
    with bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)

"""``harness run``: every stage of the benchmark, each cached under a key of its inputs.

Read it top to bottom: :func:`run` resolves the data, then features -> labels -> pretext
network -> downstream metrics -> result record. Each stage's output sits in the cache
folder under a key of everything it depends on, so a second identical run recomputes
nothing, changing ``k`` redoes clustering onwards only, and an interrupted run resumes
(pretext training and evaluation also resume inside their own stage).
"""

from __future__ import annotations

import inspect
import itertools
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from harness.augment import AugmentConfig
from harness.cache import cache_root, hash_file, hash_params, stage_key
from harness.errors import BadInputError
from harness.interfaces import Labels
from harness.io import write_json

Init = Literal["sound", "random", "supervised"]
INITS: tuple[str, ...] = ("sound", "random", "supervised")


@dataclass(frozen=True)
class Profile:
    """The schedule of one run: the toy world on a CPU, or the paper's."""

    name: str
    #: clips in the toy world (ignored with --clips)
    toy_clips: int
    #: side of the frames the pretext network sees
    image_size: int
    pretext_epochs: int
    pretext_batch_size: int
    pretext_lr: float
    #: profile name passed to the evaluators
    eval_profile: str
    #: backbone parameters this profile sets, by backbone name
    backbone_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the pretext training's augmentation
    pretext_augment: AugmentConfig = AugmentConfig()


PROFILES: dict[str, Profile] = {
    # At 64 px AlexNet's conv5 output is 1 x 1: pooling it to 6 x 6 only copies one vector
    # 36 times into fc6 (36x fc6's effective learning rate: lr 0.01 collapsed to the
    # majority class in a test run). pool=1 sees the same information; fc6-fc7 of 1,024
    # units cost 20x less per step than 4,096 on a CPU. The pretext schedule was chosen on
    # pretext validation accuracy and VOC train -> val (never test; benchmarks/README.md has
    # the figures): lr 0.01 stalled at 13% cluster accuracy, 0.001 reached 35-40%; batch 16
    # (4x the optimizer steps of batch 64 for 25% more time per epoch) and a gentler
    # augmentation (crops of at least 40% of the frame, so that they rarely cut out the
    # small objects the sound label is about; saturation 0.2 and no hue shift, so that
    # the colour half of a toy class survives) each added 1-2 points of Head mAP, and
    # 30 -> 60 -> 90 epochs another 5 and 1 (90 epochs take under 4 minutes on two cores).
    "toy": Profile(name="toy", toy_clips=1000, image_size=64, pretext_epochs=90,
                   pretext_batch_size=16, pretext_lr=0.001, eval_profile="toy",
                   backbone_params={"alexnet": {"pool": 1, "fc_units": 1024}},
                   pretext_augment=AugmentConfig(crop_scale=(0.4, 1.0), saturation=0.2,
                                                 hue=0.0)),
    "paper": Profile(name="paper", toy_clips=1000, image_size=224, pretext_epochs=200,
                     pretext_batch_size=256, pretext_lr=0.01, eval_profile="paper"),
}


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on; recorded in full in the result record."""

    repr: str = "mfcc"
    repr_params: dict[str, Any] = field(default_factory=dict)
    labeler: str = "kmeans"
    labeler_params: dict[str, Any] = field(default_factory=dict)
    #: number of clusters (passed to a labeler that takes ``k``)
    k: int = 15
    backbone: str = "alexnet"
    init: Init = "sound"
    profile: str = "toy"
    seed: int = 0
    #: the toy world's own seed (the same world for every run seed)
    world_seed: int = 0
    device: str = "auto"
    #: a clip dataset (default: the toy world)
    clips: Path | None = None
    #: a VOCdevkit / VOC2007 folder (default: the toy VOC)
    voc: Path | None = None
    evaluators: tuple[str, ...] = ("voc07_linear", "voc07_full")
    preset: str = "krahenbuhl"
    #: overrides the profile's pretext epochs
    epochs: int | None = None
    #: overrides the profile's pretext learning rate
    lr: float | None = None
    #: overrides the profile's number of toy clips
    toy_clips: int | None = None
    #: images in the toy VOC's trainval and test splits
    toy_voc_images: tuple[int, int] = (1000, 1000)
    #: extra backbone parameters (on top of the profile's)
    backbone_params: dict[str, Any] = field(default_factory=dict)
    #: extra evaluator parameters, e.g. {"iterations": 100} (recorded as overrides)
    eval_params: dict[str, Any] = field(default_factory=dict)
    results: Path = Path("results")
    progress: bool = True
    #: watch the pretext run: "knn" or "linear_probe" on the downstream train -> val split
    monitor: str | None = None
    #: epochs between monitor evaluations (and after the last)
    monitor_every: int = 10

    def resolved_profile(self) -> Profile:
        if self.profile not in PROFILES:
            raise BadInputError(f"unknown profile {self.profile!r}; choose from {', '.join(PROFILES)}")
        p = PROFILES[self.profile]
        if self.epochs:
            p = replace(p, pretext_epochs=self.epochs)
        if self.lr:
            p = replace(p, pretext_lr=self.lr)
        if self.toy_clips:
            p = replace(p, toy_clips=self.toy_clips)
        return p

    def resolved_backbone_params(self) -> dict[str, Any]:
        return {**self.resolved_profile().backbone_params.get(self.backbone, {}),
                **self.backbone_params}


@dataclass
class RunResult:
    record: dict[str, Any]
    path: Path


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is present, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError(f"--device {device}: no CUDA device is available")
    return device


# ----------------------------------------------------------------------------- data
def toy_clips(profile: Profile, world_seed: int, progress: bool) -> Path:
    """The toy world's clip dataset, generated once into the cache."""
    from harness.toy import WORLD_VERSION, ToyConfig, generate_clips

    cfg = ToyConfig()
    out = cache_root() / "toy" / stage_key("toy-clips", WORLD_VERSION, profile.toy_clips,
                                           world_seed, cfg.to_dict())
    if not (out / "manifest.csv").is_file():
        shutil.rmtree(out, ignore_errors=True)   # the cache's own leftovers (older code)
        generate_clips(out, profile.toy_clips, world_seed, config=cfg, progress=progress)
    return out


def toy_voc(world_seed: int, images: tuple[int, int], progress: bool) -> Path:
    """The toy VOC07 (another seed of the same world), generated once into the cache."""
    from harness.toy import WORLD_VERSION, ToyConfig, generate_voc

    cfg = ToyConfig()
    voc_seed = world_seed + 1_000_003
    out = cache_root() / "toy" / stage_key("toy-voc", WORLD_VERSION, voc_seed, list(images),
                                           cfg.to_dict())
    if not (out / "VOC2007").is_dir():
        generate_voc(out, voc_seed, config=cfg, n_trainval=images[0], n_test=images[1],
                     progress=progress)
    return out


def voc_fingerprint(root: Path) -> str:
    """Content key of a VOC folder: its split lists and annotations (images are named there)."""
    from harness.voc import voc2007_dir

    voc = voc2007_dir(root)
    files = sorted((voc / "ImageSets" / "Main").glob("*.txt")) + sorted((voc / "Annotations").glob("*.xml"))
    return hash_params([[f.relative_to(voc).as_posix(), hash_file(f)] for f in files])


# ----------------------------------------------------------------------------- stages
def sound_labels(config: RunConfig, dataset, device: str) -> tuple[Path, dict[str, Any], Any, Any]:
    """Features of every clip, then pseudo-labels; returns (labels path, info, repr, labeler)."""
    from harness.features import DatasetSource, FeatureOptions, compute_features
    from harness.labels import make_labels
    from harness.plugins import default_registry

    registry = default_registry()
    rep = registry.create("repr", config.repr, **config.repr_params)
    matrix = compute_features(rep, DatasetSource(dataset),
                              FeatureOptions(device=device, skip_bad=True, progress=config.progress))
    if len(matrix.indices) < 2:
        raise BadInputError(f"{dataset.root}: {len(matrix.bad)} of {len(dataset)} clips have "
                            f"unusable audio (first: {matrix.bad[0].line()}); nothing to cluster")
    params = dict(config.labeler_params)
    labeler_cls = registry.get("labeler", config.labeler).cls
    accepted = inspect.signature(labeler_cls.__init__).parameters
    if "k" in accepted:
        params.setdefault("k", config.k)
    if "seed" in accepted:
        params.setdefault("seed", config.seed)
    labeler = registry.create("labeler", config.labeler, **params)
    result = make_labels(matrix.features, labeler, features_key=matrix.key,
                         features_info={"repr": rep.name, "params": rep.params()})
    diagnostics = dict(result.labels.diagnostics)
    info = {**result.info, "diagnostics": diagnostics}
    if not matrix.bad:
        return result.path, info, rep, labeler
    path, info = _with_excluded_clips(result, matrix, len(dataset), info)
    return path, info, rep, labeler


def _with_excluded_clips(result, matrix, n_clips: int,
                         info: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Labels for every clip of the dataset, the clips without usable audio marked excluded.

    Pretext training needs one row per clip; an excluded clip's row is a placeholder that
    training never reads (its index is in the sidecar's ``excluded``).
    """
    from harness.labels import write_labels

    labels = result.labels
    values = np.zeros((n_clips, *labels.values.shape[1:]), dtype=labels.values.dtype)
    values[matrix.indices] = labels.values
    excluded = sorted(b.index for b in matrix.bad)
    info = {**info, "excluded": excluded,
            "excluded_reasons": [{"index": b.index, "file": str(b.source), "reason": b.reason}
                                 for b in matrix.bad]}
    path = (cache_root() / "labels" / stage_key("labels-all-clips", info["key"], excluded)
            / "labels.npy")
    if not path.is_file():
        write_labels(path, Labels(values, labels.kind, labels.num_outputs, labels.diagnostics),
                     {k: v for k, v in info.items() if k != "diagnostics"})
    return path, info


def true_object_labels(dataset) -> tuple[Path, dict[str, Any]]:
    """The toy world's true objects as 20 bits per clip: the supervised upper bound."""
    from harness.labels import write_labels
    from harness.voc import CLASS_INDEX, CLASSES

    if "objects" not in dataset.clips[0].extra:
        raise BadInputError(f"{dataset.root}: --init supervised needs true object labels "
                            "(the manifest's `objects` column, as the toy world writes)")
    bits = np.zeros((len(dataset), len(CLASSES)), dtype=np.uint8)
    for i, clip in enumerate(dataset.clips):
        for name in filter(None, clip.extra["objects"].split(";")):
            bits[i, CLASS_INDEX[name]] = 1
    info = {"labeler": "true-objects", "params": {"column": "objects"},
            "dataset": dataset.fingerprint()}
    path = cache_root() / "labels" / stage_key("true-objects", dataset.fingerprint()) / "labels.npy"
    if not path.is_file():
        write_labels(path, Labels(bits, "bits", len(CLASSES),
                                  {"positives_per_class": bits.sum(0).tolist()}), info)
    return path, info


def pretext(config: RunConfig, profile: Profile, labels_path: Path, dataset, device: str,
            origin: str, voc_root: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Train the backbone on the labels (resumable); returns last.pt and its summary."""
    import json

    from harness.pretrain import CONFIG_NAME, METRICS_NAME, PretrainConfig, pretrain

    base = PretrainConfig(backbone=config.backbone, backbone_params=config.resolved_backbone_params(),
                          labels=labels_path, data=dataset.root,
                          out=Path("."), epochs=profile.pretext_epochs,
                          batch_size=profile.pretext_batch_size, lr=profile.pretext_lr,
                          image_size=profile.image_size, augment=profile.pretext_augment,
                          seed=config.seed, device=device, origin=origin,
                          progress=config.progress)
    settings = {k: v for k, v in base.to_json().items() if k not in ("out", "progress", "data", "labels")}
    monitor = _monitor(config, profile, voc_root)
    if monitor is not None:     # a monitored run is its own entry, so its log has the curve
        settings["monitor"] = monitor.protocol()
    key = stage_key("pretrain", hash_file(labels_path), dataset.fingerprint(), settings,
                    _initial_weights(config, labels_path))
    out = cache_root() / "pretrain" / key
    ckpt = pretrain(replace(base, out=out), monitor=monitor)
    history = [json.loads(line) for line in (out / METRICS_NAME).read_text().splitlines() if line]
    meta = json.loads((out / CONFIG_NAME).read_text())
    # what `precision="auto"` resolved to on this machine (bf16 on CPUs with native bf16)
    runtime = {k: meta.get(k) for k in ("device", "world_size", "precision", "channels_last")}
    summary = {"checkpoint": str(ckpt), "epochs": profile.pretext_epochs, "settings": settings,
               "runtime": runtime, "final": history[-1] if history else {}}
    if monitor is not None:
        summary["monitor"] = {"protocol": monitor.protocol(), "curve": [
            {k: v for k, v in row.items() if k == "epoch" or k.startswith("monitor_")}
            for row in history if monitor.key in row]}
    return ckpt, summary


def _monitor(config: RunConfig, profile: Profile, voc_root: Path | None):
    """The pretext monitor ``config`` asks for (:mod:`harness.monitor`), or None."""
    if config.monitor is None:
        return None
    from harness.checkpoint import build_backbone
    from harness.monitor import Monitor, MonitorConfig

    if voc_root is None:
        raise BadInputError("the monitor needs the downstream VOC folder")
    bb = build_backbone(config.backbone, config.resolved_backbone_params())
    return Monitor(MonitorConfig(kind=config.monitor, voc=voc_root, every=config.monitor_every,
                                 image_size=profile.image_size), bb.mean, bb.std)


def _initial_weights(config: RunConfig, labels_path: Path) -> str:
    """Digest of the network pretext training starts from (follows initialisation code)."""
    from harness.checkpoint import build_backbone
    from harness.labels import read_labels
    from harness.nets import weights_digest
    from harness.pretrain import initial_net

    labels, _ = read_labels(labels_path)
    backbone = build_backbone(config.backbone, config.resolved_backbone_params())
    return weights_digest(initial_net(backbone, labels.num_outputs, config.seed))


def evaluate(evaluator, model, voc_root: Path, voc_key: str, model_key: str, device: str,
             progress: bool) -> dict[str, Any]:
    """One evaluator's metrics, cached under the model, the VOC folder and its parameters."""
    import json

    key = stage_key("eval", evaluator.name, evaluator.params(), voc_key, model_key)
    folder = cache_root() / "eval" / key
    done = folder / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    metrics = evaluator.evaluate(model, voc_root, device=device, workdir=folder / "work",
                                 progress=progress)
    write_json(done, metrics)
    return metrics


# ----------------------------------------------------------------------------- the run
def run(config: RunConfig, echo: Callable[[str], None] = print) -> RunResult:
    """Run every stage (reusing cached ones), write the result record, return it."""
    from harness.checkpoint import load_pretrained
    from harness.clips import ClipDataset
    from harness.nets import weights_digest
    from harness.plugins import default_registry
    from harness.records import (StageTimer, build_record, dataset_identity, make_config,
                                 write_record)

    if config.init not in INITS:
        raise BadInputError(f"--init must be one of {', '.join(INITS)}, got {config.init!r}")
    profile = config.resolved_profile()
    device = resolve_device(config.device)
    registry = default_registry()
    backbone_params = config.resolved_backbone_params()
    backbone = registry.create("backbone", config.backbone, **backbone_params)
    evaluators = [registry.create("evaluator", name, **{"preset": config.preset,
                                                        "profile": profile.eval_profile,
                                                        "seed": config.seed, **config.eval_params})
                  for name in config.evaluators]
    timer = StageTimer()

    with timer.stage("data"):
        clips_root = config.clips or toy_clips(profile, config.world_seed, config.progress)
        voc_root = config.voc or toy_voc(config.world_seed, config.toy_voc_images, config.progress)
        dataset = ClipDataset(clips_root) if config.init != "random" else None
        voc_key = voc_fingerprint(voc_root)

    rep = labeler = None
    labels_info = pretext_info = None
    if config.init == "sound":
        with timer.stage("features+labels"):
            labels_path, labels_info, rep, labeler = sound_labels(config, dataset, device)
        if labels_info.get("excluded"):
            first = labels_info["excluded_reasons"][0]
            echo(f"skipped {len(labels_info['excluded'])} of {len(dataset)} clips with unusable "
                 f"audio (first: {first['file']}: {first['reason']}); listed in the record")
    elif config.init == "supervised":
        labels_path, labels_info = true_object_labels(dataset)

    if config.init == "random":
        spec = f"random:{config.backbone}"
        model_key = hash_params(["random", config.backbone, backbone_params, config.seed,
                                 weights_digest(load_pretrained(spec, seed=config.seed,
                                                                backbone_params=backbone_params).net)])
    else:
        with timer.stage("pretrain"):
            ckpt, pretext_info = pretext(config, profile, labels_path, dataset, device,
                                         origin="pretext" if config.init == "sound" else "supervised",
                                         voc_root=voc_root)
        spec, model_key = str(ckpt), hash_file(ckpt)

    metrics: dict[str, Any] = {}
    for evaluator in evaluators:
        with timer.stage(evaluator.name):
            model = load_pretrained(spec, seed=config.seed, backbone_params=backbone_params)
            metrics[evaluator.name] = evaluate(evaluator, model, voc_root, voc_key, model_key,
                                               device, config.progress)

    record = build_record(
        config=make_config(init=config.init, backbone=backbone, evaluators=evaluators,
                           profile=config.profile, seed=config.seed, device=device, repr=rep,
                           labeler=labeler, pretrain=pretext_info["settings"] if pretext_info else None,
                           k=config.k if rep is not None else None, world_seed=config.world_seed),
        dataset=dataset_identity(dataset, "clips" if config.clips else "toy", clips_root)
        if dataset is not None else None,
        downstream={"kind": "voc07" if config.voc else "toy-voc", "fingerprint": voc_key,
                    "path": str(voc_root)},
        metrics=metrics, timings=timer.seconds, labels=labels_info, pretext=pretext_info)
    path = write_record(record, config.results)
    echo(table1_row(record))
    return RunResult(record, path)


def table1_row(record: dict[str, Any]) -> str:
    """The run's Table-1 row: method, Head mAP, All mAP."""
    from tabulate import tabulate

    cfg = record["config"]
    if cfg["init"] == "sound":
        method = f"sound: {cfg['repr']['name']} k={cfg.get('k')} {cfg['backbone']['name']}"
    else:
        method = f"{cfg['init']} init {cfg['backbone']['name']}"
    m = record["metrics"]
    cells = [method, f"seed {cfg['seed']}"]
    headers = ["method", "seed"]
    for name, label in (("voc07_linear", "Head mAP"), ("voc07_full", "All mAP")):
        if name in m:
            headers.append(label)
            cells.append(f"{m[name]['map']:.1f}")
    return tabulate([cells], headers=headers, tablefmt="github")


def sweep(base: RunConfig, reprs: list[str], ks: list[int], backbones: list[str],
          seeds: list[int], echo: Callable[[str], None] = print) -> list[RunResult]:
    """Every combination of reprs x ks x backbones x seeds, sharing cached stages."""
    results = []
    for rep, k, bb, seed in itertools.product(reprs, ks, backbones, seeds):
        echo(f"sweep: repr={rep} k={k} backbone={bb} seed={seed}")
        results.append(run(replace(base, repr=rep, k=k, backbone=bb, seed=seed), echo=echo))
    return results

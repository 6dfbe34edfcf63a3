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
import json
import math
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from harness.runtime.cache import cache_root, hash_file, hash_params, stage_key
from harness.runtime.cache_lock import entry_lock
from harness.runtime.devices import resolve_device
from harness.api.errors import BadInputError
from harness.api.interfaces import Labels
from harness.runtime.io import write_json
from harness.pretext.monitor import EVERY as MONITOR_EVERY
from harness.profiles import (PROFILES, Profile, get_profile,  # noqa: F401 - re-exported
                              pretrain_settings)

Init = Literal["sound", "random", "supervised", "imported"]
#: the pretext stage checkpoints at most once a minute (an interrupted run redoes at most
#: a minute of training; a checkpoint after every 2-second toy epoch cost ~5% of the stage)
PRETEXT_CHECKPOINT_SECONDS = 60.0
INITS: tuple[str, ...] = ("sound", "random", "supervised", "imported")
#: the inits that train a network on clips (the others read none)
TRAINED_INITS: tuple[str, ...] = ("sound", "supervised")
#: the evaluators a run uses unless told otherwise (Table 1's Head and All)
DEFAULT_EVALUATORS: tuple[str, ...] = ("voc07_linear", "voc07_full")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on; recorded in full in the result record.

    Fields left None take their value from the profile (:mod:`harness.profiles`) or from
    the plugin's own defaults; a value given here overrides it and is recorded under
    ``config.overrides``.
    """

    repr: str = "mfcc"
    repr_params: dict[str, Any] = field(default_factory=dict)
    labeler: str = "kmeans"
    labeler_params: dict[str, Any] = field(default_factory=dict)
    #: the labeler's size parameter (its ``size_param``: clusters for k-means, bits for
    #: pca_binary); None keeps the labeler's default
    k: int | None = None
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
    evaluators: tuple[str, ...] = DEFAULT_EVALUATORS
    #: overrides the profile's pretext epochs
    epochs: int | None = None
    #: overrides the profile's pretext learning rate
    lr: float | None = None
    #: overrides the profile's pretext batch size
    batch_size: int | None = None
    #: overrides the profile's side of the stored frames pretext crops are cut from
    store_size: int | None = None
    #: torch.compile the pretext network (same weights, faster on a GPU)
    compile: bool = False
    #: overrides the profile's number of toy clips
    toy_clips: int | None = None
    #: overrides the profile's toy VOC size (trainval, test images)
    toy_voc_images: tuple[int, int] | None = None
    #: extra backbone parameters (on top of the profile's)
    backbone_params: dict[str, Any] = field(default_factory=dict)
    #: parameters of every evaluator, e.g. {"iterations": 100} (recorded in their params)
    eval_params: dict[str, Any] = field(default_factory=dict)
    results: Path = Path("results")
    progress: bool = True
    #: watch the pretext run: "knn" or "linear_probe" on the downstream train -> val split
    monitor: str | None = None
    #: epochs between monitor evaluations (and after the last)
    monitor_every: int = MONITOR_EVERY
    #: with ``init="imported"``: another framework's weights, ``torchvision:alexnet=PATH``
    #: (:mod:`harness.networks.foreign`)
    imported: str | None = None
    #: logger plugins that watch the run (``csv``, ``tensorboard``); their files go in
    #: ``<results>/<run_id>.logs/`` and the record names them
    loggers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_overrides(epochs=self.epochs, lr=self.lr, seed=self.seed, toy_clips=self.toy_clips,
                        batch_size=self.batch_size)

    def overrides(self) -> dict[str, Any]:
        """The profile values this configuration overrides, by profile field name."""
        given = {"pretext_epochs": self.epochs, "pretext_lr": self.lr,
                 "pretext_batch_size": self.batch_size, "pretext_store_size": self.store_size,
                 "toy_clips": self.toy_clips,
                 "toy_voc_images": self.toy_voc_images}
        return {k: v for k, v in given.items() if v is not None}

    def resolved_profile(self) -> Profile:
        return replace(get_profile(self.profile), **self.overrides())

    def resolved_backbone_params(self) -> dict[str, Any]:
        return {**self.resolved_profile().backbone_params_for(self.backbone),
                **self.backbone_params}


def check_overrides(*, epochs: int | None, lr: float | None, seed: int,
                    toy_clips: int | None, batch_size: int | None = None) -> None:
    """Refuse overrides that cannot mean anything (0 epochs, a learning rate <= 0, a seed < 0).

    An override of ``None`` leaves the profile's value; any other value is used as given.
    """
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise BadInputError(f"--epochs must be an integer >= 1, got {epochs!r}")
    if lr is not None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise BadInputError(f"--lr must be a finite number > 0, got {lr!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise BadInputError(f"--seed must be an integer in [0, 2^32), got {seed!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise BadInputError(f"--batch-size must be an integer >= 1, got {batch_size!r}")
    if toy_clips is not None and toy_clips < 2:
        raise BadInputError(f"toy_clips must be >= 2, got {toy_clips!r}")


@dataclass
class RunResult:
    record: dict[str, Any]
    path: Path


# ----------------------------------------------------------------------------- data
def toy_clips(profile: Profile, world_seed: int, progress: bool) -> Path:
    """The toy world's clip dataset, generated once into the cache."""
    from harness.data.toy import WORLD_VERSION, ToyConfig, generate_clips

    cfg = ToyConfig()
    out = cache_root() / "toy" / stage_key("toy-clips", WORLD_VERSION, profile.toy_clips,
                                           world_seed, cfg.to_dict())
    with entry_lock(out):
        if not (out / "manifest.csv").is_file():
            shutil.rmtree(out, ignore_errors=True)   # the cache's own leftovers (older code)
            generate_clips(out, profile.toy_clips, world_seed, config=cfg, progress=progress)
    return out


def toy_voc(world_seed: int, images: tuple[int, int], progress: bool,
            test_seed: int | None = None) -> Path:
    """The toy VOC07 (another seed of the same world), generated once into the cache.

    trainval comes from :func:`toy_voc_seed`; the test split from ``test_seed`` (None: the
    trainval seed). :func:`profile_toy_voc` is the one a run uses.
    """
    from harness.data.toy import WORLD_VERSION, ToyConfig, generate_voc

    cfg = ToyConfig()
    voc_seed = toy_voc_seed(world_seed)
    sealed = [] if test_seed is None else [test_seed]
    out = cache_root() / "toy" / stage_key("toy-voc", WORLD_VERSION, voc_seed, list(images),
                                           cfg.to_dict(), *sealed)
    with entry_lock(out):
        if not (out / "VOC2007").is_dir():
            generate_voc(out, voc_seed, config=cfg, n_trainval=images[0], n_test=images[1],
                         progress=progress, test_seed=test_seed)
    return out


def toy_voc_seed(world_seed: int) -> int:
    """The seed of world ``world_seed``'s toy VOC trainval (not the clips' seed)."""
    return world_seed + 1_000_003


def toy_test_seed(profile: Profile, world_seed: int) -> int | None:
    """The sealed test split's seed of world ``world_seed``: the profile's plus the world's,
    so every world has its own test images (None if the profile seals none)."""
    return None if profile.toy_test_seed is None else profile.toy_test_seed + world_seed


def profile_toy_voc(profile: Profile, world_seed: int, progress: bool) -> Path:
    """The toy VOC of ``profile`` for world ``world_seed``, with its sealed test split."""
    return toy_voc(world_seed, profile.toy_voc_images, progress,
                   test_seed=toy_test_seed(profile, world_seed))


def downstream_identity(kind: str, root: Path, fingerprint: str,
                        world_seed: int | None) -> dict[str, Any]:
    """The record's ``downstream`` section: the folder's kind, fingerprint and path, and
    for a toy VOC what drew it (from the generator's marker file): world and test seeds,
    world version, split sizes and a digest of the world's configuration; for a real
    folder its split sizes (``n_trainval``, ``n_test``)."""

    from harness.data.toy.generate import VOC_MARKER
    from harness.data.voc import voc2007_dir

    out: dict[str, Any] = {"kind": kind, "fingerprint": fingerprint, "path": str(root)}
    marker = voc2007_dir(root) / VOC_MARKER
    if not marker.is_file():
        # a real folder: its split sizes, by which the leaderboard tells VOC2007 from others
        from harness.data.voc import read_split_ids

        main = voc2007_dir(root) / "ImageSets" / "Main"
        out.update({f"n_{split}": len(read_split_ids(voc2007_dir(root), split))
                    for split in ("trainval", "test") if (main / f"{split}.txt").is_file()})
        return out
    try:
        meta = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{marker}: unreadable toy VOC marker ({exc})") from None
    out.update({"world_seed": world_seed, "voc_seed": meta.get("seed"),
                "test_seed": meta.get("test_seed", meta.get("seed")),
                "world_version": meta.get("world_version"),
                "n_trainval": meta.get("n_trainval"), "n_test": meta.get("n_test"),
                "toy_config": hash_params(meta.get("config"))})
    return out


def voc_fingerprint(root: Path) -> str:
    """Content key of a VOC folder: its split lists and annotations (images are named there)."""
    from harness.data.voc import voc2007_dir

    voc = voc2007_dir(root)
    files = sorted((voc / "ImageSets" / "Main").glob("*.txt")) + sorted((voc / "Annotations").glob("*.xml"))
    return hash_params([[f.relative_to(voc).as_posix(), hash_file(f)] for f in files])


def voc_cache_key(root: Path) -> str:
    """What the evaluation cache is keyed on: :func:`voc_fingerprint` plus the size and
    modification time of every image (their sha256 with ``HARNESS_VERIFY_CACHE=1``, see
    :func:`harness.runtime.cache.file_stamp`), so a JPEG replaced in place is evaluated anew."""
    from harness.runtime.cache import file_stamp
    from harness.data.voc import voc2007_dir

    images = sorted((voc2007_dir(root) / "JPEGImages").glob("*"))
    stats = [[p.name, *file_stamp(p)] for p in images]
    return hash_params([voc_fingerprint(root), stats])


# ----------------------------------------------------------------------------- stages
def sound_labels(config: RunConfig, dataset, device: str) -> tuple[Path, dict[str, Any], Any, Any]:
    """Features of every clip, then pseudo-labels; returns (labels path, info, repr, labeler)."""
    from harness.labels.sound_features import DatasetSource, FeatureOptions, compute_features
    from harness.labels.pseudo_labels import make_labels
    from harness.api.registry import default_registry

    registry = default_registry()
    rep = registry.create("repr", config.repr, **config.repr_params)
    matrix = compute_features(rep, DatasetSource(dataset),
                              FeatureOptions(device=device, skip_bad=True, progress=config.progress))
    if len(matrix.indices) < 2:
        raise BadInputError(f"{dataset.root}: {len(matrix.bad)} of {len(dataset)} clips have "
                            f"unusable audio (first: {matrix.bad[0].line()}); nothing to cluster")
    labeler = make_labeler(config, registry)
    result = make_labels(matrix.features, labeler, features_key=matrix.key,
                         features_info={"repr": rep.name, "params": rep.params()})
    diagnostics = dict(result.labels.diagnostics)
    truth = clip_truth(dataset, matrix.indices)
    if truth:       # the record's copy only: the cached labels are left as they were
        from harness.labels.diagnostics import score_against_truth

        diagnostics["truth"] = score_against_truth(result.labels.values, result.labels.kind,
                                                   truth)
    info = {**result.info, "diagnostics": diagnostics}
    if not matrix.bad:
        return result.path, info, rep, labeler
    path, info = _with_excluded_clips(result, matrix, len(dataset), info)
    return path, info, rep, labeler


#: the clips' ground-truth columns the labels are scored against, where a dataset has them
#: (the toy world's clips do: what each clip shows and what it sounds like)
TRUTH_COLUMNS = ("objects", "sounding", "scene")


def clip_truth(dataset, rows) -> dict[str, list[str]]:
    """The ground-truth columns (:data:`TRUTH_COLUMNS`) of the clips behind the feature
    ``rows``; empty when the dataset's clips carry none (real clips)."""
    clips = getattr(dataset, "clips", None) or []
    present = [c for c in TRUTH_COLUMNS if clips and c in (clips[0].extra or {})]
    return {c: [str(clips[int(i)].extra.get(c, "")) for i in rows] for c in present}


def make_labeler(config: RunConfig, registry):
    """The labeler of a sound run: its ``--labeler-param``s, ``--k`` as its size parameter,
    the run's seed unless given. A refusal of the size (its Bounds) names ``--k``."""
    from harness.labels.pseudo_labels import size_param

    params = dict(config.labeler_params)
    labeler_cls = registry.get("labeler", config.labeler).cls
    size = size_param(labeler_cls, config.labeler) if config.k is not None else None
    if size is not None:
        params[size] = config.k
    if "seed" in inspect.signature(labeler_cls.__init__).parameters:
        params.setdefault("seed", config.seed)
    try:
        return registry.create("labeler", config.labeler, **params)
    except BadInputError as exc:
        if size is None or f"parameter {size} " not in str(exc):
            raise
        raise BadInputError(f"--k {config.k}: {exc}") from None


def _with_excluded_clips(result, matrix, n_clips: int,
                         info: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Labels for every clip of the dataset, the clips without usable audio marked excluded.

    Pretext training needs one row per clip; an excluded clip's row is a placeholder that
    training never reads (its index is in the sidecar's ``excluded``).
    """
    from harness.labels.pseudo_labels import labels_ready, write_labels

    labels = result.labels
    values = np.zeros((n_clips, *labels.values.shape[1:]), dtype=labels.values.dtype)
    values[matrix.indices] = labels.values
    excluded = sorted(b.index for b in matrix.bad)
    info = {**info, "excluded": excluded,
            "excluded_reasons": [{"index": b.index, "file": str(b.source), "reason": b.reason}
                                 for b in matrix.bad]}
    path = (cache_root() / "labels" / stage_key("labels-all-clips", info["key"], excluded)
            / "labels.npy")
    if not labels_ready(path):
        write_labels(path, Labels(values, labels.kind, labels.num_outputs, labels.diagnostics),
                     {k: v for k, v in info.items() if k != "diagnostics"})
    return path, info


def true_object_labels(dataset) -> tuple[Path, dict[str, Any]]:
    """The toy world's true objects as 20 bits per clip: the supervised row's labels
    (an in-domain reference, not a bound)."""
    from harness.labels.pseudo_labels import labels_ready, write_labels
    from harness.data.voc import CLASS_INDEX, CLASSES

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
    if not labels_ready(path):
        write_labels(path, Labels(bits, "bits", len(CLASSES),
                                  {"positives_per_class": bits.sum(0).tolist()}), info)
    return path, info


def pretext(config: RunConfig, profile: Profile, labels_path: Path, dataset, device: str,
            origin: str, voc_root: Path | None = None,
            loggers=None) -> tuple[Path, dict[str, Any]]:
    """Train the backbone on the labels (resumable); returns last.pt and its summary.
    ``loggers`` (:class:`harness.pipeline.loggers.RunLogs`) receive every epoch's figures."""

    from harness.pretext.train import CONFIG_NAME, METRICS_NAME, PretrainConfig, pretrain

    settings = {**pretrain_settings(profile, config.backbone),
                "backbone_params": config.resolved_backbone_params()}
    base = PretrainConfig(backbone=config.backbone, labels=labels_path, data=dataset.root,
                          out=Path("."), seed=config.seed, device=device, origin=origin,
                          checkpoint_seconds=PRETEXT_CHECKPOINT_SECONDS,
                          compile=config.compile, progress=config.progress,
                          profile=profile.name, overrides={
                              k: v for k, v in config.overrides().items()
                              if k.startswith("pretext_")}, **settings)
    # how often a checkpoint is written does not change the weights: not part of the key
    settings = {k: v for k, v in base.to_json().items()
                if k not in ("out", "progress", "data", "labels", "checkpoint_seconds",
                             "profile", "overrides")}
    monitor = _monitor(config, profile, voc_root)
    if monitor is not None:     # a monitored run is its own entry, so its log has the curve
        settings["monitor"] = monitor.protocol()
    key = stage_key("pretrain", hash_file(labels_path), dataset.cache_key(), settings,
                    _initial_weights(config, labels_path))
    out = cache_root() / "pretrain" / key
    with entry_lock(out):
        ckpt = pretrain(replace(base, out=out), monitor=monitor, loggers=loggers)
    history = [json.loads(line) for line in (out / METRICS_NAME).read_text().splitlines() if line]
    meta = json.loads((out / CONFIG_NAME).read_text())
    # what `precision="auto"` resolved to on this machine (bf16 on CPUs with native bf16)
    runtime = {k: meta.get(k) for k in ("device", "world_size", "precision", "channels_last")}
    summary = {"checkpoint": str(ckpt), "epochs": profile.pretext_epochs, "settings": settings,
               "profile": base.profile, "overrides": base.overrides,
               "runtime": runtime, "final": history[-1] if history else {}}
    if monitor is not None:
        summary["monitor"] = {"protocol": monitor.protocol(), "curve": [
            {k: v for k, v in row.items() if k == "epoch" or k.startswith("monitor_")}
            for row in history if monitor.key in row]}
    return ckpt, summary


def _monitor(config: RunConfig, profile: Profile, voc_root: Path | None):
    """The pretext monitor ``config`` asks for (:mod:`harness.pretext.monitor`), or None."""
    if config.monitor is None:
        return None
    from harness.networks.checkpoint import build_backbone
    from harness.pretext.monitor import Monitor, MonitorConfig

    if voc_root is None:
        raise BadInputError("the monitor needs the downstream VOC folder")
    bb = build_backbone(config.backbone, config.resolved_backbone_params())
    return Monitor(MonitorConfig(kind=config.monitor, voc=voc_root, every=config.monitor_every,
                                 image_size=profile.image_size), bb.mean, bb.std)


def _initial_weights(config: RunConfig, labels_path: Path) -> str:
    """Digest of the network pretext training starts from (follows initialisation code)."""
    from harness.networks.checkpoint import build_backbone
    from harness.labels.pseudo_labels import read_labels
    from harness.networks.shape import weights_digest
    from harness.pretext.train import initial_net

    labels, _ = read_labels(labels_path)
    backbone = build_backbone(config.backbone, config.resolved_backbone_params())
    return weights_digest(initial_net(backbone, labels.num_outputs, config.seed))


def evaluate(evaluator, model, voc_root: Path, voc_key: str, model_key: str,
             profile: Profile, seed: int, device: str, progress: bool,
             echo: Callable[[str], None] | None = None) -> tuple[dict[str, Any], Any]:
    """One evaluator's metrics (the record's form) and its per-image test scores (a
    :class:`harness.evaluation.ap.SplitScores`, or None if it returns none), cached under the model,
    the downstream folder, the evaluator's parameters and the profile and seed it runs
    under. A cache entry that cannot be read back (a truncated ``metrics.json``, a
    damaged scores file) is recomputed, and ``echo`` (default: stderr) says so."""

    from harness.evaluation.stage import metrics_dict, run_evaluator
    from harness.runtime.io import write_bytes
    from harness.results.scores import npz_bytes, parse_npz

    # the profile's evaluation scaling is in the key, not only its name: an evaluator may read
    # any of it (the VOC07 ones read iteration counts and precision), so changing the
    # profile must not return metrics cached under the old values
    key = stage_key("eval", evaluator.name, evaluator.params(), profile.name,
                    asdict(profile.evaluation), seed, voc_key, model_key)
    folder = cache_root() / "eval" / key
    done, scores_file = folder / "metrics.json", folder / "test-scores.npz"
    with entry_lock(folder):
        if done.is_file():
            try:
                metrics = json.loads(done.read_text(encoding="utf-8"))
                if not isinstance(metrics, dict) or "value" not in metrics:
                    raise ValueError("not an evaluator's metrics")
                scores = (parse_npz(scores_file.read_bytes(), scores_file)[evaluator.name]
                          if scores_file.is_file() else None)
                return metrics, scores
            except (ValueError, KeyError, BadInputError) as exc:   # JSONDecodeError is a ValueError
                (echo or _say)(f"{evaluator.name}: damaged evaluation cache entry {done} "
                               f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                               f"recomputing it")
                done.unlink(missing_ok=True)
                scores_file.unlink(missing_ok=True)
        result = run_evaluator(evaluator, model, voc_root, profile=profile.name, seed=seed,
                               device=device, work_dir=folder / "work", progress=progress)
        if result.test_scores is not None:      # before metrics.json, which marks the entry done
            write_bytes(scores_file, npz_bytes({evaluator.name: result.test_scores}))
        metrics = metrics_dict(result)
        write_json(done, metrics)
        return metrics, result.test_scores


def _say(line: str) -> None:
    """A line for the user on stderr (where stdout may be a table someone parses)."""
    import sys

    print(line, file=sys.stderr)


# ----------------------------------------------------------------------------- the run
def check_run(config: RunConfig, clip_counts: dict[Path, int] | None = None):
    """Everything a run can be refused for that is known before its first stage, checked
    now: the init, the plugins and their parameters (the labeler's Bounds included), the
    labeler's size against the clips it labels, the pretext sizes against disk and memory
    (:mod:`harness.runtime.bounds`), and that the results and cache folders take a file. Returns
    (profile, device, backbone parameters, backbone, evaluators) for :func:`run`.

    ``clip_counts`` remembers the size of each ``--clips`` dataset across the runs of a
    sweep.
    """
    from harness.runtime.bounds import probe_writable
    from harness.labels.pseudo_labels import size_param
    from harness.api.registry import default_registry
    from harness.results.records import check_results_dir

    if config.init not in INITS:
        raise BadInputError(f"--init must be one of {', '.join(INITS)}, got {config.init!r}")
    if (config.init == "imported") != (config.imported is not None):
        raise BadInputError("--init: an imported network needs its weights spec, "
                            "SOURCE:ARCH=PATH (e.g. torchvision:alexnet=alexnet.pth)")
    check_results_dir(config.results)
    profile = config.resolved_profile()
    device = resolve_device(config.device)
    registry = default_registry()
    backbone_params = config.resolved_backbone_params()
    if config.imported is not None:     # the weights' architecture names the backbone
        from harness.networks.foreign import check_backbone, parse_spec

        check_backbone(parse_spec(config.imported), config.backbone)
    backbone = registry.create("backbone", config.backbone, **backbone_params)
    for name in config.loggers:
        registry.get("logger", name)
    if config.k is not None:
        if config.init != "sound":
            raise BadInputError(f"--k sets the labeler's size; --init {config.init} runs no "
                                "labeler")
        size_param(registry.get("labeler", config.labeler).cls, config.labeler)
    if not config.evaluators:
        raise BadInputError("--eval: name at least one evaluator")
    evaluators = [registry.create("evaluator", name, **evaluator_params(config, name))
                  for name in config.evaluators]
    if config.init in TRAINED_INITS:     # a random or imported network reads no clips
        n_clips = _clip_count(config, profile, {} if clip_counts is None else clip_counts)
        if config.init == "sound":
            registry.create("repr", config.repr, **config.repr_params)
            _check_labeler_size(make_labeler(config, registry), config, n_clips)
        _check_pretext_sizes(config, profile, n_clips)
    probe_writable(config.results, "--results")
    probe_writable(cache_root(), "cache folder ($HARNESS_CACHE)")
    return profile, device, backbone_params, backbone, evaluators


def _clip_count(config: RunConfig, profile: Profile, counts: dict[Path, int]) -> int:
    """How many clips the run's pretext stage reads: the ``--clips`` dataset's, else the
    toy world's."""
    from harness.data.clips import ClipDataset

    if config.clips is None:
        return profile.toy_clips
    root = Path(config.clips).resolve()
    if root not in counts:
        counts[root] = len(ClipDataset(config.clips))
    return counts[root]


def _check_labeler_size(labeler, config: RunConfig, n_clips: int) -> None:
    """Refuse a labeler asked for more outputs (clusters, bits) than there are clips: no
    clustering or code of ``n_clips`` rows has more."""
    size = _labeler_size(labeler)
    if isinstance(size, int) and size > n_clips:
        name = "--k" if config.k is not None else f"--labeler-param {labeler.size_param}="
        sep = " " if config.k is not None else ""
        raise BadInputError(f"{name}{sep}{size}: labeler {config.labeler!r} cannot make more "
                            f"outputs ({labeler.size_param}={size}) than the {n_clips} clips "
                            f"it labels")


def _check_pretext_sizes(config: RunConfig, profile: Profile, n_clips: int) -> None:
    """Refuse a frame store that would not fit on disk, or a batch that would not fit in
    memory, before any stage (:func:`harness.runtime.bounds.check_pretext_sizes`)."""
    from harness.runtime.bounds import check_pretext_sizes

    settings = pretrain_settings(profile, config.backbone)
    image_size = settings["image_size"]
    store_size = settings.get("store_size") or image_size
    check_pretext_sizes(n_clips=n_clips, store_size=store_size, image_size=image_size,
                        batch_size=settings["batch_size"], store=None,
                        store_option="--store-size" if config.store_size else "image size",
                        size_option="image size",
                        batch_option="--batch-size" if config.batch_size else "batch size")


def run(config: RunConfig, echo: Callable[[str], None] = print) -> RunResult:
    """Run every stage (reusing cached ones), write the result record, return it."""
    from harness.networks.checkpoint import load_pretrained
    from harness.data.clips import ClipDataset
    from harness.networks.shape import weights_digest
    from harness.results.records import (StageTimer, build_record, dataset_identity, make_config,
                                 write_record)

    profile, device, backbone_params, backbone, evaluators = check_run(config)
    timer = StageTimer(echo=echo)
    run_id, logs = _open_logs(config)

    with timer.stage("data"):
        clips_root = dataset = None
        if config.init in TRAINED_INITS:     # a random or imported network trains on nothing
            clips_root = config.clips or toy_clips(profile, config.world_seed, config.progress)
            dataset = ClipDataset(clips_root)
        voc_root = config.voc or profile_toy_voc(profile, config.world_seed, config.progress)
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

    if config.init == "imported":
        spec = config.imported
        imported = load_pretrained(spec, seed=config.seed, backbone_params=backbone_params)
        model_key = hash_params(["imported", imported.meta["imported"]["sha256"],
                                 config.backbone, backbone_params, config.seed,
                                 weights_digest(imported.net)])
    elif config.init == "random":
        spec = f"random:{config.backbone}"
        model_key = hash_params(["random", config.backbone, backbone_params, config.seed,
                                 weights_digest(load_pretrained(spec, seed=config.seed,
                                                                backbone_params=backbone_params).net)])
    else:
        with timer.stage("pretrain"):
            ckpt, pretext_info = pretext(config, profile, labels_path, dataset, device,
                                         origin="pretext" if config.init == "sound" else "supervised",
                                         voc_root=voc_root, loggers=logs)
        spec, model_key = str(ckpt), hash_file(ckpt)

    metrics: dict[str, Any] = {}
    test_scores: dict[str, Any] = {}
    voc_cache = voc_cache_key(voc_root)
    for evaluator in evaluators:
        with timer.stage(evaluator.name):
            model = load_pretrained(spec, seed=config.seed, backbone_params=backbone_params)
            metrics[evaluator.name], scores = evaluate(
                evaluator, model, voc_root, voc_cache, model_key, profile, config.seed, device,
                config.progress, echo=echo)
        if scores is not None:
            test_scores[evaluator.name] = scores
        if logs:
            logs.log_eval(evaluator.name, metrics[evaluator.name])

    record = build_record(
        config=make_config(init=config.init, backbone=backbone, evaluators=evaluators,
                           profile=config.profile, seed=config.seed, device=device, repr=rep,
                           labeler=labeler, pretrain=pretext_info["settings"] if pretext_info else None,
                           k=_labeler_size(labeler), size_param=getattr(labeler, "size_param", None),
                           world_seed=config.world_seed,
                           overrides=config.overrides(),
                           # where imported weights came from: framework, file, sha256
                           **({"imported": imported.meta["imported"]}
                              if config.init == "imported" else {})),
        dataset=dataset_identity(dataset, "clips" if config.clips else "toy", clips_root)
        if dataset is not None else None,
        downstream=downstream_identity("voc07" if config.voc else "toy-voc", voc_root, voc_key,
                                       None if config.voc else config.world_seed),
        metrics=metrics, timings=timer.seconds, labels=labels_info, pretext=pretext_info,
        test_scores=test_scores, run_id=run_id)
    if logs:
        logs.log_config(record["config"])
        record["logs"] = {"folder": logs.folder.name, "loggers": list(logs.names),
                          "files": logs.close()}
    path = write_record(record, config.results, test_scores=test_scores)
    echo(table1_row(record))
    echo(stage_summary(timer.seconds))
    return RunResult(record, path)


def _open_logs(config: RunConfig):
    """(run id, :class:`harness.pipeline.loggers.RunLogs`) of a run with ``--logger``: the id is
    chosen now, so that the logs folder, ``<results>/<run_id>.logs``, has the record's
    name while the run goes on. (None, no loggers) without."""
    from harness.api.registry import default_registry
    from harness.results.records import new_run_id, plugin_entry, utc_now
    from harness.pipeline.loggers import RunLogs

    if not config.loggers:
        return None, RunLogs([], None)
    sound = config.init == "sound"
    named = {"init": config.init, "repr": {"name": config.repr} if sound else None,
             "labeler": plugin_entry(make_labeler(config, default_registry())) if sound
             else None, "backbone": {"name": config.backbone}, "seed": config.seed}
    run_id = new_run_id(named, utc_now())
    folder = Path(config.results) / f"{run_id}.logs"
    return run_id, RunLogs.open(config.loggers, folder, run_id)


def evaluator_params(config: RunConfig, name: str) -> dict[str, Any]:
    """``config.eval_params`` for evaluator ``name``: the unprefixed keys it declares, and
    every ``name.key`` one.

    An unprefixed key goes to each evaluator of the run that declares it (``iterations``
    to the VOC07 ones, not to ``knn``); one that no evaluator of the run declares is
    refused, with the scoped form that gives a parameter to one evaluator.
    """
    scoped = {k.partition(".")[2]: v for k, v in config.eval_params.items()
              if k.startswith(f"{name}.")}
    unknown = sorted({k.partition(".")[0] for k in config.eval_params if "." in k}
                     - set(config.evaluators))
    if unknown:
        raise BadInputError(f"--eval-param {unknown[0]}.*: {unknown[0]!r} is not an evaluator "
                            f"of this run ({', '.join(config.evaluators)})")
    shared = {k: v for k, v in config.eval_params.items() if "." not in k}
    for key in shared:
        if not any(_declares(evaluator, key) for evaluator in config.evaluators):
            takes = "; ".join(f"{e} takes {', '.join(_declared(e) or ['nothing'])}"
                              for e in config.evaluators)
            raise BadInputError(
                f"--eval-param {key}: no evaluator of this run has a parameter {key!r} "
                f"({takes}); to give one evaluator a parameter, scope it: --eval-param "
                f"{config.evaluators[0]}.NAME=VALUE")
    return {**{k: v for k, v in shared.items() if _declares(name, k)}, **scoped}


def _declared(evaluator: str) -> list[str] | None:
    """The parameters the evaluator plugin ``evaluator`` declares; None if it accepts any
    keyword, or is not installed (the registry refuses it with its own message)."""
    from harness.api.errors import HarnessError
    from harness.api.params import _takes_kwargs, declared_params
    from harness.api.registry import default_registry

    try:
        cls = default_registry().get("evaluator", evaluator).cls
    except HarnessError:
        return None
    return None if _takes_kwargs(cls) else list(declared_params(cls))


def _declares(evaluator: str, param: str) -> bool:
    """Whether the evaluator plugin ``evaluator`` takes a parameter called ``param``."""
    declared = _declared(evaluator)
    return declared is None or param in declared


def _labeler_size(labeler) -> int | None:
    """The value of the labeler's size parameter actually used (None without a labeler)."""
    name = getattr(labeler, "size_param", None) if labeler is not None else None
    return labeler.params().get(name) if name else None


def table1_row(record: dict[str, Any]) -> str:
    """The run's Table-1 row: method, seed, then each evaluator's headline figure."""
    from harness.results.records import metrics_entries

    from tabulate import tabulate

    cfg = record["config"]
    if cfg["init"] == "sound":
        size = f" {cfg.get('size_param') or 'k'}={cfg['k']}" if cfg.get("k") is not None else ""
        method = f"sound: {cfg['repr']['name']}{size} {cfg['backbone']['name']}"
    elif cfg["init"] == "imported":
        source = cfg.get("imported") or {}
        method = (f"imported {source.get('source')}:{source.get('architecture')} "
                  f"{cfg['backbone']['name']}")
    else:
        method = f"{cfg['init']} init {cfg['backbone']['name']}"
    cells = [method, f"seed {cfg['seed']}"]
    headers = ["method", "seed"]
    for name, m in metrics_entries(record).items():
        headers.append(TABLE1_LABELS.get(name, f"{name} {m['headline']}"))
        cells.append(f"{m['value']:.1f}")
    return tabulate([cells], headers=headers, tablefmt="github")


#: column names of Table 1's two evaluators
TABLE1_LABELS = {"voc07_linear": "Head mAP", "voc07_full": "All mAP"}


def stage_summary(seconds: dict[str, float]) -> str:
    """Where the run's minutes went: seconds and share of the total per stage, as plain
    lines that read the same on a terminal and in a log (the record keeps the numbers)."""
    from tabulate import tabulate

    total = sum(seconds.values())
    rows = [[name, f"{s:.1f}", f"{100 * s / total:.0f}%" if total > 0 else "-"]
            for name, s in seconds.items()]
    rows.append(["total", f"{total:.1f}", "100%" if total > 0 else "-"])
    return tabulate(rows, headers=["stage", "seconds", "share"], tablefmt="simple",
                    colalign=("left", "right", "right"), disable_numparse=True)


def sweep_configs(base: RunConfig, reprs: list[str], ks: list[int | None],
                  backbones: list[str], seeds: list[int], *, inits: tuple[str, ...] = ("sound",),
                  world_seeds: tuple[int, ...] = (0,)) -> list[RunConfig]:
    """The runs of a sweep: sound runs for every repr x k, the random and supervised rows
    once per backbone (they read no sound), each for every world seed and run seed."""
    configs = []
    for world, init, bb in itertools.product(world_seeds, inits, backbones):
        pairs = itertools.product(reprs, ks) if init == "sound" else [(base.repr, None)]
        for (rep, k), seed in itertools.product(list(pairs), seeds):
            configs.append(replace(base, init=init, repr=rep, k=k, backbone=bb, seed=seed,
                                   world_seed=world))
    return configs


def is_recorded_by(config: RunConfig, record: dict[str, Any]) -> bool:
    """Whether ``record`` is a run of ``config``: the same init, representation, labeler and
    its size, backbone, profile, seeds, overrides, data sources and evaluators (with the
    parameters ``config`` gives them). The representation's, labeler's and backbone's other
    parameters are not compared (a sweep sets none of them), so a record of a run with
    ``--repr-param`` would count as the sweep's. A record whose protocol was superseded
    stops counting once ``harness leaderboard --archive-superseded`` moves it out of the
    results folder."""
    c = record.get("config", {})
    name = lambda entry: (entry or {}).get("name")           # noqa: E731
    same = (c.get("init") == config.init and c.get("seed") == config.seed
            and c.get("world_seed", 0) == config.world_seed and c.get("profile") == config.profile
            and _spec(c.get("backbone")) == config.backbone
            and c.get("overrides", {}) == _jsonable(config.overrides())
            and (record.get("downstream") or {}).get("kind") == ("voc07" if config.voc else "toy-voc"))
    if same and config.init == "sound":
        same = (name(c.get("repr")) == config.repr and name(c.get("labeler")) == config.labeler
                and c.get("k") == labeler_size(config))
    if same and config.init != "random":
        same = (record.get("dataset") or {}).get("kind") == ("clips" if config.clips else "toy")
    if not same:
        return False
    from harness.api.registry import default_registry

    registry, evaluators = default_registry(), c.get("evaluators") or {}
    return all(name in evaluators and evaluators[name]["params"] == _jsonable(
        registry.create("evaluator", name, **evaluator_params(config, name)).params())
        for name in config.evaluators)


def _spec(entry: dict[str, Any] | None) -> str | None:
    """The name a plugin entry of a record was asked for: a family's (``timm:``) with its
    variant (``timm:resnet18``), which the registry gave it as ``variant``."""
    name = (entry or {}).get("name")
    if name and name.endswith(":"):
        return f"{name}{((entry or {}).get('params') or {}).get('variant')}"
    return name


def labeler_size(config: RunConfig) -> Any:
    """The labeler size a sound run of ``config`` uses: ``config.k``, else the value its
    ``--labeler-param`` gives, else the labeler's default (None if it declares no size)."""
    from harness.api.params import declared_params
    from harness.api.registry import default_registry

    cls = default_registry().get("labeler", config.labeler).cls
    param = getattr(cls, "size_param", None)
    if config.k is not None or param is None:
        return config.k
    if param in config.labeler_params:
        return config.labeler_params[param]
    return declared_params(cls)[param].default


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from a record's JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def sweep(base: RunConfig, reprs: list[str], ks: list[int | None], backbones: list[str],
          seeds: list[int], echo: Callable[[str], None] = print, *,
          inits: tuple[str, ...] = ("sound",), world_seeds: tuple[int, ...] = (0,),
          skip_recorded: bool = False, dry_run: bool = False,
          execute: Callable[[list[RunConfig], list[str]], list[RunResult]] | None = None
          ) -> list[RunResult]:
    """Every run of :func:`sweep_configs`, in order, sharing cached stages.

    ``skip_recorded``: leave out a run that a record in ``base.results`` already holds
    (:func:`is_recorded_by`), so that a long batch can be stopped and started again.
    ``dry_run``: list the runs (and which are recorded) and run none.
    Every run is checked (:func:`check_run`) before the first one starts: one that would be
    refused stops the sweep before any compute, its line saying ``refused: <why>``; a dry
    run lists it so.
    ``execute``: runs the runs left to do, given with their lines, and returns their
    results (a launcher of :mod:`harness.launch`; in a dry run it is given the runs to
    run and says how it would run them); by default each runs here, in turn.
    """
    from harness.api.errors import HarnessError
    from harness.results.records import read_records

    configs = sweep_configs(base, reprs, ks, backbones, seeds, inits=inits,
                            world_seeds=world_seeds)
    lines = []
    for i, cfg in enumerate(configs, 1):
        what = (f"repr={cfg.repr} labeler={cfg.labeler} k={cfg.k} " if cfg.init == "sound"
                else "")
        lines.append(f"sweep {i}/{len(configs)}: init={cfg.init} {what}"
                     f"backbone={cfg.backbone} seed={cfg.seed} world_seed={cfg.world_seed}")
    refused: dict[int, HarnessError] = {}
    clip_counts: dict[Path, int] = {}
    for i, cfg in enumerate(configs):
        try:
            check_run(cfg, clip_counts)
        except HarnessError as exc:
            refused[i] = exc
    if refused and not dry_run:
        for i, exc in refused.items():
            echo(f"{lines[i]}: refused: {exc}")
        first, exc = next(iter(refused.items()))
        error = BadInputError if exc.exit_code == 2 else HarnessError
        raise error(f"{len(refused)} of {len(configs)} runs of the sweep are refused, so none "
                    f"was started (run {first + 1}: {exc})")
    recorded = read_records(base.results) if (skip_recorded or dry_run) else []
    results, todo = [], []
    for i, (cfg, line) in enumerate(zip(configs, lines)):
        if i in refused:
            echo(f"{line}: refused: {refused[i]}")
            continue
        held = next((r["run_id"] for r in recorded if is_recorded_by(cfg, r)), None)
        if dry_run or (skip_recorded and held):
            echo(f"{line}: {'recorded as ' + held if held else 'to run'}"
                 f"{'' if dry_run else ', skipped'}")
            if dry_run and not held and execute is not None:
                todo.append((cfg, line))        # the launcher says how it would run them
            continue
        if execute is not None:
            todo.append((cfg, line))
            continue
        echo(line)
        results.append(run(cfg, echo=echo))
    if execute is not None and todo:
        results = execute([cfg for cfg, _ in todo], [line for _, line in todo])
    return results

"""What a run can be refused for before its first stage, checked before any compute (a
sweep checks every run of it before the first starts).
"""

from __future__ import annotations

from pathlib import Path

from harness.api.errors import BadInputError
from harness.pipeline.config import TRAINED_INITS, RunConfig, evaluator_params
from harness.pipeline.labels_stage import labeler_size_of, make_labeler
from harness.profiles import Profile, pretrain_settings
from harness.results.schema import INITS
from harness.runtime.cache import cache_root
from harness.runtime.devices import resolve_device


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
    from harness.results.store import check_results_dir

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
    size = labeler_size_of(labeler)
    size = size[1] if size else None
    if size is not None and size > n_clips:
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

"""The pretext stage: train the backbone to predict the labels (resumable), cached under
the labels, the clips, the training settings and the network it starts from.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.pipeline.config import RunConfig
from harness.profiles import Profile, pretrain_settings
from harness.runtime.cache import cache_root, hash_file, stage_key
from harness.runtime.cache_lock import entry_lock


#: the pretext stage checkpoints at most once a minute (an interrupted run redoes at most
#: a minute of training; a checkpoint after every 2-second toy epoch cost ~5% of the stage)
PRETEXT_CHECKPOINT_SECONDS = 60.0


def pretext(config: RunConfig, profile: Profile, labels_path: Path, dataset, device: str,
            origin: str, voc_root: Path | None = None,
            loggers=None) -> tuple[Path, dict[str, Any]]:
    """Train the backbone on the labels (resumable); returns last.pt and its summary.
    ``loggers`` (:class:`harness.pipeline.loggers.RunLogs`) receive every epoch's figures."""

    from harness.pretext.config import CONFIG_NAME, METRICS_NAME, PretrainConfig
    from harness.pretext.train import pretrain

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
    from harness.pretext.monitor import build_monitor

    return build_monitor(config.monitor, voc_root, backbone=config.backbone,
                         backbone_params=config.resolved_backbone_params(),
                         image_size=profile.image_size, every=config.monitor_every)


def _initial_weights(config: RunConfig, labels_path: Path) -> str:
    """Digest of the network pretext training starts from (follows initialisation code)."""
    from harness.networks.checkpoint import build_backbone
    from harness.labels.pseudo_labels import read_labels
    from harness.networks.shape import weights_digest
    from harness.pretext.train import initial_net

    labels, _ = read_labels(labels_path)
    backbone = build_backbone(config.backbone, config.resolved_backbone_params())
    return weights_digest(initial_net(backbone, labels.num_outputs, config.seed))

"""A run's checkpoints: what one must match to be resumed, resuming from it, writing it
(atomically, after a check that the weights are finite), and stopping a run whose loss
or weights became NaN or infinite with the last good checkpoint kept.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from harness import __version__
from harness.api.errors import BadInputError, HarnessError
from harness.data.clips import ClipDataset
from harness.networks.checkpoint import first_nonfinite, read_checkpoint, save_checkpoint
from harness.pretext.config import METRICS_NAME, PretrainConfig
from harness.pretext.data import PseudoLabels, TrainingData
from harness.pretext.distributed import Runtime
from harness.runtime.cache import hash_params
from harness.runtime.io import write_text

if TYPE_CHECKING:
    from harness.pretext.log import EpochLog
    from harness.pretext.train import TrainingState


class TrainingDiverged(HarnessError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def run_key(config: PretrainConfig, labels: PseudoLabels, dataset: ClipDataset,
            rt: Runtime) -> str:
    """What a checkpoint must match to be resumed: everything that changes the weights."""
    parts = config.to_json()
    for key in ("out", "labels", "data", "device", "channels_last", "fused_adamw", "compile",
                "checkpoint_every", "checkpoint_seconds", "restart", "threads", "progress",
                "precision", "profile", "overrides"):
        parts.pop(key)
    parts.update(labels_sha256=labels.sha256, data=dataset.cache_key(), bf16=rt.bf16)
    return hash_params(parts)


def resume(config: PretrainConfig, rt: Runtime, run: TrainingState, ckpt_path: Path,
           log: EpochLog) -> tuple[int, list[dict]]:
    """(first epoch to train, history so far): from ``out/last.pt`` when it is this run's."""
    if not ckpt_path.is_file() or config.restart:
        return 0, []
    ckpt = read_checkpoint(ckpt_path, map_location="cpu", mmap=False, check_train_state=True)
    state = ckpt.get("train_state") or {}
    if state.get("run_key") != run.key:
        raise BadInputError(f"{ckpt_path}: a checkpoint of a different run (other labels, "
                            "data or settings); use another --out, or --restart")
    history = list(state["history"])
    if state["epoch"] >= config.epochs:
        log.note(f"pretrain: {ckpt_path} is complete ({state['epoch']} epochs)")
        return int(state["epoch"]), history
    run.net.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    log.note(f"pretrain: resuming {ckpt_path} after epoch {state['epoch']}")
    return int(state["epoch"]), history


def run_meta(config: PretrainConfig, rt: Runtime, data: TrainingData,
             run: TrainingState) -> dict[str, Any]:
    """What the checkpoint and config.json say about the run."""
    labels, dataset = data.labels, data.dataset
    return {
        "origin": config.origin, "config": config.to_json(), "run_key": run.key,
        "labels": {"path": str(labels.path), "sha256": labels.sha256, "kind": labels.kind,
                   "num_outputs": labels.num_outputs, "labeler": labels.info.get("labeler"),
                   "params": labels.info.get("params")},
        "data": {"path": str(dataset.root), "fingerprint": dataset.fingerprint(),
                 "num_clips": len(dataset), "train": len(data.train_idx),
                 "val": len(data.val_idx), "excluded": len(labels.excluded)},
        "device": str(rt.device), "world_size": rt.world,
        "precision": "bf16" if rt.bf16 else "fp32", "channels_last": rt.channels_last,
        "harness_version": __version__, "torch_version": str(torch.__version__),
    }


def write_checkpoint(config: PretrainConfig, run: TrainingState, data: TrainingData,
                     meta: dict[str, Any], history: list[dict], ckpt_path: Path) -> None:
    """``last.pt`` when :func:`checkpoint_due` and after the last epoch; metrics.jsonl always.

    Weights that hold NaN or infinite values stop the run before anything is written
    (a finite loss does not guarantee finite weights: a monitor, or a layer the loss
    does not reach, may hold them); the last good checkpoint stays."""
    epoch, row = history[-1]["epoch"], history[-1]
    bad = first_nonfinite(run.net.state_dict())
    if bad is not None:
        diverged(epoch - 1, None, ckpt_path, history[:-1], f"weights (tensor {bad!r})")
    last = epoch == config.epochs
    if last or checkpoint_due(config, epoch, run.saved_at):
        state = {"epoch": epoch, "run_key": run.key, "history": history}
        if not last:  # the final checkpoint carries no optimizer state
            state.update(optimizer=run.optimizer.state_dict(),
                         scheduler=run.scheduler.state_dict())
        save_checkpoint(ckpt_path, backbone_name=config.backbone, backbone=run.backbone,
                        net=run.net, output_kind=data.labels.kind,
                        image_size=config.image_size, mean=run.mean, std=run.std,
                        meta={**meta, "epoch": epoch, "val_accuracy": row["val_accuracy"],
                              "train_accuracy": row["train_accuracy"]},
                        train_state=state)
        run.saved_at = time.monotonic()
    write_text(Path(config.out) / METRICS_NAME, "".join(json.dumps(r) + "\n" for r in history))


def checkpoint_due(config: PretrainConfig, epochs_done: int, saved_at: float) -> bool:
    """Whether the end of epoch ``epochs_done`` (1-based) gets a checkpoint: every
    ``checkpoint_every`` epochs, once ``checkpoint_seconds`` have passed since the last one
    (``saved_at``, a ``time.monotonic()`` reading). A toy epoch takes about 2 s and a
    checkpoint with AdamW's moments about 0.1 s, so one per epoch costs ~5% of the stage."""
    return (epochs_done % config.checkpoint_every == 0
            and time.monotonic() - saved_at >= config.checkpoint_seconds)


def check_finite(loss: torch.Tensor, rt: Runtime, epoch: int, step: int, ckpt_path: Path,
                 history: list[dict]) -> None:
    """Stop every rank together when this step's loss is NaN or infinite."""
    bad = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0], device=loss.device)
    if rt.world > 1:
        dist.all_reduce(bad)   # every rank stops together
    if bad.item():
        diverged(epoch, step + 1, ckpt_path, history)


def diverged(epoch: int, step: int | None, ckpt_path: Path, history: list[dict],
             what: str = "loss") -> None:
    """Raise :class:`TrainingDiverged` saying where, and which checkpoint is kept."""
    kept = (f"the last good checkpoint, {ckpt_path} (epoch {history[-1]['epoch']}), is kept"
            if history and ckpt_path.is_file() else "no checkpoint had been written yet")
    where = f"epoch {epoch + 1}" + (f", step {step}" if step is not None else "")
    raise TrainingDiverged(f"{what} became NaN or infinite at {where}; "
                           f"training stopped and {kept}. Try a lower --lr.")


"""The loggers of one run (:class:`harness.api.interfaces.Logger` plugins), fed by the core.

``harness pretrain --logger csv --logger tensorboard`` writes under ``OUT/logs/``;
``harness run`` under ``<results>/<run_id>.logs/``, which its record names. What is
logged, each figure as ``<prefix>/<name>``:

- ``pretext/*`` at step = epoch: ``train_loss``, ``train_accuracy``, ``val_loss``,
  ``val_accuracy``, ``lr``, ``images_per_s``, the epoch's seconds, and the monitor's
  probe (``monitor_knn_val_map``) on the epochs it runs;
- ``eval/<evaluator>/train_loss`` at step = iteration, for an evaluator that records its
  training loss curve (``details["train_loss_curve"]``, as the VOC07 ones do);
- ``final/<evaluator>/*`` at step 0: the headline figure and its breakdown;
- the resolved configuration (``log_config``).

Only rank 0 logs; elsewhere a :class:`RunLogs` holds no logger and does nothing.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.api.errors import BadInputError


def is_main_process() -> bool:
    """Rank 0 of a torchrun launch, or a process that is not part of one."""
    return int(os.environ.get("RANK", "0")) == 0


def numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of ``values`` (booleans, None, text and NaN left out)."""
    return {str(k): float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class RunLogs:
    """Every logger of a run behind one object; closing returns the files they wrote."""

    def __init__(self, loggers: list[Any], folder: Path | None, names: tuple[str, ...] = ()):
        self.loggers = loggers
        self.folder = folder
        self.names = names

    @classmethod
    def open(cls, names: Iterable[str], folder: str | os.PathLike, run_name: str,
             *, main: bool | None = None) -> "RunLogs":
        """Start the loggers ``names`` writing under ``folder`` (created); nothing on a
        rank other than 0 (``main``, default: :func:`is_main_process`)."""
        from harness.api.registry import default_registry

        names = tuple(dict.fromkeys(names))
        if not names or not (is_main_process() if main is None else main):
            return cls([], None, names)
        registry = default_registry()
        loggers = [registry.create("logger", name) for name in names]
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInputError(f"{folder}: cannot create the logs folder ({exc.strerror})") \
                from None
        started = []
        try:
            for logger in loggers:
                logger.start(folder, run_name)
                started.append(logger)
        except BaseException:
            for logger in started:
                logger.close()
            raise
        return cls(loggers, folder, names)

    def __bool__(self) -> bool:
        return bool(self.loggers)

    def log_metrics(self, step: int, metrics: Mapping[str, Any], prefix: str) -> None:
        values = numbers(metrics)
        if values:
            for logger in self.loggers:
                logger.log_metrics(int(step), values, prefix)

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        """One pretext epoch's row of metrics.jsonl (:func:`harness.pretext.train.train_epoch`)."""
        self.log_metrics(int(row["epoch"]), {k: v for k, v in row.items() if k != "epoch"},
                         "pretext")

    def log_eval(self, name: str, metrics: Mapping[str, Any]) -> None:
        """An evaluator's result (the record's form): its training loss curve, if it
        records one, then its headline figure and breakdown."""
        curve = (metrics.get("details") or {}).get("train_loss_curve") or []
        for point in curve:
            if isinstance(point, (list, tuple)) and len(point) == 2:
                self.log_metrics(int(point[0]), {"train_loss": point[1]}, f"eval/{name}")
        final = {metrics["headline"]: metrics["value"],
                 **{f"{metrics['headline']}/{k}": v
                    for k, v in (metrics.get("breakdown") or {}).items()}}
        self.log_metrics(0, final, f"final/{name}")

    def log_config(self, config: Mapping[str, Any]) -> None:
        from harness.results.schema import to_jsonable

        for logger in self.loggers:
            logger.log_config(to_jsonable(dict(config)))

    def close(self) -> list[str]:
        """Close every logger; the files they wrote, relative to the folder, sorted."""
        files: set[str] = set()
        for logger in self.loggers:
            logger.close()
            for path in logger.files():
                files.add(Path(path).resolve().relative_to(self.folder.resolve()).as_posix())
        self.loggers = []
        return sorted(files)

"""``wandb``: a harness logger plugin that sends a run's figures to Weights & Biases.

Install it beside the harness (``pip install ./examples/harness-wandb-logger``) and add
``--logger wandb`` to ``harness pretrain`` or ``harness run``. W&B's own settings apply:
``WANDB_MODE=offline`` keeps everything on disk (``wandb sync`` uploads it later),
``WANDB_PROJECT`` or the ``project`` parameter names the project. The run's files go in
``<logs folder>/wandb/``, inside the folder the harness gives the logger, so the record
names them like any other logger's.

The harness logs figures under prefixes whose steps count different things (pretext
epochs, an evaluator's iterations); W&B wants one rising step per chart, so each prefix
gets its own step metric, ``<prefix>/step`` (``wandb.define_metric``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.api.errors import BadInputError
from harness.api.hookspecs import hookimpl
from harness.api.interfaces import Logger


class WandbLogger(Logger):
    """A run's figures and configuration to Weights & Biases (offline with WANDB_MODE=offline)."""

    name = "wandb"
    description = "Weights & Biases run in the logs folder (WANDB_MODE=offline keeps it local)"

    def __init__(self, *, project: str = "harness", mode: str | None = None):
        self.project = str(project)
        self.mode = mode
        self._run = None
        self._folder: Path | None = None
        self._prefixes: set[str] = set()

    def params(self) -> dict[str, Any]:
        return {"project": self.project, "mode": self.mode}

    def start(self, folder: Path, run_name: str) -> None:
        try:
            import wandb
        except ImportError:
            raise BadInputError("--logger wandb needs the wandb package: "
                                "pip install wandb") from None
        self._folder = Path(folder)
        self._run = wandb.init(project=self.project, name=run_name, dir=str(self._folder),
                               mode=self.mode, reinit="create_new")

    def log_metrics(self, step: int, metrics: dict[str, float], prefix: str = "") -> None:
        key = f"{prefix}/step" if prefix else "step"
        if prefix not in self._prefixes:
            self._run.define_metric(key)
            self._run.define_metric(f"{prefix}/*" if prefix else "*", step_metric=key)
            self._prefixes.add(prefix)
        named = {f"{prefix}/{k}" if prefix else k: float(v) for k, v in metrics.items()}
        self._run.log({key: int(step), **named})

    def log_config(self, config: dict[str, Any]) -> None:
        self._run.config.update(config, allow_val_change=True)

    def close(self) -> None:
        if self._run is not None:
            import wandb

            self._run.finish()
            self._run = None
            # finish() may return before W&B's service has written the run file out;
            # teardown waits for it, so the files are complete when close() returns
            wandb.teardown()

    def files(self) -> list[Path]:
        if self._folder is None:
            return []
        # W&B links its service's debug log (kept in W&B's cache folder) into the run
        # folder: the links are not this logger's files
        return sorted(p for p in (self._folder / "wandb").rglob("*")
                      if p.is_file() and not p.is_symlink())


@hookimpl
def harness_register_loggers(register):
    register(WandbLogger)

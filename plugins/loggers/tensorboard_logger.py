"""``tensorboard``: TensorBoard event files in the run's folder (``tensorboard --logdir``).

Written with ``torch.utils.tensorboard.SummaryWriter``, which needs the ``tensorboard``
package: the optional extra ``pip install 'harness[tensorboard]'``. Every figure is a
scalar tagged ``<prefix>/<name>`` (``pretext/train_loss`` at step = epoch); the
configuration is a text entry, ``config``, holding its JSON. The writer is flushed after
each call, so a running run shows up at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.api.errors import BadInputError
from harness.api.interfaces import Logger

EVENT_GLOB = "events.out.tfevents.*"


class TensorBoardLogger(Logger):
    """TensorBoard event files (scalars per figure, the config as text); needs `tensorboard`."""

    name = "tensorboard"
    description = "TensorBoard event files in the run's folder (needs the optional extra 'tensorboard')"

    def __init__(self) -> None:
        self._writer = None
        self._folder: Path | None = None
        self._old: set[Path] = set()

    def params(self) -> dict[str, Any]:
        return {}

    def start(self, folder: Path, run_name: str) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise BadInputError("--logger tensorboard needs the tensorboard package: "
                                "pip install 'harness[tensorboard]'") from None
        self._folder = Path(folder)
        # a run that starts again (a resumed pretext) logs its whole history again: the
        # event files of the earlier start would show every point twice
        for old in self._folder.glob(EVENT_GLOB):
            old.unlink()
        self._writer = SummaryWriter(log_dir=str(self._folder))

    def log_metrics(self, step: int, metrics: dict[str, float], prefix: str = "") -> None:
        for key, value in metrics.items():
            self._writer.add_scalar(f"{prefix}/{key}" if prefix else key, float(value),
                                    global_step=int(step))
        self._writer.flush()

    def log_config(self, config: dict[str, Any]) -> None:
        text = json.dumps(config, indent=2, sort_keys=True, default=str)
        # TensorBoard renders text as Markdown: indent it as a code block
        self._writer.add_text("config", "\n".join("    " + line for line in text.splitlines()))
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def files(self) -> list[Path]:
        return sorted(self._folder.glob(EVENT_GLOB)) if self._folder is not None else []

"""What a pretext run prints: one whole line per epoch, and a live bar on a terminal."""

from __future__ import annotations

import contextlib
from typing import Any

from rich.console import Console
from rich.progress import TextColumn

from harness.pretext.config import PretrainConfig
from harness.pretext.distributed import Runtime
from harness.runtime.progress import enabled as progress_enabled
from harness.runtime.progress import make_progress


class EpochLog:
    """What a run prints (rank 0, unless progress is off): one line per epoch, always.

    On a terminal a live bar also shows the current step's loss, accuracy and rate; in a
    file, a pipe or CI there is no bar, only the epoch lines (each one whole line: loss,
    accuracy, learning rate and images/s of training, then validation) and a last line
    with the final epoch's figures.
    """

    def __init__(self, config: PretrainConfig, rt: Runtime, steps_per_epoch: int):
        self.console = Console(stderr=True, soft_wrap=True)
        self.show = rt.is_main and config.progress and progress_enabled()
        self.live = self.show and self.console.is_terminal
        self.epochs, self.steps = config.epochs, steps_per_epoch
        self.bar = make_progress(TextColumn("{task.fields[stats]}"))
        self.task = None
        self.first_epoch = 0

    def note(self, text: str) -> None:
        if self.show:
            self.console.print(text)

    @contextlib.contextmanager
    def running(self, epochs: int):
        if not self.live:
            yield
            return
        self.task = self.bar.add_task("pretrain", total=epochs * self.steps, stats="")
        with self.bar:
            yield

    def start_epoch(self, epoch: int) -> None:
        if self.task is None:
            self.first_epoch = epoch
        if self.live and self.task is not None:
            self.bar.update(self.task, description=f"epoch {epoch + 1}/{self.epochs}")

    def step(self, epoch: int, step: int, loss, correct, count: int, rate: float) -> None:
        if self.live and self.task is not None:
            done = (epoch - self.first_epoch) * self.steps + step + 1
            self.bar.update(self.task, completed=done,
                            stats=f"loss {loss.item():.3f}  acc {correct.item() / count:.3f}  "
                                  f"{rate:,.0f} img/s")

    def epoch(self, row: dict[str, Any]) -> None:
        if self.show:
            (self.bar.console if self.live else self.console).print(
                epoch_line(row, self.epochs))

    def done(self, history: list[dict]) -> None:
        if self.show and history:
            self.console.print("pretrain: finished; " + epoch_line(history[-1], self.epochs))


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    val = ("" if row["val_accuracy"] is None else
           f"  val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f}")
    return (f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_accuracy']:.3f}{val}  {row['images_per_s']:,.0f} img/s  "
            f"lr {row['lr']:.2e}" + "".join(
                f"  {k[len('monitor_'):]} {v:.2f}" for k, v in row.items()
                if k.startswith("monitor_") and k.endswith("_map")))


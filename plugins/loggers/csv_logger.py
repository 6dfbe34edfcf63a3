"""``csv``: every figure of a run as one row of ``metrics.csv``, and the configuration as
``config.json``; readable by any spreadsheet or ``pandas.read_csv``, no dependency.

The CSV is long, one figure per row (``prefix,step,name,value``), so figures that appear
mid-run (a monitor probe every tenth epoch, an evaluator's loss curve) need no new
columns. Each row is flushed when written: ``tail -f`` follows a running run.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from harness.api.interfaces import Logger

METRICS_FILE = "metrics.csv"
CONFIG_FILE = "config.json"
COLUMNS = ("prefix", "step", "name", "value")


class CsvLogger(Logger):
    """A run's figures as rows of metrics.csv (prefix, step, name, value), its config as JSON."""

    name = "csv"
    description = "metrics.csv (prefix, step, name, value per row) and config.json in the run's folder"

    def __init__(self) -> None:
        self._folder: Path | None = None
        self._file = None
        self._writer = None
        self._written: list[Path] = []

    def params(self) -> dict[str, Any]:
        return {}

    def start(self, folder: Path, run_name: str) -> None:
        self._folder = Path(folder)
        path = self._folder / METRICS_FILE
        # a run that starts again (a resumed pretext) logs its whole history again
        self._file = open(path, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(COLUMNS)
        self._file.flush()
        self._written = [path]

    def log_metrics(self, step: int, metrics: dict[str, float], prefix: str = "") -> None:
        for key, value in metrics.items():
            self._writer.writerow([prefix, int(step), key, repr(float(value))])
        self._file.flush()

    def log_config(self, config: dict[str, Any]) -> None:
        from harness.api import write_json

        path = self._folder / CONFIG_FILE
        write_json(path, config)
        if path not in self._written:
            self._written.append(path)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def files(self) -> list[Path]:
        return list(self._written)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics.csv, with ``step`` as int and ``value`` as float."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{"prefix": r["prefix"], "step": int(r["step"]), "name": r["name"],
                 "value": float(r["value"])} for r in csv.DictReader(f)]

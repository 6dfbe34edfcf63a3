"""A launched run's files: its specification, log, live state and outcome.

Every launcher hands a job the same thing: a JSON specification of one
:class:`harness.pipeline.config.RunConfig` plus the torch thread count it runs with, in a job
folder that also receives its log, a small state file the job rewrites as it enters each
stage (what the status board shows), and, once its record is written, a result file naming
the record. A job that dies leaves no result file, so the launcher knows it failed however
it died; its record is written whole or not at all (:func:`harness.results.records.write_record`).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.runtime.io import write_json

def config_to_json(config) -> dict[str, Any]:
    """``config`` as plain JSON values (paths as strings, tuples as lists)."""
    from harness.results.schema import to_jsonable

    return {f.name: to_jsonable(getattr(config, f.name)) for f in fields(config)}


def config_from_json(data: dict[str, Any]):
    """The :class:`~harness.pipeline.config.RunConfig` that :func:`config_to_json` wrote."""
    from harness.pipeline.config import RunConfig

    kwargs = {}
    for f in fields(RunConfig):
        if f.name not in data:
            continue
        value, kind = data[f.name], str(f.type)
        if value is not None and "Path" in kind:
            value = Path(value)
        elif isinstance(value, list) and kind.startswith("tuple"):
            value = tuple(value)
        kwargs[f.name] = value
    return RunConfig(**kwargs)


def default_job_dir() -> Path:
    """A new folder for a batch's job files: ``<cache>/jobs/<UTC time>-<pid>``."""
    from harness.runtime.cache import cache_root

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return cache_root() / "jobs" / f"{stamp}-{os.getpid()}"


def run_name(config) -> str:
    """A short, file-safe name of a run: init, representation and size, backbone, seeds."""
    parts = [config.init]
    if config.init == "sound":
        parts += [config.repr, f"k{config.k}" if config.k is not None else "kdefault"]
    parts += [config.backbone, f"s{config.seed}", f"w{config.world_seed}"]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts))


@dataclass
class Job:
    """One run of a batch and where its files are."""

    index: int
    line: str
    config: Any
    folder: Path
    threads: int | None = None
    state: str = "queued"
    stage: str | None = None
    started: float | None = None
    ended: float | None = None
    #: why a failed job failed (exit code, signal, scheduler state)
    reason: str | None = None
    #: the log a person reads when it failed (a SLURM job's stderr, a local job's log)
    log: Path | None = None
    record: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.index:03d}-{run_name(self.config)}"

    @property
    def spec_path(self) -> Path:
        return self.folder / f"{self.name}.spec.json"

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.name}.log"

    @property
    def state_path(self) -> Path:
        return self.folder / f"{self.name}.state.json"

    @property
    def result_path(self) -> Path:
        return self.folder / f"{self.name}.result.json"

    def write_spec(self) -> Path:
        """Write the job's specification (before it starts); return its path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in (self.state_path, self.result_path):
            stale.unlink(missing_ok=True)
        write_json(self.spec_path, {"config": config_to_json(self.config),
                                    "threads": self.threads, "line": self.line,
                                    "state": str(self.state_path),
                                    "result": str(self.result_path)})
        return self.spec_path

    def read_progress(self) -> None:
        """Take the stage the job last reported (its state file), if it wrote one."""
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if self.state in ("queued", "submitted", "running"):
            if self.state != "running":
                self.started = time.monotonic()
            self.state, self.stage = "running", data.get("stage")

    def read_result(self) -> bool:
        """Whether the job wrote its result file (its record is written); takes the record."""
        try:
            data = json.loads(self.result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        self.record = Path(data["record"])
        return True

    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.monotonic()) - self.started

    def finish(self, state: str, reason: str | None = None) -> None:
        self.state, self.reason = state, reason
        self.ended = time.monotonic()
        if self.started is None:
            self.started = self.ended

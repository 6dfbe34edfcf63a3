"""What a launched batch is doing, for a person: a live table on a terminal, lines in a log.

On a terminal the board is a table redrawn in place (one row per run: its state, the
stage it is in, elapsed time). Anywhere else (a file, a pipe, a SLURM log) it prints one
line per change of state or stage, with the clock, so that a log reads as a history.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Callable

from harness.launch.jobs import Job

_STYLE = {"queued": "dim", "submitted": "cyan", "running": "yellow", "done": "green",
          "failed": "bold red", "stopped": "magenta"}


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class StatusBoard:
    """Shows ``jobs`` as they change; use as a context manager around the batch.

    ``live``: redraw a table in place (default: when stderr is a terminal). ``echo``: where
    the lines go off a terminal (default: stderr).
    """

    def __init__(self, jobs: list[Job], *, live: bool | None = None,
                 echo: Callable[[str], None] | None = None, title: str = "runs") -> None:
        self.jobs = jobs
        self.live = sys.stderr.isatty() if live is None else live
        self.echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
        self.title = title
        self._seen: dict[int, tuple[str, str | None]] = {}
        self._live = None
        self._start = time.monotonic()

    def __enter__(self) -> "StatusBoard":
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._table(), console=Console(stderr=True),
                              refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.update()
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def update(self) -> None:
        """Show what changed since the last call."""
        if self._live is not None:
            self._live.update(self._table())
            return
        for job in self.jobs:
            now = (job.state, job.stage if job.state == "running" else None)
            if self._seen.get(job.index) == now:
                continue
            self._seen[job.index] = now
            self.echo(self.line(job))

    def line(self, job: Job) -> str:
        """One line for a change of ``job``: clock, run, state (stage, elapsed, why)."""
        detail = []
        if job.state == "running" and job.stage:
            detail.append(job.stage)
        if job.state in ("done", "failed", "stopped"):
            detail.append(_clock(job.elapsed()))
        if job.reason:
            detail.append(job.reason)
        if job.state == "failed" and job.log:
            detail.append(f"log: {job.log}")
        more = f" ({'; '.join(detail)})" if detail else ""
        return f"[{datetime.now():%H:%M:%S}] {job.line}: {job.state}{more}"

    def _table(self):
        from rich.table import Table

        counts = {s: sum(j.state == s for j in self.jobs) for s in _STYLE}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        table = Table(title=f"{self.title}: {summary} ({_clock(time.monotonic() - self._start)})",
                      title_justify="left")
        for column in ("#", "run", "state", "stage", "elapsed"):
            table.add_column(column, no_wrap=column != "run")
        for job in self.jobs:
            style = _STYLE.get(job.state, "")
            stage = job.stage if job.state == "running" else (job.reason or "")
            table.add_row(str(job.index), job.line.split(": ", 1)[-1],
                          f"[{style}]{job.state}[/]", stage or "", _clock(job.elapsed()))
        return table

    def summary(self) -> list[str]:
        """Closing lines: how many runs finished, and every failed or stopped one with its log."""
        done = [j for j in self.jobs if j.state == "done"]
        out = [f"{len(done)} of {len(self.jobs)} runs finished"]
        for job in self.jobs:
            if job.state in ("failed", "stopped", "queued", "submitted", "running"):
                where = f"; log: {job.log}" if job.log else ""
                why = f" ({job.reason})" if job.reason else ""
                out.append(f"  {job.state}: {job.line}{why}{where}")
        return out

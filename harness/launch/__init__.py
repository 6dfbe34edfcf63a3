"""Launchers: where the runs of ``harness sweep`` (and ``harness run``) execute.

- ``inline``: in this process, one after another (what ``harness run`` always did);
- ``local``: ``--jobs N`` worker processes on this machine, each with ``cores // N`` torch
  threads unless ``--threads-per-job`` says otherwise (:mod:`harness.launch.local`);
- ``slurm``: one SLURM job per run, or a job array, through submitit
  (:mod:`harness.launch.slurm`).

Whatever the launcher, a run is :func:`harness.pipeline.run.run` of one configuration, its
stages shared through the content-keyed cache under a lock per entry
(:mod:`harness.runtime.cache_lock`), its record written whole or not at all. A batch whose runs do
not all finish raises :class:`BatchFailed` (exit code 1) naming each failed run and its
log; the same command with ``--skip-recorded`` then runs only what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.api.errors import BadInputError, HarnessError

LAUNCHERS = ("inline", "local", "slurm")


class BatchFailed(HarnessError):
    """Some runs of a batch failed or were stopped; the others' records are written."""

    exit_code = 1


@dataclass
class LaunchOptions:
    """How a batch's runs are executed (``--launcher``, ``--jobs``, ``--threads-per-job``)."""

    launcher: str = "inline"
    jobs: int = 1
    threads_per_job: int | None = None
    #: where job specifications, logs and states go (default: a new folder in the cache)
    job_dir: Path | None = None
    slurm: "object | None" = None
    #: a live table (None: when stderr is a terminal)
    live: bool | None = None
    dry_run: bool = False

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise BadInputError(f"--launcher {self.launcher!r}: expected one of "
                                f"{', '.join(LAUNCHERS)}")
        if self.jobs < 1:
            raise BadInputError(f"--jobs {self.jobs}: expected at least 1")
        if self.jobs > 1 and self.launcher == "inline":
            raise BadInputError(f"--jobs {self.jobs}: inline runs one run at a time; use "
                                f"--launcher local (or slurm) for several at once")
        if self.threads_per_job is not None and self.threads_per_job < 1:
            raise BadInputError(f"--threads-per-job {self.threads_per_job}: expected at least 1")

    def threads(self) -> int | None:
        """torch threads per job: ``--threads-per-job``, else the CPUs this process may use
        (its affinity mask, or ``$HARNESS_CPUS``) divided among ``--jobs``; None for inline
        without ``--threads-per-job`` (torch's own choice, as before)."""
        if self.threads_per_job is not None:
            return self.threads_per_job
        if self.launcher == "inline":
            return None
        if self.launcher == "slurm":
            cpus = getattr(self.slurm, "cpus", None)
            if cpus:
                return cpus
        from harness.runtime.devices import usable_cpus

        return max(1, usable_cpus() // self.jobs)


def launch(configs: list, lines: list[str], options: LaunchOptions,
           echo: Callable[[str], None] = print) -> list:
    """Run ``configs`` (each announced by its line in ``lines``) as ``options`` says;
    return their :class:`~harness.pipeline.config.RunResult`s. Raises BatchFailed if any failed."""
    if options.launcher == "inline":
        return _inline(configs, lines, options, echo)
    from harness.launch.jobs import Job, default_job_dir
    from harness.launch.status import StatusBoard

    folder = Path(options.job_dir) if options.job_dir else default_job_dir()
    threads = options.threads()
    jobs = [Job(i, line, cfg, folder, threads) for i, (cfg, line) in
            enumerate(zip(configs, lines), 1)]
    if options.dry_run:
        return _dry_run(jobs, options, threads, echo)
    folder.mkdir(parents=True, exist_ok=True)
    where = (f"{options.jobs} local worker{'s' if options.jobs != 1 else ''}"
             if options.launcher == "local" else "SLURM")
    echo(f"{len(jobs)} run{'s' if len(jobs) != 1 else ''} on {where}, {threads} torch "
         f"thread{'s' if threads != 1 else ''} each; logs in {folder}")
    board = StatusBoard(jobs, live=options.live, echo=echo)
    interrupted = False
    try:
        with board:
            if options.launcher == "local":
                from harness.launch.local import run_local

                run_local(jobs, options.jobs, board)
            else:
                from harness.launch.slurm import run_slurm

                run_slurm(jobs, folder, options.slurm, board, echo)
    except KeyboardInterrupt:
        interrupted = True
    for line in board.summary():
        echo(line)
    if interrupted:
        raise KeyboardInterrupt
    failed = [j for j in jobs if j.state != "done"]
    if failed:
        names = "; ".join(f"{j.line} ({j.reason}; log: {j.log})" for j in failed)
        raise BatchFailed(f"{len(failed)} of {len(jobs)} runs failed, no record written for "
                          f"them: {names}; rerun the same command with --skip-recorded to "
                          f"run only those")
    return [_result(j) for j in jobs]


def _result(job):
    """A finished job's RunResult, read back from the record it wrote."""
    import json

    from harness.pipeline.config import RunResult

    return RunResult(json.loads(job.record.read_text(encoding="utf-8")), job.record)


def _inline(configs, lines, options: LaunchOptions, echo) -> list:
    """Each run here, in turn (with ``--threads-per-job``, torch uses that many threads)."""
    from harness.runtime.devices import torch_threads
    from harness.pipeline.run import run

    results = []
    with torch_threads(options.threads()):
        for cfg, line in zip(configs, lines):
            echo(line)
            results.append(run(cfg, echo=echo))
    return results


def _dry_run(jobs, options: LaunchOptions, threads, echo) -> list:
    """List what would be launched, launch nothing."""
    if options.launcher == "slurm":
        from harness.launch.slurm import describe

        for line in describe(options.slurm, threads, len(jobs)):
            echo(line)
    else:
        echo(f"would run {len(jobs)} runs on {options.jobs} local workers, {threads} torch "
             f"threads each")
    return []

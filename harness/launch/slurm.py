"""``--launcher slurm``: each run a SLURM job (or one task of a job array), through submitit.

submitit (the submission library of FAIR's VISSL, DINO and MAE) writes the sbatch script,
pickles the call :func:`harness.launch.worker.run_spec` with the job's specification file,
and keeps each job's stdout and stderr in the job folder (``<id>_<task>_log.out`` and
``.err``). The sweep then watches the jobs: ``squeue`` says which are pending or running
(SLURM's accounting database is not needed), the job's state file which stage it is in,
and its result file whether it wrote its record. A job that leaves the queue without one
failed: the sweep reports it with its stderr and exits non-zero. Ctrl-C cancels every
job still queued or running (``scancel``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.api.errors import BadInputError
from harness.launch.jobs import Job
from harness.launch.status import StatusBoard

#: seconds between looks at the queue
POLL_S = 2.0


@dataclass
class SlurmOptions:
    """What each job asks SLURM for (``harness sweep --slurm-*``)."""

    partition: str | None = None
    #: time limit in minutes
    time_min: int = 60
    gpus: int | None = None
    cpus: int | None = None
    #: memory per node, as sbatch takes it (``16G``, ``4000M``)
    mem: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int = 1
    #: tasks per node: more than one (or more than one node) trains the pretext stage with
    #: DDP across all the job's tasks (:func:`harness.launch.worker.distributed_env`)
    tasks_per_node: int = 1
    #: any other sbatch parameter, ``{"constraint": "a100"}`` -> ``--constraint=a100``
    params: dict[str, str] = field(default_factory=dict)
    #: shell lines each job runs before the run (``module load cuda``, ``source env.sh``)
    setup: list[str] = field(default_factory=list)
    #: submit the runs as one job array instead of one job per run
    array: bool = False
    #: at most this many array tasks at once (the array's ``%N``)
    parallel: int | None = None


def parse_time(text: str) -> int:
    """Whole minutes (rounded up) from ``--slurm-time`` in sbatch's formats: ``minutes``,
    ``minutes:seconds``, ``hours:minutes:seconds``, ``days-hours``, ``days-hours:minutes``,
    ``days-hours:minutes:seconds``."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+(?::\d+){0,2})", text.strip())
    if not m:
        raise BadInputError(f"--slurm-time {text!r}: expected minutes, minutes:seconds, "
                            f"hours:minutes:seconds or days-hours[:minutes[:seconds]]")
    fields = [int(f) for f in m.group(2).split(":")]
    if m.group(1) is not None:          # days-hours[:minutes[:seconds]]
        hours, minutes, seconds = (fields + [0, 0])[:3]
        hours += 24 * int(m.group(1))
    elif len(fields) == 3:
        hours, minutes, seconds = fields
    else:                               # minutes[:seconds]
        hours, (minutes, seconds) = 0, (fields + [0])[:2]
    total = hours * 60 + minutes + (1 if seconds % 60 else 0) + seconds // 60
    if total < 1:
        raise BadInputError(f"--slurm-time {text!r}: the time limit must be at least a minute")
    return total


def parse_params(items: list[str] | None) -> dict[str, str]:
    """``--slurm-param KEY=VALUE`` entries as a dict (``--key`` and ``key`` both accepted)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise BadInputError(f"--slurm-param {item!r}: expected KEY=VALUE (an sbatch option)")
        out[key.replace("-", "_")] = value
    return out


def executor_parameters(options: SlurmOptions, threads: int | None) -> dict:
    """The parameters given to ``submitit.SlurmExecutor.update_parameters``."""
    params: dict = {"time": options.time_min, "nodes": options.nodes,
                    "ntasks_per_node": options.tasks_per_node, "job_name": "harness"}
    if options.partition:
        params["partition"] = options.partition
    cpus = options.cpus or threads
    if cpus:
        params["cpus_per_task"] = cpus
    if options.gpus:
        params["gpus_per_node"] = options.gpus
    if options.mem:
        params["mem"] = options.mem
    if options.account:
        params["account"] = options.account
    if options.qos:
        params["qos"] = options.qos
    if options.array and options.parallel:
        params["array_parallelism"] = options.parallel
    if options.setup:
        params["setup"] = list(options.setup)
    if options.params:
        params["additional_parameters"] = dict(options.params)
    return params


def describe(options: SlurmOptions, threads: int | None, n_runs: int) -> list[str]:
    """What a dry run prints: how the runs would be submitted, as sbatch options."""
    params = executor_parameters(options, threads)
    extra = params.pop("additional_parameters", {})
    setup = params.pop("setup", [])
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in params.items()
             if k not in ("array_parallelism",)]
    flags += [f"--{k.replace('_', '-')}={v}" for k, v in extra.items()]
    how = (f"one job array of {n_runs} tasks" if options.array
           else f"{n_runs} SLURM job{'s' if n_runs != 1 else ''}, one per run")
    return [f"would submit {how} (submitit) with: {' '.join(flags)}",
            *(f"  each job first runs: {line}" for line in setup)]


def check_slurm() -> None:
    """Refuse the slurm launcher where SLURM's commands or submitit are missing."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise BadInputError("--launcher slurm needs the submitit package "
                            "(pip install 'harness[slurm]')") from None
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        raise BadInputError("--launcher slurm: sbatch and squeue are not on PATH "
                            "(no SLURM client on this machine)")


def _queue(ids: list[str]) -> dict[str, str]:
    """SLURM's state of each of ``ids`` still in the queue (PENDING, RUNNING, ...)."""
    bases = sorted({i.split("_")[0] for i in ids})
    out = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(bases)],
                         capture_output=True, text=True, check=False)
    states = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    found = {}
    for i in ids:
        if i in states:
            found[i] = states[i]
        else:       # an array's pending tasks are listed together: 123_[4-9%2]
            base = i.split("_")[0]
            pending = [s for k, s in states.items() if k.startswith(f"{base}_[")]
            if "_" in i and pending:
                found[i] = pending[0]
    return found


def _failure(sjob) -> str:
    """Why a job that left the queue wrote no record (submitit's last word, if any)."""
    pickle = Path(sjob.paths.result_pickle)
    if pickle.exists():
        try:
            outcome, result = sjob._get_outcome_and_result()
        except Exception as exc:  # noqa: BLE001 - a report of a failure must not fail
            return f"job {sjob.job_id}: {type(exc).__name__}"
        if outcome == "error":
            last = [ln for ln in str(result).strip().splitlines() if ln.strip()]
            return f"job {sjob.job_id}: {last[-1] if last else 'failed'}"
    return f"job {sjob.job_id} ended without a record (cancelled, timed out or killed)"


def run_slurm(jobs: list[Job], folder: Path, options: SlurmOptions, board: StatusBoard,
              echo) -> None:
    """Submit ``jobs`` and watch them until each is done or failed. KeyboardInterrupt
    cancels the ones still queued or running (``scancel``) and is raised again."""
    import submitit

    check_slurm()
    executor = submitit.SlurmExecutor(folder=folder / "slurm" / "%j")
    executor.update_parameters(**executor_parameters(options, jobs[0].threads if jobs else None))
    specs = [str(job.write_spec()) for job in jobs]
    from harness.launch.worker import run_spec

    if options.array:
        sjobs = executor.map_array(run_spec, specs)
    else:
        sjobs = [executor.submit(run_spec, spec) for spec in specs]
    live = {}
    for job, sjob in zip(jobs, sjobs):
        job.state, job.log = "submitted", Path(sjob.paths.stderr)
        live[job.index] = (job, sjob)
    echo(f"submitted {len(sjobs)} SLURM job{'s' if len(sjobs) != 1 else ''} "
         f"({', '.join(str(s.job_id) for s in sjobs)}); job folder {folder / 'slurm'}")
    try:
        while live:
            queued = _queue([str(s.job_id) for _, s in live.values()])
            for index, (job, sjob) in list(live.items()):
                state = queued.get(str(sjob.job_id))
                if state == "RUNNING":
                    if job.state != "running":
                        job.state, job.started = "running", time.monotonic()
                    job.read_progress()
                if state is not None:
                    continue
                del live[index]
                if job.read_result():
                    job.finish("done")
                else:
                    job.finish("failed", _failure(sjob))
            board.update()
            if live:
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        for job, sjob in live.values():
            sjob.cancel(check=False)
            if job.read_result():
                job.finish("done")
            else:
                job.finish("stopped", f"cancelled job {sjob.job_id}")
        board.update()
        raise

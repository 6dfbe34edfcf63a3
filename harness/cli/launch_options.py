"""The launcher options of ``harness run`` and ``harness sweep`` (:mod:`harness.launch`)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from harness.cli.defaults import field_default
from harness.launch import LaunchOptions
from harness.launch.slurm import SlurmOptions


class Launcher(str, Enum):
    """Where the runs execute."""

    inline = "inline"
    local = "local"
    slurm = "slurm"


LAUNCHER = typer.Option(Launcher(field_default(LaunchOptions, "launcher")), "--launcher",
                        help="inline (in this process, one run after another), local "
                             "(--jobs worker processes on this machine) or slurm (one "
                             "SLURM job per run, through submitit).")
JOBS = typer.Option(field_default(LaunchOptions, "jobs"), "--jobs", min=1, help="local: runs at once, each in its own process.")
THREADS = typer.Option(None, "--threads-per-job", min=1,
                       help="torch threads per run (default: local, this machine's CPUs "
                            "divided by --jobs; slurm, --slurm-cpus; inline, torch's own).")
JOB_DIR = typer.Option(None, "--job-dir", help="local, slurm: folder for the runs' logs and "
                       "job files (default: a new folder under the cache's jobs/).")
LIVE = typer.Option(None, "--live/--no-live", help="A live table of the runs (default: "
                    "when stderr is a terminal); otherwise one line per change.")
PARTITION = typer.Option(None, "--slurm-partition", help="slurm: the partition.")
TIME = typer.Option(str(field_default(SlurmOptions, "time_min")), "--slurm-time", help="slurm: time limit per job (minutes, h:mm:ss "
                    "or d-hh:mm:ss).")
GPUS = typer.Option(None, "--slurm-gpus", min=0, help="slurm: GPUs per node.")
CPUS = typer.Option(None, "--slurm-cpus", min=1, help="slurm: CPUs per task (also the "
                    "job's torch threads unless --threads-per-job).")
MEM = typer.Option(None, "--slurm-mem", help="slurm: memory per node, e.g. 16G.")
ACCOUNT = typer.Option(None, "--slurm-account", help="slurm: the account to charge.")
QOS = typer.Option(None, "--slurm-qos", help="slurm: the quality of service.")
PARAM = typer.Option(None, "--slurm-param", help="slurm: any other sbatch parameter, "
                     "KEY=VALUE (repeatable), e.g. constraint=a100.")
NODES = typer.Option(field_default(SlurmOptions, "nodes"), "--slurm-nodes", min=1, help="slurm: nodes per run; with more than "
                     "one task in all, the pretext stage trains with DDP across the tasks.")
TASKS = typer.Option(None, "--slurm-tasks-per-node", min=1, help="slurm: tasks per node "
                     "(default: --slurm-gpus, else 1), each one DDP process of the pretext.")
SETUP = typer.Option(None, "--slurm-setup", help="slurm: a shell line each job runs before "
                     "the run (repeatable), e.g. 'module load cuda'.")
ARRAY = typer.Option(False, "--slurm-array", help="slurm: submit the runs as one job array "
                     "(at most --jobs tasks at once) instead of one job per run.")


def launch_options(launcher: Launcher, jobs: int, threads_per_job: Optional[int],
                   job_dir: Optional[Path], live: Optional[bool], dry_run: bool = False, *,
                   slurm_partition: Optional[str] = None, slurm_time: str = "60",
                   slurm_gpus: Optional[int] = None, slurm_cpus: Optional[int] = None,
                   slurm_mem: Optional[str] = None, slurm_account: Optional[str] = None,
                   slurm_qos: Optional[str] = None, slurm_param: Optional[List[str]] = None,
                   slurm_array: bool = False, slurm_nodes: int = 1,
                   slurm_tasks_per_node: Optional[int] = None,
                   slurm_setup: Optional[List[str]] = None):
    """The :class:`harness.launch.LaunchOptions` the command line asks for."""
    from harness.launch import LaunchOptions

    slurm = None
    if launcher == Launcher.slurm:
        from harness.launch.slurm import SlurmOptions, parse_params, parse_time

        slurm = SlurmOptions(partition=slurm_partition, time_min=parse_time(slurm_time),
                             gpus=slurm_gpus, cpus=slurm_cpus, mem=slurm_mem,
                             account=slurm_account, qos=slurm_qos,
                             params=parse_params(slurm_param), array=slurm_array,
                             parallel=jobs if slurm_array and jobs > 1 else None,
                             nodes=slurm_nodes, setup=list(slurm_setup or ()),
                             tasks_per_node=slurm_tasks_per_node or slurm_gpus or 1)
    return LaunchOptions(launcher=launcher.value, jobs=jobs, threads_per_job=threads_per_job,
                         job_dir=job_dir, slurm=slurm, live=live, dry_run=dry_run)


def slurm_args(names: dict) -> dict:
    """The ``slurm_*`` options among a command's parameters (its ``locals()``)."""
    return {k: v for k, v in names.items() if k.startswith("slurm_")}


def executor(options):
    """The ``execute`` argument of :func:`harness.pipeline.sweep.sweep` for ``options`` (None for
    inline without a thread count: the sweep runs each run itself, as it always did)."""
    if options.launcher == "inline" and options.threads_per_job is None:
        return None
    from harness.launch import launch

    return lambda configs, lines: launch(configs, lines, options, echo=typer.echo)

"""One launched run, in its own process: ``python -m harness.launch.worker SPEC.json``.

It does what ``harness run`` does for that configuration (:func:`harness.pipeline.run.run`),
with torch's thread pool sized as the specification says, reporting each stage it enters
in the job's state file and, once the record is written, the record's path in its result
file (:mod:`harness.launch.jobs`). A SLURM job runs :func:`run_spec` through submitit.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

#: thread-pool variables set to the job's thread count (numpy's BLAS, OpenMP, numba)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "NUMBA_NUM_THREADS")


#: torch.distributed's variables (``env://``), which a job of several tasks holds only
#: while its pretext stage runs
DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
             "MASTER_PORT")
#: the stages that train a network on several tasks
TRAINING_STAGE = "pretrain"


class _RankDone(Exception):
    """A task other than rank 0 has trained its share; the rest is rank 0's."""


def distributed_env() -> dict[str, str] | None:
    """torch.distributed's variables when this process is one of several tasks of one run
    (torchrun's, or SLURM's ``srun`` tasks turned into them by submitit), taken out of the
    environment; None for a run of one process.

    Only the pretext stage runs on every task (DDP, rank 0 writing the checkpoint): the
    stages before it are computed once (the others wait on the cache entry's lock, then
    load it), and evaluation and the record are rank 0's alone.
    """
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        found = {k: os.environ[k] for k in DIST_VARS if k in os.environ}
    elif int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in os.environ:
        from submitit.helpers import TorchDistributedEnvironment

        env = TorchDistributedEnvironment()
        found = {"RANK": str(env.rank), "WORLD_SIZE": str(env.world_size),
                 "LOCAL_RANK": str(env.local_rank),
                 "LOCAL_WORLD_SIZE": str(env.local_world_size),
                 "MASTER_ADDR": env.master_addr, "MASTER_PORT": str(env.master_port)}
    else:
        return None
    for key in DIST_VARS:
        os.environ.pop(key, None)
    return found


def thread_env(threads: int | None) -> dict[str, str]:
    """Environment entries that give a job ``threads`` CPU threads everywhere: torch's and
    BLAS's pools and the harness's own worker counts (``$HARNESS_CPUS``)."""
    if not threads:
        return {}
    return {**{name: str(threads) for name in THREAD_VARS}, "HARNESS_CPUS": str(threads)}


def run_spec(spec_path: str | os.PathLike) -> str:
    """Run the job of ``spec_path``; return its record's path (raises as ``harness run`` would)."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    threads = spec.get("threads")
    os.environ.update(thread_env(threads))
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    from harness.runtime.io import write_json
    from harness.launch.jobs import config_from_json
    from harness.pipeline.run import run
    from harness.results.records import StageTimer

    state_path, result_path = Path(spec["state"]), Path(spec["result"])
    group = distributed_env()
    rank = int(group["RANK"]) if group else 0
    trained = []

    def entered(stage: str) -> None:
        if group:               # torch.distributed's variables during the pretext stage only
            if stage == TRAINING_STAGE:
                os.environ.update(group)
                trained.append(stage)
            else:
                for key in DIST_VARS:
                    os.environ.pop(key, None)
                if rank != 0 and trained:
                    raise _RankDone
        if rank == 0:
            write_json(state_path, {"stage": stage, "pid": os.getpid()})

    def echo(line: str) -> None:
        print(line, flush=True)

    config = config_from_json(spec["config"])
    if rank != 0 and config.init not in ("sound", "supervised"):
        return ""               # nothing to train: rank 0 runs it alone
    entered("start")
    StageTimer.on_start.append(entered)
    try:
        echo(spec.get("line") or "run")
        result = run(config, echo=echo)
    except _RankDone:
        echo(f"rank {rank}: pretext trained; evaluation and the record are rank 0's")
        return ""
    finally:
        StageTimer.on_start.remove(entered)
    echo(f"record: {result.path}")
    write_json(result_path, {"record": str(result.path), "run_id": result.record.get("run_id")})
    return str(result.path)


def main(argv: list[str] | None = None) -> int:
    """The worker's command line: one argument, the specification file."""
    from harness.api.errors import HarnessError

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m harness.launch.worker SPEC.json", file=sys.stderr)
        return 2
    try:
        run_spec(args[0])
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())

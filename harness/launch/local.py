"""``--launcher local``: N worker processes on this machine, each running one run at a time.

Each run is a fresh ``python -m harness.launch.worker`` process (the code path of
``harness run``) with its own thread budget, so N jobs of ``cores // N`` threads never
oversubscribe the machine. Its output goes to its log in the job folder. Each worker is
started in its own session, so that a Ctrl-C on the sweep reaches only the sweep, which
then stops every worker it started (SIGTERM to the worker's process group, SIGKILL to one
that has not ended after a grace period) and reports what had finished.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque

from harness.launch.jobs import Job
from harness.launch.status import StatusBoard
from harness.launch.worker import thread_env

#: seconds a stopped worker gets to end before it is killed
GRACE_S = 10.0
#: seconds between looks at the workers
POLL_S = 0.25


def _why(rc: int) -> str:
    """A worker's exit status in words."""
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit code {rc}"


def _stop(procs: dict[int, subprocess.Popen]) -> None:
    """End the workers in ``procs`` (by their process groups), waiting up to GRACE_S."""
    for proc in procs.values():
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + GRACE_S
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def run_local(jobs: list[Job], workers: int, board: StatusBoard) -> None:
    """Run ``jobs`` with at most ``workers`` at once; each ends done or failed (with its
    reason and log). KeyboardInterrupt stops the running ones (marked stopped) and is
    raised again once they have ended."""
    queue = deque(jobs)
    running: dict[int, tuple[Job, subprocess.Popen, object]] = {}
    env_base = dict(os.environ)
    try:
        while queue or running:
            while queue and len(running) < workers:
                job = queue.popleft()
                job.write_spec()
                log = open(job.log_path, "wb")
                env = {**env_base, **thread_env(job.threads), "HARNESS_NO_PROGRESS": "1"}
                proc = subprocess.Popen(
                    [sys.executable, "-m", "harness.launch.worker", str(job.spec_path)],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=env, start_new_session=True)
                job.log, job.state, job.started = job.log_path, "running", time.monotonic()
                job.stage = "start"
                running[job.index] = (job, proc, log)
            for index, (job, proc, log) in list(running.items()):
                job.read_progress()
                rc = proc.poll()
                if rc is None:
                    continue
                log.close()
                del running[index]
                if rc == 0 and job.read_result():
                    job.finish("done")
                else:
                    job.finish("failed", _why(rc) if rc != 0 else "no record written")
            board.update()
            if queue or running:
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        _stop({i: proc for i, (_, proc, _) in running.items()})
        for job, proc, log in running.values():
            log.close()
            if job.read_result():           # it wrote its record before the stop reached it
                job.finish("done")
            else:
                job.finish("stopped", "interrupted")
        board.update()
        raise

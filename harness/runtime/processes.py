"""Worker processes that end with the process that started them.

A worker blocked in a read or a decode does not notice that its parent was killed and
would wait forever under init. :func:`die_with_parent` runs first in every worker the
harness starts (feature loading, ingest): on Linux it asks the kernel to send the worker
SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread
checks every second whether the parent is still there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, *_ignored: object) -> None:
    """Make this process end when ``parent_pid`` ends (usable as a worker initialiser).

    Extra positional arguments (a DataLoader passes the worker id) are ignored.
    """
    if sys.platform.startswith("linux") and _set_pdeathsig():
        if os.getppid() != parent_pid:   # the parent died before the request took effect
            os._exit(1)
        return
    threading.Thread(target=_watch, args=(parent_pid,), daemon=True,
                     name="harness-parent-watch").start()


def _set_pdeathsig() -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)

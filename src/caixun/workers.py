"""Worker processes that never outlive the command that started them.

A build or an import forks a pool of workers. Killed with ``kill -9``, the
parent cannot stop them: they would go on writing pages into a site that
the next build (or the operator) is already replacing. On Linux each worker
asks the kernel to kill it when its parent dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from multiprocessing.pool import Pool

__all__ = ["worker_pool"]

_PR_SET_PDEATHSIG = 1


def worker_pool(processes: int) -> Pool:
    """A fork pool whose workers die with the process that made it."""
    return multiprocessing.get_context("fork").Pool(
        processes, initializer=_die_with_parent, initargs=(os.getpid(),))


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no prctl: workers end when their pipe breaks
            return
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)

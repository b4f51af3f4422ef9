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
    return _Pool(processes, initializer=_die_with_parent, initargs=(os.getpid(),),
                 context=multiprocessing.get_context("fork"))


class _Pool(Pool):
    """A pool whose thread that keeps the workers going wakes when one ends.

    CPython's (3.8 and later) also wakes whenever a result waits in the pipe
    the thread that collects results reads: while this process is busy
    holding the GIL (an import storing while its workers read), results
    wait, and that thread spun, taking the GIL from the rest many thousand
    times (a tenth of the importing process's CPU time on 2 cores). It still
    wakes when a worker ends (its sentinel) and when the pool is closed or its
    last task done (the change notifier), which is all it acts on.
    """

    def _get_sentinels(self) -> list[object]:
        notifier = getattr(self, "_change_notifier", None)
        return [notifier._reader] if notifier is not None else []


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no prctl: workers end when their pipe breaks
            return
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)

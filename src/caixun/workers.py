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
from multiprocessing.pool import TERMINATE, Pool
from typing import Any, Callable

__all__ = ["worker_pool"]

_PR_SET_PDEATHSIG = 1


def worker_pool(processes: int, warm: Callable[[], None] | None = None) -> Pool:
    """A fork pool whose workers die with the process that made it.

    ``warm``, if given, is run by each worker as it starts (loading what its
    tasks will need while this process does something else): a warm-up, so
    what it raises is ignored (a failed initializer would make the pool
    start workers again and again).
    """
    return _Pool(processes, initializer=_start_worker, initargs=(os.getpid(), warm),
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

    def terminate(self) -> None:
        """Stop the workers at once, whatever they are doing.

        CPython's terminate() kills them after telling its threads to end, and
        the thread that hands out tasks ends by putting a message on the
        result queue: a worker killed while it was sending a result holds that
        queue's lock for ever, and terminate() waited for that thread for ever
        (an import whose storing failed while its worker was busy). So the
        workers are killed first, none of them started again, while this
        process holds that lock (a worker sending a result most often
        finishes first: the thread that collects results still reads), or
        else freeing it once they are dead; and the lock of the task queue,
        which an idle worker holds while it waits for a task, is freed.
        """
        pool: Any = self  # CPython's Pool, by its private attributes
        if pool._state != TERMINATE and pool._worker_handler.is_alive():
            pool._worker_handler._state = TERMINATE  # no worker started again
            pool._change_notifier.put(None)
            results = pool._outqueue._wlock
            results.acquire(timeout=SENDING_WAIT)  # the holder, if it still holds it, dies
            for worker in pool._pool:
                worker.kill()
            for worker in pool._pool:
                worker.join()
            results.release()
            _free(pool._inqueue._rlock)
        super().terminate()


SENDING_WAIT = 2.0  # seconds a worker may take to finish sending a result


def _free(lock: Any) -> None:
    """Release a lock that a killed process may have held (no other holds it)."""
    lock.acquire(False)
    lock.release()


def _start_worker(parent: int, warm: Callable[[], None] | None) -> None:
    _die_with_parent(parent)
    if warm is not None:
        try:
            warm()
        except Exception:  # the tasks will meet it again, and report it
            pass


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no prctl: workers end when their pipe breaks
            return
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)

"""Worker processes that never outlive the command that started them.

A build or an import forks a pool of workers. Killed with ``kill -9``, the
parent cannot stop them: they would go on writing pages into a site that
the next build (or the operator) is already replacing. On Linux each worker
asks the kernel to kill it when its parent dies (``PR_SET_PDEATHSIG``).

A pool stopped while its workers are busy (an import whose disk is full, a
build stopped by Ctrl-C) must stop, not hang: see :class:`WorkerPool`. Nor
may a worker's death (the kernel's out-of-memory killer, a crash in a C
library) leave the command waiting for ever for the task it had taken:
:meth:`WorkerPool.get` and its kin raise :class:`~caixun.errors.WorkerError`.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from multiprocessing.pool import AsyncResult, IMapIterator, Pool
from multiprocessing.queues import SimpleQueue
from typing import Any, Callable, Iterator, TypeVar

from caixun.errors import WorkerError

__all__ = ["WorkerPool", "in_daemon", "worker_pool"]

_PR_SET_PDEATHSIG = 1
# Seconds between looks at the workers while a result is awaited: how long a
# command goes on waiting for the work of a worker that died.
CHECK_EVERY = 0.25
# Seconds a pool is given to stop before its workers are killed and it is left
# behind (see WorkerPool.terminate); stopping takes milliseconds otherwise.
STOP_WAIT = 5.0

_T = TypeVar("_T")


def in_daemon() -> bool:
    """Whether this process is a daemonic one (a pool's worker): it may have no children."""
    return bool(multiprocessing.current_process().daemon)


def worker_pool(processes: int, warm: Callable[[], None] | None = None) -> WorkerPool:
    """A fork pool whose workers die with the process that made it.

    ``warm``, if given, is run by each worker as it starts (loading what its
    tasks will need while this process does something else): a warm-up, so
    what it raises is ignored (a failed initializer would make the pool
    start workers again and again).
    """
    return WorkerPool(processes, initializer=_start_worker,
                      initargs=(os.getpid(), id(threading.current_thread()), warm),
                      context=multiprocessing.get_context("fork"))


class WorkerPool(Pool):
    """A pool that stops while its workers are busy, whose thread that keeps
    the workers going wakes when one ends, and whose results are awaited with
    an eye on its workers.

    CPython's ``terminate`` (3.11) hangs when results are big (an import's
    parcels of posts) and the workers busy: the thread that collects results
    stops reading first, a worker's next result fills the pipe and blocks
    holding the pipe's lock, and the pool's own end-of-results marker waits
    for that lock for ever; a worker killed in the middle of a result leaves
    the lock taken for good. Here a worker takes no stop signal while it
    writes a result (:class:`_ResultQueue`), and once nothing collects results
    any more :func:`_drain` reads and drops them until the pool is stopped.

    CPython's thread that keeps the workers going (3.8 and later) also wakes
    whenever a result waits in the pipe that the thread that collects results
    reads: while this process is busy holding the GIL (an import storing
    while its workers read), results wait, and that thread spun, taking the
    GIL from the rest many thousand times (a tenth of the importing
    process's CPU time on 2 cores). It still wakes when a worker ends (its
    sentinel) and when the pool is closed or its last task done (the change
    notifier), which is all it acts on.

    CPython's pool replaces a worker that died, but the task it had taken is
    lost: its result never comes, and ``get()`` waits for ever (a build or an
    import whose worker the out-of-memory killer took hung for good). Awaited
    through :meth:`get`, :meth:`wait` or :meth:`each`, a result is looked for
    every :data:`CHECK_EVERY` seconds and the workers with it: once one has
    ended, :class:`WorkerError` says so, and the pool is stopped as on any
    error (its other workers are not killed first: one killed while it waits
    for a task holds the task pipe's lock for good, and stopping the pool
    needs it).

    A worker the kernel killed all the same while it held a lock of the
    pool's pipes (idle, waiting for a task; or writing a result) holds it for
    good, and CPython's ``terminate`` waits for that lock for ever: see
    :meth:`terminate`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watched: list[Any] = list(self._workers())

    def get(self, result: AsyncResult[_T]) -> _T:
        """``result.get()``, or :class:`WorkerError` once a worker has died."""
        self.wait(result)
        return result.get()

    def wait(self, result: AsyncResult[Any]) -> None:
        """``result.wait()``, or :class:`WorkerError` once a worker has died."""
        while not result.ready():
            result.wait(CHECK_EVERY)
            self._check_workers()

    def each(self, results: IMapIterator[_T]) -> Iterator[_T]:
        """The results of ``imap`` or ``imap_unordered``; :class:`WorkerError` once a
        worker has died."""
        while True:
            try:
                yield results.next(CHECK_EVERY)
            except multiprocessing.TimeoutError:
                self._check_workers()
            except StopIteration:
                return

    def terminate(self) -> None:
        """CPython's ``terminate``, given STOP_WAIT seconds: past them, a dead worker
        holds a lock the pool's stopping needs (see the class). It is then left
        waiting in a thread of its own, the workers are killed, and this process
        goes on (a build or an import ends with its error; ``caixun run`` goes on
        with a few stuck threads and pipes)."""
        outcome: list[BaseException | None] = []

        def stop() -> None:
            try:
                Pool.terminate(self)
                outcome.append(None)
            except BaseException as exc:  # raised here, in the caller's thread
                outcome.append(exc)

        try:
            stopper = threading.Thread(target=stop, name="pool-stop", daemon=True)
            stopper.start()
        except RuntimeError:  # at interpreter exit (3.12 and later): no new thread
            Pool.terminate(self)
            return
        stopper.join(STOP_WAIT)
        if outcome:
            if outcome[0] is not None:
                raise outcome[0]
            return
        pool: Any = self
        pool._outqueue.stopped.set()  # no results are drained for a pool left behind
        for worker in {*self._watched, *self._workers()}:
            if worker.exitcode is None:
                with contextlib.suppress(OSError):
                    os.kill(worker.pid, signal.SIGKILL)
                worker.join(1.0)

    def _workers(self) -> list[Any]:
        pool: Any = self
        return list(pool._pool)

    def _check_workers(self) -> None:
        # The pool's own thread takes a dead worker out of its list and starts
        # another: every worker ever seen is watched.
        self._watched += [w for w in self._workers() if w not in self._watched]
        for worker in self._watched:
            code = worker.exitcode
            if code:  # 0: ended after its tasks (maxtasksperchild), none lost
                raise WorkerError("a worker process ended before its work was done "
                                  f"({_how_it_ended(code)})")

    def _get_sentinels(self) -> list[object]:
        notifier = getattr(self, "_change_notifier", None)
        return [notifier._reader] if notifier is not None else []

    def _setup_queues(self) -> None:
        pool: Any = self  # CPython's private attributes, as its own _setup_queues sets them
        pool._inqueue = pool._ctx.SimpleQueue()
        pool._outqueue = _ResultQueue(ctx=pool._ctx)
        pool._quick_put = pool._inqueue._writer.send
        pool._quick_get = pool._outqueue._reader.recv

    @classmethod
    def _terminate_pool(cls, taskqueue: Any, inqueue: Any, outqueue: Any, pool: Any,
                        change_notifier: Any, worker_handler: Any, task_handler: Any,
                        result_handler: threading.Thread, cache: Any) -> None:
        stopped: threading.Event = outqueue.stopped
        drainer: threading.Thread | None = None
        try:
            drainer = threading.Thread(target=_drain, args=(outqueue, result_handler, stopped),
                                       name="pool-drain", daemon=True)
            drainer.start()
        except RuntimeError:  # at interpreter exit (3.12 and later): no new thread
            drainer = None
        try:
            super()._terminate_pool(  # type: ignore[misc]
                taskqueue, inqueue, outqueue, pool, change_notifier, worker_handler,
                task_handler, result_handler, cache)
        finally:
            stopped.set()
            if drainer is not None:
                drainer.join()


def _how_it_ended(exitcode: int) -> str:
    """``killed by SIGKILL``, ``exit status 1``: a process's end as its exit code says."""
    if exitcode >= 0:
        return f"exit status {exitcode}"
    try:
        return f"killed by {signal.Signals(-exitcode).name}"
    except ValueError:  # a real-time signal, say
        return f"killed by signal {-exitcode}"


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


class _ResultQueue(SimpleQueue[Any]):
    """The pool's result pipe; a worker writes a result whole or not at all.

    ``terminate`` sends the workers SIGTERM, and Ctrl-C sends them SIGINT:
    either, in the middle of a write, would leave half a message in the pipe
    and its lock taken by a dead process. The worker holds them back while
    it writes; they take effect as soon as the result is written.
    """

    def __init__(self, *, ctx: Any) -> None:
        super().__init__(ctx=ctx)
        self._owner = os.getpid()
        self.stopped = threading.Event()  # the pool has stopped, or was left behind

    def __setstate__(self, state: Any) -> None:  # not used by a fork pool; kept whole
        super().__setstate__(state)
        self._owner = -1
        self.stopped = threading.Event()

    def put(self, obj: Any) -> None:
        if os.getpid() == self._owner:  # the pool's own end-of-results marker
            super().put(obj)
            return
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            super().put(obj)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _drain(outqueue: Any, result_handler: threading.Thread, stopped: threading.Event) -> None:
    """Once nothing collects results, read and drop them until the pool has stopped:
    a worker blocked writing to a full pipe finishes its write, and lets go of
    the pipe's lock, so the pool can send its marker and stop the worker."""
    while result_handler.is_alive():
        if stopped.wait(0.01):
            return
    reader = outqueue._reader
    while not stopped.is_set():
        try:
            if reader.poll(0.01):
                reader.recv_bytes()
        except (OSError, EOFError):  # the pool closed the pipe: it has stopped
            return


def _start_worker(parent: int, creator: int, warm: Callable[[], None] | None) -> None:
    # The kernel sends PR_SET_PDEATHSIG's signal when the *thread* that forked the
    # worker ends. A worker forked in place of one that died is forked by the
    # pool's own thread, which ends as the pool stops: killed then while it waits
    # for a task, it would keep the task pipe's lock for good, and stopping the
    # pool waits for that lock. Such a worker ends when its pipe breaks instead.
    if id(threading.current_thread()) == creator:  # the same object, copied by fork
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

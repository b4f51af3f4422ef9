"""Worker processes die with the command that forked them (a build killed with kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
CHILD = textwrap.dedent("""
    import multiprocessing, os, sys, time
    sys.path.insert(0, {src!r})
    from caixun.workers import worker_pool

    def sleeper(_):
        os.write(1, f"{{os.getpid()}}\\n".encode())
        time.sleep(60)

    pool = worker_pool(2) if {ours} else multiprocessing.get_context("fork").Pool(2)
    pool.map_async(sleeper, range(2))
    time.sleep(60)
""")


def _states_after_parent_killed(ours: bool) -> list[str]:
    """The kernel's state letters of the two workers once their parent got SIGKILL."""
    parent = subprocess.Popen([sys.executable, "-c", CHILD.format(src=str(SRC), ours=ours)],
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    workers = [int(parent.stdout.readline()) for _ in range(2)]
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    states: list[str] = []
    for pid in workers:
        deadline = time.monotonic() + 5
        state = _state(pid)
        while state not in ("Z", "gone") and time.monotonic() < deadline:
            time.sleep(0.05)
            state = _state(pid)
        states.append(state)
    for pid in workers:  # whatever the outcome, leave nothing behind
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return states


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_their_parent() -> None:
    assert all(state in ("Z", "gone") for state in _states_after_parent_killed(ours=True))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_plain_pool_outlives_its_parent_which_is_why() -> None:
    """The reference: without the request, workers go on after the parent is killed."""
    assert any(state not in ("Z", "gone") for state in _states_after_parent_killed(ours=False))


def _square(n: int) -> int:
    return n * n


def test_workers_that_end_are_replaced_and_the_pool_closes() -> None:
    """The thread that keeps the workers going wakes on their sentinels and on the
    pool's notices only (not on every result): it still replaces a worker that ends."""
    import multiprocessing

    from caixun.workers import WorkerPool

    with WorkerPool(1, maxtasksperchild=2, context=multiprocessing.get_context("fork")) as pool:
        assert [pool.apply_async(_square, (n,)).get(timeout=20) for n in range(7)] == \
            [n * n for n in range(7)]
        assert pool.map(_square, range(20), chunksize=1) == [n * n for n in range(20)]
        pool.close()
        pool.join()


STOP_BUSY = textwrap.dedent("""
    import random, sys, time
    sys.path.insert(0, {src!r})
    from caixun.workers import worker_pool

    def result(size, paths):
        return b"x" * size  # an import's parcel of posts is as big

    random.seed({seed})
    for attempt in range({attempts}):
        pool = worker_pool(random.choice([1, 2, 3]))
        sizes = [random.randrange(1_000, 400_000) for _ in range(random.choice([5, 50, 300]))]
        paths = b"p" * random.choice([10, 50_000])  # a task, small or not
        pending = [pool.apply_async(result, (size, paths)) for size in sizes]
        assert pending[0].get(timeout=30) == b"x" * sizes[0]
        time.sleep(random.random() * 0.05)
        pool.terminate()  # while the workers are busy sending results
        print(attempt, flush=True)
""")


@pytest.mark.parametrize("seed", [1, 2])
def test_a_pool_stops_while_its_workers_send_big_results(seed: int) -> None:
    """Was: ``terminate`` (``with pool:`` left by an exception, as an import onto a
    full disk leaves it) hung for ever, within a few dozen attempts: the results
    filled the pipe once nothing read them, and a worker blocked writing held
    the lock the pool's end-of-results marker needs. A hang fails after 240 s."""
    attempts = 150
    child = subprocess.run([sys.executable, "-c",
                            STOP_BUSY.format(src=str(SRC), seed=seed, attempts=attempts)],
                           capture_output=True, text=True, timeout=240)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == [str(n) for n in range(attempts)]
    assert "Traceback" not in child.stderr, child.stderr[-2000:]


LOST = textwrap.dedent("""
    import multiprocessing, os, signal, sys, time
    sys.path.insert(0, {src!r})
    from caixun.errors import WorkerError
    from caixun.workers import worker_pool

    def die_or_sleep(n):
        if n == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer does
        time.sleep(0.2)
        return n

    if {ours}:
        with worker_pool(2) as pool:
            try:
                {wait}
            except WorkerError as exc:
                print(exc, flush=True)
    else:
        with multiprocessing.get_context("fork").Pool(2) as pool:
            try:
                pool.apply_async(die_or_sleep, (1,)).get(timeout=5)
            except multiprocessing.TimeoutError:
                print("still waiting after 5 s", flush=True)
    print("stopped", flush=True)
""")


@pytest.mark.parametrize("wait", [
    "pool.get(pool.apply_async(die_or_sleep, (1,)))",  # the lost task's own result
    "[pool.get(pool.apply_async(die_or_sleep, (n,))) for n in (0, 1, 2, 3)]",
    "pool.wait(pool.apply_async(die_or_sleep, (1,)))",
    "list(pool.each(pool.imap_unordered(die_or_sleep, range(8))))",
])
def test_a_worker_that_dies_fails_what_is_awaited_of_the_pool(wait: str) -> None:
    """Was: a build or an import whose worker the out-of-memory killer took waited
    for ever for the task it had taken (CPython's pool starts another worker and
    forgets the task). A hang fails after 60 s."""
    child = subprocess.run([sys.executable, "-c", LOST.format(src=str(SRC), ours=True,
                                                               wait=wait)],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.splitlines() == [
        "a worker process ended before its work was done (killed by SIGKILL)", "stopped"]


def test_a_plain_pool_waits_for_a_dead_workers_task_which_is_why() -> None:
    child = subprocess.run([sys.executable, "-c", LOST.format(src=str(SRC), ours=False,
                                                               wait="pass")],
                           capture_output=True, text=True, timeout=60)
    assert child.stdout.splitlines() == ["still waiting after 5 s", "stopped"]


@pytest.mark.parametrize("exitcode, said", [
    (-9, "killed by SIGKILL"), (-15, "killed by SIGTERM"), (3, "exit status 3"),
    (-40, "killed by signal 40"),  # a real-time signal: no name of its own
])
def test_how_a_worker_ended_is_said(exitcode: int, said: str) -> None:
    from caixun.workers import _how_it_ended

    assert _how_it_ended(exitcode) == said


HELD = textwrap.dedent("""
    import multiprocessing, os, signal, sys, threading, time
    sys.path.insert(0, {src!r})
    import caixun.workers
    from caixun.workers import worker_pool

    caixun.workers.STOP_WAIT = 1.0

    def big(_):
        return b"x" * 50_000_000

    pool = worker_pool(2) if {ours} else multiprocessing.get_context("fork").Pool(2)
    pool.apply_async(int).get(timeout=30)
    if {writing}:  # killed writing a result the pool's thread reads meanwhile
        pool.apply_async(big, (0,))
        time.sleep(1.0)
    else:  # killed idle: one of them waits for a task, holding the task pipe's lock
        time.sleep(0.3)
    workers = list(pool._pool)
    for worker in workers:
        os.kill(worker.pid, signal.SIGKILL)
    time.sleep(0.3)
    started = time.monotonic()
    stopper = threading.Thread(target=pool.terminate, daemon=True)
    stopper.start()
    stopper.join(8)
    if stopper.is_alive():
        print("still stopping after 8 s", flush=True)
    else:
        waited = time.monotonic() - started
        print("stopped after the wait" if waited >= 1.0 else f"stopped in {{waited:.2f}} s",
              flush=True)
    left = multiprocessing.active_children()
    print("workers left:", len(left), flush=True)
    for process in left:  # a plain pool's (they would hold the output pipe open)
        os.kill(process.pid, signal.SIGKILL)
    os._exit(0)
""")


@pytest.mark.parametrize("writing", [False, True], ids=["idle", "writing a result"])
def test_a_pool_whose_workers_were_killed_holding_a_pipes_lock_stops(writing: bool) -> None:
    """Was: the out-of-memory killer's SIGKILL to a worker waiting for a task (or
    writing a result) left the lock of the pool's pipe taken, and stopping the
    pool (a build or an import ending with WorkerError) waited for it for ever.
    Now the pool is given STOP_WAIT seconds (1 here), then its workers (the new
    ones the pool started in the dead ones' place) are killed."""
    child = subprocess.run([sys.executable, "-c", HELD.format(src=str(SRC), ours=True,
                                                               writing=writing)],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.splitlines() == ["stopped after the wait", "workers left: 0"], \
        child.stderr[-2000:]


def test_a_plain_pool_whose_idle_workers_were_killed_never_stops_which_is_why() -> None:
    child = subprocess.run([sys.executable, "-c", HELD.format(src=str(SRC), ours=False,
                                                               writing=False)],
                           capture_output=True, text=True, timeout=60)
    assert child.stdout.splitlines()[0] == "still stopping after 8 s", child.stderr[-2000:]

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

    from caixun.workers import _Pool

    with _Pool(1, maxtasksperchild=2, context=multiprocessing.get_context("fork")) as pool:
        assert [pool.apply_async(_square, (n,)).get(timeout=20) for n in range(7)] == \
            [n * n for n in range(7)]
        assert pool.map(_square, range(20), chunksize=1) == [n * n for n in range(20)]
        pool.close()
        pool.join()

"""Giving the memory a process freed back to the system.

glibc's malloc keeps what a process frees for its next allocations, and
returns it to the system only from the top of its heaps. Between the blocks
still in use, freed pages stay counted in the process's size: a build
worker's level-2 search block (hundreds of MB at 300,000 articles), and in
``caixun run`` the pages, rows and parcels of every incremental build and
store, scattered among the blocks that live on (``benchmarks/soak.py``: a
run's resident size grew about 10 MB per 1,000 articles for as long as it
ran). ``malloc_trim`` gives back every whole free page, in place.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["release_free_memory"]


def release_free_memory() -> None:
    """Give the free pages of malloc's heaps back to the system (glibc; else nothing).

    A few milliseconds for a heap of a hundred MB: call it after a batch of
    work, not after each allocation-heavy call.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's malloc_trim, looked up once a process; None where libc is not glibc."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None

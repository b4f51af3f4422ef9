"""The set of files a build produced, held as 64-bit digests of their paths.

A full build gathers every file its workers wrote, to remove the ones left
over from an earlier site. At 1,000,000 articles that is 1,070,000 paths:
some 140 MB as a set of strings in the main process, and as much again
pickled on the way from the workers. As 8-byte digests in sorted arrays it
is 9 MB. The digest is BLAKE2b's, the same in every process (Python's
``hash`` of a string is not: it is seeded per interpreter); two paths of one
site sharing a digest (about 3 in 10^8 at a million files) would only keep a
stale file.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from array import array
from typing import Iterable

__all__ = ["PathSet"]


def _digest(path: str) -> int:
    return int.from_bytes(hashlib.blake2b(path.encode("utf-8", "surrogatepass"),
                                          digest_size=8).digest(), "little")


# Digests held as Python ints before they go into a sorted array (about 60 bytes
# each as ints, 8 in an array), and sorted arrays kept apart before they are
# merged into one (a look-up searches each).
OWN_MAX = 1 << 16
ARRAYS_MAX = 4


class PathSet:
    """Paths added here, and sorted arrays of digests (of paths added earlier, and of
    other sets merged in)."""

    __slots__ = ("_own", "_merged", "_count")

    def __init__(self, paths: Iterable[str] = ()) -> None:
        self._own: set[int] = set()
        self._merged: list[array[int]] = []  # each sorted, unsigned 64-bit
        self._count = 0  # of the merged digests
        for path in paths:
            self.add(path)

    def add(self, path: str) -> None:
        self._own.add(_digest(path))
        if len(self._own) >= OWN_MAX:
            self._add_sorted(array("Q", sorted(self._own)))
            self._own = set()

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        digest = _digest(path)
        if digest in self._own:
            return True
        for digests in self._merged:
            at = bisect.bisect_left(digests, digest)
            if at < len(digests) and digests[at] == digest:
                return True
        return False

    def __len__(self) -> int:
        """The number of digests held (a path added here and merged in counts twice)."""
        return len(self._own) + self._count

    def __ior__(self, other: PathSet | Iterable[str]) -> PathSet:
        if isinstance(other, PathSet):
            if other._own:
                self._add_sorted(array("Q", sorted(other._own)))
            for digests in other._merged:
                self._add_sorted(digests)
        else:
            for path in other:
                self.add(path)
        return self

    def _add_sorted(self, digests: array[int]) -> None:
        self._merged.append(digests)
        self._count += len(digests)
        if len(self._merged) > ARRAYS_MAX:
            self._merged = [array("Q", sorted(itertools.chain.from_iterable(self._merged)))]

    def __getstate__(self) -> tuple[array[int], ...]:
        """Pickled as sorted arrays: 8 bytes a path (a worker's set goes to the main process)."""
        own = (array("Q", sorted(self._own)),) if self._own else ()
        return (*own, *self._merged)

    def __setstate__(self, state: tuple[array[int], ...]) -> None:
        self._own, self._merged, self._count = set(), [], 0
        for digests in state:
            self._add_sorted(digests)

"""PathSet: the paths a build produced, as digests merged across processes."""

from __future__ import annotations

import pickle

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from caixun.publish.produced import PathSet

_PATHS = st.text(st.characters(blacklist_categories=("Cc",)), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sets(_PATHS, max_size=30), min_size=1, max_size=5), st.sets(_PATHS, max_size=30))
def test_merged_sets_hold_exactly_the_paths_put(parts: list[set[str]], others: set[str]) -> None:
    """Each part made in a "worker", pickled to the "main" one, merged in any order."""
    merged = PathSet(["index.html"])
    for part in parts:
        worker = PathSet()
        for path in part:
            worker.add(path)
        merged |= pickle.loads(pickle.dumps(worker))
    merged |= {"feed.xml"}
    every = set().union(*parts) | {"index.html", "feed.xml"}
    assert all(path in merged for path in every)
    assert not any(path in merged for path in others - every)
    assert len(merged) >= len(every)


def test_a_pickled_set_is_eight_bytes_a_path() -> None:
    paths = PathSet(f"outlet/2026/01/{n:02d}/{n:020d}.html" for n in range(10_000))
    assert len(pickle.dumps(paths)) < 9 * 10_000
    assert "outlet/2026/01/07/00000000000000000007.html" in pickle.loads(pickle.dumps(paths))
    assert "outlet/2026/01/07/00000000000000000007.htm" not in paths


def test_surrogates_and_non_strings() -> None:
    paths = PathSet(["a\\udcff.html"])
    paths.add("\udcff.html")  # a file name the file system gave back undecodable
    assert "\udcff.html" in paths
    assert 1 not in paths


def test_many_paths_go_into_sorted_arrays_and_stay_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past OWN_MAX paths a set sorts them into an array, and past ARRAYS_MAX arrays
    merges them: every path is still found, and no other."""
    from caixun.publish import produced

    monkeypatch.setattr(produced, "OWN_MAX", 7)
    monkeypatch.setattr(produced, "ARRAYS_MAX", 2)
    workers = [PathSet(f"w{w}/{n}.html" for n in range(50)) for w in range(3)]
    merged = PathSet(f"main/{n}.html" for n in range(20))
    for worker in workers:
        merged |= pickle.loads(pickle.dumps(worker))
    assert len(merged._merged) <= 2
    assert all(f"w{w}/{n}.html" in merged for w in range(3) for n in range(50))
    assert all(f"main/{n}.html" in merged for n in range(20))
    assert not any(f"w{w}/{n}.html" in merged for w in (3, 4) for n in range(50))
    assert len(merged) == 170

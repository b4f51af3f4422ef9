"""Memory a process freed goes back to the system: after each build of `caixun run`,
and after a fetcher's stores.

A long `caixun run` grew about 10 MB per 1,000 articles for as long as it ran
(`benchmarks/soak.py`: 165 MB at 1,000 articles, 326 MB at 14,200): glibc kept
what each build and store freed, scattered among the blocks that live on.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import newsserver as ns
from caixun import run
from caixun.sources.base import SourceConfig
from test_run import LiveList, _free_port, _page
from test_run import news  # noqa: F401  (the fixture)
from test_run_faults import _Daemon, _options


def _configs(server: ns.NewsServer) -> list[SourceConfig]:
    return [SourceConfig("em-rolling", "eastmoney-rolling", 1, {
        "list_url": server.url("/web/webapi"),
        "text_url": server.url("/NewsData/GetNewsText.do") + "?id={code}"})]

# Many blocks of malloc's sizes (over pymalloc's 512 bytes), one in eight kept:
# the freed ones lie between kept ones, where malloc cannot give them back by
# shrinking its heap.
_FRAGMENTED = """
import random, sys
from caixun.memory import release_free_memory

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

rng = random.Random(1)
blocks = [bytes(rng.randint(600, 4000)) for _ in range(60000)]
kept = blocks[::8]
del blocks
held = rss_mb()
release_free_memory()
print(held, rss_mb(), len(kept))
"""


def test_release_free_memory_gives_back_the_pages_freed_between_live_blocks() -> None:
    done = subprocess.run([sys.executable, "-c", _FRAGMENTED], capture_output=True, text=True,
                          timeout=60, check=True)
    held, after, kept = done.stdout.split()
    # About 140 MB made, an eighth of it kept: most of the rest was still counted.
    assert float(held) - float(after) > 50, done.stdout
    assert int(kept) == 7500


def test_caixun_run_gives_back_what_each_build_freed(
    tmp_path: Path, news: tuple[ns.NewsServer, LiveList],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each build of the daemon is followed, in its thread, by the memory's release."""
    server, live = news
    events: list[tuple[str, int]] = []
    build_site = run.build_site

    def recorded_build(*args: Any, **kwargs: Any) -> Any:
        report = build_site(*args, **kwargs)
        events.append(("built", threading.get_ident()))
        return report

    monkeypatch.setattr(run, "build_site", recorded_build)
    monkeypatch.setattr(run, "release_free_memory",
                        lambda: events.append(("released", threading.get_ident())))
    port = _free_port()
    daemon = _Daemon(_options(tmp_path, port), _configs(server))
    try:
        daemon.wait("the first pages", lambda: _page(port, live.records[0]) is not None)
        newcomer = server.held_back[0]  # type: ignore[attr-defined]
        live.add(newcomer)
        daemon.wait("a second build, with the newcomer",
                    lambda: sum(kind == "built" for kind, _ in events) >= 2
                    and _page(port, newcomer) is not None)
    finally:
        daemon.finish()
    builds = [i for i, (kind, _) in enumerate(events) if kind == "built"]
    assert len(builds) >= 2, events
    for at in builds:
        assert events[at + 1:at + 2] == [("released", events[at][1])], events


def test_a_fetcher_gives_back_what_its_stores_freed_once_they_stored_something(
    tmp_path: Path, news: tuple[ns.NewsServer, LiveList],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--role fetch` builds nothing: the memory is released after polls that stored
    news, at most every RELEASE_EVERY seconds, and not after polls that found none."""
    server, live = news
    released: list[float] = []
    monkeypatch.setattr(run, "RELEASE_EVERY", 0.5)
    monkeypatch.setattr(run, "release_free_memory", lambda: released.append(time.monotonic()))
    options = dataclasses.replace(_options(tmp_path, _free_port(), serve=False), role="fetch")
    daemon = _Daemon(options, _configs(server))
    try:
        daemon.wait("the first news stored, then a poll with nothing new",
                    lambda: "em-rolling: 0 new" in daemon.text() and len(released) >= 1)
        time.sleep(1.0)  # the securities' retagging of what was stored: a store too
        settled = len(released)
        polls = daemon.text().count("em-rolling: 0 new")
        daemon.wait("three more polls with nothing new",
                    lambda: daemon.text().count("em-rolling: 0 new") >= polls + 3)
        assert len(released) == settled, (released, daemon.text())
        live.add(server.held_back[0])  # type: ignore[attr-defined]
        daemon.wait("the newcomer stored, then the memory released",
                    lambda: "em-rolling: 1 new" in daemon.text() and len(released) > settled)
    finally:
        daemon.finish()
    gaps = [later - earlier for earlier, later in zip(released, released[1:])]
    assert min(gaps) >= 0.5, gaps
    assert "memory: task failed" not in daemon.text()

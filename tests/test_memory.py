"""Memory a process freed goes back to the system: after each build of `caixun run`.

A long `caixun run` grew about 10 MB per 1,000 articles for as long as it ran
(`benchmarks/soak.py`, its size between builds: 138 MB over the first 2,000
articles, 326 MB past 14,000): glibc kept what each build and store freed,
scattered among the blocks that live on.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import newsserver as ns
from caixun import run
from caixun.sources.base import SourceConfig
from test_run import LiveList, _free_port, _page
from test_run import news  # noqa: F401  (the fixture)
from test_run_faults import _Daemon, _options

# Many blocks of malloc's sizes (over pymalloc's 512 bytes), one in eight kept:
# the freed ones lie between kept ones, where malloc cannot give them back by
# shrinking its heap.
_FRAGMENTED = """
import random
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
    configs = [SourceConfig("em-rolling", "eastmoney-rolling", 1, {
        "list_url": server.url("/web/webapi"),
        "text_url": server.url("/NewsData/GetNewsText.do") + "?id={code}"})]
    daemon = _Daemon(_options(tmp_path, port), configs)
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

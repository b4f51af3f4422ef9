"""`caixun run` as a real subprocess against the test news server."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from caixun.archive import open_archive

import newsserver as ns
from conftest import REPO


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveList:
    """The rolling-news list the server hands out; tests add items while caixun runs."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.lock = threading.Lock()

    def __call__(self, seen: ns.Seen) -> dict[str, Any]:
        with self.lock:
            return {"records": list(self.records)}

    def add(self, record: dict[str, Any]) -> None:
        with self.lock:
            self.records.insert(0, record)


@pytest.fixture
def news() -> Iterator[tuple[ns.NewsServer, LiveList]]:
    records = ns.rolling_records()["records"]
    live = LiveList(records[20:])  # the 20 newest arrive later, one by one
    with ns.NewsServer() as server:
        server.route("/web/webapi", live)
        server.route("/NewsData/GetNewsText.do", ns.by_query("id", ns.news_texts()))
        server.held_back = records[:20]  # type: ignore[attr-defined]
        yield server, live


def _config(tmp_path: Path, server: ns.NewsServer, site_port: int) -> None:
    (tmp_path / "caixun.toml").write_text(f"""
[site]
url = "http://127.0.0.1:{site_port}"

[fetch]
retries = 1
min_gap = 0.0
read_timeout = 2.0

[[sources]]
name = "em-rolling"
kind = "eastmoney-rolling"
every = 1
list_url = "{server.url('/web/webapi')}"
text_url = "{server.url('/NewsData/GetNewsText.do')}?id={{code}}"

[[sources]]
name = "offline"
kind = "cls"
every = 1
list_url = "http://127.0.0.1:9/v1/roll/get_roll_list"
""", encoding="utf-8")


class Daemon:
    def __init__(self, tmp_path: Path, port: int) -> None:
        self.log = tmp_path / f"run-{time.monotonic_ns()}.log"
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "caixun.cli", "run", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
            stderr=self.log.open("w", encoding="utf-8"))

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8")


def _wait(what: str, check: Callable[[], bool], daemon: Daemon, seconds: float = 40) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        if daemon.proc.poll() is not None:
            pytest.fail(f"caixun run exited ({daemon.proc.returncode}) before {what}:\n"
                        + daemon.text())
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}:\n{daemon.text()}")


def _page(port: int, record: dict[str, Any]) -> str | None:
    day = record["showtime"][:10].replace("-", "/")
    url = f"http://127.0.0.1:{port}/emnews/{day}/{record['id']}.html"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode("utf-8"))
    except (urllib.error.URLError, OSError):
        return None


def _home(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return str(response.read().decode("utf-8"))
    except (urllib.error.URLError, OSError):
        return ""


def _uids(db: Path) -> list[str]:
    try:
        with sqlite3.connect(db) as conn:
            return [row[0] for row in conn.execute("SELECT uid FROM articles")]
    except sqlite3.OperationalError as exc:  # polled while the daemon creates the schema
        if "no such table" in str(exc):
            return []
        raise


def test_new_items_appear_on_the_served_site_and_sigterm_stops_cleanly(
    tmp_path: Path, news: tuple[ns.NewsServer, LiveList]
) -> None:
    server, live = news
    port = _free_port()
    _config(tmp_path, server, port)
    daemon = Daemon(tmp_path, port)
    try:
        first = live.records[0]
        _wait("the first articles on the site", lambda: _page(port, first) is not None, daemon)
        newcomer = server.held_back[0]  # type: ignore[attr-defined]
        live.add(newcomer)
        _wait("the new item's page", lambda: _page(port, newcomer) is not None, daemon)
        assert newcomer["title"] in (_page(port, newcomer) or "")
        # The home page is written after the pages it links to, so it may lag a moment.
        _wait("the new item on the home page",
              lambda: newcomer["title"] in _home(port), daemon, seconds=10)
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        code = daemon.proc.wait(timeout=20)
    log = daemon.text()
    assert code == 0, log
    assert log.rstrip().endswith("stopped")
    assert "Traceback" not in log
    # One line per source per round; the unreachable source is reported, not fatal.
    assert "em-rolling: 94 new" in log
    assert "em-rolling: 1 new" in log
    assert "offline: FAILED: http://127.0.0.1:9/" in log
    assert len(_uids(tmp_path / "caixun.db")) == 95


def test_kill_9_then_restart_loses_and_duplicates_nothing(
    tmp_path: Path, news: tuple[ns.NewsServer, LiveList]
) -> None:
    server, live = news
    port = _free_port()
    _config(tmp_path, server, port)
    db = tmp_path / "caixun.db"
    held = list(server.held_back)  # type: ignore[attr-defined]
    for round_number in range(3):
        daemon = Daemon(tmp_path, port)
        for record in held[round_number * 5:(round_number + 1) * 5]:
            live.add(record)
        expected = len(live.records)
        _wait("every listed item stored",
              lambda: db.exists() and len(_uids(db)) == expected, daemon)
        time.sleep(0.3 * round_number)  # kill at different points of the loop
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(timeout=10)
    uids = _uids(db)
    assert len(uids) == len(set(uids)) == len(live.records)
    assert {f"em-rolling:{r['id']}" for r in live.records} == set(uids)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # And a clean restart serves every article.
    daemon = Daemon(tmp_path, port)
    try:
        last = live.records[0]
        _wait("the site after restarts", lambda: _page(port, last) is not None, daemon)
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=20) == 0


def test_a_slow_source_holds_up_no_other(tmp_path: Path,
                                         news: tuple[ns.NewsServer, LiveList]) -> None:
    server, live = news
    slow = "/v1/roll/get_roll_list"
    release = threading.Event()  # the slow source answers when the test says so
    server.route(slow, lambda seen: (release.wait(60), {"errno": 0})[1])
    port = _free_port()
    _config(tmp_path, server, port)
    config = tmp_path / "caixun.toml"
    config.write_text(config.read_text(encoding="utf-8")
                      .replace("http://127.0.0.1:9" + slow, server.url(slow))
                      .replace("read_timeout = 2.0", "read_timeout = 60.0"), encoding="utf-8")
    daemon = Daemon(tmp_path, port)

    def fast_rounds() -> int:
        return daemon.text().count("em-rolling:")

    try:
        _wait("the slow source's poll under way",
              lambda: any(seen.path == slow for seen in server.requests), daemon)
        # While that poll hangs, the fast source keeps its 1 s schedule: more rounds,
        # and a new item stored. (Waited for, not slept: a loaded machine is slower.)
        rounds = fast_rounds()
        _wait("two rounds of the fast source while the slow one hangs",
              lambda: fast_rounds() >= rounds + 2, daemon)
        live.add(server.held_back[0])  # type: ignore[attr-defined]
        _wait("the new item while the slow source is stuck",
              lambda: "em-rolling: 1 new" in daemon.text(), daemon)
        assert "offline:" not in daemon.text(), daemon.text()  # its poll still hangs
    finally:
        release.set()
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=60) == 0


def test_a_restarted_fetcher_takes_back_the_leases_of_its_dead_processes(tmp_path: Path) -> None:
    """A fetcher killed mid-poll keeps its source leased for fetch.lease seconds: caixun
    run, restarted on that machine, takes it back at once (the holder names a process
    that is gone), and leaves every other lease to run out."""
    from caixun import run

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = socket.gethostname()
    holders = {"em-rolling": f"{here}:{gone.pid}:aaaa", "cls": f"elsewhere:{gone.pid}:bbbb",
               "rss": f"{here}:{os.getpid()}:cccc", "odd": "no colon at all",
               "odder": f"{here}:not-a-pid:dddd"}
    with open_archive(tmp_path / "caixun.db") as archive:
        for name, holder in holders.items():
            assert archive.claim_source(name, holder, 60)
        assert not archive.claim_source("em-rolling", f"{here}:{os.getpid()}:eeee", 60)
        assert run.release_dead_leases(archive) == ["em-rolling"]
        assert archive.source_leases() == {n: h for n, h in holders.items() if n != "em-rolling"}
        assert archive.claim_source("em-rolling", f"{here}:{os.getpid()}:eeee", 60)

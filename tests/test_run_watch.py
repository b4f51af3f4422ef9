"""caixun run with watch lists: notifications from the daemon, kill -9 between store and delivery."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

from caixun.archive import open_archive
from caixun.watch import Watch
from test_run import Daemon, LiveList, _config, _free_port, _uids, _wait, news  # noqa: F401
from test_watch import Receiver, receiver  # noqa: F401

import newsserver as ns

WATCH = Watch("companies", query="公司 OR 股份")


def _with_watch(tmp_path: Path, url: str) -> None:
    config = tmp_path / "caixun.toml"
    config.write_text(config.read_text(encoding="utf-8") + f"""
[[watch]]
name = "{WATCH.name}"
query = "{WATCH.query}"
notify = "{url}"
""", encoding="utf-8")


def _matches(db: Path) -> set[str]:
    with open_archive(db, read_only=True) as archive:
        return {ref.uid for ref in archive.watch_refs(WATCH)}


def test_kill_9_between_store_and_delivery_then_restart_delivers_each_match_once(
        tmp_path: Path, news: tuple[ns.NewsServer, LiveList],  # noqa: F811
        receiver: Receiver) -> None:  # noqa: F811
    server, live = news
    port = _free_port()
    _config(tmp_path, server, port)
    _with_watch(tmp_path, receiver.url)
    db = tmp_path / "caixun.db"
    receiver.plan = ["503"] * 100_000  # the receiver is down while the first run stores
    daemon = Daemon(tmp_path, port)
    expected = len(live.records)
    _wait("every listed item stored", lambda: db.exists() and len(_uids(db)) == expected,
          daemon)
    time.sleep(1.0)  # a delivery attempt or two fail meanwhile
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(timeout=10)
    assert receiver.keys() == Counter()
    wanted = {f"{WATCH.name}:{uid}" for uid in _matches(db)}
    assert 0 < len(wanted) < expected

    receiver.plan = []  # back up
    daemon = Daemon(tmp_path, port)
    try:
        _wait("every match delivered", lambda: set(receiver.keys()) == wanted, daemon,
              seconds=60)
        newcomer = next(r for r in server.held_back  # type: ignore[attr-defined]
                        if "公司" in r["title"] + r.get("digest", ""))
        live.add(newcomer)
        key = f"{WATCH.name}:em-rolling:{newcomer['id']}"
        _wait("the new item's notification", lambda: key in receiver.keys(), daemon)
        time.sleep(1.0)
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=20) == 0, daemon.text()
    assert set(receiver.keys()) == wanted | {key}
    assert set(receiver.keys().values()) == {1}  # none twice
    assert "notifications: " in daemon.text()

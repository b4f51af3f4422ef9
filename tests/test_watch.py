"""Watch lists: matching at write time, the outbox, delivery to real webhooks and commands."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from caixun.archive import SqliteArchive
from caixun.model import Article
from caixun.securities import SecurityName
from caixun.watch import Deliverer, Watch, WatchError, backoff, deliver_pending

BEIJING = timezone(timedelta(hours=8))
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=BEIJING)
REPO = Path(__file__).resolve().parents[1]


def article(n: int, title: str, body: str = "", slug: str = "cls", outlet: str = "财联社"
            ) -> Article:
    return Article(uid=f"w:{n}", outlet=outlet, outlet_slug=slug, title=title,
                   published_at=T0 + timedelta(minutes=n), file_id=f"{n:06d}",
                   body_html=f"<p>{body or title}</p>", body_text=body or title,
                   url=f"https://example.org/{n}")


# -- a webhook receiver on 127.0.0.1 --------------------------------------------------------

class Receiver:
    """Records every POST; answers as ``plan`` says for the n-th request of a key."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []  # the 2xx answered
        self.plan: list[str] = []  # per request, in order: "ok", "500", "404", "reset", "slow"
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    action = receiver.plan.pop(0) if receiver.plan else "ok"
                if action == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.connection.close()
                    return
                if action == "slow":
                    time.sleep(1.5)
                status = 200 if action in ("ok", "slow") else int(action)
                if status == 200:
                    with receiver.lock:
                        receiver.received.append((self.headers["Idempotency-Key"],
                                                  json.loads(body)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def keys(self) -> Counter[str]:
        return Counter(key for key, _ in self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def deliver(archive: SqliteArchive, watches: list[Watch], clock: float | None = None,
            timeout: float = 5.0) -> Any:
    deliverer = Deliverer({w.name: w for w in watches}, timeout=timeout)
    return asyncio.run(deliver_pending(archive, deliverer,
                                       clock=(lambda: clock) if clock else time.time))


# -- matching --------------------------------------------------------------------------------

def test_a_watch_matches_its_query_or_its_stocks_within_its_outlets(tmp_path: Path,
                                                                    receiver: Receiver) -> None:
    watch = Watch("holdings", query="降准 OR 降息", stocks=("600519.SH",), outlets=("cls",),
                  notify=receiver.url)
    with SqliteArchive(tmp_path / "a.db") as archive:
        archive.learn_securities([SecurityName("600519.SH", "贵州茅台", "test")])
        archive.store(article(1, "央行宣布降准", slug="cls"))  # before the watch: not notified
        archive.use_watches([watch])
        archive.store(article(2, "央行宣布降准0.5个百分点"))
        archive.store(article(3, "贵州茅台提价"))
        archive.store(article(4, "美联储降息25个基点"))
        archive.store(article(5, "降准落地", slug="wallstreetcn", outlet="华尔街见闻"))
        archive.store(article(6, "天气晴朗"))
        assert archive.outbox_counts() == {"pending": 3}
        report = deliver(archive, [watch])
        assert report.delivered == 3
        assert sorted(receiver.keys()) == ["holdings:w:2", "holdings:w:3", "holdings:w:4"]
        sent = dict(receiver.received)["holdings:w:3"]
        assert sent["stocks"] == ["600519.SH"] and sent["title"] == "贵州茅台提价"
        assert set(sent) == {"watch", "uid", "title", "url", "outlet", "published_at",
                             "stocks", "snippet"}
        # The whole history: the article from before the watch is in its list.
        assert [r.uid for r in archive.watch_refs(watch)] == ["w:4", "w:3", "w:2", "w:1"]


def test_an_article_is_notified_once_whatever_updates_follow(tmp_path: Path,
                                                             receiver: Receiver) -> None:
    watch = Watch("rates", query="降准", notify=receiver.url)
    with SqliteArchive(tmp_path / "a.db") as archive:
        archive.use_watches([watch])
        archive.store(article(1, "央行降准"))
        archive.store(article(1, "央行宣布降准（更新）"))
        deliver(archive, [watch])
        archive.store(article(1, "央行宣布降准（再更新）"))
        deliver(archive, [watch])
        assert receiver.keys() == Counter({"rates:w:1": 1})


def test_a_changed_watch_counts_from_its_change(tmp_path: Path) -> None:
    with SqliteArchive(tmp_path / "a.db") as archive:
        assert archive.use_watches([Watch("a", query="降准", command=("true",))]) == ["a"]
        assert archive.use_watches([Watch("a", query="降准", command=("true",))]) == []
        archive.store(article(1, "降息"))
        assert archive.use_watches([Watch("a", query="降息", command=("true",))]) == ["a"]
        assert archive.outbox_counts() == {}  # w:1 was stored before the change
        archive.store(article(2, "再降息"))
        assert archive.outbox_counts() == {"pending": 1}
        archive.use_watches([])  # removed: its pending notifications go with it
        assert archive.outbox_counts() == {}


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "bad name"}, "letters, digits"),
    ({"name": "x"}, "query or stocks"),
    ({"name": "x", "query": "a", "notify": "ftp://h"}, "http"),
    ({"name": "x", "query": "a", "notify": "http://h", "command": ("true",)}, "not both"),
])
def test_bad_watches_say_what_is_wrong(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(WatchError, match=message):
        Watch(**kwargs)


# -- delivery ---------------------------------------------------------------------------------

def test_failing_receivers_are_retried_with_backoff_and_4xx_is_given_up(
        tmp_path: Path, receiver: Receiver) -> None:
    watch = Watch("w", query="降准", notify=receiver.url)
    with SqliteArchive(tmp_path / "a.db") as archive:
        archive.use_watches([watch])
        for n in range(1, 4):
            archive.store(article(n, f"降准消息{n}"))
        receiver.plan = ["500", "reset", "404"]  # one each, in delivery order
        first = deliver(archive, [watch], clock=1000.0)
        assert (first.delivered, first.retrying, first.failed) == (0, 2, 1)
        assert any("HTTP 404" in e for e in first.errors)
        # Not due yet: nothing is sent before the backoff has passed.
        assert deliver(archive, [watch], clock=1000.0 + backoff(1) - 1).delivered == 0
        again = deliver(archive, [watch], clock=1000.0 + backoff(1))
        assert again.delivered == 2
        assert archive.outbox_counts() == {"delivered": 2, "failed": 1}
        assert sorted(receiver.keys().values()) == [1, 1]


def test_a_slow_receiver_times_out_and_is_retried(tmp_path: Path, receiver: Receiver) -> None:
    watch = Watch("w", query="降准", notify=receiver.url)
    with SqliteArchive(tmp_path / "a.db") as archive:
        archive.use_watches([watch])
        archive.store(article(1, "降准"))
        receiver.plan = ["slow"]
        report = deliver(archive, [watch], clock=50.0, timeout=0.5)
        assert report.retrying == 1 and "Timeout" in report.errors[0]
        assert deliver(archive, [watch], clock=50.0 + backoff(1)).delivered == 1


def test_a_command_target_gets_the_fields(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    script = f"import sys; open({str(out)!r}, 'a').write(' '.join(sys.argv[1:]) + chr(10))"
    watch = Watch("w", query="降准", command=(sys.executable, "-c", script, "{title}",
                                            "{stocks}", "{missing}"))
    with SqliteArchive(tmp_path / "a.db") as archive:
        archive.use_watches([watch])
        archive.store(article(1, "央行降准"))
        assert deliver(archive, [watch]).delivered == 1
    assert out.read_text(encoding="utf-8") == "央行降准  {missing}\n"


KILLED_WRITER = """
import sys, os, signal
from datetime import datetime, timedelta, timezone
from caixun.archive import SqliteArchive
from caixun.model import Article
from caixun.watch import Watch
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=timezone(timedelta(hours=8)))
with SqliteArchive(sys.argv[1]) as archive:
    archive.use_watches([Watch("w", query="降准", notify=sys.argv[2])])
    for n in range(40):
        archive.store(Article(uid=f"k:{n}", outlet="财联社", outlet_slug="cls",
                              title=f"降准消息{n}", published_at=T0 + timedelta(minutes=n),
                              file_id=f"{n:06d}", body_html="<p>降准</p>", body_text="降准"))
    os.kill(os.getpid(), signal.SIGKILL)  # between storing and delivering
"""


def test_kill_9_between_store_and_delivery_loses_and_repeats_nothing(
        tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "a.db"
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(db), receiver.url],
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert done.returncode == -signal.SIGKILL
    watch = Watch("w", query="降准", notify=receiver.url)
    receiver.plan = ["500"] * 5  # a receiver that fails at first
    with SqliteArchive(db) as archive:
        archive.use_watches([watch])
        clock = 100.0
        while archive.outbox_counts().get("pending"):
            deliver(archive, [watch], clock=clock)
            clock += 3600
    with SqliteArchive(db) as archive:  # a restart delivers nothing again
        archive.use_watches([watch])
        assert deliver(archive, [watch], clock=clock).delivered == 0
    assert receiver.keys() == Counter({f"w:k:{n}": 1 for n in range(40)})

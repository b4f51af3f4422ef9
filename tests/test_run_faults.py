"""`caixun run` under faults: a locked archive, tasks that fail, a web server that stops.

Issue 9 item 2: a write lock held by another process blocked the daemon's event
loop (its SQLite calls ran on it) and then killed the build task and a source
task, logged only at shutdown. Each test holds a real lock from another process
on a real archive file, or injects a real fault (an SQLite trigger, a directory
where a page must go), and drives the real `caixun run` (subprocess) or
`run_daemon` in this process against tests/newsserver.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
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

import newsserver as ns
from caixun.archive import SourceHealth, SqliteArchive, open_archive
from caixun.archive import BuildState
from caixun.archive.worker import is_busy
from caixun.archive.worker import ArchiveWorker, BusyLog, on_archive
from caixun.errors import ArchiveError, CaixunError
from caixun.fetch import FetchSettings
from caixun.publish.site import SiteConfig
from caixun.run import RunOptions, _QuietServer, run_daemon
from caixun.sources.base import SourceConfig
from caixun.sources.jin10 import Flash
from conftest import REPO
from test_run import Daemon, LiveList, _config, _free_port, _page, _uids, _wait
from test_run import news  # noqa: F401  (the fixture)

LOCK_S = 12.0  # longer than the archive's busy_timeout (10 s): the old code failed writes

_LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


@contextlib.contextmanager
def _locked(db: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process holds the archive's write lock for ``seconds`` (from when this yields)."""
    locker = subprocess.Popen([sys.executable, "-c", _LOCKER, str(db), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        yield locker
    finally:
        locker.wait(timeout=seconds + 30)


def _answer_time(port: int, path: str = "/") -> float:
    """Seconds the server took to answer (any status); 99 when it did not answer within 3 s."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            response.read()
    except urllib.error.HTTPError as exc:  # the site's 404 page still is an answer
        exc.read()
    except (urllib.error.URLError, OSError):
        return 99.0
    return time.monotonic() - started


def _answers_while(locker: subprocess.Popen[str], port: int) -> list[float]:
    times = []
    while locker.poll() is None:
        times.append(_answer_time(port))
        time.sleep(0.2)
    return times


def _stopped(daemon: Daemon) -> tuple[int, str]:
    daemon.proc.send_signal(signal.SIGTERM)
    return daemon.proc.wait(timeout=30), daemon.text()


def _assert_no_task_lost(log: str) -> None:
    assert "task failed" not in log, log
    assert "Traceback" not in log, log
    # The old daemon reported dead tasks only at shutdown, as "<stamp> error: …".
    assert not re.search(r"^\S+ \S+ error: ", log, re.M), log


def _busy_lines(log: str, who: str) -> list[str]:
    return [line for line in log.splitlines() if f"{who}: the archive is busy" in line]


# -- a lock held by another process ------------------------------------------------------

def test_a_lock_while_running_blocks_neither_the_site_nor_any_task(
    tmp_path: Path, news: tuple[ns.NewsServer, LiveList]  # noqa: F811
) -> None:
    server, live = news
    port = _free_port()
    _config(tmp_path, server, port)
    db = tmp_path / "caixun.db"
    daemon = Daemon(tmp_path, port)
    try:
        _wait("the first pages", lambda: _page(port, live.records[0]) is not None, daemon)
        newcomer = server.held_back[0]  # type: ignore[attr-defined]
        with _locked(db, LOCK_S) as locker:
            live.add(newcomer)  # the next poll must store it, and finds the archive locked
            answers = _answers_while(locker, port)
        polls_at_release = daemon.text().count("em-rolling:")
        _wait("the new item's page after the lock",
              lambda: _page(port, newcomer) is not None, daemon, seconds=30)
        _wait("more polls of both sources", lambda: daemon.text().count("em-rolling:")
              >= polls_at_release + 2 and daemon.text().count("offline:") >= 4, daemon)
    finally:
        code, log = _stopped(daemon)
    # The old daemon froze for the 10 s of busy_timeout: the site did not answer.
    # (3 s, not less: a loaded machine answers slower, never that slow.)
    assert len(answers) >= 10 and max(answers) < 3.0, answers
    assert code == 0, log
    _assert_no_task_lost(log)
    assert f"em-rolling:{newcomer['id']}" in _uids(db)
    assert len(_busy_lines(log, "sources")) == 1, log  # once per wait, not per retry


def test_a_lock_held_at_start_delays_the_first_build_and_store_not_the_site(
    tmp_path: Path, news: tuple[ns.NewsServer, LiveList]  # noqa: F811
) -> None:
    server, live = news
    port = _free_port()
    _config(tmp_path, server, port)
    db = tmp_path / "caixun.db"
    open_archive(db).close()  # an archive that exists, as on any restart
    with _locked(db, LOCK_S) as locker:
        daemon = Daemon(tmp_path, port)
        try:
            deadline = time.monotonic() + LOCK_S - 2
            while _answer_time(port) > 3.0 and time.monotonic() < deadline:
                time.sleep(0.1)
            up_during_lock = locker.poll() is None and _answer_time(port) < 3.0
            answers = _answers_while(locker, port)
        except BaseException:
            _stopped(daemon)
            raise
    try:
        # The old daemon built first, on the loop: the build's write failed after 10 s
        # and the daemon exited with a traceback, never having served.
        assert up_during_lock, daemon.text()
        assert answers and max(answers) < 3.0, answers
        _wait("every page after the lock",
              lambda: all(_page(port, r) is not None for r in live.records), daemon, seconds=40)
    finally:
        code, log = _stopped(daemon)
    assert code == 0, log
    _assert_no_task_lost(log)
    assert len(_uids(db)) == len(live.records)
    assert len(_busy_lines(log, "build")) == 1, log
    assert len(_busy_lines(log, "sources")) <= 1, log


def test_caixun_fetch_waits_for_a_locked_archive(
    tmp_path: Path, news: tuple[ns.NewsServer, LiveList]  # noqa: F811
) -> None:
    server, live = news
    _config(tmp_path, server, _free_port())
    db = tmp_path / "caixun.db"
    open_archive(db).close()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    with _locked(db, LOCK_S):
        result = subprocess.run(
            [sys.executable, "-m", "caixun.cli", "fetch", "--source", "em-rolling"],
            cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=120)
    # The old store gave up after busy_timeout: "FAILED: internal error … database is locked".
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"em-rolling: {len(live.records)} new" in result.stdout, result.stdout
    assert len(_uids(db)) == len(live.records)


def _write(name: str) -> Callable[[SqliteArchive], object]:
    """One of the archive writes the daemon makes, as a call on an archive."""
    writes: dict[str, Callable[[SqliteArchive], object]] = {
        "save_source_health": lambda a: a.save_source_health(SourceHealth("s", next_poll=1.0)),
        "set_list_hashes": lambda a: a.set_list_hashes({"s:1": "h"}),
        "save_build_state": lambda a: a.save_build_state("site", BuildState(0, "f"), {}),
        "transaction": lambda a: _in_transaction(a),
    }
    return writes[name]


def _in_transaction(archive: SqliteArchive) -> None:
    with archive.transaction():
        archive.set_list_hashes({"s:2": "h"})
        archive.save_source_health(SourceHealth("t"))


WRITES = ["save_source_health", "set_list_hashes", "save_build_state", "transaction"]


@pytest.mark.parametrize("write", WRITES)
def test_the_archive_thread_waits_out_a_lock_and_the_loop_keeps_running(
    tmp_path: Path, write: str
) -> None:
    db = tmp_path / "caixun.db"
    open_archive(db).close()
    lines: list[str] = []

    async def scenario() -> tuple[float, float]:
        worker = await ArchiveWorker.open(db, BusyLog(lines.append))
        ticks: list[float] = []
        ticking = asyncio.create_task(_tick(ticks))
        try:
            with _locked(db, 2.5):
                started = time.monotonic()
                await asyncio.wait_for(worker.run(_write(write)), timeout=30)
                waited = time.monotonic() - started
        finally:
            ticking.cancel()
            await worker.aclose()
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        return waited, max(gaps)

    waited, longest_gap = asyncio.run(scenario())
    assert waited >= 1.5  # it did wait for the other process
    assert longest_gap < 1.5  # and the loop ran all the while (it was blocked 2.5 s)
    assert len(lines) == 1 and "the archive is busy" in lines[0], lines
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM source_health").fetchone()[0] + \
            conn.execute("SELECT count(*) FROM source_items").fetchone()[0] + \
            conn.execute("SELECT count(*) FROM site_builds").fetchone()[0] >= 1


async def _tick(ticks: list[float]) -> None:
    while True:
        ticks.append(time.monotonic())
        await asyncio.sleep(0.05)


def test_a_plain_archive_is_waited_for_too(tmp_path: Path) -> None:
    """`caixun fetch` and the tests pass a plain archive: the call is retried in place."""
    db = tmp_path / "caixun.db"
    with open_archive(db) as archive:
        archive.set_busy_timeout(0.2)
        with _locked(db, 1.5):
            asyncio.run(on_archive(archive, _write("transaction")))
        assert archive.source_health("t").name == "t"


def _busy_error(db: Path) -> sqlite3.OperationalError:
    """A real "database is locked": a second connection that does not wait."""
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(db, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        other.close()
        holder.execute("ROLLBACK")
        holder.close()
    raise AssertionError("the second connection got the lock")


def _wrapped(busy: BaseException) -> BaseException:
    try:
        raise ArchiveError("caixun.db: cannot store articles") from busy
    except ArchiveError as exc:
        return exc


def _during(busy: BaseException) -> BaseException:
    try:
        try:
            raise busy
        except sqlite3.OperationalError:
            raise sqlite3.OperationalError("cannot rollback - no transaction is active")
    except sqlite3.OperationalError as exc:
        return exc


def test_busy_is_recognised_however_it_is_wrapped_and_nothing_else_is(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    sqlite3.connect(db).close()
    busy = _busy_error(db)
    assert is_busy(busy) and is_busy(_wrapped(busy)) and is_busy(_during(busy))
    assert is_busy(sqlite3.OperationalError("database table is locked"))
    for other in (sqlite3.IntegrityError("injected"), sqlite3.OperationalError("no such table: x"),
                  sqlite3.OperationalError("disk I/O error"), ValueError("database is locked"),
                  ArchiveError("caixun.db: cannot open the archive")):
        assert not is_busy(other), other


# -- tasks that fail ---------------------------------------------------------------------

_NO_HEALTH = """
CREATE TRIGGER fault_insert BEFORE INSERT ON source_health WHEN NEW.name = 'broken-health'
BEGIN SELECT RAISE(ABORT, 'injected fault'); END;
CREATE TRIGGER fault_update BEFORE UPDATE ON source_health WHEN NEW.name = 'broken-health'
BEGIN SELECT RAISE(ABORT, 'injected fault'); END;
"""


class _Daemon:
    """`run_daemon` in this process, on a thread of its own, its log lines in a list."""

    def __init__(self, options: RunOptions, configs: list[SourceConfig]) -> None:
        self.lines: list[str] = []
        self.stop = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(options, configs), daemon=True)
        self.thread.start()
        assert self.ready.wait(timeout=10)

    def _run(self, options: RunOptions, configs: list[SourceConfig]) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.ready.set()
            await run_daemon(options, configs, self.lines.append, self.stop)

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait(self, what: str, check: Callable[[], bool], seconds: float = 40) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if check():
                return
            if not self.thread.is_alive():
                pytest.fail(f"run_daemon ended ({self.error!r}) before {what}:\n{self.text()}")
            time.sleep(0.1)
        pytest.fail(f"timed out waiting for {what}:\n{self.text()}")

    def finish(self) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def _options(tmp_path: Path, port: int, serve: bool = True) -> RunOptions:
    return RunOptions(archive_path=tmp_path / "caixun.db", out=tmp_path / "site",
                      site=SiteConfig(url=f"http://127.0.0.1:{port}"),
                      fetch=FetchSettings(retries=1, min_gap=0.0, read_timeout=2.0),
                      serve=serve, port=port)


def _fault_configs(server: ns.NewsServer) -> list[SourceConfig]:
    return [
        SourceConfig("em-rolling", "eastmoney-rolling", 1, {
            "list_url": server.url("/web/webapi"),
            "text_url": server.url("/NewsData/GetNewsText.do") + "?id={code}"}),
        SourceConfig("broken-health", "cls", 1, {"list_url": server.url("/v1/roll/get_roll_list")}),
        SourceConfig("broken-parse", "jin10", 1, {"list_url": server.url("/get_flash_list")}),
    ]


def _page_path(out: Path, record: dict[str, Any]) -> Path:
    return out / "emnews" / Path(record["showtime"][:10].replace("-", "/")) / f"{record['id']}.html"


def test_failing_tasks_are_logged_at_once_and_restarted_while_the_others_go_on(
    tmp_path: Path, news: tuple[ns.NewsServer, LiveList],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch
) -> None:
    server, live = news
    server.route("/v1/roll/get_roll_list", ns.cls_roll())
    server.route("/get_flash_list", ns.jin10_flash())

    def broken_parse(self: Flash, request: Any, payload: Any) -> Any:
        raise RuntimeError("injected parse failure")

    monkeypatch.setattr(Flash, "parse_list", broken_parse)
    db = tmp_path / "caixun.db"
    with open_archive(db) as archive:  # a real fault: the source's health cannot be saved
        archive._db.executescript(_NO_HEALTH)
    newcomer = server.held_back[0]  # type: ignore[attr-defined]
    blocker = _page_path(tmp_path / "site", newcomer)
    port = _free_port()
    daemon = _Daemon(_options(tmp_path, port), _fault_configs(server))
    try:
        daemon.wait("the first pages", lambda: _page(port, live.records[0]) is not None)
        # The old daemon's task died here, silently until shutdown.
        daemon.wait("a source task failing twice, logged while running",
                    lambda: daemon.text().count("broken-health: task failed") >= 2)
        failed = next(line for line in daemon.lines if "broken-health: task failed" in line)
        assert "IntegrityError: injected fault" in failed and "restarting in 1 s" in failed
        assert "(at " in failed  # where it was raised
        daemon.wait("the parse failure reported", lambda: "broken-parse: FAILED: internal error "
                    "in the jin10 source: RuntimeError: injected parse failure" in daemon.text())
        # A build that fails: a directory stands where the new article's page must go.
        blocker.mkdir(parents=True)
        live.add(newcomer)
        daemon.wait("a failed build, logged while running",
                    lambda: "build: task failed" in daemon.text())
        polls = daemon.text().count("em-rolling:")
        daemon.wait("the healthy source still polled",
                    lambda: daemon.text().count("em-rolling:") >= polls + 2)
        # Mend both faults: the restarted tasks do their work.
        blocker.rmdir()
        with sqlite3.connect(db) as conn:
            conn.executescript("DROP TRIGGER fault_insert; DROP TRIGGER fault_update;")
        daemon.wait("the new page, built by the restarted build task",
                    lambda: _page(port, newcomer) is not None)
        daemon.wait("the mended source's round", lambda: re.search(
            r"broken-health: \d+ new", daemon.text()) is not None, seconds=70)
    finally:
        daemon.finish()
    assert daemon.error is None, daemon.error
    log = daemon.text()
    assert "Traceback" not in log
    with open_archive(db) as archive:
        assert archive.source_health("broken-health").last_success is not None
    delays = [float(m) for m in re.findall(r"broken-health: task failed.*restarting in (\S+) s",
                                           log)]
    assert delays[:3] == [1.0, 2.0, 4.0][:len(delays[:3])], log  # backing off


def test_a_web_server_that_stops_stops_the_daemon_with_an_error(
    tmp_path: Path, news: tuple[ns.NewsServer, LiveList],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = news
    original = _QuietServer.main_loop

    async def failing_main_loop(self: _QuietServer) -> None:
        serving = asyncio.create_task(original(self))
        await asyncio.sleep(1.0)
        serving.cancel()
        raise RuntimeError("injected server failure")

    monkeypatch.setattr(_QuietServer, "main_loop", failing_main_loop)
    daemon = _Daemon(_options(tmp_path, _free_port()), _fault_configs(server)[:1])
    daemon.thread.join(timeout=20)
    if daemon.thread.is_alive():  # the old daemon went on polling without a server
        daemon.finish()
        pytest.fail(f"run_daemon went on without its web server:\n{daemon.text()}")
    assert isinstance(daemon.error, CaixunError), daemon.error
    assert re.search(r"the web server stopped \(RuntimeError: injected server failure \(at ",
                     str(daemon.error)), daemon.error
    assert daemon.lines[-1].endswith("stopped")


def test_caixun_run_on_a_taken_port_says_so_in_one_line(
    tmp_path: Path, news: tuple[ns.NewsServer, LiveList]  # noqa: F811
) -> None:
    server, _ = news
    with contextlib.closing(socket.create_server(("127.0.0.1", 0))) as taken:
        port = taken.getsockname()[1]
        _config(tmp_path, server, port)
        daemon = Daemon(tmp_path, port)
        code = daemon.proc.wait(timeout=60)
    log = daemon.text()
    # The old daemon: uvicorn's sys.exit(3) on the loop, and a traceback.
    assert code == 1, log
    assert "Traceback" not in log, log
    assert f"cannot listen on 127.0.0.1:{port}" in log, log

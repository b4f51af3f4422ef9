"""``caixun run``: poll every source on its schedule, store, rebuild, serve.

One asyncio loop schedules it all: a task per source polls it on its own
schedule (a failing source backs off on its own and never holds up another)
and stores what arrived; a build task rebuilds the site incrementally whenever
news arrived; the site is served from the same process unless told not to.
After each round of a source, a retag task runs one bounded step of the
archive's re-tag (``fetch.retag_step`` articles at most) when one is pending:
securities' names learned since older articles were stored (a securities
list, a quote link) reach those articles a step at a time, on the archive's
thread, between the sources' own calls, never holding up a fetch for long.

Nothing on the loop waits for the disk. The sources' archive calls run on the
archive's own thread (``ArchiveWorker``) and each build in a worker thread with
a connection of its own, so a write that finds the archive locked by another
process (``caixun import``, a backup) waits there, with backoff, logged once
per wait, while the site is served and the other sources are polled.

Every task is supervised: a task that fails anyway (a bug, a full disk) is
logged at once, with the line it failed on, and restarted after 1 s, then
2, 4 … at most 60 s while it keeps failing. If the web server stops, the daemon
stops with an error (``caixun run`` exits 1): a daemon that polls but no
longer serves would look alive and be useless.

SIGINT and SIGTERM stop the loop between two writes: every write to the
archive is one transaction on the archive's thread, which finishes the one in
progress before the archive is closed, and the site's files are written
atomically. A ``kill -9`` loses at most the round in progress: what was
committed stays (SQLite WAL), and the next start picks up from the recorded
health.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import threading
import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator, Sequence, TypeVar

import uvicorn

from caixun.archive import Archive, open_archive
from caixun.archive.worker import ArchiveWorker, BusyLog, retry_busy
from caixun.errors import CaixunError, ConfigError
from caixun.fetch import Fetcher, FetchSettings, poll_and_record, retag_step
from caixun.memory import release_free_memory
from caixun.watch import Deliverer, Watch, deliver_pending
from caixun.publish.site import BuildReport, SiteConfig, build_site
from caixun.sources.base import Source, SourceConfig, load_source

if TYPE_CHECKING:
    from caixun.importer import FileOutcome, ImportReport

__all__ = ["LEASE_SECONDS", "RESTART_FIRST", "RESTART_MAX", "ROLES", "RunOptions", "run_daemon"]

Log = Callable[[str], None]
T = TypeVar("T")

RESTART_FIRST = 1.0  # seconds before a failed task runs again; doubles while it keeps failing
RESTART_MAX = 60.0
ROLES = ("all", "fetch", "publish")
LEASE_SECONDS = 60.0  # a killed fetcher's source is polled by another at most this late
CHANGES_WAIT = 2.0  # seconds a publisher waits for a change notice before it looks anyway


@dataclass(frozen=True, slots=True)
class RunOptions:
    archive_path: str | Path  # an SQLite file, or a PostgreSQL URL
    out: Path
    site: SiteConfig
    fetch: FetchSettings
    max_backoff: float = 3600.0
    serve: bool = True
    host: str = "127.0.0.1"
    port: int = 8000
    tick: float = 1.0  # longest sleep between checks for due sources
    watches: tuple[Watch, ...] = ()  # the [[watch]] tables
    deliver_every: float = 5.0  # seconds between looks for notifications due for a retry
    role: str = "all"  # "fetch": poll and store; "publish": build, serve, notify; "all": both
    lease: float = LEASE_SECONDS  # a fetcher's hold on the source it polls, renewed meanwhile
    imports: tuple[Path, ...] = ()  # import.paths: Jekyll posts imported again and again
    import_every: float = 60.0  # import.every: seconds between two imports of them


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the daemon owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with nullcontext():
            yield


def _stamp() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def _failure(exc: BaseException) -> str:
    """The traceback's last line and where it was raised: one log line, enough to find it."""
    text = traceback.format_exception_only(exc)[-1].strip()
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        text += f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})"
    return text


def _build(options: RunOptions) -> BuildReport:
    # The build runs in a worker thread with its own connection (sqlite3
    # connections belong to the thread that made them).
    try:
        with open_archive(options.archive_path) as archive:
            return build_site(archive, options.out, options.site)
    finally:
        # What the build (and the stores before it) freed, among blocks that live
        # on: kept by malloc, a run's size grew some 10 MB per 1,000 articles for
        # as long as it ran (benchmarks/soak.py). A few ms, once a build.
        release_free_memory()


class _Stopping(Exception):
    """Raised in an import by its outcome callback: the daemon stops, the import too."""


def _import(options: RunOptions, stopping: threading.Event, said: dict[str, str],
            log: Log) -> ImportReport:
    """Import ``options.imports`` once, in a worker thread with its own connection.

    A file skipped or repaired is logged when it is read, once until what is
    wrong with it changes: a broken file is read again at every import, and
    an unchanged one reports its repairs without being read.
    """
    from caixun.importer import import_posts, warm_up  # only where import.paths are set

    def on_outcome(outcome: FileOutcome) -> None:
        problems = ([f"{outcome.problem} (skipped)"] if outcome.problem is not None
                    else list(outcome.repairs) if outcome.read else [])
        if not problems:
            said.pop(outcome.file, None)  # stored, or not read: said again when it is
        elif said.get(outcome.file) != problems[0]:
            said[outcome.file] = problems[0]
            for problem in problems:
                log(f"{_stamp()} import: {outcome.file}: {problem}")
        if stopping.is_set():  # between two files: what was stored stays
            raise _Stopping
    try:
        warm_up()  # once: each import's early worker then forks warm (0.3 s sooner)
        with open_archive(options.archive_path) as archive:
            return import_posts(options.imports, archive, on_outcome)
    finally:
        release_free_memory()


def _site_dir(out: Path) -> None:
    # Served from the start; the first build fills it.
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the site directory {out}: "
                          f"{exc.strerror or exc}") from exc


async def _serve(options: RunOptions) -> tuple[_QuietServer, asyncio.Task[None]]:
    from caixun.search_api import search_routes
    from caixun.serve import HTTP_PROTOCOL, create_app, listen

    _site_dir(options.out)
    routes = search_routes(options.archive_path, options.site.base_path)
    config = uvicorn.Config(create_app(options.out, routes), host=options.host, port=options.port,
                            log_level="warning", lifespan="off", http=HTTP_PROTOCOL)
    server = _QuietServer(config)
    task = asyncio.create_task(_run_server(server, listen(options.host, options.port)))
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if task.done():
        task.result()  # raises what made it stop
    return server, task


async def _run_server(server: _QuietServer, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:  # uvicorn's way to fail; on the loop it would end the process
        raise CaixunError(f"the web server could not start (uvicorn exit {exc.code})") from None
    finally:
        sock.close()


def _watch_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    _untie_forked_children()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


_UNTIED: list[bool] = []  # the fork hook is registered once per process


def _untie_forked_children() -> None:
    """Processes forked from the daemon (a full build's workers) get the default
    signal handling back.

    asyncio's handlers would stay in them: SIGTERM ignored (``Pool.terminate``
    at the end of the build then waits for ever for a worker that will not
    end) and the loop's wakeup fd shared, so the SIGTERM that ends a worker
    reached the daemon's loop as its own and stopped the daemon at its first
    full build (an archive that already held articles).
    """
    if not _UNTIED and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_default_signals)
        _UNTIED.append(True)


def _default_signals() -> None:
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)
    for sig, handler in ((signal.SIGINT, signal.default_int_handler),
                         (signal.SIGTERM, signal.SIG_DFL)):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, handler)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake at once when a stop is requested."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))


async def _supervise(name: str, body: Callable[[], Awaitable[None]], stop: asyncio.Event,
                     log: Log) -> None:
    """Run ``body`` until a stop; when it fails, say so at once and run it again, backing off."""
    delay = RESTART_FIRST
    while not stop.is_set():
        started = time.monotonic()
        try:
            await body()
            return
        except Exception as exc:  # noqa: BLE001 - a task that fails is restarted, never lost
            if time.monotonic() - started > RESTART_MAX:
                delay = RESTART_FIRST  # it had been working: this is a fresh failure
            log(f"{_stamp()} {name}: task failed: {_failure(exc)}; restarting in {delay:g} s")
            await _pause(stop, delay)
            delay = min(RESTART_MAX, delay * 2)


async def _source_loop(source: Source, fetcher: Fetcher, archive: ArchiveWorker,
                       options: RunOptions, stop: asyncio.Event, dirty: asyncio.Event,
                       log: Log, retag: asyncio.Event | None = None,
                       deliver: asyncio.Event | None = None) -> None:
    """Poll one source on its own schedule: a slow or failing source holds up no other.

    After each round ``retag`` is set: the retag task then runs one step.
    """
    holder = _holder()
    while not stop.is_set():
        health = await archive.run(Archive.source_health, source.name)
        wait = health.next_poll - time.time()
        if wait > 0:
            await _pause(stop, min(wait, options.tick))
            continue
        if not await archive.run(Archive.claim_source, source.name, holder, options.lease):
            await _pause(stop, options.tick)  # another fetcher polls it now
            continue
        try:
            # Due still? Another fetcher may have polled it between our two looks.
            if (await archive.run(Archive.source_health, source.name)).next_poll > time.time():
                continue
            report = await _holding(source.name, holder, archive, options, log,
                                    poll_and_record(source, fetcher, archive,
                                                    options.max_backoff))
        finally:
            await archive.run(Archive.release_source, source.name, holder)
        log(f"{_stamp()} {report.summary()}")
        if report.changed:
            dirty.set()
            if deliver is not None:
                deliver.set()
        if retag is not None:
            retag.set()


def _holder() -> str:
    """Who holds a lease: this machine and process, and a task of it."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def release_dead_leases(archive: Archive) -> list[str]:
    """Give up the leases that processes of this machine no longer running still hold;
    the sources they were on.

    A fetcher killed in the middle of a poll (kill -9, a crash) keeps its source
    leased for up to ``fetch.lease`` seconds: restarted at once, caixun run
    would not poll that source until then. A lease of another machine, or of a
    process that is running (or whose number another process now has), waits
    for its end as before.
    """
    here = socket.gethostname()
    released = []
    for name, holder in archive.source_leases().items():
        host, pid, *_ = holder.rsplit(":", 2) + ["", ""]  # see _holder
        if host == here and pid.isdigit() and not _running(int(pid)):
            archive.release_source(name, holder)
            released.append(name)
    return released


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process: it runs
        return True
    return True


async def _holding(name: str, holder: str, archive: ArchiveWorker, options: RunOptions,
                   log: Log, work: Awaitable[T]) -> T:
    """``work``, renewing the lease on source ``name`` every third of its length meanwhile."""
    async def renew() -> None:
        while True:
            await asyncio.sleep(options.lease / 3)
            if not await archive.run(Archive.claim_source, name, holder, options.lease):
                log(f"{_stamp()} {name}: lost the lease (this fetcher was too slow to "
                    "renew it); another fetcher may poll it too")

    renewal = asyncio.create_task(renew())
    try:
        return await work
    finally:
        renewal.cancel()
        await asyncio.gather(renewal, return_exceptions=True)


async def _follow_changes(options: RunOptions, stop: asyncio.Event,
                          dirty: asyncio.Event) -> None:
    """A publisher: set ``dirty`` when fetchers (other processes) stored news.

    PostgreSQL says so at once (LISTEN/NOTIFY); SQLite is looked at every
    CHANGES_WAIT seconds. Either way the change log decides: a notice
    without new changes builds nothing.
    """
    loop = asyncio.get_running_loop()
    done = threading.Event()

    def follow() -> None:
        with open_archive(options.archive_path) as archive:
            seen = archive.last_change_seq()
            while not done.is_set():
                archive.wait_for_changes(CHANGES_WAIT)
                last = archive.last_change_seq()
                if last != seen:
                    seen = last
                    loop.call_soon_threadsafe(dirty.set)

    watcher = asyncio.create_task(asyncio.to_thread(follow))
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({watcher, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        done.set()  # the thread ends within CHANGES_WAIT
        stopper.cancel()
        await asyncio.gather(stopper, return_exceptions=True)
    await watcher  # what stopped it, if not a stop: the supervisor starts it again


async def _retag_loop(archive: ArchiveWorker, options: RunOptions, stop: asyncio.Event,
                      wanted: asyncio.Event, dirty: asyncio.Event, log: Log) -> None:
    """One bounded re-tag step after each round (rounds that end during a step
    ask for one more step, not one each); the site is rebuilt after a step that
    read articles (their stock pages may have changed)."""
    while not stop.is_set():
        await _until_set(wanted, stop)
        if stop.is_set():
            return
        wanted.clear()
        read = await retag_step(archive, options.fetch.retag_step)
        if read:
            log(f"{_stamp()} retag: {read} older article(s) checked against the securities' "
                "names learned since they were stored")
            dirty.set()


async def _deliver_loop(archive: ArchiveWorker, options: RunOptions, stop: asyncio.Event,
                        wanted: asyncio.Event, log: Log) -> None:
    """Send the watches' notifications: after each round that stored news, and every
    ``deliver_every`` seconds for those waiting to be retried. A task of its own:
    a dead or slow receiver never holds up a poll."""
    deliverer = Deliverer({w.name: w for w in options.watches},
                          log=lambda line: log(f"{_stamp()} watch: {line}"))
    while not stop.is_set():
        report = await deliver_pending(archive, deliverer, limit=200)
        if report.delivered or report.failed:
            log(f"{_stamp()} {report.summary()}")
        if report.delivered + report.retrying + report.failed >= 200:
            continue  # more are due
        try:
            await asyncio.wait_for(_until_set(wanted, stop), options.deliver_every)
        except asyncio.TimeoutError:
            pass
        wanted.clear()


async def _build_loop(options: RunOptions, stop: asyncio.Event, dirty: asyncio.Event,
                      log: Log) -> None:
    """Rebuild the site after news arrived; changes that arrive meanwhile wait for the next."""
    waits = BusyLog(lambda line: log(f"{_stamp()} {line}"), "build")
    while not stop.is_set():
        await _until_set(dirty, stop)
        if stop.is_set():
            return
        dirty.clear()
        try:
            report = await retry_busy(lambda: asyncio.to_thread(_build, options), waits)
        except BaseException:
            dirty.set()  # not built yet: the restarted task builds it
            raise
        log(f"{_stamp()} build: {report.summary()}")


async def _import_loop(options: RunOptions, stop: asyncio.Event, dirty: asyncio.Event,
                       log: Log, deliver: asyncio.Event | None = None) -> None:
    """Import ``import.paths`` again every ``import.every`` seconds (only new and changed
    files are read); the site is rebuilt after an import that stored news."""
    stopping = threading.Event()
    said: dict[str, str] = {}
    waits = BusyLog(lambda line: log(f"{_stamp()} {line}"), "import")
    try:
        while not stop.is_set():
            report = await retry_busy(
                lambda: asyncio.to_thread(_import, options, stopping, said, log), waits)
            if report.counts["new"] or report.counts["updated"]:
                log(f"{_stamp()} import: {report.summary()}")
                dirty.set()
                if deliver is not None:
                    deliver.set()
            await _pause(stop, options.import_every)
    finally:
        stopping.set()  # a stop while it runs: the import ends at its next file


async def _until_set(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when cancelled: no waiter is left pending
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def _until_stopped(stop: asyncio.Event, server: asyncio.Task[None] | None) -> None:
    """Wait for a stop request; if the web server stops first, raise ``CaixunError``."""
    stopper = asyncio.create_task(stop.wait())
    watched: set[asyncio.Task[Any]] = {stopper} | ({server} if server else set())
    try:
        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        await asyncio.gather(stopper, return_exceptions=True)
    if server is not None and server.done() and not stop.is_set():
        problem = server.exception() if not server.cancelled() else None
        why = _failure(problem) if problem else "it exited"
        raise CaixunError(f"the web server stopped ({why}); caixun run stops too")


def _start(name: str, body: Callable[[], Awaitable[None]], stop: asyncio.Event,
           log: Log) -> asyncio.Task[None]:
    return asyncio.create_task(_supervise(name, body, stop, log), name=name)


async def run_daemon(options: RunOptions, configs: Sequence[SourceConfig], log: Log,
                     stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set or SIGINT/SIGTERM arrives.

    Raises ``CaixunError`` when the site cannot be served or its server stops.
    """
    if options.role not in ROLES:
        raise ConfigError(f"unknown role {options.role!r} (one of: {', '.join(ROLES)})")
    fetches, publishes = options.role in ("all", "fetch"), options.role in ("all", "publish")
    sources = [load_source(config) for config in configs] if fetches else []
    stop = stop or asyncio.Event()
    _watch_signals(stop)
    archive = await ArchiveWorker.open(
        options.archive_path, BusyLog(lambda line: log(f"{_stamp()} {line}"), "sources"))
    fetcher = Fetcher(options.fetch)
    if options.role == "fetch" and options.fetch.min_gap > 0:
        # Several fetchers: the gap between two requests to a host holds across all of them.
        fetcher.gate.shared = lambda host, gap: archive.run(Archive.reserve_host, host, gap)
    server: tuple[_QuietServer, asyncio.Task[None]] | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        dirty = asyncio.Event()
        if publishes:
            dirty.set()  # the first build: the site as the archive holds it
            tasks.append(_start("build", lambda: _build_loop(options, stop, dirty, log),
                                stop, log))
        if publishes and options.serve:
            server = await _serve(options)
            log(f"{_stamp()} serving {options.out} at http://{options.host}:{options.port}/")
        if options.role == "publish":
            tasks.append(_start("changes", lambda: _follow_changes(options, stop, dirty),
                                stop, log))
        retag = asyncio.Event()
        if fetches:
            tasks.append(_start("retag", lambda: _retag_loop(archive, options, stop, retag,
                                                             dirty, log), stop, log))
        await archive.run(Archive.use_watches, options.watches)
        deliver: asyncio.Event | None = None
        if publishes and any(w.notifies for w in options.watches):
            wanted = deliver = asyncio.Event()
            tasks.append(_start("notify", lambda: _deliver_loop(archive, options, stop, wanted,
                                                                log), stop, log))
        if fetches:
            for name in await archive.run(release_dead_leases):
                log(f"{_stamp()} {name}: released the lease of a fetcher no longer running")
            imports = (f"; importing {', '.join(map(str, options.imports))} every "
                       f"{options.import_every:g} s" if options.imports else "")
            log(f"{_stamp()} polling {len(sources)} source(s){imports}; Ctrl-C stops")
        else:
            log(f"{_stamp()} publishing what the fetchers store; Ctrl-C stops")
        tasks += [_start(s.name, _poller(s, fetcher, archive, options, stop, dirty, log, retag,
                                         deliver), stop, log) for s in sources]
        if fetches and options.imports:
            tasks.append(_start("import", lambda: _import_loop(options, stop, dirty, log,
                                                               deliver), stop, log))
        await _until_stopped(stop, server[1] if server else None)
    finally:
        await _shut_down(tasks, server)
        await fetcher.aclose()
        await archive.aclose()
        log(f"{_stamp()} stopped")


def _poller(source: Source, fetcher: Fetcher, archive: ArchiveWorker, options: RunOptions,
            stop: asyncio.Event, dirty: asyncio.Event, log: Log,
            retag: asyncio.Event | None = None,
            deliver: asyncio.Event | None = None) -> Callable[[], Awaitable[None]]:
    return lambda: _source_loop(source, fetcher, archive, options, stop, dirty, log, retag,
                                deliver)


async def _shut_down(tasks: list[asyncio.Task[None]],
                     server: tuple[_QuietServer, asyncio.Task[None]] | None) -> None:
    # A task stops at its next await: a write in progress finishes on its thread.
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if server is not None:
        server[0].should_exit = True
        with contextlib.suppress(Exception):  # its failure was reported already
            await server[1]

"""``caixun run``: poll every source on its schedule, store, rebuild, serve.

One asyncio loop does it all: a task per source polls it on its own schedule
(a failing source backs off on its own and never holds up another) and stores
what arrived; a build task rebuilds the site incrementally whenever news
arrived; the site is served from the same process unless told not to.

SIGINT and SIGTERM stop the loop between two writes: every write to the
archive is one synchronous transaction, so cancelling the round at an
``await`` never cuts one in half, and the site's files are written atomically.
A ``kill -9`` loses at most the round in progress: what was committed stays
(SQLite WAL), and the next start picks up from the recorded health.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import uvicorn

from caixun.archive import SqliteArchive, open_archive
from caixun.fetch import Fetcher, FetchSettings, poll_and_record
from caixun.publish.site import BuildReport, SiteConfig, build_site
from caixun.sources.base import Source, SourceConfig, load_source

__all__ = ["RunOptions", "run_daemon"]

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class RunOptions:
    archive_path: Path
    out: Path
    site: SiteConfig
    fetch: FetchSettings
    max_backoff: float = 3600.0
    serve: bool = True
    host: str = "127.0.0.1"
    port: int = 8000
    tick: float = 1.0  # longest sleep between checks for due sources


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the daemon owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with nullcontext():
            yield


def _stamp() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def _build(options: RunOptions) -> BuildReport:
    # The build runs in a worker thread with its own connection (sqlite3
    # connections belong to the thread that made them).
    with open_archive(options.archive_path) as archive:
        return build_site(archive, options.out, options.site)


async def _serve(options: RunOptions) -> tuple[_QuietServer, asyncio.Task[None]]:
    from caixun.search_api import search_routes
    from caixun.serve import create_app

    routes = search_routes(options.archive_path, options.site.base_path)
    config = uvicorn.Config(create_app(options.out, routes), host=options.host, port=options.port,
                            log_level="warning", lifespan="off")
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if task.done():
        task.result()  # raises what made it stop (e.g. the port is taken)
    return server, task


def _watch_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake at once when a stop is requested."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))


async def _source_loop(source: Source, fetcher: Fetcher, archive: SqliteArchive,
                       options: RunOptions, stop: asyncio.Event, dirty: asyncio.Event,
                       log: Log) -> None:
    """Poll one source on its own schedule: a slow or failing source holds up no other."""
    while not stop.is_set():
        wait = archive.source_health(source.name).next_poll - time.time()
        if wait > 0:
            await _pause(stop, min(wait, options.tick))
            continue
        report = await poll_and_record(source, fetcher, archive, options.max_backoff)
        log(f"{_stamp()} {report.summary()}")
        if report.changed:
            dirty.set()


async def _build_loop(options: RunOptions, stop: asyncio.Event, dirty: asyncio.Event,
                      log: Log) -> None:
    """Rebuild the site after news arrived; changes that arrive meanwhile wait for the next."""
    while not stop.is_set():
        waiter = asyncio.create_task(dirty.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()
        if stop.is_set():
            return
        dirty.clear()
        report = await asyncio.to_thread(_build, options)
        log(f"{_stamp()} build: {report.summary()}")


async def run_daemon(options: RunOptions, configs: Sequence[SourceConfig], log: Log,
                     stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set or SIGINT/SIGTERM arrives."""
    sources = [load_source(config) for config in configs]
    stop = stop or asyncio.Event()
    _watch_signals(stop)
    archive = open_archive(options.archive_path)
    fetcher = Fetcher(options.fetch)
    server: tuple[_QuietServer, asyncio.Task[Any]] | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        report = await asyncio.to_thread(_build, options)
        log(f"{_stamp()} build: {report.summary()}")
        if options.serve:
            server = await _serve(options)
            log(f"{_stamp()} serving {options.out} at http://{options.host}:{options.port}/")
        log(f"{_stamp()} polling {len(sources)} source(s); Ctrl-C stops")
        dirty = asyncio.Event()
        tasks = [asyncio.create_task(_source_loop(s, fetcher, archive, options, stop, dirty, log))
                 for s in sources]
        tasks.append(asyncio.create_task(_build_loop(options, stop, dirty, log)))
        await stop.wait()
    finally:
        for task in tasks[:-1]:  # polls stop at their next await: no write is cut in half
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception):
                log(f"{_stamp()} error: {type(result).__name__}: {result}")
        if server is not None:
            server[0].should_exit = True
            await server[1]
        await fetcher.aclose()
        archive.close()
        log(f"{_stamp()} stopped")

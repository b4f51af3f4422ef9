"""``caixun run``: poll every source on its schedule, store, rebuild, serve.

One asyncio loop does it all. Each round polls the due sources concurrently
(a failing source backs off on its own schedule and never holds up another),
stores what arrived, and rebuilds the site incrementally when anything
changed; the site is served from the same process unless told not to.

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
from caixun.fetch import Fetcher, FetchSettings, SourceReport, fetch_round
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
    from caixun.serve import create_app

    config = uvicorn.Config(create_app(options.out), host=options.host, port=options.port,
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


async def _until_next_due(archive: SqliteArchive, sources: Sequence[Source],
                          stop: asyncio.Event, tick: float) -> None:
    due = min((archive.source_health(s.name).next_poll for s in sources), default=time.time())
    wait = max(0.0, min(tick, due - time.time()))
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=wait)


async def _round(sources: Sequence[Source], fetcher: Fetcher, archive: SqliteArchive,
                 options: RunOptions, stop: asyncio.Event) -> list[SourceReport] | None:
    """One round, or None if a stop request cut it short."""
    work = asyncio.create_task(fetch_round(sources, fetcher, archive,
                                           max_backoff=options.max_backoff))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not work.done():
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        return None
    return work.result()


async def run_daemon(options: RunOptions, configs: Sequence[SourceConfig], log: Log,
                     stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set or SIGINT/SIGTERM arrives."""
    sources = [load_source(config) for config in configs]
    stop = stop or asyncio.Event()
    _watch_signals(stop)
    archive = open_archive(options.archive_path)
    fetcher = Fetcher(options.fetch)
    server: tuple[_QuietServer, asyncio.Task[Any]] | None = None
    try:
        report = await asyncio.to_thread(_build, options)
        log(f"{_stamp()} build: {report.summary()}")
        if options.serve:
            server = await _serve(options)
            log(f"{_stamp()} serving {options.out} at http://{options.host}:{options.port}/")
        log(f"{_stamp()} polling {len(sources)} source(s); Ctrl-C stops")
        while not stop.is_set():
            reports = await _round(sources, fetcher, archive, options, stop)
            if reports is None:
                break
            for source_report in reports:
                log(f"{_stamp()} {source_report.summary()}")
            if any(r.changed for r in reports):
                report = await asyncio.to_thread(_build, options)
                log(f"{_stamp()} build: {report.summary()}")
            await _until_next_due(archive, sources, stop, options.tick)
    finally:
        if server is not None:
            server[0].should_exit = True
            await server[1]
        await fetcher.aclose()
        archive.close()
        log(f"{_stamp()} stopped")

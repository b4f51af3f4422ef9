"""Benchmark: fetch → normalize → store → incremental build against the local news server.

Run it by hand from the repository root::

    python benchmarks/fetch.py                                  # everything, defaults
    python benchmarks/fetch.py --sizes 1000 --per-host 8 --server process --no-latency
    python benchmarks/fetch.py --no-throughput --latency-k 10   # only the daemon's latency
    python benchmarks/fetch.py --profile --sizes 5000           # cProfile one round + build

The server is ``tests/newsserver.py`` (a real HTTP/1.1 server on 127.0.0.1, no
artificial delay), serving the payload shapes of the East Money rolling list
(``webapi?type=102``) and ``GetNewsText.do``. The corpus has 114 rolling posts
(``../shared/corpus/finews-posts``, or ``$CAIXUN_SHARED``), so N records are made
by cycling them: record ``i`` copies post ``i % 114`` with a fresh 18-digit id
(``YYYYMMDD`` + ``9`` + ``i`` in 9 digits: never a corpus id, whose 9th digit is
an hour's tens), the title suffixed with `` ·i``, the ``showtime`` moved on by
one second per cycle, and that post's full text under the new ``infoCode``.

1. Throughput. For each N (``--sizes``, default 1000 5000), each ``per_host``
   (``--per-host``, default 8 2) and each server placement (``--server``,
   default both): a fresh archive and site in a temporary directory under
   /tmp; ``build_site`` on the empty archive (so the next build is
   incremental); one ``fetch_round`` of an ``eastmoney-rolling`` source whose
   list holds all N records, with ``FetchSettings(min_gap=0, per_host=…,
   retries=0)`` (1 list request + N full-text requests); then ``build_site``
   again (incremental). Printed per row: wall seconds of the round and of the
   build, items/s of the round alone and of round + build, the build's files
   written, and CPU ms per article.

   CPU is ``time.process_time()`` of this process over round + build, / N.
   With ``--server thread`` the server runs in threads of this process, so
   that figure includes it; the server's own share is measured per thread
   (``CLOCK_THREAD_CPUTIME_ID`` of the ``serve_forever`` thread and of every
   connection thread: the benchmark wraps ``process_request_thread`` of the
   server object in memory) and subtracted to give caixun's share. With
   ``--server process`` the same server runs in a child process (multiprocessing
   spawn): this process's CPU is caixun's alone, the child's CPU delta is the
   server's, and the two do not share a GIL. The build is in this process
   too (an incremental build is single-process).

2. Latency. The real ``caixun run --no-serve`` (as ``python -m caixun.cli run
   --no-serve``, this interpreter) runs as a subprocess in a temporary
   directory whose ``caixun.toml`` points one ``eastmoney-rolling`` source at
   the server (here in threads of this process) with ``every = 5``
   (``--every``) and ``[fetch] min_gap = 0.0``. The list serves the newest
   ``--window`` (100, the real API's ``count``) records, starting with the
   corpus's. Once the first round's pages are all in ``site/``, K times
   (``--latency-k``, default 5): sleep a random 0..every seconds (seeded, so the
   item lands at a random phase of the poll cycle), put a new record dated
   now at the head of the list at t0, then look for
   ``site/emnews/YYYY/MM/DD/<id>.html`` every 10 ms until it exists at t1.
   Printed: min / median / max of t1 - t0 (expect up to every + round +
   build), and of t1 minus the arrival of the daemon's first list request
   after t0 (the server records arrivals on this process's monotonic clock):
   what the daemon itself takes from polling to the page. Then the daemon's
   exit code after SIGTERM, its CPU seconds over its life
   (``RUSAGE_CHILDREN``) and the build times it logged.

``--profile`` runs the first size once (server in a child process,
``per_host`` 8) with cProfile around the round and the build and prints the
top entries by cumulative time. Only the standard library, caixun and
``tests/newsserver.py`` are used. Nothing is asserted: counts that differ from
the expected ones are printed as notes. On a 2-core VM repeated runs varied
noticeably; treat single figures as ±15 %. Against a loopback server the round
is CPU-bound in this one process (httpx/httpcore took about 80 % of it under
cProfile), so more requests in flight only add connection-pool bookkeeping:
``per_host`` 8 was slower than 2.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import os
import platform
import pstats
import random
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import newsserver as ns  # type: ignore[import-not-found, unused-ignore]  # noqa: E402

import caixun  # noqa: E402
from caixun.archive import open_archive  # noqa: E402
from caixun.fetch import Fetcher, FetchSettings, fetch_round  # noqa: E402
from caixun.publish.site import SiteConfig, build_site  # noqa: E402
from caixun.sources.base import SourceConfig, load_source  # noqa: E402

BEIJING = timezone(timedelta(hours=8))
SHOWTIME = "%Y-%m-%d %H:%M:%S"
LIST_PATH = "/web/webapi"
TEXT_PATH = "/NewsData/GetNewsText.do"


# -- records ----------------------------------------------------------------------

def corpus() -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """The corpus's rolling records (newest first) and their full texts by infoCode."""
    return ns.rolling_records()["records"], ns.news_texts(include_media=False)


def synthesize(n: int) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """N rolling records cycled from the corpus, fresh ids, and their full texts."""
    base, base_texts = corpus()
    records, texts = [], {}
    for i in range(n):
        src, cycle = base[i % len(base)], i // len(base)
        new_id = f"{src['id'][:8]}9{i:09d}"
        shown = datetime.strptime(src["showtime"], SHOWTIME) + timedelta(seconds=cycle)
        title = f"{src['title']} ·{i}"
        sentence = src["digest"].rsplit("】", 1)[-1]
        records.append({
            "id": new_id, "infoCode": "NW" + new_id, "title": title,
            "digest": f"【{title}】{sentence}", "url_w": src["url_w"].replace(src["id"], new_id),
            "showtime": shown.strftime(SHOWTIME)})
        texts["NW" + new_id] = base_texts[src["infoCode"]]
    return records, texts


def page_of(site: Path, record: dict[str, Any]) -> Path:
    """Where the build writes the record's article page."""
    day = str(record["showtime"])[:10].replace("-", "/")
    return site / "emnews" / day / f"{record['id']}.html"


def source_for(base_url: str, every: float = 60) -> SourceConfig:
    return SourceConfig("em-rolling", "eastmoney-rolling", every, {
        "list_url": base_url + LIST_PATH, "text_url": base_url + TEXT_PATH + "?id={code}"})


# -- the server, in threads of this process or in a child process ---------------------

def _thread_cpu(thread: threading.Thread | None) -> float:
    """CPU seconds a live thread has used (Linux: its CLOCK_THREAD_CPUTIME_ID)."""
    if thread is None or thread.ident is None:
        return 0.0
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


class ThreadServer:
    """NewsServer in threads of this process, with the CPU its threads use."""

    placement = "thread"

    def __init__(self, records: list[dict[str, Any]], texts: dict[str, Any]) -> None:
        self.server = ns.NewsServer().start()
        self.server.route(LIST_PATH, {"records": records})
        self.server.route(TEXT_PATH, ns.by_query("id", texts))
        self.base_url = self.server.base_url
        self.lock = threading.Lock()
        self.finished_cpu = 0.0  # connection threads that have ended
        self.live: set[threading.Thread] = set()
        self.measurable = hasattr(time, "pthread_getcpuclockid")
        httpd = self.server._httpd  # noqa: SLF001 - accounting only, in memory
        handle = getattr(httpd, "process_request_thread")

        def counted(request: Any, client_address: Any) -> None:
            me = threading.current_thread()
            with self.lock:
                self.live.add(me)
            try:
                handle(request, client_address)
            finally:
                with self.lock:
                    self.finished_cpu += time.thread_time()
                    self.live.discard(me)

        setattr(httpd, "process_request_thread", counted)  # looked up per connection

    def cpu(self) -> float | None:
        """CPU seconds used so far by the server's threads (None: not measurable here)."""
        if not self.measurable:
            return None
        with self.lock:
            total = self.finished_cpu + sum(_thread_cpu(t) for t in self.live)
        return total + _thread_cpu(self.server._thread)  # noqa: SLF001 - serve_forever

    def requests(self) -> int:
        return len(self.server.requests)

    def stop(self) -> None:
        self.server.stop()


def _serve_child(conn: Any, n: int) -> None:
    """The child process of ProcessServer: serve N records until told to stop."""
    records, texts = synthesize(n)
    server = ns.NewsServer().start()
    server.route(LIST_PATH, {"records": records})
    server.route(TEXT_PATH, ns.by_query("id", texts))
    conn.send(server.base_url)
    while True:
        message = conn.recv()
        if message == "cpu":
            conn.send(time.process_time())
        elif message == "requests":
            conn.send(len(server.requests))
        else:
            server.stop()
            conn.send(len(server.errors))
            return


class ProcessServer:
    """The same NewsServer in a child process: its CPU and GIL are not ours."""

    placement = "process"

    def __init__(self, n: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child_end = context.Pipe()
        self.process = context.Process(target=_serve_child, args=(child_end, n), daemon=True)
        self.process.start()
        self.base_url = self.conn.recv()

    def _ask(self, message: str) -> Any:
        self.conn.send(message)
        return self.conn.recv()

    def cpu(self) -> float | None:
        return float(self._ask("cpu"))

    def requests(self) -> int:
        return int(self._ask("requests"))

    def stop(self) -> None:
        self._ask("stop")
        self.process.join(10)


# -- 1. throughput ------------------------------------------------------------------

@dataclass
class Row:
    placement: str
    per_host: int
    n: int
    new: int = 0
    errors: int = 0
    failure: str | None = None
    round_s: float = 0.0
    build_s: float = 0.0
    build_mode: str = ""
    files: int = 0
    cpu_s: float = 0.0
    server_cpu_s: float | None = None
    requests: int = 0
    pages: int = 0
    notes: list[str] = field(default_factory=list)


async def _measured(row: Row, server: ThreadServer | ProcessServer, archive: Any, site: Path,
                    config: SiteConfig, profiler: cProfile.Profile | None) -> tuple[Any, Any]:
    """One round and one build, timed; the fetcher is closed after the measurements."""
    source = load_source(source_for(server.base_url))
    fetcher = Fetcher(FetchSettings(min_gap=0.0, per_host=row.per_host, retries=0))
    try:
        requests_before = server.requests()
        server_before = server.cpu()
        cpu_before = time.process_time()
        if profiler is not None:
            profiler.enable()
        try:
            started = time.perf_counter()
            reports = await fetch_round([source], fetcher, archive, due_only=False)
            row.round_s = time.perf_counter() - started
            started = time.perf_counter()
            report = build_site(archive, site, config)
            row.build_s = time.perf_counter() - started
        finally:
            if profiler is not None:
                profiler.disable()
        row.cpu_s = time.process_time() - cpu_before
        server_after = server.cpu()
        if server_before is not None and server_after is not None:
            row.server_cpu_s = server_after - server_before
        row.requests = server.requests() - requests_before
    finally:
        await fetcher.aclose()
    return reports[0], report


def run_throughput(n: int, per_host: int, placement: str, root: Path,
                   profiler: cProfile.Profile | None = None, keep: bool = False) -> Row:
    records, texts = synthesize(n)
    server: ThreadServer | ProcessServer = (
        ThreadServer(records, texts) if placement == "thread" else ProcessServer(n))
    work = Path(tempfile.mkdtemp(prefix=f"tp-{placement}-{per_host}-{n}-", dir=root))
    row = Row(placement, per_host, n)
    try:
        site, config = work / "site", SiteConfig()
        with open_archive(work / "archive.db") as archive:
            build_site(archive, site, config)  # empty archive: the next build is incremental
            source_report, report = asyncio.run(
                _measured(row, server, archive, site, config, profiler))
        row.new, row.errors, row.failure = (source_report.new, len(source_report.item_errors),
                                            source_report.error)
        row.build_mode, row.files = report.mode, report.written
        row.pages = sum(1 for r in records if page_of(site, r).exists())
        if source_report.item_errors:
            row.notes.append(f"first item error: {source_report.item_errors[0]}")
    finally:
        server.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return row


TP_HEAD = ("{:>7} {:>8} {:>5} {:>5} {:>7} {:>7} {:>7} {:>7} {:>11} {:>8} {:>9} {:>9} {:>9}")


def print_throughput_header() -> None:
    print(TP_HEAD.format("server", "per_host", "N", "new", "round s", "item/s", "build s",
                         "files", "round+build", "CPU ms", "server ms", "caixun ms",
                         "requests"))
    print(TP_HEAD.format("", "", "", "", "", "(round)", "", "", "item/s", "/article",
                         "/article", "/article", ""), flush=True)


def print_throughput_row(r: Row) -> None:
    per = 1000.0 / r.n
    server_ms = f"{r.server_cpu_s * per:.2f}" if r.server_cpu_s is not None else "n/a"
    if r.placement == "process":
        caixun_ms = f"{r.cpu_s * per:.2f}"
    else:
        caixun_ms = (f"{(r.cpu_s - r.server_cpu_s) * per:.2f}" if r.server_cpu_s is not None
                     else "n/a")
    print(TP_HEAD.format(r.placement, r.per_host, r.n, r.new, f"{r.round_s:.2f}",
                         f"{r.n / r.round_s:,.0f}", f"{r.build_s:.2f}", r.files,
                         f"{r.n / (r.round_s + r.build_s):,.0f}", f"{r.cpu_s * per:.2f}",
                         server_ms, caixun_ms, r.requests), flush=True)


def row_problems(r: Row) -> list[str]:
    problems = list(r.notes)
    if r.failure:
        problems.append(f"the source failed: {r.failure}")
    if r.new != r.n or r.errors:
        problems.append(f"{r.new} new of {r.n}, {r.errors} item errors")
    if r.build_mode != "incremental":
        problems.append(f"the post-round build was {r.build_mode!r}, not incremental")
    if r.pages != r.n:
        problems.append(f"{r.pages} of {r.n} article pages on disk")
    if r.requests != r.n + 1:
        problems.append(f"{r.requests} requests (expected {r.n + 1})")
    return problems


def run_profile(args: argparse.Namespace, root: Path) -> None:
    n = args.sizes[0]
    profiler = cProfile.Profile()
    row = run_throughput(n, 8, "process", root, profiler)
    print(f"\n== cProfile of one round + incremental build, N={n}, per_host 8, server in a "
          f"child process: round {row.round_s:.2f} s ({n / row.round_s:,.0f} items/s), "
          f"build {row.build_s:.2f} s, {row.new} new, {row.files} files "
          f"(times inflated by the profiler)")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(
        args.profile_top)


# -- 2. latency under `caixun run` ---------------------------------------------------------

class LiveList:
    """The rolling list the server hands out (newest ``window``); items are added while
    caixun runs."""

    def __init__(self, records: list[dict[str, Any]], window: int) -> None:
        self.records = list(records)
        self.window = window
        self.lock = threading.Lock()

    def __call__(self, seen: ns.Seen) -> dict[str, Any]:
        with self.lock:
            return {"records": self.records[:self.window]}

    def visible(self) -> list[dict[str, Any]]:
        with self.lock:
            return self.records[:self.window]

    def add(self, record: dict[str, Any]) -> None:
        with self.lock:
            self.records.insert(0, record)


CONFIG = """\
[fetch]
min_gap = 0.0

[[sources]]
name = "em-rolling"
kind = "eastmoney-rolling"
every = {every}
list_url = "{list_url}"
text_url = "{text_url}?id={{code}}"
"""


@dataclass
class Latency:
    seconds: list[float] = field(default_factory=list)
    poll_to_page: list[float] = field(default_factory=list)  # first list request after t0 → page
    first_round_s: float = 0.0
    exit_code: int | None = None
    daemon_wall_s: float = 0.0
    daemon_cpu_s: float = 0.0
    builds: list[float] = field(default_factory=list)  # incremental builds the daemon logged
    rounds: int = 0
    notes: list[str] = field(default_factory=list)


def _wait_for(check: Any, proc: subprocess.Popen[bytes], timeout: float,
              interval: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(interval)
    return False


def run_latency(args: argparse.Namespace, root: Path) -> Latency:
    work = root / "latency"
    work.mkdir()
    base, texts = corpus()
    live = LiveList(base, args.window)
    out = Latency()
    server = ns.NewsServer().start()
    server.route(LIST_PATH, live)
    server.route(TEXT_PATH, ns.by_query("id", texts))  # the dict is read per request
    (work / "caixun.toml").write_text(CONFIG.format(
        every=args.every, list_url=server.url(LIST_PATH), text_url=server.url(TEXT_PATH)),
        encoding="utf-8")
    log_path = work / "run.log"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen([sys.executable, "-m", "caixun.cli", "run", "--no-serve"],
                                cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        site = work / "site"
        first = live.visible()
        if not _wait_for(lambda: all(page_of(site, r).exists() for r in first), proc,
                         args.timeout, 0.05):
            out.notes.append("the first round's pages never all appeared")
            return out
        out.first_round_s = time.monotonic() - started
        rng = random.Random(args.seed)
        for k in range(args.latency_k):
            time.sleep(rng.uniform(0.0, args.every))
            src = base[k % len(base)]
            now = datetime.now(BEIJING)
            new_id = f"{now:%Y%m%d}9{k:09d}"
            title = f"{src['title']} ·新{k}"
            record = {"id": new_id, "infoCode": "NW" + new_id, "title": title,
                      "digest": f"【{title}】" + src["digest"].rsplit("】", 1)[-1],
                      "url_w": src["url_w"].replace(src["id"], new_id),
                      "showtime": now.strftime(SHOWTIME)}
            texts[record["infoCode"]] = texts[src["infoCode"]]
            page = page_of(site, record)
            t0 = time.monotonic()
            live.add(record)
            if not _wait_for(page.exists, proc, args.timeout, 0.01):
                out.notes.append(f"item {k}: no page {page.relative_to(work)} after "
                                 f"{args.timeout:g} s")
                break
            t1 = time.monotonic()
            out.seconds.append(t1 - t0)
            polled = [seen.at for seen in server.seen(LIST_PATH) if seen.at >= t0]
            if polled:
                out.poll_to_page.append(t1 - polled[0])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out.exit_code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            out.notes.append("the daemon did not stop within 30 s of SIGTERM (killed)")
        out.daemon_wall_s = time.monotonic() - started
        usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out.daemon_cpu_s = ((usage_after.ru_utime - usage_before.ru_utime)
                            + (usage_after.ru_stime - usage_before.ru_stime))
        server.stop()
        text = log_path.read_text(encoding="utf-8")
        out.rounds = len(re.findall(r" em-rolling: ", text))
        out.builds = [float(s) for s in re.findall(r"incremental build: .* in ([\d.]+) s", text)]
        if "Traceback" in text or not text.rstrip().endswith("stopped"):
            out.notes.append("daemon log:\n" + text[-3000:])
    return out


def print_latency(lat: Latency, args: argparse.Namespace) -> None:
    print(f"\n== latency: item added at the server → its page on disk, `caixun run --no-serve`, "
          f"every = {args.every:g} s, list window {args.window}")
    print(f"{'':>14} {'K':>3} {'min s':>7} {'median s':>9} {'max s':>7}   each s")
    for label, values in (("added → page", lat.seconds), ("poll → page", lat.poll_to_page)):
        if values:
            print(f"{label:>14} {len(values):>3} {min(values):>7.3f} "
                  f"{statistics.median(values):>9.3f} {max(values):>7.3f}   "
                  + " ".join(f"{s:.3f}" for s in values))
    print("(poll → page: from the daemon's first list request after the item was added to "
          "its page on disk: list, full text, store, incremental build)")
    print(f"start → first round's {args.window} pages on disk: {lat.first_round_s:.2f} s; "
          f"daemon: {lat.rounds} rounds, exit code {lat.exit_code} after SIGTERM, "
          f"{lat.daemon_cpu_s:.2f} s CPU over {lat.daemon_wall_s:.1f} s wall")
    if lat.builds:
        print(f"incremental builds it logged: {len(lat.builds)}, "
              f"median {statistics.median(lat.builds):.3f} s, max {max(lat.builds):.3f} s")
    for note in lat.notes:
        print(f"note: {note}")


# -- main ------------------------------------------------------------------------------------

def print_header() -> None:
    print(f"Python {platform.python_version()} ({platform.python_implementation()}) "
          f"on {platform.system()} {platform.machine()}; CPU count: {os.cpu_count()}; "
          f"SQLite {sqlite3.sqlite_version}; caixun {caixun.__version__}")
    print(f"server: {ns.__file__} on 127.0.0.1, no artificial delay; corpus "
          f"{ns.POSTS_DIR} ({len(corpus()[0])} rolling posts, cycled with fresh ids)",
          flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000],
                        help="records in the list (one round fetches them all)")
    parser.add_argument("--per-host", type=int, nargs="+", default=[8, 2])
    parser.add_argument("--server", nargs="+", choices=["thread", "process"],
                        default=["thread", "process"], help="where the news server runs")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--latency-k", type=int, default=5, help="items added one by one")
    parser.add_argument("--every", type=float, default=5.0, help="the source's poll interval")
    parser.add_argument("--window", type=int, default=100, help="records the list shows")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for a page before giving up")
    parser.add_argument("--seed", type=int, default=42, help="of the latency phases")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile one round + build of the first size, then stop")
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--keep", action="store_true", help="keep the files under /tmp")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print_header()
    root = Path(tempfile.mkdtemp(prefix="caixun-fetch-bench-", dir="/tmp"))
    try:
        if args.profile:
            run_profile(args, root)
            return
        if not args.no_throughput:
            print(f"\n== throughput: one fetch_round (1 list + N text requests, min_gap 0, "
                  f"retries 0) + one incremental build_site")
            print_throughput_header()
            problems = []
            for n in args.sizes:
                for placement in args.server:
                    for per_host in args.per_host:
                        row = run_throughput(n, per_host, placement, root, keep=args.keep)
                        print_throughput_row(row)
                        problems += [f"{placement}/{per_host}/N={n}: {p}"
                                     for p in row_problems(row)]
            print("CPU ms/article: this process's process_time over round + build / N; "
                  "server ms: the news server's CPU (its threads here, or its child process); "
                  "caixun ms: CPU ms minus server ms for 'thread', CPU ms for 'process'.")
            for problem in problems:
                print(f"note: {problem}")
        if not args.no_latency:
            print_latency(run_latency(args, root), args)
    finally:
        if args.keep:
            print(f"\nfiles kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

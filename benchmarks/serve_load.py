"""Benchmark: `caixun serve` under concurrent load — the search API and static files.

Run it by hand from the repository root::

    python benchmarks/serve_load.py                       # 8,000 articles, 10 and 200 clients
    python benchmarks/serve_load.py --n 2000 --clients 10 50 200 --requests 5
    python benchmarks/serve_load.py --work /tmp/serve-bench   # keep and reuse the archive

It

1. generates an archive of ``--n`` articles exactly as ``benchmarks/build.py``
   does (its ``Corpus``, knobs and ``generate_archive``), in ``--work`` (a
   temporary directory under /tmp, deleted afterwards, unless given; an
   archive already there with ``--n`` articles is reused, so two runs, e.g.
   before and after a change, search the same archive);
2. writes a small site (``index.html`` of about 20 KB) beside it and starts the
   real ``caixun serve`` console script on a free port of 127.0.0.1 in its own
   process, so the load generator does not share the server's GIL;
3. for each ``--clients`` count C, opens C clients — each an
   ``httpx.AsyncClient`` of its own (``--client httpx``, as browsers would be:
   one connection each), or a minimal keep-alive HTTP/1.1 client on asyncio
   streams (``--client raw``) — and, once all are connected, lets each send
   ``--requests`` ``GET /api/search`` one after the other, the queries
   cycling through ``benchmarks/search.py``'s list (terms of the material,
   absent finance terms, outlet names, an outlet filter, date ranges).
   Meanwhile a separate process (so it does not queue behind the clients'
   event loop) fetches ``/index.html`` every ``--static-every`` seconds. A
   client that gets a 503 goes on with its next request at once (it does not
   wait for ``Retry-After``), so the 503s show how many searches were refused;
4. prints per C: wall seconds, requests/s (all answers, and 200s only),
   latency p50/p95/max of all answers and of the 200s, the count of each
   status, and the static page's p50/p95/max during the load.

On 2 cores the load generator competes with the server: httpx spends about
8 ms of CPU per request, so at 200 clients ``--client httpx`` measures httpx
as much as the server; ``--client raw`` spends a tenth of that.

Only the standard library, httpx and caixun are used; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import math
import multiprocessing
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import httpx

import caixun
from caixun.archive import open_archive

HERE = Path(__file__).resolve().parent


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"caixun_bench_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench_build = _load("build")
bench_search = _load("search")


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


# -- the archive, the site, the server ------------------------------------------------

def prepare_archive(args: argparse.Namespace, work: Path) -> Path:
    db = work / "caixun.db"
    if db.exists():
        with open_archive(db) as archive:
            if archive.count() == args.n:
                print(f"reusing {db} ({args.n:,} articles)")
                return db
        db.unlink()
    started = time.perf_counter()
    bench_build.generate_archive(bench_build.Corpus(args), db, args.n, args.batch)
    print(f"generated {args.n:,} articles in {time.perf_counter() - started:.1f} s → {db}")
    return db


def write_site(work: Path) -> Path:
    site = work / "site"
    site.mkdir(exist_ok=True)
    paragraphs = "".join(f"<p>第{i}条 央行宣布降准0.5个百分点，释放长期资金约1.2万亿元。</p>"
                         for i in range(200))
    (site / "index.html").write_text(
        f'<!doctype html><html lang="zh-CN"><title>财讯</title>{paragraphs}</html>\n',
        encoding="utf-8")
    return site


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def caixun_command() -> list[str]:
    script = Path(sys.executable).with_name("caixun")
    return [str(script)] if script.exists() else [sys.executable, "-m", "caixun.cli"]


def start_server(work: Path, db: Path, site: Path, port: int) -> subprocess.Popen[bytes]:
    command = [*caixun_command(), "--archive", str(db), "serve", "--dir", str(site),
               "--port", str(port)]
    # The server's log goes to a file: a pipe nobody reads would fill and stall it.
    with open(work / "serve.log", "wb") as log:
        server = subprocess.Popen(command, cwd=work, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"caixun serve exited: {(work / 'serve.log').read_text()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/index.html", timeout=1)
            return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("caixun serve did not start in 30 s")


# -- the load --------------------------------------------------------------------------

@dataclass
class Run:
    clients: int
    wall: float = 0.0
    waiting: int = 0  # clients ready to start
    latencies: list[tuple[int, float]] = field(default_factory=list)  # (status, seconds)
    static: list[float] = field(default_factory=list)
    static_statuses: Counter[int] = field(default_factory=Counter)


def query_params(args: argparse.Namespace) -> list[dict[str, str]]:
    params = []
    for q in bench_search.queries(bench_build.Corpus(args)):
        p = {"q": q.text}
        p.update({k: v for k, v in (("outlet", q.outlet), ("since", q.since),
                                     ("until", q.until)) if v})
        params.append(p)
    return params


async def httpx_client(base: str, run: Run, paths: list[str], count: int,
                       timeout: float, ready: asyncio.Event) -> None:
    """One client as a browser would be: its own httpx.AsyncClient, one connection."""
    async with httpx.AsyncClient(base_url=base, timeout=timeout) as client:
        run.waiting += 1
        await ready.wait()  # made before the clock starts: creating 200 clients takes seconds
        for path in paths[:count]:
            began = time.perf_counter()
            try:
                status = (await client.get(path)).status_code
            except httpx.HTTPError:
                status = 0  # connection refused, reset or timed out
            run.latencies.append((status, time.perf_counter() - began))


async def raw_client(base: str, run: Run, paths: list[str], count: int, timeout: float,
                     ready: asyncio.Event) -> None:
    """One keep-alive connection speaking just enough HTTP/1.1: a tenth of httpx's CPU."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    run.waiting += 1
    await ready.wait()
    try:
        for path in paths[:count]:
            began = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await asyncio.wait_for(reader.readexactly(length), timeout)
                status = int(head.split()[1])
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                status = 0
            run.latencies.append((status, time.perf_counter() - began))
    finally:
        writer.close()


def probe_static(base: str, every: float, stop: Any, out: Any) -> None:
    """In a process of its own: GET /index.html every ``every`` s until ``stop`` is set."""
    seen: list[tuple[int, float]] = []
    with httpx.Client(base_url=base, timeout=60) as client:
        client.get("/index.html")  # connected and warm before the load starts
        out.send("ready")
        while not stop.is_set():
            began = time.perf_counter()
            try:
                status = client.get("/index.html").status_code
            except httpx.HTTPError:
                status = 0
            seen.append((status, time.perf_counter() - began))
            stop.wait(every)
    out.send(seen)


def search_paths(params: list[dict[str, str]], start: int, count: int) -> list[str]:
    picked = [params[(start + i) % len(params)] for i in range(count)]
    return ["/api/search?" + urllib.parse.urlencode(p) for p in picked]


async def load(base: str, clients: int, args: argparse.Namespace,
               params: list[dict[str, str]]) -> Run:
    run = Run(clients)
    ready = asyncio.Event()
    client = raw_client if args.client == "raw" else httpx_client
    tasks = [asyncio.create_task(client(base, run, search_paths(params, c * args.requests,
                                                                args.requests),
                                        args.requests, args.timeout, ready))
             for c in range(clients)]
    while run.waiting < clients and not any(t.done() for t in tasks):
        await asyncio.sleep(0.05)
    context = multiprocessing.get_context("spawn")
    stop, (receive, send) = context.Event(), context.Pipe(duplex=False)
    prober = context.Process(target=probe_static, args=(base, args.static_every, stop, send))
    prober.start()
    await asyncio.to_thread(receive.recv)  # "ready"
    began = time.perf_counter()
    ready.set()
    await asyncio.gather(*tasks)
    run.wall = time.perf_counter() - began
    stop.set()
    for status, seconds in receive.recv():
        run.static.append(seconds)
        run.static_statuses[status] += 1
    prober.join()
    return run


# -- output -----------------------------------------------------------------------------

def ms(values: Sequence[float]) -> str:
    if not values:
        return "      -      -      -"
    return f"{pct(values, 50) * 1000:6.0f} {pct(values, 95) * 1000:6.0f} {max(values) * 1000:6.0f}"


HEAD = ("{:>7} {:>6} {:>7} {:>7} {:>7}  {:>20}  {:>20}  {:<22} {:>20} {:>4}")


def print_header(args: argparse.Namespace) -> None:
    print(f"caixun {caixun.__version__}, Python {platform.python_version()}, "
          f"{os.cpu_count()} cores; N={args.n:,} generated articles; {args.requests} requests "
          f"per client ({args.client}); static /index.html every "
          f"{args.static_every * 1000:.0f} ms during the load")
    print(HEAD.format("clients", "reqs", "wall s", "req/s", "200/s", "all p50 p95 max ms",
                      "200 p50 p95 max ms", "statuses", "static p50 p95 max ms", "n"))


def print_run(run: Run) -> None:
    everything = [t for _, t in run.latencies]
    ok = [t for s, t in run.latencies if s == 200]
    statuses = Counter(s for s, _ in run.latencies)
    shown = " ".join(f"{s or 'err'}:{c}" for s, c in sorted(statuses.items()))
    print(HEAD.format(run.clients, len(everything), f"{run.wall:.1f}",
                      f"{len(everything) / run.wall:.0f}", f"{len(ok) / run.wall:.0f}",
                      ms(everything), ms(ok), shown, ms(run.static), len(run.static)))
    bad_static = {s: c for s, c in run.static_statuses.items() if s != 200}
    if bad_static:
        print(f"        static answers other than 200: {bad_static}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8000, help="articles in the archive")
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 200])
    parser.add_argument("--requests", type=int, default=5, help="requests per client")
    parser.add_argument("--static-every", type=float, default=0.05,
                        help="seconds between two static page requests during the load")
    parser.add_argument("--timeout", type=float, default=120.0, help="client timeout, seconds")
    parser.add_argument("--client", choices=["httpx", "raw"], default="httpx",
                        help="httpx.AsyncClient per client, or a minimal HTTP/1.1 client "
                             "(on 2 cores httpx's own CPU bounds the figures at 200 clients)")
    parser.add_argument("--batch", type=int, default=1000, help="articles per store_many")
    parser.add_argument("--work", type=Path, help="keep (and reuse) the archive here")
    bench_build.add_corpus_knobs(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="caixun-serve-bench-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        db = prepare_archive(args, work)
        site = write_site(work)
        params = query_params(args)
        port = free_port()
        server = start_server(work, db, site, port)
        try:
            print_header(args)
            for clients in args.clients:
                print_run(asyncio.run(load(f"http://127.0.0.1:{port}", clients, args, params)))
                sys.stdout.flush()
        finally:
            server.terminate()
            server.wait(timeout=30)
            log = (work / "serve.log").read_text(errors="replace").strip().splitlines()
            if len(log) > 2:  # more than the serving/warning lines
                print(f"server log ({len(log)} lines), last ones:", *log[-15:], sep="\n  ")
    finally:
        if args.work is None:
            shutil.rmtree(work)


if __name__ == "__main__":
    main()

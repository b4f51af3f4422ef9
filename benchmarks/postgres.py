"""Benchmark: the PostgreSQL archive beside SQLite — storing, searching, building.

Run it by hand from the repository root (PostgreSQL from Debian's packages;
a durable throwaway cluster is made in a temporary directory unless ``--pg``
names a server, or ``--pg-dir`` a cluster directory to keep between runs)::

    python benchmarks/postgres.py store --n 20000 --procs 1 2 4
    python benchmarks/postgres.py store --n 0       # the 4,005 real rss-days items
    python benchmarks/postgres.py search --sqlite /work/s1m/n1000000/archive.db \\
        --pg-dir /work/pgbench            # copies the archive the first time
    python benchmarks/postgres.py build --sqlite /tmp/fb.db

``store``: N generated articles (``benchmarks/build.py``'s corpus, the
shared harness's generator) split among P processes, each storing its share
as a fetcher does (``caixun.fetch._store_batch``: segment, fingerprint and
scan before the transaction, then ``store_many`` and the list marks in one
transaction) in batches of ``--batch``; articles/s is N over the wall time
from the first batch to the last commit. SQLite's figure (one process, the
same batches) is printed beside it. The cluster runs with fsync and
synchronous commits on.

``search``: the 28 queries of ``benchmarks/search.py`` (its ``queries()``,
the same arguments as ``caixun search``), one cold run and ``--repeat`` warm
ones each, on the SQLite archive and on its copy in PostgreSQL
(``caixun archive copy``, timed, made once per ``--pg-dir``); p50/p95 of the
warm medians and whether both return the same hits in the same order.

``build``: a full ``caixun build`` of the SQLite archive and of its copy in
PostgreSQL into fresh directories, timed, and whether the two sites are
byte for byte the same.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))  # benchmarks/search.py: its queries and generated corpus

import pgserver  # noqa: E402

from caixun.archive import open_archive  # noqa: E402
from caixun.archive.copy import copy_archive  # noqa: E402


def server(args: argparse.Namespace) -> tuple[str, Path | None]:
    """(the server's URL, a cluster directory to stop afterwards or None)."""
    if args.pg:
        return args.pg, None
    base = args.pg_dir or Path(tempfile.mkdtemp(prefix="caixun-pg-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    url = pgserver.start(base, durable=True, settings=args.pg_settings)
    return url, base


def database(url: str, name: str, fresh: bool) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                               (name,)).fetchone()
        if exists and fresh:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        if fresh or not exists:
            admin.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    return url.rsplit("/", 1)[0] + "/" + name


# -- store -----------------------------------------------------------------------------

def _articles(n: int, part: int, parts: int) -> list[Any]:
    """Every ``parts``-th of the articles from ``part``: generated ones, or (n == 0) the
    4,005 real rss-days items, oldest first."""
    if n == 0:
        import test_dedup

        items = sorted({a.uid: a for a in test_dedup.labelled_items(
            "near_duplicates").values()}.values(), key=lambda a: (a.published_at, a.uid))
        return items[part::parts]
    import search

    corpus = search.bench_build.Corpus(search.parse_args([]))
    return [p.article for p in search.parsed_batch(corpus, part, n, n)[::parts]]


def _store_share(location: str, n: int, part: int, parts: int, batch: int,
                 barrier: Any) -> tuple[float, float, int]:
    """One process: its share of the articles, as a fetcher stores them; (start, end, stored)."""
    from caixun.fetch import _store_batch

    articles = _articles(n, part, parts)
    with open_archive(location) as archive:
        barrier.wait()
        started = time.time()
        for start in range(0, len(articles), batch):
            chunk = articles[start:start + batch]
            _store_batch(archive, chunk, {a.uid: "h" for a in chunk})
        return started, time.time(), len(articles)


def _store_run(location: str, n: int, procs: int, batch: int) -> tuple[float, int]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(procs)
    with context.Pool(procs) as pool:
        results = [pool.apply_async(_store_share, (location, n, p, procs, batch, barrier))
                   for p in range(procs)]
        spans = [r.get() for r in results]
    wall = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    return wall, sum(count for _, _, count in spans)


def store(args: argparse.Namespace) -> None:
    url, base = server(args)
    try:
        what = f"{args.n:,} generated articles" if args.n else "the real rss-days items"
        print(f"store: {what}, batches of {args.batch}, as a fetcher stores them "
              "(caixun.fetch._store_batch)")
        with tempfile.TemporaryDirectory() as tmp:
            wall, count = _store_run(str(Path(tmp) / "a.db"), args.n, 1, args.batch)
            print(f"  SQLite      1 process : {count / wall:8.0f} articles/s ({wall:.1f} s)")
        for procs in args.procs:
            location = database(url, f"bench_store_{procs}", fresh=True)
            wall, count = _store_run(location, args.n, procs, args.batch)
            with open_archive(location) as archive:
                stored = archive.count()
            print(f"  PostgreSQL {procs} process{'es' if procs > 1 else '  '}: "
                  f"{count / wall:8.0f} articles/s ({wall:.1f} s; {stored:,} stored)")
    finally:
        if base is not None and args.pg_dir is None:
            pgserver.stop(base)
            shutil.rmtree(base, ignore_errors=True)


# -- search ----------------------------------------------------------------------------

def _copied(args: argparse.Namespace, url: str, name: str) -> str:
    import psycopg

    target = database(url, name, fresh=False)
    with psycopg.connect(target) as db:
        done = db.execute("SELECT to_regclass('articles') IS NOT NULL").fetchone()[0]
    if done:
        with open_archive(target) as archive:
            if archive.count():
                return target
    with open_archive(args.sqlite, read_only=True) as source, open_archive(target) as copy:
        started = time.perf_counter()
        rows = copy_archive(source, copy)
        print(f"  copied {rows:,} rows ({copy.count():,} articles) into PostgreSQL in "
              f"{time.perf_counter() - started:.0f} s (the search index built there)")
    return target


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * p // 100) - 1)]


def _query_times(location: str, qs: list[Any], repeat: int, read_only: bool
                 ) -> tuple[list[float], list[float], list[list[tuple[str, float]]]]:
    cold, warm, hits = [], [], []
    with open_archive(location, read_only=read_only) as archive:
        for q in qs:
            since_ts, until_ts = q.bounds()

            def run() -> list[Any]:
                return archive.search(q.text, outlet=q.outlet, since_ts=since_ts,
                                      until_ts=until_ts, limit=20, now=2e9)
            started = time.perf_counter()
            found = run()
            cold.append((time.perf_counter() - started) * 1000)
            runs = []
            for _ in range(repeat):
                started = time.perf_counter()
                run()
                runs.append((time.perf_counter() - started) * 1000)
            warm.append(statistics.median(runs))
            hits.append([(h.ref.uid, round(h.score, 9)) for h in found])
    return cold, warm, hits


def search(args: argparse.Namespace) -> None:
    url, base = server(args)
    try:
        import search as bench

        qs = bench.queries(bench.bench_build.Corpus(bench.parse_args([])))
        with open_archive(args.sqlite, read_only=True) as source:
            n = source.count()
        name = "bench_search_" + hashlib.blake2b(str(args.sqlite.resolve()).encode(),
                                                 digest_size=4).hexdigest()
        print(f"search: the {len(qs)} queries of benchmarks/search.py, {n:,} articles, "
              f"{args.repeat} warm runs each")
        target = _copied(args, url, name)
        rows = {}
        for label, location, read_only in (("SQLite", str(args.sqlite), True),
                                           ("PostgreSQL", target, False)):
            rows[label] = _query_times(location, qs, args.repeat, read_only)
        print(f"  {'':11} {'cold p50':>9} {'cold p95':>9} {'warm p50':>9} {'warm p95':>9}")
        for label, (cold, warm, _) in rows.items():
            print(f"  {label:11} {_pct(cold, 50):8.1f}  {_pct(cold, 95):8.1f}  "
                  f"{_pct(warm, 50):8.1f}  {_pct(warm, 95):8.1f}   ms")
        same = [q.label() for q, a, b in zip(qs, rows["SQLite"][2], rows["PostgreSQL"][2])
                if a != b]
        print("  same hits, same order, same scores: "
              + ("all queries" if not same else f"NOT for {same}"))
        slow = sorted(zip(rows["PostgreSQL"][1], (q.label() for q in qs)), reverse=True)[:5]
        print("  slowest in PostgreSQL (warm median): "
              + "; ".join(f"{label} {ms:.0f} ms" for ms, label in slow))
    finally:
        if base is not None:
            pgserver.stop(base)
            if args.pg_dir is None:
                shutil.rmtree(base, ignore_errors=True)


# -- build -----------------------------------------------------------------------------

def _tree_digest(root: Path) -> str:
    digest = hashlib.blake2b()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def build(args: argparse.Namespace) -> None:
    from caixun.publish.site import SiteConfig, build_site

    url, base = server(args)
    try:
        name = "bench_build_" + hashlib.blake2b(str(args.sqlite.resolve()).encode(),
                                                digest_size=4).hexdigest()
        target = _copied(args, url, name)
        config = SiteConfig(title="财讯", url="https://news.example.com/")
        with tempfile.TemporaryDirectory() as tmp:
            digests = {}
            for label, location in (("SQLite", str(args.sqlite)), ("PostgreSQL", target)):
                out = Path(tmp) / label
                with open_archive(location) as archive:
                    started = time.perf_counter()
                    report = build_site(archive, out, config, full=True)
                    seconds = time.perf_counter() - started
                digests[label] = _tree_digest(out)
                print(f"  full build from {label:10}: {seconds:6.2f} s "
                      f"({report.summary()})")
            print("  the two sites are " + ("byte for byte the same"
                                            if len(set(digests.values())) == 1 else "DIFFERENT"))
    finally:
        if base is not None:
            pgserver.stop(base)
            if args.pg_dir is None:
                shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["store", "search", "build"])
    parser.add_argument("--pg", help="a server's URL (its role may create databases)")
    parser.add_argument("--pg-dir", type=Path, help="a cluster directory kept between runs")
    parser.add_argument("--pg-settings", default="-c shared_buffers=1GB",
                        help="-c options of the throwaway cluster")
    parser.add_argument("--n", type=int, default=20_000,
                        help="generated articles stored (store); 0: the real rss-days items")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batch", type=int, default=100, help="articles per transaction")
    parser.add_argument("--sqlite", type=Path, help="the SQLite archive (search, build)")
    parser.add_argument("--repeat", type=int, default=10, help="warm runs per query")
    args = parser.parse_args()
    {"store": store, "search": search, "build": build}[args.what](args)


if __name__ == "__main__":
    main()

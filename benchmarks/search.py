"""Benchmark: the search index — indexing speed, query latency, sizes, static search.

Run it by hand from the repository root::

    python benchmarks/search.py                          # 100,000 and 1,000,000 articles
    python benchmarks/search.py --sizes 10000            # quick
    python benchmarks/search.py --sizes 10000 --keep     # keep the archives in /tmp
    python benchmarks/search.py --sizes 100000 --evict   # cold = not in the OS page cache
    python benchmarks/search.py --sizes 100000 --reuse /tmp/caixun-search-bench-XXXX
                                 # the queries again on an archive kept by --keep
    python benchmarks/search.py --sizes 1000000 --reuse DIR --static-site SITE
                                 # static search on a site `caixun build` made of it
    python benchmarks/search.py --sizes 100000 --date-sweep --results /tmp/r.json
                                 # date filters of 1 day .. 1 year; hits compared across runs

For each N it

1. generates an archive of N articles in a temporary directory under /tmp
   (deleted afterwards unless ``--keep``) exactly as ``benchmarks/build.py``
   does: post ``i`` of the shared harness's generator (``Corpus`` of
   build.py, the same knobs), parsed with ``parse_post``, stored with
   ``store_many`` in batches of ``--batch``. Making and parsing the posts and
   ``store_many`` (which segments and writes the search index) are timed
   apart; articles/s is N / the ``store_many`` seconds. Then, on the first
   ``--sample`` articles, the share of the index: the same batches stored
   (a) as above, (b) with ``segment.index_text`` timed alone and its tokens
   handed to ``store_many(indexed=...)``, (c) into an archive whose ``search``
   table was swapped for a plain table, with empty tokens (the article rows
   without any index). No library code is changed for this.
2. in a fresh process (peak RSS per phase), opens the archive as ``caixun
   search`` does (``open_archive``) and runs each query of a fixed list
   through ``archive.search(query, outlet=, since_ts=, until_ts=, limit=20)``
   with the arguments the CLI passes (days converted by the CLI's own
   ``_day_bounds``). The first run of each query is "cold" (fresh process and
   connection; with ``--evict`` the archive's pages are also dropped from the
   OS page cache before it), then ``--repeat`` "warm" runs. The hit count is
   ``count(*)`` of the same MATCH and filters (not timed). For the
   ``--diagnose`` slowest queries it prints the query plan of the exact
   statement (caught with a trace callback) and the time of variants of it:
   only the MATCH, bm25 without the join, bm25 + join without the recency
   blend, newest first without ranking, and bm25 top ``--prefilter`` then the
   blend. ``--date-sweep`` adds a table of common, rare and absent terms
   under date filters from one day to the whole year (and outlet filters),
   whose in-range ids, the generated dates being random, are spread over the
   whole archive. ``--results FILE`` writes every query's hits (uid and score,
   ``now`` fixed a day after the newest article) to FILE, or, if FILE exists,
   says whether they are the same as the ones in it (before and after a
   change to the search code). ``--reuse DIR`` runs these on the archives of
   an earlier ``--keep`` run (``DIR/n<N>/archive.db``) instead of generating
   them (sizes are then not printed); a caixun that upgrades archives
   upgrades them in place.
3. prints the archive's size, the FTS index's (pages of the ``search*``
   tables from ``dbstat``) and bytes per article.
4. if ``caixun.publish.static_search.search_static`` imports, builds the site
   (``build_site``, ``SiteConfig()``; with ``--static-site DIR``, takes the site
   in DIR, which ``caixun build`` made of the archive) for N up to ``--static-max`` and prints
   the size of ``search/`` and, per query, what ``search_static(out, query)``
   read.

The generated corpus recombines the 25 sentences of one real post (the
harness's default material), so every term of it is in a large share of the
articles, and finance terms that are not in it (央行, 茅台, 600519 …) match
nothing: the list has both; the hit counts are printed. Only the standard
library and caixun are used; nothing is asserted.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Sequence

import caixun
from caixun.archive import SqliteArchive, open_archive
from caixun.archive import base as archive_base
from caixun.cli import _day_bounds  # the CLI's own day → timestamp conversion
from caixun.segment import IndexedText, index_text, parse_query
from caixun.sources.jekyll import parse_post

MB = 1024 * 1024
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CLI_LIMIT = 20  # caixun search --limit default


def load_build() -> ModuleType:
    """benchmarks/build.py (its Corpus, knobs and store_posts), by path."""
    spec = importlib.util.spec_from_file_location("caixun_bench_build", HERE / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_build = load_build()


# -- the queries -------------------------------------------------------------------------

@dataclass(frozen=True)
class Q:
    text: str
    kind: str
    outlet: str | None = None
    since: str | None = None  # YYYY-MM-DD, as `caixun search --since`
    until: str | None = None

    def label(self) -> str:
        extra = [f"outlet={self.outlet}"] if self.outlet else []
        if self.since or self.until:
            extra.append(f"{self.since or ''}..{self.until or ''}")
        return self.text + (f"  [{', '.join(extra)}]" if extra else "")

    def bounds(self) -> tuple[int | None, int | None]:
        day = lambda s: datetime.strptime(s, "%Y-%m-%d") if s else None  # noqa: E731
        return _day_bounds(day(self.since), day(self.until))


def queries(corpus: Any) -> list[Q]:
    """Finance queries (most not in the material), material terms, outlet names by rank."""
    cats = corpus.gen.cats  # [(slug, name)], rank 0 the biggest
    top_slug = cats[0][0]
    mid, rare = cats[min(49, len(cats) - 1)][1], cats[min(499, len(cats) - 1)][1]
    return [
        Q("央行", "1 term (absent)"), Q("茅台", "1 term (absent)"),
        Q("新能源 汽车", "2 terms (1 absent)"), Q('"人民银行"', "phrase (absent)"),
        Q("600519", "code (absent)"), Q("A股", "mixed (absent)"), Q("MLF", "ASCII (absent)"),
        Q("半导体 -芯片", "exclusion (absent)"),
        Q("5G", "mixed"), Q("汽车", "1 term"), Q("制造业", "1 term"),
        Q("人工智能", "1 term"), Q("车联网 先导区", "2 terms"),
        Q("知识产权 可靠性 质量管理", "3 terms"), Q('"国家级车联网先导区"', "phrase"),
        Q('"知识产权成果"', "phrase"), Q("5G 车联网", "mixed + term"),
        Q("2021年 制造业", "mixed + term"), Q("创新 -汽车", "exclusion"),
        Q("碳达峰", "1 term"), Q("工信部科技司", "title"),
        Q(cats[0][1], "outlet name, rank 1"), Q(mid, "outlet name, rank 50"),
        Q(rare, "outlet name, rank 500"),
        Q("制造业", "term + outlet", outlet=top_slug),
        Q("人工智能", "term + month", since="2022-03-01", until="2022-03-31"),
        Q("5G", "mixed + day", since="2022-06-01", until="2022-06-01"),
        Q("车联网", "term + outlet + quarter", outlet=top_slug, since="2022-07-01",
          until="2022-09-30"),
    ]


SWEEP_SPANS = {"day": ("2022-06-01", "2022-06-01"), "week": ("2022-06-01", "2022-06-07"),
               "month": ("2022-03-01", "2022-03-31"), "quarter": ("2022-07-01", "2022-09-30"),
               "half year": ("2022-01-01", "2022-06-30"), "since Dec": ("2022-12-01", None),
               "until Jan": (None, "2022-01-31"), "whole year": ("2022-01-01", "2022-12-31")}


def sweep_queries(corpus: Any) -> list[Q]:
    """Terms (common, phrase, 3 terms, rare, absent) × date spans; outlets big and small."""
    cats = corpus.gen.cats
    top, small = cats[0][0], cats[min(499, len(cats) - 1)][0]
    out = [Q(text, f"sweep: {name}", since=since, until=until)
           for text in ("5G", "汽车", "人工智能", '"国家级车联网先导区"', "知识产权 可靠性 质量管理",
                        cats[min(49, len(cats) - 1)][1], "央行")
           for name, (since, until) in SWEEP_SPANS.items()]
    for text in ("制造业", "5G"):
        for slug, rank in ((top, 1), (small, 500)):
            out.append(Q(text, f"sweep: outlet {rank}", outlet=slug))
            out.append(Q(text, f"sweep: outlet {rank}, month", outlet=slug, since="2022-03-01",
                         until="2022-03-31"))
    return out


# -- figures ------------------------------------------------------------------------------

def maxrss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = func()
    return (time.perf_counter() - started) * 1000, result


def checkpoint(db_path: Path) -> None:
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def evict(db_path: Path) -> None:
    """Drop the archive's pages from the OS page cache (Linux, no root needed)."""
    for path in (db_path, db_path.with_name(db_path.name + "-wal")):
        if path.exists():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


# -- phase 1: generate and index (child) -------------------------------------------------

def parsed_batch(corpus: Any, start: int, stop: int, n: int) -> list[Any]:
    return [parse_post(text, name) for name, text in
            (corpus.post(i, n) for i in range(start, stop))]


def store_parsed(archive: SqliteArchive, parsed: list[Any],
                 indexed: Sequence[IndexedText] | None = None) -> int:
    """build.py's store_posts on parsed posts (optionally with their tokens)."""
    with archive.transaction():
        results = archive.store_many((p.article for p in parsed), indexed)
        for p in parsed:
            if p.slug_alias:
                archive.add_outlet_alias(p.slug_alias, p.article.outlet_slug)
    return len(results)


def bulk_store(archive: SqliteArchive, parsed: list[Any]) -> int:
    """Only what ``_store`` writes for a new article's row and its search index.

    No change log, no story placement (fingerprints, keys): the archive's
    private helpers, so the rows and the index are exactly the library's.
    """
    db = archive._db
    columns = ", ".join(archive_base._CONTENT_COLUMNS)
    marks = ", ".join("?" * len(archive_base._CONTENT_COLUMNS))
    with archive.transaction():
        for p in parsed:
            article = p.article
            archive._ensure_outlet(article.outlet_slug, article.outlet)
            now = archive_base._now()
            content = archive_base.content_row(article)
            cursor = db.execute(
                f"INSERT INTO articles (uid, fetched_at, stored_at, updated_at, {columns}) "
                f"VALUES (?, NULL, ?, ?, {marks})",
                (article.uid, now, now, *content))
            archive._index(cursor.lastrowid or 0, article.title, article.digest,
                           article.body_text, content[2], content[5])
            if p.slug_alias:
                archive.add_outlet_alias(p.slug_alias, article.outlet_slug)
    return len(parsed)


def generate(corpus: Any, db_path: Path, n: int, batch: int, bulk: bool) -> dict[str, Any]:
    make_s = store_s = 0.0
    store = bulk_store if bulk else store_parsed
    with open_archive(db_path) as archive:
        for start in range(0, n, batch):
            t0 = time.perf_counter()
            parsed = parsed_batch(corpus, start, min(n, start + batch), n)
            t1 = time.perf_counter()
            store(archive, parsed)
            make_s, store_s = make_s + t1 - t0, store_s + time.perf_counter() - t1
        count = archive.count()
    if count != n:
        raise SystemExit(f"generate: expected {n} articles, got {count}")
    checkpoint(db_path)
    return {"make_s": make_s, "store_s": store_s, "rss": maxrss_mb(), "bulk": bulk}


def unindexed_archive(db_path: Path) -> SqliteArchive:
    """An archive whose ``search`` table is a plain table: rows without an index."""
    open_archive(db_path).close()
    with sqlite3.connect(db_path) as db:
        db.execute("DROP TABLE search")
        db.execute("CREATE TABLE search (title_words, title_grams, text_words, text_grams, "
                   "facets)")
    return open_archive(db_path)


def breakdown(corpus: Any, work: Path, n: int, sample: int, batch: int) -> dict[str, Any]:
    """Seconds of store_many with the index, of index_text alone, of store without index."""
    paths = {k: work / f"sample-{k}.db" for k in ("full", "tokens", "none", "bulk")}
    full, tokens, bare, bulk = (open_archive(paths["full"]), open_archive(paths["tokens"]),
                                unindexed_archive(paths["none"]), open_archive(paths["bulk"]))
    empty = IndexedText("", "", "", "")
    s = {"full": 0.0, "segment": 0.0, "tokens": 0.0, "none": 0.0, "bulk": 0.0}
    try:
        for start in range(0, sample, batch):
            parsed = parsed_batch(corpus, start, min(sample, start + batch), n)
            articles = [p.article for p in parsed]
            s["full"] += timed(lambda: store_parsed(full, parsed))[0]
            ms, indexed = timed(lambda: [index_text(a.title, a.digest, a.body_text)
                                         for a in articles])
            s["segment"] += ms
            s["tokens"] += timed(lambda: store_parsed(tokens, parsed, indexed))[0]
            s["none"] += timed(lambda: store_parsed(bare, parsed, [empty] * len(parsed)))[0]
            s["bulk"] += timed(lambda: bulk_store(bulk, parsed))[0]
    finally:
        for archive in (full, tokens, bare, bulk):
            archive.close()
        for path in paths.values():
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
    return {k: v / 1000 for k, v in s.items()} | {"sample": sample}


def child_generate(work: Path, n: int, args: argparse.Namespace) -> dict[str, Any]:
    corpus = bench_build.Corpus(args)
    result = generate(corpus, work / "archive.db", n, args.batch, n > args.bulk_above)
    sample = min(n, args.sample)
    result["breakdown"] = breakdown(corpus, work, n, sample, args.batch) if sample else None
    result["rss_after_sample"] = maxrss_mb()
    return result


# -- phase 2: queries (child) ---------------------------------------------------------------

def hit_count(archive: SqliteArchive, q: Q) -> int:
    where, params = ["search MATCH ?"], [parse_query(q.text).match]
    since, until = q.bounds()
    for clause, value in (("a.outlet_slug = ?", q.outlet), ("a.published_ts >= ?", since),
                          ("a.published_ts < ?", until)):
        if value is not None:
            where.append(clause)
            params.append(value)
    join = " JOIN articles a ON a.id = search.rowid" if len(where) > 1 else ""
    sql = f"SELECT count(*) FROM search{join} WHERE " + " AND ".join(where)
    return int(archive._db.execute(sql, params).fetchone()[0])


def cli_search(archive: SqliteArchive, q: Q) -> Callable[[], list[Any]]:
    since_ts, until_ts = q.bounds()
    return lambda: archive.search(q.text, outlet=q.outlet, since_ts=since_ts,
                                  until_ts=until_ts, limit=CLI_LIMIT)


def child_queries(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    db_path = work / "archive.db"
    corpus = bench_build.Corpus(args)
    rows = []
    rss_open = 0.0
    with open_archive(db_path) as archive:
        rss_open = maxrss_mb()
        load_ms = timed(lambda: parse_query("预热 A股"))[0]  # jieba's dictionary, once
        qs = queries(corpus)
        sweep = sweep_queries(corpus) if args.date_sweep else []
        for q in qs + sweep:
            if args.evict:
                evict(db_path)
            run = cli_search(archive, q)
            cold, hits = timed(run)
            warm = [timed(run)[0] for _ in range(args.repeat)]
            rows.append({"q": q.label(), "kind": q.kind, "cold": cold, "warm": warm,
                         "returned": len(hits), "hits": hit_count(archive, q),
                         "dated": bool(q.since or q.until), "sweep": q in sweep})
        rss_queries = maxrss_mb()
        main = rows[:len(qs)]
        slowest = sorted(range(len(main)), key=lambda i: -statistics.median(main[i]["warm"]))
        diagnoses = [diagnose(archive, qs[i], args) for i in slowest[:args.diagnose]]
        results = same_results(archive, qs + sweep, args.results) if args.results else None
    return {"rows": rows, "rss_open": rss_open, "rss": rss_queries, "diagnoses": diagnoses,
            "load_ms": load_ms, "results": results}


def same_results(archive: SqliteArchive, qs: list[Q], path: Path) -> str:
    """Every query's hits (the first page, and one across the rank window's end) to ``path``,
    or, if it exists, compared with the ones in it."""
    newest = archive._db.execute("SELECT max(published_ts) FROM articles").fetchone()[0]
    now = newest + 86400  # fixed, so that scores do not depend on when the run was
    found = {}
    for q in qs:
        since_ts, until_ts = q.bounds()
        found[q.label()] = [[[h.ref.uid, repr(h.score)] for h in archive.search(
            q.text, outlet=q.outlet, since_ts=since_ts, until_ts=until_ts, limit=limit,
            offset=offset, now=now)] for limit, offset in ((CLI_LIMIT, 0), (30, 990))]
    if not path.exists():
        path.write_text(json.dumps(found, ensure_ascii=False, indent=1), encoding="utf-8")
        return f"hits of {len(found)} queries written to {path}"
    before = json.loads(path.read_text(encoding="utf-8"))
    differ = [label for label, hits in found.items() if before.get(label) != hits]
    return (f"hits of all {len(found)} queries the same as in {path}" if not differ else
            f"hits of {len(differ)} of {len(found)} queries differ from {path}: "
            + "; ".join(differ))


def diagnose(archive: SqliteArchive, q: Q, args: argparse.Namespace) -> dict[str, Any]:
    """The plan of the exact statement and the time of variants of it (warm, median)."""
    db = archive._db
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    try:
        cli_search(archive, q)()
    finally:
        db.set_trace_callback(None)
    # The window's statement (a filtered search runs smaller ones before it).
    sql = next((s for s in statements if "ORDER BY search.rowid DESC" in s),
               next(s for s in statements if "MATCH" in s))
    plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql)]
    match = parse_query(q.text).match
    bm25 = "bm25(search, 6.0, 6.0, 1.0, 1.0)"
    k = args.prefilter
    variants = {
        "library call (parse, SQL, snippets)": cli_search(archive, q),
        "its SQL alone": lambda: db.execute(sql).fetchall(),
        "count(*) of the MATCH": lambda: db.execute(
            "SELECT count(*) FROM search WHERE search MATCH ?", (match,)).fetchall(),
        "bm25 top 20, no join": lambda: db.execute(
            f"SELECT rowid FROM search WHERE search MATCH ? ORDER BY {bm25} LIMIT 20",
            (match,)).fetchall(),
        "bm25 top 20 + join, no recency": lambda: db.execute(
            f"SELECT a.id, a.published_ts FROM search JOIN articles a ON a.id = search.rowid "
            f"WHERE search MATCH ? ORDER BY {bm25} LIMIT 20", (match,)).fetchall(),
        "newest 20 by rowid, no ranking": lambda: db.execute(
            "SELECT rowid FROM search WHERE search MATCH ? ORDER BY rowid DESC LIMIT 20",
            (match,)).fetchall(),
        f"bm25 top {k}, then join + recency blend": lambda: db.execute(
            f"WITH top AS (SELECT rowid AS id, {bm25} AS r FROM search WHERE search MATCH ? "
            f"ORDER BY r LIMIT {k}) SELECT a.id, a.title, a.digest, a.body_text, "
            f"top.r - 3.0 / (1.0 + max(0, ? - a.published_ts) / 604800.0) AS ranking "
            f"FROM top JOIN articles a ON a.id = top.id ORDER BY ranking LIMIT 20",
            (match, time.time())).fetchall(),
        f"newest {k} by rowid, then bm25 + join + blend": lambda: db.execute(
            f"WITH top AS (SELECT rowid AS id, {bm25} AS r FROM search WHERE search MATCH ? "
            f"ORDER BY rowid DESC LIMIT {k}) SELECT a.id, a.title, a.digest, a.body_text, "
            f"top.r - 3.0 / (1.0 + max(0, ? - a.published_ts) / 604800.0) AS ranking "
            f"FROM top JOIN articles a ON a.id = top.id ORDER BY ranking LIMIT 20",
            (match, time.time())).fetchall(),
    }
    times = {}
    for name, func in variants.items():
        func()
        times[name] = statistics.median(timed(func)[0] for _ in range(max(1, args.repeat)))
    return {"q": q.label(), "match": match, "plan": plan, "times": times,
            "hits": hit_count(archive, q)}


# -- phase 3: sizes (driver) -------------------------------------------------------------------

def sizes(db_path: Path) -> dict[str, Any]:
    with sqlite3.connect(db_path) as db:
        names = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE 'search_%' AND type = 'table' "
            "AND name <> 'search_meta'")]
        try:
            # Summed here, not with aggregate = TRUE: SQLite 3.40's aggregate
            # pgsize wraps around at 2**32 bytes.
            tables = {name: db.execute("SELECT sum(pgsize) FROM dbstat WHERE name = ?",
                                       (name,)).fetchone()[0] or 0
                      for name in names + ["articles"]}
            how = "dbstat"
        except sqlite3.Error:
            tables, how = {}, "n/a"
        articles = db.execute("SELECT count(*) FROM articles").fetchone()[0]
        page = db.execute("PRAGMA page_size").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    return {"file": db_path.stat().st_size, "tables": tables, "how": how,
            "articles": articles, "page": page, "pages": pages}


# -- phase 4: static search (child) --------------------------------------------------------------

def static_search() -> Callable[..., Any] | None:
    try:
        from caixun.publish.static_search import search_static
    except Exception:  # noqa: BLE001 — not written yet, or broken: reported as unavailable
        return None
    return search_static  # type: ignore[no-any-return]


def describe_object(obj: Any) -> str:
    if is_dataclass(obj):
        return f"{type(obj).__name__}({', '.join(f.name for f in fields(obj))})"
    if hasattr(obj, "_fields"):
        return f"{type(obj).__name__}({', '.join(obj._fields)})"
    if hasattr(obj, "__dict__"):
        return f"{type(obj).__name__}({', '.join(vars(obj))})"
    return type(obj).__name__


_FILE_ATTRS = ("files_read", "reads", "fetched", "fetches", "files", "shards", "requests")
_SIZE_ATTRS = ("size", "bytes", "nbytes", "length", "bytes_read")
_HIT_ATTRS = ("ids", "hits", "results", "articles", "matches", "items")


def _size_of(item: Any) -> int | None:
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], int):
        return item[1]
    for attr in _SIZE_ATTRS:
        value = item.get(attr) if isinstance(item, dict) else getattr(item, attr, None)
        if isinstance(value, int):
            return value
    return None


def reads_of(result: Any, out: Path) -> tuple[int, int, int | None, str]:
    """(bytes, files, hits, how) from whatever search_static returned."""
    hits = next((len(getattr(result, a)) for a in _HIT_ATTRS
                 if isinstance(getattr(result, a, None), (list, tuple))), None)
    if isinstance(result, (list, tuple)) and hits is None:
        hits = len(result)
    for attr in _FILE_ATTRS:
        files = getattr(result, attr, None)
        if isinstance(files, dict):
            files = list(files.items())
        if isinstance(files, (list, tuple, set, frozenset)):
            sizes = [_size_of(f) for f in files]
            if all(s is not None for s in sizes):
                return sum(s or 0 for s in sizes), len(sizes), hits, attr
            paths = [out / str(f) if not Path(str(f)).is_absolute() else Path(str(f))
                     for f in files]
            if all(p.is_file() for p in paths):
                return sum(p.stat().st_size for p in paths), len(paths), hits, f"{attr} (stat)"
    for attr in ("bytes_read", "total_bytes", "bytes"):
        if isinstance(getattr(result, attr, None), int):
            count = getattr(result, "files_read", getattr(result, "file_count", -1))
            return getattr(result, attr), count if isinstance(count, int) else -1, hits, attr
    raise TypeError(f"cannot find the files read in {describe_object(result)}")


def tree(path: Path) -> tuple[int, int, int, str]:
    count = total = largest = 0
    name = ""
    for directory, _, names in os.walk(path):
        for file in names:
            size = os.stat(os.path.join(directory, file)).st_size
            count, total = count + 1, total + size
            if size > largest:
                largest, name = size, os.path.relpath(os.path.join(directory, file), path)
    return count, total, largest, name


def child_static(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from caixun.publish.site import SiteConfig, build_site

    search_static = static_search()
    assert search_static is not None
    if args.static_site:  # a site `caixun build` made of this archive: measured, not built
        out, build_s, report = args.static_site, None, None
    else:
        out = work / "site"
        with open_archive(work / "archive.db") as archive:
            build_s, report = timed(lambda: build_site(archive, out, SiteConfig(), full=True))
    rss_build = maxrss_mb()
    count, total, largest, name = tree(out / "search")
    rows = []
    shape = ""
    for q in queries(bench_build.Corpus(args)):
        if q.outlet or q.since or q.until:
            continue  # search_static(out, query) takes no filters
        try:
            ms, result = timed(lambda: search_static(out, q.text))
            shape = shape or describe_object(result)
            got, files, hits, how = reads_of(result, out)
            rows.append({"q": q.label(), "bytes": got, "files": files, "hits": hits,
                         "ms": ms, "how": how})
        except Exception as exc:  # noqa: BLE001 — a benchmark reports, it does not stop
            rows.append({"q": q.label(), "error": f"{type(exc).__name__}: {exc}"})
    return {"build_s": None if build_s is None else build_s / 1000,
            "written": getattr(report, "written", None),
            "search_files": count, "search_bytes": total, "largest": largest,
            "largest_name": name, "rows": rows, "shape": shape, "rss_build": rss_build,
            "rss": maxrss_mb()}


# -- the driver --------------------------------------------------------------------------------

def run_child(phase: str, work: Path, n: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", phase, str(work),
               "--sizes", str(n), *args.passthrough]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"N={n}: the {phase} child failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def git_state() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "src"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "git: n/a"
    return f"git {head}" + (" (src/ has uncommitted changes)" if dirty else "")


def print_header(corpus: Any, args: argparse.Namespace) -> None:
    load = os.getloadavg()
    print(f"Python {platform.python_version()} ({platform.python_implementation()}) on "
          f"{platform.system()} {platform.machine()}; CPU count {os.cpu_count()} (shared with "
          f"other work; load average {load[0]:.2f} at start); SQLite {sqlite3.sqlite_version}; "
          f"caixun {caixun.__version__}, {git_state()}")
    print(corpus.describe())
    print(f"archives written with store_many in batches of {args.batch}, as "
          f"benchmarks/build.py, up to N={args.bulk_above:,}; larger ones bulk-loaded (rows "
          f"and index only); queries as `caixun search` (limit {CLI_LIMIT}), {args.repeat} warm "
          f"runs each; cold = first run in a fresh process, segmenter loaded"
          + (", archive evicted from the OS page cache" if args.evict else
             ", OS page cache as the generation left it"), flush=True)


def print_index(n: int, gen: dict[str, Any]) -> None:
    store, make = gen["store_s"], gen["make_s"]
    how = ("bulk-loaded: article rows + search index only, through the archive's private "
           "helpers (no change log, no story placement)" if gen["bulk"] else
           "store_many with the index (and story placement)")
    print(f"\n== N={n:,}: index throughput")
    print(f"  {how}: {store:.1f} s, {n / store:,.0f} articles/s "
          f"(making + parsing the posts, not included: {make:.1f} s); "
          f"peak RSS {gen['rss']:.0f} MB")
    b = gen["breakdown"]
    if not b:
        return
    m = b["sample"]
    rate = lambda s: f"{m / s:,.0f}/s" if s else "n/a"  # noqa: E731
    fts = b["tokens"] - b["none"]
    print(f"  first {m:,} articles, into fresh archives (µs/article): "
          f"store_many with the index {b['full'] / m * 1e6:,.0f} ({rate(b['full'])}); "
          f"index_text alone {b['segment'] / m * 1e6:,.0f} ({rate(b['segment'])}); "
          f"store_many with given tokens {b['tokens'] / m * 1e6:,.0f} ({rate(b['tokens'])}); "
          f"store_many without an index {b['none'] / m * 1e6:,.0f} ({rate(b['none'])}); "
          f"rows + index without change log and stories (bulk) {b['bulk'] / m * 1e6:,.0f} "
          f"({rate(b['bulk'])})")
    print(f"  → segmenting {b['segment'] / b['full']:.0%}, the FTS5 insert "
          f"{fts / b['full']:.0%} and change log + story placement "
          f"{(b['full'] - b['bulk']) / b['full']:.0%} of store_many's time; without the index "
          f"{m / b['none']:,.0f} articles/s instead of {m / b['full']:,.0f}; "
          f"peak RSS after the sample {gen['rss_after_sample']:.0f} MB")


QROW = "  {:<44} {:<24} {:>8} {:>4} {:>9} {:>9} {:>9} {:>9}"


def print_rows(rows: list[dict[str, Any]]) -> None:
    print(QROW.format("query", "kind", "hits", "ret", "cold", "warm p50", "warm p95",
                      "warm max"))
    for r in rows:
        print(QROW.format(_cut(r["q"], 44), r["kind"], f"{r['hits']:,}", r["returned"],
                          f"{r['cold']:.1f}", f"{statistics.median(r['warm']):.1f}",
                          f"{pct(r['warm'], 95):.1f}", f"{max(r['warm']):.1f}"))


def print_queries(n: int, res: dict[str, Any]) -> None:
    print(f"\n== N={n:,}: query latency, ms (archive.search as `caixun search`)")
    main = [r for r in res["rows"] if not r.get("sweep")]
    print_rows(main)
    for label, rows in (("all queries", main),
                        ("queries with hits", [r for r in main if r["hits"]]),
                        ("date-filtered queries", [r for r in main if r.get("dated")])):
        cold = [r["cold"] for r in rows]
        warm = [w for r in rows for w in r["warm"]]
        print(f"  {label} ({len(rows)}): cold p50/p95/p99 {_ppp(cold)}; "
              f"warm p50/p95/p99 {_ppp(warm)} ({len(warm)} runs)")
    print(f"  not included: loading the segmenter's dictionary, once per process (so once per "
          f"`caixun search`), {res['load_ms']:.0f} ms; peak RSS {res['rss']:.0f} MB "
          f"(after opening the archive {res['rss_open']:.0f} MB)")
    for d in res["diagnoses"]:
        print(f"  slow: {d['q']} — {d['hits']:,} matching rows; MATCH {d['match']}")
        print("    plan: " + " | ".join(d["plan"]))
        for name, ms in d["times"].items():
            print(f"    {name:<46} {ms:9.1f} ms")
    sweep = [r for r in res["rows"] if r.get("sweep")]
    if sweep:
        print(f"\n== N={n:,}: date sweep, ms (dates random, so a range's ids are spread over "
              f"the archive)")
        print_rows(sweep)
        warm = [w for r in sweep for w in r["warm"]]
        print(f"  sweep ({len(sweep)}): warm p50/p95/p99 {_ppp(warm)} ({len(warm)} runs)")
    if res.get("results"):
        print(f"  {res['results']}")


def _ppp(values: Sequence[float]) -> str:
    return " / ".join(f"{pct(values, p):.1f}" for p in (50, 95, 99))


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def print_sizes(n: int, s: dict[str, Any]) -> None:
    fts_tables = {k: v for k, v in s["tables"].items() if k != "articles"}
    fts = sum(fts_tables.values())
    print(f"\n== N={n:,}: sizes")
    print(f"  archive file {s['file'] / MB:,.1f} MB ({s['pages']:,} pages of {s['page']} B), "
          f"{s['file'] / n:,.0f} B/article")
    if s["tables"]:
        parts = ", ".join(f"{k} {v / MB:,.1f}" for k, v in fts_tables.items())
        print(f"  FTS index (search_* shadow tables, {s['how']}) {fts / MB:,.1f} MB = "
              f"{fts / s['file']:.0%} of the file, {fts / n:,.0f} B/article ({parts} MB); "
              f"the articles table {s['tables']['articles'] / MB:,.1f} MB "
              f"({s['tables']['articles'] / n:,.0f} B/article)")
    else:
        print("  FTS index: dbstat not available")


SROW = "  {:<44} {:>6} {:>10} {:>6} {:>8}"


def print_static(n: int, st: dict[str, Any]) -> None:
    built = ("a site built before (--static-site)" if st["build_s"] is None else
             f"build_site full: {st['build_s']:.1f} s, {st['written']} files written, "
             f"peak RSS {st['rss_build']:.0f} MB")
    print(f"\n== N={n:,}: static search ({built})")
    print(f"  search/: {st['search_bytes'] / MB:,.1f} MB in {st['search_files']:,} files, "
          f"largest {st['largest'] / 1024:,.1f} KiB ({st['largest_name']}); "
          f"search_static returns {st['shape'] or '?'}")
    print(SROW.format("query", "ids", "bytes read", "files", "ms"))
    ok = [r for r in st["rows"] if "error" not in r]
    for r in st["rows"]:
        if "error" in r:
            print(f"  {_cut(r['q'], 44):<44} error: {r['error']}")
            continue
        print(SROW.format(_cut(r["q"], 44), "?" if r["hits"] is None else r["hits"],
                          f"{r['bytes']:,}", r["files"], f"{r['ms']:.1f}"))
    if ok:
        got = [r["bytes"] for r in ok]
        print(f"  bytes per query p50 {pct(got, 50):,.0f}, p95 {pct(got, 95):,.0f}, "
              f"max {max(got):,} (from result.{ok[0]['how']})")


def run_size(args: argparse.Namespace, root: Path, n: int) -> None:
    work = root / f"n{n}"
    if args.reuse:
        if not (work / "archive.db").is_file():
            raise SystemExit(f"--reuse: no archive of N={n:,} in {work}")
        print(f"\n== N={n:,}: reusing {work / 'archive.db'} (no index throughput)")
    else:
        work.mkdir(parents=True)
        print_index(n, run_child("generate", work, n, args))
    os.sync()
    print_queries(n, run_child("queries", work, n, args))
    if not args.reuse:  # sizes take minutes at 1,000,000 and no search code changes them
        print_sizes(n, sizes(work / "archive.db"))
    if static_search() is None:
        print("\nstatic search: not available (caixun.publish.static_search.search_static "
              "does not import)")
    elif n > args.static_max:
        print(f"\nstatic search: skipped at N={n:,} (> --static-max {args.static_max:,})")
    else:
        print_static(n, run_child("static", work, n, args))
    sys.stdout.flush()
    if not args.keep and not args.reuse:
        shutil.rmtree(work)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100000, 1000000])
    parser.add_argument("--batch", type=int, default=1000, help="articles per store_many")
    parser.add_argument("--bulk-above", type=int, default=100000,
                        help="larger archives: rows and index only, no story placement")
    parser.add_argument("--sample", type=int, default=5000,
                        help="articles of the index/segment/no-index breakdown (0: none)")
    parser.add_argument("--repeat", type=int, default=20, help="warm runs per query")
    parser.add_argument("--date-sweep", action="store_true",
                        help="also time terms under date filters from a day to a year")
    parser.add_argument("--results", type=Path,
                        help="write the queries' hits to this file, or compare with it")
    parser.add_argument("--reuse", type=Path, metavar="DIR",
                        help="the archives of an earlier --keep run, instead of new ones")
    parser.add_argument("--evict", action="store_true",
                        help="drop the archive from the OS page cache before each cold run")
    parser.add_argument("--diagnose", type=int, default=4,
                        help="slowest queries to explain and time variants of")
    parser.add_argument("--prefilter", type=int, default=200,
                        help="bm25 candidates of the prefilter variant")
    parser.add_argument("--static-max", type=int, default=100000,
                        help="largest N to build the static site for")
    parser.add_argument("--static-site", type=Path, metavar="DIR",
                        help="measure static search on this site (built from the archive "
                             "by `caixun build`) instead of building one")
    parser.add_argument("--keep", action="store_true", help="keep the files under /tmp")
    bench_build.add_corpus_knobs(parser)
    parser.add_argument("--child", nargs=2, metavar=("PHASE", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.passthrough = _passthrough(argv if argv is not None else sys.argv[1:])
    return args


def _passthrough(argv: Iterable[str]) -> list[str]:
    """The command line without --sizes and its values (the child gets one size)."""
    out, skipping = [], False
    for arg in argv:
        if arg == "--sizes" or arg.startswith("--sizes="):
            skipping = arg == "--sizes"
            continue
        if skipping and not arg.startswith("--"):
            continue
        skipping = False
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        phase, work = args.child[0], Path(args.child[1])
        run = {"generate": lambda: child_generate(work, args.sizes[0], args),
               "queries": lambda: child_queries(work, args),
               "static": lambda: child_static(work, args)}[phase]
        print(json.dumps(run()))
        return
    corpus = bench_build.Corpus(args)
    print_header(corpus, args)
    root = args.reuse or Path(tempfile.mkdtemp(prefix="caixun-search-bench-", dir="/tmp"))
    try:
        for n in args.sizes:
            run_size(args, root, n)
    finally:
        if args.keep or args.reuse:
            print(f"\nfiles kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The SQLite archive: one file, WAL mode, FTS5 search. The default.

Writers take turns by SQLite's own lock (``BEGIN IMMEDIATE``); readers never
wait. The search index is an FTS5 table of the segmented text (see
:mod:`caixun.segment`), contentless, with the outlet and date of each article
as facet tokens (:mod:`caixun.archive.facets`). Everything else is in
:mod:`caixun.archive.base`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from caixun.archive import base
from caixun.archive.base import (
    _FIELD_WEIGHTS,
    _TITLE_HIT,
    Archive,
    SearchHit,
    _filter_condition,
    _now,
    _span,
)
from caixun.archive.facets import article_facets, filter_match
from caixun.archive.migrations import MIGRATIONS, Migration
from caixun.errors import ArchiveError
from caixun.segment import IndexedText, Query, index_text, parse_query

__all__ = ["SqliteArchive", "is_locked"]

_SEARCH_COLUMNS = ("title_words", "title_grams", "text_words", "text_grams", "facets")


# The index row's statements, with the facets column (schema 14) and without: made once.
_INDEX_ROW = {facets: f"INSERT INTO search (rowid, {', '.join(_SEARCH_COLUMNS[:4 + facets])}) "
                      f"VALUES (?{', ?' * (4 + facets)})" for facets in (False, True)}


_UNINDEX_ROW = {facets: "INSERT INTO search (search, rowid, "
                        f"{', '.join(_SEARCH_COLUMNS[:4 + facets])}) "
                        f"VALUES ('delete', ?{', ?' * (4 + facets)})" for facets in (False, True)}


# A filtered search puts the filtered ids in a set (an IN list) when that costs
# less than checking each match it reads by its article, which costs this many
# times putting an id in the set (about 0.9 and 0.4 µs, measured on 100,000 and
# 1,000,000 generated articles).
_SET_GAIN = 2


_SAMPLE = 256  # newest matches read to see what share of them passes the filters


# The day index keys an article by its Beijing day (UTC+8, as --since and
# --until count days): _DAY of its published_ts, _DAY_SHIFT seconds after UTC.
_DAY_SHIFT = 8 * 3600


_DAY = f"(published_ts + {_DAY_SHIFT}) / 86400"


@dataclass(frozen=True, slots=True)
class _Scan:
    """A search's read of the index, newest first, and what it keeps of the matches.

    ``kept`` is a condition on the match's article ``a``; ``bounds`` the lowest
    and highest id read; ``id_set`` a condition on the articles whose ids are
    put in a set that a match's id must be in (see SqliteArchive._narrow).
    """

    match: str
    kept: str
    kept_params: tuple[Any, ...]
    bounds: tuple[int, int] | None = None
    id_set: str = ""
    id_set_params: tuple[Any, ...] = ()

    def within(self, bounds: tuple[int, int]) -> _Scan:
        return _Scan(self.match, self.kept, self.kept_params, bounds)

    def with_set(self, condition: str, params: tuple[Any, ...]) -> _Scan:
        return _Scan(self.match, self.kept, self.kept_params, self.bounds, condition, params)

    def matches(self) -> tuple[str, tuple[Any, ...]]:
        """The condition on the index alone."""
        if self.bounds is None:
            return "search MATCH ?", (self.match,)
        return "search MATCH ? AND search.rowid BETWEEN ? AND ?", (self.match, *self.bounds)

    def window(self, size: int) -> tuple[str, tuple[Any, ...]]:
        """The newest ``size`` kept matches: (id, published_ts)."""
        matches, params = self.matches()
        where = " AND ".join(c for c in (matches, self.kept) if c)
        if self.id_set:
            # The unary + keeps SQLite from handing the IN list to FTS5 as
            # rowid lookups (one index query per id, far slower than a scan).
            where += f" AND +search.rowid IN (SELECT id FROM articles WHERE {self.id_set})"
        return ("SELECT search.rowid, a.published_ts FROM search JOIN articles a "
                f"ON a.id = search.rowid WHERE {where} ORDER BY search.rowid DESC LIMIT ?",
                (*params, *self.kept_params, *self.id_set_params, size))

    def sample(self, size: int) -> tuple[str, tuple[Any, ...]]:
        """Of the newest ``size`` matches: how many were read, how many are kept, the oldest."""
        matches, params = self.matches()
        return ("SELECT count(*), count(a.id), min(s.id) FROM (SELECT rowid AS id FROM search "
                f"WHERE {matches} ORDER BY rowid DESC LIMIT ?) s LEFT JOIN articles a "
                "ON a.id = s.id" + (f" AND {self.kept}" if self.kept else ""),
                (*params, size, *self.kept_params))


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that can neither create, write nor upgrade the file at ``path``."""
    if not path.is_file():
        raise ArchiveError(f"no archive at {path}; run `caixun import` or `caixun fetch` first")
    uri = path.resolve().as_uri() + "?mode=ro"
    try:
        return _open_uri(uri)
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode != sqlite3.SQLITE_CANTOPEN:
            raise
        # A WAL archive is read through its -shm file, which SQLite creates
        # beside it; in a directory nobody may write to (a read-only mount)
        # it cannot, and refuses to open. immutable=1 reads the main file
        # without it (and without locks): right for read-only media, where
        # nobody writes; a WAL left behind by a crashed writer is not read.
        return _open_uri(uri + "&immutable=1")


def _open_uri(uri: str) -> sqlite3.Connection:
    db = sqlite3.connect(uri, uri=True, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA query_only=ON")
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opening is lazy
    except sqlite3.Error:
        db.close()
        raise
    return db


WRITE_CACHE_KIB = 64 * 1024  # page cache of a connection that writes


def _statements(sql: str) -> Iterator[str]:
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()


_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def is_locked(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite saying another connection holds a lock (see worker.is_busy)."""
    return isinstance(exc, sqlite3.OperationalError) and _busy_error(exc)


def _busy_error(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _BUSY_CODES  # extended codes too: BUSY_SNAPSHOT …
    return "is locked" in str(exc) or "is busy" in str(exc)


class SqliteArchive(Archive):
    """An archive in one SQLite file. Not shared between threads."""

    _db_errors = (sqlite3.Error,)
    _search_condition = "a.id IN (SELECT rowid FROM search WHERE search MATCH ?)"
    _clock = "((julianday('now') - 2440587.5) * 86400.0)"  # one value within a statement
    _greatest = "max"
    _read_begin = "BEGIN"

    def __init__(self, path: str | Path, migrations: Sequence[Migration] = MIGRATIONS, *,
                 read_only: bool = False, notice: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self._init_state(read_only, notice)
        self._db: sqlite3.Connection
        try:
            if read_only:
                self._db = _connect_read_only(self.path)
                self._check_schema(migrations)
            else:
                self._db = sqlite3.connect(self.path, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("PRAGMA foreign_keys=ON")
                self._db.execute("PRAGMA busy_timeout=10000")
                # A write touches several indexes at random places (story keys,
                # the search index): past SQLite's default 2 MiB of cache a large
                # import reads their pages again and again. Taken only as used.
                self._db.execute(f"PRAGMA cache_size=-{WRITE_CACHE_KIB}")
                self._migrate(migrations)
            self._start()
        except sqlite3.Error as exc:
            raise ArchiveError(f"{self.path}: cannot open the archive: {exc}") from exc

    def _has_schema(self) -> bool:
        return self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                "AND name = 'schema_migrations'").fetchone() is not None

    def __enter__(self) -> SqliteArchive:
        return self

    # -- transactions -------------------------------------------------------

    def _begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:  # a full disk shows at COMMIT, when the WAL grows
            self._rollback()
            raise ArchiveError(f"{self.path}: cannot commit: {exc}") from exc

    def _rollback(self) -> None:
        self._outlets.clear()
        # SQLite has already rolled back after SQLITE_FULL, SQLITE_IOERR and the
        # like; a ROLLBACK then fails ("no transaction is active") and would
        # hide the error that matters.
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the error being raised says more

    def _apply(self, migration: Migration) -> None:
        # executescript() commits on its own, so run the statements one by one
        # inside our transaction: a failed migration leaves nothing behind.
        with self.transaction():
            for statement in _statements(migration.sql):
                self._db.execute(statement)
            self._db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, _now()),
            )

    def _match_ids(self, match: str) -> list[int]:
        return [row[0] for row in self._db.execute(
            "SELECT rowid FROM search WHERE search MATCH ?", (match,))]

    def _search_value(self, match: str) -> str:
        return match

    def _stream(self, sql: str, params: Sequence[Any] = (), size: int = 500) -> Iterator[Any]:
        cursor = self._db.execute(sql, params)
        while rows := cursor.fetchmany(size):
            yield from rows

    # -- search index -------------------------------------------------------------

    def _index(self, article_id: int, title: str, digest: str, body_text: str,
               outlet_slug: str, published_ts: int, indexed: IndexedText | None = None) -> None:
        indexed = indexed or index_text(title, digest, body_text)
        self._db.execute(_INDEX_ROW[self._has_facets], (article_id, *indexed.values(),
                                           *self._facets(outlet_slug, published_ts)))
        self._keep_static_terms(article_id, indexed)

    def _unindex(self, article_id: int, title: str, digest: str, body_text: str,
                 outlet_slug: str, published_ts: int) -> None:
        # The index keeps no copy of the text (contentless FTS5), so removing a
        # row means naming the tokens it was indexed with: segmenting the old
        # text again gives exactly those, as long as segment.VERSION is unchanged.
        values = index_text(title, digest, body_text).values()
        self._db.execute(_UNINDEX_ROW[self._has_facets], (article_id, *values,
                                             *self._facets(outlet_slug, published_ts)))

    def _clear_index(self) -> None:
        self._db.execute("INSERT INTO search (search) VALUES ('delete-all')")

    def _facets(self, outlet_slug: str, published_ts: int) -> tuple[str, ...]:
        return (article_facets(outlet_slug, published_ts),) if self._has_facets else ()

    # Whether the archive has the day index (articles_day, see _ensure_day_index).
    _day_index = False

    def _ensure_search_index(self) -> None:
        """Rebuild the index when the segmenter changed since it was built; add the day index."""
        self._day_index = self._ensure_day_index()
        super()._ensure_search_index()

    def _ensure_day_index(self) -> bool:
        """Index the articles by Beijing day and id, once; whether the archive has it.

        A date-filtered search takes the lowest and highest id published in
        its range from it, two index seeks per day (see _id_bounds), where a
        scan of every article in the range cost up to 80 ms at 1,000,000. It
        is made on the first writable open (under a minute at 1,000,000) and
        not by a migration: an archive opened read-only by this caixun before
        that searches without it, as before.
        """
        found = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' "
                                 "AND name = 'articles_day'").fetchone() is not None
        if found or self.read_only:
            return found
        with self.transaction():
            self._db.execute(f"CREATE INDEX articles_day ON articles({_DAY}, id)")
        return True

    def _search(self, query: str, outlet: str | None, since_ts: int | None,
                until_ts: int | None, limit: int, offset: int,
                now: float | None, stocks: tuple[str, ...] = ()) -> list[SearchHit]:
        parsed = parse_query(query)
        span = _span(since_ts, until_ts)
        faceted = False
        if self._has_facets and (outlet or span is not None):
            facets = self._filter_match(outlet or None, span)
            if facets == "":
                return []
            if facets is not None:  # every match then passes them: bm25 reads no other
                parsed = replace(parsed, match=f"({parsed.match}) AND {facets}")
                faceted = True
        window = self._window(parsed, outlet or None, span, max(base.RANK_WINDOW, offset + limit),
                              stocks, faceted)
        if not window:
            return []
        broad = len(window) >= base.RANK_WINDOW
        # bm25 costs a row lookup per match: a filtered window, whose ids may
        # be a small part of the matches between them, is scored alone.
        relevance = self._relevance(parsed, window, broad,
                                    only_window=not broad and (bool(outlet) or bool(stocks)
                                                               or span is not None))
        return self._hits(parsed, window, relevance, offset, limit, now)

    def _window(self, parsed: Query, outlet: str | None, span: tuple[int, int] | None,
                size: int, stocks: tuple[str, ...] = (), faceted: bool = False
                ) -> list[tuple[int, int]]:
        """The newest ``size`` matches that pass the filters: (article id, published_ts).

        ``faceted``: the outlet and span are in ``parsed`` as facets already.
        """
        if stocks and not self._has_securities:
            return []
        scan = _Scan(parsed.match, *self._kept(outlet, span, stocks))
        # With facets in the match the index reads the filtered matches alone.
        if stocks or (not faceted and (outlet or span is not None)):
            narrowed = self._narrow(scan, outlet, span, size, stocks)
            if narrowed is None:
                return []
            scan = narrowed
        return self._db.execute(*scan.window(size)).fetchall()

    def _filter_match(self, outlet: str | None, span: tuple[int, int] | None) -> str | None:
        """The facets condition for these filters (see caixun.archive.facets)."""
        # Two subqueries: each an index seek (min and max in one select scan the table).
        published = self._db.execute("SELECT (SELECT min(published_ts) FROM articles), "
                                     "(SELECT max(published_ts) FROM articles)").fetchone()
        if published[0] is None:
            return ""
        return filter_match(outlet, span, published)

    def _narrow(self, scan: _Scan, outlet: str | None, span: tuple[int, int] | None,
                size: int, stocks: tuple[str, ...] = ()) -> _Scan | None:
        """A filtered search's read of the index, made cheaper; None when no article passes.

        The lowest and highest id published in the time range bound the read:
        for news, ids follow time, so a day's search reads that day's matches
        only. When ids do not follow time (posts imported late, many sources
        fetched at once) most matches in the bounds are filtered out, each
        checked by reading its article. If the filtered articles are few
        enough, their ids are first put in an in-memory set (an IN list) that
        checks a match for far less.
        """
        if span is not None:
            bounds = self._id_bounds(span)
            if bounds is None:
                return None
            scan = scan.within(bounds)
        condition, values = _filter_condition(outlet, span, stocks)
        use_set = self._set_pays(scan, condition, values, size)
        if use_set is None:
            return None
        return scan.with_set(condition, values) if use_set else scan

    def _set_pays(self, scan: _Scan, condition: str, values: tuple[Any, ...],
                  size: int) -> bool | None:
        """Whether a set of the filtered ids makes ``scan`` cheaper; None: no article passes.

        The newest _SAMPLE matches show what share of the matches the filters
        keep, and how many matches the bounds hold. Without the set, the scan
        reads about ``size / share`` of them (all, if fewer), checking each by
        its article; the set costs 1 / _SET_GAIN of such a check per id put
        in it. The filtered ids are counted only when the share says they may
        be few enough, and then only up to the number where the set stops
        paying.
        """
        read, kept, oldest = self._db.execute(*scan.sample(_SAMPLE)).fetchone()
        if read < _SAMPLE:
            return False  # so few matches that reading them all costs nothing
        low, high = scan.bounds or (1, self._db.execute("SELECT max(id) FROM articles")
                                    .fetchone()[0])
        matches = read * (high - low + 1) / (high - oldest + 1)  # in the bounds, roughly
        cost = min(size * read / max(kept, 1), matches) * _SET_GAIN  # in ids put in a set
        if kept / read * (high - low + 1) >= cost:  # the filtered ids, if spread like matches
            return False
        count = self._db.execute("SELECT count(*) FROM (SELECT 1 FROM articles WHERE "
                                 + condition + " LIMIT ?)", (*values, int(cost) + 1)).fetchone()[0]
        if not count:
            return None
        return bool(count <= cost)

    def _id_bounds(self, span: tuple[int, int]) -> tuple[int, int] | None:
        """The lowest and highest article id published in ``span``; None if none is.

        The span's whole Beijing days come from the day index, two seeks a
        day; the parts of a day at either end (or, without the day index, the
        whole span) from articles_published, one entry per article.
        """
        first, last = self._db.execute("SELECT (SELECT min(published_ts) FROM articles), "
                                       "(SELECT max(published_ts) FROM articles)").fetchone()
        if first is None:
            return None
        if span[0] <= first and span[1] > last:  # every article: the table's first and last id
            low, high = self._db.execute("SELECT (SELECT min(id) FROM articles), "
                                         "(SELECT max(id) FROM articles)").fetchone()
            return int(low), int(high)
        since, until = max(span[0], first), min(span[1], last + 1)
        days = (since + _DAY_SHIFT + 86399) // 86400, (until + _DAY_SHIFT) // 86400
        pieces, found = [(since, until)], []
        if self._day_index and days[0] < days[1]:
            pieces = [(since, days[0] * 86400 - _DAY_SHIFT), (days[1] * 86400 - _DAY_SHIFT, until)]
            found.append(self._db.execute(
                "WITH RECURSIVE day(d) AS (SELECT ? UNION ALL SELECT d + 1 FROM day WHERE d < ?) "
                f"SELECT min((SELECT min(id) FROM articles WHERE {_DAY} = d)), "
                f"max((SELECT max(id) FROM articles WHERE {_DAY} = d)) FROM day",
                (days[0], days[1] - 1)).fetchone())
        for start, end in pieces:
            if start < end:
                found.append(self._db.execute(
                    "SELECT min(id), max(id) FROM articles WHERE published_ts >= ? "
                    "AND published_ts < ?", (start, end)).fetchone())
        lows = [low for low, _ in found if low is not None]
        if not lows:
            return None
        return min(lows), max(high for _, high in found if high is not None)

    def _relevance(self, parsed: Query, window: list[tuple[int, int]], broad: bool,
                   only_window: bool) -> dict[int, float]:
        """Relevance of the window's matches (lower is better); other ids may be in it too.

        BM25 (title hits weighing more than body hits) for a query with fewer
        matches than the window. FTS5's bm25() counts every document holding
        each term, which on a million articles costs a second for a common
        word; a broad query ranks its window by title hits instead (every
        match holds every term anyway). A row's bm25 does not depend on which
        other rows are read, so ``only_window`` scores the window's ids alone.
        """
        where, params = "rowid >= ?", list[Any]([window[-1][0]])
        if only_window:
            where += " AND rowid <= ? AND +rowid IN (SELECT value FROM json_each(?))"
            params += (window[0][0], json.dumps([article_id for article_id, _ in window]))
        columns = 5 if self._has_facets else 4
        weights = ", ".join("?" * columns)
        if broad:
            return {row[0]: -_TITLE_HIT for row in self._db.execute(
                "SELECT rowid FROM search WHERE search MATCH ? AND " + where,
                (parsed.title_match, *params))}
        return dict(self._db.execute(
            f"SELECT rowid, bm25(search, {weights}) FROM search WHERE search MATCH ? AND "
            + where, (*_FIELD_WEIGHTS[:columns], parsed.match, *params)))

    def day_counts(self, utc_offset_seconds: int) -> list[tuple[str, int]]:
        """(YYYY-MM-DD, count) per local day, newest day first."""
        if utc_offset_seconds == _DAY_SHIFT:
            # Beijing days are what articles_day indexes: counted from its entries
            # (8 ms at 100,000 articles) rather than a date() per article (31 ms).
            # published_ts is never negative, so the division is the floor.
            return [(day, n) for day, n in self._db.execute(
                f"SELECT date(d * 86400, 'unixepoch'), n FROM (SELECT {_DAY} AS d, "
                "count(*) AS n FROM articles GROUP BY d) ORDER BY d DESC")]
        return [(day, n) for day, n in self._db.execute(
            "SELECT date(published_ts + ?, 'unixepoch') AS day, count(*) FROM articles "
            "GROUP BY day ORDER BY day DESC", (utc_offset_seconds,))]

    def set_busy_timeout(self, seconds: float) -> None:
        """How long one statement waits for another connection's lock (then: busy)."""
        self._db.execute(f"PRAGMA busy_timeout={max(0, int(seconds * 1000))}")

"""The PostgreSQL archive: a server several machines share. ``postgresql://`` selects it.

The storage logic is :mod:`caixun.archive.base`'s, the same as SQLite's; this
module holds what differs:

- **Turns.** A write transaction takes a transaction-level advisory lock
  first, so writers take turns as they do in SQLite: the change log's numbers
  are then given in commit order, and a publisher that has read up to one of
  them never misses an earlier one committed later; story placement sees the
  articles stored before it. Readers never wait. Unique constraints and
  ``ON CONFLICT`` keep a uid, an alias or a tag from being stored twice even so.
- **Search.** The segmented terms of each article are a ``tsvector`` in table
  ``search`` with a GIN index; queries are the same parser's expressions,
  translated by :mod:`caixun.archive.pgsearch`, ranked by the same BM25 as
  FTS5 computes, and the same recency blend. A phrase is checked in the
  rows of the ids a search reads, never in every row the index gives
  (:class:`_Matches`).
- **Streaming.** Long reads go through server-side cursors inside a
  repeatable-read transaction: memory stays flat and the rows are one state.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from caixun.archive import base, pgsearch
from caixun.archive.base import Archive, SearchHit, _now, _span
from caixun.archive.connection import Connection, Cursor
from caixun.archive.migrations import POSTGRES_MIGRATIONS, Migration
from caixun.errors import ArchiveError
from caixun.segment import IndexedText, Query, index_text, parse_query

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

__all__ = ["PostgresArchive", "connection_pool", "describe"]

# pg_advisory_xact_lock keys (any two numbers no other program on the server uses).
WRITE_LOCK = 0x6361_6978_756E  # "caixun": one writer at a time
MIGRATION_LOCK = WRITE_LOCK + 1  # one process upgrades the schema, the others wait
CONNECT_TIMEOUT = 10  # seconds
_FIRST_RANGE = 4  # times the window: the newest ids a search reads first
CHANNEL = "caixun_changes"  # NOTIFY after every write: publishers build without polling
# The identity columns (SQLite's rowids): their sequences follow copied rows.
_IDENTITIES = (("articles", "id"), ("changes", "seq"), ("security_names", "rowid"),
               ("outbox", "id"))


def describe(url: str) -> str:
    """The server and database a URL names, for messages: never its password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # a malformed URL: say no more than its scheme
        return "postgresql://…"
    host = parts.get("host") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


@functools.lru_cache(maxsize=2048)
def _placeholders(sql: str) -> str:
    """``?`` placeholders (the archive's SQL) as psycopg's ``%s``."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Connection:
    """A psycopg connection that runs the archive's ``?``-style SQL."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        return self.raw.execute(_placeholders(sql), tuple(parameters))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> None:
        rows = [tuple(row) for row in parameters]
        if rows:
            with self.raw.cursor() as cursor:
                cursor.executemany(_placeholders(sql), rows)

    def close(self) -> None:
        self.raw.close()


class PostgresArchive(Archive):
    """An archive in a PostgreSQL database. Not shared between threads."""

    _search_condition = ("EXISTS (SELECT 1 FROM search s WHERE s.article_id = a.id "
                         "AND s.terms @@ ?::tsquery)")
    _clock = "extract(epoch FROM statement_timestamp())::float8"
    _read_begin = "BEGIN ISOLATION LEVEL REPEATABLE READ"  # one state for every read in it
    _greatest = "greatest"

    def __init__(self, url: str, migrations: Sequence[Migration] = POSTGRES_MIGRATIONS, *,
                 read_only: bool = False, notice: Callable[[str], None] | None = None,
                 connection: psycopg.Connection[Any] | None = None) -> None:
        """``connection``: one to use (an autocommit connection to ``url``, e.g. from a
        pool: see :func:`connection_pool`), left open by :meth:`close`."""
        try:
            import psycopg
        except ImportError as exc:
            raise ArchiveError("a PostgreSQL archive needs psycopg: "
                               "pip install 'caixun[postgresql]'") from exc
        self.path = describe(url)
        self.location = url
        self._db_errors = (psycopg.Error,)
        self._init_state(read_only, notice)
        self._cursors = itertools.count()
        self._listening = False
        self._borrowed = connection is not None
        try:
            raw = connection or psycopg.connect(url, autocommit=True,
                                                connect_timeout=CONNECT_TIMEOUT,
                                                application_name="caixun")
        except psycopg.Error as exc:
            raise ArchiveError(f"{self.path}: cannot connect to the PostgreSQL server: "
                               f"{_reason(exc)}") from exc
        self._db: _Connection = _Connection(raw)
        try:
            # psycopg prepares a statement run five times; PostgreSQL would then
            # plan it once for any parameters, and a generic plan of the story-key
            # lookups scans the whole key table (4 ms an article at 3,000, growing).
            raw.execute("SET plan_cache_mode = force_custom_plan")
            if read_only:
                raw.execute("SET default_transaction_read_only = on")
                self._check_schema(migrations)
            else:
                self._migrate(migrations)
            self._start()
        except psycopg.errors.InsufficientPrivilege as exc:
            self.close()
            raise ArchiveError(f"{self.path}: the role may not do what caixun needs here "
                               f"({_reason(exc)}); grant it the rights on the database "
                               "(CREATE on its schema to make the tables)") from exc
        except psycopg.Error as exc:
            self.close()
            raise ArchiveError(f"{self.path}: cannot open the archive: {_reason(exc)}") from exc
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> PostgresArchive:
        return self

    def close(self) -> None:
        if not self._borrowed:
            self._db.close()
            return
        self._rollback()  # a borrowed connection goes back clean
        if self._listening:
            self._db.execute(f"UNLISTEN {CHANNEL}")

    # -- schema -------------------------------------------------------------------

    def _has_schema(self) -> bool:
        return self._db.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] \
            is not None

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        # Several fetchers may start at once on a new database: one migrates.
        self._db.execute("SELECT pg_advisory_lock(?)", (MIGRATION_LOCK,))
        try:
            super()._migrate(migrations)
        finally:
            self._db.execute("SELECT pg_advisory_unlock(?)", (MIGRATION_LOCK,))

    def _apply(self, migration: Migration) -> None:
        with self.transaction():  # DDL is transactional: a failed migration leaves nothing
            self._db.raw.execute(migration.sql)
            self._db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, _now()))

    # -- transactions -------------------------------------------------------------

    def _begin(self) -> None:
        self._db.execute("BEGIN")
        self._db.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
        # A write transaction looks keys up by their index. With LIMIT, the
        # planner may read the whole key table instead when its statistics
        # say some keys are common (event keys are: measured 4 ms a lookup at
        # 120,000 keys, against 0.02 ms by the index).
        self._db.execute("SET LOCAL enable_seqscan = off")
        self._writing = True

    def _join(self) -> None:
        if not getattr(self, "_writing", False):  # a write inside a snapshot: take the turn
            self._db.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
            self._db.execute("SET LOCAL enable_seqscan = off")  # as _begin
            self._writing = True

    def _commit(self) -> None:
        self._writing = False
        try:
            # Delivered at the commit, to every publisher waiting in wait_for_changes.
            self._db.execute(f"NOTIFY {CHANNEL}")
            self._db.execute("COMMIT")
        except self._db_errors as exc:
            self._rollback()
            raise ArchiveError(f"{self.path}: cannot commit: {_reason(exc)}") from exc

    def _rollback(self) -> None:
        from psycopg.pq import TransactionStatus

        self._writing = False
        self._outlets.clear()
        if self._db.raw.info.transaction_status != TransactionStatus.IDLE:
            try:
                self._db.execute("ROLLBACK")
            except self._db_errors:
                pass  # the error being raised says more

    def _snapshot_done(self) -> None:
        self._writing = False

    def _stream(self, sql: str, params: Sequence[Any] = (), size: int = 500) -> Iterator[Any]:
        # A server-side cursor lives in a transaction: the snapshot's, or its own.
        with self.snapshot():
            with self._db.raw.cursor(name=f"caixun_{next(self._cursors)}") as cursor:
                cursor.itersize = size
                cursor.execute(_placeholders(sql), tuple(params))
                yield from cursor

    def wait_for_changes(self, seconds: float) -> None:
        """Block until a writer commits (LISTEN/NOTIFY) or ``seconds`` pass."""
        if not self._listening:
            self._db.execute(f"LISTEN {CHANNEL}")
            self._listening = True
        for _ in self._db.raw.notifies(timeout=seconds, stop_after=1):
            pass

    def set_busy_timeout(self, seconds: float) -> None:
        # A writer waiting for its turn gives up after this (lock_not_available),
        # and caixun.archive.worker tries again.
        self._db.execute(f"SET lock_timeout = {max(0, int(seconds * 1000))}")

    def day_counts(self, utc_offset_seconds: int) -> list[tuple[str, int]]:
        return [(day, n) for day, n in self._db.execute(
            "SELECT to_char(to_timestamp(published_ts + ?) AT TIME ZONE 'UTC', 'YYYY-MM-DD') "
            "AS day, count(*) FROM articles GROUP BY day ORDER BY day DESC",
            (utc_offset_seconds,))]

    def _insert_copied(self, table: str, columns: Sequence[str],
                       rows: Sequence[Sequence[Any]]) -> None:
        # The ids come with the rows, generated-always identity columns included.
        self._db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) OVERRIDING SYSTEM "
                             f"VALUE VALUES ({', '.join('?' * len(columns))})", rows)

    def _after_copy(self) -> None:
        super()._after_copy()
        for table, column in _IDENTITIES:  # the next id follows the copied ones
            self._db.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                             f"coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)")
        self._db.execute("ANALYZE")  # the planner's figures for the copied rows

    # -- search index -------------------------------------------------------------

    def _index(self, article_id: int, title: str, digest: str, body_text: str,
               outlet_slug: str, published_ts: int, indexed: IndexedText | None = None) -> None:
        indexed = indexed or index_text(title, digest, body_text)
        terms, length = pgsearch.index_row(indexed)
        self._db.execute("INSERT INTO search (article_id, terms, doc_len, published_ts, "
                         "outlet_slug) VALUES (?, ?::tsvector, ?, ?, ?) ON CONFLICT (article_id) "
                         "DO UPDATE SET terms = excluded.terms, doc_len = excluded.doc_len, "
                         "published_ts = excluded.published_ts, "
                         "outlet_slug = excluded.outlet_slug",
                         (article_id, terms, length, published_ts, outlet_slug))
        self._keep_static_terms(article_id, indexed)

    def _unindex(self, article_id: int, title: str, digest: str, body_text: str,
                 outlet_slug: str, published_ts: int) -> None:
        self._db.execute("DELETE FROM search WHERE article_id = ?", (article_id,))

    def _redated(self, article_id: int, published_ts: int) -> None:
        self._db.execute("UPDATE search SET published_ts = ? WHERE article_id = ?",
                         (published_ts, article_id))

    def _clear_index(self) -> None:
        self._db.execute("DELETE FROM search")

    def reindex(self) -> int:
        # Filling an empty table and building its GIN index once is several times
        # faster than keeping the index up to date row by row.
        with self.transaction():
            self._db.execute("DROP INDEX IF EXISTS search_terms")
            count = super().reindex()
            self._db.execute("SET LOCAL maintenance_work_mem = '256MB'")
            self._db.execute("CREATE INDEX search_terms ON search USING GIN (terms)")
            self._db.execute("ANALYZE search")  # the planner's figures for the new rows
        return count

    def _search_value(self, match: str) -> str:
        return pgsearch.tsquery(match)

    def _match_ids(self, match: str) -> list[int]:
        return [row[0] for row in self._db.execute(
            "SELECT article_id FROM search WHERE terms @@ ?::tsquery ORDER BY article_id",
            (pgsearch.tsquery(match),))]

    def _search(self, query: str, outlet: str | None, since_ts: int | None,
                until_ts: int | None, limit: int, offset: int,
                now: float | None, stocks: tuple[str, ...] = ()) -> list[SearchHit]:
        parsed = parse_query(query)
        if stocks and not self._has_securities:
            return []
        span = _span(since_ts, until_ts)
        kept, params = self._kept(outlet or None, span, stocks)
        # The same filters on the search row's own copy: they combine with the terms
        # in the search table's indexes (the article's are checked too, by the join).
        filters, values = [], list[Any]()
        if outlet:
            filters.append("s.outlet_slug = ?")
            values.append(outlet)
        if span is not None:
            filters.append("s.published_ts >= ? AND s.published_ts < ?")
            values += span
        matches = _Matches(" AND ".join(filters), tuple(values), pgsearch.tsquery(parsed.match),
                           pgsearch.relaxed_tsquery(parsed.match), kept, params)
        window = self._newest(matches, max(base.RANK_WINDOW, offset + limit))
        if not window:
            return []
        ids = [article_id for article_id, _ in window]
        if len(window) >= base.RANK_WINDOW:  # broad: title hits, as SqliteArchive._relevance
            # The window's rows by id, then each row's terms checked: left to itself
            # the planner reads every title match of a common word from the GIN index,
            # each rechecked for its weight (0.4 s at 100,000 articles).
            relevance = {row[0]: -base._TITLE_HIT for row in self._db.execute(
                "SELECT article_id FROM (SELECT article_id, terms FROM search "
                "WHERE article_id = ANY(?::bigint[]) OFFSET 0) s WHERE terms @@ ?::tsquery",
                (ids, pgsearch.tsquery(parsed.title_match)))}
        else:
            relevance = self._bm25(parsed, ids)
        return self._hits(parsed, window, relevance, offset, limit, now)

    def _newest(self, matches: _Matches, size: int) -> list[tuple[int, int]]:
        """The ``size`` newest matches (highest ids): (article id, published_ts).

        Read from the newest ids back, in id ranges: a word most articles hold
        fills the window from the first few thousand ids, where reading all its
        matches to keep the newest cost 0.1 s at 100,000. The first range is
        :data:`_FIRST_RANGE` windows; the next one what the matches found so far
        say the rest takes (with half as much again), eight times the last at
        most; after a range without a match, all the ids left. Each range asks
        the GIN index again, and for a prefix (股*) that costs the same whatever
        the range: a query that few articles match is answered in two ranges,
        not four (A股: 1.3 s at 1,000,000 before).
        """
        first, last = self._db.execute(
            "SELECT (SELECT min(article_id) FROM search), "
            "(SELECT max(article_id) FROM search)").fetchone()
        found: list[tuple[int, int]] = []
        if first is None:
            return found
        high, span = last + 1, size * _FIRST_RANGE
        while len(found) < size and high > first:
            low = max(first, high - span)
            got = matches.read(self._db, low, high, size - len(found))
            found += got
            needed = (size - len(found)) * (high - low) * 3 // (2 * len(got)) if got else None
            high, span = low, low - first if needed is None else max(1, min(span * 8, needed))
        return found

    def _bm25(self, parsed: Query, ids: list[int]) -> dict[int, float]:
        """FTS5's bm25 of each article, from its terms' positions (see pgsearch.bm25)."""
        phrases = pgsearch.phrases(parsed.match)
        rows, total = self._db.execute(
            "SELECT count(*), coalesce(sum(doc_len), 0) FROM search").fetchone()
        counted: dict[str, int] = {}
        for phrase in phrases:
            query = pgsearch.phrase_tsquery(phrase)
            if query not in counted:
                counted[query] = int(self._db.execute(
                    "SELECT count(*) FROM search WHERE terms @@ ?::tsquery",
                    (query,)).fetchone()[0])
        hits = [counted[pgsearch.phrase_tsquery(p)] for p in phrases]
        exact = sorted({lexeme for p in phrases for lexeme in p.lexemes})
        prefixes = sorted({_like_prefix(p.lexemes[-1]) for p in phrases if p.prefix and p.lexemes})
        positions: dict[int, dict[str, list[tuple[int, str]]]] = {i: {} for i in ids}
        lengths: dict[int, int] = {}
        for article_id, length, lexeme, places, weights in self._db.execute(
                "SELECT s.article_id, s.doc_len, u.lexeme, u.positions, u.weights "
                "FROM search s, unnest(s.terms) u WHERE s.article_id = ANY(?::bigint[]) "
                "AND (u.lexeme = ANY(?::text[]) OR u.lexeme LIKE ANY(?::text[]))", (ids, exact, prefixes)):
            lengths[article_id] = length
            positions[article_id][lexeme] = list(zip(places, weights))
        for article_id, length in self._db.execute(
                "SELECT article_id, doc_len FROM search WHERE article_id = ANY(?::bigint[])", (ids,)):
            lengths[article_id] = length
        return {article_id: pgsearch.bm25(phrases, positions[article_id], lengths[article_id],
                                          hits, int(rows), int(total))
                for article_id in ids if article_id in lengths}


@dataclass(frozen=True, slots=True)
class _Matches:
    """A search's matches in a range of ids, as ``PostgresArchive._newest`` reads them.

    ``filters``: the outlet and days, on the search row ``s`` (its own copy of
    them), with ``filter_values``; ``exact``: the query (``pgsearch.tsquery``) and
    ``relaxed`` what its index answers alone (``pgsearch.relaxed_tsquery``);
    ``kept``: the condition on the article ``a`` (see ``Archive._kept``).
    """

    filters: str
    filter_values: tuple[Any, ...]
    exact: str
    relaxed: str
    kept: str
    kept_values: tuple[Any, ...]

    def read(self, db: Connection, low: int, high: int, limit: int) -> list[tuple[int, int]]:
        """The ``limit`` newest matches with ids from ``low`` to ``high`` (excluded)."""
        # "+ 0": not in the primary key's order, or PostgreSQL walks the key
        # backwards testing each row's terms, betting on an early LIMIT, and reads
        # a million rows for a word no article holds (4 s); this way it asks the
        # GIN index and sorts what it finds.
        sql = ("SELECT s.article_id, a.published_ts FROM search s JOIN articles a "
               f"ON a.id = s.article_id WHERE {self._rows()}{self._and_kept()} "
               "AND s.article_id >= ? "
               "AND s.article_id < ? ORDER BY s.article_id + 0 DESC LIMIT ?")
        params = (*self.filter_values, self.exact, *self.kept_values, low, high, limit)
        if self.exact != self.relaxed and _checks_every_match(db, sql, params):
            return self._checked(db, low, high, limit)
        return [(row[0], row[1]) for row in db.execute(sql, params)]

    def _rows(self) -> str:
        # The terms last: of conditions equally dear to its planner, PostgreSQL checks
        # them in the order written, and reading a row's terms is dearer than it thinks.
        return f"{self.filters} AND s.terms @@ ?::tsquery" if self.filters \
            else "s.terms @@ ?::tsquery"

    def _and_kept(self) -> str:
        return f" AND {self.kept}" if self.kept else ""

    def _checked(self, db: Connection, low: int, high: int, limit: int) -> list[tuple[int, int]]:
        """:meth:`read` in two steps: the rows of the range that the GIN index gives for
        the relaxed query, then the exact query checked in those only, newest first."""
        ids = sorted((row[0] for row in db.execute(
            f"SELECT s.article_id FROM search s WHERE {self._rows()} AND s.article_id >= ? "
            "AND s.article_id < ?", (*self.filter_values, self.relaxed, low, high))),
            reverse=True)
        found: list[tuple[int, int]] = []
        while ids and len(found) < limit:
            # a quarter more than are wanted at a time: most rows holding a phrase's
            # grams hold the phrase
            size = (limit - len(found)) * 5 // 4 + 16
            part, ids = ids[:size], ids[size:]
            found += [(row[0], row[1]) for row in db.execute(
                "SELECT s.article_id, a.published_ts FROM (SELECT article_id, terms FROM search "
                "WHERE article_id = ANY(?::bigint[]) OFFSET 0) s JOIN articles a "
                f"ON a.id = s.article_id WHERE s.terms @@ ?::tsquery{self._and_kept()} "
                "ORDER BY s.article_id DESC LIMIT ?",
                (part, self.exact, *self.kept_values, limit - len(found)))]
        return found


def _checks_every_match(db: Connection, sql: str, params: Sequence[Any]) -> bool:
    """Whether PostgreSQL would check a phrase or weight in every row its GIN index gives.

    It does when it takes the rows of the query's lexemes from the GIN index and
    the id range as a filter: each row's terms are read whole (17,000 rows, 0.1-0.3 s
    at 100,000, for each range of ids), though few are in the range. It plans so
    when it thinks the lexemes rare, as it does of a phrase of common grams. Its
    other plans (the range by the primary key, each row checked; both bitmaps
    together) read the rows of the range only.
    """
    [[plans]] = db.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchall()
    nodes = [plans[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        children = node.get("Plans", [])
        if (node["Node Type"] == "Bitmap Heap Scan" and "@@" in node.get("Recheck Cond", "")
                and [c["Node Type"] for c in children] == ["Bitmap Index Scan"]):
            return True
        nodes += children
    return False


def connection_pool(url: str, size: int) -> psycopg_pool.ConnectionPool[Any]:
    """Up to ``size`` read-only connections to ``url``, made as needed and kept (the
    search API's: a connection per search would cost more than most searches)."""
    try:
        from psycopg_pool import ConnectionPool
    except ImportError as exc:
        raise ArchiveError("a PostgreSQL archive needs psycopg_pool: "
                           "pip install 'caixun[postgresql]'") from exc

    def read_only(conn: psycopg.Connection[Any]) -> None:
        conn.execute("SET default_transaction_read_only = on")

    return ConnectionPool(url, min_size=0, max_size=size, open=True, configure=read_only,
                          check=ConnectionPool.check_connection,
                          kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT,
                                  "application_name": "caixun"})


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _reason(exc: BaseException) -> str:
    """A driver error in one line (psycopg's messages span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__

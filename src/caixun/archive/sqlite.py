"""The SQLite archive: WAL mode, numbered migrations, idempotent writes.

Storing an article whose ``uid`` is known updates it in place; when its title
or body changes, the previous title and body are kept in ``article_versions``.
Every new, updated or deleted article is recorded in ``changes``, which the
publisher reads to rebuild only what changed.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

from caixun.archive import securities as tags
from caixun.archive import stories
from caixun.archive import watches as watching
from caixun.archive.facets import article_facets, filter_match
from caixun.archive.migrations import MIGRATIONS, Migration
from caixun.dedup import Candidate
from caixun.errors import ArchiveError
from caixun.identity import stored_identity
from caixun.publish.paths import article_path, beijing_date
from caixun.slugs import safe_slug
from caixun.model import Article, PostStyle
from caixun.securities import Scanned, SecurityName, Tagger
from caixun.watch import Notification, Watch
from caixun.normalize import BEIJING, EARLIEST_TS, LATEST_TS, check_published
from caixun.segment import STATIC_VERSION
from caixun.segment import VERSION as SEGMENT_VERSION
from caixun.segment import IndexedText, Query, index_text, parse_query, snippet

__all__ = ["ArticleRef", "ArticleVersion", "BuildState", "Change", "SearchHit",
           "SourceHealth", "SqliteArchive", "StoreResult"]

_CONTENT_COLUMNS = (
    "file_id", "outlet", "outlet_slug", "title", "published_at", "published_ts",
    "digest", "body_html", "body_text", "body_raw", "url", "url_key", "share_url",
    "content_hash", "extra", "post_style", "identity",
)
_ARTICLE_COLUMNS = "uid, fetched_at, " + ", ".join(_CONTENT_COLUMNS)
# Before migration 9 (an archive opened with fewer migrations, as tests and
# benchmarks do) there is no identity column.
_OLD_CONTENT_COLUMNS = _CONTENT_COLUMNS[:-1]
_OLD_ARTICLE_COLUMNS = "uid, fetched_at, " + ", ".join(_OLD_CONTENT_COLUMNS)
_SELECT_REF = ("SELECT id, uid, title, outlet, outlet_slug, published_ts, file_id "
               "FROM articles")


IDENTITY_VERSION = "1"  # bump when caixun.identity reads identities differently


class StoreResult(Enum):
    NEW = "new"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    MERGED = "merged"  # an exact copy of an article of the same outlet: its uid became an alias


@dataclass(frozen=True, slots=True)
class ArticleVersion:
    version: int
    title: str
    body_html: str
    body_text: str
    replaced_at: str


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    uid: str
    kind: str
    outlet_slug: str
    published_ts: int
    old_outlet_slug: str | None = None  # set when an update moved the article
    old_published_ts: int | None = None
    article_id: int | None = None
    relink: bool = False  # only the article's story changed (its page lists the others)


def _change(seq: int, uid: str, kind: str, slug: str, ts: int, old_slug: str | None,
            old_ts: int | None, article_id: int | None, relink: int) -> Change:
    return Change(seq, uid, kind, slug, ts, old_slug, old_ts, article_id, bool(relink))


class ArticleRef(NamedTuple):
    """What a list page needs of an article: no body."""

    id: int
    uid: str
    title: str
    outlet: str
    outlet_slug: str
    published_ts: int
    file_id: str


@dataclass(frozen=True, slots=True)
class Stories:
    """Stories of several articles, for pages that link them.

    ``members``: article id → every article of its story, oldest first (only
    for stories with more than one); ``originals``: article id → the article
    it is an exact copy of.
    """

    members: Mapping[int, tuple[ArticleRef, ...]]
    originals: Mapping[int, int]

    def others(self, article_id: int) -> list[ArticleRef]:
        """The other articles of an article's story."""
        return [r for r in self.members.get(article_id, ()) if r.id != article_id]


@dataclass(frozen=True, slots=True)
class SearchHit:
    ref: ArticleRef
    score: float  # higher is better
    snippet: str  # HTML: escaped text with the hits in <mark>


# bm25 weights of title_words, title_grams, text_words, text_grams: a hit in the
# title counts as much as several in the body.
_FIELD_WEIGHTS = (6.0, 6.0, 1.0, 1.0, 0.0)  # the facets only filter
_SEARCH_COLUMNS = ("title_words", "title_grams", "text_words", "text_grams", "facets")
# The index row's statements, with the facets column (schema 14) and without: made once.
_INDEX_ROW = {facets: f"INSERT INTO search (rowid, {', '.join(_SEARCH_COLUMNS[:4 + facets])}) "
                      f"VALUES (?{', ?' * (4 + facets)})" for facets in (False, True)}
_UNINDEX_ROW = {facets: "INSERT INTO search (search, rowid, "
                        f"{', '.join(_SEARCH_COLUMNS[:4 + facets])}) "
                        f"VALUES ('delete', ?{', ?' * (4 + facets)})" for facets in (False, True)}
# Recency: a bonus that halves after _RECENCY_SCALE seconds (a week), worth
# about as much as one more title hit for today's news.
_RECENCY_WEIGHT = 3.0
_RECENCY_SCALE = 7 * 86400.0
# A query matching more articles than this is ranked among its newest matches
# only: ranking every one of 100,000 matches costs a quarter of a second, and
# the recency blend would bury the old ones anyway.
RANK_WINDOW = 1000
_TITLE_HIT = 6.0  # a title hit in a broad query's window, on bm25's scale with the weights above
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


_TAGGED = "id IN (SELECT article_id FROM article_securities WHERE code = ?)"


def _filter_condition(outlet: str | None, span: tuple[int, int] | None,
                      stocks: Sequence[str] = ()) -> tuple[str, tuple[Any, ...]]:
    """The articles an outlet, time range and securities filter keep, as a WHERE condition.

    Both indexes of the articles table cover the first two (articles_published,
    articles_outlet_published): the ids come from the index alone; a security's
    ids from article_securities' primary key.
    """
    parts, values = [_TAGGED] * len(stocks), list[Any](stocks)
    if outlet:
        parts.append("outlet_slug = ?")
        values.append(outlet)
    if span is not None:
        parts.append("published_ts >= ? AND published_ts < ?")
        values += span
    return " AND ".join(parts), tuple(values)


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


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """A source's record: how its polls went and when the next one is due."""

    name: str
    last_attempt: str | None = None
    last_success: str | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    next_poll: float = 0.0  # Unix time
    lists: dict[str, dict[str, str]] = field(default_factory=dict)  # conditional-GET state


@dataclass(frozen=True, slots=True)
class BuildState:
    last_seq: int
    fingerprint: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _fetched(article: Article) -> str | None:
    return article.fetched_at.isoformat() if article.fetched_at else None


def _sane_time(stamp: str | None) -> datetime | None:
    """An ISO time from the archive, if it is one a page can show."""
    try:
        return check_published(datetime.fromisoformat(stamp)) if stamp else None
    except ValueError:
        return None


def _content_row(article: Article) -> tuple[Any, ...]:
    published = article.published_at.astimezone(BEIJING)
    style = article.post_style
    return (
        article.file_id, article.outlet, article.outlet_slug, article.title,
        published.isoformat(), int(published.timestamp()), article.digest,
        article.body_html, article.body_text, article.body_raw, article.url,
        article.url_key, article.share_url, article.content_hash,
        json.dumps(dict(article.extra), ensure_ascii=False, sort_keys=True),
        json.dumps(style.to_json(), ensure_ascii=False) if style else None,
        identity_of(article),
    )


def output_paths(slug: str, published_ts: int, file_id: str,
                 style: PostStyle | None) -> set[str]:
    """The files an article is written to: its page, and its post (``publish.jekyll``)."""
    day = style.file_date if style is not None and style.file_date else \
        beijing_date(published_ts).isoformat()
    return {article_path(slug, published_ts, file_id), f"{day}-{file_id}.md"}


def _style(raw: str | None) -> PostStyle | None:
    return PostStyle.from_json(json.loads(raw)) if raw else None


def identity_of(article: Article) -> str:
    """The article's identity: as its source gave it, else read off the article."""
    return article.identity or stored_identity(
        file_id=article.file_id, url=article.url, share_url=article.share_url,
        extra=article.extra, post_style=article.post_style is not None)


def _article_from_row(row: Sequence[Any]) -> Article:
    uid, fetched_at, *content = row
    values = dict(zip(_CONTENT_COLUMNS, content))
    values.setdefault("identity", "")
    style = values["post_style"]
    return Article(
        uid=uid,
        outlet=values["outlet"],
        outlet_slug=values["outlet_slug"],
        title=values["title"],
        published_at=datetime.fromisoformat(values["published_at"]),
        file_id=values["file_id"],
        body_html=values["body_html"],
        body_text=values["body_text"],
        digest=values["digest"],
        url=values["url"],
        share_url=values["share_url"],
        fetched_at=datetime.fromisoformat(fetched_at) if fetched_at else None,
        body_raw=values["body_raw"],
        extra=json.loads(values["extra"]),
        post_style=PostStyle.from_json(json.loads(style)) if style else None,
        identity=values["identity"],
    )


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
REINDEX_NOTICE_FROM = 20_000  # articles: below, a rebuilt index takes seconds
REINDEX_RATE = 2_000  # articles a second (1,000,000 in 8 min on 2 cores)


class SqliteArchive:
    """An archive in one SQLite file. Not shared between threads."""

    def __init__(self, path: str | Path, migrations: Sequence[Migration] = MIGRATIONS, *,
                 read_only: bool = False, notice: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._notice = notice  # told before an upgrade that takes a while
        self._depth = 0
        self._outlets: dict[str, str] = {}
        self._recent: stories.Recent = {}  # see stories.Recent
        self._relinked: dict[int, None] = {}  # see _log_story_change
        self._stale_index = False
        self._tagger: Tagger | None = None  # loaded when the first article is tagged
        self._watching: list[tuple[Watch, str | None]] = []  # see use_watches
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
            self._has_stories = self.schema_version >= 8  # stories, aliases, relinks
            self._has_identity = self.schema_version >= 9
            self._has_static_terms = self.schema_version >= 11
            self._has_securities = self.schema_version >= 12
            self._has_watches = self.schema_version >= 13
            self._has_facets = self.schema_version >= 14
            self._columns = _CONTENT_COLUMNS if self._has_identity else _OLD_CONTENT_COLUMNS
            self._article_columns = (_ARTICLE_COLUMNS if self._has_identity
                                     else _OLD_ARTICLE_COLUMNS)
            self._select_article = f"SELECT {self._article_columns} FROM articles"
            if self.schema_version >= 5:
                self._ensure_search_index()
            # Read-only, nothing is repaired: stories an older clusterer made
            # are read as they are; dates no page can show are refused, as
            # every reader would trip over them.
            if self._has_stories and not read_only:
                self._ensure_stories()
            if self._has_identity and not read_only:
                self._ensure_identities()
            self.redated = self._refuse_bad_dates() if read_only else self._repair_dates()
        except sqlite3.Error as exc:
            raise ArchiveError(f"{self.path}: cannot open the archive: {exc}") from exc

    def _check_schema(self, migrations: Sequence[Migration]) -> None:
        """Read-only: the schema must be the one this caixun writes, as nothing is upgraded.

        An older schema is refused rather than read as well as possible: every
        query is written for the current tables, and one writing command
        upgrades the file in a moment.
        """
        known = max((m.version for m in migrations), default=0)
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                            "AND name = 'schema_migrations'").fetchone() is None:
            raise ArchiveError(f"{self.path} is not a caixun archive (it has no schema); "
                               "run `caixun import` or `caixun fetch` first")
        current = self.schema_version
        if current > known:
            raise ArchiveError(f"{self.path}: schema version {current} is newer than this "
                               f"caixun knows ({known}); upgrade caixun")
        if current < known:
            raise ArchiveError(
                f"{self.path}: the archive's schema is version {current}, this caixun reads "
                f"version {known}; run a command that writes to it once (`caixun import`, "
                "`caixun fetch` or `caixun build`) to upgrade it")

    # -- lifecycle ----------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; nested calls join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._recent.clear()  # what another process wrote since is not in it
        self._relinked.clear()
        self._depth = 1
        try:
            yield
            self._flush_relinks()
        except BaseException:
            self._rollback()
            raise
        else:
            self._commit()
        finally:
            self._depth = 0

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

    # -- schema -------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        row = self._db.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        current = self.schema_version
        known = max((m.version for m in migrations), default=0)
        if current > known:
            raise ArchiveError(
                f"{self.path}: schema version {current} is newer than this caixun "
                f"knows ({known}); upgrade caixun"
            )
        for migration in migrations:
            if migration.version > current:
                self._apply(migration)

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

    # -- writing ------------------------------------------------------------

    def store(self, article: Article) -> StoreResult:
        """Insert or update one article; idempotent for the same content."""
        try:
            with self.transaction():
                return self._store(article)
        except sqlite3.Error as exc:
            raise ArchiveError(f"{self.path}: cannot store {article.uid}: {exc}") from exc

    def store_many(self, articles: Iterable[Article],
                   indexed: Sequence[IndexedText] | None = None,
                   prints: Sequence[Candidate] | None = None,
                   scans: Sequence[Scanned] | None = None) -> list[StoreResult]:
        """Store articles in one transaction (all or none).

        ``indexed`` may give each article's search tokens, already segmented
        (by ``segment.index_text``), ``prints`` its fingerprint
        (``dedup.Candidate.of``) and ``scans`` what tagging needs no names for
        (``archive.securities.scan_article``), all e.g. made in worker processes.
        """
        try:
            with self.transaction():
                batch = list(articles)
                tokens = indexed if indexed is not None else [None] * len(batch)
                found = prints if prints is not None else [None] * len(batch)
                scanned = scans if scans is not None else [None] * len(batch)
                return [self._store(a, i, c, t)
                        for a, i, c, t in zip(batch, tokens, found, scanned, strict=True)]
        except sqlite3.Error as exc:
            raise ArchiveError(f"{self.path}: cannot store articles: {exc}") from exc

    def _store(self, article: Article, indexed: IndexedText | None = None,
               candidate: Candidate | None = None, scanned: Scanned | None = None
               ) -> StoreResult:
        try:  # the sources and the post reader check it; this keeps the archive showable
            check_published(article.published_at)
        except ValueError as exc:
            raise ArchiveError(f"{self.path}: cannot store {article.uid}: "
                               f"publication time {exc}") from exc
        self._ensure_outlet(article.outlet_slug, article.outlet)
        content = _content_row(article)[:len(self._columns)]
        existing = self._db.execute(
            "SELECT id, version, title, body_html, body_text, "
            + ", ".join(self._columns) + " FROM articles WHERE uid = ?",
            (article.uid,),
        ).fetchone()
        if existing is None:
            return self._store_new(article, content, indexed, candidate, scanned)
        return self._store_known(article, content, existing, indexed, candidate, scanned)

    def _store_new(self, article: Article, content: tuple[Any, ...],
                   indexed: IndexedText | None, candidate: Candidate | None,
                   scanned: Scanned | None = None) -> StoreResult:
        """An unknown uid: an alias of an article it is (by identity or as a copy), or new."""
        if self._has_identity:
            owner = self._owner(article.uid, content[-1])
            if owner is not None:
                self._add_alias(article, owner)
                return StoreResult.MERGED
        lookup = None
        if self._has_stories:
            lookup = stories.look_up(self._db, candidate or Candidate.of(article),
                                     recent=self._recent)
            if self._merge(article, lookup):
                return StoreResult.MERGED
        if self._has_identity and not article.imported:
            article, content = self._unclashed(article, content)
        now = _now()
        cursor = self._db.execute(
            "INSERT INTO articles (uid, fetched_at, stored_at, updated_at, "
            + ", ".join(self._columns) + ") VALUES (?, ?, ?, ?, "
            + ", ".join("?" * len(self._columns)) + ")",
            (article.uid, _fetched(article), now, now, *content),
        )
        article_id = cursor.lastrowid or 0
        self._index(article_id, article.title, article.digest, article.body_text,
                    content[2], content[5], indexed)
        seq = self._log_change(article_id, article.uid, "new", content[2], content[5])
        codes = self._tag(article_id, article, seq, content[5], new=True, scanned=scanned)
        if self._watching:
            self._notify(article_id, article, codes)
        if lookup is not None:
            placed = stories.place(self._db, article_id, lookup, self._recent)
            self._log_story_change(placed.others)
        return StoreResult.NEW

    def _store_known(self, article: Article, content: tuple[Any, ...], existing: Sequence[Any],
                     indexed: IndexedText | None, candidate: Candidate | None,
                     scanned: Scanned | None = None) -> StoreResult:
        """A known uid: unchanged, or updated in place (the old title and body kept)."""
        now, fetched = _now(), _fetched(article)
        article_id, version, old_title, old_html, old_text = existing[:5]
        # The file id an article was given stays (see _unclashed): its URL.
        content = (existing[5], *content[1:])
        if tuple(existing[5:]) == content:
            return StoreResult.UNCHANGED
        if (old_title, old_html) != (article.title, article.body_html):
            self._db.execute(
                "INSERT INTO article_versions VALUES (?, ?, ?, ?, ?, ?)",
                (article_id, version, old_title, old_html, old_text, now),
            )
            version += 1
        old_digest, old_slug, old_ts = existing[5 + 6], existing[5 + 2], existing[5 + 5]
        if (old_title, old_digest, old_text, old_slug, old_ts) != (
                article.title, article.digest, article.body_text, content[2], content[5]):
            self._unindex(article_id, old_title, old_digest, old_text, old_slug, old_ts)
            self._index(article_id, article.title, article.digest, article.body_text,
                        content[2], content[5], indexed)
        if self._has_stories and (old_title, old_digest, old_text, existing[5 + 11]) != (
                article.title, article.digest, article.body_text, article.url_key):
            stories.replace_print(self._db, article_id, candidate or Candidate.of(article))
            self._recent.pop(article_id, None)
        self._recent.pop(article_id, None)  # its time may have changed
        assignments = ", ".join(f"{column} = ?" for column in self._columns)
        self._db.execute(
            f"UPDATE articles SET {assignments}, updated_at = ?, version = ?, "
            "fetched_at = coalesce(?, fetched_at) WHERE id = ?",
            (*content, now, version, fetched, article_id),
        )
        old_slug, old_ts = existing[5 + 2], existing[5 + 5]
        moved = (old_slug, old_ts) != (content[2], content[5])
        seq = self._log_change(article_id, article.uid, "update", content[2], content[5],
                               (old_slug, old_ts) if moved else None)
        self._tag(article_id, article, seq, content[5], old_ts, scanned=scanned)
        if self._has_stories:  # the story's other pages show this one's title and link
            self._log_story_change(stories.others(self._db, article_id))
        return StoreResult.UPDATED

    def _merge(self, article: Article, lookup: stories.Lookup) -> bool:
        """Fold a fetched exact copy into the article of the same outlet it copies.

        A source that lists one article again under a new id (a feed with a
        new guid for the same link) would otherwise list it twice on the
        outlet's pages. Articles written as posts (imported, or fetched by a
        legacy family) are never merged this way: two ids were two posts of the
        old site, each with its URL (one id's copies are one by identity, see
        ``_owner``).
        """
        if article.post_style is not None:
            return False
        if not self._has_identity:
            known = self._db.execute("SELECT article_id FROM article_aliases WHERE uid = ?",
                                     (article.uid,)).fetchone()
            if known is not None:
                return True
        original = lookup.original()
        if original is None:
            return False
        row = self._db.execute("SELECT coalesce(duplicate_of, id), outlet_slug FROM articles "
                               "WHERE id = ?", (original.ref,)).fetchone()
        if row is None or row[1] != article.outlet_slug:
            return False
        self._db.execute("INSERT INTO article_aliases (uid, article_id) VALUES (?, ?)",
                         (article.uid, row[0]))
        return True

    # -- identity -------------------------------------------------------------------

    def _owner(self, uid: str, identity: str) -> int | None:
        """The article an unknown uid belongs to: as an alias, or by identity."""
        row = self._db.execute("SELECT article_id FROM article_aliases WHERE uid = ?",
                               (uid,)).fetchone()
        if row is None and identity:
            # The term repeats the partial index's WHERE: without it SQLite cannot
            # tell that the index covers a bound parameter, and scans the table.
            row = self._db.execute("SELECT id FROM articles WHERE identity = ? "
                                   "AND identity <> ''", (identity,)).fetchone()
        return int(row[0]) if row is not None else None

    def _add_alias(self, article: Article, owner: int) -> None:
        """Record ``article``'s uid as another name of article ``owner``.

        An imported post had a page on the old site: its place is kept, and
        a build writes a page there that leads to the article (``redirects``).
        A fetched item's place never had a page.
        """
        place: tuple[str | None, int | None, str | None] = (None, None, None)
        if article.imported:
            place = (article.outlet_slug, int(article.published_at.timestamp()),
                     article.file_id)
        cursor = self._db.execute(
            "INSERT INTO article_aliases (uid, article_id, outlet_slug, published_ts, file_id) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (uid) DO NOTHING", (article.uid, owner, *place))
        if cursor.rowcount and place[0] is not None:
            # The build learns of the new page from the change log.
            self._db.execute(
                "INSERT INTO changes (uid, kind, outlet_slug, published_ts, at, article_id, "
                "relink) VALUES (?, 'update', ?, ?, ?, ?, 1)",
                (article.uid, place[0], place[1], _now(), owner))

    def _unclashed(self, article: Article,
                   content: tuple[Any, ...]) -> tuple[Article, tuple[Any, ...]]:
        """The fetched article with a file id no other article's page or post has.

        Two sources may use the same native id (``cls:3152710`` and
        ``wallstreetcn:3152710``) on one day: the second gets the source's name
        after its id, so no two articles map to one page or post file.
        """
        file_id = self._free_file_id(article)
        if file_id == article.file_id:
            return article, content
        return article.evolve(file_id=file_id), (file_id, *content[1:])

    def _free_file_id(self, article: Article) -> str:
        if not self._clashes_with(article, article.file_id):
            return article.file_id
        prefix = safe_slug(article.uid.split(":", 1)[0]) or "item"
        number = 1
        file_id = f"{article.file_id}-{prefix}"
        while self._clashes_with(article, file_id):
            number += 1
            file_id = f"{article.file_id}-{prefix}{number}"
        return file_id

    def _clashes_with(self, article: Article, file_id: str) -> bool:
        mine = output_paths(article.outlet_slug, int(article.published_at.timestamp()),
                            file_id, article.post_style)
        return any(not mine.isdisjoint(output_paths(slug, ts, file_id, _style(raw)))
                   for slug, ts, raw in self._db.execute(
                       "SELECT outlet_slug, published_ts, post_style FROM articles "
                       "WHERE file_id = ? AND uid <> ?", (file_id, article.uid)))

    def _separate_clashes(self) -> None:
        """Give each fetched article that shares a page or post file a file id of its own.

        Older versions let two sources' items of one native id and day share
        a file (one overwrote the other). The later stored one moves; an
        imported post never does (its file name is the user's).
        """
        for _, first, uid in self.output_clashes():
            article = self.get(uid)
            if article is None or article.imported:
                continue
            file_id = self._free_file_id(article)
            if file_id != article.file_id:
                row = self._db.execute("UPDATE articles SET file_id = ? WHERE uid = ? "
                                       "RETURNING id, outlet_slug, published_ts",
                                       (file_id, uid)).fetchone()
                self._log_change(row[0], uid, "update", row[1], row[2])
                # The page both were written to is the first one's now: rewrite it,
                # so no build removes it as the moved one's old page.
                kept = self._db.execute("SELECT id, uid, 'update', outlet_slug, published_ts "
                                        "FROM articles WHERE uid = ?", (first,)).fetchone()
                self._log_change(*kept)

    def output_clashes(self, uids: Iterable[str] | None = None) -> list[tuple[str, str, str]]:
        """Files two articles would both be written to: (file, one uid, the other).

        A page (``<outlet>/<YYYY>/<MM>/<DD>/<file id>.html``) or a post
        (``<date>-<file id>.md``); only articles sharing a file id can clash.
        ``uids``: only clashes of these articles (an incremental build's).
        """
        if uids is None:
            shared = [r[0] for r in self._db.execute(
                "SELECT file_id FROM articles GROUP BY file_id HAVING count(*) > 1")]
        else:
            shared = sorted({ref.file_id for ref in self.refs_by_uid(uids)})
        found: list[tuple[str, str, str]] = []
        for start in range(0, len(shared), 500):
            part = shared[start:start + 500]
            owners: dict[str, str] = {}
            for uid, slug, ts, file_id, raw in self._db.execute(
                    "SELECT uid, outlet_slug, published_ts, file_id, post_style FROM articles "
                    f"WHERE file_id IN ({','.join('?' * len(part))}) ORDER BY id", part):
                for path in sorted(output_paths(slug, ts, file_id, _style(raw))):
                    if path in owners and owners[path] != uid:
                        found.append((path, owners[path], uid))
                    owners.setdefault(path, uid)
        return found

    def redirects(self, uids: Iterable[str] | None = None) -> list[tuple[str, ArticleRef]]:
        """(page path, the article it leads to) for the aliases that had a page elsewhere.

        Only places no article's page takes; ``uids``: only these aliases.
        """
        if not self._has_identity:
            return []
        where, params = "l.outlet_slug IS NOT NULL", list[Any]()
        if uids is not None:
            wanted = sorted(set(uids))
            if not wanted:
                return []
            where += f" AND l.uid IN ({','.join('?' * len(wanted))})"
            params = list(wanted)
        out = []
        for slug, ts, file_id, *ref in self._db.execute(
                "SELECT l.outlet_slug, l.published_ts, l.file_id, a.id, a.uid, a.title, a.outlet, "
                "a.outlet_slug, a.published_ts, a.file_id FROM article_aliases l "
                f"JOIN articles a ON a.id = l.article_id WHERE {where} ORDER BY l.uid", params):
            path = article_path(slug, ts, file_id)
            if not any(article_path(slug, taken, file_id) == path for (taken,) in self._db.execute(
                    "SELECT published_ts FROM articles WHERE file_id = ? AND outlet_slug = ?",
                    (file_id, slug))):
                out.append((path, ArticleRef(*ref)))
        return out

    def _ensure_identities(self) -> None:
        """Once per identity rule: give older articles their identity, merge twins.

        Before identities, one East Money article fetched from two lists (or
        imported as a post and fetched) was stored twice. Each group of such
        twins becomes one article: an imported post if there is one (its file
        name is the user's), else the first stored. The others become its
        aliases, keeping their pages as redirects, their contents as versions.
        """
        row = self._db.execute(
            "SELECT value FROM search_meta WHERE key = 'identity_version'").fetchone()
        if row is not None and row[0] == IDENTITY_VERSION:
            return
        with self.transaction():
            self._backfill_identities()
            twins = self._db.execute(
                "SELECT identity FROM articles WHERE identity <> '' GROUP BY identity "
                "HAVING count(*) > 1").fetchall()
            for (identity,) in twins:
                self._merge_twins(identity)
            self._separate_clashes()
            self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS articles_identity "
                             "ON articles(identity) WHERE identity <> ''")
            self._db.execute(
                "INSERT INTO search_meta (key, value) VALUES ('identity_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (IDENTITY_VERSION,))

    def _backfill_identities(self) -> None:
        last = 0
        while rows := self._db.execute(  # by id ranges: memory stays flat in N
                "SELECT id, file_id, url, share_url, extra, post_style FROM articles "
                "WHERE id > ? AND identity = '' ORDER BY id LIMIT 5000", (last,)).fetchall():
            found = [(stored_identity(file_id=file_id, url=url, share_url=share_url,
                                      extra=json.loads(extra or "{}"),
                                      post_style=style is not None), article_id)
                     for article_id, file_id, url, share_url, extra, style in rows]
            self._db.executemany("UPDATE articles SET identity = ? WHERE id = ?",
                                 [pair for pair in found if pair[0]])
            last = rows[-1][0]

    def _merge_twins(self, identity: str) -> None:
        rows = self._db.execute(
            "SELECT id, uid, post_style IS NOT NULL AND fetched_at IS NULL FROM articles "
            "WHERE identity = ? ORDER BY id", (identity,)).fetchall()
        keeper = next((r for r in rows if r[2]), rows[0])
        for twin_id, twin_uid, _ in rows:
            if twin_id != keeper[0]:
                self._fold(twin_id, twin_uid, keeper[0])

    def _fold(self, twin_id: int, twin_uid: str, keeper: int) -> None:
        """Make article ``twin_id`` an alias of ``keeper``, its contents versions of it."""
        twin = self._db.execute(
            "SELECT title, digest, body_html, body_text, outlet_slug, published_ts, file_id, "
            "updated_at FROM articles WHERE id = ?", (twin_id,)).fetchone()
        title, digest, body_html, body_text, slug, ts, file_id, updated = twin
        self._keep_versions(twin_id, (title, body_html, body_text, updated), keeper)
        self._db.execute("UPDATE article_aliases SET article_id = ? WHERE article_id = ?",
                         (keeper, twin_id))
        self._db.execute(
            "INSERT INTO article_aliases (uid, article_id, outlet_slug, published_ts, file_id) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (uid) DO UPDATE SET "
            "article_id = excluded.article_id", (twin_uid, keeper, slug, ts, file_id))
        self._unindex(twin_id, title, digest, body_text, slug, ts)
        others = stories.forget(self._db, twin_id)
        self._recent.clear()
        # A delete for the build: the twin's page gives way to a redirect.
        seq = self._log_change(twin_id, twin_uid, "delete", slug, ts)
        if self._has_securities:
            tags.forget(self._db, twin_id, seq, ts)
        self._db.execute("DELETE FROM articles WHERE id = ?", (twin_id,))
        self._log_story_change([i for i in others if i != keeper])
        self._log_change(keeper, *self._db.execute(
            "SELECT uid, 'update', outlet_slug, published_ts FROM articles WHERE id = ?",
            (keeper,)).fetchone())

    def _keep_versions(self, twin_id: int, current: tuple[str, str, str, str],
                       keeper: int) -> None:
        """The twin's past and present contents become versions of the keeper."""
        number, title, html = self._db.execute(
            "SELECT version, title, body_html FROM articles WHERE id = ?", (keeper,)).fetchone()
        seen = {(title, html)} | set(self._db.execute(
            "SELECT title, body_html FROM article_versions WHERE article_id = ?", (keeper,)))
        history = self._db.execute(
            "SELECT title, body_html, body_text, replaced_at FROM article_versions "
            "WHERE article_id = ? ORDER BY version", (twin_id,)).fetchall()
        for old_title, old_html, old_text, replaced in [*history, current]:
            if (old_title, old_html) in seen:
                continue
            seen.add((old_title, old_html))
            self._db.execute("INSERT INTO article_versions VALUES (?, ?, ?, ?, ?, ?)",
                             (keeper, number, old_title, old_html, old_text, replaced))
            number += 1
        self._db.execute("UPDATE articles SET version = ? WHERE id = ?", (number, keeper))

    def aliases(self, uid: str) -> list[str]:
        """The other uids of an article: fetched copies, other lists, imported posts."""
        return [r[0] for r in self._db.execute(
            "SELECT l.uid FROM article_aliases l JOIN articles a ON a.id = l.article_id "
            "WHERE a.uid = ? ORDER BY l.uid", (uid,))]

    def _ensure_outlet(self, slug: str, name: str) -> None:
        if self._outlets.get(slug) == name:
            return
        self._db.execute(
            "INSERT INTO outlets (slug, name) VALUES (?, ?) "
            "ON CONFLICT (slug) DO UPDATE SET name = excluded.name",
            (slug, name),
        )
        self._outlets[slug] = name

    def _log_change(self, article_id: int, uid: str, kind: str, slug: str, ts: int,
                    old: tuple[str, int] | None = None) -> int:
        old_slug, old_ts = old if old else (None, None)
        return self._db.execute(
            "INSERT INTO changes (uid, kind, outlet_slug, published_ts, at, old_outlet_slug, "
            "old_published_ts, article_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (uid, kind, slug, ts, _now(), old_slug, old_ts, article_id),
        ).lastrowid or 0

    def delete(self, uid: str) -> bool:
        """Remove an article (and its versions); True if it existed."""
        with self.transaction():
            row = self._db.execute(
                "SELECT id, outlet_slug, published_ts, title, digest, body_text FROM articles "
                "WHERE uid = ?", (uid,)).fetchone()
            if row is None:
                return False
            self._unindex(row[0], row[3], row[4], row[5], row[1], row[2])
            others = stories.forget(self._db, row[0]) if self._has_stories else []
            self._recent.clear()
            seq = self._log_change(row[0], uid, "delete", row[1], row[2])
            if self._has_securities:
                tags.forget(self._db, row[0], seq, row[2])
            self._db.execute("DELETE FROM articles WHERE uid = ?", (uid,))
            self._log_story_change(others)
            return True

    def _log_story_change(self, article_ids: Sequence[int]) -> None:
        # Another article joined or left their story: their pages list it. Logged
        # once per article and transaction, at its end: a story that grows by
        # forty articles in one batch relinks each member once, not forty times.
        self._relinked.update(dict.fromkeys(article_ids))
        if not self._depth:  # outside a transaction nothing would flush them
            self._flush_relinks()

    def _flush_relinks(self) -> None:
        ids, now = list(self._relinked), _now()
        self._relinked.clear()
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            rows = self._db.execute(
                "SELECT id, uid, outlet_slug, published_ts FROM articles WHERE id IN ("
                + ",".join("?" * len(part)) + ")", tuple(part)).fetchall()
            by_id = {row[0]: row[1:] for row in rows}  # a deleted one has none
            self._db.executemany(
                "INSERT INTO changes (uid, kind, outlet_slug, published_ts, at, article_id, "
                "relink) VALUES (?, 'update', ?, ?, ?, ?, 1)",
                [(*by_id[i], now, i) for i in part if i in by_id])

    # -- securities -------------------------------------------------------------

    def tagger(self) -> Tagger:
        """The tagger of every name the archive knows (kept up to date as it learns)."""
        if self._tagger is None:
            self._tagger = tags.load_tagger(self._db) if self._has_securities else Tagger()
        return self._tagger

    def _tag(self, article_id: int, article: Article, change_seq: int, published_ts: int,
             old_ts: int | None = None, new: bool = False,
             scanned: Scanned | None = None) -> tuple[str, ...]:
        """Tag a stored article with its securities, learning the names it links first."""
        if not self._has_securities:
            return ()
        tagger = self.tagger()
        learned = tags.learned_from(article)
        unknown = [n for n in learned if not tagger.knows(n.code, n.name)]
        for name in tags.learn(self._db, unknown) if unknown else ():
            tagger.learn(name.code, name.name)
        codes = tagger.tag_scanned(scanned or tags.scan_article(article, learned),
                                   tags.article_text(article))
        tags.set_tags(self._db, article_id, codes, change_seq, published_ts, old_ts, new=new)
        return codes

    def learn_securities(self, names: Iterable[SecurityName]) -> list[SecurityName]:
        """Store securities' names (a list, a user's file); returns the new spellings.

        Articles stored before a name was learned are tagged with it by
        :meth:`retag`, which ``caixun run`` calls a bounded step at a time.
        """
        with self.transaction():
            renamed: set[str] = set()
            new = tags.learn(self._db, names, renamed)
            self._relink_tagged(renamed)
        tagger = self.tagger()
        for name in new:
            tagger.learn(name.code, name.name)
        return new

    def _relink_tagged(self, codes: Iterable[str]) -> None:
        """A renamed security: every page that shows its name is rebuilt (its stock
        pages from the first, its articles' pages as relinks)."""
        now = _now()
        for code in sorted(codes):
            rows = self._db.execute(
                "SELECT a.id, a.uid, a.outlet_slug, a.published_ts FROM articles a JOIN "
                "article_securities s ON s.article_id = a.id WHERE s.code = ?", (code,)
            ).fetchall()
            for article_id, uid, slug, ts in rows:
                seq = self._db.execute(
                    "INSERT INTO changes (uid, kind, outlet_slug, published_ts, at, article_id, "
                    "relink) VALUES (?, 'update', ?, ?, ?, ?, 1)",
                    (uid, slug, ts, now, article_id)).lastrowid
                self._db.execute("INSERT INTO stock_changes (change_seq, code, published_ts) "
                                 "VALUES (?, ?, ?)", (seq, code, ts))

    def pair_securities(self, code: str, other: str) -> None:
        """Link two listings of one company (an A share and its H share)."""
        with self.transaction():
            tags.set_pair(self._db, code, other)

    def securities(self, counts: bool = True) -> list[tags.SecurityRow]:
        """Every security with its spellings, most articles first; ``counts=False``
        skips counting the articles (a name lookup on a large archive)."""
        return tags.list_securities(self._db, counts) if self._has_securities else []

    def article_codes(self, article_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        """The securities each article is tagged with (untagged ones left out)."""
        return tags.article_codes(self._db, article_ids) if self._has_securities else {}

    def security_names(self, codes: Iterable[str]) -> dict[str, str]:
        """The current name of each code the archive knows."""
        wanted = list(codes)
        found: dict[str, str] = {}
        for start in range(0, len(wanted), 500):
            part = wanted[start:start + 500]
            found.update(self._db.execute(
                "SELECT code, name FROM securities WHERE code IN ("
                + ",".join("?" * len(part)) + ")", part).fetchall())
        return found

    def stock_counts(self) -> dict[str, int]:
        if not self._has_securities:
            return {}
        return dict(self._db.execute(
            "SELECT code, count(*) FROM article_securities GROUP BY code").fetchall())

    def stock_count(self, code: str) -> int:
        return int(self._db.execute("SELECT count(*) FROM article_securities WHERE code = ?",
                                    (code,)).fetchone()[0])

    def stock_refs(self, code: str, offset: int = 0, limit: int | None = None
                   ) -> list[ArticleRef]:
        """A security's articles, oldest first, from position ``offset``."""
        return self._refs("id IN (SELECT article_id FROM article_securities WHERE code = ?)",
                          (code,), limit=limit, offset=offset)

    def stock_newest(self, code: str, limit: int) -> list[ArticleRef]:
        return self._refs("id IN (SELECT article_id FROM article_securities WHERE code = ?)",
                          (code,), "published_ts DESC, id DESC", limit)

    def stock_position(self, code: str, published_ts: int, article_id: int = 0) -> int:
        """How many of the security's articles come before (published_ts, id)."""
        row = self._db.execute(
            "SELECT count(*) FROM articles WHERE id IN (SELECT article_id FROM "
            "article_securities WHERE code = ?) AND (published_ts < ? OR "
            "(published_ts = ? AND id < ?))",
            (code, published_ts, published_ts, article_id)).fetchone()
        return int(row[0])

    def stock_changes_since(self, seq: int = 0, until: int | None = None
                            ) -> set[tuple[str, int]]:
        """(code, published_ts) of each stock page position the changes after ``seq`` touch."""
        if not self._has_securities:
            return set()
        return set(self._db.execute(
            "SELECT code, published_ts FROM stock_changes WHERE change_seq > ? AND "
            "change_seq <= ?", (seq, until if until is not None else 2**62)).fetchall())

    def retag_pending(self) -> bool:
        """Whether articles stored before names were learned still wait for :meth:`retag`."""
        if not self._has_securities or self.read_only:
            return False
        after_id, after_name = self._retag_marks()
        if after_id is not None and after_id < self.max_article_id():
            return True
        return after_name < self._last_name_seq()

    def _retag_marks(self) -> tuple[int | None, int]:
        marks = dict(self._db.execute(
            "SELECT key, value FROM search_meta WHERE key IN "
            "('retag_after_id', 'retag_after_name')").fetchall())
        after_id = int(marks["retag_after_id"]) if "retag_after_id" in marks else None
        return after_id, int(marks.get("retag_after_name", 0))

    def _last_name_seq(self) -> int:
        return int(self._db.execute("SELECT coalesce(max(rowid), 0) FROM security_names")
                   .fetchone()[0])

    def _set_mark(self, key: str, value: int | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM search_meta WHERE key = ?", (key,))
        else:
            self._db.execute("INSERT INTO search_meta (key, value) VALUES (?, ?) ON CONFLICT "
                             "(key) DO UPDATE SET value = excluded.value", (key, str(value)))

    def retag(self, limit: int = 500, everything: bool = False) -> int:
        """Tag again up to ``limit`` articles that names learned since they were stored
        may concern; returns how many were read (at least 1 while names were
        looked at, 0 when nothing was left).

        Resumable: what is done is recorded in the same transaction. A pass
        over every article (``everything``, or an archive made before tags
        existed) goes by id; otherwise the articles are those the search index
        finds for each new name, name by name.
        """
        if not self._has_securities:
            return 0
        with self.transaction():
            if everything:
                self._set_mark("retag_after_id", 0)
            after_id, after_name = self._retag_marks()
            if after_id is not None:
                ids = [row[0] for row in self._db.execute(
                    "SELECT id FROM articles WHERE id > ? ORDER BY id LIMIT ?",
                    (after_id, limit))]
                self._retag_ids(ids)
                # Names learned before the end of this pass are covered by it.
                self._set_mark("retag_after_id", ids[-1] if ids else None)
                if not ids:
                    self._set_mark("retag_after_name", self._last_name_seq())
                return len(ids)
            names = self._db.execute(
                "SELECT rowid, name FROM security_names WHERE rowid > ? ORDER BY rowid "
                "LIMIT ?", (after_name, limit)).fetchall()
            # Within a name's articles, the last id done (a common name's thousands
            # of articles take several steps).
            within = int(dict(self._db.execute(
                "SELECT key, value FROM search_meta WHERE key = 'retag_name_after_id'"
            ).fetchall()).get("retag_name_after_id", 0))
            read = 0
            for seq, name in names:
                ids = [i for i in self._ids_mentioning(name) if i > within]
                part = ids[:max(1, limit - read)]
                self._retag_ids(part)
                read += len(part)
                if len(part) < len(ids):  # the rest of this name's articles next step
                    self._set_mark("retag_name_after_id", part[-1])
                    return read
                within = 0
                self._set_mark("retag_name_after_id", None)
                self._set_mark("retag_after_name", seq)
                if read >= limit:
                    break
            return max(read, 1) if names else 0

    def _ids_mentioning(self, name: str) -> list[int]:
        """Articles whose text may hold ``name`` (the search index's phrase match)."""
        from caixun.securities import name_forms

        ids: set[int] = set()
        for form in name_forms(name):
            phrase = form.replace('"', "")
            try:
                match = parse_query(f'"{phrase}"').match
            except ValueError:
                continue
            ids.update(row[0] for row in self._db.execute(
                "SELECT rowid FROM search WHERE search MATCH ?", (match,)))
        return sorted(ids)

    def _retag_ids(self, ids: Sequence[int]) -> None:
        for article_id in ids:
            row = self._db.execute(
                f"{self._select_article} WHERE id = ?", (article_id,)).fetchone()
            if row is None:
                continue
            article = _article_from_row(row)
            codes = self.tagger().tag_scanned(tags.scan_article(article),
                                              tags.article_text(article))
            before = tags.article_codes(self._db, [article_id]).get(article_id, ())
            if tuple(codes) != before:
                # A relink for the build: the article's pages change, not its text.
                ts = int(article.published_at.timestamp())
                seq = self._db.execute(
                    "INSERT INTO changes (uid, kind, outlet_slug, published_ts, at, article_id, "
                    "relink) VALUES (?, 'update', ?, ?, ?, ?, 1)",
                    (article.uid, article.outlet_slug, ts, _now(), article_id)).lastrowid or 0
                tags.set_tags(self._db, article_id, codes, seq, ts)

    # -- watch lists ------------------------------------------------------------

    def use_watches(self, watches: Sequence[Watch]) -> list[str]:
        """Make the archive's watches ``watches`` (the settings' ``[[watch]]``) and match
        every new article against those that notify; returns the names new or changed.

        A new or changed watch counts from now: articles stored before it are
        in its feed and list (:meth:`watch_refs`) but are not notified.
        """
        if not self._has_watches:
            return []
        parsed = [(w, parse_query(w.query).match if w.query.strip() else None)
                  for w in watches]  # a bad query fails here, before anything is stored
        added: list[str] = []
        if not watching.in_sync(self._db, watches):  # most starts change nothing
            with self.transaction():
                added = watching.sync(self._db, watches)
        self._watching = [(w, match) for w, match in parsed if w.notifies]
        return added

    def watches(self) -> list[Watch]:
        """The watches the archive knows (their definitions; targets live in the settings)."""
        if not self._has_watches:
            return []
        found = []
        for name, definition in self._db.execute("SELECT name, definition FROM watches "
                                                 "ORDER BY name"):
            fields = json.loads(definition)
            found.append(Watch(name, fields.get("query", ""), tuple(fields.get("stocks", ())),
                               tuple(fields.get("outlets", ()))))
        return found

    def _notify(self, article_id: int, article: Article, codes: Sequence[str]) -> None:
        text = " ".join((article.digest or article.body_text or article.title).split())
        row = {"uid": article.uid, "title": article.title, "url": article.url,
               "outlet": article.outlet, "published_at": article.published_at.isoformat(),
               "stocks": list(codes), "snippet": text[:160],
               "page": "/" + article_path(article.outlet_slug,
                                          int(article.published_at.timestamp()),
                                          article.file_id)}
        watching.match_new(self._db, article_id, self._watching, row)

    def watch_refs(self, watch: Watch, limit: int | None = None, offset: int = 0,
                   since_ts: int | None = None, until_ts: int | None = None
                   ) -> list[ArticleRef]:
        """Every article the watch matches, over the whole archive, newest first."""
        if not self._has_securities:
            return []
        match = parse_query(watch.query).match if watch.query.strip() else None
        condition, values = watching.watch_condition(watch, match)
        if since_ts is not None:
            condition += " AND a.published_ts >= ?"
            values += (since_ts,)
        if until_ts is not None:
            condition += " AND a.published_ts < ?"
            values += (until_ts,)
        if self._has_stories and not watch.outlets:
            condition += " AND a.duplicate_of IS NULL"
        sql = (_SELECT_REF.replace("FROM articles", "FROM articles a") + f" WHERE {condition} "
               "ORDER BY a.published_ts DESC, a.id DESC")
        if limit is not None or offset:
            sql += f" LIMIT {int(limit if limit is not None else -1)} OFFSET {int(offset)}"
        return [ArticleRef(*row) for row in self._db.execute(sql, values)]

    def pending_notifications(self, now: float, limit: int = 100) -> list[Notification]:
        if not self._has_watches:
            return []
        return watching.claim_pending(self._db, now, limit)

    def record_delivery(self, notification_id: int, delivered: bool, error: str = "",
                        retry_at: float | None = None) -> None:
        """An attempt's outcome: delivered, pending again from ``retry_at``, or failed."""
        with self.transaction():
            watching.finish(self._db, notification_id, delivered, error, retry_at)

    def outbox_counts(self) -> dict[str, int]:
        """Notifications by state (pending, delivered, failed)."""
        if not self._has_watches:
            return {}
        return dict(self._db.execute("SELECT state, count(*) FROM outbox GROUP BY state"))

    # -- dates ------------------------------------------------------------------

    def _bad_dates(self) -> list[Any]:
        return self._db.execute(
            "SELECT id, uid, outlet_slug, published_at, fetched_at, stored_at, extra "
            "FROM articles WHERE published_ts < ? OR published_ts >= ?",
            (EARLIEST_TS, LATEST_TS)).fetchall()

    def _refuse_bad_dates(self) -> list[str]:
        rows = self._bad_dates()
        if rows:
            raise ArchiveError(
                f"{self.path}: {len(rows)} article(s) have times no page can show "
                f"({rows[0][1]}: {rows[0][3]}); run a command that writes to the archive "
                "once (e.g. `caixun build`) to mend them")
        return []

    def _repair_dates(self) -> list[str]:
        """Re-date articles whose time no page can show; returns their uids.

        Older versions stored any time a source gave (0001-01-01, 9999-12-31),
        and then every build failed. Such an article is dated when it was
        fetched (else stored), its original time kept in ``extra`` as
        ``published_at_invalid``; the change log is mended so no build meets
        the old time again. An indexed range query: free when there are none.
        """
        rows = self._bad_dates()
        if not rows:
            return []
        with self.transaction():
            for article_id, uid, slug, published, fetched, stored, extra in rows:
                when = _sane_time(fetched) or _sane_time(stored) or datetime.now(timezone.utc)
                local = when.astimezone(BEIJING)
                ts = int(local.timestamp())
                data = {**json.loads(extra or "{}"), "published_at_invalid": published}
                self._db.execute(
                    "UPDATE articles SET published_at = ?, published_ts = ?, extra = ? "
                    "WHERE id = ?", (local.isoformat(), ts,
                                     json.dumps(data, ensure_ascii=False, sort_keys=True),
                                     article_id))
                self._db.execute("UPDATE changes SET published_ts = ? WHERE article_id = ?",
                                 (ts, article_id))
                self._db.execute("UPDATE changes SET old_published_ts = ? WHERE article_id = ? "
                                 "AND (old_published_ts < ? OR old_published_ts >= ?)",
                                 (ts, article_id, EARLIEST_TS, LATEST_TS))
                if self._has_stories:
                    self._db.execute("UPDATE dedup_keys SET published_ts = ? "
                                     "WHERE article_id = ?", (ts, article_id))
                    self._recent.pop(article_id, None)
                self._log_change(article_id, uid, "update", slug, ts)
        return [row[1] for row in rows]

    # -- stories ------------------------------------------------------------------

    def _ensure_stories(self) -> None:
        """Cluster again when fingerprints changed (or never were) since the last time."""
        row = self._db.execute(
            "SELECT value FROM search_meta WHERE key = 'stories_version'").fetchone()
        if row is not None and row[0] == stories.VERSION:
            return
        self.recluster()

    def recluster(self) -> int:
        """Fingerprint and cluster every article again, oldest first; returns how many."""
        with self.transaction():
            stories.clear(self._db)
            self._recent.clear()
            count = 0
            # Ids first: placing writes to the table a pending SELECT would read.
            ids = [r[0] for r in self._db.execute(
                "SELECT id FROM articles ORDER BY published_ts, id")]
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                rows = self._db.execute(
                    f"SELECT id, {self._article_columns} FROM articles WHERE id IN ("
                    + ",".join("?" * len(part)) + ")", part).fetchall()
                by_id = {row[0]: _article_from_row(row[1:]) for row in rows}
                for article_id in part:
                    stories.place(self._db, article_id, Candidate.of(by_id[article_id]))
                count += len(part)
            self._db.execute(
                "INSERT INTO search_meta (key, value) VALUES ('stories_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (stories.VERSION,))
        return count

    # -- search index -------------------------------------------------------------

    def _index(self, article_id: int, title: str, digest: str, body_text: str,
               outlet_slug: str, published_ts: int, indexed: IndexedText | None = None) -> None:
        indexed = indexed or index_text(title, digest, body_text)
        self._db.execute(_INDEX_ROW[self._has_facets], (article_id, *indexed.values(),
                                           *self._facets(outlet_slug, published_ts)))
        if self._has_static_terms and indexed.static:
            self._db.execute(
                "INSERT INTO static_terms (article_id, version, terms) VALUES (?, ?, ?) "
                "ON CONFLICT (article_id) DO UPDATE SET version = excluded.version, "
                "terms = excluded.terms", (article_id, STATIC_VERSION, indexed.static))

    def _unindex(self, article_id: int, title: str, digest: str, body_text: str,
                 outlet_slug: str, published_ts: int) -> None:
        # The index keeps no copy of the text (contentless FTS5), so removing a
        # row means naming the tokens it was indexed with: segmenting the old
        # text again gives exactly those, as long as segment.VERSION is unchanged.
        values = index_text(title, digest, body_text).values()
        self._db.execute(_UNINDEX_ROW[self._has_facets], (article_id, *values,
                                             *self._facets(outlet_slug, published_ts)))

    def _facets(self, outlet_slug: str, published_ts: int) -> tuple[str, ...]:
        return (article_facets(outlet_slug, published_ts),) if self._has_facets else ()

    # Whether the archive has the day index (articles_day, see _ensure_day_index).
    _day_index = False

    def _ensure_search_index(self) -> None:
        """Rebuild the index when the segmenter changed since it was built; add the day index."""
        self._day_index = self._ensure_day_index()
        row = self._db.execute(
            "SELECT value FROM search_meta WHERE key = 'segment_version'").fetchone()
        if row is not None and row[0] == SEGMENT_VERSION:
            return
        if self.read_only:
            self._stale_index = True  # search() says so; everything else still reads
            return
        self.reindex()

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

    def reindex(self) -> int:
        """Rebuild the whole search index; returns how many articles it indexed."""
        total = self.count()
        if self._notice is not None and total >= REINDEX_NOTICE_FROM:
            seconds = total / REINDEX_RATE
            self._notice(f"{self.path}: rebuilding the search index of {total:,} articles "
                         "once, for this version of caixun (about "
                         + (f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min")
                         + "; other writers wait meanwhile)")
        with self.transaction():
            self._db.execute("INSERT INTO search (search) VALUES ('delete-all')")
            count = 0
            cursor = self._db.execute("SELECT id, title, digest, body_text, outlet_slug, "
                                      "published_ts FROM articles")
            while rows := cursor.fetchmany(1000):
                for row in rows:
                    self._index(*row)
                count += len(rows)
            self._db.execute(
                "INSERT INTO search_meta (key, value) VALUES ('segment_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (SEGMENT_VERSION,))
        return count

    def search(self, query: str, *, outlet: str | None = None, since_ts: int | None = None,
               until_ts: int | None = None, limit: int = 20, offset: int = 0,
               now: float | None = None, stocks: Sequence[str] = ()) -> list[SearchHit]:
        """Articles matching ``query``, best first: relevance (title above body) and recency.

        ``stocks``: only articles tagged with every one of these securities;
        with a blank ``query``, those articles newest first.

        Exact copies of an article (see :mod:`caixun.dedup`) are left out
        unless the search is limited to one outlet. Only the newest
        :data:`RANK_WINDOW` matches (by article id) are ranked; a query with
        that many is ranked by title hits and recency (see :meth:`_relevance`).

        ``QueryError`` (a ``ValueError``) says what is wrong with a query;
        ``ArchiveError`` that the archive cannot be searched (a damaged file,
        or opened read-only with an index that an older segmenter built).
        """
        if self._stale_index:
            raise ArchiveError(
                f"{self.path}: the search index was built by an older caixun; run a command "
                "that writes to the archive once (`caixun import`, `caixun fetch` or "
                "`caixun build`) to rebuild it")
        try:
            if not query.strip() and stocks:
                return self._tagged(tuple(stocks), outlet, since_ts, until_ts, limit, offset)
            return self._search(query, outlet, since_ts, until_ts, limit, offset, now,
                                tuple(stocks))
        except sqlite3.Error as exc:
            raise ArchiveError(f"{self.path}: cannot search the archive: {exc}") from exc

    def _tagged(self, stocks: tuple[str, ...], outlet: str | None, since_ts: int | None,
                until_ts: int | None, limit: int, offset: int) -> list[SearchHit]:
        """Articles tagged with every one of ``stocks``, newest first (no words to rank)."""
        if not self._has_securities:
            return []
        span = (since_ts if since_ts is not None else -2**62,
                until_ts if until_ts is not None else 2**62)
        condition, values = _filter_condition(outlet, span, stocks)
        if not outlet and self._has_stories:
            condition += " AND duplicate_of IS NULL"
        rows = self._db.execute(
            "SELECT id, uid, title, outlet, outlet_slug, published_ts, file_id, digest, "
            f"body_text FROM articles WHERE {condition} ORDER BY published_ts DESC, id DESC "
            "LIMIT ? OFFSET ?", (*values, limit, offset)).fetchall()
        return [SearchHit(ArticleRef(*row[:7]), 0.0, snippet(row[8] or row[7] or row[2], ()))
                for row in rows]

    def _search(self, query: str, outlet: str | None, since_ts: int | None,
                until_ts: int | None, limit: int, offset: int,
                now: float | None, stocks: tuple[str, ...] = ()) -> list[SearchHit]:
        parsed = parse_query(query)
        span = None
        if since_ts is not None or until_ts is not None:
            span = (since_ts if since_ts is not None else -2**62,
                    until_ts if until_ts is not None else 2**62)
        faceted = False
        if self._has_facets and (outlet or span is not None):
            facets = self._filter_match(outlet or None, span)
            if facets == "":
                return []
            if facets is not None:  # every match then passes them: bm25 reads no other
                parsed = replace(parsed, match=f"({parsed.match}) AND {facets}")
                faceted = True
        window = self._window(parsed, outlet or None, span, max(RANK_WINDOW, offset + limit),
                              stocks, faceted)
        if not window:
            return []
        now_ts = time.time() if now is None else now
        broad = len(window) >= RANK_WINDOW
        # bm25 costs a row lookup per match: a filtered window, whose ids may
        # be a small part of the matches between them, is scored alone.
        relevance = self._relevance(parsed, window, broad,
                                    only_window=not broad and (bool(outlet) or bool(stocks)
                                                               or span is not None))
        ranked = sorted(window, key=lambda row: (
            relevance.get(row[0], 0.0)
            - _RECENCY_WEIGHT / (1.0 + max(0.0, now_ts - row[1]) / _RECENCY_SCALE), -row[0]))
        chosen = ranked[offset:offset + limit]
        rows = {row[0]: row for row in self._db.execute(
            "SELECT id, uid, title, outlet, outlet_slug, published_ts, file_id, digest, body_text "
            "FROM articles WHERE id IN (" + ",".join("?" * len(chosen)) + ")",
            [article_id for article_id, _ in chosen])}
        hits = []
        for article_id, ts in chosen:
            row = rows[article_id]
            score = -relevance.get(article_id, 0.0) + _RECENCY_WEIGHT / (
                1.0 + max(0.0, now_ts - ts) / _RECENCY_SCALE)
            hits.append(SearchHit(ArticleRef(*row[:7]), score,
                                  snippet(row[8] or row[7] or row[2], parsed.highlights)))
        return hits

    def _window(self, parsed: Query, outlet: str | None, span: tuple[int, int] | None,
                size: int, stocks: tuple[str, ...] = (), faceted: bool = False
                ) -> list[tuple[int, int]]:
        """The newest ``size`` matches that pass the filters: (article id, published_ts).

        ``faceted``: the outlet and span are in ``parsed`` as facets already.
        """
        if stocks and not self._has_securities:
            return []
        kept, params = [f"a.{_TAGGED}"] * len(stocks), list[Any](stocks)
        if outlet:
            kept.append("a.outlet_slug = ?")
            params.append(outlet)
        elif self._has_stories:
            kept.append("a.duplicate_of IS NULL")  # an exact copy is found as its original
        if span is not None:
            kept.append("a.published_ts >= ? AND a.published_ts < ?")
            params += span
        scan = _Scan(parsed.match, " AND ".join(kept), tuple(params))
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

    def add_outlet_alias(self, alias: str, slug: str) -> None:
        """Remember an old (unsafe) spelling of an outlet's slug."""
        with self.transaction():
            self._db.execute(
                "INSERT INTO outlet_aliases (alias, slug) VALUES (?, ?) "
                "ON CONFLICT (alias) DO UPDATE SET slug = excluded.slug",
                (alias, slug),
            )

    # -- reading ------------------------------------------------------------

    def get(self, uid: str) -> Article | None:
        row = self._db.execute(self._select_article + " WHERE uid = ?", (uid,)).fetchone()
        return _article_from_row(row) if row else None

    def iter_articles(self) -> Iterator[Article]:
        """Every article, oldest first; streams, so memory stays flat."""
        cursor = self._db.execute(self._select_article + " ORDER BY published_ts, id")
        while rows := cursor.fetchmany(500):
            for row in rows:
                yield _article_from_row(row)

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM articles").fetchone()[0])

    def versions(self, uid: str) -> list[ArticleVersion]:
        rows = self._db.execute(
            "SELECT v.version, v.title, v.body_html, v.body_text, v.replaced_at "
            "FROM article_versions v JOIN articles a ON a.id = v.article_id "
            "WHERE a.uid = ? ORDER BY v.version",
            (uid,),
        ).fetchall()
        return [ArticleVersion(*row) for row in rows]

    def outlets(self) -> dict[str, str]:
        """slug → outlet name."""
        return dict(self._db.execute("SELECT slug, name FROM outlets ORDER BY slug"))

    def outlet_aliases(self) -> dict[str, str]:
        """old spelling → slug."""
        return dict(self._db.execute("SELECT alias, slug FROM outlet_aliases ORDER BY alias"))

    def changes_since(self, seq: int = 0, until: int | None = None) -> list[Change]:
        rows = self._db.execute(
            "SELECT seq, uid, kind, outlet_slug, published_ts, old_outlet_slug, "
            "old_published_ts, article_id, " + ("relink" if self._has_stories else "0")
            + " FROM changes WHERE seq > ? AND seq <= ? ORDER BY seq",
            (seq, until if until is not None else 2**62),
        ).fetchall()
        return [_change(*row) for row in rows]

    def last_change_seq(self) -> int:
        row = self._db.execute("SELECT max(seq) FROM changes").fetchone()
        return int(row[0] or 0)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction: every query inside sees one state of the archive."""
        if self._depth:
            yield
            return
        self._db.execute("BEGIN")
        self._depth = 1
        try:
            yield
        finally:
            self._depth = 0
            self._db.execute("COMMIT")

    # -- queries for publishing -----------------------------------------------

    def _refs(self, where: str, params: Sequence[Any], order: str = "published_ts, id",
              limit: int | None = None, offset: int = 0) -> list[ArticleRef]:
        sql = f"{_SELECT_REF} WHERE {where} ORDER BY {order}"
        if limit is not None or offset:
            sql += f" LIMIT {int(limit if limit is not None else -1)} OFFSET {int(offset)}"
        return [ArticleRef(*row) for row in self._db.execute(sql, params)]

    def outlet_count(self, slug: str) -> int:
        row = self._db.execute("SELECT count(*) FROM articles WHERE outlet_slug = ?", (slug,))
        return int(row.fetchone()[0])

    def outlet_counts(self) -> dict[str, int]:
        return dict(self._db.execute(
            "SELECT outlet_slug, count(*) FROM articles GROUP BY outlet_slug"))

    def outlet_refs(self, slug: str, offset: int = 0, limit: int | None = None) -> list[ArticleRef]:
        """An outlet's articles, oldest first, from position ``offset``."""
        return self._refs("outlet_slug = ?", (slug,), limit=limit, offset=offset)

    def outlet_newest(self, slug: str, limit: int) -> list[ArticleRef]:
        return self._refs("outlet_slug = ?", (slug,), "published_ts DESC, id DESC", limit)

    def outlet_position(self, slug: str, published_ts: int, article_id: int = 0) -> int:
        """How many of the outlet's articles come before (published_ts, id)."""
        row = self._db.execute(
            "SELECT count(*) FROM articles WHERE outlet_slug = ? AND "
            "(published_ts < ? OR (published_ts = ? AND id < ?))",
            (slug, published_ts, published_ts, article_id),
        ).fetchone()
        return int(row[0])

    def neighbors(self, slug: str, published_ts: int,
                  article_id: int) -> tuple[ArticleRef | None, ArticleRef | None]:
        """The outlet's articles just before and just after (published_ts, id)."""
        before = self._refs(
            "outlet_slug = ? AND (published_ts < ? OR (published_ts = ? AND id < ?))",
            (slug, published_ts, published_ts, article_id), "published_ts DESC, id DESC", 1)
        after = self._refs(
            "outlet_slug = ? AND (published_ts > ? OR (published_ts = ? AND id > ?))",
            (slug, published_ts, published_ts, article_id), "published_ts, id", 1)
        return (before[0] if before else None, after[0] if after else None)

    def around(self, slug: str, published_ts: int) -> list[ArticleRef]:
        """The outlet's articles at ``published_ts`` and the one on either side."""
        before = self._refs("outlet_slug = ? AND published_ts < ?", (slug, published_ts),
                            "published_ts DESC, id DESC", 1)
        same = self._refs("outlet_slug = ? AND published_ts = ?", (slug, published_ts))
        after = self._refs("outlet_slug = ? AND published_ts > ?", (slug, published_ts),
                           "published_ts, id", 1)
        return before + same + after

    def newest_per_outlet(self, limit: int) -> list[tuple[str, list[ArticleRef]]]:
        """Each outlet's ``limit`` newest articles, outlets with the latest news first."""
        # One index lookup per outlet: cheaper than a window over every article.
        latest = self._db.execute(
            "SELECT outlet_slug, max(published_ts) AS ts FROM articles "
            "GROUP BY outlet_slug ORDER BY ts DESC, outlet_slug").fetchall()
        blocks = [(slug, self.outlet_newest(slug, limit)) for slug, _ in latest]
        return sorted(blocks, key=lambda kv: (-kv[1][0].published_ts, -kv[1][0].id))

    def refs_in_id_range(self, first_id: int, last_id: int) -> list[ArticleRef]:
        return self._refs("id BETWEEN ? AND ?", (first_id, last_id), "id")

    def max_article_id(self) -> int:
        row = self._db.execute("SELECT max(id) FROM articles").fetchone()
        return int(row[0] or 0)

    def newest_with_summary(self, limit: int, slug: str | None = None,
                            length: int = 160) -> list[tuple[ArticleRef, str]]:
        """The newest articles (of one outlet, or all) with a short plain-text summary."""
        where, params = ("outlet_slug = ?", (slug,)) if slug else ("1", ())
        rows = self._db.execute(
            f"SELECT id, uid, title, outlet, outlet_slug, published_ts, file_id, "
            f"substr(CASE WHEN digest <> '' THEN digest ELSE body_text END, 1, ?) "
            f"FROM articles WHERE {where} ORDER BY published_ts DESC, id DESC LIMIT ?",
            (length + 1, *params, limit))
        out = []
        for row in rows:
            text = " ".join(row[7].split())
            out.append((ArticleRef(*row[:7]), text if len(text) <= length else text[:length] + "…"))
        return out

    def refs_between(self, start_ts: int, end_ts: int) -> list[ArticleRef]:
        """Articles published in [start_ts, end_ts), newest first."""
        return self._refs("published_ts >= ? AND published_ts < ?", (start_ts, end_ts),
                          "published_ts DESC, id DESC")

    def stories(self, article_ids: Iterable[int] | None = None) -> Stories:
        """The stories of these articles (of all when None) that have several articles."""
        if article_ids is None:
            story_ids = [r[0] for r in self._db.execute(
                "SELECT story_id FROM articles WHERE story_id IS NOT NULL "
                "GROUP BY story_id HAVING count(*) > 1")]
            originals = dict(self._db.execute(
                "SELECT id, duplicate_of FROM articles WHERE duplicate_of IS NOT NULL"))
        else:
            story_ids, originals = [], {}
            wanted = sorted(set(article_ids))
            for start in range(0, len(wanted), 500):
                part = wanted[start:start + 500]
                for article_id, story, original in self._db.execute(
                        "SELECT id, story_id, duplicate_of FROM articles WHERE id IN ("
                        + ",".join("?" * len(part)) + ")", part):
                    if story is not None:
                        story_ids.append(story)
                    if original is not None:
                        originals[article_id] = original
        members: dict[int, tuple[ArticleRef, ...]] = {}
        unique = sorted(set(story_ids))
        for start in range(0, len(unique), 500):
            part = unique[start:start + 500]
            groups: dict[int, list[ArticleRef]] = {}
            for story, *ref in self._db.execute(
                    "SELECT story_id, id, uid, title, outlet, outlet_slug, published_ts, file_id "
                    "FROM articles WHERE story_id IN (" + ",".join("?" * len(part)) + ") "
                    "ORDER BY published_ts, id", part):
                groups.setdefault(story, []).append(ArticleRef(*ref))
            for refs in groups.values():
                if len(refs) > 1:
                    members.update(dict.fromkeys((r.id for r in refs), tuple(refs)))
        return Stories(members, originals)

    def newest(self, limit: int) -> list[ArticleRef]:
        return self._refs("1", (), "published_ts DESC, id DESC", limit)

    def refs_by_uid(self, uids: Iterable[str]) -> list[ArticleRef]:
        found: list[ArticleRef] = []
        chunk: list[str] = []
        for uid in uids:
            chunk.append(uid)
            if len(chunk) == 500:
                found += self._refs(f"uid IN ({','.join('?' * len(chunk))})", chunk)
                chunk = []
        if chunk:
            found += self._refs(f"uid IN ({','.join('?' * len(chunk))})", chunk)
        return found

    def iter_refs(self) -> Iterator[ArticleRef]:
        cursor = self._db.execute(f"{_SELECT_REF} ORDER BY published_ts, id")
        while rows := cursor.fetchmany(1000):
            yield from (ArticleRef(*row) for row in rows)

    def iter_outlet_articles(self, slugs: Iterable[str] | None = None) -> Iterator[tuple[int, Article]]:
        """(id, article) of every article (or the given outlets'), by outlet then time."""
        where, params = "1", tuple[str, ...]()
        if slugs is not None:
            wanted = sorted(slugs)
            where, params = f"outlet_slug IN ({','.join('?' * len(wanted))})", tuple(wanted)
        cursor = self._db.execute(
            f"SELECT id, {self._article_columns} FROM articles WHERE {where} "
            "ORDER BY outlet_slug, published_ts, id", params)
        while rows := cursor.fetchmany(500):
            for row in rows:
                yield row[0], _article_from_row(row[1:])

    def articles_by_uid(self, uids: Iterable[str]) -> dict[str, Article]:
        out: dict[str, Article] = {}
        for uid in uids:
            article = self.get(uid)
            if article is not None:
                out[uid] = article
        return out

    def iter_articles_linked(
        self, batch: int = 500,
    ) -> Iterator[tuple[Article, str, str | None, list[str], tuple[str, ...]]]:
        """Every article, oldest first, with what ties it to others:
        (article, story uid, uid of the original it copies or None, its alias uids,
        the codes of its securities).

        The story uid is the uid of the story's first article, the article's
        own for a story of one; aliases and codes are sorted. One query streams
        the articles; two more per ``batch`` of them read their aliases and codes.
        """
        columns = ", ".join("a." + c.strip() for c in self._article_columns.split(","))
        story, original = ("s.uid", "d.uid") if self._has_stories else ("NULL", "NULL")
        joins = ("LEFT JOIN articles s ON s.id = coalesce(a.story_id, a.id) "
                 "LEFT JOIN articles d ON d.id = a.duplicate_of ") if self._has_stories else ""
        # While this cursor is open, every query of the connection reads the
        # same state of the archive (one read transaction).
        cursor = self._db.execute(
            f"SELECT a.id, {story}, {original}, {columns} FROM articles a {joins}"
            "ORDER BY a.published_ts, a.id")
        while rows := cursor.fetchmany(batch):
            aliases: dict[int, list[str]] = {}
            if self._has_stories:
                ids = [row[0] for row in rows]
                for article_id, uid in self._db.execute(
                        "SELECT article_id, uid FROM article_aliases WHERE article_id IN ("
                        + ",".join("?" * len(ids)) + ") ORDER BY uid", ids):
                    aliases.setdefault(article_id, []).append(uid)
            codes = self.article_codes([row[0] for row in rows])
            for row in rows:
                article = _article_from_row(row[3:])
                yield (article, row[1] or article.uid, row[2], aliases.get(row[0], []),
                       codes.get(row[0], ()))

    def day_counts(self, utc_offset_seconds: int) -> list[tuple[str, int]]:
        """(YYYY-MM-DD, count) per local day, newest day first."""
        return [(day, n) for day, n in self._db.execute(
            "SELECT date(published_ts + ?, 'unixepoch') AS day, count(*) FROM articles "
            "GROUP BY day ORDER BY day DESC", (utc_offset_seconds,))]

    # -- sources ------------------------------------------------------------------

    def list_hashes(self, uids: Iterable[str]) -> dict[str, str]:
        """uid → hash of the list entry the article was last made from."""
        found: dict[str, str] = {}
        wanted = list(uids)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            found.update(self._db.execute(
                f"SELECT uid, list_hash FROM source_items WHERE uid IN "
                f"({','.join('?' * len(chunk))})", chunk))
        return found

    def set_list_hashes(self, hashes: dict[str, str]) -> None:
        with self.transaction():
            self._db.executemany(
                "INSERT INTO source_items (uid, list_hash) VALUES (?, ?) "
                "ON CONFLICT (uid) DO UPDATE SET list_hash = excluded.list_hash",
                hashes.items())

    def source_health(self, name: str) -> SourceHealth:
        row = self._db.execute(
            "SELECT name, last_attempt, last_success, consecutive_failures, last_error, "
            "next_poll, lists FROM source_health WHERE name = ?", (name,)).fetchone()
        if row is None:
            return SourceHealth(name)
        return SourceHealth(name=row[0], last_attempt=row[1], last_success=row[2],
                            consecutive_failures=row[3], last_error=row[4], next_poll=row[5],
                            lists=json.loads(row[6]))

    def all_source_health(self) -> dict[str, SourceHealth]:
        names = [row[0] for row in self._db.execute("SELECT name FROM source_health")]
        return {name: self.source_health(name) for name in names}

    def save_source_health(self, health: SourceHealth) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO source_health (name, last_attempt, last_success, "
                "consecutive_failures, last_error, next_poll, lists) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET last_attempt = excluded.last_attempt, "
                "last_success = excluded.last_success, "
                "consecutive_failures = excluded.consecutive_failures, "
                "last_error = excluded.last_error, next_poll = excluded.next_poll, "
                "lists = excluded.lists",
                (health.name, health.last_attempt, health.last_success,
                 health.consecutive_failures, health.last_error, health.next_poll,
                 json.dumps(health.lists, sort_keys=True)))

    # -- site build state ---------------------------------------------------------

    def build_state(self, out_dir: str) -> BuildState | None:
        row = self._db.execute(
            "SELECT last_seq, fingerprint FROM site_builds WHERE out_dir = ?", (out_dir,)
        ).fetchone()
        return BuildState(*row) if row else None

    def built_paths(self, out_dir: str, uids: Iterable[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for uid in uids:
            row = self._db.execute(
                "SELECT path FROM site_articles WHERE out_dir = ? AND uid = ?", (out_dir, uid)
            ).fetchone()
            if row:
                out[uid] = row[0]
        return out

    def save_build_state(self, out_dir: str, state: BuildState,
                         paths: Mapping[str, str | None] | Iterable[tuple[str, str | None]],
                         *, replace_all: bool = False) -> None:
        """Record a finished build: the change it reached and where article pages are.

        ``paths``: uid → the article's page (None: it has none any more), as a
        mapping or as pairs (a full build streams every article's).
        """
        pairs = iter(paths.items() if isinstance(paths, Mapping) else paths)
        with self.transaction():
            if replace_all:
                self._db.execute("DELETE FROM site_articles WHERE out_dir = ?", (out_dir,))
            while chunk := list(itertools.islice(pairs, 1000)):
                self._db.executemany(
                    "DELETE FROM site_articles WHERE out_dir = ? AND uid = ?",
                    [(out_dir, uid) for uid, path in chunk if path is None])
                self._db.executemany(
                    "INSERT INTO site_articles (out_dir, uid, path) VALUES (?, ?, ?) "
                    "ON CONFLICT (out_dir, uid) DO UPDATE SET path = excluded.path",
                    [(out_dir, uid, path) for uid, path in chunk if path is not None])
            self._db.execute(
                "INSERT INTO site_builds (out_dir, last_seq, fingerprint, built_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (out_dir) DO UPDATE SET "
                "last_seq = excluded.last_seq, fingerprint = excluded.fingerprint, "
                "built_at = excluded.built_at",
                (out_dir, state.last_seq, state.fingerprint, _now()))

    # -- imported files -----------------------------------------------------------

    def import_records(self, paths: Sequence[str],
                       reader: str) -> dict[str, tuple[int, int, bytes, str, str]]:
        """path → (size, mtime_ns, digest, uid, repairs as JSON) of these imported files.

        Only records made by this ``reader`` (``caixun.importer.READER_VERSION``)
        and whose article is still in the archive (under its uid, or as an
        alias): a file whose post is read differently now, or whose article
        was deleted, is read again. One query per 500 paths.
        """
        if self.schema_version < 10:
            return {}
        found: dict[str, tuple[int, int, bytes, str, str]] = {}
        for start in range(0, len(paths), 500):
            part = paths[start:start + 500]
            for path, *record in self._db.execute(
                    "SELECT f.path, f.size, f.mtime_ns, f.digest, f.uid, f.repairs "
                    "FROM import_files f WHERE f.path IN (" + ",".join("?" * len(part))
                    + ") AND f.reader = ? AND (EXISTS (SELECT 1 FROM articles a "
                    "WHERE a.uid = f.uid) OR EXISTS (SELECT 1 FROM article_aliases l "
                    "WHERE l.uid = f.uid))", (*part, reader)):
                found[path] = (record[0], record[1], bytes(record[2]), record[3], record[4])
        return found

    def record_imports(self, records: Iterable[tuple[str, int, int, bytes, str, str]],
                       reader: str) -> None:
        """Record imported files: (path, size, mtime_ns, digest, uid, repairs as JSON).

        Call it in the transaction that stores their articles, so no file is
        recorded whose article is not stored.
        """
        if self.schema_version < 10:
            return
        with self.transaction():
            self._db.executemany(
                "INSERT INTO import_files (path, size, mtime_ns, digest, uid, repairs, reader) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
                "size = excluded.size, mtime_ns = excluded.mtime_ns, digest = excluded.digest, "
                "uid = excluded.uid, repairs = excluded.repairs, reader = excluded.reader",
                [(*record, reader) for record in records])

    # -- waiting for other writers ---------------------------------------------

    def set_busy_timeout(self, seconds: float) -> None:
        """How long one statement waits for another connection's lock (then: busy)."""
        self._db.execute(f"PRAGMA busy_timeout={max(0, int(seconds * 1000))}")


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


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc``, or what caused it, is SQLite saying another connection holds a lock.

    Such an error is worth waiting out: the statement failed as a whole and
    its transaction was rolled back (``caixun.archive.worker.retry_busy``).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.OperationalError) and _busy_error(current):
            return True
        # e.g. "cannot rollback" raised while handling the lock error that caused it
        current = current.__cause__ or current.__context__
    return False


def _busy_error(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _BUSY_CODES  # extended codes too: BUSY_SNAPSHOT …
    return "is locked" in str(exc) or "is busy" in str(exc)

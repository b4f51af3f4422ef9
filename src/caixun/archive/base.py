"""What every archive does, whatever its database: the storage logic written once.

Storing an article whose ``uid`` is known updates it in place; when its title
or body changes, the previous title and body are kept in ``article_versions``.
Every new, updated or deleted article is recorded in ``changes``, which the
publisher reads to rebuild only what changed. Identities, aliases, stories,
securities, watch lists, source health and build state live here too.

A backend (``sqlite.py``, ``postgres.py``) supplies only what differs: how
it connects and takes turns between writers, its migrations' dialect, and
its full-text index. The SQL here is written once for both: ``?``
placeholders (the PostgreSQL connection turns them into its own), ``ON
CONFLICT`` upserts and ``RETURNING`` instead of ``lastrowid``.
"""

from __future__ import annotations

import itertools
import json
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence, TypeVar

from caixun.archive import securities as tags
from caixun.archive import stories
from caixun.archive import watches as watching
from caixun.archive.connection import Connection, insert_returning_id
from caixun.archive.migrations import Migration
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
from caixun.segment import IndexedText, Query, indexed_body, parse_query, snippet

__all__ = ["Archive", "ArticleRef", "ArticleVersion", "BuildState", "Change", "SearchHit",
           "SourceHealth", "StoreResult"]

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
_T = TypeVar("_T")
_NO_LIMIT = 2**62  # LIMIT -1 is SQLite's, LIMIT ALL PostgreSQL's
_IDS_PER_READ = 500  # ids in one IN list (SQLite before 3.32 took at most 999 values)
_IMPORT_DIRS = "import_dirs:"  # search_meta's key of a tree's directories, then its path
_SELECT_REF = ("SELECT id, uid, title, outlet, outlet_slug, published_ts, file_id "
               "FROM articles")
RECLUSTER_BATCH = 2000  # articles re-clustered per transaction (see Archive.recluster)
IDENTITY_VERSION = "1"  # bump when caixun.identity reads identities differently


def _in_parts(values: Sequence[_T]) -> Iterator[Sequence[_T]]:
    """``values`` in parts of :data:`_IDS_PER_READ`: one ``IN`` list each."""
    for start in range(0, len(values), _IDS_PER_READ):
        yield values[start:start + _IDS_PER_READ]


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

    ``members``: article id → every article of its story, oldest first, then
    by id (only for stories with more than one); ``originals``: article id →
    the article it is an exact copy of.
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


# Recency: a bonus that halves after _RECENCY_SCALE seconds (a week), worth
# about as much as one more title hit for today's news.
_RECENCY_WEIGHT = 3.0
_RECENCY_SCALE = 7 * 86400.0


# A query matching more articles than this is ranked among its newest matches
# only: ranking every one of 100,000 matches costs a quarter of a second, and
# the recency blend would bury the old ones anyway.
RANK_WINDOW = 1000
_TITLE_HIT = 6.0  # a title hit in a broad query's window, on bm25's scale with the weights above
_TAGGED = "id IN (SELECT article_id FROM article_securities WHERE code = ?)"


def _span(since_ts: int | None, until_ts: int | None) -> tuple[int, int] | None:
    """A search's [since, until) in Unix seconds; None when it has neither."""
    if since_ts is None and until_ts is None:
        return None
    return (since_ts if since_ts is not None else -2**62,
            until_ts if until_ts is not None else 2**62)


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


def content_row(article: Article) -> tuple[Any, ...]:
    """The article's values for the columns of ``articles`` (an importer's workers make
    them beside the rest, as they are the same wherever made)."""
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


def _partly(version: str) -> str:
    """The stories version of an archive whose re-clustering to ``version`` is under way."""
    return f"{version}-partly"


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
REINDEX_NOTICE_FROM = 20_000  # articles: below, a rebuilt index takes seconds
REINDEX_RATE = 2_000  # articles a second (1,000,000 in 8 min on 2 cores)
RECLUSTER_RATE = 400  # articles a second re-clustered, at worst (1,000,000 bench posts,
# every one alike: 353 a second; 10,000: 778)
PROGRESS_EVERY = 60.0  # seconds between two progress notices of a long upgrade step
_REINDEX_PROGRESS_ROWS = 1000  # articles indexed between two looks at the clock


def _about(seconds: float) -> str:
    """An expected duration, for a notice: ``40 s``, ``8 min``."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class _Progress:
    """Notices of a long upgrade step as it goes: how far, and how long is left at the
    rate measured so far (the first notice could only guess the rate)."""

    clock = staticmethod(time.monotonic)

    def __init__(self, notice: Callable[[str], None], path: object, left: int,
                 done_what: str) -> None:
        self.notice, self.path, self.left, self.done_what = notice, path, left, done_what
        self.start = self.last = self.clock()

    def __call__(self, done: int) -> None:
        if done >= self.left:
            return
        now = self.clock()
        if now - self.last < PROGRESS_EVERY:
            return
        self.last = now
        seconds = (self.left - done) * (now - self.start) / done if done else 0.0
        self.notice(f"{self.path}: {done:,} of {self.left:,} articles {self.done_what} "
                    f"({done / self.left:.0%}), about {_about(seconds)} left")

    def finish(self, done: int) -> None:
        self.notice(f"{self.path}: {done:,} articles {self.done_what} in "
                    f"{_about(self.clock() - self.start)}")


class Archive(ABC):
    """The archive's storage logic over a backend's connection. Not shared between threads.

    A backend's ``__init__`` calls :meth:`_start` with its connection once
    the schema is current; the abstract methods are what it supplies.
    """

    path: str | Path  # where the archive is, for messages: a file, or a server's database
    location: str  # what open_archive opens it with again (a URL may hold a password)
    read_only: bool
    _db: Connection
    _db_errors: tuple[type[BaseException], ...]  # the driver's errors
    # The condition "article a matches the search expression ?" (see watches.watch_condition).
    _search_condition: str
    _clock: str  # SQL: the database's time, Unix seconds as a float
    _greatest: str  # SQL: the larger of two values
    _read_begin: str  # SQL: begin a read transaction (see snapshot)

    def _init_state(self, read_only: bool, notice: Callable[[str], None] | None) -> None:
        self.read_only = read_only
        self._notice = notice  # told before an upgrade that takes a while
        self._depth = 0
        self._outlets: dict[str, str] = {}
        self._recent: stories.Recent = {}  # see stories.Recent
        self._terms = stories.TermCache()  # see stories.TermCache
        self._relinked: dict[int, None] = {}  # see _log_story_change
        self._stale_index = False
        self._tagger: Tagger | None = None  # loaded when the first article is tagged
        self._tagger_seq = 0  # the last name it knows (security_names' rowid)
        self._tagger_checked = False  # whether this transaction looked for newer names
        self._watching: list[tuple[Watch, Any]] = []  # see use_watches

    def _start(self) -> None:
        """Once the schema is current: what the archive has, and the repairs a writer makes."""
        version = self.schema_version
        self._has_stories = version >= 8  # stories, aliases, relinks
        self._has_identity = version >= 9
        self._has_static_terms = version >= 11
        self._has_securities = version >= 12
        self._has_watches = version >= 13
        self._has_facets = version >= 14
        self._has_events = version >= 16
        self._has_tag_times = version >= 17
        self._columns = _CONTENT_COLUMNS if self._has_identity else _OLD_CONTENT_COLUMNS
        self._article_columns = (_ARTICLE_COLUMNS if self._has_identity
                                 else _OLD_ARTICLE_COLUMNS)
        self._select_article = f"SELECT {self._article_columns} FROM articles"
        if version >= 5:
            self._ensure_search_index()
        # Read-only, nothing is repaired: stories an older clusterer made
        # are read as they are; dates no page can show are refused, as
        # every reader would trip over them.
        if self._has_stories and not self.read_only:
            self._ensure_stories()
        if self._has_identity and not self.read_only:
            self._ensure_identities()
        self.redated = self._refuse_bad_dates() if self.read_only else self._repair_dates()

    # -- what a backend supplies ------------------------------------------------

    @abstractmethod
    def _begin(self) -> None:
        """Start a write transaction, waiting for other writers' turn."""

    def _join(self) -> None:
        """A write joins the transaction in progress (maybe a read: a snapshot's)."""

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction: every query inside sees one state of the archive."""
        if self._depth:
            yield
            return
        self._db.execute(self._read_begin)
        self._depth = 1
        try:
            yield
        except BaseException:
            self._rollback()
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0
            self._snapshot_done()

    def _snapshot_done(self) -> None:
        """After a snapshot: what a backend resets."""

    @abstractmethod
    def _stream(self, sql: str, params: Sequence[Any] = (), size: int = 500) -> Iterator[Any]:
        """The rows of a query that may return millions, read ``size`` at a time."""

    @abstractmethod
    def _apply(self, migration: Migration) -> None:
        """Run a migration and record it, in one transaction."""

    def _ensure_search_index(self) -> None:
        """Rebuild the search index when the segmenter changed since it was built."""
        row = self._db.execute(
            "SELECT value FROM search_meta WHERE key = 'segment_version'").fetchone()
        if row is not None and row[0] == SEGMENT_VERSION:
            return
        if self.read_only:
            self._stale_index = True  # search() says so; everything else still reads
            return
        self.reindex()

    def _redated(self, article_id: int, published_ts: int) -> None:
        """An article's time was mended (see _repair_dates): what the index keeps of it.

        SQLite's facet tokens keep the old day (a contentless FTS5 row can only
        be removed with the tokens it was indexed with), until the next reindex.
        """

    def _keep_static_terms(self, article_id: int, indexed: IndexedText) -> None:
        """The article's static-search terms, kept for the site's search index."""
        if self._has_static_terms and indexed.static:
            self._db.execute(
                "INSERT INTO static_terms (article_id, version, terms) VALUES (?, ?, ?) "
                "ON CONFLICT (article_id) DO UPDATE SET version = excluded.version, "
                "terms = excluded.terms", (article_id, STATIC_VERSION, indexed.static))

    @abstractmethod
    def _index(self, article_id: int, title: str, digest: str, body_text: str,
               outlet_slug: str, published_ts: int, indexed: IndexedText | None = None) -> None:
        """Add an article to the search index."""

    @abstractmethod
    def _unindex(self, article_id: int, title: str, digest: str, body_text: str,
                 outlet_slug: str, published_ts: int) -> None:
        """Remove an article, as it was indexed, from the search index."""

    @abstractmethod
    def _clear_index(self) -> None:
        """Empty the search index (before it is rebuilt)."""

    @abstractmethod
    def _search(self, query: str, outlet: str | None, since_ts: int | None,
                until_ts: int | None, limit: int, offset: int,
                now: float | None, stocks: tuple[str, ...] = ()) -> list[SearchHit]:
        """``search`` with the archive's full-text index."""

    @abstractmethod
    def _match_ids(self, match: str) -> list[int]:
        """The ids of the articles matching a search expression (``segment.Query.match``)."""

    @abstractmethod
    def _search_value(self, match: str) -> Any:
        """The parameter of :attr:`_search_condition` for a search expression."""

    @abstractmethod
    def day_counts(self, utc_offset_seconds: int) -> list[tuple[str, int]]:
        """(YYYY-MM-DD, count) per local day, newest day first."""

    @abstractmethod
    def set_busy_timeout(self, seconds: float) -> None:
        """How long one statement waits for another connection's lock (then: busy)."""

    # -- lifecycle ----------------------------------------------------------

    def close(self) -> None:
        self._db.close()  # type: ignore[attr-defined]

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; nested calls join the outer one."""
        if self._depth:
            self._join()
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._begin()
        self._recent.clear()  # what another process wrote since is not in it
        self._terms.clear()
        self._tagger_checked = False  # nor the names it learned
        self._relinked.clear()
        self._depth = 1
        try:
            yield
            self._flush_relinks()
            self._terms.flush(self._db)
        except BaseException:
            self._rollback()
            raise
        else:
            self._commit()
        finally:
            self._depth = 0

    @abstractmethod
    def _has_schema(self) -> bool:
        """Whether the database has caixun's schema table."""

    def _check_schema(self, migrations: Sequence[Migration]) -> None:
        """Read-only: the schema must be the one this caixun writes, as nothing is upgraded.

        An older schema is refused rather than read as well as possible: every
        query is written for the current tables, and one writing command
        upgrades the archive in a moment.
        """
        known = max((m.version for m in migrations), default=0)
        if not self._has_schema():
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

    def store(self, article: Article) -> StoreResult:
        """Insert or update one article; idempotent for the same content."""
        try:
            with self.transaction():
                return self._store(article)
        except self._db_errors as exc:
            raise ArchiveError(f"{self.path}: cannot store {article.uid}: {exc}") from exc

    def store_many(self, articles: Iterable[Article],
                   indexed: Sequence[IndexedText] | None = None,
                   prints: Sequence[Candidate] | None = None,
                   scans: Sequence[Scanned] | None = None,
                   rows: Sequence[tuple[Any, ...]] | None = None) -> list[StoreResult]:
        """Store articles in one transaction (all or none).

        ``indexed`` may give each article's search tokens, already segmented
        (by ``segment.index_text``), ``prints`` its fingerprint
        (``dedup.Candidate.of``), ``scans`` what tagging needs no names for
        (``archive.securities.scan_article``) and ``rows`` its column values
        (:func:`content_row`), all e.g. made in worker processes.
        """
        try:
            with self.transaction():
                batch = list(articles)
                tokens = indexed if indexed is not None else [None] * len(batch)
                found = prints if prints is not None else [None] * len(batch)
                scanned = scans if scans is not None else [None] * len(batch)
                values = rows if rows is not None else [None] * len(batch)
                if prints is not None and self._has_events:
                    # The counts of every term of the batch in a few reads, not one per article.
                    self._terms.prefetch(self._db, [candidate.terms for candidate in prints
                                                    if candidate.terms is not None])
                return [self._store(a, i, c, t, r) for a, i, c, t, r
                        in zip(batch, tokens, found, scanned, values, strict=True)]
        except self._db_errors as exc:
            raise ArchiveError(f"{self.path}: cannot store articles: {exc}") from exc

    def _store(self, article: Article, indexed: IndexedText | None = None,
               candidate: Candidate | None = None, scanned: Scanned | None = None,
               row: tuple[Any, ...] | None = None) -> StoreResult:
        try:  # the sources and the post reader check it; this keeps the archive showable
            check_published(article.published_at)
        except ValueError as exc:
            raise ArchiveError(f"{self.path}: cannot store {article.uid}: "
                               f"publication time {exc}") from exc
        self._ensure_outlet(article.outlet_slug, article.outlet)
        content = (row or content_row(article))[:len(self._columns)]
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
                                     recent=self._recent, with_events=self._has_events,
                                     terms=self._terms)
            if self._merge(article, lookup):
                return StoreResult.MERGED
        if self._has_identity and not article.imported:
            article, content = self._unclashed(article, content)
        now = _now()
        article_id = insert_returning_id(
            self._db, "INSERT INTO articles (uid, fetched_at, stored_at, updated_at, "
            + ", ".join(self._columns) + ") VALUES (?, ?, ?, ?, "
            + ", ".join("?" * len(self._columns)) + ")",
            (article.uid, _fetched(article), now, now, *content), "id")
        self._index(article_id, article.title, article.digest, article.body_text,
                    content[2], content[5], indexed)
        seq = self._log_change(article_id, article.uid, "new", content[2], content[5])
        codes = self._tag(article_id, article, seq, content[5], new=True, scanned=scanned)
        if self._watching:
            self._notify(article_id, article, codes)
        if lookup is not None:
            placed = stories.place(self._db, article_id, lookup, self._recent,
                                   terms=self._terms)
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
            stories.replace_print(self._db, article_id, candidate or Candidate.of(article),
                                  self._has_events, self._terms)
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
        for part in _in_parts(shared):
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
        return insert_returning_id(
            self._db, "INSERT INTO changes (uid, kind, outlet_slug, published_ts, at, "
            "old_outlet_slug, old_published_ts, article_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (uid, kind, slug, ts, _now(), old_slug, old_ts, article_id), "seq")

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
        for part in _in_parts(ids):
            rows = self._db.execute(
                "SELECT id, uid, outlet_slug, published_ts FROM articles WHERE id IN ("
                + ",".join("?" * len(part)) + ")", tuple(part)).fetchall()
            by_id = {row[0]: row[1:] for row in rows}  # a deleted one has none
            self._db.executemany(
                "INSERT INTO changes (uid, kind, outlet_slug, published_ts, at, article_id, "
                "relink) VALUES (?, 'update', ?, ?, ?, ?, 1)",
                [(*by_id[i], now, i) for i in part if i in by_id])

    def tagger(self) -> Tagger:
        """The tagger of every name the archive knows (kept up to date as it learns).

        Another process (a second fetcher) may learn names too: once per
        transaction the archive's last name is looked at, and the tagger read
        again when it moved.
        """
        if self._tagger is not None and self._tagger_checked:
            return self._tagger
        seq = self._last_name_seq() if self._has_securities else 0
        if self._tagger is None or seq != self._tagger_seq:
            self._tagger = tags.load_tagger(self._db) if self._has_securities else Tagger()
        self._tagger_seq, self._tagger_checked = seq, True
        return self._tagger

    def _learned(self, names: Iterable[SecurityName]) -> None:
        """Names this process stored: into its tagger, which knows the last one now."""
        tagger = self.tagger()
        for name in names:
            tagger.learn(name.code, name.name)
        self._tagger_seq = self._last_name_seq()

    def _tag(self, article_id: int, article: Article, change_seq: int, published_ts: int,
             old_ts: int | None = None, new: bool = False,
             scanned: Scanned | None = None) -> tuple[str, ...]:
        """Tag a stored article with its securities, learning the names it links first."""
        if not self._has_securities:
            return ()
        tagger = self.tagger()
        learned = tags.learned_from(article)
        unknown = [n for n in learned if not tagger.knows(n.code, n.name)]
        if unknown:
            self._learned(tags.learn(self._db, unknown))
        codes = tagger.tag_scanned(scanned or tags.scan_article(article, learned),
                                   tags.article_text(article))
        tags.set_tags(self._db, article_id, codes, change_seq, published_ts, old_ts, new=new,
                      timed=self._has_tag_times)
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
            self._learned(new)
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
                seq = insert_returning_id(
                    self._db, "INSERT INTO changes (uid, kind, outlet_slug, published_ts, at, "
                    "article_id, relink) VALUES (?, 'update', ?, ?, ?, ?, 1)",
                    (uid, slug, ts, now, article_id), "seq")
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
        for part in _in_parts(wanted):
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
        if not offset and limit is None:
            return self._refs(_TAGGED, (code,))
        # The part wanted is a range of the security's tags in time order (their
        # index), not a sort of all its articles.
        return self._refs(
            "id IN (SELECT article_id FROM article_securities WHERE code = ? "
            "ORDER BY published_ts, article_id LIMIT ? OFFSET ?)",
            (code, _NO_LIMIT if limit is None else limit, offset))

    def stock_newest(self, code: str, limit: int) -> list[ArticleRef]:
        return self._refs(
            "id IN (SELECT article_id FROM article_securities WHERE code = ? "
            "ORDER BY published_ts DESC, article_id DESC LIMIT ?)",
            (code, limit), "published_ts DESC, id DESC")

    def stock_position(self, code: str, published_ts: int, article_id: int = 0) -> int:
        """How many of the security's articles come before (published_ts, id)."""
        row = self._db.execute(
            "SELECT count(*) FROM article_securities WHERE code = ? AND "
            "(published_ts, article_id) < (?, ?)", (code, published_ts, article_id)).fetchone()
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
            ids.update(self._match_ids(match))
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
                seq = insert_returning_id(
                    self._db, "INSERT INTO changes (uid, kind, outlet_slug, published_ts, at, "
                    "article_id, relink) VALUES (?, 'update', ?, ?, ?, ?, 1)",
                    (article.uid, article.outlet_slug, ts, _now(), article_id), "seq")
                tags.set_tags(self._db, article_id, codes, seq, ts, timed=self._has_tag_times)

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
        self._watching = [(w, None if match is None else self._search_value(match))
                          for w, match in parsed if w.notifies]
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
        watching.match_new(self._db, article_id, self._watching, row, self._search_condition)

    def watch_refs(self, watch: Watch, limit: int | None = None, offset: int = 0,
                   since_ts: int | None = None, until_ts: int | None = None
                   ) -> list[ArticleRef]:
        """Every article the watch matches, over the whole archive, newest first."""
        if not self._has_securities:
            return []
        match = parse_query(watch.query).match if watch.query.strip() else None
        condition, values = watching.watch_condition(
            watch, None if match is None else self._search_value(match), self._search_condition)
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
            sql += f" LIMIT {int(limit if limit is not None else _NO_LIMIT)} OFFSET {int(offset)}"
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
                self._redated(article_id, ts)
                self._db.execute("UPDATE changes SET published_ts = ? WHERE article_id = ?",
                                 (ts, article_id))
                self._db.execute("UPDATE changes SET old_published_ts = ? WHERE article_id = ? "
                                 "AND (old_published_ts < ? OR old_published_ts >= ?)",
                                 (ts, article_id, EARLIEST_TS, LATEST_TS))
                if self._has_stories:
                    self._db.execute("UPDATE dedup_keys SET published_ts = ? "
                                     "WHERE article_id = ?", (ts, article_id))
                    self._recent.pop(article_id, None)
                if self._has_tag_times:
                    self._db.execute("UPDATE article_securities SET published_ts = ? "
                                     "WHERE article_id = ?", (ts, article_id))
                self._log_change(article_id, uid, "update", slug, ts)
        return [row[1] for row in rows]

    def _ensure_stories(self) -> None:
        """Cluster again when fingerprints changed (or never were) since the last time,
        or finish a re-clustering that was cut short."""
        row = self._db.execute(
            "SELECT value FROM search_meta WHERE key = 'stories_version'").fetchone()
        if row is not None and row[0] == stories.VERSION:
            return
        resume = row is not None and row[0] == _partly(stories.VERSION)
        progress = self._announce_reclustering(resume)
        done = self.recluster(resume=resume, progress=progress)
        if progress is not None:
            progress.finish(done)

    def recluster(self, resume: bool = False,
                  progress: Callable[[int], None] | None = None) -> int:
        """Fingerprint and cluster every article again, oldest first; returns how many.

        In transactions of RECLUSTER_BATCH articles, so that other writers wait
        for one batch at most and an interruption loses one batch at most:
        the version is marked partly done first, and a later opening goes on
        with the articles that have no fingerprint yet (``resume``).
        ``progress`` hears how many are placed after each batch.
        """
        if not resume:
            with self.transaction():
                stories.clear(self._db, self._has_events)
                self._recent.clear()
                self._terms.clear()
                self._set_stories_version(_partly(stories.VERSION))
                self._set_meta("stories_cursor", "")
        count = 0
        while True:
            with self.transaction():
                row = self._db.execute(
                    "SELECT value FROM search_meta WHERE key = 'stories_cursor'").fetchone()
                ts, last = map(int, row[0].split(":")) if row and row[0] else (-(1 << 62), 0)
                # Ids first: placing writes to the table a pending SELECT would read.
                # An article another writer stored meanwhile has its story already.
                part = self._db.execute(
                    "SELECT id, published_ts FROM articles a WHERE (published_ts, id) > (?, ?) "
                    "ORDER BY published_ts, id LIMIT ?",
                    (ts, last, RECLUSTER_BATCH)).fetchall()
                if not part:
                    self._set_stories_version(stories.VERSION)
                    return count
                ids = [article_id for article_id, _ in part]
                placed = {r[0] for r in self._db.execute(
                    "SELECT article_id FROM dedup_prints WHERE article_id IN ("
                    + ",".join("?" * len(ids)) + ")", ids)}
                rows = self._db.execute(
                    f"SELECT id, {self._article_columns} FROM articles WHERE id IN ("
                    + ",".join("?" * len(ids)) + ")", ids).fetchall()
                by_id = {row[0]: _article_from_row(row[1:]) for row in rows}
                new = {article_id: Candidate.of(by_id[article_id])
                       for article_id in ids if article_id not in placed}
                if self._has_events:
                    self._terms.prefetch(self._db, [c.terms for c in new.values()
                                                    if c.terms is not None])
                # The batch's articles are each other's candidates: kept as placed
                # (self._recent, emptied by each transaction), not read again.
                for article_id, candidate in new.items():
                    stories.place(self._db, article_id, candidate, self._recent,
                                  with_events=self._has_events, terms=self._terms)
                count += len(ids) - len(placed)
                self._set_meta("stories_cursor", "%d:%d" % (part[-1][1], part[-1][0]))
            if progress is not None:
                progress(count)

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT INTO search_meta (key, value) VALUES (?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def _announce_reclustering(self, resume: bool) -> _Progress | None:
        """Say before a long re-clustering starts that it will take a while, and why;
        the notices of its progress, if it is long."""
        if self._notice is None:
            return None
        total = self.count()
        if total < REINDEX_NOTICE_FROM:
            return None
        # Resumed: the articles placed before the interruption have their fingerprints.
        left = total - (self._db.execute("SELECT count(*) FROM dedup_prints").fetchone()[0]
                        if resume else 0)
        what = (f"going on with placing the {left:,} articles left of {total:,}" if resume
                else f"placing the {total:,} articles")
        self._notice(f"{self.path}: {what} in stories again, once, for this version of caixun "
                     f"(about {_about(left / RECLUSTER_RATE)}; in batches of "
                     f"{RECLUSTER_BATCH:,}: other writers wait one batch at most)")
        return _Progress(self._notice, self.path, left, "placed in stories")

    def _set_stories_version(self, version: str) -> None:
        self._set_meta("stories_version", version)

    def reindex(self) -> int:
        """Rebuild the whole search index; returns how many articles it indexed."""
        total = self.count()
        progress = None
        if self._notice is not None and total >= REINDEX_NOTICE_FROM:
            seconds = total / REINDEX_RATE
            self._notice(f"{self.path}: rebuilding the search index of {total:,} articles "
                         f"once, for this version of caixun (about {_about(seconds)}; "
                         "other writers wait meanwhile)")
            progress = _Progress(self._notice, self.path, total, "indexed")
        with self.transaction():
            self._clear_index()
            count = 0
            for row in self._stream("SELECT id, title, digest, body_text, outlet_slug, "
                                    "published_ts FROM articles", (), 1000):
                self._index(*row)
                count += 1
                if progress is not None and not count % _REINDEX_PROGRESS_ROWS:
                    progress(count)
            self._db.execute(
                "INSERT INTO search_meta (key, value) VALUES ('segment_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (SEGMENT_VERSION,))
        if progress is not None:
            progress.finish(count)
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
        except self._db_errors as exc:
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

    def _kept(self, outlet: str | None, span: tuple[int, int] | None,
              stocks: tuple[str, ...]) -> tuple[str, tuple[Any, ...]]:
        """What a search keeps of the matches, as a condition on their article ``a``."""
        kept, params = [f"a.{_TAGGED}"] * len(stocks), list[Any](stocks)
        if outlet:
            kept.append("a.outlet_slug = ?")
            params.append(outlet)
        elif self._has_stories:
            kept.append("a.duplicate_of IS NULL")  # an exact copy is found as its original
        if span is not None:
            kept.append("a.published_ts >= ? AND a.published_ts < ?")
            params += span
        return " AND ".join(kept), tuple(params)

    def _hits(self, parsed: Query, window: list[tuple[int, int]], relevance: dict[int, float],
              offset: int, limit: int, now: float | None) -> list[SearchHit]:
        """The window's matches ranked, relevance (lower is better) blended with recency."""
        now_ts = time.time() if now is None else now
        ranked = sorted(window, key=lambda row: (
            relevance.get(row[0], 0.0)
            - _RECENCY_WEIGHT / (1.0 + max(0.0, now_ts - row[1]) / _RECENCY_SCALE), -row[0]))
        chosen = ranked[offset:offset + limit]
        rows = {row[0]: row for row in self._db.execute(
            "SELECT id, uid, title, outlet, outlet_slug, published_ts, file_id, digest, body_text "
            "FROM articles WHERE id IN (" + ",".join("?" * len(chosen)) + ")",
            [article_id for article_id, _ in chosen])} if chosen else {}
        hits = []
        for article_id, ts in chosen:
            row = rows[article_id]
            score = -relevance.get(article_id, 0.0) + _RECENCY_WEIGHT / (
                1.0 + max(0.0, now_ts - ts) / _RECENCY_SCALE)
            hits.append(SearchHit(ArticleRef(*row[:7]), score,
                                  snippet(row[8] or row[7] or row[2], parsed.highlights)))
        return hits

    def add_outlet_alias(self, alias: str, slug: str) -> None:
        """Remember an old (unsafe) spelling of an outlet's slug."""
        with self.transaction():
            self._db.execute(
                "INSERT INTO outlet_aliases (alias, slug) VALUES (?, ?) "
                "ON CONFLICT (alias) DO UPDATE SET slug = excluded.slug",
                (alias, slug),
            )

    def get(self, uid: str) -> Article | None:
        row = self._db.execute(self._select_article + " WHERE uid = ?", (uid,)).fetchone()
        return _article_from_row(row) if row else None

    def iter_articles(self) -> Iterator[Article]:
        """Every article, oldest first; streams, so memory stays flat."""
        for row in self._stream(self._select_article + " ORDER BY published_ts, id"):
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

    def _refs(self, where: str, params: Sequence[Any], order: str = "published_ts, id",
              limit: int | None = None, offset: int = 0) -> list[ArticleRef]:
        sql = f"{_SELECT_REF} WHERE {where} ORDER BY {order}"
        if limit is not None or offset:
            sql += f" LIMIT {int(limit if limit is not None else _NO_LIMIT)} OFFSET {int(offset)}"
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
            "SELECT count(*) FROM articles WHERE outlet_slug = ? AND (published_ts, id) < (?, ?)",
            (slug, published_ts, article_id),
        ).fetchone()
        return int(row[0])

    def neighbors(self, slug: str, published_ts: int,
                  article_id: int) -> tuple[ArticleRef | None, ArticleRef | None]:
        """The outlet's articles just before and just after (published_ts, id)."""
        # Row values, not "ts < ? OR (ts = ? AND id < ?)": with the OR, SQLite scans
        # the outlet's whole index (1 ms at 17,000 articles) instead of seeking.
        before = self._refs("outlet_slug = ? AND (published_ts, id) < (?, ?)",
                            (slug, published_ts, article_id), "published_ts DESC, id DESC", 1)
        after = self._refs("outlet_slug = ? AND (published_ts, id) > (?, ?)",
                           (slug, published_ts, article_id), "published_ts, id", 1)
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
        return [(slug, self.outlet_newest(slug, limit)) for slug in self.outlets_by_newest()]

    def outlets_by_newest(self) -> list[str]:
        """The outlets that have articles, by their newest article (time, id), newest first.

        From the outlet index alone (two seeks an outlet), no article row read: a
        GROUP BY over the articles, or a window, reads every article (10 ms at
        100,000, at every build). Every article's outlet is in ``outlets``.
        """
        newest = ("(SELECT {} FROM articles a WHERE a.outlet_slug = o.slug "
                  "ORDER BY a.published_ts DESC, a.id DESC LIMIT 1)")
        return [slug for slug, in self._db.execute(
            f"SELECT slug FROM (SELECT o.slug AS slug, {newest.format('a.published_ts')} AS ts, "
            f"{newest.format('a.id')} AS id FROM outlets o) AS n WHERE ts IS NOT NULL "
            "ORDER BY ts DESC, id DESC")]

    def refs_in_id_range(self, first_id: int, last_id: int) -> list[ArticleRef]:
        return self._refs("id BETWEEN ? AND ?", (first_id, last_id), "id")

    def max_article_id(self) -> int:
        row = self._db.execute("SELECT max(id) FROM articles").fetchone()
        return int(row[0] or 0)

    def newest_with_summary(self, limit: int, slug: str | None = None,
                            length: int = 160) -> list[tuple[ArticleRef, str]]:
        """The newest articles (of one outlet, or all) with a short plain-text summary."""
        where, params = ("outlet_slug = ?", (slug,)) if slug else ("TRUE", ())
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

    def stories(self, article_ids: Iterable[int] | None = None,
                known: dict[int, tuple[ArticleRef, ...]] | None = None) -> Stories:
        """The stories of these articles (of all when None) that have several articles.

        ``known``: story id → its articles, as read by an earlier call of the
        same snapshot; those stories are not read again, and the ones read are
        added (the caller bounds it). A full build reads the stories of one
        window of articles after another, and a story spans many windows.
        """
        if article_ids is None:
            story_ids = [r[0] for r in self._db.execute(
                "SELECT story_id FROM articles WHERE story_id IS NOT NULL "
                "GROUP BY story_id HAVING count(*) > 1")]
            originals = dict(self._db.execute(
                "SELECT id, duplicate_of FROM articles WHERE duplicate_of IS NOT NULL"))
        else:
            story_ids, originals = [], {}
            wanted = sorted(set(article_ids))
            for part in _in_parts(wanted):
                for article_id, story, original in self._db.execute(
                        "SELECT id, story_id, duplicate_of FROM articles WHERE id IN ("
                        + ",".join("?" * len(part)) + ")", part):
                    if story is not None:
                        story_ids.append(story)
                    if original is not None:
                        originals[article_id] = original
        groups = {} if known is None else known
        unique = sorted(set(story_ids))
        self._read_stories([story for story in unique if story not in groups], groups)
        members: dict[int, tuple[ArticleRef, ...]] = {}
        for story in unique:
            refs = groups[story]
            if len(refs) > 1:
                members.update(dict.fromkeys((r.id for r in refs), refs))
        return Stories(members, originals)

    def _read_stories(self, story_ids: list[int],
                      into: dict[int, tuple[ArticleRef, ...]]) -> None:
        """Each story's articles, oldest first, into ``into`` (a story not found: none)."""
        for part in _in_parts(story_ids):
            groups: dict[int, list[ArticleRef]] = {story: [] for story in part}
            for story, *ref in self._db.execute(
                    "SELECT story_id, id, uid, title, outlet, outlet_slug, published_ts, file_id "
                    "FROM articles WHERE story_id IN (" + ",".join("?" * len(part)) + ") "
                    "ORDER BY published_ts, id", part):
                groups[story].append(ArticleRef(*ref))
            into.update((story, tuple(refs)) for story, refs in groups.items())

    def newest(self, limit: int) -> list[ArticleRef]:
        return self._refs("TRUE", (), "published_ts DESC, id DESC", limit)

    def refs_by_uid(self, uids: Iterable[str]) -> list[ArticleRef]:
        found: list[ArticleRef] = []
        for part in _in_parts(list(uids)):
            found += self._refs(f"uid IN ({','.join('?' * len(part))})", part)
        return found

    def iter_refs(self) -> Iterator[ArticleRef]:
        for row in self._stream(f"{_SELECT_REF} ORDER BY published_ts, id", (), 1000):
            yield ArticleRef(*row)

    def iter_outlet_articles_by_time(self, slugs: Iterable[str]) -> Iterator[tuple[int, Article]]:
        """(id, article) of the given outlets' articles, oldest first (then by id).

        Their ids are put in order first (from the outlet index alone), then the
        articles read by id, a few hundred at a time: ordering the articles
        themselves had the database sort every row, bodies and all.
        """
        wanted = sorted(slugs)
        if not wanted:
            return
        ids = self._stream(f"SELECT id FROM articles WHERE outlet_slug IN "
                           f"({','.join('?' * len(wanted))}) ORDER BY published_ts, id", wanted)
        while batch := [row[0] for row in itertools.islice(ids, _IDS_PER_READ)]:
            rows = {row[0]: row[1:] for row in self._db.execute(
                f"SELECT id, {self._article_columns} FROM articles WHERE id IN "
                f"({','.join('?' * len(batch))})", batch)}
            for article_id in batch:
                yield article_id, _article_from_row(rows[article_id])

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
        streamed = self._stream(f"SELECT a.id, {story}, {original}, {columns} FROM articles a "
                                f"{joins}ORDER BY a.published_ts, a.id", (), batch)
        while rows := list(itertools.islice(streamed, batch)):
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

    def index_texts(self, first: int, last: int,
                    only: Iterable[int] | None = None) -> dict[int, str]:
        """The indexed text of the articles with ids in [first, last] (``only``: just
        these), as ``segment.index_text`` joins title, digest and body."""
        sql = "SELECT id, title, digest, body_text FROM articles WHERE id BETWEEN ? AND ?"
        if only is None:
            rows = self._db.execute(sql, (first, last)).fetchall()
        else:
            wanted = sorted(only)
            rows = [row for part in _in_parts(wanted)
                    for row in self._db.execute(
                        sql + f" AND id IN ({','.join('?' * len(part))})", (first, last, *part))]
        return {article_id: f"{title}\n{indexed_body(digest, body)}"
                for article_id, title, digest, body in rows}

    def static_terms(self, first: int, last: int, version: int) -> dict[int, bytes]:
        """The static-search terms kept at write time for ids in [first, last], packed
        (``segment.pack_terms``); only those of ``version``."""
        if not self._has_static_terms:
            return {}  # an archive an older caixun wrote and nothing upgraded yet
        return {article_id: bytes(terms) for article_id, terms in self._db.execute(
            "SELECT article_id, terms FROM static_terms WHERE article_id BETWEEN ? AND ? "
            "AND version = ?", (first, last, version))}

    # Copying (caixun.archive.copy): rows arrive with their ids.

    def _copied_columns(self, table: str) -> list[str]:
        columns = [d[0] for d in self._db.execute(f"SELECT * FROM {table} LIMIT 0").description]
        if table == "security_names" and "rowid" not in columns:  # SQLite's is implicit
            columns.insert(0, "rowid")
        return columns

    def _clear_copied_tables(self, tables: Sequence[str]) -> None:
        for table in reversed(tables):  # children first
            self._db.execute(f"DELETE FROM {table}")

    def _insert_copied(self, table: str, columns: Sequence[str],
                       rows: Sequence[Sequence[Any]]) -> None:
        self._db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                             f"({', '.join('?' * len(columns))})", rows)

    def _after_copy(self) -> None:
        """Once the rows are in: what the database must know of them."""
        self._outlets.clear()
        self._recent.clear()
        self._tagger = None

    # Several fetchers (caixun run --role fetch): the clock is the database's, so
    # machines whose clocks differ still agree on when a lease ends.

    def claim_source(self, name: str, holder: str, seconds: float) -> bool:
        """Take (or extend) the lease on polling source ``name`` for ``seconds``; whether
        ``holder`` has it: no other holder's lease on it is still running."""
        row = self._db.execute(
            "INSERT INTO source_leases (name, holder, expires_at) VALUES "
            f"(?, ?, {self._clock} + ?) ON CONFLICT (name) DO UPDATE SET "
            "holder = excluded.holder, expires_at = excluded.expires_at "
            "WHERE source_leases.holder = excluded.holder "
            f"OR source_leases.expires_at < {self._clock} RETURNING holder",
            (name, holder, seconds)).fetchone()
        return row is not None

    def release_source(self, name: str, holder: str) -> None:
        """Give up the lease (the source's next poll is due by its health, for anyone)."""
        self._db.execute("DELETE FROM source_leases WHERE name = ? AND holder = ?",
                         (name, holder))

    def source_leases(self) -> dict[str, str]:
        """Source name → holder of each lease still running."""
        return dict(self._db.execute(
            f"SELECT name, holder FROM source_leases WHERE expires_at >= {self._clock}"))

    def reserve_host(self, host: str, gap: float) -> float:
        """Book the next request to ``host``, ``gap`` seconds after the one booked before it
        by any process; returns the seconds to wait before sending it."""
        row = self._db.execute(
            f"INSERT INTO host_gaps (host, next_at) VALUES (?, {self._clock} + ?) "
            f"ON CONFLICT (host) DO UPDATE SET next_at = "
            f"{self._greatest}(host_gaps.next_at, {self._clock}) + excluded.next_at "
            f"- {self._clock} RETURNING next_at - ? - {self._clock}",
            (host, gap, gap)).fetchone()
        return max(0.0, float(row[0]))

    def wait_for_changes(self, seconds: float) -> None:
        """Block until another process may have stored something, at most ``seconds``."""
        time.sleep(seconds)

    def list_hashes(self, uids: Iterable[str]) -> dict[str, str]:
        """uid → hash of the list entry the article was last made from."""
        found: dict[str, str] = {}
        wanted = list(uids)
        for chunk in _in_parts(wanted):
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

    def import_dirs(self, top: str) -> dict[str, int]:
        """The directories under ``top`` (a resolved path) that the last import of it
        walked, each with its modification time then (ns): see :meth:`record_import_dirs`."""
        row = self._db.execute("SELECT value FROM search_meta WHERE key = ?",
                               (_IMPORT_DIRS + top,)).fetchone()
        if row is None:
            return {}
        try:
            dirs = json.loads(row[0])
        except ValueError:  # not ours to trust: the tree counts as changed
            return {}
        return dirs if isinstance(dirs, dict) else {}

    def import_tops(self) -> list[str]:
        """The trees imported so far, each by its resolved path (see :meth:`import_dirs`)."""
        return [key[len(_IMPORT_DIRS):] for key, in self._db.execute(
            "SELECT key FROM search_meta WHERE key >= ? AND key < ? ORDER BY key",
            (_IMPORT_DIRS, _IMPORT_DIRS[:-1] + chr(ord(_IMPORT_DIRS[-1]) + 1)))]

    def record_import_dirs(self, top: str, dirs: Mapping[str, int]) -> None:
        """Record the directories an import of ``top`` walked, by path inside it.

        Only a hint for the next import of ``top`` (a file added or removed
        changes its directory's time): whether to start its worker before the
        files are checked. Every file is checked either way.
        """
        with self.transaction():
            self._set_meta(_IMPORT_DIRS + top, json.dumps(dict(dirs), ensure_ascii=False,
                                                          separators=(",", ":")))

    def import_records(self, paths: Sequence[str],
                       reader: str) -> dict[str, tuple[int, int, bytes, str, str]]:
        """path → (size, mtime_ns, digest, uid, repairs as JSON) of these imported files.

        Only records made by this ``reader`` (``caixun.importer.READER_VERSION``)
        and whose article is still in the archive (under its uid, or as an
        alias): a file whose post is read differently now, or whose article
        was deleted, is read again. One query per _IDS_PER_READ paths.
        """
        if self.schema_version < 10:
            return {}
        found: dict[str, tuple[int, int, bytes, str, str]] = {}
        for part in _in_parts(paths):
            for row in self._db.execute(
                    "SELECT f.path, f.size, f.mtime_ns, f.digest, f.uid, f.repairs "
                    "FROM import_files f WHERE f.path IN (" + ",".join("?" * len(part))
                    + ") AND f.reader = ? AND (EXISTS (SELECT 1 FROM articles a "
                    "WHERE a.uid = f.uid) OR EXISTS (SELECT 1 FROM article_aliases l "
                    "WHERE l.uid = f.uid))", (*part, reader)):
                # As read (a digest is bytes from either database): a re-import of
                # 100,000 unchanged files looks at each record once.
                found[row[0]] = row[1:] if type(row[3]) is bytes else \
                    (row[1], row[2], bytes(row[3]), row[4], row[5])
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

"""The SQLite archive: WAL mode, numbered migrations, idempotent writes.

Storing an article whose ``uid`` is known updates it in place; when its title
or body changes, the previous title and body are kept in ``article_versions``.
Every new, updated or deleted article is recorded in ``changes``, which the
publisher reads to rebuild only what changed.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from caixun.archive.migrations import MIGRATIONS, Migration
from caixun.errors import ArchiveError
from caixun.model import Article, PostStyle
from caixun.normalize import BEIJING

__all__ = ["ArticleVersion", "Change", "SqliteArchive", "StoreResult"]

_CONTENT_COLUMNS = (
    "file_id", "outlet", "outlet_slug", "title", "published_at", "published_ts",
    "digest", "body_html", "body_text", "body_raw", "url", "url_key", "share_url",
    "content_hash", "extra", "post_style",
)
_SELECT_ARTICLE = "SELECT uid, fetched_at, " + ", ".join(_CONTENT_COLUMNS) + " FROM articles"


class StoreResult(Enum):
    NEW = "new"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
    )


def _article_from_row(row: Sequence[Any]) -> Article:
    uid, fetched_at, *content = row
    values = dict(zip(_CONTENT_COLUMNS, content))
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
    )


class SqliteArchive:
    """An archive in one SQLite file. Not shared between threads."""

    def __init__(self, path: str | Path, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self.path = Path(path)
        self._depth = 0
        self._outlets: dict[str, str] = {}
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._migrate(migrations)
        except sqlite3.Error as exc:
            raise ArchiveError(f"{self.path}: cannot open the archive: {exc}") from exc

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
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._outlets.clear()
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

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

    def store_many(self, articles: Iterable[Article]) -> list[StoreResult]:
        """Store articles in one transaction (all or none)."""
        try:
            with self.transaction():
                return [self._store(article) for article in articles]
        except sqlite3.Error as exc:
            raise ArchiveError(f"{self.path}: cannot store articles: {exc}") from exc

    def _store(self, article: Article) -> StoreResult:
        self._ensure_outlet(article.outlet_slug, article.outlet)
        content = _content_row(article)
        existing = self._db.execute(
            "SELECT id, version, title, body_html, body_text, "
            + ", ".join(_CONTENT_COLUMNS) + " FROM articles WHERE uid = ?",
            (article.uid,),
        ).fetchone()
        now = _now()
        fetched = article.fetched_at.isoformat() if article.fetched_at else None
        if existing is None:
            self._db.execute(
                "INSERT INTO articles (uid, fetched_at, stored_at, updated_at, "
                + ", ".join(_CONTENT_COLUMNS) + ") VALUES (?, ?, ?, ?, "
                + ", ".join("?" * len(_CONTENT_COLUMNS)) + ")",
                (article.uid, fetched, now, now, *content),
            )
            self._log_change(article.uid, "new", content)
            return StoreResult.NEW
        article_id, version, old_title, old_html, old_text = existing[:5]
        if tuple(existing[5:]) == content:
            return StoreResult.UNCHANGED
        if (old_title, old_html) != (article.title, article.body_html):
            self._db.execute(
                "INSERT INTO article_versions VALUES (?, ?, ?, ?, ?, ?)",
                (article_id, version, old_title, old_html, old_text, now),
            )
            version += 1
        assignments = ", ".join(f"{column} = ?" for column in _CONTENT_COLUMNS)
        self._db.execute(
            f"UPDATE articles SET {assignments}, updated_at = ?, version = ?, "
            "fetched_at = coalesce(?, fetched_at) WHERE id = ?",
            (*content, now, version, fetched, article_id),
        )
        self._log_change(article.uid, "update", content)
        return StoreResult.UPDATED

    def _ensure_outlet(self, slug: str, name: str) -> None:
        if self._outlets.get(slug) == name:
            return
        self._db.execute(
            "INSERT INTO outlets (slug, name) VALUES (?, ?) "
            "ON CONFLICT (slug) DO UPDATE SET name = excluded.name",
            (slug, name),
        )
        self._outlets[slug] = name

    def _log_change(self, uid: str, kind: str, content: tuple[Any, ...]) -> None:
        slug, ts = content[2], content[5]
        self._db.execute(
            "INSERT INTO changes (uid, kind, outlet_slug, published_ts, at) VALUES (?, ?, ?, ?, ?)",
            (uid, kind, slug, ts, _now()),
        )

    def delete(self, uid: str) -> bool:
        """Remove an article (and its versions); True if it existed."""
        with self.transaction():
            row = self._db.execute(
                "SELECT outlet_slug, published_ts FROM articles WHERE uid = ?", (uid,)
            ).fetchone()
            if row is None:
                return False
            self._db.execute("DELETE FROM articles WHERE uid = ?", (uid,))
            self._db.execute(
                "INSERT INTO changes (uid, kind, outlet_slug, published_ts, at) "
                "VALUES (?, 'delete', ?, ?, ?)",
                (uid, row[0], row[1], _now()),
            )
            return True

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
        row = self._db.execute(_SELECT_ARTICLE + " WHERE uid = ?", (uid,)).fetchone()
        return _article_from_row(row) if row else None

    def iter_articles(self) -> Iterator[Article]:
        """Every article, oldest first; streams, so memory stays flat."""
        cursor = self._db.execute(_SELECT_ARTICLE + " ORDER BY published_ts, id")
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

    def changes_since(self, seq: int = 0) -> list[Change]:
        rows = self._db.execute(
            "SELECT seq, uid, kind, outlet_slug, published_ts FROM changes "
            "WHERE seq > ? ORDER BY seq",
            (seq,),
        ).fetchall()
        return [Change(*row) for row in rows]


def _statements(sql: str) -> Iterator[str]:
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()

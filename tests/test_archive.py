"""The SQLite archive: WAL, migrations, idempotent writes, versions, the change log."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from caixun.archive import SqliteArchive, StoreResult, open_archive
from caixun.archive.migrations import MIGRATIONS
from caixun.errors import ArchiveError
from caixun.importer import import_posts
from caixun.model import Article
from caixun.normalize import BEIJING
from conftest import POSTS


def _article(uid: str = "test:1", **fields: object) -> Article:
    base = dict(uid=uid, outlet="人民邮电报", outlet_slug="renminyoudianbao", title="标题",
                published_at=datetime(2022, 1, 11, 9, 53, 30, tzinfo=BEIJING),
                file_id=uid.split(":")[1], body_html="<p>正文</p>", body_text="正文")
    base.update(fields)
    return Article(**base)  # type: ignore[arg-type]


def _dump(path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT uid, title, body_html, published_at, version, post_style FROM articles "
            "ORDER BY uid").fetchall()
    finally:
        db.close()


def test_archive_is_a_wal_sqlite_file_with_all_migrations(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with open_archive(path) as archive:
        assert archive.schema_version == MIGRATIONS[-1].version
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    versions = [row[0] for row in db.execute("SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in MIGRATIONS]


def test_upgrading_an_old_archive_keeps_its_articles(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with SqliteArchive(path, migrations=MIGRATIONS[:1]) as old:
        assert old.schema_version == 1
    db = sqlite3.connect(path)  # what a version-1 caixun wrote
    db.execute("INSERT INTO outlets VALUES ('renminyoudianbao', '人民邮电报')")
    db.execute(
        "INSERT INTO articles (uid, file_id, outlet, outlet_slug, title, published_at, "
        "published_ts, body_html, body_text, content_hash, stored_at, updated_at) VALUES "
        "('test:1', '1', '人民邮电报', 'renminyoudianbao', '标题', "
        "'2022-01-11T09:53:30+08:00', 1641866010, '<p>正文</p>', '正文', 'h', 'now', 'now')")
    db.commit()
    db.close()
    with open_archive(path) as upgraded:
        assert upgraded.schema_version == MIGRATIONS[-1].version
        article = upgraded.get("test:1")
        assert article is not None
        assert (article.title, article.body_html, article.published_at) == (
            "标题", "<p>正文</p>", _article("test:1").published_at)
        # Migration 2 backfills the change log for articles stored before it.
        assert [(c.uid, c.kind) for c in upgraded.changes_since(0)] == [("test:1", "new")]


def test_a_newer_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    open_archive(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_migrations VALUES (99, 'future', 'x')")
    db.commit()
    db.close()
    with pytest.raises(ArchiveError, match="schema version 99 is newer"):
        open_archive(path)


def test_a_file_that_is_not_an_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(ArchiveError, match="notes.db"):
        open_archive(path)
    assert path.read_text().startswith("these are my notes")


def test_storing_the_same_article_twice_is_a_no_op(archive: SqliteArchive) -> None:
    assert archive.store(_article()) is StoreResult.NEW
    assert archive.store(_article()) is StoreResult.UNCHANGED
    assert archive.count() == 1
    assert archive.versions("test:1") == []
    assert len(archive.changes_since(0)) == 1


def test_a_changed_article_is_updated_and_its_old_version_kept(archive: SqliteArchive) -> None:
    archive.store(_article(title="旧标题", body_html="<p>旧</p>", body_text="旧"))
    result = archive.store(_article(title="新标题", body_html="<p>新</p>", body_text="新"))
    assert result is StoreResult.UPDATED
    assert archive.count() == 1
    assert archive.get("test:1").title == "新标题"  # type: ignore[union-attr]
    [old] = archive.versions("test:1")
    assert (old.version, old.title, old.body_html, old.body_text) == (1, "旧标题", "<p>旧</p>", "旧")
    assert [c.kind for c in archive.changes_since(0)] == ["new", "update"]


def test_a_change_outside_title_and_body_updates_without_a_version(archive: SqliteArchive) -> None:
    archive.store(_article())
    assert archive.store(_article(url="http://example.com/a")) is StoreResult.UPDATED
    assert archive.get("test:1").url == "http://example.com/a"  # type: ignore[union-attr]
    assert archive.versions("test:1") == []


def test_a_failed_batch_stores_nothing(archive: SqliteArchive) -> None:
    archive.store(_article("test:1"))

    def batch():  # type: ignore[no-untyped-def]
        yield _article("test:2")
        raise RuntimeError("the source broke mid-batch")

    with pytest.raises(RuntimeError):
        archive.store_many(batch())
    assert archive.get("test:2") is None
    assert archive.count() == 1


def test_delete_is_logged(archive: SqliteArchive) -> None:
    archive.store(_article())
    assert archive.delete("test:1") is True
    assert archive.delete("test:1") is False
    assert archive.get("test:1") is None
    assert [c.kind for c in archive.changes_since(0)] == ["new", "delete"]


def test_importing_the_corpus_twice_gives_the_same_archive(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with open_archive(path) as archive:
        first = import_posts([POSTS], archive)
    before = _dump(path)
    with open_archive(path) as archive:
        logged = len(archive.changes_since(0))
        second = import_posts([POSTS], archive)
        # The second import logs nothing: no article, and no story, changed.
        assert len(archive.changes_since(0)) == logged
        assert [c.kind for c in archive.changes_since(0)].count("new") == 117
    assert first.counts["new"] == 117
    assert second.counts["unchanged"] == 117 and second.counts["new"] == 0
    assert _dump(path) == before


def test_importing_a_changed_post_updates_it_and_keeps_the_old_version(
    tmp_path: Path, archive: SqliteArchive
) -> None:
    name = "2021-12-08-202112082206672930.md"
    original = (POSTS / name).read_text(encoding="utf-8")
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / name).write_text(original, encoding="utf-8")
    import_posts([posts], archive)
    old = archive.get("jekyll:202112082206672930")
    assert old is not None

    changed = original.replace("6.3512", "6.40").replace('title: "离岸', 'title: "更正：离岸')
    (posts / name).write_text(changed, encoding="utf-8")
    report = import_posts([posts], archive)
    assert report.counts["updated"] == 1
    new = archive.get("jekyll:202112082206672930")
    assert new is not None and new.title.startswith("更正：") and "6.40" in new.body_text
    [kept] = archive.versions("jekyll:202112082206672930")
    assert (kept.title, kept.body_html) == (old.title, old.body_html)
    assert archive.count() == 1

"""`caixun export jsonl` says how articles are tied: story, duplicate_of, aliases.

A real SQLite archive holds a story told by several outlets (two real posts
of the corpus that retell one piece of news, see tests/test_dedup.py), an
exact copy in another outlet (``duplicate_of``), fetched copies of the same
outlet under new uids (merged: ``aliases``) and a story of one.
"""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import POSTS
from caixun.archive import SqliteArchive, StoreResult, open_archive
from caixun.cli import main
from caixun.model import Article
from caixun.normalize import BEIJING
from caixun.publish.jsonl import write_jsonl
from caixun.sources.jekyll import read_post

FETCHED = datetime(2026, 9, 1, tzinfo=timezone.utc)
T0 = datetime(2021, 12, 8, 14, 0, tzinfo=BEIJING)
# Two posts of the corpus that tell one story in other words (README: "Same story
# under different ids"), and one of another story.
FIRST, RETOLD, OTHER = "202112082206885192", "202112082206891293", "202112082206796814"


def fetched(post_id: str, uid: str, outlet: str, slug: str, minutes: int) -> Article:
    """The corpus post's text as a fetched article of ``outlet``."""
    post = read_post(POSTS / f"2021-12-08-{post_id}.md").article
    return Article(uid=uid, outlet=outlet, outlet_slug=slug, title=post.title,
                   published_at=T0 + timedelta(minutes=minutes),
                   file_id=uid.split(":", 1)[1], body_html=post.body_html,
                   body_text=post.body_text, digest=post.digest, fetched_at=FETCHED)


def fill(archive: SqliteArchive) -> None:
    stored = [
        (fetched(FIRST, "cls:1", "财联社", "cls", 0), StoreResult.NEW),
        (fetched(RETOLD, "sina:2", "新浪财经", "sina", 5), StoreResult.NEW),  # retold
        (fetched(FIRST, "em:3", "东方财富", "eastmoney", 10), StoreResult.NEW),  # a copy
        (fetched(FIRST, "cls:9", "财联社", "cls", 20), StoreResult.MERGED),  # again, new id
        (fetched(FIRST, "cls:10", "财联社", "cls", 30), StoreResult.MERGED),
        (fetched(OTHER, "cls:5", "财联社", "cls", 40), StoreResult.NEW),  # another story
    ]
    for article, result in stored:
        assert archive.store(article) is result, article.uid


EXPECTED = {  # uid → (story, duplicate_of, aliases)
    "cls:1": ("cls:1", None, ["cls:10", "cls:9"]),
    "sina:2": ("cls:1", None, []),
    "em:3": ("cls:1", "cls:1", []),
    "cls:5": ("cls:5", None, []),
}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "caixun.db"
    with open_archive(path) as archive:
        fill(archive)
    return path


def records(text: str) -> dict[str, dict[str, Any]]:
    return {r["uid"]: r for r in map(json.loads, text.splitlines())}


def test_jsonl_carries_story_duplicate_and_aliases(db: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["--archive", str(db), "export", "jsonl", "-"])
    assert result.exit_code == 0, result.output
    found = records(result.stdout)
    assert {uid: (r["story"], r["duplicate_of"], r["aliases"]) for uid, r in found.items()} \
        == EXPECTED
    assert list(found) == ["cls:1", "sina:2", "em:3", "cls:5"]  # oldest first
    # The same lines in a file; the other fields are as before.
    out = tmp_path / "all.jsonl"
    CliRunner().invoke(main, ["--archive", str(db), "export", "jsonl", str(out)])
    assert out.read_text(encoding="utf-8") == result.stdout
    assert found["sina:2"]["outlet"] == "新浪财经" and "body_raw" not in found["sina:2"]


def test_the_story_uids_are_the_archives_stories(db: Path) -> None:
    """What the site shows as one story is one ``story`` in the export."""
    with open_archive(db, read_only=True) as archive:
        linked = list(archive.iter_articles_linked())
        stories = archive.stories()
    by_uid = {a.uid: story for a, story, *_ in linked}
    raw = sqlite3.connect(db)
    try:
        article_ids = dict(raw.execute("SELECT uid, id FROM articles"))
    finally:
        raw.close()
    assert by_uid.keys() == article_ids.keys()
    members = {r.uid for r in stories.others(article_ids["cls:1"])} | {"cls:1"}
    assert members == {uid for uid, story in by_uid.items() if story == "cls:1"}


def test_aliases_are_read_once_per_batch_not_per_article(db: Path) -> None:
    with open_archive(db, read_only=True) as archive:
        statements: list[str] = []
        archive._db.set_trace_callback(statements.append)
        rows = list(archive.iter_articles_linked(batch=2))
        archive._db.set_trace_callback(None)
    assert len(rows) == 4
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1 + 2 * 2  # the articles; the aliases and codes of each batch of 2
    assert sum("LEFT JOIN" in s for s in selects) == 1


def test_a_bare_article_is_a_story_of_one() -> None:
    article = fetched(OTHER, "cls:5", "财联社", "cls", 0)
    out = io.StringIO()
    assert list(write_jsonl([article, (article, "cls:1", "cls:1", ["b", "a"])], out)) \
        == [article, article]
    bare, linked = map(json.loads, out.getvalue().splitlines())
    assert (bare["story"], bare["duplicate_of"], bare["aliases"]) == ("cls:5", None, [])
    assert (linked["story"], linked["duplicate_of"], linked["aliases"]) == (
        "cls:1", "cls:1", ["a", "b"])

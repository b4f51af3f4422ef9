"""A full build reads each story once per job, and its pages are the same.

A full build asks for the stories of one window of articles after another
(and of one day after another); a story spans many windows, and reading its
articles again for each window was a third of a second of a 10,000-article
build. ``Archive.stories(ids, known)`` keeps what it read; these tests check
that the stories are the same as read afresh, that a story is read once, and
that the site built with tiny windows and a tiny memory equals the default.
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from caixun.archive import SqliteArchive
from caixun.archive.base import ArticleRef, Stories
from caixun.model import Article
from caixun.normalize import BEIJING
from caixun.publish import site
from caixun.publish.site import SiteConfig, build_site
from site_helpers import tree
from test_query_plans import _selects, recorded  # noqa: F401 (a fixture)

CONFIG = SiteConfig(title="财讯测试", url="https://news.example.com", per_page=5)
OUTLETS = [("上海证券报", "shanghaizhengquanbao"), ("证券时报", "zhengquanshibao"),
           ("财联社", "cailianshe")]


def _story_articles(seed: int) -> list[Article]:
    """Stories of 1–5 exact copies over the outlets and two days, in a shuffled order."""
    rng = random.Random(seed)
    articles = []
    for story in range(14):
        text = f"第{story}号公告：公司{story * 37 % 101}号项目获批，预计投资{story * 13 + 7}亿元。" * 3
        for copy in range(rng.randint(1, 5)):
            outlet, slug = OUTLETS[rng.randrange(len(OUTLETS))]
            n = story * 10 + copy
            articles.append(Article(
                uid=f"t:{n}", outlet=outlet, outlet_slug=slug, title=f"第{story}号公告（{copy}）",
                published_at=datetime(2026, 3, 1, 9, tzinfo=BEIJING)
                + timedelta(minutes=rng.randrange(48 * 60)),
                file_id=f"T{n:05d}", body_html=f"<p>{text}</p>", body_text=text))
    rng.shuffle(articles)
    return articles


@pytest.fixture
def stored(tmp_path: Path, recorded: None) -> SqliteArchive:
    archive = SqliteArchive(tmp_path / "caixun.db")
    archive.store_many(_story_articles(7))
    return archive


_STORY_READ = re.compile(r"WHERE story_id IN \(")


def test_known_stories_are_the_same_and_read_once(stored: SqliteArchive) -> None:
    ids = [ref.id for ref in stored.iter_refs()]
    assert len(stored.stories().members) >= 10  # the articles of the test make stories
    random.Random(3).shuffle(ids)
    known: dict[int, tuple[ArticleRef, ...]] = {}
    for start in range(0, len(ids), 4):
        window = ids[start:start + 4]
        before = set(known)
        got: list[Stories] = []
        statements = _selects(stored, lambda: got.append(stored.stories(window, known)))
        assert got[0] == stored.stories(window)
        read_now = [story for sql, params in statements if _STORY_READ.search(sql)
                    for story in params]
        assert len(read_now) == len(set(read_now))  # each story once
        assert not before & set(read_now)  # and none known already
        assert set(known) == before | set(read_now)


def test_a_story_is_not_read_again_by_a_later_window(stored: SqliteArchive) -> None:
    ids = [ref.id for ref in stored.iter_refs()]
    known: dict[int, tuple[ArticleRef, ...]] = {}
    first = _selects(stored, lambda: stored.stories(ids[:len(ids) // 2], known))
    stories_first = {story for sql, params in first if _STORY_READ.search(sql) for story in params}
    second = _selects(stored, lambda: stored.stories(ids, known))
    stories_second = {story for sql, params in second if _STORY_READ.search(sql)
                      for story in params}
    assert stories_first and not stories_first & stories_second
    assert stored.stories(ids, known) == stored.stories(ids)


def test_tiny_windows_and_memory_build_the_same_site(stored: SqliteArchive, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    build_site(stored, tmp_path / "default", CONFIG, full=True, jobs=1)
    monkeypatch.setattr(site, "STORY_WINDOW", 3)
    monkeypatch.setattr(site, "STORIES_KEPT", 2)  # emptied every window or two
    build_site(stored, tmp_path / "tiny", CONFIG, full=True, jobs=1)
    default, tiny = tree(tmp_path / "default"), tree(tmp_path / "tiny")
    assert tiny == default
    assert sum(b"\xe4\xb9\x9f\xe8\xa7\x81\xe4\xba\x8e" in page for page in tiny.values()) >= 10  # 也见于

"""Stories in the archive: placed at write time, in the same transaction, as dedup.cluster would."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import pytest

import newsserver as ns
from conftest import POSTS
from test_dedup import labelled_items, posts, truth, unit
from caixun import dedup
from caixun.archive import SqliteArchive, StoreResult, open_archive
from caixun.archive import stories as story_index
from caixun.archive.migrations import MIGRATIONS
from caixun.archive.base import identity_of
from caixun.fetch import Fetcher, FetchSettings, fetch_round
from caixun.importer import import_posts
from caixun.model import Article, PostStyle
from caixun.normalize import BEIJING
from caixun.sources.base import SourceConfig, load_source

T0 = datetime(2025, 10, 3, 9, 0, tzinfo=BEIJING)
BODY = ("中国人民银行今日开展7000亿元买断式逆回购操作，期限为3个月，以固定数量、利率招标、多重价位中标方式"
        "进行，旨在保持银行体系流动性充裕。业内人士表示，这是央行连续第五个月加量续作，释放稳增长信号，"
        "市场资金面有望保持平稳。")
OTHER = ("国家统计局今日公布数据显示，9月份全国居民消费价格同比下降0.3%，环比上涨0.1%，其中食品价格同比下降"
         "4.4%，非食品价格同比上涨0.7%，核心CPI同比上涨1.0%，涨幅连续第五个月扩大。")


def _article(uid: str, body: str = BODY, *, outlet: str = "财联社", slug: str = "cls",
             url: str = "", minutes: int = 0, title: str = "央行开展7000亿元买断式逆回购") -> Article:
    return Article(uid=uid, outlet=outlet, outlet_slug=slug, title=title,
                   published_at=T0 + timedelta(minutes=minutes), file_id=uid.split(":")[1],
                   body_html=f"<p>{body}</p>", body_text=body, url=url)


def _story_rows(archive: SqliteArchive) -> dict[str, tuple[str, str | None]]:
    """uid → (uid of the story's first article, uid of the original or None)."""
    rows = archive._db.execute(
        "SELECT a.uid, s.uid, o.uid FROM articles a JOIN articles s ON s.id = a.story_id "
        "LEFT JOIN articles o ON o.id = a.duplicate_of").fetchall()
    return {uid: (story, original) for uid, story, original in rows}


def test_a_copy_from_another_outlet_is_a_duplicate_in_the_same_story(
        archive: SqliteArchive) -> None:
    archive.store(_article("cls:1", url="https://www.cls.cn/detail/1"))
    archive.store(_article("em:3", outlet="东方财富", slug="eastmoney", minutes=5))  # same text
    archive.store(_article("sina:5", outlet="新浪财经", slug="sina", minutes=7,
                           url="https://www.cls.cn/detail/1/"))  # same link
    archive.store(_article("tj:4", OTHER, title="9月CPI同比下降0.3%", minutes=6))
    rows = _story_rows(archive)
    assert rows["cls:1"] == ("cls:1", None)
    assert rows["em:3"] == ("cls:1", "cls:1")
    assert rows["sina:5"] == ("cls:1", "cls:1")
    assert rows["tj:4"] == ("tj:4", None)
    stories = archive.stories([1])
    assert [r.uid for r in stories.others(1)] == ["em:3", "sina:5"]  # by publication time
    assert stories.originals == {}
    assert archive.stories([2]).originals == {2: 1}


def test_a_merged_copy_is_never_weighed_or_looked_up_by_its_other_keys(
        archive: SqliteArchive, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exact copy's lookup stops at its exact keys; one that is not merged (an
    imported post) is completed, and lands as a full lookup would place it."""
    weighed: list[str] = []
    weigh = story_index.weigh
    monkeypatch.setattr(story_index, "weigh", lambda db, new, terms=None: (
        weighed.append(new.exact_keys[0]), weigh(db, new, terms))[1])
    archive.store(_article("rss:a", url="https://www.cls.cn/detail/1"))
    assert len(weighed) == 1
    assert archive.store(_article("rss:c", minutes=50)) is StoreResult.MERGED  # same text
    assert len(weighed) == 1
    post = _article("jekyll:9", minutes=60).evolve(post_style=PostStyle())
    assert archive.store(post) is StoreResult.NEW  # imported posts are never merged
    assert len(weighed) == 2
    assert _story_rows(archive)["jekyll:9"] == ("rss:a", "rss:a")


def test_a_fetched_copy_in_the_same_outlet_is_merged(archive: SqliteArchive) -> None:
    """A feed that lists one article again under a new guid: one article, two uids."""
    assert archive.store(_article("rss:a", url="https://www.cls.cn/detail/1")) is StoreResult.NEW
    seq = archive.last_change_seq()
    copy = _article("rss:b", url="https://www.cls.cn/detail/1/", minutes=30)
    assert archive.store(copy) is StoreResult.MERGED
    assert archive.store(copy.evolve(title="改过的标题")) is StoreResult.MERGED  # stays merged
    same_text = _article("rss:c", minutes=50)
    assert archive.store(same_text) is StoreResult.MERGED
    assert archive.count() == 1 and archive.get("rss:b") is None
    assert archive.aliases("rss:a") == ["rss:b", "rss:c"]
    assert archive.changes_since(seq) == []
    # Imported posts are never merged: each keeps its page and URL.
    post = _article("jekyll:9", minutes=60)
    post = post.evolve(post_style=PostStyle())
    assert archive.store(post) is StoreResult.NEW
    assert _story_rows(archive)["jekyll:9"] == ("rss:a", "rss:a")
    archive.delete("rss:a")
    assert archive.aliases("rss:a") == []


def test_a_near_duplicate_joins_and_relinks_the_pages_of_the_story(archive: SqliteArchive) -> None:
    archive.store(_article("cls:1"))
    seq = archive.last_change_seq()
    edited = BODY.replace("业内人士表示，", "分析人士指出，").replace("有望保持平稳", "将保持平稳")
    archive.store(_article("em:2", edited, outlet="东方财富", slug="eastmoney", minutes=40,
                           title="央行今日开展7000亿元买断式逆回购操作"))
    rows = _story_rows(archive)
    assert rows["em:2"] == ("cls:1", None)  # one story, not a copy
    changed = archive.changes_since(seq)
    assert {(c.uid, c.kind, c.relink) for c in changed} == {("em:2", "new", False),
                                                          ("cls:1", "update", True)}


def test_a_story_grown_in_one_batch_relinks_each_member_once(archive: SqliteArchive) -> None:
    """Five reports of one story stored together: every page is rebuilt once, not per report."""
    archive.store(_article("cls:0"))
    seq = archive.last_change_seq()
    reports = [_article(f"r:{n}", outlet=f"报{n}", slug=f"bao{n}", minutes=n + 1) for n in range(5)]
    archive.store_many(reports)
    assert {story for story, _ in _story_rows(archive).values()} == {"cls:0"}
    changed = archive.changes_since(seq)
    relinked = [c.uid for c in changed if c.relink]
    assert sorted(relinked) == ["cls:0", "r:0", "r:1", "r:2", "r:3"]  # each once
    assert sorted(c.uid for c in changed if not c.relink) == [f"r:{n}" for n in range(5)]
    # A relink names the article as it is at the end of the transaction.
    by_uid = {c.uid: c for c in changed if c.relink}
    assert (by_uid["r:0"].outlet_slug, by_uid["cls:0"].outlet_slug) == ("bao0", "cls")


def test_a_relink_of_an_article_deleted_in_the_same_transaction_is_not_logged(
        archive: SqliteArchive) -> None:
    archive.store(_article("cls:0"))
    seq = archive.last_change_seq()
    with archive.transaction():
        archive.store(_article("r:1", outlet="报1", slug="bao1", minutes=1))  # relinks cls:0
        archive.delete("cls:0")  # relinks r:1
    changed = archive.changes_since(seq)
    assert {(c.uid, c.kind, c.relink) for c in changed} == {
        ("r:1", "new", False), ("cls:0", "delete", False), ("r:1", "update", True)}


def test_the_same_text_days_later_is_another_story_if_short(archive: SqliteArchive) -> None:
    short = "恒生指数跌超1%"
    archive.store(_article("cls:1", short, title=short))
    archive.store(_article("cls:2", short, title=short, minutes=4 * 24 * 60))
    archive.store(_article("em:3", short, title=short, minutes=4 * 24 * 60 + 10,
                           outlet="东方财富", slug="eastmoney"))
    rows = _story_rows(archive)
    assert rows["cls:2"] == ("cls:2", None)
    assert rows["em:3"] == ("cls:2", "cls:2")


def test_deleting_the_original_moves_its_copies_to_the_next(archive: SqliteArchive) -> None:
    for n in range(1, 4):
        archive.store(_article(f"cls:{n}", outlet=f"报{n}", slug=f"bao{n}", minutes=n))
    seq = archive.last_change_seq()
    assert archive.delete("cls:1")
    rows = _story_rows(archive)
    assert rows["cls:2"][1] is None and rows["cls:3"][1] == "cls:2"
    assert {c.uid for c in archive.changes_since(seq) if c.kind == "update"} == {"cls:2", "cls:3"}
    assert archive.stories([2]).others(2)[0].uid == "cls:3"


def test_an_updated_text_gets_new_keys(archive: SqliteArchive) -> None:
    archive.store(_article("cls:1", url="https://a.example/1"))
    archive.store(_article("tj:2", OTHER, title="9月CPI同比下降0.3%", url="https://a.example/2",
                           minutes=1))
    # The first article now reads like the second: a third copy of that text joins
    # the second's story, and the first article's old URL key is gone.
    archive.store(_article("cls:1", OTHER, title="9月CPI同比下降0.3%", url="https://a.example/9"))
    archive.store(_article("x:3", BODY, url="https://a.example/1", minutes=2))
    rows = _story_rows(archive)
    assert rows["cls:1"] == ("cls:1", None)  # an article keeps its story
    assert rows["x:3"] == ("x:3", None)


def test_store_is_atomic_with_the_story(archive: SqliteArchive, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    archive.store(_article("cls:1"))

    def broken(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr("caixun.archive.stories.place", broken)
    with pytest.raises(Exception, match="disk I/O error"):
        archive.store_many([_article("em:2", outlet="东方财富", slug="eastmoney", minutes=1)])
    assert archive.get("em:2") is None and archive.count() == 1


@pytest.mark.parametrize("max_story", [dedup.MAX_STORY, 2])
def test_the_archive_clusters_as_the_reference_does(tmp_path: Path, max_story: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """One article at a time through SQL lookups = dedup.cluster over the whole batch.

    With stories of two at most, the best match of many an article is a full
    story: it joins the best open one, or none, as in the reference.
    """
    monkeypatch.setattr(dedup, "MAX_STORY", max_story)
    monkeypatch.setattr("caixun.archive.stories.MAX_STORY", max_story)
    items = labelled_items("stories")
    # As imported posts (a post style, never fetched), exact copies are stored
    # rather than merged; the archive keeps one article per identity (one East
    # Money link in several feeds), the first: so does the reference here.
    ordered = sorted({a.uid: a.evolve(post_style=a.post_style or PostStyle(), fetched_at=None)
                      for a in items.values()}.values(),
                     key=lambda a: (a.published_at, a.uid))
    firsts: dict[str, Article] = {}
    for article in ordered:
        firsts.setdefault(identity_of(article) or article.uid, article)
    articles = list(firsts.values())
    assert len(articles) < len(ordered)  # the corpus has such identities
    with open_archive(tmp_path / "a.db") as archive:
        archive.store_many(articles)
        rows = _story_rows(archive)
    expected = dedup.cluster(articles)
    assert len(rows) == len(expected)
    assert dedup.story_groups({u: s for u, (s, _) in rows.items()}) == \
        dedup.story_groups(expected)
    assert sum(len(g) > 1 for g in dedup.story_groups(expected)) >= 10


def test_an_archive_from_before_stories_is_clustered_on_opening(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with SqliteArchive(path, migrations=MIGRATIONS[:5]) as old:
        import_posts([POSTS], old)
        articles = list(old.iter_articles())
    with open_archive(path) as archive:
        rows = _story_rows(archive)
        assert archive.schema_version == MIGRATIONS[-1].version
    assert len(rows) == 117
    # Re-clustered oldest first, as the reference does.
    assert {u: s for u, (s, _) in rows.items()} == dedup.cluster(articles)


def test_workers_fingerprint_as_the_writer_would(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("caixun.importer.PARALLEL_FROM", 10)
    with open_archive(tmp_path / "one.db") as one, open_archive(tmp_path / "two.db") as two:
        import_posts([POSTS], one, jobs=1)
        import_posts([POSTS], two, jobs=2, batch_size=50)
        assert _story_rows(one) == _story_rows(two)
        assert _keys(one) == _keys(two)  # the key ids the workers computed, too


def _keys(archive: SqliteArchive) -> set[tuple[str, int, int]]:
    return set(archive._db.execute("SELECT a.uid, k.key, k.published_ts FROM dedup_keys k "
                                   "JOIN articles a ON a.id = k.article_id"))


def test_search_finds_an_exact_copy_once(archive: SqliteArchive) -> None:
    archive.store(_article("cls:1", url="https://www.cls.cn/detail/1"))
    archive.store(_article("em:2", outlet="东方财富", slug="eastmoney", minutes=5))
    archive.store(_article("em:3", OTHER, title="9月CPI同比下降0.3%", minutes=6))
    assert [h.ref.uid for h in archive.search("逆回购")] == ["cls:1"]
    assert [h.ref.uid for h in archive.search("逆回购", outlet="eastmoney")] == ["em:2"]


RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>财经</title><link>https://news.example.org/</link>
<description>t</description>
<item><title>央行开展7000亿元买断式逆回购</title><link>https://news.example.org/a/1</link>
<guid isPermaLink="false">{guid}</guid><pubDate>Fri, 03 Oct 2025 09:00:00 +0800</pubDate>
<description>{body}</description></item>
</channel></rss>"""


def test_a_feed_relisting_an_article_under_a_new_guid_merges_it(archive: SqliteArchive) -> None:
    """Through the fetcher: the second listing is reported as merged, not stored."""

    async def poll(server: ns.NewsServer) -> str:
        source = load_source(SourceConfig("news", "rss",
                                          options={"url": server.url("/feed.xml")}))
        fetcher = Fetcher(FetchSettings(retries=0, min_gap=0.0))
        try:
            [report] = await fetch_round([source], fetcher, archive, due_only=False)
        finally:
            await fetcher.aclose()
        return report.summary()

    with ns.NewsServer() as server:
        server.route("/feed.xml", RSS.format(guid="a-1", body=BODY).encode("utf-8"))
        assert "1 new" in asyncio.run(poll(server))
        server.route("/feed.xml", RSS.format(guid="a-1-again", body=BODY).encode("utf-8"))
        summary = asyncio.run(poll(server))
    assert "0 new" in summary and "1 merged into earlier copies" in summary, summary
    [article] = archive.iter_articles()
    assert archive.aliases(article.uid) != []


def test_a_full_story_takes_no_more_articles(archive: SqliteArchive,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of look-alikes cannot grow one story (and its pages' rebuilds) without end."""
    monkeypatch.setattr("caixun.archive.stories.MAX_STORY", 3)
    for n in range(5):
        archive.store(_article(f"x:{n}", outlet=f"报{n}", slug=f"bao{n}", minutes=n))
    stories = [story for story, _ in _story_rows(archive).values()]
    assert stories == ["x:0", "x:0", "x:0", "x:3", "x:3"]
    assert dedup.story_groups({f"x:{n}": s for n, s in enumerate(stories)}) == [
        ["x:0", "x:1", "x:2"], ["x:3", "x:4"]]


def test_a_flash_repeated_every_few_days_is_a_copy_of_the_one_in_the_window(
        archive: SqliteArchive, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exact key is looked up in a few rows: the earliest ever and the earliest in the window."""
    monkeypatch.setattr("caixun.archive.stories.KEY_ROWS", 2)
    short = "恒生指数跌超1%"
    for n in range(5):  # 4 days apart: each its own story
        archive.store(_article(f"f:{n}", short, title=short, minutes=n * 4 * 24 * 60,
                               outlet=f"报{n}", slug=f"bao{n}"))
    archive.store(_article("f:9", short, title=short, minutes=4 * 4 * 24 * 60 + 60,
                           outlet="报9", slug="bao9"))
    rows = _story_rows(archive)
    assert [rows[f"f:{n}"] for n in range(5)] == [(f"f:{n}", None) for n in range(5)]
    assert rows["f:9"] == ("f:4", "f:4")


def _look_alike(n: int, minutes: int, edited: bool = False) -> Article:
    body = (f"第{n}号公司晚间公告，公司预计前三季度实现营业收入{n + 10}亿元，同比增长{n}%。"
            "公司表示，业绩增长主要系主营产品销量增加、降本增效措施持续推进所致，经营活动产生的现金流量净额同比改善。")
    if edited:
        body = body.replace("晚间公告", "发布公告")
    return _article(f"t:{n}{'e' if edited else ''}", body, title=f"第{n}号公司前三季度净利润增长{n}%",
                    minutes=minutes, outlet=f"报{n}{edited}", slug=f"bao{n}{edited}")


def test_placement_compares_the_newest_look_alikes_only(
        archive: SqliteArchive, monkeypatch: pytest.MonkeyPatch) -> None:
    """A template published by many: each key reads KEY_ROWS rows, the newest in the window."""
    monkeypatch.setattr("caixun.archive.stories.KEY_ROWS", 3)
    monkeypatch.setattr("caixun.archive.stories.MAX_CANDIDATES", 3)
    for n in range(12):  # other figures in every headline: twelve stories
        archive.store(_look_alike(n, minutes=n))
    archive.store(_look_alike(11, minutes=20, edited=True))  # the newest: found
    archive.store(_look_alike(0, minutes=21, edited=True))  # the oldest: past the bound
    rows = _story_rows(archive)
    assert len({rows[f"t:{n}"][0] for n in range(12)}) == 12
    assert rows["t:11e"] == ("t:11", None)
    assert rows["t:0e"] == ("t:0e", None)


def test_key_ids_are_each_keys_id() -> None:
    keys = ["url:example.com/a", "t0:0a1b2c3d", "", "文本:中文", "7:9f0c12ab34cd56ef"]
    assert story_index.key_ids(keys) == [story_index.key_id(k) for k in keys]
    assert story_index.key_ids([]) == []


def test_the_keys_of_a_print_are_written_in_parts_as_one_by_one() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE dedup_prints (article_id INTEGER PRIMARY KEY, fingerprint BLOB, "
               "exact_keys TEXT, event BLOB)")
    db.execute("CREATE TABLE dedup_keys (key INTEGER NOT NULL, published_ts INTEGER NOT NULL, "
               "article_id INTEGER NOT NULL, PRIMARY KEY (key, published_ts, article_id)) "
               "WITHOUT ROWID")
    new = dedup.Candidate.of(_article("k:1"))
    keys = [n * 7919 % 1000 - 500 for n in range(700)]  # more than one statement's rows, repeats
    story_index._write_print(db, 1, new, keys, True)
    story_index._write_print(db, 2, new, [], True)
    ts = int(new.published_at.timestamp())
    assert sorted(db.execute("SELECT key, published_ts, article_id FROM dedup_keys")) == \
        sorted({(key, ts, 1) for key in keys})
    assert db.execute("SELECT count(*) FROM dedup_prints").fetchone() == (2,)


# -- candidate generation on the whole corpus --------------------------------------------------

def store_recording_candidates(path: Path, articles: list[Article],
                               prints: dict[str, dedup.Candidate]
                               ) -> tuple[dict[str, int], dict[int, int], dict[int, set[int]]]:
    """Store ``articles`` oldest first, as fetched; uid → id (aliases too), id → story id,
    and id → the stored articles it was compared with when stored (its candidates)."""
    compared: dict[bytes, set[int]] = {}

    def recording(look: Callable[..., story_index.Lookup]) -> Callable[..., story_index.Lookup]:
        def record(*args: object, **kwargs: object) -> story_index.Lookup:
            lookup = look(*args, **kwargs)
            compared.setdefault(lookup.candidate.fingerprint, set()).update(
                c.ref for c in lookup.found)
            return lookup
        return record

    with pytest.MonkeyPatch.context() as patch:
        for name in ("look_up", "_complete"):  # an exact copy's look-up stops at look_up
            patch.setattr(story_index, name, recording(getattr(story_index, name)))
        with open_archive(path) as archive:
            for start in range(0, len(articles), 500):
                batch = articles[start:start + 500]
                archive.store_many(batch, prints=[prints[a.uid] for a in batch])
            db = archive._db
            ids = dict(db.execute("SELECT uid, id FROM articles").fetchall())
            ids.update(db.execute("SELECT uid, article_id FROM article_aliases").fetchall())
            story = dict(db.execute("SELECT id, coalesce(story_id, id) FROM articles").fetchall())
    return ids, story, {ids[a.uid]: compared.get(prints[a.uid].fingerprint, set())
                        for a in articles if a.uid in ids}


def pairs_above_the_threshold(articles: list[Article], prints: dict[str, dedup.Candidate]
                              ) -> list[tuple[Article, Article]]:
    """Every pair (earlier, later) within the window that the shingles would link: both
    long enough, similarity at least the threshold."""
    read = {a.uid: dedup.read_fingerprint(prints[a.uid].fingerprint) for a in articles}
    long = [a for a in articles if read[a.uid].tokens >= dedup.MIN_TOKENS and read[a.uid].shingles]
    out = []
    for n, earlier in enumerate(long):
        for later in long[n + 1:]:
            if later.published_at - earlier.published_at > dedup.WINDOW:
                break
            if dedup.similarity(read[earlier.uid], read[later.uid]) >= dedup.THRESHOLD:
                out.append((earlier, later))
    return out


def pair_outcomes(pairs: list[tuple[Article, Article]], ids: dict[str, int],
                  story: dict[int, int], compared: dict[int, set[int]]
                  ) -> dict[str, list[tuple[Article, Article]]]:
    """The pairs of distinct stored articles (re-listings merged into one are left
    out) by what became of them: "compared" when the later one was stored, "one
    story" anyway (through a copy), or "neither"."""
    out: dict[str, list[tuple[Article, Article]]] = {"compared": [], "one story": [],
                                                     "neither": []}
    for x, y in pairs:
        a, b = ids[x.uid], ids[y.uid]
        if a != b:
            out["compared" if a in compared[b] else
                "one story" if story[a] == story[b] else "neither"].append((x, y))
    return out


def test_no_pair_the_shingles_would_link_goes_uncompared_on_the_corpus(tmp_path: Path) -> None:
    """Issue 14: candidate generation misses no pair above the threshold in the window.

    Every feed item and post of the corpus stored, oldest first: each pair of
    distinct stored articles that the shingles would link was compared when
    the later one was stored, or is one story anyway (through a copy). One
    pair is not: a flash of a session's open (44 tokens) and the close of the
    day before (400), headlines at bigram Jaccard 0.21, texts at 0.05. It
    shares no key, and the labels call it two stories. LSH and headline keys
    alone would miss another one, that the event keys find (纳指、标普500创收盘
    新高 AMD涨超23%, against a longer report under another headline).
    """
    articles = sorted({a.uid: a for a in [*labelled_items("near_duplicates").values(),
                                          *posts().values()]}.values(),
                      key=lambda a: (a.published_at, a.uid))
    prints = {a.uid: dedup.Candidate.of(a) for a in articles}
    ids, story, compared = store_recording_candidates(tmp_path / "a.db", articles, prints)
    outcomes = pair_outcomes(pairs_above_the_threshold(articles, prints), ids, story, compared)
    missed = outcomes["neither"]
    assert sum(map(len, outcomes.values())) >= 50
    assert len(missed) <= 1, [(x.title, y.title) for x, y in missed]
    parts = ("stories", "more_stories", "held_out", "held_out_2")
    units = {a.uid: unit(item) for part in parts for item, a in labelled_items(part).items()}
    labelled = set().union(*(truth(part).same for part in parts))
    for x, y in missed:
        assert frozenset((units.get(x.uid), units.get(y.uid))) not in labelled

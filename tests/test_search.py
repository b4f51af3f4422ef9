"""Search: recall of Chinese words as substrings, codes, phrases, ranking, API, CLI."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import rjieba
from click.testing import CliRunner
import asyncio

import httpx
from starlette.applications import Starlette

from caixun.archive import SqliteArchive, open_archive
from caixun.cli import main
from caixun.importer import import_posts
from caixun.model import Article
from caixun.normalize import BEIJING
from caixun.search_api import PAGE_SIZE, search_routes
from caixun.segment import QueryError
from conftest import POSTS

CJK = re.compile(r"^[\u4e00-\u9fff]+$")


def _uids(archive: SqliteArchive, query: str, **kwargs: object) -> set[str]:
    return {hit.ref.uid for hit in archive.search(query, limit=10_000, **kwargs)}  # type: ignore[arg-type]


def _as_found(archive: SqliteArchive) -> dict[str, str]:
    """uid → the uid a search finds it under: itself, or the original of an exact copy."""
    refs = {ref.id: ref.uid for ref in archive.iter_refs()}
    originals = archive.stories().originals
    return {uid: refs[originals.get(i, i)] for i, uid in refs.items()}


def _article(n: int, title: str, body: str, *, outlet: str = "测试报", slug: str = "ceshibao",
             day: int = 8, digest: str = "") -> Article:
    return Article(uid=f"t:{n}", outlet=outlet, outlet_slug=slug, title=title,
                   published_at=datetime(2021, 12, day, 10, n % 60, tzinfo=BEIJING),
                   file_id=f"T{n}", body_html=f"<p>{body}</p>", body_text=body, digest=digest)


@pytest.fixture
def corpus(archive: SqliteArchive) -> SqliteArchive:
    import_posts([POSTS], archive)
    return archive


def test_every_two_character_word_finds_every_article_containing_it(
    corpus: SqliteArchive,
) -> None:
    """The recall guarantee: a Chinese string is found wherever it occurs as a substring.

    The words checked are every distinct two-character word jieba finds in the
    corpus (as words or inside longer words); the expected articles are
    computed by plain substring search over title, digest and body. An exact
    copy of another article is found as that original.
    """
    articles = list(corpus.iter_articles())
    found_as = _as_found(corpus)
    assert len(set(found_as.values())) < len(found_as)  # the corpus has exact copies
    texts = {a.uid: f"{a.title}\n{a.digest}\n{a.body_text}" for a in articles}
    vocabulary = {w for text in texts.values() for w in rjieba.cut_for_search(text)
                  if len(w) == 2 and CJK.match(w)}
    assert len(vocabulary) > 1000
    for word in sorted(vocabulary):
        expected = {found_as[uid] for uid, text in texts.items() if word in text}
        assert _uids(corpus, word) == expected, word
    print(f"\n{len(vocabulary)} two-character words: every containing article found, "
          "nothing else")


@pytest.mark.parametrize("query", ["金", "人民币兑美元", "中长距离TOF", "国债中标结果"])
def test_one_and_longer_strings_are_found_as_substrings(corpus: SqliteArchive,
                                                        query: str) -> None:
    texts = {a.uid: f"{a.title}\n{a.digest}\n{a.body_text}" for a in corpus.iter_articles()}
    found_as = _as_found(corpus)
    expected = {found_as[uid] for uid, text in texts.items() if query.lower() in text.lower()}
    assert expected
    assert _uids(corpus, f'"{query}"') == expected
    assert expected <= _uids(corpus, query)


def test_codes_mixed_terms_and_english(archive: SqliteArchive) -> None:
    archive.store_many([
        _article(1, "贵州茅台600519创新高", "白酒龙头股价上涨。"),
        _article(2, "腾讯控股00700.HK回购", "腾讯今日回购股份。"),
        _article(3, "央行开展MLF操作", "中期借贷便利（MLF）操作2000亿元。"),
        _article(4, "A股三大指数收涨", "沪指涨1%，北向资金净流入。"),
        _article(5, "5G基站总数突破160万个", "工信部数据显示5G网络建设提速。"),
        _article(6, "Apple shares rise", "Apple Inc. reported record revenue."),
        _article(7, "股市收盘", "上证指数小幅下跌，创业板走弱。"),
    ])
    assert _uids(archive, "600519") == {"t:1"}
    assert _uids(archive, "00700.HK") == _uids(archive, "00700.hk") == {"t:2"}
    assert _uids(archive, "MLF") == _uids(archive, "mlf") == _uids(archive, "ＭＬＦ") == {"t:3"}
    assert _uids(archive, "A股") == _uids(archive, "a股") == {"t:4"}
    assert _uids(archive, "5G") == {"t:5"}
    assert _uids(archive, "apple") == {"t:6"}
    assert _uids(archive, "股") == {"t:1", "t:2", "t:4", "t:7"}


def test_phrases_words_and_exclusions(archive: SqliteArchive) -> None:
    archive.store_many([
        _article(1, "中国人民银行宣布降准", "央行决定下调存款准备金率。"),
        _article(2, "人民的银行", "某地农商行服务人民，银行网点增加。"),
        _article(3, "央行公开市场操作", "今日央行开展逆回购操作。"),
    ])
    assert _uids(archive, '"人民银行"') == {"t:1"}
    assert _uids(archive, "人民 银行") == {"t:1", "t:2"}
    assert _uids(archive, "央行") == {"t:1", "t:3"}
    assert _uids(archive, "央行 -降准") == {"t:3"}
    assert _uids(archive, '央行 -"逆回购"') == {"t:1"}


def test_title_hits_rank_above_body_hits_and_recent_above_old(archive: SqliteArchive) -> None:
    archive.store_many([
        _article(1, "市场综述", "今日茅台股价波动，白酒板块分化。", day=8),
        _article(2, "茅台发布年报", "公司营收增长。", day=8),
        _article(3, "茅台发布季报", "公司营收增长。", day=1),
    ])
    now = datetime(2021, 12, 9, tzinfo=BEIJING).timestamp()
    ranked = [hit.ref.uid for hit in archive.search("茅台", now=now)]
    assert ranked[0] == "t:2"  # a title hit beats a body hit of the same day (t:1),
    assert ranked.index("t:2") < ranked.index("t:3")  # and a newer one an older one
    much_later = (datetime(2021, 12, 9, tzinfo=BEIJING) + timedelta(days=3650)).timestamp()
    scores = [hit.score for hit in archive.search("茅台", now=much_later)]
    assert scores == sorted(scores, reverse=True)


def test_filters_by_outlet_and_date(archive: SqliteArchive) -> None:
    archive.store_many([
        _article(1, "央行消息", "内容一", outlet="甲报", slug="jiabao", day=7),
        _article(2, "央行消息", "内容二", outlet="乙报", slug="yibao", day=8),
        _article(3, "央行消息", "内容三", outlet="乙报", slug="yibao", day=9),
    ])
    day = lambda d: int(datetime(2021, 12, d, tzinfo=BEIJING).timestamp())  # noqa: E731
    assert _uids(archive, "央行", outlet="yibao") == {"t:2", "t:3"}
    assert _uids(archive, "央行", since_ts=day(8)) == {"t:2", "t:3"}
    assert _uids(archive, "央行", until_ts=day(8)) == {"t:1"}
    assert _uids(archive, "央行", outlet="yibao", since_ts=day(8), until_ts=day(9)) == {"t:2"}


def test_snippets_mark_hits_and_escape_html(archive: SqliteArchive) -> None:
    archive.store(_article(1, "标题", "前文<script>x</script>说明：央行今日宣布降准0.5个百分点，释放资金。"))
    [hit] = archive.search("央行 降准")
    assert "<mark>央行</mark>" in hit.snippet and "<mark>降准</mark>" in hit.snippet
    assert "<script>" not in hit.snippet and "&lt;/script&gt;" in hit.snippet


def test_the_index_follows_updates_and_deletes(archive: SqliteArchive) -> None:
    archive.store(_article(1, "茅台涨停", "白酒板块大涨。"))
    archive.store(_article(1, "五粮液涨停", "白酒板块大涨。"))
    assert _uids(archive, "茅台") == set()
    assert _uids(archive, "五粮液") == {"t:1"}
    archive.delete("t:1")
    assert _uids(archive, "五粮液") == _uids(archive, "白酒") == set()


def test_a_changed_segmenter_rebuilds_the_index(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with open_archive(path) as archive:
        archive.store(_article(1, "茅台涨停", "白酒板块大涨。"))
    db = sqlite3.connect(path)
    db.execute("UPDATE search_meta SET value = 'old' WHERE key = 'segment_version'")
    db.execute("INSERT INTO search (search) VALUES ('delete-all')")  # a stale, empty index
    db.commit()
    db.close()
    with open_archive(path) as archive:
        assert _uids(archive, "茅台") == {"t:1"}


@pytest.mark.parametrize("query, message", [
    ("", "empty"), ("   ", "empty"), ("央" * 201, "longer than 200"),
    ("-央行", "nothing to look for"), ("，。！", "nothing to look for"),
])
def test_bad_queries_say_what_is_wrong(archive: SqliteArchive, query: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        archive.search(query)


def test_search_api(archive_url: str) -> None:
    path = archive_url  # a PostgreSQL archive is searched over a pool of connections
    with open_archive(path) as archive:
        import_posts([POSTS], archive)
    app = Starlette(routes=search_routes(path, "/news"))

    class Client:  # the app over httpx's ASGI transport: real requests, no socket
        def get(self, url: str, params: dict[str, str]) -> httpx.Response:
            async def call() -> httpx.Response:
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                    return await c.get(url, params=params)
            return asyncio.run(call())

    client = Client()
    reply = client.get("/api/search", params={"q": "人民币"})
    assert reply.status_code == 200
    body = reply.json()
    assert body["page"] == 1 and body["page_size"] == PAGE_SIZE
    assert 0 < len(body["results"]) <= PAGE_SIZE
    first = body["results"][0]
    assert first["url"].startswith("/news/emnews/2021/12/08/")
    assert "<mark>人民币</mark>" in first["snippet"]
    assert datetime.fromisoformat(first["published_at"]).utcoffset() == timedelta(hours=8)
    filtered = client.get("/api/search", params={"q": "工信部", "outlet": "renminyoudianbao",
                                                 "since": "2022-01-11", "until": "2022-01-11"})
    assert [r["uid"] for r in filtered.json()["results"]] == ["jekyll:NW202201112243109259"]
    for params, message in [
        ({}, "q is required"), ({"q": "央" * 201}, "longer than 200"),
        ({"q": "央行", "page": "0"}, "page must be"), ({"q": "央行", "page": "x"}, "page must be"),
        ({"q": "央行", "since": "2021-13-01"}, "since must be a date"),
        ({"q": "-央行"}, "nothing to look for"),
    ]:
        bad = client.get("/api/search", params=params)
        assert bad.status_code == 400 and message in bad.json()["error"], params


def test_search_command(archive_url: str) -> None:
    db = archive_url
    CliRunner().invoke(main, ["--archive", db, "import", str(POSTS)])
    result = CliRunner().invoke(main, ["--archive", db, "search", "降准"])
    assert result.exit_code == 0
    assert "天风证券刘晨明：降准对A股市场趋势未产生特别影响" in result.stdout
    assert "<mark>" not in result.stdout
    as_json = CliRunner().invoke(main, ["--archive", db, "search", "离岸人民币", "--json",
                                        "--until", "2021-12-08", "--limit", "2"])
    assert len(__import__("json").loads(as_json.stdout)) == 2
    bad = CliRunner().invoke(main, ["--archive", db, "search", "-- -央行"])
    assert bad.exit_code != 0


def test_past_the_rank_window_only_the_newest_matches_are_ranked(
        archive: SqliteArchive, monkeypatch: pytest.MonkeyPatch) -> None:
    # Article 1 has the word in its title (ranked first among all), but is the
    # oldest of ten matches: with a window of 4 it is not among the ranked.
    archive.store_many([_article(n, "央行公告" if n == 1 else f"消息{n}", f"今日央行操作{n}号")
                        for n in range(1, 11)])
    assert [h.ref.uid for h in archive.search("央行", limit=1)] == ["t:1"]
    monkeypatch.setattr("caixun.archive.base.RANK_WINDOW", 4)
    ranked = [h.ref.uid for h in archive.search("央行", limit=10)]
    assert "t:1" in ranked and len(ranked) == 10  # a page past the window widens it
    assert {h.ref.uid for h in archive.search("央行", limit=4)} == {"t:7", "t:8", "t:9", "t:10"}
    assert _uids(archive, "央行", since_ts=0) == {f"t:{n}" for n in range(1, 11)}


def test_a_broad_query_ranks_its_window_by_title_hits_then_recency(
        archive: SqliteArchive, monkeypatch: pytest.MonkeyPatch) -> None:
    archive.store_many([_article(n, "央行公告" if n in (1, 8) else f"消息{n}", f"今日央行操作{n}号")
                        for n in range(1, 11)])
    monkeypatch.setattr("caixun.archive.base.RANK_WINDOW", 4)
    hits = archive.search("央行", limit=4, now=datetime(2021, 12, 9, tzinfo=BEIJING).timestamp())
    assert [h.ref.uid for h in hits] == ["t:8", "t:10", "t:9", "t:7"]
    assert hits[0].score > hits[1].score > hits[2].score > hits[3].score
    assert "<mark>央行</mark>" in hits[1].snippet

"""Securities: codes, names, tagging, and the archive's tags, re-tag and stock filters."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SHARED
from caixun.archive import Archive, SqliteArchive, open_archive
from caixun.archive.migrations import MIGRATIONS
from caixun.archive.securities import article_text, scan_article
from caixun.segment import index_text_normalized, normalize
from caixun.model import Article
from caixun.securities import (
    SecurityName,
    Tagger,
    a_share_market,
    canonical_code,
    codes_in_links,
    from_eastmoney,
    from_native,
    name_forms,
    names_in_links,
)
from caixun.sources.base import SourceConfig, load_source
from newsserver import rss_xml

RSS_DAYS = SHARED / "corpus" / "rss-days"
BEIJING = timezone(timedelta(hours=8))
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=BEIJING)
_QUOTE = re.compile(r"quote\.eastmoney\.com/unify/r/(\d+)\.(\w+)")


@lru_cache(maxsize=1)
def corpus_items() -> tuple[dict[str, object], ...]:
    items = []
    for day in sorted(RSS_DAYS.glob("*.json")):
        items += json.loads(day.read_text(encoding="utf-8"))["articles"]
    return tuple(items)


@lru_cache(maxsize=1)
def corpus_articles() -> tuple[Article, ...]:
    source = load_source(SourceConfig("news", "rss", options={"url": "https://example.org/f"}))
    [request] = source.list_requests()
    fetched = datetime(2026, 9, 1, tzinfo=timezone.utc)
    articles = []
    for day in sorted(RSS_DAYS.glob("*.json")):
        articles += [source.to_article(e, None, fetched)
                     for e in source.parse_list(request, rss_xml(day))]
    return tuple(articles)


def article(n: int, title: str, body: str = "", *, html: str = "", minutes: int = 0,
            extra: dict[str, object] | None = None) -> Article:
    return Article(uid=f"t:{n}", outlet="测试社", outlet_slug="ceshishe", title=title,
                   published_at=T0 + timedelta(minutes=minutes or n), file_id=f"{n:06d}",
                   body_html=html or f"<p>{body}</p>", body_text=body,
                   extra=extra or {})


def tags_of(archive: SqliteArchive, uid: str) -> tuple[str, ...]:
    ref = archive.refs_by_uid([uid])[0]
    return archive.article_codes([ref.id]).get(ref.id, ())


# -- codes --------------------------------------------------------------------------------

def test_every_east_money_link_of_the_corpus_gives_a_stock_code_or_none() -> None:
    seen = 0
    for item in corpus_items():
        for market, code in _QUOTE.findall(str(item.get("summary") or "")):
            canonical = from_eastmoney(f"{market}.{code}")
            seen += 1
            if market == "90" or market == "100":  # boards, world indices
                assert canonical is None
            elif market == "1" and code.startswith("000"):  # Shanghai indices
                assert canonical is None
            elif market == "1":
                assert canonical == f"{code}.SH"
            elif market == "0" and code.startswith("399"):  # Shenzhen indices
                assert canonical is None
            elif market == "0":
                assert canonical in (f"{code}.SZ", f"{code}.BJ")
            elif market in ("105", "106", "107"):
                assert canonical == f"{code}.US"
            elif market == "116":
                assert canonical == f"{code}.HK"
    assert seen > 3000


@given(st.sampled_from(["600", "601", "603", "605", "688", "000", "001", "002", "003",
                        "300", "301", "430", "830", "920"]),
       st.integers(min_value=0, max_value=999))
def test_a_share_codes_in_every_spelling_give_one_canonical_code(prefix: str, n: int) -> None:
    code = f"{prefix}{n:03d}"
    market = a_share_market(code)
    assert market is not None
    canonical = f"{code}.{market}"
    em_market = "1" if market == "SH" else "0"
    for spelling in (code, f"{market.lower()}{code}", f"{market}{code}", canonical,
                     f"{em_market}.{code}", canonical.lower()):
        assert from_native(spelling) == canonical, spelling
    assert canonical_code(code, "HK") is None


@pytest.mark.parametrize("value", ["90.BK0475", "1.000001", "0.399001", "510300", "159915",
                                   "", "abc", "1.", "100.NDX", "00000", "sh000001"])
def test_indices_boards_funds_and_junk_are_no_securities(value: str) -> None:
    assert from_native(value) is None


def test_name_forms_fold_width_spaces_st_marks_and_share_classes() -> None:
    assert name_forms("万  科Ａ") == ["万科A", "万科"]
    assert name_forms("*ST金鸿控") == ["*ST金鸿控", "ST金鸿控", "金鸿控"]
    assert name_forms("小米集团-W") == ["小米集团-W", "小米集团"]
    assert "实达" not in name_forms("*ST实达")  # a bare two-character rest is too often a word


def test_names_in_links_reads_the_corpus_quote_links_with_their_names() -> None:
    pairs = {pair for item in corpus_items()
             for pair in names_in_links(str(item.get("summary") or ""))}
    assert ("600519.SH", "贵州茅台") in pairs or len(pairs) > 1000
    assert all(from_native(code) == code for code, _ in pairs)
    assert not any(code.startswith("BK") for code, _ in pairs)


# -- tagging ------------------------------------------------------------------------------

TAGGER_NAMES = [("600519.SH", "贵州茅台"), ("000002.SZ", "万  科Ａ"), ("300024.SZ", "机器人"),
                ("601318.SH", "中国平安"), ("000001.SZ", "平安银行"), ("00700.HK", "腾讯控股"),
                ("600030.SH", "中信证券"), ("300059.SZ", "东方财富")]

CJK = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), max_size=30)


@settings(max_examples=200)
@given(CJK, CJK)
def test_a_strong_name_is_found_wherever_it_stands(before: str, after: str) -> None:
    tagger = Tagger(TAGGER_NAMES)
    text = f"{before}。贵州茅台{after}"
    assert "600519.SH" in tagger.tag(text)


@settings(max_examples=200)
@given(CJK.filter(lambda t: "机器人" not in t and "东方财富" not in t))
def test_a_weak_name_needs_evidence(text: str) -> None:
    tagger = Tagger(TAGGER_NAMES)
    assert "300024.SZ" not in tagger.tag(f"{text}人形机器人产业链{text}")
    assert "300024.SZ" in tagger.tag(f"{text}机器人(300024){text}")
    assert "300024.SZ" in tagger.tag(f"{text}机器人股份公告{text}")
    assert "300024.SZ" in tagger.tag(f"{text}人形机器人产业{text}", linked=["300024.SZ"])


def test_longest_name_wins_and_codes_are_read_in_every_form() -> None:
    tagger = Tagger(TAGGER_NAMES)
    assert tagger.tag("中国平安公告") == ("601318.SH",)
    assert tagger.tag("平安银行公告") == ("000001.SZ",)
    assert tagger.tag("万科发布，万科Ａ涨停") == ("000002.SZ",)
    assert tagger.tag("600519.SH收涨；SZ000002；腾讯控股（00700）回购；(NASDAQ: AAPL)") == (
        "000002.SZ", "00700.HK", "600519.SH", "AAPL.US")
    assert tagger.tag("拟融资600000元，2025年增长600519%") == ()  # amounts, not codes
    assert tagger.tag("代码600519") == ("600519.SH",)  # a bare code that is known
    assert tagger.tag("代码688981") == ()  # a bare number no list knows
    assert tagger.tag("中芯国际(688981)") == ("688981.SH",)  # a code after a name


def test_a_broker_quoted_for_its_view_is_not_what_the_article_is_about() -> None:
    tagger = Tagger(TAGGER_NAMES)
    assert tagger.tag("中信证券认为，降准在即") == ()
    assert tagger.tag("中信证券发布公告称") == ("600030.SH",)
    assert tagger.tag("中信证券(600030)认为") == ("600030.SH",)


def test_names_learned_after_the_automaton_was_made_tag_at_once() -> None:
    tagger = Tagger(TAGGER_NAMES)
    assert tagger.tag("宁德时代发布财报") == ()
    tagger.learn("300750.SZ", "宁德时代")
    assert tagger.tag("宁德时代发布财报") == ("300750.SZ",)
    for n in range(Tagger.MERGE_AFTER):  # past the merge into the main automaton
        tagger.learn(f"{600000 + n}.SH", f"测试公司{n:04d}号")
    assert tagger.tag("宁德时代与测试公司0007号") == ("300750.SZ", "600007.SH")


def test_scanning_apart_tags_the_same_as_tagging_at_once() -> None:
    names = [pair for item in corpus_items()
             for pair in names_in_links(str(item.get("summary") or ""))]
    tagger = Tagger(names)
    for a in corpus_articles()[::7]:
        linked = codes_in_links(a.body_raw or a.body_html)
        native = [str(v) for v in a.extra.get("stocks", ())]
        direct = tagger.tag(article_text(a), linked, native)
        assert tagger.tag_scanned(scan_article(a), article_text(a)) == direct
        # As the import workers scan it: the normalized text index_text made.
        _, normalized = index_text_normalized(a.title, a.digest, a.body_text)
        assert normalized == normalize(article_text(a))
        assert scan_article(a, normalized=normalized) == scan_article(a)


# -- the archive --------------------------------------------------------------------------

def test_an_article_is_tagged_in_its_own_transaction(tmp_path: Path) -> None:
    with SqliteArchive(tmp_path / "a.db") as archive:
        archive.learn_securities([SecurityName("600519.SH", "贵州茅台", "test")])
        archive.store(article(1, "贵州茅台提价", "贵州茅台宣布提价"))
        assert tags_of(archive, "t:1") == ("600519.SH",)
        assert archive.stock_count("600519.SH") == 1
        # The tags roll back with the article when the transaction fails.
        with pytest.raises(RuntimeError):
            with archive.transaction():
                archive.store(article(2, "贵州茅台再提价", "贵州茅台"))
                raise RuntimeError("disk gone")
        assert archive.stock_count("600519.SH") == 1
        assert archive.refs_by_uid(["t:2"]) == []


def test_names_another_writer_learned_tag_at_the_next_transaction(archive_url: str) -> None:
    """Two fetchers on one archive: what one learns, the other's tagger knows next time."""
    with open_archive(archive_url) as first, open_archive(archive_url) as second:
        second.store(article(1, "今日收盘", "沪指收涨"))  # its tagger is loaded now
        first.learn_securities([SecurityName("600519.SH", "贵州茅台", "test")])
        second.store(article(2, "贵州茅台提价", "贵州茅台宣布提价"))
        assert tags_of(second, "t:2") == ("600519.SH",)
        first.learn_securities([SecurityName("000858.SZ", "五粮液", "test")])
        second.retag(everything=True)
        assert archive_codes(second) == {"t:2": ("600519.SH",)}


def archive_codes(archive: Archive) -> dict[str, tuple[str, ...]]:
    refs = {ref.id: ref.uid for ref in archive.iter_refs()}
    return {refs[i]: codes for i, codes in archive.article_codes(list(refs)).items()}


def test_names_come_from_an_articles_own_links(tmp_path: Path) -> None:
    html = ('<p>今日<a href="http://quote.eastmoney.com/unify/r/0.300750">宁德时代</a>'
            '大涨，<a href="http://quote.eastmoney.com/unify/r/90.BK0475">银行</a>板块</p>')
    with SqliteArchive(tmp_path / "a.db") as archive:
        archive.store(article(1, "电池股走强", "今日宁德时代大涨，银行板块", html=html))
        assert tags_of(archive, "t:1") == ("300750.SZ",)  # the board is not a security
        archive.store(article(2, "宁德时代公告", "宁德时代公告"))  # learned: tags the next
        assert tags_of(archive, "t:2") == ("300750.SZ",)
        [row] = archive.securities()
        assert (row.code, row.name, row.articles) == ("300750.SZ", "宁德时代", 2)


def test_native_fields_tag_whatever_the_text_says(tmp_path: Path) -> None:
    with SqliteArchive(tmp_path / "a.db") as archive:
        archive.store(article(1, "快讯", "盘面消息", extra={"stocks": ["1.601398", "90.BK0475"]}))
        archive.store(article(2, "电报", "盘面消息", extra={"stocks": ["sh603986"]}))
        assert tags_of(archive, "t:1") == ("601398.SH",)
        assert tags_of(archive, "t:2") == ("603986.SH",)


def test_updates_and_deletes_log_the_stock_pages_they_touch(tmp_path: Path) -> None:
    with SqliteArchive(tmp_path / "a.db") as archive:
        archive.learn_securities([SecurityName("600519.SH", "贵州茅台", "test"),
                                  SecurityName("000858.SZ", "五粮液", "test")])
        archive.store(article(1, "贵州茅台提价", "贵州茅台"))
        seq = archive.last_change_seq()
        archive.store(article(1, "五粮液提价", "五粮液", minutes=90))
        assert tags_of(archive, "t:1") == ("000858.SZ",)
        touched = archive.stock_changes_since(seq)
        ts_new = int((T0 + timedelta(minutes=90)).timestamp())
        ts_old = int((T0 + timedelta(minutes=1)).timestamp())
        assert ("000858.SZ", ts_new) in touched and ("600519.SH", ts_new) in touched
        assert archive.stock_count("600519.SH") == 0
        seq = archive.last_change_seq()
        assert archive.delete("t:1")
        assert archive.stock_changes_since(seq) == {("000858.SZ", ts_new)}
        assert archive.stock_count("000858.SZ") == 0
        assert ts_old  # the page it left at its first time was logged by the update


def test_retag_tags_older_articles_with_names_learned_later_and_resumes(tmp_path: Path) -> None:
    with SqliteArchive(tmp_path / "a.db") as archive:
        for n in range(1, 8):
            archive.store(article(n, f"宁德时代第{n}条", "电池龙头宁德时代"))
        archive.store(article(9, "无关", "天气晴"))
        assert archive.stock_count("300750.SZ") == 0
        while archive.retag():  # the archive's own first pass (nothing to tag yet)
            pass
        archive.learn_securities([SecurityName("300750.SZ", "宁德时代", "test")])
        assert archive.retag_pending()
        seq = archive.last_change_seq()
        steps = 0
        while archive.retag(limit=3):
            steps += 1
        assert steps >= 1 and not archive.retag_pending()
        assert archive.stock_count("300750.SZ") == 7
        assert tags_of(archive, "t:9") == ()
        # Retags are relinks for the build: pages change, not the indexed text.
        changes = archive.changes_since(seq)
        assert len(changes) == 7 and all(c.relink for c in changes)


def test_an_archive_from_before_tags_is_tagged_by_the_retag(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with SqliteArchive(path, [m for m in MIGRATIONS if m.version < 12]) as old:
        old.store(article(1, "贵州茅台(600519)提价", "贵州茅台"))
    with SqliteArchive(path) as archive:
        assert archive.schema_version == MIGRATIONS[-1].version
        assert archive.retag_pending()
        assert archive.stock_count("600519.SH") == 0
        while archive.retag():
            pass
        assert tags_of(archive, "t:1") == ("600519.SH",)


# -- a security's articles in time order --------------------------------------------------

def _in_time_order(archive: Archive, code: str) -> list[tuple[int, int]]:
    """(time, id) of the articles tagged ``code``, from the articles' own rows."""
    order = []
    for ref in archive.stock_refs(code):
        stored = archive.get(ref.uid)
        assert stored is not None
        order.append((int(stored.published_at.timestamp()), ref.id))
    return sorted(order)


def _check_stock_order(archive: Archive, code: str) -> None:
    """Position, newest and every page of ``code`` read from the tags' own times
    say what the articles' times say."""
    order = _in_time_order(archive, code)
    for at, (ts, article_id) in enumerate(order):
        assert archive.stock_position(code, ts, article_id) == at
    assert archive.stock_position(code, 2**40) == len(order)
    for limit in (1, 2, len(order) + 1):
        assert [(r.published_ts, r.id) for r in archive.stock_newest(code, limit)] == \
            order[::-1][:limit]
    for offset in range(len(order) + 1):
        for limit in (None, 2):
            part = order[offset:] if limit is None else order[offset:offset + limit]
            assert [(r.published_ts, r.id) for r in archive.stock_refs(code, offset, limit)] \
                == part


def _stored_times_agree(archive: Archive) -> bool:
    return not archive._db.execute(
        "SELECT count(*) FROM article_securities s JOIN articles a ON a.id = s.article_id "
        "WHERE s.published_ts <> a.published_ts").fetchone()[0]


def test_a_securitys_articles_in_time_order_follow_moves_retags_and_deletes(
        archive: Archive) -> None:
    """Stock pages take a security's positions and newest articles from its tags'
    times (one index range): those stay the articles' times whatever changes."""
    archive.learn_securities([SecurityName("600519.SH", "贵州茅台", "test")])
    minutes = [50, 10, 70, 30, 20, 80, 60, 40, 40]  # two share a time: ids break the tie
    archive.store_many([article(n, f"贵州茅台第{n}条", "贵州茅台提价", minutes=m)
                        for n, m in enumerate(minutes, 1)])
    _check_stock_order(archive, "600519.SH")
    # Moved in time (the newest first, the oldest last), with and without other changes.
    for n, m in ((6, 1), (2, 95), (4, 40)):
        moved = archive.get(f"t:{n}")
        assert moved is not None
        archive.store(moved.evolve(published_at=T0 + timedelta(minutes=m)))
        _check_stock_order(archive, "600519.SH")
    moved = archive.get("t:7")
    assert moved is not None
    archive.store(moved.evolve(title="贵州茅台更正", published_at=T0 + timedelta(minutes=3)))
    _check_stock_order(archive, "600519.SH")
    # Untagged and tagged again, at another time; tagged by the re-tag; deleted.
    archive.store(article(8, "天气", "天气晴", minutes=45))
    archive.store(article(8, "贵州茅台第8条", "贵州茅台提价", minutes=5))
    _check_stock_order(archive, "600519.SH")
    archive.store(article(10, "宁德时代第10条", "电池龙头宁德时代", minutes=33))
    archive.learn_securities([SecurityName("300750.SZ", "宁德时代", "test")])
    while archive.retag():
        pass
    moved = archive.get("t:10")
    assert moved is not None
    archive.store(moved.evolve(published_at=T0 + timedelta(minutes=200)))
    _check_stock_order(archive, "300750.SZ")
    assert archive.delete("t:1") and archive.delete("t:6")
    _check_stock_order(archive, "600519.SH")
    assert archive.stock_count("600519.SH") == 7
    assert _stored_times_agree(archive)


def _before_tag_times(url: str) -> Archive:
    """An archive of each backend as caixun made it before migration 17."""
    if url.startswith("postgresql"):
        from caixun.archive.postgres import PostgresArchive
        from caixun.archive.migrations import POSTGRES_MIGRATIONS

        return PostgresArchive(url, [m for m in POSTGRES_MIGRATIONS if m.version < 17])
    return SqliteArchive(url, [m for m in MIGRATIONS if m.version < 17])


def test_an_upgrade_gives_the_tags_their_articles_times(archive_url: str) -> None:
    with _before_tag_times(archive_url) as old:
        old.learn_securities([SecurityName("600519.SH", "贵州茅台", "test")])
        old.store_many([article(n, f"贵州茅台第{n}条", "贵州茅台提价", minutes=(7 * n) % 30)
                        for n in range(1, 7)])
        assert old.schema_version == 16
    with open_archive(archive_url) as archive:  # migration 17 fills the tags' times
        assert archive.schema_version == MIGRATIONS[-1].version
        assert _stored_times_agree(archive)
        _check_stock_order(archive, "600519.SH")


def test_tags_follow_their_articles_when_dates_are_mended(tmp_path: Path) -> None:
    path = tmp_path / "caixun.db"
    with SqliteArchive(path) as archive:
        archive.learn_securities([SecurityName("600519.SH", "贵州茅台", "test")])
        archive.store_many([article(n, f"贵州茅台第{n}条", "贵州茅台提价", minutes=(7 * n) % 30)
                            for n in range(1, 7)])
    with sqlite3.connect(path) as conn:  # an impossible date, as older versions stored
        conn.execute("UPDATE articles SET published_at = '0001-01-01T00:00:00+08:00', "
                     "published_ts = ? WHERE uid = 't:3'",
                     (int(datetime(1, 1, 1, tzinfo=BEIJING).timestamp()),))
        conn.execute("UPDATE article_securities SET published_ts = (SELECT published_ts "
                     "FROM articles WHERE uid = 't:3') WHERE article_id = (SELECT id "
                     "FROM articles WHERE uid = 't:3')")
    with SqliteArchive(path) as archive:  # mended when opened to write: its tags follow
        assert archive.redated == ["t:3"]
        mended = archive.get("t:3")
        assert mended is not None and mended.published_at.year > 2000
        assert _stored_times_agree(archive)
        _check_stock_order(archive, "600519.SH")


def test_search_by_stock_is_the_search_filtered_by_tags(tmp_path: Path) -> None:
    with SqliteArchive(tmp_path / "a.db") as archive:
        archive.learn_securities([SecurityName("600519.SH", "贵州茅台", "test"),
                                  SecurityName("000858.SZ", "五粮液", "test")])
        for n in range(1, 31):
            who = ["贵州茅台", "五粮液", "贵州茅台与五粮液"][n % 3]
            archive.store(article(n, f"白酒消息{n}", f"{who}今日白酒板块走强"))
        plain = archive.search("白酒", limit=100)
        for stocks in (["600519.SH"], ["000858.SZ"], ["600519.SH", "000858.SZ"]):
            wanted = [h.ref.uid for h in plain
                      if set(stocks) <= set(tags_of(archive, h.ref.uid))]
            got = [h.ref.uid for h in archive.search("白酒", limit=100, stocks=stocks)]
            assert got == wanted and got
            newest = [h.ref.uid for h in archive.search("", limit=100, stocks=stocks)]
            assert sorted(newest) == sorted(wanted)
            assert newest == sorted(newest, key=lambda u: -int(u.split(":")[1]))


def test_the_corpus_stored_with_scans_from_workers_gets_the_same_tags(tmp_path: Path) -> None:
    articles = list(corpus_articles())
    results = []
    for name, scans in (("inline", None), ("scanned", [scan_article(a) for a in articles])):
        with SqliteArchive(tmp_path / f"{name}.db") as archive:
            for start in range(0, len(articles), 1000):
                archive.store_many(articles[start:start + 1000], None, None,
                                   scans[start:start + 1000] if scans else None)
        db = sqlite3.connect(tmp_path / f"{name}.db")
        results.append(db.execute(
            "SELECT a.uid, s.code FROM article_securities s JOIN articles a "
            "ON a.id = s.article_id ORDER BY 1, 2").fetchall())
        db.close()
    assert results[0] == results[1]
    assert len(results[0]) > 1000


def test_a_renamed_security_rebuilds_every_page_that_shows_its_name(tmp_path: Path) -> None:
    with SqliteArchive(tmp_path / "a.db") as archive:
        archive.learn_securities([SecurityName("000001.SZ", "平安银行", "securities-em")])
        for n in range(1, 4):
            archive.store(article(n, f"平安银行公告{n}", "平安银行"))
        archive.store(article(9, "无关", "天气晴"))
        seq = archive.last_change_seq()
        archive.learn_securities([SecurityName("000001.SZ", "平安银行", "link:x")])  # same
        archive.learn_securities([SecurityName("000001.SZ", "平银", "link:x")])  # a link's text
        assert archive.last_change_seq() == seq
        archive.learn_securities([SecurityName("000001.SZ", "平安银行股份", "securities-em")])
        changes = archive.changes_since(seq)
        assert sorted(c.uid for c in changes) == ["t:1", "t:2", "t:3"]
        assert all(c.relink for c in changes)
        assert {code for code, _ in archive.stock_changes_since(seq)} == {"000001.SZ"}
        [row] = archive.securities()
        assert row.name == "平安银行股份" and "平安银行" in row.names  # the old name tags still


def test_a_common_name_is_retagged_in_bounded_steps(tmp_path: Path) -> None:
    with SqliteArchive(tmp_path / "a.db") as archive:
        for n in range(1, 31):
            archive.store(article(n, f"宁德时代第{n}条", "电池龙头宁德时代"))
        while archive.retag():
            pass
        archive.learn_securities([SecurityName("300750.SZ", "宁德时代", "test"),
                                  SecurityName("600519.SH", "贵州茅台", "test")])
        steps = []
        while read := archive.retag(limit=7):
            steps.append(read)
            assert archive.stock_count("300750.SZ") == sum(steps) or read <= 7
        assert max(steps) <= 7 and len(steps) >= 5
        assert archive.stock_count("300750.SZ") == 30 and not archive.retag_pending()


@given(st.text(max_size=40), st.text(max_size=40), st.text(max_size=200))
def test_the_text_index_text_normalizes_is_the_text_tagging_scans(title: str, digest: str,
                                                                  body: str) -> None:
    a = Article(uid="h", outlet="o", outlet_slug="o", title=title, published_at=T0,
                file_id="1", body_text=body, digest=digest)
    assert index_text_normalized(title, digest, body)[1] == normalize(article_text(a))

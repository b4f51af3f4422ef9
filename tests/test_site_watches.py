"""Watch lists on the site: an Atom feed per watch (/watch/<name>.xml) and their index.

A real archive learns securities, stores articles and keeps watches
(``use_watches``); the site is built for real and each feed, read back with
xml.etree, must hold exactly ``archive.watch_refs`` newest FEED_SIZE. Incremental
builds (new articles, watches added, changed and removed) must equal full ones
byte for byte, and write a watch's feed only when it changes.
"""

from __future__ import annotations

import re
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from caixun.archive import Archive, ArticleRef, SqliteArchive
from caixun.model import Article
from caixun.publish import paths
from caixun.publish.feeds import entry_id
from caixun.publish.site import FEED_SIZE, SiteConfig, build_site
from caixun.securities import SecurityName
from caixun.watch import Watch
from site_helpers import broken_links, make_article, mtimes, tree

CONFIG = SiteConfig(title="财讯测试", url="https://news.example.com", per_page=3)
ATOM = "{http://www.w3.org/2005/Atom}"
MAOTAI, PINGAN = "600519.SH", "000001.SZ"
NAMES = {MAOTAI: "贵州茅台", PINGAN: "平安银行"}

RATES = Watch("rates", query="降准")
HOLDINGS = Watch("holdings", stocks=(MAOTAI,))
CLS_ONLY = Watch("cls_rates", query="降准", stocks=(PINGAN,), outlets=("cls",))
WATCHES = [RATES, HOLDINGS, CLS_ONLY]
OUTLETS = [("上海证券报", "shanghaizhengquanbao"), ("财联社", "cls"), ("华尔街见闻", "wallstreetcn")]
TOPICS = ["央行宣布降准", "国常会部署降准", "券商点评降准", "市场预期降准", "专家解读降准"]


def _learn(archive: SqliteArchive) -> None:
    archive.learn_securities([SecurityName(code, name, "test") for code, name in NAMES.items()])


def _article(n: int, title: str, *, outlet: int = 0, minute: int | None = None,
             day: int = 9) -> Article:
    """Article ``n`` of OUTLETS[outlet], its text saying what its title does."""
    name, slug = OUTLETS[outlet]
    text = f"{title}。第{n}条新闻的正文，编号{n * 7919}。"
    return make_article(n, name, slug, day=day, minute=minute, title=f"{title}（{n}）").evolve(
        body_text=text, body_html=f"<p>{text}</p>")


def _store_corpus(archive: SqliteArchive) -> None:
    """More than FEED_SIZE articles on 降准 over three outlets, articles on the two
    securities (one also on 降准) and others on nothing watched."""
    _learn(archive)
    articles = [_article(n, TOPICS[n % len(TOPICS)], outlet=n % 3, minute=n * 3)
                for n in range(1, 61)]
    articles += [_article(100 + n, f"{NAMES[MAOTAI]}发布公告", outlet=n % 3, minute=n * 5 + 1)
                 for n in range(1, 9)]
    articles += [_article(200 + n, f"{NAMES[PINGAN]}业绩快报", outlet=n % 3, minute=n * 7 + 2)
                 for n in range(1, 7)]
    articles.append(_article(300, f"{NAMES[MAOTAI]}回应降准影响", outlet=1, minute=400))
    articles += [_article(400 + n, "今日天气晴朗", outlet=n % 3, minute=n * 11 + 4)
                 for n in range(1, 6)]
    archive.store_many(articles)


def _feed(out: Path, watch: Watch) -> ET.Element:
    return ET.fromstring((out / paths.watch_feed_path(watch.name)).read_bytes())


def _entry_ids(feed: ET.Element) -> list[str | None]:
    return [entry.findtext(f"{ATOM}id") for entry in feed.findall(f"{ATOM}entry")]


def _expected_ids(archive: SqliteArchive, watch: Watch) -> list[str | None]:
    return [entry_id(ref.uid) for ref in archive.watch_refs(watch, limit=FEED_SIZE)]


def _full_tree(archive: SqliteArchive, tmp_path: Path, config: SiteConfig) -> dict[str, bytes]:
    fresh = tmp_path / f"fresh-{time.monotonic_ns()}"
    build_site(archive, fresh, config, full=True)
    result = tree(fresh)
    shutil.rmtree(fresh)
    return result


def _watch_files(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "watch").iterdir()) if (out / "watch").exists() else []


def test_each_watch_has_a_feed_of_exactly_its_newest_matches(archive: SqliteArchive,
                                                             tmp_path: Path) -> None:
    _store_corpus(archive)
    archive.use_watches(WATCHES)
    assert len(archive.watch_refs(RATES)) > FEED_SIZE  # the feed is cut
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=1)

    for watch in WATCHES:
        feed = _feed(out, watch)
        assert feed.tag == f"{ATOM}feed"
        assert _entry_ids(feed) == _expected_ids(archive, watch), watch.name
    rates = _feed(out, RATES)
    assert len(rates.findall(f"{ATOM}entry")) == FEED_SIZE
    assert rates.findtext(f"{ATOM}title") == "关注：rates"
    links = {link.get("rel"): link.get("href") for link in rates.findall(f"{ATOM}link")}
    assert links == {"self": "https://news.example.com/watch/rates.xml",
                     "alternate": "https://news.example.com/watch/"}
    assert rates.findtext(f"{ATOM}id") == "https://news.example.com/watch/rates.xml"

    # The securities' watch: every article naming 贵州茅台, whatever else it says.
    holdings = [r.uid for r in archive.watch_refs(HOLDINGS)]
    assert sorted(holdings) == sorted([f"test:{100 + n}" for n in range(1, 9)] + ["test:300"])
    # The query or the security, within the outlet: 财联社's articles on 降准 or 平安银行.
    cls_refs = archive.watch_refs(CLS_ONLY)
    assert cls_refs and {r.outlet_slug for r in cls_refs} == {"cls"}
    assert {"test:201", "test:204", "test:300"} <= {r.uid for r in cls_refs}
    assert len(_feed(out, CLS_ONLY).findall(f"{ATOM}entry")) == len(cls_refs)


def test_watch_entries_are_made_as_the_other_feeds(archive: SqliteArchive,
                                                   tmp_path: Path) -> None:
    """Same entries as the site feed and an outlet's feed: title, link, times, summary."""
    _store_corpus(archive)
    archive.use_watches(WATCHES)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=1)

    def entries(path: str) -> dict[str | None, bytes]:
        found = ET.fromstring((out / path).read_bytes()).findall(f"{ATOM}entry")
        for entry in found:
            entry.tail = None  # the last one's is the feed's closing indentation
        return {entry.findtext(f"{ATOM}id"): ET.tostring(entry) for entry in found}

    known = entries(paths.FEED)
    for _, slug in OUTLETS:
        known.update(entries(paths.outlet_feed_path(slug)))
    for watch in WATCHES:
        mine = entries(paths.watch_feed_path(watch.name))
        shared = set(mine) & set(known)
        assert shared, watch.name
        assert all(mine[uid] == known[uid] for uid in shared)
    article = ET.fromstring((out / paths.watch_feed_path("holdings")).read_bytes()).find(
        f"{ATOM}entry")
    assert article is not None
    assert article.findtext(f"{ATOM}summary", "").startswith("贵州茅台回应降准影响。")
    assert article.findtext(f"{ATOM}author/{ATOM}name") == "财联社"


def test_the_index_lists_the_watches_and_the_home_page_links_it(archive: SqliteArchive,
                                                                tmp_path: Path) -> None:
    config = SiteConfig(title="财讯测试", url="https://example.com/news/", per_page=3)
    _store_corpus(archive)
    archive.use_watches(WATCHES)
    out = tmp_path / "site"
    build_site(archive, out, config, jobs=1)
    index = (out / paths.WATCH_INDEX).read_text(encoding="utf-8")
    assert "<title>关注列表 - 财讯测试</title>" in index
    assert re.findall(r'<li><a href="([^"]+)">', index) == [
        "/news/watch/cls_rates.xml", "/news/watch/holdings.xml", "/news/watch/rates.xml"]
    assert "股票：贵州茅台（600519.SH）" in index
    assert "查询：<code>降准</code></span> <span class=\"stocks\">或股票：平安银行（000001.SZ）" in index
    assert "限来源：财联社" in index
    assert ('<link rel="alternate" type="application/atom+xml" title="关注：rates" '
            'href="/news/watch/rates.xml">') in index
    assert '<a href="/news/watch/">关注</a>' in (out / paths.HOME).read_text(encoding="utf-8")
    assert "<loc>https://example.com/news/watch/</loc>" in (
        out / paths.SITEMAP).read_text(encoding="utf-8")
    assert broken_links(out, config.base_path) == []


def test_a_site_without_watches_has_nothing_of_them(archive: SqliteArchive,
                                                    tmp_path: Path) -> None:
    _store_corpus(archive)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=1)
    assert not (out / "watch").exists()
    assert "/watch/" not in (out / paths.HOME).read_text(encoding="utf-8")
    assert "/watch/" not in (out / paths.SITEMAP).read_text(encoding="utf-8")
    state = archive.build_state(str(out.resolve()))
    assert state is not None and "watches" not in state.fingerprint
    assert build_site(archive, out, CONFIG).mode == "unchanged"


def _count_watch_queries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = Archive.watch_refs

    def counted(self: Archive, watch: Watch, *args: Any, **kwargs: Any
                ) -> list[ArticleRef]:
        calls.append(watch.name)
        return original(self, watch, *args, **kwargs)

    monkeypatch.setattr(Archive, "watch_refs", counted)
    return calls


def test_an_incremental_build_rewrites_only_the_feeds_that_change(
        archive: SqliteArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _store_corpus(archive)
    archive.use_watches(WATCHES)
    out = tmp_path / "site"
    assert build_site(archive, out, CONFIG, jobs=1).mode == "full"
    calls = _count_watch_queries(monkeypatch)

    # Nothing watched: no feed is written (each is read with one query, and is the same).
    before = mtimes(out)
    archive.store(_article(500, "今日多云", minute=900))
    report = build_site(archive, out, CONFIG, record_paths=True)
    assert report.mode == "incremental"
    assert sorted(calls) == sorted(w.name for w in WATCHES)
    assert not [p for p in report.written_paths if p.startswith("watch/")]
    assert all(mtimes(out)[p] == before[p] for p in before if p.startswith("watch/"))
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)

    # The newest 降准 article: the feeds of the watches it matches, and only those.
    archive.store(_article(501, "央行再次降准", outlet=2, minute=901))
    report = build_site(archive, out, CONFIG, record_paths=True)
    assert [p for p in report.written_paths if p.startswith("watch/")] == ["watch/rates.xml"]
    assert _entry_ids(_feed(out, RATES))[0] == entry_id("test:501")
    assert _entry_ids(_feed(out, RATES)) == _expected_ids(archive, RATES)
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)

    # 平安银行 at 财联社: the outlet-bound watch; retitled to 茅台: it moves feeds.
    archive.store(_article(502, f"{NAMES[PINGAN]}董事会决议", outlet=1, minute=902))
    report = build_site(archive, out, CONFIG, record_paths=True)
    assert [p for p in report.written_paths if p.startswith("watch/")] == [
        "watch/cls_rates.xml"]
    edited = archive.get("test:502")
    assert edited is not None
    text = f"{NAMES[MAOTAI]}董事会决议。"
    archive.store(edited.evolve(title=text, body_text=text, body_html=f"<p>{text}</p>"))
    report = build_site(archive, out, CONFIG, record_paths=True)
    assert sorted(p for p in report.written_paths if p.startswith("watch/")) == [
        "watch/cls_rates.xml", "watch/holdings.xml"]
    for watch in WATCHES:
        assert _entry_ids(_feed(out, watch)) == _expected_ids(archive, watch), watch.name
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)

    # A deleted match leaves its feeds; an older one comes back into the cut feed.
    archive.delete("test:501")
    build_site(archive, out, CONFIG)
    assert entry_id("test:501") not in _entry_ids(_feed(out, RATES))
    assert _entry_ids(_feed(out, RATES)) == _expected_ids(archive, RATES)
    assert len(_entry_ids(_feed(out, RATES))) == FEED_SIZE
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)
    assert broken_links(out) == []

    # No change at all: nothing is read or written.
    calls.clear()
    assert build_site(archive, out, CONFIG).mode == "unchanged"
    assert calls == []


def test_watches_added_changed_and_removed_are_built_without_an_article_change(
        archive: SqliteArchive, tmp_path: Path) -> None:
    _store_corpus(archive)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=1)
    never_watched = tree(out)

    archive.use_watches([RATES, HOLDINGS])
    report = build_site(archive, out, CONFIG, record_paths=True)
    assert report.mode == "incremental"
    assert {"watch/rates.xml", "watch/holdings.xml", "watch/index.html",
            "index.html"} <= set(report.written_paths)
    assert _watch_files(out) == ["holdings.xml", "index.html", "rates.xml"]
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)

    # Changed: another query under the same name rewrites its feed, and only it.
    narrower = Watch("rates", query="央行")
    archive.use_watches([narrower, HOLDINGS])
    report = build_site(archive, out, CONFIG, record_paths=True)
    assert [p for p in report.written_paths if p.startswith("watch/")] == [
        "watch/rates.xml", "watch/index.html"]
    assert _entry_ids(_feed(out, narrower)) == _expected_ids(archive, narrower)
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)

    # Removed: its feed goes (and stays gone), the index no longer lists it.
    archive.use_watches([HOLDINGS])
    report = build_site(archive, out, CONFIG, record_paths=True)
    assert report.removed == 1
    assert _watch_files(out) == ["holdings.xml", "index.html"]
    assert "rates" not in (out / paths.WATCH_INDEX).read_text(encoding="utf-8")
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)
    archive.store(_article(600, "央行宣布降准", minute=950))
    build_site(archive, out, CONFIG)
    assert _watch_files(out) == ["holdings.xml", "index.html"]
    assert build_site(archive, out, CONFIG).mode == "unchanged"

    # The last one gone: the directory goes, and the site is as if never watched.
    archive.use_watches([])
    assert build_site(archive, out, CONFIG).mode == "incremental"
    assert not (out / "watch").exists()
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)
    archive.delete("test:600")
    build_site(archive, out, CONFIG)
    assert tree(out) == never_watched


def test_a_full_build_removes_the_feed_of_a_watch_gone(archive: SqliteArchive,
                                                      tmp_path: Path) -> None:
    _store_corpus(archive)
    archive.use_watches(WATCHES)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=1)
    archive.use_watches([CLS_ONLY])
    assert build_site(archive, out, CONFIG, full=True, jobs=2).mode == "full"
    assert _watch_files(out) == ["cls_rates.xml", "index.html"]
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)


def test_an_outlet_named_watch_keeps_its_pages(archive: SqliteArchive, tmp_path: Path) -> None:
    """Only the files of watch/ itself are the watches': an outlet's pages under it stay."""
    archive.store(make_article(1, "观察", "watch", title="央行宣布降准"))
    archive.use_watches([RATES])
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=1)
    page = out / "watch/2021/12/09/T000001.html"
    assert page.is_file() and (out / "watch/rates.xml").is_file()
    archive.use_watches([])
    build_site(archive, out, CONFIG)
    assert page.is_file() and not (out / "watch/rates.xml").exists()
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)

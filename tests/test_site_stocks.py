"""Stock pages: 相关股票 on article pages, a page and a feed per security, the index.

A real archive learns securities' names, stores articles whose text names them
(the archive tags them), and the site is built for real: the pages and feeds
are read back, and incremental builds are compared with full ones byte for byte.
"""

from __future__ import annotations

import re
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from caixun.archive import SqliteArchive
from caixun.importer import import_posts
from caixun.model import Article
from caixun.publish import paths
from caixun.publish.site import SiteConfig, SiteWriter, build_site
from caixun.securities import SecurityName
from conftest import POSTS
from site_helpers import broken_links, make_article, mtimes, tree

CONFIG = SiteConfig(title="财讯测试", url="https://news.example.com", per_page=3)
ATOM = "{http://www.w3.org/2005/Atom}"
MAOTAI, PINGAN, TENCENT = "600519.SH", "000001.SZ", "00700.HK"
NAMES = {MAOTAI: "贵州茅台", PINGAN: "平安银行", TENCENT: "腾讯控股"}


def _learn(archive: SqliteArchive, codes: tuple[str, ...] = (MAOTAI, PINGAN, TENCENT)) -> None:
    archive.learn_securities([SecurityName(code, NAMES[code], "test") for code in codes])


def _about(n: int, *codes: str, minute: int | None = None, day: int = 9,
           outlet: str = "上海证券报", slug: str = "shanghaizhengquanbao") -> Article:
    """An article whose title and text name these securities (by name)."""
    names = "、".join(NAMES[code] for code in codes)
    text = f"{names}今日发布公告。第{n}条新闻的正文。" if codes else f"第{n}条新闻的正文。"
    article = make_article(n, outlet, slug, day=day, minute=minute,
                           title=f"{names}：第{n}条消息" if codes else f"测试新闻{n}")
    return article.evolve(body_text=text, body_html=f"<p>{text}</p>")


def _titles(page: Path) -> list[str]:
    """The article titles a list page shows, in order."""
    return re.findall(r'<li><time [^>]*>[^<]*</time> <a href="[^"]*">([^<]*)</a>',
                      page.read_text(encoding="utf-8"))


def _full_tree(archive: SqliteArchive, tmp_path: Path, config: SiteConfig) -> dict[str, bytes]:
    fresh = tmp_path / f"fresh-{time.monotonic_ns()}"
    build_site(archive, fresh, config, full=True)
    result = tree(fresh)
    shutil.rmtree(fresh)
    return result


def _store_maotai_run(archive: SqliteArchive) -> list[Article]:
    """Eight articles on 贵州茅台 in an outlet of their own, stored out of time order."""
    articles = [_about(n, MAOTAI, minute=m, outlet="茅台快讯", slug="maotai")
                for n, m in zip(range(1, 9), [50, 10, 70, 30, 20, 80, 60, 40], strict=True)]
    archive.store_many(articles)
    return articles


def test_a_stock_page_lists_its_articles_newest_first_paged_like_an_outlet(
        archive: SqliteArchive, tmp_path: Path) -> None:
    _learn(archive)
    articles = _store_maotai_run(archive)
    archive.store(_about(20, PINGAN, minute=5))  # another security, another outlet
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=1)
    newest_first = [a.title for a in sorted(articles, key=lambda a: a.published_at,
                                            reverse=True)]

    front = out / paths.stock_path(MAOTAI)
    html = front.read_text(encoding="utf-8")
    assert "<title>贵州茅台（600519.SH） - 财讯测试</title>" in html
    assert "<h1>贵州茅台（600519.SH）</h1>" in html
    assert "共 8 篇" in html
    assert _titles(front) == newest_first[:3]
    # The same articles in the same pages as the outlet that holds only them.
    assert sorted(p.name for p in (out / "stock" / MAOTAI / "page").iterdir()) == \
        sorted(p.name for p in (out / "category" / "maotai" / "page").iterdir()) == \
        ["1.html", "2.html", "3.html"]
    for number in (1, 2, 3):
        stock_page = out / paths.stock_chunk_path(MAOTAI, number)
        assert _titles(stock_page) == _titles(out / paths.outlet_chunk_path("maotai", number))
    assert _titles(out / paths.stock_chunk_path(MAOTAI, 1)) == newest_first[-3:]
    # The front's "older" link goes where the outlet's does (the page before its own).
    assert 'rel="next" href="/stock/600519.SH/page/2.html"' in html
    assert 'rel="next" href="/category/maotai/page/2.html"' in (
        out / paths.outlet_path("maotai")).read_text(encoding="utf-8")
    newest_page = (out / paths.stock_chunk_path(MAOTAI, 3)).read_text(encoding="utf-8")
    assert 'rel="prev" href="/stock/600519.SH.html"' in newest_page
    assert 'rel="next" href="/stock/600519.SH/page/2.html"' in newest_page
    # Each article's outlet is named: a security's articles come from many outlets.
    assert '<a class="outlet" href="/category/maotai.html">茅台快讯</a>' in html
    assert _titles(out / paths.stock_path(PINGAN)) == ["平安银行：第20条消息"]
    assert broken_links(out) == []


def test_the_stock_feed_is_atom_with_the_newest_entries(
        archive: SqliteArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("caixun.publish.site.FEED_SIZE", 5)
    _learn(archive)
    articles = _store_maotai_run(archive)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=1)
    feed = ET.fromstring((out / paths.stock_feed_path(MAOTAI)).read_bytes())
    assert feed.tag == f"{ATOM}feed"
    assert feed.findtext(f"{ATOM}title") == "贵州茅台（600519.SH）"
    links = {link.get("rel"): link.get("href") for link in feed.findall(f"{ATOM}link")}
    assert links == {"self": "https://news.example.com/stock/600519.SH.xml",
                     "alternate": "https://news.example.com/stock/600519.SH.html"}
    entries = feed.findall(f"{ATOM}entry")
    newest = sorted(articles, key=lambda a: a.published_at, reverse=True)[:5]
    assert [e.findtext(f"{ATOM}title") for e in entries] == [a.title for a in newest]
    assert feed.findtext(f"{ATOM}updated") == entries[0].findtext(f"{ATOM}published")
    # The outlet feed holds the same articles: the entries are the same, summaries too.
    outlet = ET.fromstring((out / paths.outlet_feed_path("maotai")).read_bytes())
    assert [ET.tostring(e) for e in entries] == \
        [ET.tostring(e) for e in outlet.findall(f"{ATOM}entry")]
    for entry in entries:
        assert entry.findtext(f"{ATOM}id", "").startswith("urn:uuid:")
        assert entry.findtext(f"{ATOM}summary", "").startswith("贵州茅台今日发布公告")
        href = entry.find(f"{ATOM}link").get("href", "")  # type: ignore[union-attr]
        assert (out / href.removeprefix("https://news.example.com/")).is_file()
    page = (out / paths.stock_path(MAOTAI)).read_text(encoding="utf-8")
    assert ('<link rel="alternate" type="application/atom+xml" title="贵州茅台（600519.SH）" '
            'href="/stock/600519.SH.xml">') in page


def test_article_pages_link_their_stocks_and_others_stay_as_they_were(
        archive: SqliteArchive, tmp_path: Path) -> None:
    _learn(archive)
    archive.store(_about(1, TENCENT, MAOTAI))
    archive.store(_about(2))  # about no security
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=1)
    both = (out / "shanghaizhengquanbao/2021/12/09/T000001.html").read_text(encoding="utf-8")
    assert ('<p class="meta stocks">相关股票：<a href="/stock/00700.HK.html">腾讯控股（00700.HK）</a> '
            '<a href="/stock/600519.SH.html">贵州茅台（600519.SH）</a></p>') in both
    plain = (out / "shanghaizhengquanbao/2021/12/09/T000002.html").read_text(encoding="utf-8")
    assert "相关股票" not in plain and "/stock/" not in plain
    # An article page is the same as on a site without securities, but for that line.
    bare = tmp_path / "bare.db"
    with SqliteArchive(bare) as other:
        other.store(_about(1, TENCENT, MAOTAI))
        other.store(_about(2))
        assert other.stock_counts() == {}  # no names learned: nothing tagged
        build_site(other, tmp_path / "bare", CONFIG, jobs=1)
    without = (tmp_path / "bare/shanghaizhengquanbao/2021/12/09/T000001.html").read_text(
        encoding="utf-8")
    assert without == re.sub(r'\n<p class="meta stocks">.*?</p>', "", both)
    assert (tmp_path / "bare/shanghaizhengquanbao/2021/12/09/T000002.html").read_text(
        encoding="utf-8") == plain


def test_a_site_without_securities_has_no_stock_pages(archive: SqliteArchive,
                                                      tmp_path: Path) -> None:
    for n in range(1, 6):
        archive.store(make_article(n))
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=1)
    assert not (out / "stock").exists()
    for name in ("index.html", "sitemap.xml", "archive/index.html"):
        assert "/stock/" not in (out / name).read_text(encoding="utf-8")
    assert "股票" not in (out / "index.html").read_text(encoding="utf-8")


def test_the_index_lists_every_security_with_its_count(archive: SqliteArchive,
                                                      tmp_path: Path) -> None:
    _learn(archive)
    _store_maotai_run(archive)
    archive.store(_about(20, PINGAN, TENCENT, minute=5))
    archive.store(_about(21, PINGAN, minute=6))
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=1)
    index = (out / paths.STOCK_INDEX).read_text(encoding="utf-8")
    rows = re.findall(r'<li><a href="/stock/([^"]+)\.html">([^<]+)</a> <span class="count">'
                      r'([^<]+)</span> <span class="count">(\d+) 篇</span></li>', index)
    assert rows == [(MAOTAI, "贵州茅台", MAOTAI, "8"), (PINGAN, "平安银行", PINGAN, "2"),
                    (TENCENT, "腾讯控股", TENCENT, "1")]  # 沪市, 深市, 港股
    assert [h for h in re.findall(r"<h2>([^<]+)</h2>", index)] == ["沪市", "深市", "港股"]
    assert "共 3 只证券" in index
    home = (out / "index.html").read_text(encoding="utf-8")
    assert '<a href="/stock/">股票</a>' in home  # the home page leads there
    sitemap = (out / "sitemap.xml").read_text(encoding="utf-8")
    for page in ["stock/", "stock/600519.SH.html", "stock/600519.SH/page/1.html",
                 "stock/600519.SH/page/3.html", "stock/000001.SZ.html", "stock/00700.HK.html"]:
        assert f"<loc>https://news.example.com/{page}</loc>" in sitemap
    assert "stock/000001.SZ/page/" not in sitemap  # two articles: the front page holds them


def test_a_new_article_rewrites_only_its_stocks_pages(archive: SqliteArchive,
                                                     tmp_path: Path) -> None:
    _learn(archive)
    _store_maotai_run(archive)
    archive.store(_about(20, PINGAN, minute=5))
    out = tmp_path / "site"
    assert build_site(archive, out, CONFIG).mode == "full"
    before = mtimes(out)

    archive.store(_about(30, MAOTAI, minute=90, outlet="茅台快讯", slug="maotai"))
    report = build_site(archive, out, CONFIG, record_paths=True)
    assert report.mode == "incremental"
    written = set(report.written_paths)
    assert {"stock/600519.SH.html", "stock/600519.SH.xml", "stock/600519.SH/page/3.html",
            "stock/index.html"} <= written
    assert not {p for p in written if p.startswith("stock/000001.SZ")}
    # Old numbered pages stay as they were.
    assert "stock/600519.SH/page/1.html" not in written
    assert mtimes(out)["stock/600519.SH/page/1.html"] == before["stock/600519.SH/page/1.html"]
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)

    archive.store(_about(31, PINGAN, minute=7))
    report = build_site(archive, out, CONFIG, record_paths=True)
    assert "stock/000001.SZ.html" in report.written_paths
    assert not {p for p in report.written_paths if p.startswith("stock/600519.SH")}
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)


def test_edits_retags_and_deletes_keep_incremental_equal_to_full(archive: SqliteArchive,
                                                                 tmp_path: Path) -> None:
    """A retitled, moved, retagged and deleted article; a name learned after the build."""
    _learn(archive, (MAOTAI, PINGAN))
    _store_maotai_run(archive)
    archive.store(_about(20, PINGAN, minute=5))
    archive.store(_about(21, TENCENT, minute=6))  # 腾讯控股 is not known yet
    out = tmp_path / "site"
    build_site(archive, out, CONFIG)
    assert not (out / paths.stock_path(TENCENT)).exists()

    # A name learned: the re-tag tags the article stored before, a relink for its page.
    _learn(archive, (TENCENT,))
    while archive.retag():
        pass
    report = build_site(archive, out, CONFIG, record_paths=True)
    assert "shanghaizhengquanbao/2021/12/09/T000021.html" in report.written_paths
    assert "stock/00700.HK.html" in report.written_paths
    assert 'href="/stock/00700.HK.html"' in (
        out / "shanghaizhengquanbao/2021/12/09/T000021.html").read_text(encoding="utf-8")
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)

    # Retitled (its stock pages list the title), moved in time, and talking of another one.
    first = archive.get("test:3")
    assert first is not None
    archive.store(first.evolve(title="贵州茅台：更正后的标题"))
    moved = archive.get("test:5")
    assert moved is not None
    archive.store(moved.evolve(published_at=moved.published_at.replace(day=8)))
    other = archive.get("test:20")
    assert other is not None
    archive.store(other.evolve(title="腾讯控股：第20条消息", body_text="腾讯控股今日发布公告。",
                               body_html="<p>腾讯控股今日发布公告。</p>"))
    build_site(archive, out, CONFIG)
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)
    assert not (out / paths.stock_path(PINGAN)).exists()  # its only article is about 腾讯 now
    assert "000001.SZ" not in (out / paths.STOCK_INDEX).read_text(encoding="utf-8")

    # The last articles of a security go: its pages go, and with the last one the index.
    for n in range(1, 9):
        archive.delete(f"test:{n}")
    build_site(archive, out, CONFIG)
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)
    assert not (out / "stock" / MAOTAI).exists()
    archive.delete("test:20")
    archive.delete("test:21")
    build_site(archive, out, CONFIG)
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)
    assert not (out / "stock").exists()
    assert "/stock/" not in (out / "index.html").read_text(encoding="utf-8")
    assert broken_links(out) == []


def test_the_corpus_builds_stock_pages_incrementally_as_a_full_build(
        archive: SqliteArchive, tmp_path: Path) -> None:
    """The real posts (their quote links and codes tag them) under a base path."""
    config = SiteConfig(title="财讯测试", url="https://example.com/news/", per_page=2)
    posts = sorted(POSTS.iterdir())
    half = tmp_path / "half"
    half.mkdir()
    for post in posts[: len(posts) // 2]:
        shutil.copy(post, half / post.name)
    import_posts([half], archive)
    out = tmp_path / "site"
    build_site(archive, out, config)
    import_posts([POSTS], archive)
    assert len(archive.stock_counts()) > 10
    assert build_site(archive, out, config).mode == "incremental"
    assert tree(out) == _full_tree(archive, tmp_path, config)
    assert broken_links(out, config.base_path) == []
    index = (out / paths.STOCK_INDEX).read_text(encoding="utf-8")
    assert '<a href="/news/stock/NIO.US.html">蔚来</a>' in index


@pytest.mark.parametrize("full", [False, True], ids=["incremental", "full"])
def test_no_file_written_links_a_missing_page(archive: SqliteArchive, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              full: bool) -> None:
    """Over a built site, new stock pages, a new index and articles linking them: every
    file, when written, links only files that exist (so a killed build leaves none)."""
    for n in range(1, 4):
        archive.store(make_article(n))
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=1)
    assert not (out / "stock").exists()
    _learn(archive)
    _store_maotai_run(archive)
    archive.store(_about(20, PINGAN, TENCENT, minute=5))
    original = SiteWriter._replace

    def checked(self: SiteWriter, path: str, data: bytes) -> None:
        for link in re.findall(rb'href="/([^"]*)"', data):
            rel = link.decode()
            rel = rel + "index.html" if rel == "" or rel.endswith("/") else rel
            assert (self.root / rel).is_file() or rel == path, f"{path} links the missing {rel}"
        original(self, path, data)

    monkeypatch.setattr(SiteWriter, "_replace", checked)
    report = build_site(archive, out, CONFIG, jobs=1, full=full)
    assert report.mode == ("full" if full else "incremental")
    monkeypatch.undo()
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)

"""One item, one article: identity across lists and imports, twins merged, no shared files.

The same East Money article (one infoCode) arrives from the rolling, media and
market lists of a real HTTP server on 127.0.0.1 and as the old site's post
file; whatever the order, the archive keeps one article, the site one page
(every old URL resolving), the export one post.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import newsserver as ns
from conftest import POSTS
from site_helpers import broken_links
from caixun.archive import SqliteArchive, StoreResult, open_archive
from caixun.archive.migrations import MIGRATIONS
from caixun.cli import main
from caixun.errors import PublishError
from caixun.fetch import Fetcher, FetchSettings, fetch_round
from caixun.identity import eastmoney_identity, identity_from_url
from caixun.importer import import_posts
from caixun.model import Article
from caixun.normalize import BEIJING
from caixun.publish.site import SiteConfig, build_site
from caixun.sources.base import Source, SourceConfig, load_source

CONFIG = SiteConfig(title="财讯测试", url="https://news.example.com/news", per_page=50)
POST = POSTS / "2021-12-08-202112082206965422.md"
ID = "202112082206965422"
INFO_CODE = "NW" + ID


# -- the portal's ids --------------------------------------------------------------

@given(st.dates(min_value=datetime(1990, 1, 1).date(), max_value=datetime(2099, 12, 31).date()),
       st.integers(0, 10**10 - 1), st.sampled_from(["NW", "AN"]))
def test_every_form_of_an_east_money_id_names_one_identity(day: Any, sequence: int,
                                                           prefix: str) -> None:
    digits = f"{day:%Y%m%d}{sequence:010d}"
    code = prefix + digits
    expected = f"eastmoney:{code}"
    assert eastmoney_identity(code) == expected
    if prefix == "NW":  # the lists' bare ids are news items
        assert eastmoney_identity(digits) == expected
        assert identity_from_url(f"https://finance.eastmoney.com/a/{digits}.html") == expected
        assert identity_from_url(f"http://finance.eastmoney.com/news/1344,{digits}.html") \
            == expected
    assert identity_from_url(
        f"http://finews.zning.xyz/html_News/NewsShare.html?infoCode={code}") == expected


@pytest.mark.parametrize("value", ["", "init", "1234", "202113452206965422", "NW20211208",
                                   "nw202112082206965422", "2021120822069654221"])
def test_other_ids_have_no_east_money_identity(value: str) -> None:
    assert eastmoney_identity(value) == ""
    assert identity_from_url(f"https://finance.eastmoney.com/a/{value}.html") == ""


# -- one infoCode in three lists and a post ----------------------------------------

def _corpus_item() -> dict[str, Any]:
    """The rolling record of POST, and the media and market entries of the same code."""
    [record] = [r for r in ns.rolling_records()["records"] if r["id"] == ID]
    return record


def _serve(server: ns.NewsServer) -> None:
    record = _corpus_item()
    text = ns.news_texts(include_media=False)[INFO_CODE]["content"]
    node = {"infocode": INFO_CODE, "from": "上海证券报", "title": record["title"],
            "showtime": record["showtime"]}
    market = {"infoCode": INFO_CODE, "medianame": "东方财富网", "title": record["title"],
              "datetime": record["showtime"]}
    server.route("/web/webapi", ns.by_query("type", {"102": {"records": [record]},
                                                   "45": {"nodeList": [node]}}))
    server.route("/market/webapi", {"record": [market]})
    # Every family reads the full text by infoCode; rolling from "content", the others "text".
    server.route("/NewsData/GetNewsText.do",
                 ns.by_query("id", {INFO_CODE: {"content": text, "text": text}}))


def _sources(server: ns.NewsServer, names: tuple[str, ...]) -> list[Source]:
    text_url = server.url("/NewsData/GetNewsText.do") + "?id={code}"
    configs = {
        "em-rolling": ("eastmoney-rolling", {"list_url": server.url("/web/webapi")}),
        "em-media": ("eastmoney-media", {"list_url": server.url("/web/webapi")}),
        "em-market": ("eastmoney-market", {"list_url": server.url("/market/webapi"),
                                           "market_types": [37]}),
    }
    return [load_source(SourceConfig(name, configs[name][0],
                                     options={**configs[name][1], "text_url": text_url}))
            for name in names]


def _fetch(archive: SqliteArchive, server: ns.NewsServer, *names: str) -> list[str]:
    async def poll() -> list[str]:
        fetcher = Fetcher(FetchSettings(retries=0, min_gap=0.0))
        try:
            reports = await fetch_round(_sources(server, names), fetcher, archive,
                                        due_only=False)
        finally:
            await fetcher.aclose()
        for report in reports:
            assert report.error is None and not report.item_errors, report.summary()
        return [r.summary() for r in reports]
    return asyncio.run(poll())


def _import(archive: SqliteArchive, tmp_path: Path) -> Path:
    posts = tmp_path / "posts"
    posts.mkdir(exist_ok=True)
    shutil.copy(POST, posts / POST.name)
    report = import_posts([posts], archive)
    assert report.counts["skipped"] == 0
    return posts


def _article_pages(out: Path) -> list[str]:
    """Article pages (not list, day or search pages) and the redirects left for aliases."""
    return sorted(str(p.relative_to(out)) for p in out.glob("*/????/??/??/*.html"))


def _export(archive_path: Path, out: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["--archive", str(archive_path), "export", "jekyll",
                                     str(out), *args])


def test_a_post_then_three_lists_are_one_article_page_and_post(tmp_path: Path) -> None:
    path = tmp_path / "caixun.db"
    with open_archive(path) as archive, ns.NewsServer() as server:
        _serve(server)
        _import(archive, tmp_path)
        summaries = _fetch(archive, server, "em-rolling", "em-media", "em-market")
        assert all("0 new" in s and "1 merged into earlier copies" in s for s in summaries), \
            summaries
        assert archive.count() == 1
        assert archive.aliases("jekyll:" + ID) == ["em-market:" + INFO_CODE,
                                                   "em-media:" + INFO_CODE, "em-rolling:" + ID]
        # The next round: the lists are unchanged, nothing is stored or merged again.
        again = _fetch(archive, server, "em-rolling", "em-media", "em-market")
        assert all("0 merged" not in s and "merged" not in s for s in again), again
        out = tmp_path / "site"
        build_site(archive, out, CONFIG, jobs=1)
    assert _article_pages(out) == [f"emnews/2021/12/08/{ID}.html"]
    assert broken_links(out, "/news") == []
    result = _export(path, tmp_path / "posts-out")
    assert result.exit_code == 0, result.output
    [post] = (tmp_path / "posts-out").iterdir()
    assert post.name == POST.name and post.read_bytes() == POST.read_bytes()


def test_three_lists_then_the_post_keep_the_old_url_as_a_redirect(tmp_path: Path) -> None:
    path = tmp_path / "caixun.db"
    with open_archive(path) as archive, ns.NewsServer() as server:
        _serve(server)
        assert "1 new" in _fetch(archive, server, "em-media")[0]
        _fetch(archive, server, "em-rolling", "em-market")
        out = tmp_path / "site"
        build_site(archive, out, CONFIG, jobs=1)
        _import(archive, tmp_path)
        assert archive.count() == 1
        [article] = archive.iter_articles()
        assert article.uid == "em-media:" + INFO_CODE
        assert set(archive.aliases(article.uid)) == {"em-rolling:" + ID, "em-market:" + INFO_CODE,
                                                     "jekyll:" + ID}
        report = build_site(archive, out, CONFIG, jobs=1, record_paths=True)
        assert report.mode == "incremental"
        # A full build writes the same redirect: nothing depends on the incremental path.
        build_site(archive, tmp_path / "full", CONFIG, jobs=1, full=True)
    page = f"shanghaizhengquanbao/2021/12/08/{INFO_CODE}.html"
    old = f"emnews/2021/12/08/{ID}.html"  # the old site's URL of the post
    assert old in report.written_paths
    assert _article_pages(out) == [old, page]
    redirect = (out / old).read_text(encoding="utf-8")
    assert f'url=/news/{page}"' in redirect and f'href="/news/{page}"' in redirect
    assert broken_links(out, "/news") == []
    assert (tmp_path / "full" / old).read_bytes() == (out / old).read_bytes()
    result = _export(path, tmp_path / "posts-out")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "posts-out").iterdir()] == [f"2021-12-08-{INFO_CODE}.md"]


# -- archives with twins, as the code before identities made them ---------------------

def _old_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule before identities: an article with a post style was never merged."""
    original = SqliteArchive._merge

    def merge(self: SqliteArchive, article: Article, lookup: Any) -> bool:
        return False if article.post_style is not None else original(self, article, lookup)
    monkeypatch.setattr(SqliteArchive, "_merge", merge)


def test_opening_an_archive_with_twins_merges_them_keeping_urls_and_versions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, out = tmp_path / "caixun.db", tmp_path / "site"
    with monkeypatch.context() as patch:
        _old_merge(patch)
        # Nor did a build check for files two articles share (the rolling twin and
        # the post had one page: the later written won).
        patch.setattr("caixun.publish.site._refuse_clashes", lambda *args: None)
        patch.setattr("caixun.publish.site.open_archive",  # the build's own connections
                      lambda p, **kw: SqliteArchive(p, migrations=MIGRATIONS[:8], **kw))
        with SqliteArchive(path, migrations=MIGRATIONS[:8]) as old, ns.NewsServer() as server:
            _serve(server)
            _import(old, tmp_path)
            _fetch(old, server, "em-rolling", "em-media", "em-market")
            # The market list later gave the item another title: a version of its own.
            market = old.get("em-market:" + INFO_CODE)
            assert market is not None
            old.store(market.evolve(title=market.title + "（更新）"))
            assert old.count() == 4
            titles = {a.title for a in old.iter_articles()}
            build_site(old, out, CONFIG, jobs=1)
    before = _article_pages(out)
    assert len(before) == 3
    with open_archive(path) as archive:
        assert archive.count() == 1
        [article] = archive.iter_articles()
        assert article.uid == "jekyll:" + ID  # the imported post's file name is the user's
        assert set(archive.aliases(article.uid)) == {
            "em-rolling:" + ID, "em-media:" + INFO_CODE, "em-market:" + INFO_CODE}
        kept = {v.title for v in archive.versions(article.uid)} | {article.title}
        assert titles <= kept  # every twin's title, the updated one too
        assert market.title in kept  # the twin's earlier title, from its own versions
        assert [h.ref.uid for h in archive.search("诈骗")] == [article.uid]
        report = build_site(archive, out, CONFIG, jobs=1)
        assert report.mode == "incremental"
        seq = archive.last_change_seq()
    # Every page there was is still there: the article's, or one leading to it.
    assert _article_pages(out) == before
    target = f'href="/news/emnews/2021/12/08/{ID}.html"'
    for page in before:
        if page != f"emnews/2021/12/08/{ID}.html":
            assert target in (out / page).read_text(encoding="utf-8"), page
    assert broken_links(out, "/news") == []
    # Opening again changes nothing more.
    with open_archive(path) as archive:
        assert archive.count() == 1 and archive.last_change_seq() == seq
    result = _export(path, tmp_path / "posts-out")
    assert result.exit_code == 0, result.output
    assert [p.read_bytes() for p in (tmp_path / "posts-out").iterdir()] == [POST.read_bytes()]


# -- no two articles in one file -------------------------------------------------------

def _flash(uid: str, outlet: str, slug: str, minutes: int = 0) -> Article:
    when = datetime(2025, 10, 3, 9, 0, tzinfo=BEIJING) + timedelta(minutes=minutes)
    return Article(uid=uid, outlet=outlet, outlet_slug=slug, title=f"{outlet}快讯{minutes}",
                   published_at=when, file_id=uid.split(":", 1)[1],
                   body_html=f"<p>{outlet}的第{minutes}条快讯。</p>",
                   body_text=f"{outlet}的第{minutes}条快讯。", fetched_at=when)


def test_two_sources_with_one_native_id_get_a_file_each(archive: SqliteArchive,
                                                        tmp_path: Path) -> None:
    """cls:3152710 and wallstreetcn:3152710 on one day: one post file name otherwise."""
    assert archive.store(_flash("cls:3152710", "财联社", "cailianshe")) is StoreResult.NEW
    assert archive.store(_flash("wallstreetcn:3152710", "华尔街见闻", "huaerjiejianwen", 5)) \
        is StoreResult.NEW
    second = archive.get("wallstreetcn:3152710")
    assert second is not None and second.file_id == "3152710-wallstreetcn"
    assert archive.output_clashes() == []
    # Stored again (the next poll), it keeps the file id it was given.
    assert archive.store(_flash("wallstreetcn:3152710", "华尔街见闻", "huaerjiejianwen", 5)) \
        is StoreResult.UNCHANGED


def test_a_clash_fails_export_and_build_before_writing_anything(tmp_path: Path) -> None:
    path = tmp_path / "caixun.db"
    with open_archive(path) as archive:
        archive.store(_flash("cls:1", "财联社", "cailianshe"))
        archive.store(_flash("sina:2", "新浪财经", "xinlangcaijing", 5))
        out = tmp_path / "site"
        build_site(archive, out, CONFIG, jobs=1)
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        archive.store(_flash("cls:3", "财联社", "cailianshe", 10))
    db = sqlite3.connect(path)  # another tool, or an archive an older caixun wrote
    db.execute("UPDATE articles SET file_id = '1' WHERE uid IN ('sina:2', 'cls:3')")
    db.commit()
    db.close()
    result = _export(path, tmp_path / "posts")
    assert result.exit_code == 1
    assert "2025-10-03-1.md" in result.output and "cls:1" in result.output \
        and "sina:2" in result.output
    assert not (tmp_path / "posts").exists()
    with open_archive(path) as archive:
        with pytest.raises(PublishError) as failure:
            build_site(archive, out, CONFIG, jobs=1)
    assert "cls:1" in str(failure.value) and "cls:3" in str(failure.value)
    assert "cailianshe/2025/10/03/1.html" in str(failure.value)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_opening_separates_fetched_articles_sharing_a_file(tmp_path: Path) -> None:
    """An archive made before file ids were kept apart is mended once, on opening."""
    path = tmp_path / "caixun.db"
    with SqliteArchive(path, migrations=MIGRATIONS[:8]) as old:
        old.store(_flash("cls:1", "财联社", "cailianshe"))
        old.store(_flash("sina:1", "新浪财经", "xinlangcaijing", 5))
    with open_archive(path) as archive:
        assert archive.output_clashes() == []
        moved = archive.get("sina:1")
        assert moved is not None and moved.file_id == "1-sina"
        assert archive.get("cls:1").file_id == "1"  # type: ignore[union-attr]
    result = _export(path, tmp_path / "posts")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "posts").iterdir()) == [
        "2025-10-03-1-sina.md", "2025-10-03-1.md"]


def test_two_sources_of_one_portal_store_a_shared_item_once(archive: SqliteArchive) -> None:
    """Two CLS categories list one telegraph: the portal's id makes it one article."""
    first = _flash("cls:7", "财联社", "cailianshe").evolve(identity="cls:7")
    edited = first.evolve(uid="cls-red:7", title=first.title + "（更新）")
    assert archive.store(first) is StoreResult.NEW
    assert archive.store(edited) is StoreResult.MERGED
    assert archive.count() == 1 and archive.aliases("cls:7") == ["cls-red:7"]
    assert archive.store(edited) is StoreResult.MERGED  # known alias: no work

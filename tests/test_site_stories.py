"""Stories on the site: 也见于 on article pages, each story once on home and day pages."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from caixun.archive import ArticleRef, SqliteArchive
from caixun.importer import import_posts
from caixun.publish.site import SiteConfig, build_site, nearest_in_time
from conftest import POSTS
from site_helpers import broken_links, tree

CONFIG = SiteConfig(title="财讯测试", url="https://news.example.com/news", per_page=50)
# Two reports of one story in the corpus (corpus/README.md lists them).
PAIR = ("2021-12-08-202112082206885192.md", "2021-12-08-202112082206891293.md")
ALONE = "2021-12-08-202112082206796814.md"


def _import(archive: SqliteArchive, names: list[str], tmp_path: Path) -> None:
    posts = tmp_path / "posts"
    posts.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(POSTS / name, posts / name)
    import_posts([posts], archive)


def _page(out: Path, uid: str, archive: SqliteArchive) -> HTMLParser:
    [ref] = archive.refs_by_uid([uid])
    day = Path(out).glob(f"{ref.outlet_slug}/*/*/*/{ref.file_id}.html")
    return HTMLParser(next(day).read_text(encoding="utf-8"))


def _also(page: HTMLParser) -> list[tuple[str, str]]:
    return [(a.text(), a.attributes["href"] or "") for a in page.css("aside.also li > a:nth-of-type(2)")]


def test_article_pages_link_the_other_reports(archive: SqliteArchive, tmp_path: Path) -> None:
    _import(archive, [*PAIR, ALONE], tmp_path)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=1)
    first, second = (archive.get("jekyll:" + name[11:-3]) for name in PAIR)
    assert first is not None and second is not None
    also = _also(_page(out, first.uid, archive))
    assert [title for title, _ in also] == [second.title]
    assert also[0][1].startswith("/news/") and also[0][1].endswith("202112082206891293.html")
    assert [t for t, _ in _also(_page(out, second.uid, archive))] == [first.title]
    assert _page(out, "jekyll:" + ALONE[11:-3], archive).css_first("aside.also") is None
    assert broken_links(out, "/news") == []


def test_home_and_day_pages_show_a_story_once_unless_turned_off(archive: SqliteArchive,
                                                                  tmp_path: Path) -> None:
    _import(archive, [*PAIR, ALONE], tmp_path)
    out, flat = tmp_path / "site", tmp_path / "flat"
    build_site(archive, out, CONFIG, jobs=1)
    build_site(archive, flat, replace(CONFIG, stories=False), jobs=1)
    for page in ("index.html", "2021/12/08/index.html"):
        grouped = HTMLParser((out / page).read_text(encoding="utf-8"))
        items = grouped.css("section.latest ol.list > li, main > ol.list > li")
        assert len(items) == 2, page
        badges = [li.css_first("span.also") for li in items]
        assert sum(b is not None for b in badges) == 1
        flat_items = HTMLParser((flat / page).read_text(encoding="utf-8")).css(
            "section.latest ol.list > li, main > ol.list > li")
        assert len(flat_items) == 3 and not any(li.css_first("span.also") for li in flat_items)
    day = (out / "2021/12/08/index.html").read_text(encoding="utf-8")
    assert "共 3 篇" in day


def test_an_exact_copy_names_the_original_as_canonical(archive: SqliteArchive,
                                                       tmp_path: Path) -> None:
    _import(archive, [ALONE], tmp_path)
    original = archive.get("jekyll:" + ALONE[11:-3])
    assert original is not None
    # Another item (an identity of its own) with the same link and text: an exact copy.
    archive.store(original.evolve(uid="em-rolling:1", file_id="copy1", identity="copy:1",
                                  published_at=original.published_at + timedelta(minutes=3)))
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=1)
    canonical = _page(out, "em-rolling:1", archive).css_first("link[rel=canonical]")
    assert canonical is not None
    href = canonical.attributes["href"] or ""
    assert href.endswith(f"/{original.file_id}.html") and href.startswith("https://news.example.com/news/")
    own = _page(out, original.uid, archive).css_first("link[rel=canonical]")
    assert own is not None and (own.attributes["href"] or "").endswith(f"/{original.file_id}.html")


def test_a_new_report_relinks_the_story_incrementally(archive: SqliteArchive,
                                                      tmp_path: Path) -> None:
    _import(archive, [PAIR[0], ALONE], tmp_path)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=1)
    first = "jekyll:" + PAIR[0][11:-3]
    assert _page(out, first, archive).css_first("aside.also") is None
    _import(archive, [PAIR[1]], tmp_path)
    report = build_site(archive, out, CONFIG, jobs=1, record_paths=True)
    assert report.mode == "incremental"
    assert any(re.search(r"202112082206885192\.html$", p) for p in report.written_paths)
    assert len(_also(_page(out, first, archive))) == 1
    full = tmp_path / "full"
    build_site(archive, full, CONFIG, jobs=1)
    assert tree(out) == tree(full)


def test_a_big_story_lists_the_nearest_reports(archive: SqliteArchive, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("caixun.publish.site.ALSO_SHOWN", 2)
    _import(archive, [ALONE], tmp_path)
    original = archive.get("jekyll:" + ALONE[11:-3])
    assert original is not None
    for n in range(1, 5):  # copies 10, 20, 30, 40 minutes later, each in its own outlet
        archive.store(original.evolve(uid=f"x:{n}", file_id=f"copy{n}", outlet=f"报{n}",
                                      outlet_slug=f"bao{n}", identity=f"x:{n}",
                                      published_at=original.published_at
                                      + timedelta(minutes=10 * n)))
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=1)
    page = _page(out, "x:2", archive)
    assert [a.attributes["href"].rsplit("/", 1)[1] for a in
            page.css("aside.also li > a:nth-of-type(2)")] == ["copy1.html", "copy3.html"]
    more = page.css_first("aside.also p.more")
    assert more is not None and more.text() == "另有 2 篇报道"


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(1, 60)), max_size=40,
                unique_by=lambda t: t[1]),
       st.integers(0, 6), st.integers(1, 60), st.integers(0, 12))
def test_the_nearest_reports_are_those_of_a_sort_of_all(
        members: list[tuple[int, int]], ref_ts: int, ref_id: int, count: int) -> None:
    """Only the reports around an article's place are compared: they are the ones a sort
    of all of them by distance in time, then id, puts first (many of one second included)."""
    def ref(ts: int, article_id: int) -> ArticleRef:
        return ArticleRef(article_id, f"u{article_id}", "t", "o", "o", 1_700_000_000 + ts, "f")

    me = ref(ref_ts, ref_id)
    others = sorted((ref(ts, i) for ts, i in members if i != ref_id),
                    key=lambda r: (r.published_ts, r.id))
    by_distance = sorted(others, key=lambda r: (abs(r.published_ts - me.published_ts), r.id))
    expected = sorted(by_distance[:count], key=lambda r: (r.published_ts, r.id))
    assert nearest_in_time(others, me, count) == expected

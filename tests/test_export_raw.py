"""Posts come back as they went in: `caixun export jekyll` writes each body as it was read.

The test posts are of the old site's 2022 kinds, built at run time from East
Money's real HTML (the feed items of ../shared/corpus/rss-days/ whose summary
carries its markup: stock-link spans, K-line images between
``<!-- EM_StockImg_Start -->`` comments, ``<p class="em_media">`` credits,
``style`` attributes, ``<br />``, ``&amp;``): media-column posts (HTML body,
link line, one-line footer, as ``2022-01-11-NW202201112243109259.md``) and
rolling posts ("> digest", then the raw HTML, as ``-202205262391921712.md``),
some with paragraphs separated by CRLF. Import, export, compare the bytes;
``--sanitize`` gives the allow-listed bodies; the site and its feeds never
show the raw markup.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from conftest import POSTS, SHARED
from caixun.archive import open_archive
from caixun.cli import main
from caixun.model import Article
from caixun.normalize import BEIJING, sanitize_html
from caixun.publish.jekyll import post_filename, render_post, yaml_double_quoted
from caixun.slugs import is_safe_slug, legacy_slug
from caixun.sources.base import SourceConfig
from caixun.sources.eastmoney import MarketNews, MediaColumns, RollingNews
from caixun.sources.jekyll import parse_post

RSS_DAYS = SHARED / "corpus" / "rss-days"
MAY_2022_POST = POSTS / "-202205262391921712.md"
ZNING_SHARE = "http://finews.zning.xyz/html_News/NewsShare.html?infoCode="
SITE = "//finews.withounder.com"
ROLLING_FOOTER = f"[返回东财滚动新闻]({SITE}/emnews/)｜[返回首页]({SITE}/)"
FETCHED = datetime(2026, 9, 1, tzinfo=timezone.utc)

# What East Money's HTML carries and the allow-list removes.
RAW_MARKERS = ("EM_StockImg", 'id="stock_', 'id="quote_', "style=", "data-code", "<!--",
               "<br />")
# The same, as they would look in a page or (escaped) in a feed.
RAW_IN_OUTPUT = re.compile(
    r"EM_StockImg|id=(?:\"|&quot;|&#34;)(?:stock|quote)_|style=(?:\"|&quot;|&#34;)"
    r"(?:display|text-align|border)|data-code|\r")


@dataclass(frozen=True)
class EmItem:
    """A real feed item whose summary is East Money's article HTML."""

    code: str  # the 18 digits of its link
    title: str
    link: str
    when: datetime  # Beijing time
    html: str
    outlet: str  # from its "（文章来源：…）" credit

    @property
    def date(self) -> str:
        return self.when.strftime("%Y-%m-%d %H:%M:%S +0800")

    @property
    def day(self) -> str:
        return self.when.strftime("%Y-%m-%d")


_CODE = re.compile(r"[,/](\d{18})\.html$")
_CREDIT = re.compile(r'<p class="em_media">(.*?)(?:</p>|$)', re.S)
_MARKUP = ('id="stock_', "EM_StockImg_Start", 'class="em_media"')


@lru_cache(maxsize=None)
def em_items() -> tuple[EmItem, ...]:
    """Distinct items (one per East Money code) with East Money markup, in file order."""
    found: dict[str, EmItem] = {}
    for path in sorted(RSS_DAYS.glob("*.json")):
        for item in json.loads(path.read_text(encoding="utf-8"))["articles"]:
            summary, link = item.get("summary") or "", item.get("link") or ""
            code = _CODE.search(link)
            if code is None or not item.get("title") or not any(m in summary for m in _MARKUP):
                continue
            when = datetime(*item["published_parsed"][:6], tzinfo=timezone.utc)
            found.setdefault(code.group(1), EmItem(
                code.group(1), item["title"].strip(), link, when.astimezone(BEIJING), summary,
                _outlet(summary)))
    return tuple(found.values())


def _outlet(html: str) -> str:
    credit = _CREDIT.search(html)
    text = re.sub(r"<[^>]+>", "", credit.group(1)) if credit else ""
    match = re.search(r"文章来源：(.+?)）", text)
    outlet = match.group(1).strip() if match else ""
    return outlet if outlet and is_safe_slug(legacy_slug(outlet)) else "东方财富网"


def paragraphs(html: str, separator: str) -> str:
    """The HTML with ``separator`` between its paragraphs, as some old posts have."""
    return html.replace("</p><p", f"</p>{separator}<p")


def media_post(item: EmItem, body: str, file_id: str | None = None) -> tuple[str, bytes]:
    """A media-column post of the old site (as 2022-01-11-NW202201112243109259.md)."""
    file_id = file_id or f"NW{item.code}"
    slug = legacy_slug(item.outlet)
    text = (f"---\nlayout: post\ntitle: {yaml_double_quoted(item.title)}\n"
            f"date: {item.date}\ncategories: {slug}\ntags: {item.outlet}新闻\n---\n"
            f"{body}\n\n<{ZNING_SHARE}{file_id}>\n\n"
            f"[返回{item.outlet}新闻]({SITE}/category/{slug}.html)｜[返回首页]({SITE}/)")
    return f"{item.day}-{file_id}.md", text.encode("utf-8")


def digest_of(html: str) -> str:
    text = " ".join(re.sub(r"<[^>]+>|&\w+;", " ", html.split("<!-- EM_StockImg_End -->")[-1])
                    .replace("\u3000", " ").split())
    return text.split("。")[0][:80] + "。"


def rolling_post(item: EmItem, body: str) -> tuple[str, bytes]:
    """A rolling post of 2022: "> digest", raw HTML, link, one-line footer."""
    text = (f"---\nlayout: post\ntitle: {yaml_double_quoted(item.title)}\n"
            f"date: {item.date}\ncategories: emnews\ntags: 东财滚动新闻\n---\n"
            f"> {digest_of(body)}\n\n{body}\n\n<{item.link}>\n\n{ROLLING_FOOTER}")
    return f"{item.day}-{item.code}.md", text.encode("utf-8")


def may_2022_html() -> str:
    """The raw HTML of the corpus's May 2022 rolling post (it has data-* attributes)."""
    body = text_of(MAY_2022_POST).split("---\n", 2)[2]
    return body.split("\n\n", 1)[1].rsplit("\n\n<>", 1)[0]


def _pick(items: tuple[EmItem, ...], count: int, want: str = "") -> list[EmItem]:
    """``count`` items, distinct outlets first, that contain ``want``."""
    fitting = [i for i in items if want in i.html]
    by_outlet: dict[str, EmItem] = {}
    for item in fitting:
        by_outlet.setdefault(item.outlet, item)
    chosen = list(by_outlet.values())[:count]
    chosen += [i for i in fitting if i not in chosen][:count - len(chosen)]
    return chosen


@lru_cache(maxsize=None)
def sample_posts() -> dict[str, bytes]:
    """File name → bytes: 10 media-column posts and 5 rolling posts, 7 of them with CRLF."""
    items = em_items()
    media = _pick(items, 9, 'class="em_media"')
    rest = [i for i in items if i not in media]
    rolling = _pick(tuple(rest), 2, "EM_StockImg_Start")
    rolling += _pick(tuple(i for i in rest if i not in rolling), 3, "&amp;")
    assert len(media) == 9 and len(rolling) == 5
    posts: dict[str, bytes] = {}
    for n, item in enumerate(media):  # as the real media post: "\n  "; some with CRLF
        name, data = media_post(item, paragraphs(item.html, "\r\n" if n % 2 else "\n  "))
        posts[name] = data
    for n, item in enumerate(rolling):  # as the May 2022 post: adjacent; some with CRLF
        name, data = rolling_post(item, paragraphs(item.html, "\r\n" if n >= 3 else ""))
        posts[name] = data
    # The May 2022 post's HTML (data-* attributes, `<span web="1">`) in a media post.
    name, data = media_post(media[0], paragraphs(may_2022_html(), "\r\n"),
                            "NW202205262391921712")
    posts[name] = data
    return posts


def text_of(path: Path) -> str:
    """The file's text, CRs included (``read_text`` would turn CRLF into LF)."""
    return path.read_bytes().decode("utf-8")


def run(*args: Any) -> Any:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An archive with the test posts imported; returns its path."""
    monkeypatch.chdir(tmp_path)
    posts = tmp_path / "posts"
    posts.mkdir()
    for name, data in sample_posts().items():
        (posts / name).write_bytes(data)
    db = tmp_path / "caixun.db"
    result = run("--archive", db, "import", posts)
    count = len(sample_posts())
    assert f"imported {count} files: {count} new" in result.stderr
    assert "0 skipped" in result.stderr and "CRLF" not in result.stderr  # no line-ending repair
    return db


# -- the material ---------------------------------------------------------------------------

def test_the_test_posts_carry_east_moneys_markup() -> None:
    posts = {name: data.decode("utf-8") for name, data in sample_posts().items()}
    assert len(posts) == 15
    assert len({p.split("\ncategories: ")[1].split("\n")[0] for p in posts.values()}) >= 7
    everything = "".join(posts.values())
    for marker in (*RAW_MARKERS, 'class="em_media"', "&amp;", "data-code", "\r\n"):
        assert marker in everything, marker
    assert sum("\r\n" in p for p in posts.values()) == 7
    assert sum(p.count("\n> ") == 1 for p in posts.values()) == 5  # rolling posts


# -- export: bytes as read, or sanitized ------------------------------------------------------

def test_imported_posts_export_byte_for_byte(imported: Path, tmp_path: Path) -> None:
    run("--archive", imported, "export", "jekyll", tmp_path / "out")
    exported = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert exported.keys() == sample_posts().keys()
    different = [name for name, data in sample_posts().items() if exported[name] != data]
    assert different == []


def test_sanitize_writes_the_allow_listed_bodies(imported: Path, tmp_path: Path) -> None:
    run("--archive", imported, "export", "jekyll", "--sanitize", tmp_path / "clean")
    with open_archive(imported, read_only=True) as archive:
        articles = {post_filename(a): a for a in archive.iter_articles()}
    for name, data in sample_posts().items():
        original = data.decode("utf-8")
        clean = text_of(tmp_path / "clean" / name)
        for marker in RAW_MARKERS:
            assert marker not in clean.split("\n---\n", 1)[1], (name, marker)
        assert "\r" not in clean
        article = articles[name]
        assert article.body_html in clean  # the body the site shows
        # Only the body changed: front matter, digest, link and footer are as they were.
        head = original[:original.index("\n---\n") + 5]
        tail = original[original.rindex("\n\n<"):]
        assert clean.startswith(head) and clean.endswith(tail)
        if "\n> " in original:
            assert clean.startswith(head + "> " + article.digest + "\n\n")


def test_the_site_and_feeds_never_show_the_raw_markup(imported: Path, tmp_path: Path) -> None:
    run("--archive", imported, "build", "--out", tmp_path / "site")
    files = [p for p in (tmp_path / "site").rglob("*") if p.is_file()
             and p.suffix in (".html", ".xml", ".json", ".txt")]
    pages = 0
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        found = RAW_IN_OUTPUT.search(text)
        assert found is None, f"{path}: {found.group(0)!r}"
        pages += "巨化股份" in text or "HFO-1234yf" in text
    assert pages >= 1  # the May 2022 HTML was rendered: its text, not its markup
    feeds = [p for p in files if p.suffix == ".xml" and re.search("<entry|<item", text_of(p))]
    assert feeds, "no feed was built"
    with open_archive(imported, read_only=True) as archive:
        article = next(a for a in archive.iter_articles() if a.body_raw)
    shown = next(p for p in files if p.suffix == ".html" and p.stem == article.file_id)
    assert article.title in text_of(shown)


# -- properties: any body, \r\n and entities included ------------------------------------------

SEPARATORS = ["\r\n", "\n", "\r", "\n  ", "\r\n\r\n", "  \r\n", "\u3000\u3000"]
ENTITIES = ["&amp;", "&nbsp;", "&lt;", "&gt;", "&#39;", "&quot;", "&", "&amp", "<", "1<2",
            "<br />", "<br/>", "<br>", "\\", "\\\\", "&lt;b&gt;", "*", "_", "[x](y)", "<>"]


@lru_cache(maxsize=None)
def html_pieces() -> list[str]:
    """Tags, comments and text runs of the real East Money HTML."""
    pieces: set[str] = set()
    for item in em_items()[:40]:
        pieces.update(p for p in re.split(r"(<!--.*?-->|<[^>]*>)", item.html) if p)
    return sorted(p for p in pieces if len(p) <= 200)


def bodies(with_markup: bool = True) -> st.SearchStrategy[str]:
    parts: st.SearchStrategy[str] = st.one_of(st.sampled_from(SEPARATORS),
                                              st.sampled_from(ENTITIES),
                                              st.text(st.characters(codec="utf-8",
                                                                    exclude_categories=("Cs",)),
                                                      max_size=6))
    if with_markup:
        parts = st.one_of(parts, st.deferred(lambda: st.sampled_from(html_pieces())))
    return st.lists(parts, min_size=1, max_size=25).map("".join).filter(
        lambda b: b.strip() != "" and "\x00" not in b)


def _round_trip(name: str, data: bytes) -> str:
    parsed = parse_post(data.decode("utf-8"), name)
    return render_post(parsed.article, SITE)


def _item(title: str = "工信部科技司：以更加精准务实举措抓好产业科技创新工作") -> EmItem:
    return EmItem("202201112243109259", title,
                  "http://finance.eastmoney.com/news/1354,202201112243109259.html",
                  datetime(2022, 1, 11, 9, 53, 30, tzinfo=BEIJING), "", "人民邮电报")


@settings(max_examples=300)
@given(bodies())
@example("<p>a</p>\r\n  <p>b &amp; c<br />d</p>")
@example("<p>a</p>\r\n\r\n<p>b</p>\r\n")
@example("纯文本\r\n第二段 &amp; &lt;1%\r\n")
@example("\\n a backslash first")
@example("<p>x</p>\n<http://example.com/x>\r\n")
def test_any_media_body_comes_back_byte_for_byte(body: str) -> None:
    assume(not body.lstrip("\n").startswith(">"))  # that would be a "> digest" quote
    name, data = media_post(_item(), body)
    assert _round_trip(name, data).encode("utf-8") == data


@settings(max_examples=200)
@given(bodies(), st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl",
                                                                           "Zp")),
                         min_size=1, max_size=30))
@example("<p>a</p>\r\n<p>b</p>", "摘要 &amp; 1<2")
def test_any_rolling_body_comes_back_byte_for_byte(body: str, digest: str) -> None:
    item = _item()
    text = (f"---\nlayout: post\ntitle: {yaml_double_quoted(item.title)}\n"
            f"date: {item.date}\ncategories: emnews\ntags: 东财滚动新闻\n---\n"
            f"> {digest}\n\n{body}\n\n<{item.link}>\n\n{ROLLING_FOOTER}")
    assert _round_trip(f"{item.day}-{item.code}.md", text.encode("utf-8")) == text


@settings(max_examples=200)
@given(bodies().map(lambda b: b.replace("\r\n", "\n").replace("\r", "\n")))
@example("<p>a</p>\n  <p>b</p>")
def test_a_file_with_crlf_line_endings_is_read_as_its_lf_original(body: str) -> None:
    """The repair is kept: a whole file saved with CRLF reads as the LF file it was."""
    assume(not body.lstrip("\n").startswith(">"))
    name, data = media_post(_item(), body)
    lf = parse_post(data.decode("utf-8"), name)
    crlf = parse_post(data.decode("utf-8").replace("\n", "\r\n"), name)
    assert crlf.repairs == ("CRLF line endings converted to LF", *lf.repairs)
    assert crlf.article == lf.article
    assert render_post(crlf.article, SITE).encode("utf-8") == data


def test_crs_in_the_body_of_an_lf_file_are_the_bodys_own() -> None:
    name, data = media_post(_item(), "<p>一</p>\r\n  <p>二</p>\r<p>三</p>")
    parsed = parse_post(data.decode("utf-8"), name)
    assert parsed.repairs == ("body HTML had unsafe or malformed markup; sanitized "
                              "(raw copy kept)",)
    article = parsed.article
    assert article.body_raw == "<p>一</p>\r\n  <p>二</p>\r<p>三</p>"
    assert "\r" not in article.body_html and "\r" not in article.body_text
    assert article.url == ZNING_SHARE + "NW202201112243109259"
    # A text body: its text has LF line breaks, its post the CRLF it had.
    name, data = media_post(_item(), "第一段。\r\n第二段 &amp; 1<2。")
    article = parse_post(data.decode("utf-8"), name).article
    assert article.body_text == "第一段。\n第二段 & 1<2。"
    assert article.body_raw == "第一段。\r\n第二段 &amp; 1<2。"
    assert render_post(article, SITE).encode("utf-8") == data
    # A CR in the front matter: the file was saved with CRLF; all of it is converted.
    text = data.decode("utf-8").replace("layout: post\n", "layout: post\r\n")
    parsed = parse_post(text, name)
    assert parsed.repairs == ("CRLF line endings converted to LF",)
    assert parsed.article.body_text == "第一段。\n第二段 & 1<2。"
    assert parsed.article.body_raw == "第一段。\n第二段 &amp; 1<2。"  # LF, as it now is


# -- the legacy East Money families: the HTML the source sent ----------------------------------

def _legacy_articles() -> list[tuple[Article, str]]:
    """(article, the HTML its full text carried) from each legacy family."""
    items = [i for i in em_items() if "EM_StockImg_Start" in i.html and "&amp;" in i.html][:3]
    assert len(items) == 3
    out = []
    raw = paragraphs(items[0].html, "\r\n")
    media = MediaColumns(SourceConfig("em-media", "eastmoney-media",
                                      options={"share_base": ZNING_SHARE}))
    [entry] = media.parse_list(media.list_requests()[0], {"nodeList": [{
        "infocode": f"NW{items[0].code}", "from": items[0].outlet, "title": items[0].title,
        "showtime": items[0].when.strftime("%Y-%m-%d %H:%M:%S"), "simdigest": ""}]})
    out.append((media.to_article(entry, media.parse_text(entry, {"text": raw}), FETCHED), raw))

    rolling = RollingNews(SourceConfig("em-rolling", "eastmoney-rolling"))
    raw = items[1].html
    [entry] = rolling.parse_list(rolling.list_requests()[0], {"records": [{
        "id": items[1].code, "infoCode": f"NW{items[1].code}", "title": items[1].title,
        "digest": f"【{items[1].title}】{digest_of(raw)}", "url_w": items[1].link,
        "showtime": items[1].when.strftime("%Y-%m-%d %H:%M:%S")}]})
    out.append((rolling.to_article(entry, rolling.parse_text(entry, {"content": raw}),
                                   FETCHED), raw))

    market = MarketNews(SourceConfig("em-market", "eastmoney-market"))
    raw = paragraphs(items[2].html, "\n")
    [entry] = market.parse_list(market.list_requests()[0], {"record": [{
        "infoCode": f"NW{items[2].code}", "medianame": items[2].outlet, "title": items[2].title,
        "datetime": items[2].when.strftime("%Y-%m-%d %H:%M:%S")}]})
    out.append((market.to_article(entry, market.parse_text(entry, {"content": raw}), FETCHED),
                raw))
    return out


def test_legacy_family_items_export_the_html_the_source_sent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    legacy = _legacy_articles()
    db = tmp_path / "caixun.db"
    with open_archive(db) as archive:
        for article, _ in legacy:
            archive.store(article)
    run("--archive", db, "export", "jekyll", tmp_path / "out")
    run("--archive", db, "export", "jekyll", "--sanitize", tmp_path / "clean")
    for article, raw in legacy:
        assert article.body_raw == raw and article.body_html != raw
        body = text_of(tmp_path / "out" / post_filename(article)).split("---\n", 2)[2]
        quote = f"> {article.digest}\n\n" if article.uid.startswith("em-rolling:") else ""
        assert body.startswith(quote + raw + "\n\n<"), article.uid
        clean = text_of(tmp_path / "clean" / post_filename(article))
        assert clean.split("---\n", 2)[2].startswith(quote + article.body_html + "\n\n<")
        for marker in RAW_MARKERS:
            assert marker not in clean.split("---\n", 2)[2], (article.uid, marker)
        # The same in the library: render_post's default and sanitize=True.
        assert raw in render_post(article) and raw not in render_post(article, sanitize=True)


def test_articles_without_a_post_style_export_sanitized() -> None:
    """An article of a newer family has no old post to reproduce: the sanitized body."""
    raw = paragraphs(em_items()[0].html, "\r\n")
    article = Article(uid="feed:1", outlet="东方财富网", outlet_slug="dongfangcaifuwang",
                      title="t", published_at=FETCHED, file_id="1",
                      body_html=sanitize_html(raw), body_raw=raw)
    assert raw not in render_post(article) and article.body_html in render_post(article)

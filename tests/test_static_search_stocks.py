"""The search page finds a security by code or name: search/codes.json and its script.

A real archive learns securities' names and stores articles naming them (the
archive tags them); the site is built for real, ``search/codes.json`` read
back, and the page driven in headless Chromium over a plain static file server
(as on file hosting), with the site under a base path.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page, expect

from caixun.archive import SqliteArchive, open_archive
from caixun.model import Article
from caixun.publish import static_search
from caixun.publish.site import SiteConfig, build_site
from caixun.publish.static_search import STOCKS_JS, STOCKS_JSON, resolve_stocks, search_static
from caixun.securities import SecurityName, from_native, normalize_name
from site_helpers import make_article, tree
from test_static_search_browser import _serve, browser, page  # noqa: F401  (fixtures)

MAOTAI, PINGAN, TENCENT, APPLE, VANKE = "600519.SH", "000001.SZ", "00700.HK", "AAPL.US", "000002.SZ"
NAMES = {MAOTAI: "贵州茅台", PINGAN: "平安银行", TENCENT: "腾讯控股", APPLE: "苹果公司",
         VANKE: "万科Ａ"}


def _learn(archive: SqliteArchive) -> None:
    archive.learn_securities([SecurityName(code, name, "test") for code, name in NAMES.items()])
    archive.learn_securities([SecurityName(MAOTAI, "茅台股份", "test", kind="former")])


def _about(n: int, *codes: str) -> Article:
    names = "、".join(NAMES[code] for code in codes)
    text = f"{names}今日发布公告。第{n}条新闻的正文。" if codes else f"央行今日开展逆回购。第{n}条新闻的正文。"
    article = make_article(n, title=f"{names}：第{n}条消息" if codes else f"央行新闻{n}")
    return article.evolve(body_text=text, body_html=f"<p>{text}</p>")


def _fill(archive: SqliteArchive) -> None:
    _learn(archive)
    archive.store(_about(1, MAOTAI))
    archive.store(_about(2, MAOTAI, PINGAN))
    archive.store(_about(3, TENCENT))
    archive.store(_about(4, APPLE))
    archive.store(_about(5, VANKE))
    archive.store(_about(6))
    archive.store(_about(7))


def _stocks(site: Path) -> dict[str, dict[str, object]]:
    data = json.loads((site / STOCKS_JSON).read_bytes())
    assert data["format"] == 1
    return {s["code"]: s for s in data["stocks"]}


def test_stocks_json_lists_the_securities_with_articles(tmp_path: Path) -> None:
    config = SiteConfig(title="财讯测试", url="https://news.example.com/caixun", per_page=3)
    with open_archive(tmp_path / "caixun.db") as archive:
        _fill(archive)
        counts = archive.stock_counts()
        names = archive.security_names(counts)
        build_site(archive, tmp_path / "site", config, jobs=1)
    site = tmp_path / "site"
    stocks = _stocks(site)
    assert sorted(stocks) == sorted(counts) and set(counts) >= {MAOTAI, PINGAN, TENCENT, APPLE}
    assert list(stocks) == sorted(stocks)  # code order
    maotai = stocks[MAOTAI]
    assert maotai == {"code": MAOTAI, "name": names[MAOTAI], "names": maotai["names"],
                      "url": "/caixun/stock/600519.SH.html", "articles": counts[MAOTAI]}
    assert maotai["articles"] == 2
    assert {names[MAOTAI], *maotai["names"]} == {"贵州茅台", "茅台股份"}  # type: ignore[misc]
    assert stocks[VANKE]["names"] == ["万科"] and stocks[VANKE]["name"] == "万科Ａ"
    for code, stock in stocks.items():
        assert (site / str(stock["url"]).removeprefix("/caixun/")).is_file(), code
    page = (site / "search/index.html").read_text(encoding="utf-8")
    assert 'data-stocks="/caixun/search/codes.json"' in page
    assert 'placeholder="关键词、股票代码或名称，如 央行 降准 / 600519 / 贵州茅台"' in page
    assert '<ul class="list" id="search-stocks"' in page
    assert page.index('id="search-stocks"') < page.index('id="search-results"')
    assert '<script src="/caixun/assets/search-stocks.js" defer></script>' in page
    assert (site / STOCKS_JS).is_file()


def test_a_site_without_securities_has_no_stock_search(tmp_path: Path) -> None:
    with open_archive(tmp_path / "caixun.db") as archive:
        archive.store(_about(1))
        build_site(archive, tmp_path / "site", SiteConfig(url="https://x.example"), jobs=1)
    site = tmp_path / "site"
    assert not (site / STOCKS_JSON).exists() and not (site / STOCKS_JS).exists()
    page = (site / "search/index.html").read_text(encoding="utf-8")
    assert "data-stocks" not in page and "search-stocks" not in page
    assert 'placeholder="关键词，如 央行 降准 -年报"' in page


def test_incremental_builds_rewrite_stocks_json_when_it_changes(tmp_path: Path) -> None:
    config = SiteConfig(url="https://x.example")
    site = tmp_path / "site"
    with open_archive(tmp_path / "caixun.db") as archive:
        archive.store(_about(1))
        build_site(archive, site, config, jobs=1)
        assert not (site / STOCKS_JSON).exists()
        _learn(archive)
        archive.store(_about(2, MAOTAI))
        report = build_site(archive, site, config, jobs=1, record_paths=True)
        assert STOCKS_JSON in report.written_paths and STOCKS_JS in report.written_paths
        assert _stocks(site)[MAOTAI]["articles"] == 1
        archive.store(_about(3))  # no security: the file's bytes are the same
        report = build_site(archive, site, config, jobs=1, record_paths=True)
        assert STOCKS_JSON not in report.written_paths
        archive.store(_about(4, MAOTAI, APPLE))
        report = build_site(archive, site, config, jobs=1, record_paths=True)
        assert STOCKS_JSON in report.written_paths
        assert _stocks(site)[MAOTAI]["articles"] == 2 and APPLE in _stocks(site)
        built = tree(site)
        build_site(archive, tmp_path / "full", config, full=True, jobs=1)
    full = tree(tmp_path / "full")
    for path in (STOCKS_JSON, STOCKS_JS, "search/index.html"):
        assert built[path] == full[path], path


STOCKS = [{"code": MAOTAI, "name": "贵州茅台", "names": ["茅台股份"], "url": "/s/m", "articles": 3},
          {"code": TENCENT, "name": "腾讯控股", "names": [], "url": "/s/t", "articles": 1},
          {"code": APPLE, "name": "苹果", "names": [], "url": "/s/a", "articles": 2},
          {"code": "000002.SZ", "name": "万科Ａ", "names": ["万科"], "url": "/s/v", "articles": 1}]


@pytest.mark.parametrize("query, code", [
    ("600519", MAOTAI), ("sh600519", MAOTAI), ("SH600519", MAOTAI), ("1.600519", MAOTAI),
    ("600519.SH", MAOTAI), ("600519.ss", MAOTAI), (" ６００５１９ ", MAOTAI),
    ("00700", TENCENT), ("hk00700", TENCENT), ("00700.HK", TENCENT), ("116.00700", TENCENT),
    ("AAPL", APPLE), ("aapl", APPLE), ("gb_aapl", APPLE), ("105.AAPL", APPLE),
    ("贵州茅台", MAOTAI), ("贵州 茅台", MAOTAI), ("茅台股份", MAOTAI), ("万科a", "000002.SZ"),
    ("万科", "000002.SZ"), ("央行", None), ("600520", None), ("茅台", None), ("", None),
])
def test_resolve_stocks(query: str, code: str | None) -> None:
    hits = resolve_stocks(query, STOCKS)
    assert [h.code for h in hits] == ([code] if code else [])


def _queries() -> list[str]:
    rng = random.Random(5)
    alphabet = "0123456789.shSHzZbjBJhkHKusUSgb_aApPlL-. 　６ＳｈßİıſK贵州茅台腾讯控股万科Ａ\ufeff\u3000"
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(600)]
    samples += ["600519", "sz000001", "bj430047", "0.000001", "0.430047", "1.000001", "128.00700",
                "107.BRK.B", "BRK.B", "brk-b", "usBRK_B", "700", "0700", "hk0700", "00000",
                "600519.SZ", "12345.HK", "A.US", "TOOLONGTICKER", "ſh600519", "ＡＡＰＬ",
                "万  科Ａ", "\ufeff600519"]
    return samples


def _served_site(root: Path, base: str) -> None:
    with open_archive(root / "caixun.db") as archive:
        _fill(archive)
        build_site(archive, root / "news", SiteConfig(url=f"{base}/news"), jobs=1)


@pytest.fixture(scope="module")
def served_stocks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(URL of the site, its directory): a site with securities under the base path /news."""
    root = tmp_path_factory.mktemp("search-stocks")
    with _serve(root) as base:
        _served_site(root, base)
        yield f"{base}/news", root / "news"


def test_the_script_resolves_like_the_build(served_stocks: tuple[str, Path], page: Page) -> None:
    url, site = served_stocks
    page.goto(f"{url}/search/")
    strings = _queries()
    folded = page.evaluate("(xs) => xs.map((x) => window.caixunStocks.fold(x))", strings)
    assert folded == [normalize_name(s) for s in strings]
    codes = page.evaluate(
        "(xs) => xs.map((x) => window.caixunStocks.fromNative(window.caixunStocks.fold(x)))",
        strings)
    for string, code in zip(strings, codes):
        want = from_native(normalize_name(string))
        assert code == (want if want is None or want.isascii() else None), string
    stocks = json.loads((site / STOCKS_JSON).read_bytes())["stocks"]
    queries = strings + ["贵州茅台", "茅台股份", "万科", "平安银行", "腾讯控股", "苹果公司"]
    got = page.evaluate("([xs, s]) => xs.map((x) => window.caixunStocks.resolve(x, s)"
                        ".map((h) => h.code))", [queries, stocks])
    assert got == [[h.code for h in resolve_stocks(q, stocks)] for q in queries]


def _stock_links(page: Page) -> list[tuple[str, str]]:
    links = page.locator("#search-stocks li a")
    return [(links.nth(i).inner_text(), str(links.nth(i).get_attribute("href")))
            for i in range(links.count())]


@pytest.mark.parametrize("query", ["600519", "sh600519", "贵州茅台", "600519.SH"])
def test_typing_a_code_or_name_links_the_stock_page(served_stocks: tuple[str, Path], page: Page,
                                                    query: str) -> None:
    url, site = served_stocks
    count = _stocks(site)[MAOTAI]["articles"]
    page.goto(f"{url}/search/")
    expect(page.locator("#search-q")).to_have_attribute("placeholder", "关键词、股票代码或名称，如 央行 降准 / 600519 / 贵州茅台")
    page.locator("#search-q").press_sequentially(query, delay=30)
    link = page.locator("#search-stocks li a")
    expect(link).to_have_count(1)
    expect(link).to_have_text(f"贵州茅台 600519.SH · {count} 篇")
    assert link.get_attribute("href") == "/news/stock/600519.SH.html"
    expected = search_static(site, query)
    assert [h.code for h in expected.stocks] == [MAOTAI]
    expect(page.locator("#search-results li")).to_have_count(len(expected.ids[:20]))
    link.click()
    page.wait_for_load_state()
    assert page.url == f"{url}/stock/600519.SH.html"
    expect(page.locator("h1")).to_contain_text("贵州茅台")


def test_other_markets_and_the_url_query(served_stocks: tuple[str, Path], page: Page) -> None:
    url, _ = served_stocks
    for query, code in (("hk00700", TENCENT), ("aapl", APPLE), ("万科", VANKE)):
        page.goto(f"{url}/search/?q=" + quote(query))
        link = page.locator("#search-stocks li a")
        expect(link).to_have_count(1)
        assert link.get_attribute("href") == f"/news/stock/{code}.html"
        expect(link).to_contain_text(code)


def test_a_plain_word_shows_no_stock_link(served_stocks: tuple[str, Path], page: Page) -> None:
    url, site = served_stocks
    page.goto(f"{url}/search/")
    box = page.locator("#search-q")
    box.press_sequentially("600519", delay=30)
    expect(page.locator("#search-stocks li a")).to_have_count(1)
    box.fill("")
    box.press_sequentially("央行", delay=30)
    expected = search_static(site, "央行")
    assert expected.ids and not expected.stocks
    expect(page.locator("#search-results li")).to_have_count(len(expected.ids[:20]))
    expect(page.locator("#search-stocks li")).to_have_count(0)
    assert not page.locator("#search-stocks").is_visible()


def test_a_missing_stocks_json_is_no_error(served_stocks: tuple[str, Path],
                                           browser: Browser) -> None:  # noqa: F811
    """A page whose codes.json is gone (a host serving an older build) still searches:
    the browser logs the 404, the script raises nothing."""
    url, site = served_stocks
    context = browser.new_context()
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.route("**/search/codes.json", lambda route: route.fulfill(status=404, body="no"))
    try:
        tab.goto(f"{url}/search/?q=" + quote("贵州茅台"))
        expected = search_static(site, "贵州茅台")
        assert expected.ids
        expect(tab.locator("#search-results li")).to_have_count(len(expected.ids[:20]))
        tab.wait_for_load_state("networkidle")
        expect(tab.locator("#search-stocks li")).to_have_count(0)
        assert tab.locator("#search-status").inner_text().startswith("找到")
    finally:
        context.close()
    assert not errors

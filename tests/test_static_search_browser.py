"""The search page in headless Chromium, against the real corpus built and served over HTTP.

The site is served by a plain static file server on 127.0.0.1 (as on file
hosting: no API). The page's script must segment exactly as the build does
(``staticTerms`` = ``static_terms``), read the same files as ``search_static``
and show the same results, as the reader types.
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from caixun.archive import open_archive
from caixun.importer import import_posts
from caixun.publish import static_search
from caixun.publish.site import SiteConfig, build_site
from caixun.publish.static_search import HINT, search_static, static_terms
from conftest import POSTS, REPO
from site_helpers import launch_chromium, make_article

TIMEOUT_MS = 10_000


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _serve(site: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, dict[int, str]]]:
    """(base URL, site dir, id → indexed text) of the whole corpus, served over HTTP."""
    tmp = tmp_path_factory.mktemp("search-browser")
    site = tmp / "site"
    site.mkdir()
    with _serve(site) as base:
        with open_archive(tmp / "caixun.db") as archive:
            import_posts([POSTS], archive)
            build_site(archive, site, SiteConfig(url=base), jobs=1)
            texts = archive.index_texts(0, 10**9)
        yield base, site, texts


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    context.route("**/*", lambda route: route.continue_()
                  if urlsplit(route.request.url).hostname == "127.0.0.1" else route.abort())
    yield tab
    context.close()
    assert not errors


def _strings(texts: dict[int, str]) -> list[str]:
    rng = random.Random(3)
    alphabet = ("人民银行央行降准股市场中国ＡＢＣａｂｃ０１２ABCabc0123456789 .-_，。、"
                "\u3000\u00a0ßİıſﬁK\u3400\u4dbf\uf900\ufaff\u9fff\ue000é😀")
    samples = [rng.choice(list(texts.values()))[:300] for _ in range(40)]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
                for _ in range(400)]
    return samples + ["A股市场", "00700.HK", "ＭＬＦ利率", "5G手机", "中", ""]


def test_the_script_segments_like_the_build(served: tuple[str, Path, dict[int, str]],
                                           page: Page) -> None:
    base, _, texts = served
    page.goto(f"{base}/search/")
    strings = _strings(texts)
    js = page.evaluate("(xs) => xs.map((x) => window.caixunSearch.staticTerms(x))", strings)
    assert js == [static_terms(s) for s in strings]
    queries = ["央行 -降准", '"A股" 北向资金', "中 国家", "-a -b c", "ＭＬＦ  利率"] + strings[:50]
    parsed = page.evaluate("(xs) => xs.map((x) => window.caixunSearch.parseQuery(x))", queries)
    for query, got in zip(queries, parsed):
        want = static_search.parse_static_query(query)
        assert (got["include"], got["exclude"], got["words"]) == \
            (want.include, want.exclude, want.words), query
    terms = ["央行", "a股", "00700", "😀"]
    hashes = page.evaluate("(xs) => xs.map((x) => window.caixunSearch.fnv1a32(x))", terms)
    assert hashes == [static_search.fnv1a32(t) for t in terms]


def _titles(page: Page) -> list[str]:
    return page.locator("#search-results li a").all_inner_texts()


def test_results_appear_as_the_reader_types(served: tuple[str, Path, dict[int, str]],
                                            page: Page) -> None:
    base, site, _ = served
    page.goto(f"{base}/search/")
    box = page.locator("#search-q")
    box.press_sequentially("央", delay=40)
    expect(page.locator("#search-status")).to_have_text(HINT)
    box.press_sequentially("行", delay=40)
    expected = search_static(site, "央行")
    want = [expected.docs[i][0] for i in expected.ids[:20]]
    expect(page.locator("#search-results li")).to_have_count(len(want))
    assert _titles(page) == want
    expect(page.locator("#search-results li a mark").first).to_have_text("央行")
    assert page.url.endswith("?q=" + quote("央行"))
    box.press_sequentially(" 印度", delay=40)  # narrows while typing
    narrowed = search_static(site, "央行 印度")
    expect(page.locator("#search-results li")).to_have_count(len(narrowed.ids))
    first = page.locator("#search-results li a").first
    title = first.inner_text()
    first.click()
    page.wait_for_load_state()
    expect(page.locator("h1")).to_have_text(title)
    page.go_back()
    expect(page.locator("#search-q")).to_have_value("央行 印度")


def test_a_query_in_the_url_reads_only_what_search_static_reads(
        served: tuple[str, Path, dict[int, str]], page: Page) -> None:
    base, site, _ = served
    requested: list[str] = []
    page.on("request", lambda r: requested.append(urlsplit(r.url).path.lstrip("/"))
            if "/search/" in r.url and r.resource_type == "fetch" else None)
    page.goto(f"{base}/search/?q=" + quote("公司 -市场"))
    expected = search_static(site, "公司 -市场")
    expect(page.locator("#search-results li")).to_have_count(min(20, len(expected.ids)))
    assert _titles(page) == [expected.docs[i][0] for i in expected.ids[:20]]
    page.wait_for_load_state("networkidle")
    assert sorted(requested) == sorted(path for path, _ in expected.files)
    titles = _titles(page)
    assert all("市场" not in t for t in titles)


def test_more_continues_with_older_results(served: tuple[str, Path, dict[int, str]],
                                           page: Page) -> None:
    base, site, _ = served
    everything = search_static(site, "公司", limit=10**9)
    assert len(everything.ids) > 20
    page.goto(f"{base}/search/?q=" + quote("公司"))
    expect(page.locator("#search-results li")).to_have_count(20)
    more = page.locator("#search-more")
    while more.is_visible():
        count = page.locator("#search-results li").count()
        more.click()
        expect(page.locator("#search-results li")).not_to_have_count(count)
    expect(page.locator("#search-results li")).to_have_count(len(everything.ids))
    expect(page.locator("#search-status")).to_contain_text(f"找到 {len(everything.ids)} 条")
    page.screenshot(path=str(_artifacts() / "static-search.png"), full_page=True)


def test_a_title_with_markup_is_shown_as_text(page: Page, tmp_path: Path) -> None:
    title = '央行<img src=x onerror="document.title=1">&amp;<b>降准</b>'
    with open_archive(tmp_path / "caixun.db") as archive:
        archive.store(make_article(1, title=title))
        build_site(archive, tmp_path / "site", SiteConfig(url="http://127.0.0.1"), jobs=1)
    with _serve(tmp_path / "site") as base:
        page.goto(f"{base}/search/?q=" + quote("央行 降准"))
        link = page.locator("#search-results li a")
        expect(link).to_have_text(title)
        assert link.locator("mark").all_inner_texts() == ["央行", "降准"]
        assert page.locator("#search-results img, #search-results b").count() == 0


def _artifacts() -> Path:
    path = REPO / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path

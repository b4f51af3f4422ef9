"""A real browser reads the site: headless Chromium (Playwright) against `caixun serve`.

The whole real corpus is built into a temporary site, served by ``caixun serve``
running as a subprocess on 127.0.0.1, and a reader's path is followed by
clicking links: home page → outlet page → article (and prev/next between
articles). Every request the pages make to any other host is blocked and
recorded, so the tests never touch the internet. Screenshots are saved to
``test-artifacts/`` (git-ignored) for a human to look at.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from caixun.archive import open_archive
from caixun.importer import import_posts
from caixun.publish.site import SiteConfig, build_site
from conftest import POSTS, REPO
from site_helpers import launch_chromium

ARTIFACTS = REPO / "test-artifacts"
TIMEOUT_MS = 10_000

RMYD_SLUG, RMYD = "renminyoudianbao", "人民邮电报"
EMNEWS_SLUG, EMNEWS = "emnews", "东财滚动新闻"
RMYD_POST = POSTS / "2022-01-11-NW202201112243109259.md"
RMYD_ARTICLE = "/renminyoudianbao/2022/01/11/NW202201112243109259.html"
RMYD_TITLE = "工信部科技司：以更加精准务实举措抓好产业科技创新工作"
RMYD_SOURCE = "http://finews.zning.xyz/html_News/NewsShare.html?infoCode=NW202201112243109259"
# The one article with images (external ones, blocked here): a width="578" img
# on a 390px phone must not make the page scroll sideways.
IMAGE_ARTICLE = "/emnews/2022/05/26/202205262391921712.html"

# --------------------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_serving(proc: subprocess.Popen[bytes], url: str, log: Path,
                        timeout: float = 15.0) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"caixun serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with opener.open(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    pytest.fail(f"caixun serve did not answer {url} within {timeout} s:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The whole real corpus, built and served by `caixun serve` in a subprocess."""
    tmp = tmp_path_factory.mktemp("browser")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    site = tmp / "site"
    with open_archive(tmp / "caixun.db") as archive:
        report = import_posts([POSTS], archive)
        assert report.counts["skipped"] == 0
        build_site(archive, site, SiteConfig(url=base), jobs=1)
    assert (site / RMYD_ARTICLE.lstrip("/")).is_file()

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p))
    log = tmp / "serve.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "caixun.cli", "serve", "--dir", str(site),
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_serving(proc, f"{base}/", log)
        yield base
    finally:
        _stop(proc)


# --------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with launch_chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@dataclass
class Reader:
    """A browser tab, with what went wrong while it was open."""

    page: Page
    errors: list[str] = field(default_factory=list)   # console errors, uncaught exceptions
    blocked: list[str] = field(default_factory=list)  # requests to anywhere but 127.0.0.1


def _open(browser: Browser, **context_options: object) -> tuple[BrowserContext, Reader]:
    context = browser.new_context(**context_options)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    reader = Reader(page)

    def local_only(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            reader.blocked.append(url)
            route.abort()

    context.route("**/*", local_only)
    page.on("console", lambda msg: reader.errors.append(f"console: {msg.text}")
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: reader.errors.append(f"pageerror: {exc}"))
    return context, reader


@pytest.fixture
def desktop(chromium: Browser) -> Iterator[Reader]:
    context, reader = _open(chromium, viewport={"width": 1280, "height": 900})
    yield reader
    context.close()


@pytest.fixture
def phone(chromium: Browser) -> Iterator[Reader]:
    context, reader = _open(chromium, viewport={"width": 390, "height": 844}, is_mobile=True,
                            has_touch=True, device_scale_factor=2)
    yield reader
    context.close()


def _screenshot(page: Page, path: Path, *, full_page: bool = True) -> None:
    page.screenshot(path=str(path), full_page=full_page)
    assert path.is_file() and path.stat().st_size > 10_000, f"{path} is missing or nearly empty"


def _rgb(css_color: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"rgba?\((\d+), (\d+), (\d+)(?:, ([\d.]+))?\)", css_color)
    assert match, f"not an rgb() colour: {css_color!r}"
    assert match.group(4) in (None, "1"), f"colour is (partly) transparent: {css_color!r}"
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def _colours(page: Page) -> tuple[int, int]:
    """Sums of R+G+B of the page background (:root) and the body's text colour."""
    background, text = page.evaluate(
        "() => [getComputedStyle(document.documentElement).backgroundColor,"
        " getComputedStyle(document.body).color]")
    return sum(_rgb(background)), sum(_rgb(text))


def _pager_title(link_text: str) -> str:
    return link_text.replace("←", "").replace("→", "").strip()


# --------------------------------------------------------------------------- tests


def test_reader_follows_links_from_home_to_outlet_to_article(
        base_url: str, desktop: Reader, artifacts: Path) -> None:
    page = desktop.page
    page.goto(f"{base_url}/")
    expect(page).to_have_title("财讯")
    expect(page.locator("section.latest h1")).to_have_text("最新")
    assert page.locator("section.latest ol.list li").count() >= 5
    # The stylesheet was served and applies: the narrow column and the red brand.
    assert page.evaluate("getComputedStyle(document.body).maxWidth") == "736px"
    assert _rgb(page.locator("header.site .brand").evaluate(
        "e => getComputedStyle(e).color")) == (179, 38, 30)

    rmyd_block = page.locator("section.outlet-block", has=page.locator("h2", has_text=RMYD))
    emnews_block = page.locator("section.outlet-block", has=page.locator("h2", has_text=EMNEWS))
    expect(rmyd_block).to_be_visible()
    expect(emnews_block).to_be_visible()
    expect(rmyd_block.locator("ol.list a", has_text=RMYD_TITLE)).to_be_visible()
    assert emnews_block.locator("ol.list li").count() == 5
    _screenshot(page, artifacts / "browser-home-desktop.png")

    # Home → outlet page.
    rmyd_block.locator("h2 a").click()
    expect(page).to_have_url(f"{base_url}/category/{RMYD_SLUG}.html")
    expect(page.locator("main h1")).to_have_text(RMYD)
    expect(page).to_have_title(f"{RMYD} - 财讯")
    _screenshot(page, artifacts / "browser-outlet-desktop.png")

    # Outlet page → article.
    page.locator("ol.list").get_by_role("link", name=RMYD_TITLE, exact=True).click()
    expect(page).to_have_url(f"{base_url}{RMYD_ARTICLE}")
    expect(page.locator("article h1")).to_have_text(RMYD_TITLE)
    expect(page).to_have_title(f"{RMYD_TITLE} - 财讯")
    meta = page.locator("article p.meta")
    expect(meta).to_be_visible()
    meta_text = meta.inner_text()
    assert "2022-01-11 09:53" in meta_text and RMYD in meta_text, meta_text
    body = page.locator("article div.body")
    expect(body).to_be_visible()
    body_text = body.inner_text()
    assert body_text.startswith("2021年，工业和信息化部科技司坚持"), body_text[:80]
    assert "（文章来源：人民邮电报）" in body_text
    assert "<p>" not in body_text  # markup is rendered, not shown as text
    source = page.locator("article p.source a")
    expect(source).to_have_text("阅读原文")
    assert RMYD_SOURCE in RMYD_POST.read_text(encoding="utf-8")  # the post's original link
    assert source.get_attribute("href") == RMYD_SOURCE
    expect(page.locator("article p.meta a.outlet")).to_have_attribute(
        "href", f"/category/{RMYD_SLUG}.html")
    assert page.locator("script").count() == 0
    _screenshot(page, artifacts / "browser-article-desktop.png")
    assert desktop.errors == []
    assert desktop.blocked == []  # the page asked for nothing outside the site

    # Back home, then the rolling news: outlet → an article → its neighbours.
    page.locator("header.site a.brand").click()
    expect(page).to_have_url(f"{base_url}/")
    emnews_block.locator("h2 a").click()
    expect(page).to_have_url(f"{base_url}/category/{EMNEWS_SLUG}.html")
    expect(page.locator("main h1")).to_have_text(EMNEWS)
    links = page.locator("ol.list li a")
    assert links.count() == 50  # a full first page (per_page=50) of the 100+ rolling news
    pick = links.nth(2)
    title, href = pick.inner_text(), pick.get_attribute("href")
    assert href and href.startswith(f"/{EMNEWS_SLUG}/")
    pick.click()
    expect(page).to_have_url(f"{base_url}{href}")
    expect(page.locator("article h1")).to_have_text(title)
    assert EMNEWS in page.locator("article p.meta").inner_text()
    article_url = page.url

    seen = {article_url}
    for rel in ("prev", "next"):
        link = page.locator(f"nav.pager a[rel={rel}]")
        expect(link).to_have_count(1)
        neighbour = _pager_title(link.inner_text())
        assert neighbour
        link.click()
        expect(page.locator("article h1")).to_have_text(neighbour)
        assert page.url.startswith(f"{base_url}/{EMNEWS_SLUG}/"), page.url
        assert page.url not in seen, f"{rel} did not lead to another article"
        seen.add(page.url)
        assert EMNEWS in page.locator("article p.meta").inner_text()
        page.go_back()
        expect(page).to_have_url(article_url)
    assert desktop.errors == []
    assert desktop.blocked == []


def test_article_reads_well_on_a_phone(base_url: str, phone: Reader, artifacts: Path) -> None:
    page = phone.page
    for path in (RMYD_ARTICLE, IMAGE_ARTICLE, "/", f"/category/{EMNEWS_SLUG}.html"):
        page.goto(f"{base_url}{path}")
        expect(page.locator("h1").first).to_be_visible()
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[1] == 390, f"{path}: the viewport meta tag is not honoured: {width}"
        assert width[0] <= width[1] + 1, f"{path} scrolls sideways on a phone: {width}"
        if path == IMAGE_ARTICLE:
            assert phone.blocked and all("eastmoney.com" in u or "dfcfw.com" in u
                                         for u in phone.blocked)
            img_width = page.locator("article .body img").first.evaluate(
                "e => e.getBoundingClientRect().width")
            assert 0 < img_width <= 390
        if path == RMYD_ARTICLE:
            font_size = page.locator("article .body").evaluate(
                "e => parseFloat(getComputedStyle(e).fontSize)")
            assert font_size >= 16, f"article text is {font_size}px on a phone"
            expect(page.locator("article h1")).to_have_text(RMYD_TITLE)
            # The first screen, as a reader holds it (a full 2x page is too tall to review).
            _screenshot(page, artifacts / "browser-article-phone.png", full_page=False)
    console = [e for e in phone.errors if "net::ERR_FAILED" not in e]  # the blocked images
    assert console == []


def test_dark_and_light_colour_schemes(base_url: str, chromium: Browser, artifacts: Path) -> None:
    sums = {}
    for scheme in ("light", "dark"):
        context, reader = _open(chromium, viewport={"width": 390, "height": 844}, is_mobile=True,
                                device_scale_factor=2, color_scheme=scheme)
        try:
            reader.page.goto(f"{base_url}{RMYD_ARTICLE}")
            expect(reader.page.locator("article h1")).to_have_text(RMYD_TITLE)
            sums[scheme] = _colours(reader.page)
            if scheme == "dark":
                _screenshot(reader.page, artifacts / "browser-article-phone-dark.png",
                            full_page=False)
            assert reader.errors == [] and reader.blocked == []
        finally:
            context.close()
    (light_bg, light_fg), (dark_bg, dark_fg) = sums["light"], sums["dark"]
    assert light_bg > 600 and light_fg < 200, sums
    assert dark_bg < 200 and dark_fg > 600, sums


@pytest.mark.parametrize("missing", ["/nope.html", "/category/nope/deeper.html"])
def test_missing_page_shows_the_sites_404(base_url: str, desktop: Reader, missing: str) -> None:
    page = desktop.page
    response = page.goto(f"{base_url}{missing}")
    assert response is not None and response.status == 404
    expect(page.locator("main h1")).to_have_text("页面不存在")
    expect(page).to_have_title("页面不存在 - 财讯")
    # The site's own page, styled even below a missing directory.
    assert page.evaluate("getComputedStyle(document.body).maxWidth") == "736px"
    page.locator("main").get_by_role("link", name="返回首页").click()
    expect(page).to_have_url(f"{base_url}/")
    expect(page.locator("section.latest h1")).to_have_text("最新")
    expect(page.locator("section.outlet-block h2", has_text=RMYD)).to_be_visible()
    assert desktop.blocked == []
    # Chromium reports the 404 of the document itself; nothing else may fail.
    assert [e for e in desktop.errors if "404" not in e] == []

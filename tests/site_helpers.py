"""Helpers for the site tests: trees, articles, links, the browser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from caixun.model import Article
from caixun.normalize import BEIJING

HREF = re.compile(r'(?:href|src)="([^"]+)"')


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path → bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file()}


def make_article(n: int, outlet: str = "上海证券报", slug: str = "shanghaizhengquanbao",
                 day: int = 9, minute: int | None = None, title: str | None = None) -> Article:
    when = datetime(2021, 12, day, 9, 0, tzinfo=BEIJING) + timedelta(
        minutes=n if minute is None else minute)
    return Article(
        uid=f"test:{n}", outlet=outlet, outlet_slug=slug, title=title or f"测试新闻{n}",
        published_at=when, file_id=f"T{n:06d}", body_html=f"<p>第{n}条新闻的正文。</p>",
        body_text=f"第{n}条新闻的正文。", url=f"http://finance.eastmoney.com/news/1,{n}.html")


def broken_links(root: Path, base_path: str = "") -> list[tuple[str, str]]:
    """(page, link) for every internal link that does not resolve to a built file."""
    broken = []
    for page in root.rglob("*.html"):
        for link in HREF.findall(page.read_text(encoding="utf-8")):
            if link.startswith(("http:", "https:", "//", "mailto:", "#")):
                continue
            target = link.split("#")[0]
            assert target.startswith(base_path + "/"), f"{page}: relative link {link}"
            rel = target[len(base_path) + 1:]
            path = root / rel
            if rel == "" or rel.endswith("/"):
                path = path / "index.html"
            if not path.is_file():
                broken.append((str(page.relative_to(root)), link))
    return broken


CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright never downloads a browser here
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def launch_chromium() -> Iterator[Browser]:
    """Headless Debian Chromium; fails loudly when missing (a skip would hide it)."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (and fonts-noto-cjk)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()

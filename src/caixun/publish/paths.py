"""Where each page of the site lives, as a file path and as a URL.

Article pages keep the old Jekyll site's URLs (``/<outlet>/<YYYY>/<MM>/<DD>/<id>.html``,
dated in Beijing time) and outlet pages keep ``/category/<slug>.html``, so links
into an old site keep working. Older outlet pages are numbered from the oldest
(``page/1.html`` holds the first articles the outlet ever had), so a new
article changes only the outlet's front page and its newest numbered page.
A security's pages are numbered the same way: ``/stock/<code>.html`` (the code
canonical, as ``600519.SH``), ``/stock/<code>/page/<n>.html`` and the feed
``/stock/<code>.xml``; ``/stock/`` lists the securities. Each watch list has
the feed ``/watch/<name>.xml`` (a watch's name is letters, digits, - and _),
and ``/watch/`` lists the watches.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, timezone
from typing import Iterable, Iterator

from caixun.normalize import BEIJING

__all__ = [
    "ARCHIVE",
    "CSS",
    "FEED",
    "HOME",
    "NOT_FOUND",
    "ROBOTS",
    "SEARCH_DIR",
    "SEARCH_JS",
    "SEARCH_MANIFEST",
    "SEARCH_PAGE",
    "SITEMAP",
    "STOCK_INDEX",
    "TMP_DIR",
    "WATCH_DIR",
    "WATCH_INDEX",
    "article_path",
    "beijing_date",
    "dated_article_paths",
    "day_path",
    "outlet_chunk_path",
    "outlet_feed_path",
    "outlet_path",
    "stock_chunk_path",
    "stock_feed_path",
    "stock_path",
    "url_of",
    "watch_feed_path",
]

HOME = "index.html"
ARCHIVE = "archive/index.html"
FEED = "feed.xml"
SITEMAP = "sitemap.xml"
ROBOTS = "robots.txt"
NOT_FOUND = "404.html"
CSS = "assets/style.css"
SEARCH_DIR = "search"  # the static search index (publish/static_search.py)
SEARCH_MANIFEST = "search/manifest.json"
SEARCH_PAGE = "search/index.html"
SEARCH_JS = "assets/search.js"
STOCK_INDEX = "stock/index.html"
WATCH_DIR = "watch"  # the watches' feeds and their index, and nothing else
WATCH_INDEX = "watch/index.html"
TMP_DIR = ".caixun-tmp"  # temporary files of atomic writes; never published


# China has kept UTC+8 without daylight saving since 1991-09-15; after that a
# fixed offset gives the Beijing date without a time-zone database lookup.
_FIXED_OFFSET_SINCE = 685_000_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def beijing_date(published_ts: int) -> date:
    if published_ts >= _FIXED_OFFSET_SINCE:
        return date.fromordinal(_EPOCH_ORDINAL + (published_ts + 8 * 3600) // 86400)
    return datetime.fromtimestamp(published_ts, timezone.utc).astimezone(BEIJING).date()


# A day's directories and date, "YYYY/MM/DD" and "YYYY-MM-DD", by day number past
# _FIXED_OFFSET_SINCE: a build names tens of thousands of article pages, and
# formatting the date was most of the time.
_DAYS: dict[int, tuple[str, str]] = {}
_MAX_DAYS = 100_000


def _day_strings(published_ts: int) -> tuple[str, str]:
    if published_ts < _FIXED_OFFSET_SINCE:
        day = beijing_date(published_ts)
        return f"{day:%Y/%m/%d}", day.isoformat()
    key = (published_ts + 8 * 3600) // 86400
    strings = _DAYS.get(key)
    if strings is None:
        if len(_DAYS) >= _MAX_DAYS:
            _DAYS.clear()
        day = beijing_date(published_ts)
        strings = _DAYS[key] = (f"{day:%Y/%m/%d}", day.isoformat())
    return strings


def article_path(outlet_slug: str, published_ts: int, file_id: str) -> str:
    return f"{outlet_slug}/{_day_strings(published_ts)[0]}/{file_id}.html"


def dated_article_paths(refs: Iterable[tuple[str, int, str]]) -> Iterator[tuple[str, str]]:
    """``(article_path(...), beijing_date(published_ts).isoformat())`` of each
    ``(outlet_slug, published_ts, file_id)`` (a sitemap lists every article)."""
    for outlet_slug, published_ts, file_id in refs:
        directories, day = _day_strings(published_ts)
        yield f"{outlet_slug}/{directories}/{file_id}.html", day


def outlet_path(slug: str) -> str:
    return f"category/{slug}.html"


def outlet_chunk_path(slug: str, number: int) -> str:
    return f"category/{slug}/page/{number}.html"


def outlet_feed_path(slug: str) -> str:
    return f"category/{slug}/feed.xml"


def stock_path(code: str) -> str:
    return f"stock/{code}.html"


def stock_chunk_path(code: str, number: int) -> str:
    return f"stock/{code}/page/{number}.html"


def stock_feed_path(code: str) -> str:
    return f"stock/{code}.xml"


def watch_feed_path(name: str) -> str:
    return f"{WATCH_DIR}/{name}.xml"


@functools.lru_cache(maxsize=4096)  # every page links its day: formatting it was 1 % of a build
def day_path(day: date) -> str:
    return f"{day:%Y/%m/%d}/index.html"


def url_of(path: str, base_path: str = "") -> str:
    """The URL of a file path: ``a/index.html`` → ``/a/``."""
    if path == "index.html":
        return base_path + "/"
    if path.endswith("/index.html"):
        path = path[: -len("index.html")]
    return f"{base_path}/{path}"

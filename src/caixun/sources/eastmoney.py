"""East Money (东方财富): the legacy endpoints the old site fetched, and today's lists.

Five families (NEWS-APIS.md §1, §2.1, §2.2):

* ``RollingNews`` (``eastmoney-rolling``): 东财滚动新闻, ``webapi?type=102``, key
  ``records``; full text from ``GetNewsText.do``.
* ``MediaColumns`` (``eastmoney-media``): news by outlet, ``webapi?type=45``, key
  ``nodeList`` (``infocode`` with a lower-case c); full text from ``GetNewsText.do``.
* ``MarketNews`` (``eastmoney-market``): one request per ``marketType``, key
  ``record``; full text from ``GetNewsText.do``.
* ``FastNews`` (``eastmoney-fast``): 7x24 ``getFastNewsList``; the summary is the body.
  Pages back by ``sortEnd`` = ``data.sortEnd``, else the page's last ``realSort``.
* ``ColumnNews`` (``eastmoney-columns``): ``getNewsByColumns``; the full text is
  ``div#ContentBody`` (or a fallback selector) of the article page. Pages back by
  ``page_index``.

The two current lists page back (``next_page``) up to their ``max_pages``
option a round (5 for 7x24, 3 for columns, whose every item costs a page
fetch); the fetcher stops at the first page holding an item already stored, so
a burst larger than a page between two polls is not lost. The legacy lists
have a fixed ``count`` and no paging.

The three legacy families write Jekyll posts in exactly the format of the old
site (``PostStyle`` below), so a site fed by caixun keeps its old file names,
categories, footers and links.

Every field of every item is optional. Items without an id (or that are not
JSON objects) are dropped by ``parse_list`` with no entry: without an id there
is no uid to report them under, and the fetcher already fails a list that ends
up empty. An id that is unsafe in a file name, and an item without a title or a
time (seen in type 102), raise ``ItemError`` from ``to_article``, naming the uid.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, ClassVar, Mapping, Sequence
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from selectolax.lexbor import LexborHTMLParser, SelectolaxError

from caixun.errors import PayloadError
from caixun.identity import EASTMONEY, eastmoney_identity
from caixun.model import Article, PostStyle
from caixun.normalize import clean_title, split_headline, strip_indent
from caixun.rules import Rule, either, http_url, list_of, text, url_template, whole
from caixun.slugs import is_safe_slug
from caixun.sources.base import (PAGING_DEFAULTS, PAGING_RULES, Entry, ItemError, Request,
                                 Source, build_article)
from caixun.sources.fields import DESKTOP_UA, text_field, web_url

__all__ = ["ColumnNews", "FastNews", "MarketNews", "MediaColumns", "RollingNews"]

LEGACY_LIST_URL = "http://183.136.162.242/web/webapi"
TEXT_URL = "http://choicewzp1.eastmoney.com/NewsData/GetNewsText.do?id={code}"
SHARE_BASE = "http://choicewzp1.eastmoney.com/html_News/NewsShare.html?infoCode="
ARTICLE_URL = "https://finance.eastmoney.com/a/{code}.html"
CONTENT_SELECTORS = ("div#ContentBody", "div.txtinfos", "div.article-content",
                     "div.newsContent", "div.Body")
COLUMN_FIELDS = "code,showTime,title,mediaName,summary,image,url,uniqueUrl,Np_dst"

ROLLING_OUTLET = "东财滚动新闻"
ROLLING_SLUG = "emnews"
# The old rolling posts link to the category page /emnews/; media posts to
# /category/<slug>.html, which is PostStyle's default template.
ROLLING_FOOTER = "[返回{tags}]({base}/{slug}/)｜[返回首页]({base}/)"


# -- helpers ----------------------------------------------------------------------

def string_list(value: Any) -> list[str]:
    """The strings of a JSON list (anything else: none)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def merged_request(url: str, params: Sequence[tuple[str, str]], **kwargs: Any) -> Request:
    """A request for ``url`` plus ``params``; parameters already in the URL win.

    httpx replaces a URL's query when ``params`` are given, so a ``list_url``
    written with its query (as the README shows) keeps it only if it moves here.
    """
    parts = urlsplit(url)
    own = parse_qsl(parts.query, keep_blank_values=True)
    given = {key for key, _ in own}
    merged = (*own, *((k, v) for k, v in params if k not in given))
    bare = urlunsplit((parts.scheme, parts.netloc, parts.path, "", parts.fragment))
    return Request(bare, params=merged, **kwargs)


def request_trace() -> str:
    """A ``req_trace`` value: the np-* APIs want one; the web page sends a ms timestamp."""
    return str(time.time_ns() // 1_000_000)


class _EastMoney(Source):
    """What every East Money family shares: headers, payload checks, id checks."""

    portal = EASTMONEY

    def identity(self, native_id: str) -> str:
        """``eastmoney:<infoCode>``: one article whichever East Money list brings it."""
        return eastmoney_identity(native_id)

    def headers(self) -> tuple[tuple[str, str], ...]:
        pairs = (("User-Agent", str(self.option("user_agent"))),
                 ("Referer", str(self.option("referer"))))
        return tuple((k, v) for k, v in pairs if v)

    def fail(self, problem: str) -> PayloadError:
        return PayloadError(f"{self.name} ({self.kind}): {problem}")

    def items(self, container: Any, key: str, where: str = "payload") -> list[Mapping[str, Any]]:
        """The object items of ``container[key]``; ``PayloadError`` if that is not a list."""
        if not isinstance(container, Mapping):
            raise self.fail(f"{where} is a {type(container).__name__}, not a JSON object")
        if key not in container:
            keys = ", ".join(sorted(map(str, container))) or "none"
            raise self.fail(f"{where} has no {key!r} key (keys: {keys}); the API changed shape")
        value = container[key]
        if value is None:
            raise self.fail(f"{where}[{key!r}] is null")
        if not isinstance(value, list):
            raise self.fail(f"{where}[{key!r}] is a {type(value).__name__}, not a list")
        return [item for item in value if isinstance(item, Mapping)]

    def checked_id(self, entry: Entry) -> str:
        """The native id, if it can name a file and a page (else ``ItemError``)."""
        if not is_safe_slug(entry.native_id):
            raise ItemError(f"{self.uid(entry.native_id)}: id is not URL-safe")
        return entry.native_id


# -- legacy endpoints (§1) ------------------------------------------------------------

class _Legacy(_EastMoney):
    """A legacy list (fixed ``count``, no paging) whose items have a full text."""

    records_key: ClassVar[str]
    id_key: ClassVar[str]
    code_key: ClassVar[str]  # the key of GetNewsText.do
    text_keys: ClassVar[tuple[str, str]] = ("text", "content")  # preferred first
    list_type: ClassVar[str] = ""
    option_rules: ClassVar[Mapping[str, Rule]] = {
        "count": whole(1, 500),  # 100 and 500 are known to work
        "text_url": url_template("code"), "share_base": http_url()}

    def list_requests(self) -> list[Request]:
        params = (("type", self.list_type), ("count", str(self.option("count"))),
                  ("newsid", "1"))  # newsid=1: never varied by the old fetcher; meaning unknown
        return [merged_request(str(self.option("list_url")), params, headers=self.headers())]

    def parse_list(self, request: Request, payload: Any) -> list[Entry]:
        entries = []
        for item in self.items(payload, self.records_key):
            native_id = text_field(item, self.id_key).strip()
            if native_id:
                code = text_field(item, self.code_key).strip()
                entries.append(Entry(native_id, dict(item), self.text_request(code)))
        return entries

    def text_request(self, code: str) -> Request | None:
        if not code:
            return None  # no full text to ask for: the article is built from the list item
        url = str(self.option("text_url")).format(code=quote(code, safe=""))
        return Request(url, headers=self.headers(), key=f"text:{code}")

    def parse_text(self, entry: Entry, payload: Any) -> Mapping[str, Any]:
        """The HTML body, from ``content`` or ``text`` (whichever the family prefers first)."""
        if not isinstance(payload, Mapping):
            raise self.fail(f"full text of {entry.native_id} is not a JSON object")
        for key in self.text_keys:
            value = payload.get(key)
            if isinstance(value, str):
                return {"body_html": value}
        raise self.fail(f"full text of {entry.native_id} has neither 'content' nor 'text'")

    def share_link(self, code: str) -> str:
        return f"{self.option('share_base')}{code}" if code else ""

    def legacy_article(self, entry: Entry, text: Mapping[str, Any] | None,
                       fetched_at: datetime, *, outlet: str, title: str, published: str,
                       digest: str = "") -> Article:
        """An article that exports as the old site's media-column post."""
        native_id = self.checked_id(entry)
        outlet = clean_title(outlet) or "东方财富"
        link = self.share_link(text_field(entry.fields, self.code_key).strip())
        body_html = (text or {}).get("body_html") or None
        return build_article(
            self, native_id, outlet=outlet, title=title, published=published or None,
            fetched_at=fetched_at, body_html=body_html,
            body_text=None if body_html else digest, digest=digest, url=link, share_url=link,
            post_style=PostStyle(tags=f"{outlet}新闻", leading_newlines=0,
                                 body_format="html", trailing_newlines=0))


class RollingNews(_Legacy):
    """东财滚动新闻: the rolling list (type 102) the old site published under /emnews/."""

    kind = "eastmoney-rolling"
    description = "东财滚动新闻 (legacy webapi type=102) with full text"
    defaults = {
        "list_url": LEGACY_LIST_URL,
        "text_url": TEXT_URL,
        "count": 100,
        "user_agent": DESKTOP_UA,
        "referer": "",  # the old fetcher sent a User-Agent only
    }
    records_key = "records"
    id_key = "id"
    code_key = "infoCode"
    text_keys = ("content", "text")  # the old generator read rolling items from "content"
    list_type = "102"

    def to_article(self, entry: Entry, text: Mapping[str, Any] | None,
                   fetched_at: datetime) -> Article:
        item = entry.fields
        # The digest starts with 【headline】; the old generator kept what follows the last 】.
        digest = text_field(item, "digest").rsplit("】", 1)[-1]
        body_html = (text or {}).get("body_html") or None
        return build_article(
            self, self.checked_id(entry), outlet=ROLLING_OUTLET, outlet_slug_=ROLLING_SLUG,
            title=text_field(item, "title"), published=text_field(item, "showtime") or None,
            fetched_at=fetched_at, body_html=body_html,
            body_text=None if body_html else digest, digest=digest,
            url=web_url(text_field(item, "url_w")), extra=_info_code(item, "infoCode"),
            identity=eastmoney_identity(text_field(item, "infoCode"))
            or self.identity(entry.native_id),
            post_style=PostStyle(tags=ROLLING_OUTLET, leading_newlines=0, digest_quote=True,
                                 body_format="html", footer_template=ROLLING_FOOTER,
                                 trailing_newlines=0))


class MediaColumns(_Legacy):
    """News by outlet (type 45): one category per outlet (人民邮电报, 36氪, Wind …)."""

    kind = "eastmoney-media"
    description = "East Money news by outlet (legacy webapi type=45) with full text"
    defaults = {
        "list_url": LEGACY_LIST_URL,
        "text_url": TEXT_URL,
        "share_base": SHARE_BASE,
        "count": 100,
        "user_agent": DESKTOP_UA,
        "referer": "",
    }
    records_key = "nodeList"
    id_key = "infocode"  # lower-case c in this list only
    code_key = "infocode"
    list_type = "45"

    def to_article(self, entry: Entry, text: Mapping[str, Any] | None,
                   fetched_at: datetime) -> Article:
        item = entry.fields
        return self.legacy_article(
            entry, text, fetched_at, outlet=text_field(item, "from"),
            title=text_field(item, "title"), published=text_field(item, "showtime"),
            digest=text_field(item, "simdigest"))


class MarketNews(_Legacy):
    """Market news, one list per ``marketType`` (37/38/39: meaning undocumented)."""

    kind = "eastmoney-market"
    description = "East Money market news (legacy newmarket webapi) with full text"
    defaults = {
        "list_url": "http://43.240.125.15:1818/information/newmarket/web/webapi",
        "text_url": TEXT_URL,
        "share_base": SHARE_BASE,
        "market_types": [37, 38, 39],
        "count": 100,
        "user_agent": DESKTOP_UA,
        "referer": "",
    }
    option_rules = {**_Legacy.option_rules, "market_types": either(
        list_of(either(whole(0, 9999), text("digits", str.isdigit)),
                "a non-empty list of market types such as [37, 38]"),
        text('a comma-separated string of them such as "37,38"',
             lambda v: bool(_as_list(v)) and all(m.isdigit() for m in _as_list(v))))}
    records_key = "record"  # singular, unlike the other lists
    id_key = "infoCode"
    code_key = "infoCode"

    def list_requests(self) -> list[Request]:
        requests = []
        for market in _as_list(self.option("market_types")):
            params = (("marketType", market), ("count", str(self.option("count"))))
            requests.append(merged_request(str(self.option("list_url")), params,
                                           headers=self.headers(), key=f"list:{market}"))
        return requests

    def to_article(self, entry: Entry, text: Mapping[str, Any] | None,
                   fetched_at: datetime) -> Article:
        item = entry.fields
        return self.legacy_article(
            entry, text, fetched_at, outlet=text_field(item, "medianame"),
            title=text_field(item, "title"), published=text_field(item, "datetime"))


def _is_selector(value: str) -> bool:
    """Whether selectolax can parse ``value`` (else every article page would fail)."""
    try:
        LexborHTMLParser("").css_first(value)
    except SelectolaxError:
        return False
    return True


def _as_list(value: Any) -> list[str]:
    """A list option given as a list or as a comma-separated string."""
    values = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(v).strip() for v in values if str(v).strip()]


def _info_code(item: Mapping[str, Any], key: str) -> dict[str, str]:
    code = text_field(item, key).strip()
    return {"info_code": code} if code else {}


# -- np-* endpoints (§2.1, §2.2) ---------------------------------------------------------

class _NpList(_EastMoney):
    """A current np-* list: ``{code: "1", message, data: {<list_key>: [...]}}``."""

    list_key: ClassVar[str]
    option_rules: ClassVar[Mapping[str, Rule]] = {
        "page_size": whole(1, 200), "article_url": url_template("code"),  # API: up to 200
        **PAGING_RULES}

    def parse_list(self, request: Request, payload: Any) -> list[Entry]:
        entries = []
        for item in self.items(self.data(payload), self.list_key, "data"):
            native_id = text_field(item, "code").strip()
            if native_id:
                entries.append(Entry(native_id, dict(item), self.text_request(item)))
        return entries

    def data(self, payload: Any) -> Mapping[str, Any]:
        if not isinstance(payload, Mapping):
            raise self.fail(f"payload is a {type(payload).__name__}, not a JSON object")
        code = payload.get("code")
        if str(code) != "1":  # a string "1" on success; be lenient about 1
            raise self.fail(f"code is {code!r}, not \"1\" (message: {payload.get('message')!r})")
        data = payload.get("data")
        if data is None:
            raise self.fail("data is null (the API returns that when sortEnd or req_trace "
                            "is missing)")
        if not isinstance(data, Mapping):
            raise self.fail(f"data is a {type(data).__name__}, not a JSON object")
        return data

    def text_request(self, item: Mapping[str, Any]) -> Request | None:
        return None

    def article_url(self, code: str) -> str:
        return str(self.option("article_url")).format(code=code)


class FastNews(_NpList):
    """7x24 全球直播 (``getFastNewsList``): short items, the summary is the body."""

    kind = "eastmoney-fast"
    description = "东方财富 7x24 fast news (getFastNewsList)"
    defaults = {
        "list_url": "https://np-weblist.eastmoney.com/comm/web/getFastNewsList",
        "article_url": ARTICLE_URL,
        "fast_column": "102",  # 102 = 7x24 全球直播; comma lists allowed (NEWS-APIS §2.1)
        "page_size": 50,  # up to 200; 50 items cover about 1-2 hours
        **PAGING_DEFAULTS,  # max_pages: 5 pages of 50, about a working day
        "outlet": "东方财富7x24",
        "user_agent": DESKTOP_UA,
        "referer": "https://kuaixun.eastmoney.com/",
    }
    list_key = "fastNewsList"

    def list_requests(self) -> list[Request]:
        # sortEnd and req_trace must both be present, or the API answers data: null.
        params = (("client", "web"), ("biz", "web_724"),
                  ("fastColumn", str(self.option("fast_column"))), ("sortEnd", ""),
                  ("pageSize", str(self.option("page_size"))), ("req_trace", request_trace()))
        return [merged_request(str(self.option("list_url")), params, headers=self.headers())]

    def next_page(self, request: Request, payload: Any, entries: list[Entry]) -> Request | None:
        """Older items: ``sortEnd`` = ``data.sortEnd``, else the page's last ``realSort``."""
        data = self.data(payload)
        cursor = text_field(data, "sortEnd").strip()
        listed = data.get(self.list_key)
        if not cursor and isinstance(listed, list) and listed and isinstance(listed[-1], Mapping):
            cursor = text_field(listed[-1], "realSort").strip()
        if not cursor or cursor == dict(request.params).get("sortEnd"):
            return None  # no cursor, or one that would read this page again
        return request.with_params({"sortEnd": cursor, "req_trace": request_trace()})

    def to_article(self, entry: Entry, text: Mapping[str, Any] | None,
                   fetched_at: datetime) -> Article:
        item = entry.fields
        native_id = self.checked_id(entry)
        headline, body = split_headline(text_field(item, "summary"))
        extra: dict[str, Any] = {"stocks": string_list(item.get("stockList"))}
        if text_field(item, "realSort"):
            extra["real_sort"] = text_field(item, "realSort")
        return build_article(
            self, native_id, outlet=str(self.option("outlet")),
            title=text_field(item, "title") or headline or "",
            published=text_field(item, "showTime") or None, fetched_at=fetched_at,
            body_text=body, digest=strip_indent(body), url=self.article_url(native_id),
            extra=extra)


class ColumnNews(_NpList):
    """Column news (``getNewsByColumns``), full text from the article page."""

    kind = "eastmoney-columns"
    description = "东方财富 column news (getNewsByColumns) with full text"
    defaults = {
        "list_url": "https://np-listapi.eastmoney.com/comm/web/getNewsByColumns",
        "article_url": ARTICLE_URL,
        "column": "350",  # 350 要闻; 1207 财经早餐; 345 财经要闻 (NEWS-APIS §2.2)
        "page_size": 50,
        "max_pages": 3,  # each item costs an article page: 150 on a first poll
        "fields": COLUMN_FIELDS,  # "" = let the API choose
        "content_selectors": list(CONTENT_SELECTORS),  # tried in order on the article page
        "outlet": "东方财富",  # when an item has no mediaName
        "user_agent": DESKTOP_UA,
        "referer": "https://finance.eastmoney.com/",
    }
    option_rules = {**_NpList.option_rules, "content_selectors": either(
        list_of(text("a CSS selector", _is_selector), "a non-empty list of CSS selectors"),
        text("one CSS selector", _is_selector))}
    list_key = "list"

    def list_requests(self) -> list[Request]:
        params = [("client", "web"), ("biz", "web_news_col"),
                  ("column", str(self.option("column"))), ("order", "1"),
                  ("needInteractData", "0"), ("page_index", "1"),
                  ("page_size", str(self.option("page_size"))), ("req_trace", request_trace())]
        if self.option("fields"):
            params += [("fields", str(self.option("fields"))), ("types", "1,20")]
        return [merged_request(str(self.option("list_url")), params, headers=self.headers())]

    def next_page(self, request: Request, payload: Any, entries: list[Entry]) -> Request | None:
        """The next ``page_index``."""
        page = dict(request.params).get("page_index", "1")
        if not page.isdigit() or int(page) < 1:
            return None  # a list_url with its own odd page_index: read that page only
        return request.with_params({"page_index": str(int(page) + 1),
                                    "req_trace": request_trace()})

    def text_request(self, item: Mapping[str, Any]) -> Request | None:
        code = text_field(item, "code").strip()
        url = web_url(text_field(item, "uniqueUrl")) or self.article_url(quote(code, safe=""))
        return Request(url, headers=self.headers(), payload="text", key=f"text:{code}")

    def parse_text(self, entry: Entry, payload: Any) -> Mapping[str, Any]:
        """The article body: the first content selector that matches something."""
        if not isinstance(payload, str):
            raise self.fail(f"article page of {entry.native_id} is not text")
        option = self.option("content_selectors")
        # A string is one selector (it may be a CSS selector list with commas).
        selectors = [option] if isinstance(option, str) else [str(s) for s in option]
        tree = LexborHTMLParser(payload)
        for selector in selectors:
            node = tree.css_first(selector)
            body = node.inner_html if node is not None else None
            if body and body.strip():
                return {"body_html": body}
        raise self.fail(f"article page of {entry.native_id} has no body "
                        f"(tried {', '.join(selectors)})")

    def to_article(self, entry: Entry, text: Mapping[str, Any] | None,
                   fetched_at: datetime) -> Article:
        item = entry.fields
        native_id = self.checked_id(entry)
        summary = text_field(item, "summary")
        body_html = (text or {}).get("body_html") or None
        image = text_field(item, "image").strip()
        return build_article(
            self, native_id,
            outlet=text_field(item, "mediaName") or str(self.option("outlet")),
            title=text_field(item, "title"), published=text_field(item, "showTime") or None,
            fetched_at=fetched_at, body_html=body_html,
            body_text=None if body_html else summary, digest=summary,
            url=web_url(text_field(item, "uniqueUrl")) or self.article_url(native_id),
            extra={"image": image} if image else None)

"""新浪财经 7x24 (Sina zhibo): ``api/zhibo/feed`` (NEWS-APIS.md §6).

The page size goes out as both ``page_size`` and ``pagesize`` (akshare sends
both; RSSHub only the second, NEWS-APIS.md §9.2). The list pages back by
``page`` (``next_page``), up to ``max_pages`` pages a round and never past
``page_info.totalPage``, so a burst larger than a page between two polls is
not lost; the fetcher stops at the first page holding an item already stored.

How an item becomes an article:

* Items are in ``result.data.feed.list``; ``result.status.code != 0`` is a
  payload error.
* ``rich_text`` is ``【headline】body``: the headline is the title (else the
  first sentence) and is stripped from the body. It is sanitized before its
  text is taken, so markup never reaches the article.
* ``ext`` is a JSON-encoded string; it is decoded defensively, and an ``ext``
  that is not valid JSON only loses what it would have added (stocks, the
  fallback url), never the item.
* ``ext.stocks[] {market, symbol, key}``: the symbols are ``extra["stocks"]``;
  ``key`` is the security's name, kept as ``extra["stock_names"]``
  (``[symbol, name]`` pairs, the symbol prefixed with its market where it has
  none: ``hk00700``, ``gb_aapl``), which the archive learns.
* The url is ``ext.docurl`` (the desktop page, as RSSHub prefers it), else
  ``docurl`` (the mobile page); the time is ``create_time`` (Beijing time).
* Items without an ``id`` and items marked ``is_delete`` are skipped in
  ``parse_list``; an item with no text, or no ``create_time``, raises
  ``ItemError`` from ``to_article``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Mapping

from caixun.errors import PayloadError
from caixun.model import Article
from caixun.rules import whole
from caixun.securities import from_native
from caixun.sources.base import (PAGING_DEFAULTS, PAGING_RULES, Entry, Request, Source,
                                 build_article)
from caixun.sources.fields import (DESKTOP_UA, dig, identified, level, named_codes, names,
                                   plain_text, string_field, title_and_body)

__all__ = ["Zhibo"]


class Zhibo(Source):
    """新浪财经 7x24: one Sina zhibo feed."""

    kind = "sina"
    portal = "sina"
    description = "新浪财经7x24 (finance.sina.com.cn/7x24), api/zhibo/feed"
    defaults = {
        "list_url": "https://zhibo.sina.com.cn/api/zhibo/feed",
        "zhibo_id": "152",  # 财经 7x24
        "tag_id": "0",  # 0 = all; the other ids differ between reports
        "page_size": 20,  # 20–100 in practice; ≤50 recommended
        **PAGING_DEFAULTS,  # max_pages
        "user_agent": DESKTOP_UA,
        "referer": "https://finance.sina.com.cn/7x24/",
    }
    option_rules = {"page_size": whole(1, 100), **PAGING_RULES}

    def list_requests(self) -> list[Request]:
        size = str(self.option("page_size"))
        params = (("zhibo_id", str(self.option("zhibo_id"))),
                  ("tag_id", str(self.option("tag_id"))), ("page", "1"),
                  ("page_size", size), ("pagesize", size), ("dire", "f"), ("dpc", "1"))
        headers = (("User-Agent", str(self.option("user_agent"))),
                   ("Referer", str(self.option("referer"))))
        return [Request(str(self.option("list_url")), params=params, headers=headers)]

    def parse_list(self, request: Request, payload: Any) -> list[Entry]:
        items = identified(_feed(payload), source="sina", where="result.data.feed.list")
        items = [item for item in items if not item.get("is_delete")]
        return [Entry(str(item["id"]), item) for item in items]

    def next_page(self, request: Request, payload: Any, entries: list[Entry]) -> Request | None:
        """The next ``page``, unless ``page_info.totalPage`` says this was the last."""
        page = dict(request.params).get("page", "1")
        total = level(dig(payload, "result", "data", "feed", "page_info", "totalPage"))
        if not page.isdigit() or int(page) < 1 or 0 < total <= int(page):
            return None
        return request.with_params({"page": str(int(page) + 1)})

    def to_article(self, entry: Entry, text: Mapping[str, Any] | None,
                   fetched_at: datetime) -> Article:
        item = entry.fields
        ext = _ext(item)
        title, body = title_and_body(plain_text(string_field(item, "rich_text")))
        extra = {"stocks": names(ext.get("stocks"), "symbol"),
                 # [symbol, name] pairs (``key`` is the name): the archive learns them.
                 "stock_names": named_codes(ext.get("stocks"), "symbol", "key", _native_code),
                 "tags": names(item.get("tag"), "name")}
        return build_article(
            self, entry.native_id, outlet="新浪财经", title=title,
            published=item.get("create_time") or None, fetched_at=fetched_at, body_text=body,
            url=string_field(ext, "docurl") or string_field(item, "docurl"),
            extra={k: v for k, v in extra.items() if v})


def _feed(payload: Any) -> list[Any]:
    result = payload.get("result") if isinstance(payload, Mapping) else None
    status = result.get("status") if isinstance(result, Mapping) else None
    if not isinstance(result, Mapping) or not isinstance(status, Mapping):
        raise PayloadError("sina: the payload has no result.status envelope")
    if status.get("code") != 0:
        raise PayloadError(f"sina: result.status.code={status.get('code')!r} "
                           f"msg={status.get('msg')!r}")
    items = dig(result, "data", "feed", "list")
    if not isinstance(items, list):
        raise PayloadError("sina: result.data.feed.list is missing or not a list")
    return items


def _native_code(stock: Mapping[str, Any], symbol: str) -> str:
    """A symbol of ``ext.stocks`` as ``from_native`` reads it, by its ``market``:
    ``cn`` symbols come prefixed (``sh601318``); ``hk`` (``00700``) and ``us``
    (``aapl``) ones get ``hk`` and ``gb_``; "" for another market (forex, funds)
    or a symbol that makes no code."""
    market = string_field(stock, "market").strip().lower() or "cn"
    lower = symbol.lower()
    if market == "cn":
        code = symbol if lower.startswith(("sh", "sz", "bj")) else ""
    elif market == "hk":
        code = symbol if lower.startswith("hk") else f"hk{symbol}"
    elif market == "us":
        code = lower if lower.startswith("gb_") else f"gb_{lower}"
    else:
        return ""
    return code if code and from_native(code) else ""


def _ext(item: Mapping[str, Any]) -> Mapping[str, Any]:
    """``ext`` decoded: a JSON string inside the JSON; ``{}`` when it is not valid."""
    ext = item.get("ext")
    if isinstance(ext, str):
        try:
            ext = json.loads(ext)
        except ValueError:
            return {}
    return ext if isinstance(ext, Mapping) else {}

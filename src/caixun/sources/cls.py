"""财联社 (CLS) telegraph: the signed ``get_roll_list`` endpoint (NEWS-APIS.md §3).

Every request carries ``sign``: the base parameters ``app``, ``os`` and ``sv``
are merged with the request's own, sorted by key, query-string encoded, hashed
with SHA-1 and the hex digest hashed again with MD5 (``sign_params``).

The newest page is asked for with ``last_time`` = the current Unix time in
seconds, as akshare and newsnow send it (NEWS-APIS.md §9.2); ``sv`` defaults
to akshare's ``8.4.6``.

What the list keeps and how an item becomes an article:

* VIP items (``type == 20015``), the paid teasers 【盘中宝】 and 【电报解读】 and
  ads (a truthy ``is_ad``: ``1``, ``true``, ``"1"``; not ``0``, ``"0"`` or
  ``""``) are dropped in ``parse_list``; items without an ``id`` too (they have
  no uid to report), but a page whose items all lack one is a changed shape.
* ``content`` is sometimes cut short while ``brief`` is whole, so the longer
  of the two is the body. Either may carry HTML: it is sanitized before its text
  is taken, so markup never reaches the article.
* The title is ``title``, else the leading ``【headline】``, else the first
  sentence; the headline is always stripped from the body.
* An item with no title and no text, or no ``ctime``, raises ``ItemError`` from
  ``to_article`` (``build_article`` names the uid).
* ``stock_list[] {name, StockID}`` gives ``extra["stocks"]`` (the codes, which
  tag the article) and ``extra["stock_names"]`` (``[StockID, name]`` pairs,
  which the archive learns as the securities' names).
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from typing import Any, Mapping
from urllib.parse import urlencode

from caixun.model import Article
from caixun.normalize import split_headline
from caixun.rules import url_template, whole
from caixun.sources.base import Entry, Request, Source, build_article
from caixun.sources.fields import (DESKTOP_UA, envelope_items, identified, named_codes, names,
                                   plain_text, string_field, title_and_body, truthy)

__all__ = ["Telegraph", "sign_params"]

VIP_TYPE = 20015
TEASERS = ("盘中宝", "电报解读")  # paid-content teasers: a headline, then a paywall


def sign_params(params: Mapping[str, str]) -> str:
    """The ``sign`` of exactly these parameters: md5(sha1(sorted query string))."""
    query = urlencode(sorted(params.items()))
    sha1 = hashlib.sha1(query.encode("utf-8")).hexdigest()
    return hashlib.md5(sha1.encode("ascii")).hexdigest()


class Telegraph(Source):
    """财联社电报: the CLS 7x24 telegraph."""

    kind = "cls"
    portal = "cls"
    description = "财联社电报 (www.cls.cn/telegraph), signed get_roll_list"
    defaults = {
        "list_url": "https://www.cls.cn/v1/roll/get_roll_list",
        "detail_url": "https://www.cls.cn/detail/{id}",
        "app": "CailianpressWeb",
        "os": "web",
        "sv": "8.4.6",  # what akshare sends; 7.7.5 and 8.7.9 are also in use
        "category": "",  # "" = all; red, watch, announcement, remind, fund, hk_us
        "rn": 50,
        "user_agent": DESKTOP_UA,
        "referer": "https://www.cls.cn/telegraph",
    }
    option_rules = {"rn": whole(1, 100), "detail_url": url_template("id")}  # rn: 20-50 seen

    def list_requests(self) -> list[Request]:
        params = {
            "app": str(self.option("app")), "os": str(self.option("os")),
            "sv": str(self.option("sv")), "category": str(self.option("category")),
            "rn": str(self.option("rn")), "refresh_type": "1",
            "last_time": str(int(time.time())),  # now = the newest page
        }
        signed = (*sorted(params.items()), ("sign", sign_params(params)))
        headers = (("User-Agent", str(self.option("user_agent"))),
                   ("Referer", str(self.option("referer"))),
                   ("Accept", "application/json, text/plain, */*"))
        return [Request(str(self.option("list_url")), params=signed, headers=headers)]

    def parse_list(self, request: Request, payload: Any) -> list[Entry]:
        items = identified(_roll_data(payload), source="cls", where="data.roll_data")
        items = [item for item in items if not _is_dropped(item)]
        return [Entry(str(item["id"]), item) for item in items]

    def to_article(self, entry: Entry, text: Mapping[str, Any] | None,
                   fetched_at: datetime) -> Article:
        item = entry.fields
        title, body = title_and_body(_longest_text(item), string_field(item, "title"))
        extra = {
            "level": string_field(item, "level"),
            "stocks": names(item.get("stock_list"), "StockID"),
            # [StockID, name] pairs: the archive learns the names (and tags with them).
            "stock_names": named_codes(item.get("stock_list"), "StockID", "name"),
            "subjects": names(item.get("subjects"), "subject_name"),
        }
        return build_article(
            self, entry.native_id, outlet="财联社", title=title,
            published=item.get("ctime") or None, fetched_at=fetched_at, body_text=body,
            url=str(self.option("detail_url")).format(id=entry.native_id),
            share_url=string_field(item, "shareurl"),
            extra={k: v for k, v in extra.items() if v})


def _roll_data(payload: Any) -> list[Any]:
    return envelope_items(payload, source="cls", code_key="errno", ok=0, message_key="msg",
                          where="data.roll_data")


def _is_dropped(item: Mapping[str, Any]) -> bool:
    if str(item.get("type")) == str(VIP_TYPE) or truthy(item.get("is_ad")):
        return True
    heads = [string_field(item, "title")]
    heads += [split_headline(string_field(item, key))[0] or "" for key in ("content", "brief")]
    return any(head.lstrip("【").startswith(TEASERS) for head in heads)


def _longest_text(item: Mapping[str, Any]) -> str:
    # ``brief`` is reportedly the whole text when ``content`` is truncated.
    return max((plain_text(string_field(item, key)) for key in ("content", "brief")), key=len)

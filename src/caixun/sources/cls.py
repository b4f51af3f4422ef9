"""财联社 (CLS) telegraph: the signed ``get_roll_list`` endpoint (NEWS-APIS.md §3).

Every request carries ``sign``: the base parameters ``app``, ``os`` and ``sv``
are merged with the request's own, sorted by key, query-string encoded, hashed
with SHA-1 and the hex digest hashed again with MD5 (``sign_params``).

What the list keeps and how an item becomes an article:

* VIP items (``type == 20015``) and the paid teasers 【盘中宝】 and 【电报解读】
  are dropped in ``parse_list``; items without an ``id`` too (they have no uid
  to report), but a page whose items all lack one is a changed shape.
* ``content`` is sometimes cut short while ``brief`` is whole, so the longer
  of the two is the body. Either may carry HTML: it is sanitized before its text
  is taken, so markup never reaches the article.
* The title is ``title``, else the leading ``【headline】``, else the first
  sentence; the headline is always stripped from the body.
* An item with no title and no text, or no ``ctime``, raises ``ItemError`` from
  ``to_article`` (``build_article`` names the uid).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any, Mapping
from urllib.parse import urlencode

from caixun.errors import PayloadError
from caixun.model import Article
from caixun.normalize import clean_title, html_to_text, sanitize_html, split_headline
from caixun.sources.base import Entry, Request, Source, build_article

__all__ = ["Telegraph", "sign_params"]

DESKTOP_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
              "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36")
VIP_TYPE = 20015
TEASERS = ("盘中宝", "电报解读")  # paid-content teasers: a headline, then a paywall
TITLE_CHARS = 60
_SENTENCE_END = re.compile(r"[。！？!?]")


def sign_params(params: Mapping[str, str]) -> str:
    """The ``sign`` of exactly these parameters: md5(sha1(sorted query string))."""
    query = urlencode(sorted(params.items()))
    sha1 = hashlib.sha1(query.encode("utf-8")).hexdigest()
    return hashlib.md5(sha1.encode("ascii")).hexdigest()


class Telegraph(Source):
    """财联社电报: the CLS 7x24 telegraph."""

    kind = "cls"
    description = "财联社电报 (www.cls.cn/telegraph), signed get_roll_list"
    defaults = {
        "list_url": "https://www.cls.cn/v1/roll/get_roll_list",
        "detail_url": "https://www.cls.cn/detail/{id}",
        "app": "CailianpressWeb",
        "os": "web",
        "sv": "8.7.9",
        "category": "",  # "" = all; red, watch, announcement, remind, fund, hk_us
        "rn": 50,
        "user_agent": DESKTOP_UA,
        "referer": "https://www.cls.cn/telegraph",
    }

    def list_requests(self) -> list[Request]:
        params = {
            "app": str(self.option("app")), "os": str(self.option("os")),
            "sv": str(self.option("sv")), "category": str(self.option("category")),
            "rn": str(self.option("rn")), "refresh_type": "1",
            "last_time": "",  # empty = the newest page
        }
        signed = (*sorted(params.items()), ("sign", sign_params(params)))
        headers = (("User-Agent", str(self.option("user_agent"))),
                   ("Referer", str(self.option("referer"))),
                   ("Accept", "application/json, text/plain, */*"))
        return [Request(str(self.option("list_url")), params=signed, headers=headers)]

    def parse_list(self, request: Request, payload: Any) -> list[Entry]:
        items = [item for item in _identified(_roll_data(payload)) if not _is_dropped(item)]
        return [Entry(str(item["id"]), item) for item in items]

    def to_article(self, entry: Entry, text: Mapping[str, Any] | None,
                   fetched_at: datetime) -> Article:
        item = entry.fields
        title, body = _title_and_body(_str(item, "title"), _longest_text(item))
        extra = {
            "level": _str(item, "level"),
            "stocks": _names(item.get("stock_list"), "StockID"),
            "subjects": _names(item.get("subjects"), "subject_name"),
        }
        return build_article(
            self, entry.native_id, outlet="财联社", title=title,
            published=item.get("ctime") or None, fetched_at=fetched_at, body_text=body,
            url=str(self.option("detail_url")).format(id=entry.native_id),
            share_url=_str(item, "shareurl"), extra={k: v for k, v in extra.items() if v})


def _roll_data(payload: Any) -> list[Any]:
    if not isinstance(payload, Mapping) or "errno" not in payload:
        raise PayloadError("cls: the payload has no errno envelope")
    if payload["errno"] != 0:
        raise PayloadError(f"cls: errno={payload['errno']!r} msg={payload.get('msg')!r}")
    data = payload.get("data")
    items = data.get("roll_data") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise PayloadError("cls: data.roll_data is missing or not a list")
    return items


def _identified(items: list[Any]) -> list[Mapping[str, Any]]:
    """The items that are objects with an id.

    A page with items of which none has an id is a changed shape, not an empty page.
    """
    found = [item for item in items
             if isinstance(item, Mapping) and item.get("id") not in (None, "")]
    if items and not found:
        raise PayloadError("cls: no item of data.roll_data has an id")
    return found


def _is_dropped(item: Mapping[str, Any]) -> bool:
    if str(item.get("type")) == str(VIP_TYPE):
        return True
    heads = [_str(item, "title")]
    heads += [split_headline(_str(item, key))[0] or "" for key in ("content", "brief")]
    return any(head.lstrip("【").startswith(TEASERS) for head in heads)


def _longest_text(item: Mapping[str, Any]) -> str:
    # ``brief`` is reportedly the whole text when ``content`` is truncated.
    return max((_plain(_str(item, key)) for key in ("content", "brief")), key=len)


def _names(values: Any, key: str) -> list[str]:
    if not isinstance(values, list):
        return []
    return [str(v[key]) for v in values if isinstance(v, Mapping) and v.get(key)]


def _str(item: Mapping[str, Any], key: str) -> str:
    value = item.get(key)
    return value if isinstance(value, str) else ""


def _plain(raw: str) -> str:
    """The text of a field that may hold HTML, one paragraph per line.

    Sanitizing first drops a ``<script>`` with its content instead of keeping
    the script as text.
    """
    return "\n\n".join(html_to_text(sanitize_html(raw)).split("\n"))


def _title_and_body(title: str, text: str) -> tuple[str, str]:
    headline, body = split_headline(text)
    body = body.strip()
    return clean_title(title) or headline or _first_sentence(body), body


def _first_sentence(text: str) -> str:
    """A title for a flash without one: its first sentence, cut to TITLE_CHARS."""
    line = text.split("\n", 1)[0]
    end = _SENTENCE_END.search(line)
    sentence = line[:end.start()] if end else line
    return sentence if len(sentence) <= TITLE_CHARS else sentence[:TITLE_CHARS - 1] + "…"

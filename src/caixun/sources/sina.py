"""新浪财经 7x24 (Sina zhibo): ``api/zhibo/feed`` (NEWS-APIS.md §6).

How an item becomes an article:

* Items are in ``result.data.feed.list``; ``result.status.code != 0`` is a
  payload error.
* ``rich_text`` is ``【headline】body``: the headline is the title (else the
  first sentence) and is stripped from the body. It is sanitized before its
  text is taken, so markup never reaches the article.
* ``ext`` is a JSON-encoded string; it is decoded defensively, and an ``ext``
  that is not valid JSON only loses what it would have added (stocks, the
  fallback url), never the item.
* The url is ``docurl``, else ``ext.docurl``; the time is ``create_time``
  (Beijing time).
* Items without an ``id`` and items marked ``is_delete`` are skipped in
  ``parse_list``; an item with no text, or no ``create_time``, raises
  ``ItemError`` from ``to_article``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Mapping

from caixun.errors import PayloadError
from caixun.model import Article
from caixun.normalize import html_to_text, sanitize_html, split_headline
from caixun.sources.base import Entry, Request, Source, build_article

__all__ = ["Zhibo"]

DESKTOP_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
              "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36")
TITLE_CHARS = 60
_SENTENCE_END = re.compile(r"[。！？!?]")


class Zhibo(Source):
    """新浪财经 7x24: one Sina zhibo feed."""

    kind = "sina"
    description = "新浪财经7x24 (finance.sina.com.cn/7x24), api/zhibo/feed"
    defaults = {
        "list_url": "https://zhibo.sina.com.cn/api/zhibo/feed",
        "zhibo_id": "152",  # 财经 7x24
        "tag_id": "0",  # 0 = all; the other ids differ between reports
        "page_size": 20,  # 20–100 in practice; ≤50 recommended
        "user_agent": DESKTOP_UA,
        "referer": "https://finance.sina.com.cn/7x24/",
    }

    def list_requests(self) -> list[Request]:
        params = (("zhibo_id", str(self.option("zhibo_id"))),
                  ("tag_id", str(self.option("tag_id"))), ("page", "1"),
                  ("page_size", str(self.option("page_size"))), ("dire", "f"), ("dpc", "1"))
        headers = (("User-Agent", str(self.option("user_agent"))),
                   ("Referer", str(self.option("referer"))))
        return [Request(str(self.option("list_url")), params=params, headers=headers)]

    def parse_list(self, request: Request, payload: Any) -> list[Entry]:
        items = [item for item in _identified(_feed(payload)) if not item.get("is_delete")]
        return [Entry(str(item["id"]), item) for item in items]

    def to_article(self, entry: Entry, text: Mapping[str, Any] | None,
                   fetched_at: datetime) -> Article:
        item = entry.fields
        ext = _ext(item)
        title, body = _title_and_body(_plain(_str(item, "rich_text")))
        extra = {"stocks": _names(ext.get("stocks"), "symbol"),
                 "tags": _names(item.get("tag"), "name")}
        return build_article(
            self, entry.native_id, outlet="新浪财经", title=title,
            published=item.get("create_time") or None, fetched_at=fetched_at, body_text=body,
            url=_str(item, "docurl") or _str(ext, "docurl"),
            extra={k: v for k, v in extra.items() if v})


def _feed(payload: Any) -> list[Any]:
    result = payload.get("result") if isinstance(payload, Mapping) else None
    status = result.get("status") if isinstance(result, Mapping) else None
    if not isinstance(result, Mapping) or not isinstance(status, Mapping):
        raise PayloadError("sina: the payload has no result.status envelope")
    if status.get("code") != 0:
        raise PayloadError(f"sina: result.status.code={status.get('code')!r} "
                           f"msg={status.get('msg')!r}")
    items = _dig(result, "data", "feed", "list")
    if not isinstance(items, list):
        raise PayloadError("sina: result.data.feed.list is missing or not a list")
    return items


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _identified(items: list[Any]) -> list[Mapping[str, Any]]:
    """The items that are objects with an id.

    A page with items of which none has an id is a changed shape, not an empty page.
    """
    found = [item for item in items
             if isinstance(item, Mapping) and item.get("id") not in (None, "")]
    if items and not found:
        raise PayloadError("sina: no item of result.data.feed.list has an id")
    return found


def _ext(item: Mapping[str, Any]) -> Mapping[str, Any]:
    """``ext`` decoded: a JSON string inside the JSON; ``{}`` when it is not valid."""
    ext = item.get("ext")
    if isinstance(ext, str):
        try:
            ext = json.loads(ext)
        except ValueError:
            return {}
    return ext if isinstance(ext, Mapping) else {}


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


def _title_and_body(text: str) -> tuple[str, str]:
    headline, body = split_headline(text)
    body = body.strip()
    return headline or _first_sentence(body), body


def _first_sentence(text: str) -> str:
    """A title for a flash without one: its first sentence, cut to TITLE_CHARS."""
    line = text.split("\n", 1)[0]
    end = _SENTENCE_END.search(line)
    sentence = line[:end.start()] if end else line
    return sentence if len(sentence) <= TITLE_CHARS else sentence[:TITLE_CHARS - 1] + "…"

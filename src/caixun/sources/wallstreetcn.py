"""华尔街见闻 (Wallstreetcn) live news: ``apiv1/content/lives`` (NEWS-APIS.md §5).

How an item becomes an article:

* The body is ``content_text`` (plain), else the text of ``content`` (HTML);
  ``content_more``, when present, adds its text after it. Every field is
  sanitized before its text is taken, so markup never reaches the article.
* The title is ``title`` (often empty), else the leading ``【headline】``, else
  the first sentence.
* The url is ``uri``, else the ``detail_url`` option filled with the id.
* Items without an ``id`` are skipped in ``parse_list``; an item with no title
  and no text, or no ``display_time``, raises ``ItemError`` from ``to_article``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Mapping

from caixun.errors import PayloadError
from caixun.model import Article
from caixun.normalize import clean_title, html_to_text, sanitize_html, split_headline
from caixun.sources.base import Entry, Request, Source, build_article

__all__ = ["LiveNews"]

DESKTOP_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
              "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36")
OK_CODE = 20000
TITLE_CHARS = 60
_SENTENCE_END = re.compile(r"[。！？!?]")


class LiveNews(Source):
    """华尔街见闻快讯: one Wallstreetcn live channel."""

    kind = "wallstreetcn"
    description = "华尔街见闻快讯 (wallstreetcn.com/live), one channel of content/lives"
    defaults = {
        "list_url": "https://api-one.wallstcn.com/apiv1/content/lives",
        "detail_url": "https://wallstreetcn.com/livenews/{id}",
        # global-channel 要闻; a-stock-, us-stock-, hk-stock-, forex-, commodity-,
        # financing-channel
        "channel": "global-channel",
        "limit": 100,  # up to 100–200; 200 items cover about 20 hours
        "user_agent": DESKTOP_UA,
        "referer": "https://wallstreetcn.com/",
    }

    def list_requests(self) -> list[Request]:
        params = (("channel", str(self.option("channel"))), ("limit", str(self.option("limit"))))
        headers = (("User-Agent", str(self.option("user_agent"))),
                   ("Referer", str(self.option("referer"))))
        return [Request(str(self.option("list_url")), params=params, headers=headers)]

    def parse_list(self, request: Request, payload: Any) -> list[Entry]:
        return [Entry(str(item["id"]), item) for item in _identified(_lives(payload))]

    def to_article(self, entry: Entry, text: Mapping[str, Any] | None,
                   fetched_at: datetime) -> Article:
        item = entry.fields
        title, body = _title_and_body(_str(item, "title"), _live_text(item))
        url = _str(item, "uri") or str(self.option("detail_url")).format(id=entry.native_id)
        extra = {"score": item.get("score"), "author": _str(_author(item), "display_name")}
        return build_article(
            self, entry.native_id, outlet="华尔街见闻", title=title,
            published=item.get("display_time") or None, fetched_at=fetched_at,
            body_text=body, url=url,
            extra={k: v for k, v in extra.items() if v not in (None, "")})


def _lives(payload: Any) -> list[Any]:
    if not isinstance(payload, Mapping) or "code" not in payload:
        raise PayloadError("wallstreetcn: the payload has no code envelope")
    if payload["code"] != OK_CODE:
        raise PayloadError(f"wallstreetcn: code={payload['code']!r} "
                           f"message={payload.get('message')!r}")
    data = payload.get("data")
    items = data.get("items") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise PayloadError("wallstreetcn: data.items is missing or not a list")
    return items


def _identified(items: list[Any]) -> list[Mapping[str, Any]]:
    """The items that are objects with an id.

    A page with items of which none has an id is a changed shape, not an empty page.
    """
    found = [item for item in items
             if isinstance(item, Mapping) and item.get("id") not in (None, "")]
    if items and not found:
        raise PayloadError("wallstreetcn: no item of data.items has an id")
    return found


def _live_text(item: Mapping[str, Any]) -> str:
    main = _plain(_str(item, "content_text")) or _plain(_str(item, "content"))
    more = _plain(_str(item, "content_more"))
    return "\n\n".join(part for part in (main, more) if part)


def _author(item: Mapping[str, Any]) -> Mapping[str, Any]:
    author = item.get("author")
    return author if isinstance(author, Mapping) else {}


def _str(item: Mapping[str, Any], key: str) -> str:
    value = item.get(key)
    return value if isinstance(value, str) else ""


def _plain(raw: str) -> str:
    """The text of a field that may hold HTML, one paragraph per line.

    Even ``content_text`` goes through the sanitizer: a ``<script>`` in it is
    dropped with its content instead of being kept as text.
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

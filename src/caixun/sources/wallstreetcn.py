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

from datetime import datetime
from typing import Any, Mapping

from caixun.model import Article
from caixun.rules import url_template, whole
from caixun.sources.base import Entry, Request, Source, build_article
from caixun.sources.fields import (DESKTOP_UA, envelope_items, identified, plain_text,
                                   string_field, title_and_body)

__all__ = ["LiveNews"]

OK_CODE = 20000


class LiveNews(Source):
    """华尔街见闻快讯: one Wallstreetcn live channel."""

    kind = "wallstreetcn"
    portal = "wallstreetcn"
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
    option_rules = {"limit": whole(1, 200), "detail_url": url_template("id")}

    def list_requests(self) -> list[Request]:
        params = (("channel", str(self.option("channel"))), ("limit", str(self.option("limit"))))
        headers = (("User-Agent", str(self.option("user_agent"))),
                   ("Referer", str(self.option("referer"))))
        return [Request(str(self.option("list_url")), params=params, headers=headers)]

    def parse_list(self, request: Request, payload: Any) -> list[Entry]:
        return [Entry(str(item["id"]), item) for item in identified(
            _lives(payload), source="wallstreetcn", where="data.items")]

    def to_article(self, entry: Entry, text: Mapping[str, Any] | None,
                   fetched_at: datetime) -> Article:
        item = entry.fields
        title, body = title_and_body(_live_text(item), string_field(item, "title"))
        url = (string_field(item, "uri")
               or str(self.option("detail_url")).format(id=entry.native_id))
        extra = {"score": item.get("score"), "author": string_field(_author(item), "display_name")}
        return build_article(
            self, entry.native_id, outlet="华尔街见闻", title=title,
            published=item.get("display_time") or None, fetched_at=fetched_at,
            body_text=body, url=url,
            extra={k: v for k, v in extra.items() if v not in (None, "")})


def _lives(payload: Any) -> list[Any]:
    return envelope_items(payload, source="wallstreetcn", code_key="code", ok=OK_CODE,
                          message_key="message", where="data.items")


def _live_text(item: Mapping[str, Any]) -> str:
    # Even ``content_text`` goes through the sanitizer: a ``<script>`` in it is
    # dropped with its content instead of being kept as text.
    main = (plain_text(string_field(item, "content_text"))
            or plain_text(string_field(item, "content")))
    more = plain_text(string_field(item, "content_more"))
    return "\n\n".join(part for part in (main, more) if part)


def _author(item: Mapping[str, Any]) -> Mapping[str, Any]:
    author = item.get("author")
    return author if isinstance(author, Mapping) else {}

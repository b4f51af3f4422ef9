"""金十数据 (Jin10) flash: ``get_flash_list`` (NEWS-APIS.md §4).

The API wants the web client's ``x-app-id`` and ``x-version`` headers; both
are options so a changed constant is a setting, not a release.

What the list keeps and how an item becomes an article:

* The envelope ``{status: 200, data: [...]}`` and a bare array are both read.
* Dropped in ``parse_list``: type 2 (articles and VIP promos), ``data.tag ==
  "VIP"``, anything linking to ``xnews.jin10.com`` or ``jin10.com/vip_payment``,
  locked and VIP flashes (a truthy ``lock``, ``vip_level > 0``; either may come
  as text, or null), the ad channel (``channel`` lists 5, as a number or text),
  items without an ``id``, and English duplicates: a flash whose text is mostly
  ASCII letters is dropped when a Chinese flash of the same page lies within
  ``TWIN_SECONDS`` of it (an English flash with no Chinese twin is kept).
* Type 1 (an economic-calendar data point, which has no ``content``) becomes a
  one-line flash such as ``德国 第一季度GDP年率 实际 -0.2% 预期 -0.2% 前值 -0.2%``;
  values that are missing are left out of the line.
* ``content`` is HTML (``<b>``, ``<br/>``): it is sanitized, then reduced to
  text, one paragraph per line. The title is ``data.title``, else the leading
  ``【headline】``, else the first sentence.
* An item with no title and no text, or no ``time``, raises ``ItemError`` from
  ``to_article``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Mapping

from caixun.errors import PayloadError
from caixun.model import Article
from caixun.rules import url_template
from caixun.sources.base import Entry, Request, Source, build_article
from caixun.sources.fields import (DESKTOP_UA, envelope_items, identified, level, plain_text,
                                   string_field, title_and_body, truthy)

__all__ = ["Flash"]

PROMO_LINKS = ("xnews.jin10.com", "jin10.com/vip_payment")
TWIN_SECONDS = 60  # how far apart a Chinese flash and its English copy may be
CALENDAR_TYPE, PROMO_TYPE = "1", "2"  # compared as text: the type may come quoted
AD_CHANNEL = 5  # the ads channel; it may come as text ("5") too
_ASCII_LETTER = re.compile(r"[A-Za-z]")


class Flash(Source):
    """金十数据快讯: the Jin10 7x24 flash."""

    kind = "jin10"
    portal = "jin10"
    description = "金十数据快讯 (www.jin10.com), get_flash_list"
    defaults = {
        "list_url": "https://flash-api.jin10.com/get_flash_list",
        "detail_url": "https://flash.jin10.com/detail/{id}",
        "channel": "-8200",
        "vip": "1",
        "app_id": "bVBF4FyRTn5NJF5n",  # a public web-client constant
        "version": "1.0.0",
        "user_agent": DESKTOP_UA,
        "referer": "https://www.jin10.com/",
        "origin": "https://www.jin10.com",
    }
    option_rules = {"detail_url": url_template("id")}

    def list_requests(self) -> list[Request]:
        params = (("channel", str(self.option("channel"))), ("vip", str(self.option("vip"))),
                  ("max_time", ""))  # empty = the newest page
        headers = (("x-app-id", str(self.option("app_id"))),
                   ("x-version", str(self.option("version"))),
                   ("User-Agent", str(self.option("user_agent"))),
                   ("Referer", str(self.option("referer"))),
                   ("Origin", str(self.option("origin"))))
        return [Request(str(self.option("list_url")), params=params, headers=headers)]

    def parse_list(self, request: Request, payload: Any) -> list[Entry]:
        items = identified(_flashes(payload), source="jin10", where="data")
        items = [item for item in items if not _is_promo(item)]
        chinese = [_seconds(item) for item in items if not _is_english(_flash_text(item))]
        kept = [item for item in items if not _is_english_twin(item, chinese)]
        return [Entry(str(item["id"]), item) for item in kept]

    def to_article(self, entry: Entry, text: Mapping[str, Any] | None,
                   fetched_at: datetime) -> Article:
        item = entry.fields
        title, body = title_and_body(_flash_text(item), string_field(_data(item), "title"))
        extra: dict[str, Any] = {"important": item.get("important", 0)}
        if str(item.get("type")) == CALENDAR_TYPE:
            extra["calendar"] = True
        return build_article(
            self, entry.native_id, outlet="金十数据", title=title,
            published=item.get("time") or None, fetched_at=fetched_at, body_text=body,
            url=str(self.option("detail_url")).format(id=entry.native_id), extra=extra)


def _flashes(payload: Any) -> list[Any]:
    if isinstance(payload, list):  # some related endpoints answer a bare array
        return payload
    if not isinstance(payload, Mapping) or "status" not in payload:
        raise PayloadError("jin10: the payload is neither an array nor a status envelope")
    return envelope_items(payload, source="jin10", code_key="status", ok=200,
                          message_key="message", where="data")


def _is_promo(item: Mapping[str, Any]) -> bool:
    data = _data(item)
    if str(item.get("type")) == PROMO_TYPE or data.get("tag") == "VIP":
        return True
    if truthy(item.get("lock")) or level(item.get("vip_level")) > 0:
        return True  # a locked or VIP flash: its text is behind the paywall
    channels = item.get("channel")
    if isinstance(channels, list) and any(
            level(c) == AD_CHANNEL for c in channels if not isinstance(c, bool)):
        return True
    links = " ".join(string_field(data, key) for key in ("content", "link", "source_link"))
    return any(marker in links for marker in PROMO_LINKS)


def _is_english(text: str) -> bool:
    """Mostly ASCII letters: more than half of the non-space characters."""
    chars = "".join(text.split())
    return len(_ASCII_LETTER.findall(chars)) * 2 > len(chars) > 0


def _is_english_twin(item: Mapping[str, Any], chinese: list[float | None]) -> bool:
    when = _seconds(item)
    if when is None or not _is_english(_flash_text(item)):
        return False
    return any(t is not None and abs(t - when) <= TWIN_SECONDS for t in chinese)


def _seconds(item: Mapping[str, Any]) -> float | None:
    try:
        return datetime.fromisoformat(string_field(item, "time")).timestamp()
    except ValueError:
        return None


def _flash_text(item: Mapping[str, Any]) -> str:
    data = _data(item)
    if str(item.get("type")) == CALENDAR_TYPE:
        return _calendar_text(data)
    return plain_text(string_field(data, "content"))  # one paragraph per line


def _calendar_text(data: Mapping[str, Any]) -> str:
    """``德国 第一季度GDP年率 实际 -0.2% 预期 -0.2% 前值 -0.2%``, missing parts left out."""
    if not string_field(data, "name"):
        return ""  # nothing to say: to_article reports it
    unit = string_field(data, "unit")
    parts = [string_field(data, "country"), string_field(data, "name")]
    for label, key in (("实际", "actual"), ("预期", "consensus"), ("前值", "previous")):
        value = data.get(key)
        if value not in (None, ""):
            parts.append(f"{label} {value}{unit}")
    return " ".join(part for part in parts if part)


def _data(item: Mapping[str, Any]) -> Mapping[str, Any]:
    data = item.get("data")
    return data if isinstance(data, Mapping) else {}

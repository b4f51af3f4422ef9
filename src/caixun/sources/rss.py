"""RSS and Atom feeds (any dialect feedparser reads).

* The native id is a stable hash of the entry's ``id``/``guid``, else of its
  normalized link; entries with neither are dropped by ``parse_list`` (nothing
  to name them by, nothing to dedup them against).
* The outlet is the entry's ``<source>`` title (aggregating feeds carry many
  outlets), else the ``outlet`` option, else the feed's own title.
* The time is read from the raw ``published``/``updated`` string first, because
  feedparser reads a time without an offset as UTC while Chinese feeds mean
  Beijing time (``2025-09-29 20:24:31``); feedparser's UTC struct is the fallback.
* A ``content``/``summary`` of at least ``full_text_min_chars`` characters is the
  body; a shorter one is only a teaser and becomes the digest.
* The fetcher hands over the feed as text, decoded by the charset the HTTP
  ``Content-Type`` names (feeds that name it nowhere else are common), its
  XML declaration, or what the bytes turn out to be when the label is wrong.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

import feedparser  # type: ignore[import-untyped]

from caixun.errors import ConfigError, PayloadError
from caixun.model import Article, normalized_url
from caixun.normalize import BEIJING, clean_title
from caixun.rules import whole
from caixun.slugs import safe_slug
from caixun.sources.base import Entry, Request, Source, SourceConfig, build_article
from caixun.sources.fields import DESKTOP_UA, plain_text, web_url

__all__ = ["Feed", "feed_time"]

# 2025-09-29 20:24:31, with "  +0800" (two spaces) or nothing; ISO 8601 with T and Z.
_NUMERIC_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2})?)(\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?$")


def feed_time(raw: str, parsed_utc: int | None = None) -> datetime | None:
    """The instant of a feed date: the raw string if readable, else the UTC seconds."""
    text = " ".join(raw.split())
    when = _numeric_time(text) if text[:1].isdigit() else _rfc822_time(text)
    if when is None and parsed_utc is not None:
        try:
            when = datetime.fromtimestamp(parsed_utc, timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    return when


def _numeric_time(text: str) -> datetime | None:
    match = _NUMERIC_TIME.match(text)
    if match is None:
        return None
    day, clock, fraction, offset = match.groups()
    if offset and offset != "Z" and ":" not in offset:
        offset = offset[:3] + ":" + offset[3:]
    zone = "+00:00" if offset == "Z" else offset or ""
    try:
        when = datetime.fromisoformat(f"{day}T{clock}{fraction or ''}{zone}")
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=BEIJING)  # no offset: Beijing


# The year of an RFC 822 date: "Mon, 01 Jan 0001 00:00:00 +0000" → "0001".
_RFC822_YEAR = re.compile(r"\b\d{1,2}\s+[A-Za-z]{3,}\s+(\d{1,4})\b")


def _rfc822_time(text: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    written = _RFC822_YEAR.search(text)
    if written and len(written.group(1)) > 2 and int(written.group(1)) != when.year:
        # email.utils reads every year below 100 as two digits (0001 → 2001);
        # a year written with four digits means what it says.
        when = when.replace(year=max(1, int(written.group(1))))
    if when.tzinfo is None:
        # "-0000" means UTC with no known local zone; no zone at all means Beijing.
        return when.replace(tzinfo=timezone.utc if text.endswith("-0000") else BEIJING)
    return when


def entry_id(guid: str, link: str) -> str:
    """A stable 16-hex-digit id from the guid, else from the normalized link ("" if neither)."""
    key = guid.strip() or normalized_url(link)
    if not key:
        return ""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()


class Feed(Source):
    """One RSS or Atom feed."""

    kind = "rss"
    description = "an RSS or Atom feed"
    defaults = {
        "url": "",  # required
        "outlet": "",  # "": the feed's title (an entry's <source> wins over both)
        "outlet_slug": "",  # "": the pinyin slug of the outlet
        "full_text_min_chars": 400,  # a content/summary this long is the body, not a teaser
        "user_agent": DESKTOP_UA,
    }
    option_rules = {"full_text_min_chars": whole(0, 1_000_000)}

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        if not str(self.option("url")).strip():
            raise ConfigError(f"{self.label}: the 'url' option is required")

    def list_requests(self) -> list[Request]:
        headers = (("User-Agent", str(self.option("user_agent"))),) \
            if self.option("user_agent") else ()
        return [Request(str(self.option("url")).strip(), headers=headers, payload="feed")]

    def parse_list(self, request: Request, payload: Any) -> list[Entry]:
        parsed = self.parse_feed(payload)
        feed_title = clean_title(str(parsed.feed.get("title") or ""))
        entries = []
        for raw in parsed.entries:
            fields = entry_fields(raw, feed_title)
            native_id = entry_id(fields["guid"], fields["link"])
            if native_id:
                entries.append(Entry(native_id, fields))
        return entries

    def parse_feed(self, payload: Any) -> Any:
        """feedparser's result; ``PayloadError`` if the document is no feed at all.

        A ``str`` is text the fetcher decoded by the response's charset (see
        ``caixun.fetch.body_charset``): feedparser is told it is UTF-8, so neither
        an XML declaration naming another encoding nor its own guess can garble
        it. ``bytes`` are left to feedparser (BOM, declaration, else UTF-8).
        """
        headers: dict[str, str] = {}
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
            headers = {"content-type": "application/xml; charset=utf-8"}
        if not isinstance(payload, bytes):
            raise PayloadError(f"{self.name} (rss): payload is {type(payload).__name__}, "
                               "not bytes")
        # A stream, never a str: feedparser would fetch a str that looks like a URL.
        parsed = feedparser.parse(io.BytesIO(payload), response_headers=headers)
        if parsed.entries:
            return parsed  # feedparser recovers entries from slightly broken feeds
        if not parsed.get("version") or (parsed.get("bozo") and not parsed.feed.get("title")):
            problem = parsed.get("bozo_exception") or "no RSS or Atom root element"
            raise PayloadError(f"{self.name} (rss): not a feed ({problem}); "
                               f"starts with {payload[:60]!r}")
        return parsed  # a valid feed with no entries: the fetcher decides

    def to_article(self, entry: Entry, text: Mapping[str, Any] | None,
                   fetched_at: datetime) -> Article:
        fields = entry.fields
        outlet, slug = self.outlet(fields)
        body, digest = self.body_and_digest(fields)
        published = feed_time(fields["published"], fields["published_utc"])
        return build_article(
            self, entry.native_id, outlet=outlet, outlet_slug_=slug, title=fields["title"],
            published=published, fetched_at=fetched_at, body_html=body or None,
            digest=digest, url=web_url(fields["link"]))

    def outlet(self, fields: Mapping[str, Any]) -> tuple[str, str | None]:
        """The entry's outlet and, for the configured outlet, the configured slug."""
        if fields["source"]:
            return fields["source"], None
        outlet = str(self.option("outlet")) or fields["feed_title"] or self.name
        slug = str(self.option("outlet_slug")).strip()
        return outlet, safe_slug(slug) if slug else None

    def body_and_digest(self, fields: Mapping[str, Any]) -> tuple[str, str]:
        """(body HTML, digest): the longest text is the body if it is long enough."""
        content, summary = fields["content"], fields["summary"]
        longest = max(content, summary, key=len)
        if len(longest) >= int(self.option("full_text_min_chars")):
            teaser = summary if summary and summary != longest else ""
            return longest, plain_text(teaser, paragraph_break="\n")
        return "", plain_text(longest, paragraph_break="\n")


def entry_fields(raw: Mapping[str, Any], feed_title: str) -> dict[str, Any]:
    """The plain (JSON-friendly) fields of a feedparser entry."""
    source = raw.get("source")
    content = raw.get("content")
    parsed = raw.get("published_parsed") or raw.get("updated_parsed")
    return {
        "guid": str(raw.get("id") or ""),
        "link": str(raw.get("link") or ""),
        "title": str(raw.get("title") or ""),
        "published": str(raw.get("published") or raw.get("updated") or ""),
        "published_utc": calendar.timegm(parsed) if parsed else None,
        "summary": str(raw.get("summary") or ""),
        "content": str(content[0].get("value") or "") if content else "",
        "source": clean_title(str(source.get("title") or "")) if source else "",
        "feed_title": feed_title,
    }

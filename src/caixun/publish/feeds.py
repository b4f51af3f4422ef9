"""Atom feeds and sitemaps, written as bytes.

Entry ids are ``urn:uuid:`` names derived from the article uid, so an entry
keeps its id even if the site moves or the page URL changes.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Sequence

__all__ = ["FeedEntry", "SITEMAP_LIMIT", "SitemapUrl", "atom_feed", "entry_id", "escape",
           "quoteattr", "sitemap_index", "url_entry", "urlset"]

SITEMAP_LIMIT = 50_000  # URLs per sitemap file, the protocol's limit
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class FeedEntry:
    uid: str
    title: str
    link: str  # absolute
    published: datetime
    outlet: str
    summary: str


@dataclass(frozen=True, slots=True)
class SitemapUrl:
    loc: str  # absolute
    lastmod: str | None = None  # YYYY-MM-DD


# escape and quoteattr are xml.sax.saxutils', character for character
# (tests/test_feeds.py): importing that module imports urllib.request, and with it
# http.client, email and ssl, 20 ms and more of a small build's start.

def escape(data: str) -> str:
    """``&``, ``<`` and ``>`` as entities (``xml.sax.saxutils.escape``)."""
    return data.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")


def quoteattr(data: str) -> str:
    """An attribute value, escaped and quoted (``xml.sax.saxutils.quoteattr``)."""
    data = escape(data).replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    if '"' not in data:
        return f'"{data}"'
    if "'" not in data:
        return f"'{data}'"
    return '"' + data.replace('"', "&quot;") + '"'


_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes


def entry_id(uid: str) -> str:
    """``urn:uuid:`` and ``uuid.uuid5(uuid.NAMESPACE_URL, "caixun:" + uid)``, made
    from the SHA-1 digest here (a feed has fifty, a build writes hundreds of feeds)."""
    digest = bytearray(hashlib.sha1(_URL_NAMESPACE + f"caixun:{uid}".encode()).digest()[:16])
    digest[6] = digest[6] & 0x0F | 0x50  # version 5
    digest[8] = digest[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = digest.hex()
    return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _when(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def atom_feed(*, title: str, self_url: str, page_url: str, author: str, language: str,
              entries: Sequence[FeedEntry]) -> bytes:
    """A complete Atom 1.0 document; ``updated`` is the newest entry's time."""
    updated = max((e.published for e in entries), default=_EPOCH)
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<feed xmlns="http://www.w3.org/2005/Atom" xml:lang={quoteattr(language)}>',
        f"  <title>{escape(title)}</title>",
        f"  <id>{escape(self_url)}</id>",
        f'  <link rel="self" type="application/atom+xml" href={quoteattr(self_url)}/>',
        f'  <link rel="alternate" type="text/html" href={quoteattr(page_url)}/>',
        f"  <updated>{_when(updated)}</updated>",
        f"  <author><name>{escape(author)}</name></author>",
        '  <generator uri="https://pypi.org/project/caixun/">caixun</generator>',
    ]
    for entry in entries:
        when = _when(entry.published)
        lines += [
            "  <entry>",
            f"    <title>{escape(entry.title)}</title>",
            f'    <link rel="alternate" type="text/html" href={quoteattr(entry.link)}/>',
            f"    <id>{entry_id(entry.uid)}</id>",
            f"    <published>{when}</published>",
            f"    <updated>{when}</updated>",
            f"    <author><name>{escape(entry.outlet)}</name></author>",
            f"    <summary>{escape(entry.summary)}</summary>",
            "  </entry>",
        ]
    lines.append("</feed>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def url_entry(loc: str, lastmod: str | None = None) -> str:
    """The ``<url>`` line of a sitemap for a page."""
    if lastmod:
        return f"<url><loc>{escape(loc)}</loc><lastmod>{lastmod}</lastmod></url>"
    return f"<url><loc>{escape(loc)}</loc></url>"


def urlset(urls: Iterable[SitemapUrl], entries: Iterable[str] = ()) -> bytes:
    """One sitemap file: ``urls``, then ``entries`` made by :func:`url_entry`."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">']
    lines += [url_entry(url.loc, url.lastmod) for url in urls]
    lines += entries
    lines.append("</urlset>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def sitemap_index(locations: Iterable[str]) -> bytes:
    """A sitemap index pointing at the sitemap files at ``locations``."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">']
    lines += [f"<sitemap><loc>{escape(loc)}</loc></sitemap>" for loc in locations]
    lines.append("</sitemapindex>")
    return ("\n".join(lines) + "\n").encode("utf-8")

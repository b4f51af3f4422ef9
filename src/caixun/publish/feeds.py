"""Atom feeds and sitemaps, written as bytes.

Entry ids are ``urn:uuid:`` names derived from the article uid, so an entry
keeps its id even if the site moves or the page URL changes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Sequence
from xml.sax.saxutils import escape, quoteattr

__all__ = ["FeedEntry", "SITEMAP_LIMIT", "SitemapUrl", "atom_feed", "entry_id", "sitemap_index",
           "urlset"]

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


def entry_id(uid: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'caixun:' + uid)}"


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
        lines += [
            "  <entry>",
            f"    <title>{escape(entry.title)}</title>",
            f'    <link rel="alternate" type="text/html" href={quoteattr(entry.link)}/>',
            f"    <id>{entry_id(entry.uid)}</id>",
            f"    <published>{_when(entry.published)}</published>",
            f"    <updated>{_when(entry.published)}</updated>",
            f"    <author><name>{escape(entry.outlet)}</name></author>",
            f"    <summary>{escape(entry.summary)}</summary>",
            "  </entry>",
        ]
    lines.append("</feed>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def urlset(urls: Iterable[SitemapUrl]) -> bytes:
    """One sitemap file."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">']
    for url in urls:
        lastmod = f"<lastmod>{url.lastmod}</lastmod>" if url.lastmod else ""
        lines.append(f"<url><loc>{escape(url.loc)}</loc>{lastmod}</url>")
    lines.append("</urlset>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def sitemap_index(locations: Iterable[str]) -> bytes:
    """A sitemap index pointing at the sitemap files at ``locations``."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">']
    lines += [f"<sitemap><loc>{escape(loc)}</loc></sitemap>" for loc in locations]
    lines.append("</sitemapindex>")
    return ("\n".join(lines) + "\n").encode("utf-8")

"""Feeds and sitemaps escape and name entries as the standard library does, byte for byte.

``caixun.publish.feeds`` has its own ``escape``, ``quoteattr`` and ``entry_id``:
importing ``xml.sax.saxutils`` imports ``urllib.request`` (and ``http.client``,
``email``, ``ssl``), and ``uuid.uuid5`` builds a UUID object a feed entry only
prints. The results must stay what those functions give.
"""

from __future__ import annotations

import uuid
from xml.sax.saxutils import escape, quoteattr

from hypothesis import given, settings, strategies as st

from caixun.publish import feeds

_MARKUP = st.text(alphabet=st.sampled_from(list("&<>\"'\n\r\t 央a1;#x")), max_size=20)


@settings(max_examples=500)
@given(st.one_of(_MARKUP, st.text()))
def test_escape_and_quoteattr_are_saxutils(text: str) -> None:
    assert feeds.escape(text) == escape(text)
    assert feeds.quoteattr(text) == quoteattr(text)


@settings(max_examples=500)
@given(st.text())
def test_entry_ids_are_uuid5(uid: str) -> None:
    assert feeds.entry_id(uid) == f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'caixun:' + uid)}"


def test_url_entries_are_the_sitemap_lines() -> None:
    urls = [feeds.SitemapUrl("https://a.example/x?a=1&b=<2>", "2024-01-02"),
            feeds.SitemapUrl("https://a.example/")]
    assert feeds.urlset(urls[:1], [feeds.url_entry(urls[1].loc)]) == feeds.urlset(urls)
    assert b"<loc>https://a.example/x?a=1&amp;b=&lt;2&gt;</loc><lastmod>2024-01-02</lastmod>" \
        in feeds.urlset(urls)

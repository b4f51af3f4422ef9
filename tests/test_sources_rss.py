"""RSS/Atom feeds: real items from the corpus, rendered as RSS 2.0 and Atom here.

Expected times are computed in the test from the raw ``published`` strings with
the standard library (and cross-checked with the corpus's own UTC struct), never
with caixun code.
"""

from __future__ import annotations

import json
import random
import re
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo

import pytest

from conftest import SHARED
from caixun.errors import ConfigError, PayloadError
from caixun.model import Article
from caixun.sources.base import ItemError, SourceConfig, load_source
from caixun.sources.rss import Feed

RSS_DAYS = SHARED / "corpus" / "rss-days"
SHANGHAI = ZoneInfo("Asia/Shanghai")
FETCHED = datetime(2026, 9, 1, tzinfo=timezone.utc)
CHANNEL = "财经新闻聚合"
PER_STYLE = 40
SCRIPT = "<script>alert('pwned')</script>"
LINK = re.compile(r"^https?://[\x21-\x7e]+$")


def style(published: str) -> str:
    if re.match(r"^\d{4}-\d{2}-\d{2}T", published):
        return "iso"
    if re.match(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", published):
        return "plain"
    return "rfc822"


def outlet_of(item: dict[str, Any]) -> str:
    source = item.get("source")
    return str(source.get("title") or "") if isinstance(source, dict) else str(source or "")


def usable(item: dict[str, Any]) -> bool:
    title = item.get("title") or ""
    return (bool(title) and "<" not in title and "&" not in title
            and title == " ".join(title.split()) and bool(LINK.match(item.get("link") or ""))
            and outlet_of(item) == " ".join(outlet_of(item).split()))


def load_sample() -> list[dict[str, Any]]:
    """Up to PER_STYLE distinct items of each ``published`` style, with and without source."""
    chosen: dict[str, list[dict[str, Any]]] = {"rfc822": [], "plain": [], "iso": []}
    links: set[str] = set()
    for path in sorted(RSS_DAYS.glob("*.json")):
        for item in json.loads(path.read_text("utf-8"))["articles"]:
            bucket = chosen[style(item.get("published") or "")]
            if usable(item) and item["link"] not in links and len(bucket) < PER_STYLE:
                bucket.append(item)
                links.add(item["link"])
    no_source = [i for i in chosen["rfc822"] if not outlet_of(i)]
    assert no_source or any(not outlet_of(i) for b in chosen.values() for i in b)
    return [item for bucket in chosen.values() for item in bucket]


SAMPLE = load_sample()


def expected_time(item: dict[str, Any]) -> datetime:
    raw = item["published"]
    kind = style(raw)
    if kind == "iso":
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if kind == "plain":
        naive = datetime.strptime(raw[:19], "%Y-%m-%d %H:%M:%S")
        offset = raw[19:].strip()
        zone = datetime.strptime(offset, "%z").tzinfo if offset else SHANGHAI  # none: Beijing
        return naive.replace(tzinfo=zone)
    when = parsedate_to_datetime(raw)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)  # "-0000"


def with_script(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items, one long summary carrying an injected script."""
    out = [dict(i) for i in items]
    target = next(i for i in out if len(i.get("summary") or "") >= 2000)
    target["summary"] = target["summary"] + SCRIPT + "<p onclick=\"steal()\">尾段</p>"
    return out


def rss_xml(items: list[dict[str, Any]], guids: str = "half") -> bytes:
    """RSS 2.0 of the items; ``guids``: "all", "half" (every other item) or "none"."""
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
             f"<title>{escape(CHANNEL)}</title><link>https://example.org/</link>"
             "<description>测试</description>"]
    for n, item in enumerate(items):
        source = outlet_of(item)
        parts.append(
            f"<item><title>{escape(item['title'])}</title><link>{escape(item['link'])}</link>"
            + (f'<guid isPermaLink="false">{escape(item["link"])}#g</guid>'
               if guids == "all" or guids == "half" and n % 2 else "")
            + f"<pubDate>{escape(item['published'])}</pubDate>"
            f"<description>{escape(item.get('summary') or '')}</description>"
            + (f'<source url="https://example.org/src">{escape(source)}</source>'
               if source else "")
            + "</item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


def atom_xml(items: list[dict[str, Any]]) -> bytes:
    parts = ['<?xml version="1.0" encoding="utf-8"?>\n'
             '<feed xmlns="http://www.w3.org/2005/Atom">'
             f"<title>{escape(CHANNEL)}</title><id>urn:caixun:test</id>"
             "<updated>2026-08-13T00:00:00Z</updated>"]
    for item in items:
        source = outlet_of(item)
        parts.append(
            f"<entry><title type=\"text\">{escape(item['title'])}</title>"
            f"<id>{escape(item['link'])}</id>"
            f"<link rel=\"alternate\" href={quoteattr(item['link'])}/>"
            f"<published>{escape(item['published'])}</published>"
            f"<summary type=\"html\">{escape(item.get('summary') or '')}</summary>"
            + (f"<source><title>{escape(source)}</title></source>" if source else "")
            + "</entry>")
    parts.append("</feed>")
    return "".join(parts).encode("utf-8")


def feed(**options: Any) -> Feed:
    options.setdefault("url", "https://example.org/feed.xml")
    source = load_source(SourceConfig("news", "rss", options=options))
    assert isinstance(source, Feed)
    return source


def parse(source: Feed, data: bytes) -> list[Article]:
    [request] = source.list_requests()
    return [source.to_article(e, None, FETCHED) for e in source.parse_list(request, data)]


FORMATS: dict[str, Callable[[list[dict[str, Any]]], bytes]] = {"rss": rss_xml, "atom": atom_xml}


def test_the_sample_covers_every_published_style() -> None:
    styles = {style(i["published"]) for i in SAMPLE}
    assert styles == {"rfc822", "plain", "iso"}
    assert any(i["published"].endswith(("+0800", "+08:00")) and "  " in i["published"]
               for i in SAMPLE)
    assert any(style(i["published"]) == "plain" and len(i["published"]) == 19 for i in SAMPLE)
    assert any(not outlet_of(i) for i in SAMPLE) and any(isinstance(i["source"], dict)
                                                         for i in SAMPLE)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_feed_items_become_articles(fmt: str) -> None:
    source = feed()
    got = parse(source, FORMATS[fmt](with_script(SAMPLE)))
    assert len(got) == len(SAMPLE)
    for item, article in zip(SAMPLE, got):
        assert article.title == item["title"]
        assert article.url == item["link"]
        assert article.outlet == (outlet_of(item) or CHANNEL)
        assert article.published_at == expected_time(item), item["published"]
        assert re.fullmatch(r"news:[0-9a-f]{16}", article.uid)
        assert article.file_id == article.uid.split(":")[1]


def test_times_agree_with_the_corpus_utc_struct() -> None:
    for item in SAMPLE:
        parsed = item.get("published_parsed")
        naive = style(item["published"]) == "plain" and len(item["published"].strip()) == 19
        if parsed and not naive:  # a parser reads a naive time as UTC; we read it as Beijing
            assert expected_time(item) == datetime(*parsed[:6], tzinfo=timezone.utc)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_bodies_are_sanitized(fmt: str) -> None:
    items = with_script(SAMPLE)
    got = parse(feed(), FORMATS[fmt](items))
    for article in got:
        assert "<script" not in article.body_html and "onclick" not in article.body_html
        assert "pwned" not in article.body_text and "pwned" not in article.digest
        assert "\u3000\u3000" not in article.body_html
    target = next(a for a, i in zip(got, items) if SCRIPT in (i.get("summary") or ""))
    assert "尾段" in target.body_text


def test_long_summaries_are_bodies_and_short_ones_digests() -> None:
    source = feed(full_text_min_chars=400)
    long = short = 0
    for item, article in zip(SAMPLE, parse(source, rss_xml(SAMPLE))):
        summary = item.get("summary") or ""
        if len(summary) >= 2000:
            assert article.body_html and article.body_text
            long += 1
        elif 0 < len(summary) < 100 and summary.strip():
            assert article.body_html == "" and article.digest
            short += 1
    assert long and short


@pytest.mark.parametrize("guids", ["all", "none"])
def test_ids_are_stable_across_fetches_and_orders(guids: str) -> None:
    first = {i["link"]: a.uid for i, a in zip(SAMPLE, parse(feed(), rss_xml(SAMPLE, guids)))}
    assert len(set(first.values())) == len(SAMPLE)
    shuffled = SAMPLE[:]
    random.Random(7).shuffle(shuffled)
    again = {i["link"]: a.uid for i, a in zip(shuffled, parse(feed(), rss_xml(shuffled, guids)))}
    assert again == first


def test_the_guid_wins_over_the_link() -> None:
    by_guid = [a.uid for a in parse(feed(), rss_xml(SAMPLE, "all"))]
    by_link = [a.uid for a in parse(feed(), rss_xml(SAMPLE, "none"))]
    assert all(g != k for g, k in zip(by_guid, by_link))


def test_the_outlet_option_and_slug() -> None:
    source = feed(outlet="东方财富网", outlet_slug="eastmoney")
    for item, article in zip(SAMPLE, parse(source, rss_xml(SAMPLE))):
        if outlet_of(item):  # an entry's own <source> wins
            assert article.outlet == outlet_of(item)
        else:
            assert (article.outlet, article.outlet_slug) == ("东方财富网", "eastmoney")


def test_a_feed_without_entries_is_empty_not_an_error() -> None:
    source = feed()
    [request] = source.list_requests()
    assert request.payload == "feed" and request.url == "https://example.org/feed.xml"
    assert source.parse_list(request, rss_xml([])) == []
    assert source.parse_list(request, atom_xml([])) == []


@pytest.mark.parametrize("body", [
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>",
    b'{"code": 0, "data": []}',
    b"<rss version=\"2.0\"><channel><title>",  # truncated before any entry
    b"https://example.org/feed.xml",  # never fetched as a URL by feedparser
])
def test_what_is_not_a_feed_is_a_payload_error(body: bytes) -> None:
    source = feed()
    with pytest.raises(PayloadError, match=r"news \(rss\): not a feed"):
        source.parse_list(source.list_requests()[0], body)


def test_entries_without_time_or_id() -> None:
    source = feed()
    data = (f'<rss version="2.0"><channel><title>{CHANNEL}</title>'
            "<item><title>无时间</title><link>https://example.org/a/1</link></item>"
            "<item><title>无链接无编号</title>"
            "<pubDate>Wed, 08 Oct 2025 08:00:06 +0800</pubDate>"
            "</item></channel></rss>").encode("utf-8")
    [entry] = source.parse_list(source.list_requests()[0], data)  # no id: dropped
    with pytest.raises(ItemError, match=f"news:{entry.native_id}: empty time"):
        source.to_article(entry, None, FETCHED)


def test_the_url_is_required() -> None:
    with pytest.raises(ConfigError, match="url"):
        Feed(SourceConfig("news", "rss"))


def test_beijing_day_of_a_naive_time() -> None:
    item = next(i for i in SAMPLE if style(i["published"]) == "plain"
                and len(i["published"]) == 19)
    [article] = parse(feed(), rss_xml([item]))
    assert article.published_at.utcoffset() == timedelta(hours=8)


def test_a_non_web_link_is_not_kept_as_the_url() -> None:
    data = (f'<rss version="2.0"><channel><title>{CHANNEL}</title><item><title>坏链接</title>'
            "<link>javascript:alert(1)</link><guid>g-1</guid>"
            "<pubDate>Wed, 08 Oct 2025 08:00:06 +0800</pubDate></item></channel></rss>")
    [article] = parse(feed(), data.encode("utf-8"))
    assert article.url == "" and article.title == "坏链接"

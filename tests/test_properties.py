"""Property tests: whatever a title or body is, export → import gives it back."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from caixun.model import Article, PostStyle
from caixun.normalize import BEIJING, sanitize_html
from caixun.publish.jekyll import post_filename, render_post, yaml_double_quoted
from caixun.sources.jekyll import parse_post

HOSTILE_BITS = ['"', "\\", ":", "---", "\n", "\r\n", "'", "#", "😀", "【", "】", "\u3000",
                "<script>", "&amp;", "&lt;", "> ", "\t", "\x00", "\u2028", "\x85", "\ufeff",
                "{{ x }}", "{% raw %}", "- ", "[a](b)", "<>", "<http://x>", "\\>", "\\\\"]
tricky_text = st.lists(st.one_of(st.text(min_size=1, max_size=8), st.sampled_from(HOSTILE_BITS)),
                       min_size=1, max_size=12).map("".join)


def _article(**fields: object) -> Article:
    base = dict(uid="jekyll:202112082206672930", outlet="东财滚动新闻", outlet_slug="emnews",
                title="标题", published_at=datetime(2021, 12, 8, 10, 46, 18, tzinfo=BEIJING),
                file_id="202112082206672930", body_html="<p>正文</p>", body_text="正文",
                url="http://finance.eastmoney.com/news/11060,202112082206672930.html")
    base.update(fields)
    return Article(**base)  # type: ignore[arg-type]


def _round_trip(article: Article) -> Article:
    text = render_post(article)
    return parse_post(text, post_filename(article)).article


@given(tricky_text.filter(lambda t: t.strip()))
@example('他说"好"的')
@example("C:\\path\\")
@example("a: b --- c")
@example("line one\nline two")
@example(" leading and trailing ")
def test_any_title_survives_export_and_import(title: str) -> None:
    article = _article(title=title)
    assert _round_trip(article).title == title


@given(tricky_text)
def test_titles_are_valid_yaml_that_parses_to_the_same_title(title: str) -> None:
    assert yaml.safe_load("title: " + yaml_double_quoted(title)) == {"title": title}


body_html = st.lists(
    st.tuples(st.sampled_from(["p", "li", "blockquote", "td", "strong", "a"]), tricky_text),
    min_size=1, max_size=6,
).map(lambda parts: "".join(f"<p><{t}>{s}</{t}></p>" for t, s in parts))


@settings(max_examples=200)
@given(body_html)
@example("<p><p>&#13</p></p>")  # a reference to CR, which a post file reads back as LF
@example("<p><b>&#1;&#x0d;&#10;</b></p>")
def test_any_html_body_survives_export_and_import(raw: str) -> None:
    clean = sanitize_html(raw)
    article = _article(body_html=clean, body_text="", post_style=PostStyle(body_format="html"))
    back = _round_trip(article)
    assert back.body_html == clean


CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")  # \r included: bodies are LF-only
text_body = tricky_text.filter(
    lambda t: t.strip() and not CONTROL.search(t) and t[0] != "\n" and t[-1] != "\n")


@settings(max_examples=300)
@given(text_body)
@example("精度满足<1%")
@example("<b>not a tag</b> & &amp; &lt;")
@example("> looks like a quote")
@example("\\> a backslash first")
@example("<http://example.com/looks-like-the-link>")
def test_any_text_body_survives_export_and_import(text: str) -> None:
    style = PostStyle(body_format="text", footer="", date_offset="+0800")
    article = _article(body_text=text, digest=text, post_style=style)
    back = _round_trip(article)
    assert back.body_text == text
    assert back.url == article.url


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2099, 12, 31),
                    timezones=st.sampled_from([BEIJING, timezone.utc,
                                               timezone(timedelta(hours=-5))])))
def test_any_time_survives_export_and_import(when: datetime) -> None:
    when = when.replace(microsecond=0)
    article = _article(published_at=when)
    back = _round_trip(article)
    assert back.published_at == when
    assert post_filename(back) == post_filename(article)


@given(body_html)
def test_sanitizing_is_idempotent(raw: str) -> None:
    once = sanitize_html(raw)
    assert sanitize_html(once) == once

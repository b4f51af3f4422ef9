"""Normalization of times, text and identity keys."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from caixun.model import Article, normalized_url
from caixun.normalize import (
    BEIJING,
    beijing_time,
    clean_text,
    clean_title,
    strip_indent,
    text_to_html,
)


@pytest.mark.parametrize("value, expected", [
    ("2021-12-08 13:20:48", "2021-12-08T13:20:48+08:00"),          # naive: Beijing
    ("2021-12-08 13:20:48 +0800", "2021-12-08T13:20:48+08:00"),
    ("2026-07-28T09:33:19.000Z", "2026-07-28T17:33:19+08:00"),
    (1638940848, "2021-12-08T13:20:48+08:00"),                      # Unix seconds
    (1638940848000, "2021-12-08T13:20:48+08:00"),                   # 13 digits: ms
    ("1638940848", "2021-12-08T13:20:48+08:00"),
])
def test_times_become_aware_beijing_times(value: object, expected: str) -> None:
    got = beijing_time(value)  # type: ignore[arg-type]
    assert got.utcoffset() is not None
    assert got.astimezone(BEIJING).isoformat(timespec="seconds") == expected


def test_aware_times_keep_their_instant() -> None:
    utc = datetime(2021, 12, 8, 5, 20, 48, tzinfo=timezone.utc)
    assert beijing_time(utc) == utc


@pytest.mark.parametrize("bad", ["", "   ", "yesterday"])
def test_unusable_times_raise(bad: str) -> None:
    with pytest.raises(ValueError):
        beijing_time(bad)


def test_ideographic_indents_are_removed_as_the_original_site_did() -> None:
    assert strip_indent("\u3000\u3000据悉，\u3000单个全角空格保留") == "据悉，\u3000单个全角空格保留"


def test_titles_are_cleaned_to_one_line() -> None:
    assert clean_title("  未来 \n 首都\u00a0\u00a0金融  ") == "未来 首都 金融"


def test_text_loses_control_characters_but_keeps_lines() -> None:
    assert clean_text("a\r\nb\rc\x00d\x1b\te") == "a\nb\ncd\te"


def test_plain_text_becomes_escaped_paragraphs() -> None:
    assert text_to_html("精度满足<1%\n\n<script>x</script> & 更多\n") == (
        "<p>精度满足&lt;1%</p>\n<p>&lt;script&gt;x&lt;/script&gt; &amp; 更多\n</p>")


def test_identity_keys() -> None:
    assert normalized_url("HTTP://Finance.EastMoney.com/news/1344,1.html#top") == \
        "finance.eastmoney.com/news/1344,1.html"
    assert normalized_url("https://finance.eastmoney.com/news/1344,1.html/") == \
        "finance.eastmoney.com/news/1344,1.html"
    assert normalized_url("") == ""
    when = datetime(2021, 12, 8, tzinfo=BEIJING)
    a = Article("a:1", "o", "o", "标题", when, "1", body_text="正文  内容")
    b = Article("b:2", "p", "p", "标题 ", when, "2", body_text="正文 内容\n")
    c = Article("c:3", "p", "p", "标题", when, "3", body_text="别的内容")
    assert a.content_hash == b.content_hash != c.content_hash


def test_articles_need_aware_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Article("a:1", "o", "o", "t", datetime(2021, 12, 8), "1")


@given(st.integers(min_value=0, max_value=4_102_444_800))  # 1970 … 2100
def test_fast_beijing_date_matches_the_time_zone_database(ts: int) -> None:
    from caixun.publish.paths import beijing_date

    expected = datetime.fromtimestamp(ts, timezone.utc).astimezone(BEIJING).date()
    assert beijing_date(ts) == expected

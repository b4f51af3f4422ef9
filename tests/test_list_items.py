"""A list item's time, cut from the ISO stamp, is what strftime writes: any stored
time, any site time zone."""

from __future__ import annotations

import re

from hypothesis import given, strategies as st

from caixun.archive.base import ArticleRef
from caixun.normalize import EARLIEST_TS, LATEST_TS
from caixun.publish.site import Renderer, SiteConfig

ZONES = ("Asia/Shanghai", "UTC", "America/New_York", "Asia/Kolkata", "Pacific/Chatham")
ITEM = re.compile(r'<time datetime="([^"]+)">([^<]+)</time>')


@given(ts=st.integers(EARLIEST_TS, LATEST_TS - 1), zone=st.sampled_from(ZONES),
       with_date=st.booleans())
def test_a_list_items_time_is_strftimes(ts: int, zone: str, with_date: bool) -> None:
    renderer = Renderer(SiteConfig(title="t", url="https://x.test", timezone=zone))
    ref = ArticleRef(1, "t:1", "标题", "甲", "jia", ts, "f1")
    stamp, shown = ITEM.search(renderer._make_list_item((ref, False, with_date))).groups()
    local = renderer._local(ts)
    assert stamp == local.isoformat()
    assert shown == local.strftime("%m-%d %H:%M" if with_date else "%H:%M")

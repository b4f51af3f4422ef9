"""Outlet slugs: the existing sites' rule, reproduced and made URL-safe."""

from __future__ import annotations

import re

import pytest

from caixun.slugs import is_safe_slug, legacy_slug, outlet_slug, safe_slug
from conftest import POSTS


@pytest.mark.parametrize("outlet, slug", [
    ("人民邮电报", "renminyoudianbao"),
    ("21世纪经济报道", "21shijijingjibaodao"),
    ("36氪", "36ke"),
    ("Wind", "Wind"),
    ("上海证券报", "shanghaizhengquanbao"),
])
def test_slugs_follow_the_existing_sites_rule(outlet: str, slug: str) -> None:
    assert outlet_slug(outlet) == slug


def test_every_media_post_in_the_corpus_matches_its_category() -> None:
    """A media post's tag is '<outlet>新闻' and its category the outlet's slug."""
    checked = 0
    for path in POSTS.iterdir():
        text = path.read_text(encoding="utf-8")
        category = re.search(r"^categories: (.*)$", text, re.M)
        tags = re.search(r"^tags: (.*)$", text, re.M)
        assert category and tags
        if category.group(1) not in ("emnews", "sitenews"):
            assert tags.group(1).endswith("新闻")
            assert outlet_slug(tags.group(1)[:-2]) == category.group(1)
            checked += 1
    assert checked == 1  # the 人民邮电报 post


@pytest.mark.parametrize("outlet, legacy, safe", [
    ("21世纪经济报道  南财理财通", "21shijijingjibaodao  nancailicaitong",
     "21shijijingjibaodao-nancailicaitong"),
    ("安信国际证券(香港)", "anxinguojizhengquan(xianggang)", "anxinguojizhengquan-xianggang"),
    ("Career In 投行PEVC", "Career In touxingPEVC", "career-in-touxingpevc"),
    ("A/B资讯", "A/Bzixun", "a-bzixun"),
])
def test_unsafe_legacy_slugs_are_made_safe(outlet: str, legacy: str, safe: str) -> None:
    assert legacy_slug(outlet) == legacy
    assert not is_safe_slug(legacy)
    assert outlet_slug(outlet) == safe
    assert is_safe_slug(safe)


@pytest.mark.parametrize("slug", ["", ".", "..", "/", "()", "新闻", "a b", "a%20b", "a?b", "a#b"])
def test_safe_slug_never_needs_escaping(slug: str) -> None:
    made = safe_slug(slug)
    assert made and is_safe_slug(made)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", made)

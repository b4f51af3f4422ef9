"""The list items the Renderer formats in Python equal what the templates made.

Article lists (outlet, day and home pages), an article page's other reports and
the home page's outlet blocks were Jinja loops; they are formatted by
``Renderer.list_items``, ``Renderer._also_item`` and ``Renderer.outlet_blocks``
now, for speed. The loops are kept here, verbatim, as
the reference: for any titles, outlets, slugs, times, base paths and time
zones, the bytes must be the same.
"""

from __future__ import annotations

from pathlib import Path

import markupsafe
import pytest
from hypothesis import given, settings, strategies as st

from caixun.archive import ArticleRef, open_archive
from caixun.importer import import_posts
from caixun.publish import site
from caixun.publish.site import Renderer, SiteConfig, build_site
from conftest import POSTS
from site_helpers import tree

REFERENCE_LIST = """\
{% macro article_list(refs, show_outlet=true, with_date=true, also={}) -%}
<ol class="list">
{%- for ref in refs %}
<li><time datetime="{{ ref.published_ts | isotime }}">{{ ref.published_ts | shortdate if with_date else ref.published_ts | clock }}</time> <a href="{{ article_url(ref) }}">{{ ref.title }}</a>{% if show_outlet %} <a class="outlet" href="{{ url(outlet_path(ref.outlet_slug)) }}">{{ ref.outlet }}</a>{% endif %}
{%- if also.get(ref.id) %} <span class="also">也见于{% for other in also[ref.id] %} <a href="{{ article_url(other) }}" title="{{ other.title }}">{{ other.outlet }}</a>{% endfor %}</span>{% endif %}</li>
{%- endfor %}
</ol>
{%- endmacro %}{{ article_list(refs, show_outlet, with_date, also) }}"""

REFERENCE_ALSO = """\
{%- for ref in also %}
<li><a class="outlet" href="{{ url(outlet_path(ref.outlet_slug)) }}">{{ ref.outlet }}</a> <a href="{{ article_url(ref) }}">{{ ref.title }}</a> <time datetime="{{ ref.published_ts | isotime }}">{{ ref.published_ts | shortdate }}</time></li>
{%- endfor %}"""

REFERENCE_OUTLETS = """\
{%- from "_macros.html" import article_list %}
<section class="outlets">
{%- for slug, outlet, refs in outlets %}
<section class="outlet-block">
<h2><a href="{{ url(outlet_path(slug)) }}">{{ outlet }}</a></h2>
{{ article_list(refs, show_outlet=false) }}
</section>
{%- endfor %}
</section>"""

_TEXT = st.text(alphabet=st.sampled_from(list("央行A股&<>\"' 　%/#?é1")), max_size=12)
_SLUG = st.text(alphabet=st.sampled_from(list("abc-_1%&'")), min_size=1, max_size=6)
_REF = st.builds(ArticleRef, id=st.integers(1, 50), uid=st.just("u:1"), title=_TEXT,
                 outlet=_TEXT, outlet_slug=_SLUG,
                 published_ts=st.integers(0, 4_000_000_000), file_id=_SLUG)
_CONFIG = st.builds(SiteConfig, url=st.sampled_from(
    ["http://127.0.0.1:8000", "https://example.org/news/", "https://example.org/a&b"]),
    timezone=st.sampled_from(["Asia/Shanghai", "UTC", "America/New_York"]))


@settings(max_examples=150, deadline=None)
@given(config=_CONFIG, refs=st.lists(_REF, max_size=5), also=st.lists(_REF, max_size=4),
       show_outlet=st.booleans(), with_date=st.booleans())
def test_list_items_equal_the_template_loop(config: SiteConfig, refs: list[ArticleRef],
                                            also: list[ArticleRef], show_outlet: bool,
                                            with_date: bool) -> None:
    renderer = Renderer(config)
    others = {ref.id: also for ref in refs[::2]}
    expected = renderer.env.from_string(REFERENCE_LIST).render(
        refs=refs, show_outlet=show_outlet, with_date=with_date, also=others)
    for _ in range(2):  # the second time from the item cache
        assert str(renderer.list_items(refs, show_outlet, with_date, others)) == expected


@settings(max_examples=150, deadline=None)
@given(config=_CONFIG, also=st.lists(_REF, max_size=5))
def test_also_items_equal_the_template_loop(config: SiteConfig, also: list[ArticleRef]) -> None:
    renderer = Renderer(config)
    expected = renderer.env.from_string(REFERENCE_ALSO).render(also=also)
    made = "".join("\n" + renderer._also_item(ref) for ref in also)
    assert made == expected
    assert "".join("\n" + renderer._also_item(ref) for ref in also) == expected


@settings(max_examples=150, deadline=None)
@given(config=_CONFIG, outlets=st.lists(st.tuples(_SLUG, _TEXT, st.lists(_REF, max_size=3)),
                                        max_size=4))
def test_outlet_blocks_equal_the_template_loop(
        config: SiteConfig, outlets: list[tuple[str, str, list[ArticleRef]]]) -> None:
    renderer = Renderer(config)
    expected = renderer.env.from_string(REFERENCE_OUTLETS).render(outlets=outlets)
    made = renderer.env.from_string(
        '\n<section class="outlets">\n{{- outlet_blocks(outlets) }}\n</section>'
    ).render(outlets=[renderer.outlet_block(*outlet) for outlet in outlets])
    assert made == expected
    assert expected.startswith('\n<section class="outlets">')


# -- the templates' escape (_markup.c) ---------------------------------------------------

class _Html:
    """A value that says how it is written in HTML (as Markup and Jinja's do)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __html__(self) -> str:
        return self.text


class _Text(str):
    """A str subclass (its escape is its value's)."""


_VALUES = st.one_of(
    st.text(), _TEXT, st.integers(), st.floats(allow_nan=False), st.none(), st.booleans(),
    st.text().map(markupsafe.Markup), _TEXT.map(_Html), _TEXT.map(_Text))


def test_the_native_escape_is_built() -> None:
    """The install compiled _markup.c (without it pages are the same, only slower)."""
    assert site._escape is not markupsafe.escape


@settings(max_examples=500, deadline=None)
@given(value=_VALUES)
def test_the_templates_escape_is_markupsafes(value: object) -> None:
    escaped = site._escape(value)
    assert type(escaped) is markupsafe.Markup
    assert escaped == markupsafe.escape(value)


def test_the_compiled_templates_print_through_the_native_escape() -> None:
    template = Renderer(SiteConfig()).env.get_template("article.html")
    assert template.root_render_func.__globals__["escape"] is site._escape


def test_pages_are_the_same_through_markupsafes_escape(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Every page of the corpus' site, with the native escape and with markupsafe's."""
    with open_archive(tmp_path / "caixun.db") as archive:
        import_posts([POSTS], archive)
        build_site(archive, tmp_path / "native", SiteConfig(), jobs=1)
        monkeypatch.setattr(site, "_escape", markupsafe.escape)
        build_site(archive, tmp_path / "markupsafe", SiteConfig(), jobs=1)
    assert tree(tmp_path / "native") == tree(tmp_path / "markupsafe")

"""The sanitizer against hostile bodies, checked in the DOM a browser would build."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser

from caixun.normalize import html_to_text, sanitize_html
from conftest import POSTS


def _dom(html: str) -> LexborHTMLParser:
    return LexborHTMLParser(f"<!DOCTYPE html><body><div id=wrap>{html}</div><i id=after></i>")


def _assert_inert(html: str) -> None:
    """No script-capable element, handler attribute or javascript: URL survives."""
    dom = _dom(html)
    for tag in ("script", "style", "iframe", "object", "embed", "svg", "math", "form",
                "base", "meta", "link"):
        assert not dom.css(tag), f"<{tag}> survived in {html!r}"
    for node in dom.css("#wrap *"):
        for name, value in node.attributes.items():
            assert not name.lower().startswith("on"), f"{name} survived in {html!r}"
            assert name.lower() != "style"
            assert "javascript:" not in (value or "").lower().replace(" ", "")
    # The body cannot swallow or close the page around it.
    after = dom.css_first("#after")
    assert after is not None and after.parent is not None and after.parent.tag == "body"


HOSTILE = [
    "<script>alert(1)</script><p>ok</p>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<p>a</p><script>document.cookie</script>",
    '<img src=x onerror="alert(1)">',
    '<img src="javascript:alert(1)">',
    '<a href="javascript:alert(1)">click</a>',
    '<a href="JaVaScRiPt:alert(1)">click</a>',
    '<a href=" javascript:alert(1)">click</a>',
    '<a href="jav&#x09;ascript:alert(1)">click</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    "<iframe src=//evil.example></iframe>",
    "<style>body{display:none}</style><p>x</p>",
    '<p style="background:url(javascript:alert(1))">x</p>',
    '<div onclick="alert(1)"><p onmouseover=alert(1)>x</p></div>',
    "<svg><script>alert(1)</script></svg>",
    "<math><mi xlink:href=javascript:alert(1)>x</mi></math>",
    "<p><b><i>nested <u>unclosed",
    "</div></div></body><p>escape the page",
    "<table><tr><td>cell<script>alert(1)</script>",
    "<form action=//evil.example><input name=x></form>",
    "<base href=//evil.example/><a href=/x>x</a>",
    "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\"></noscript>",
    "<!--<img src=x onerror=alert(1)>-->",
    "<textarea><script>alert(1)</script></textarea>",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_bodies_are_made_inert(hostile: str) -> None:
    cleaned = sanitize_html(hostile)
    _assert_inert(cleaned)
    assert sanitize_html(cleaned) == cleaned


def test_escaped_markup_stays_text() -> None:
    cleaned = sanitize_html("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>")
    assert cleaned == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert html_to_text(cleaned) == "<script>alert(1)</script>"
    assert not _dom(cleaned).css("script")


def test_good_markup_is_kept() -> None:
    body = ('<p>段落 <em>强调</em> <strong>加粗</strong></p>'
            '<ul><li>一</li></ul><ol><li>二</li></ol>'
            '<table><tbody><tr><th>代码</th><td>600519</td></tr></tbody></table>'
            '<p><img src="https://img.example/k.png" alt="K图"></p>')
    assert sanitize_html(body) == body


def test_links_get_nofollow_noopener() -> None:
    cleaned = sanitize_html('<p><a href="https://quote.eastmoney.com/x">茅台</a></p>')
    link = _dom(cleaned).css_first("a")
    assert link is not None
    assert link.attributes["href"] == "https://quote.eastmoney.com/x"
    assert link.attributes["rel"] == "nofollow noopener"


def test_unclosed_tags_are_closed() -> None:
    cleaned = sanitize_html("<p><b>未闭合")
    assert cleaned == "<p><b>未闭合</b></p>"


def test_clean_real_body_is_kept_byte_for_byte() -> None:
    """The media-column post has a raw '>' and class attributes: already clean."""
    text = (POSTS / "2022-01-11-NW202201112243109259.md").read_text(encoding="utf-8")
    body = text.split("---\n", 2)[2].split("\n\n<http")[0]
    assert "1﹢1>2" in body
    assert sanitize_html(body) == body


def test_text_extraction_drops_markup_and_indents() -> None:
    html = "<p>\u3000\u3000第一段&nbsp;文字</p>\n <p>第二段<br>换行</p><p>  </p>"
    assert html_to_text(html) == "第一段 文字\n第二段\n换行"


def _html_to_text_line_by_line(body_html: str) -> str:
    """html_to_text as first written: spaces collapsed line by line."""
    if not body_html.strip():
        return ""
    from selectolax.lexbor import LexborHTMLParser

    from caixun.normalize import _BLOCK_TAG, _SPACES

    marked = _BLOCK_TAG.sub(lambda m: "\n" + m.group(0), body_html)
    body = LexborHTMLParser(f"<body>{marked}</body>").body
    raw = body.text(deep=True, separator="", strip=False) if body is not None else ""
    lines = (_SPACES.sub(" ", line).strip(" \u3000") for line in raw.splitlines())
    return "\n".join(line for line in lines if line)


_HTML_PIECES = st.sampled_from(["<p>", "</p>", "<br>", "<div>", "</div>", "<li>", "<b>", "</b>",
                                " ", "\t", "\u00a0", "\u2002", "\u200b", "\u3000", "\n", "\r",
                                "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", "&nbsp;",
                                "&amp;", "央行", "a b", "<pre>\n", "<!-- x -->"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_HTML_PIECES | st.text(max_size=3), max_size=40).map("".join))
def test_html_to_text_collapses_spaces_as_line_by_line(body: str) -> None:
    assert html_to_text(body) == _html_to_text_line_by_line(body)

"""The faster read path gives exactly what the original one gave.

``caixun import`` reads a post with ``jekyll.parse_post_bytes`` and indexes it
with ``segment.index_text``; both were rewritten for speed (a reused nh3
sanitizer, no tree comparison for a body whose only change is ``&gt;``, titles
read without YAML when they can be, jieba run on the clauses with letters or
digits only, the grams and static terms made with numpy). The stored tokens and
the articles must not change, so this file keeps verbatim copies of the
original functions, renamed ``reference_*`` (and calling each other, and the
helpers that did not change), and checks the new ones against them: on the
real corpus, and on generated text, HTML and titles. The original
``parse_post_bytes`` is today's with the original helpers patched in.
"""

from __future__ import annotations

import json
import operator
import re
import string
import sys
import zlib
from pathlib import Path
from typing import Any, Callable

import nh3
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser

from caixun import normalize as normalize_module
from caixun import segment
from caixun.errors import PostFormatError
from caixun.normalize import (
    _ATTRIBUTES,
    _BLOCK_TAG,
    _DROP_WITH_CONTENT,
    _LINK_REL,
    _SPACES,
    _TAGS,
    _URL_SCHEMES,
    _tree,
    clean_text,
    html_to_text,
    sanitize_html,
)
from caixun.segment import (
    _ASCII_ALNUM,
    _CJK,
    _CJK_RUN,
    _STATIC_RUN,
    IndexedText,
    _fold,
    _jieba,
    grams,
    index_text,
    normalize,
    pack_terms,
    static_terms,
)
from caixun.sources import jekyll
from caixun.sources.jekyll import _yaml, parse_post_bytes

SHARED = Path(__file__).resolve().parents[2] / "shared"
CORPUS = SHARED / "corpus"
POSTS = CORPUS / "finews-posts"
FEED_DAYS = CORPUS / "rss-days"

if not POSTS.is_dir():  # as conftest: meaningless without the real corpus
    raise RuntimeError(f"the real corpus is missing: {POSTS}")


# -- the original implementations (caixun.segment) ----------------------------------

_REFERENCE_HALF_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_REFERENCE_FULL_WIDTH = re.compile("[\uff01-\uff5e\u3000]")
_REFERENCE_WITH_ASCII = re.compile(r"\S*[A-Za-z0-9]\S*")


def reference_normalize(text: str) -> str:
    """Half-width and upper case: 'ａ股', 'A股' and 'Ａ股' segment alike.

    jieba's dictionary spells mixed terms in upper case (A股, MLF); the tokens
    are lower-cased afterwards, as FTS5 folds case anyway.
    """
    if _REFERENCE_FULL_WIDTH.search(text):  # rare, and translate() is slow on Chinese text
        text = text.translate(_REFERENCE_HALF_WIDTH)
    return text.upper()


def reference_grams(text: str) -> list[str]:
    """Bigrams of every Chinese run, each run's last character as a unigram."""
    out: list[str] = []
    for run in _CJK_RUN.findall(text):  # folding width or case changes no Chinese
        out += map(operator.add, run, run[1:])
        out.append(run[-1])
    return out


def reference_index_text(title: str, digest: str, body_text: str) -> IndexedText:
    text = f"{digest}\n{body_text}" if digest and digest not in body_text else body_text
    static = reference_pack_terms(reference_static_terms(f"{title}\n{text}"))
    return IndexedText(reference_words_column(title), " ".join(reference_grams(title)),
                       reference_words_column(text), " ".join(reference_grams(text)), static)


def reference_words_column(text: str) -> str:
    # Chinese words are found through the grams, so this column keeps only the
    # words with letters or digits (codes, English, A股, 5G): half the tokens.
    # Text without any has nothing for it, and jieba need not run.
    if not _ASCII_ALNUM.search(text):
        return ""
    joined = " ".join(_jieba().cut_for_search(reference_normalize(text)))
    return " ".join(_REFERENCE_WITH_ASCII.findall(joined)).lower()


def reference_static_terms(text: str) -> list[str]:
    """The distinct static-search terms of ``text``, in order of first appearance.

    The rules (and the identical ``staticTerms`` of ``search.js``) are in
    ``caixun.publish.static_search``.
    """
    found: dict[str, None] = {}
    previous: re.Match[str] | None = None
    for match in _STATIC_RUN.finditer(_fold(text)):
        run = match.group()
        adjacent = previous is not None and previous.end() == match.start()
        if run[0] < "\u0080":
            if adjacent and previous is not None:
                found[previous.group()[-1] + run] = None
            found[run] = None
        else:
            if adjacent and previous is not None:
                found[previous.group() + run[0]] = None
            found.update(dict.fromkeys(map(operator.add, run, run[1:])))
        previous = match
    return list(found)


def reference_pack_terms(terms: list[str]) -> bytes:
    """Terms as the archive keeps them: one per line, deflated (about half the bytes)."""
    return zlib.compress("\n".join(terms).encode("utf-8"), 1)


# -- the original implementations (caixun.normalize) --------------------------------

def reference_clean(body: str) -> str:
    return nh3.clean(
        body,
        tags=_TAGS,
        clean_content_tags=_DROP_WITH_CONTENT,
        attributes=_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel=_LINK_REL,
        strip_comments=True,
    )


def reference_sanitize_html(body: str) -> str:
    """Return ``body`` made safe to render inside a page.

    If the sanitized body parses to the same tree as the input, the input was
    already clean and is returned unchanged (byte for byte); otherwise the
    sanitizer's output is returned. Line endings become LF and control
    characters are dropped first.
    """
    body = clean_text(body)
    cleaned = reference_clean(body)
    if cleaned == body or _tree(cleaned) == _tree(body):
        return body
    return cleaned


def reference_html_to_text(body_html: str) -> str:
    """Plain text of a (sanitized) body: one line per block, spaces collapsed."""
    if not body_html.strip():
        return ""
    marked = _BLOCK_TAG.sub(lambda m: "\n" + m.group(0), body_html)
    parsed = LexborHTMLParser(f"<body>{marked}</body>")
    body = parsed.body
    raw = body.text(deep=True, separator="", strip=False) if body is not None else ""
    lines = (_SPACES.sub(" ", line).strip(" \u3000") for line in raw.splitlines())
    return "\n".join(line for line in lines if line)


# -- the original implementations (caixun.sources.jekyll) ---------------------------

def reference_yaml_string(raw: str) -> str | None:
    if not raw.strip():
        return ""
    if raw.lstrip()[0] not in "\"'":
        return raw.strip()  # a plain scalar: taken as the text it is
    try:
        value = yaml.load(raw, Loader=_yaml()[1])
    except yaml.YAMLError:
        return None
    return value if isinstance(value, str) else None


def reference_parse_post_bytes(data: bytes, path: Path) -> Any:
    """``parse_post_bytes`` as it was: every function it calls that changed, the original."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jekyll, "_yaml_string", reference_yaml_string)
        patch.setattr(jekyll, "sanitize_html", reference_sanitize_html)
        patch.setattr(jekyll, "html_to_text", reference_html_to_text)
        return _outcome(parse_post_bytes, data, path)


def _outcome(parse: Callable[[bytes, Path], Any], data: bytes, path: Path) -> Any:
    try:
        parsed = parse(data, path)
    except PostFormatError as exc:
        return ("error", str(exc))
    return ("ok", parsed.article, parsed.repairs, parsed.slug_alias)


# -- the real corpus ------------------------------------------------------------------

def test_every_corpus_post_reads_and_indexes_alike() -> None:
    paths = sorted(p for p in POSTS.iterdir() if p.is_file())
    assert len(paths) > 100
    for path in paths:
        data = path.read_bytes()
        outcome = _outcome(parse_post_bytes, data, path)
        assert outcome == reference_parse_post_bytes(data, path), path.name
        if outcome[0] == "ok":
            article = outcome[1]
            args = (article.title, article.digest, article.body_text)
            assert index_text(*args) == reference_index_text(*args), path.name


def _feed_items() -> list[tuple[str, str]]:
    items = []
    for day in sorted(FEED_DAYS.glob("*.json")):
        for item in json.loads(day.read_text(encoding="utf-8"))["articles"]:
            items.append((str(item.get("title") or ""), str(item.get("summary") or "")))
    return items


def test_every_corpus_feed_item_sanitizes_and_indexes_alike() -> None:
    items = _feed_items()
    assert len(items) > 4000
    for number, (title, summary) in enumerate(items):
        cleaned = sanitize_html(summary)
        assert cleaned == reference_sanitize_html(summary), title
        text = html_to_text(cleaned)
        assert text == reference_html_to_text(cleaned), title
        assert html_to_text(summary) == reference_html_to_text(summary), title
        assert index_text(title, "", text) == reference_index_text(title, "", text), title
        if number % 8 == 0:  # a digest not in the body is indexed before it
            assert index_text("", title, text) == reference_index_text("", title, text), title


# -- generated text -------------------------------------------------------------------

_CHINESE = st.characters(min_codepoint=0x4E00, max_codepoint=0x4E3F)  # few: repeats
_ANY_CJK = st.sampled_from(["\u3400", "\u4dbf", "\u4dc0", "\u4e00", "\u9fff", "\ua000",
                            "\uf8ff", "\uf900", "\ufaff", "\ufb00", "\U00020000", "\u3007"])
_FULL_WIDTH = st.characters(min_codepoint=0xFF01, max_codepoint=0xFF5E) | st.just("\u3000")
_ALNUM_FULL_WIDTH = st.characters(min_codepoint=0xFF10, max_codepoint=0xFF5A)
_ASCII = st.sampled_from(string.ascii_letters + string.digits)
_PUNCTUATION = st.sampled_from(list(",.;:!?()[]{}<>\"'-+#&_%/\\@$*=~|^`"
                                    "，。、；：？！（）“”‘’《》【】…—·｜"))
_SPACE = st.sampled_from([" ", "  ", "\n", "\n\n", "\t", "\r\n", "\r", "\u3000", "\xa0",
                          "\u2028", "\x85", "\x0b", "\x1c"])
# Characters whose case mapping is not one to one, or not context-free.
_CASE = st.sampled_from(["ß", "ſ", "ı", "İ", "\u212a", "ﬁ", "ﬀ", "Σ", "σ", "ς", "\u0345",
                         "ǅ", "Ⅻ", "ⓐ", "𝐀", "ŉ", "ǰ", "ΐ"])
_CHARACTER = st.one_of(_CHINESE, _CHINESE, _CHINESE, _ASCII, _ASCII, _FULL_WIDTH,
                       _ALNUM_FULL_WIDTH, _PUNCTUATION, _SPACE, _CASE, _ANY_CJK,
                       st.characters())
_WORD = st.sampled_from(["A股", "5G", "MLF", "600519", "00700.HK", "GDP", "3.5%", "C919",
                         "人民银行", "央行", "Ａ股", "ｍｌｆ", "１０月"])


def _text(max_pieces: int) -> st.SearchStrategy[str]:
    return st.lists(_CHARACTER | _WORD, max_size=max_pieces).map("".join)


def _repeated(parts: tuple[str, int]) -> str:
    return parts[0] * parts[1]


# Hypothesis draws short lists: texts long enough for index_text's numpy path
# (segment._VECTOR_FROM) are pieces repeated and joined, which also repeats terms.
_LONG = st.lists(st.tuples(_text(30), st.integers(1, 12)).map(_repeated),
                 min_size=1, max_size=6).map("".join)
TITLES = _text(40)
TEXTS = st.one_of(_text(60), _LONG, _LONG)


def _result(function: Callable[..., Any], *args: Any) -> Any:
    """What ``function`` returns, or the error it raises (jieba rejects lone surrogates)."""
    try:
        return ("ok", function(*args))
    except UnicodeError as exc:
        return ("error", type(exc), str(exc))


@settings(max_examples=300)
@given(TITLES, TITLES, TEXTS)
def test_index_text_is_unchanged(title: str, digest: str, body: str) -> None:
    args = (title, digest, body)
    assert _result(index_text, *args) == _result(reference_index_text, *args)


@settings(max_examples=300)
@given(TITLES, TEXTS)
def test_vectorised_columns_equal_the_originals_at_every_length(title: str, text: str) -> None:
    expected = (" ".join(reference_grams(title)), " ".join(reference_grams(text)),
                reference_pack_terms(reference_static_terms(f"{title}\n{text}")))
    assert segment._vector_columns(_fold(title), _fold(text)) == expected
    lowered = (normalize(title).lower(), normalize(text).lower())  # as index_text folds
    assert segment._vector_columns(*lowered) == expected


@settings(max_examples=300)
@given(TEXTS)
def test_terms_grams_and_normalize_are_unchanged(text: str) -> None:
    assert normalize(text) == reference_normalize(text)
    assert grams(text) == reference_grams(text)
    assert static_terms(text) == reference_static_terms(text)
    assert pack_terms(static_terms(text)) == reference_pack_terms(reference_static_terms(text))
    assert _result(segment._words_column, text, normalize(text)) == _result(
        reference_words_column, text)


def test_the_numpy_table_is_the_chinese_class() -> None:
    table = segment._cjk_table()
    chinese = re.compile(f"[{_CJK}]")
    assert [bool(chinese.match(chr(c))) for c in range(0x10000)] == table.tolist()


def test_folding_changes_no_chinese_character_and_makes_none() -> None:
    # What lets the grams and terms be read off the folded text (segment._vector_columns).
    others = "".join(chr(c) for c in range(sys.maxunicode + 1) if not _CJK_RUN.match(chr(c)))
    assert not _CJK_RUN.search(_fold(others))
    chinese = "".join(_CJK_RUN.findall("".join(map(chr, range(0x10000)))))
    assert _fold(chinese) == chinese


# -- generated HTML -------------------------------------------------------------------

_HTML_TEXT = st.lists(_CHARACTER | st.sampled_from([">", "&gt;", "&amp;", "&lt;", "&", "<",
                                                    "&nbsp;", "&#62;", "1>2", "a -> b"]),
                      max_size=12).map("".join)
_TAG_NAMES = st.sampled_from(["p", "div", "br", "span", "a", "b", "img", "pre", "center", "li",
                              "table", "td", "script", "style", "xmp", "textarea", "title",
                              "noscript", "iframe", "svg", "P", "Div"])
_ATTRIBUTE = st.tuples(st.sampled_from(["title", "href", "src", "class", "onclick", "style",
                                        "alt", "width"]),
                       st.sampled_from(['"a>b"', "'a>b'", "x>y", '"http://e.com/?a=1&b=2"',
                                        '"javascript:alert(1)"', '"1"', '"&gt;"', '""']))


@st.composite
def _html(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["text", "open", "close", "comment", "raw"]))
        if kind == "text":
            parts.append(draw(_HTML_TEXT))
        elif kind == "open":
            attributes = draw(st.lists(_ATTRIBUTE, max_size=2))
            parts.append(f"<{draw(_TAG_NAMES)}" + "".join(f" {n}={v}" for n, v in attributes)
                         + draw(st.sampled_from([">", "/>", " >"])))
        elif kind == "close":
            parts.append(f"</{draw(_TAG_NAMES)}>")
        elif kind == "comment":
            parts.append(f"<!--{draw(_HTML_TEXT)}-->")
        else:
            parts.append(draw(st.sampled_from(["<", ">", "</", "<p <br>", "<!", "]]>", "\r\n"])))
    return "".join(parts)


# Bodies nh3 keeps as they are but for their text's ">": the case the
# sanitizer's shortcut (normalize._only_gt_escaped) is for, and its neighbours.
_KEPT_TEXT = st.lists(_CHINESE | _ASCII | st.sampled_from([">", " ", "1>2", "&amp;", "\n"]),
                      max_size=10).map("".join)
_KEPT_TAG = st.sampled_from(["p", "div", "b", "i", "span", "strong", "em", "center", "pre"])


@st.composite
def _kept_html(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        tag = draw(_KEPT_TAG)
        title = draw(st.sampled_from(["", ' title="a>b"', ' class="x"', ' title="&gt;"']))
        parts.append(f"<{tag}{title}>{draw(_KEPT_TEXT)}</{tag}>")
        parts.append(draw(st.sampled_from(["", "\n", "<br>", "&gt;", "<br/>", "<script>1>2</script>",
                                           "<xmp>a>b</xmp>", "<!-- > -->", "<p", ">"])))
    return "".join(parts)


@settings(max_examples=400)
@given(_html() | _kept_html())
def test_sanitizing_and_html_text_are_unchanged(body: str) -> None:
    cleaned = _result(sanitize_html, body)
    assert cleaned == _result(reference_sanitize_html, body)
    assert html_to_text(body) == reference_html_to_text(body)
    if cleaned[0] == "ok":
        assert html_to_text(cleaned[1]) == reference_html_to_text(cleaned[1])


# -- generated titles ---------------------------------------------------------------

_TITLE_CHARACTER = st.one_of(_CHINESE, _ASCII, _PUNCTUATION, _CHARACTER, st.sampled_from(
    ['"', "\\", "\\n", "\\t", "\\u0041", "\\x41", "\\\\", "\x7f", "\x00", "\ufeff",
     "\u2029", "\x85", "\x9f", "\ud7ff", "\ue000", "\ufffd", "\U0001f600", "\t", "#", ": ", "'"]))
_TITLE_FORMS = ['"{}"', '"{}', '{}"', ' "{}"', '"{}" ', "'{}'", '"{}" # x', "{}"]


@settings(max_examples=400)
@given(st.lists(_TITLE_CHARACTER, max_size=20).map("".join), st.sampled_from(_TITLE_FORMS))
def test_titles_read_alike(inner: str, form: str) -> None:
    raw = form.format(inner)
    assert _result(jekyll._yaml_string, raw) == _result(reference_yaml_string, raw)


@pytest.mark.parametrize("raw", [
    '"央行：5G “新基建” 提速"', '"a\\"b"', '"C:\\\\path"', '"\\u4e2d\\t文"', '"\\x41"', '"a\\\nb"',
    '"tab\there"', '" padded "', '""', '"\x85"', '"\u2028"', '"\ufeffBOM"', '"\x7f"',
    '"[A] {b}: c, #d & *e !f |g >h %i @j `k"', "'单引号'", '"a" "b"', '"a"b"',
])
def test_title_examples_read_alike(raw: str) -> None:
    assert jekyll._yaml_string(raw) == reference_yaml_string(raw)


def test_the_sanitizer_keeps_no_raw_text_element() -> None:
    # normalize._only_gt_escaped holds because "&gt;" and ">" read alike in all
    # the text the sanitizer keeps: no element whose text is read raw.
    raw_text = {"script", "style", "xmp", "iframe", "noembed", "noframes", "noscript",
                "plaintext", "textarea", "title"}
    assert not _TAGS & raw_text


# -- the fast paths are taken --------------------------------------------------------

def test_the_fast_paths_are_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each shortcut above checked against the original is one a typical post
    # takes; a shortcut that silently stopped matching would cost only speed.
    def no_call(*args: object) -> Any:
        raise AssertionError("the slow path ran")

    monkeypatch.setattr(yaml, "load", no_call)
    assert jekyll._yaml_string('"央行：5G “新基建” 提速 (A股)"') == "央行：5G “新基建” 提速 (A股)"
    monkeypatch.setattr(normalize_module, "_tree", no_call)
    assert sanitize_html("<p>实现“1+1>2”的效果</p>") == "<p>实现“1+1>2”的效果</p>"
    monkeypatch.setattr(segment, "static_terms", no_call)
    body = "人民银行今日开展MLF操作，" * 10
    assert index_text("央行", "", body).text_grams.startswith("人民 民银 银行 行今")

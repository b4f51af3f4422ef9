"""Read Jekyll post files (``_posts/YYYY-MM-DD-<id>.md``) into articles.

A post of the sites caixun replaces looks like::

    ---
    layout: post
    title: "<headline>"
    date: 2021-12-08 13:20:48 +0800
    categories: emnews
    tags: 东财滚动新闻
    ---

    <digest text, or "> digest" and HTML, or HTML>

    <http://finance.eastmoney.com/news/1344,202112082206704122.html>

    [返回东财滚动新闻](//finews.withounder.com/emnews/)｜[返回首页](//finews.withounder.com/)

``parse_post`` turns one file into an ``Article`` whose ``PostStyle`` records
everything needed to write the same bytes back. What is broken but readable
(an unescaped quote in a title, an empty date, a file name without a date) is
repaired and listed in ``ParsedPost.repairs``; what cannot be read raises
``PostFormatError``.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from caixun.errors import PostFormatError
from caixun.identity import stored_identity
from caixun.model import Article, BodyFormat, PostStyle
from caixun.normalize import (
    BEIJING,
    check_published,
    html_to_text,
    offset_timezone,
    sanitize_html,
    text_to_html,
)
from caixun.publish.jekyll import escape_text_body
from caixun.slugs import is_safe_slug, legacy_slug, safe_slug

__all__ = [
    "POST_SUFFIXES",
    "ParsedPost",
    "iter_post_paths",
    "parse_post",
    "parse_post_bytes",
    "post_files",
    "read_post",
    "uid_for",
    "unescape_text_body",
]

POST_SUFFIXES = (".md", ".markdown")
UID_PREFIX = "jekyll"

_FILE_NAME = re.compile(r"^(?:(\d{4}-\d{2}-\d{2})-)?-?(.+?)\.(?:md|markdown)$")
_KEY_LINE = re.compile(r"^([A-Za-z_][\w-]*):(?: (.*)|)$")
_DATE = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?"
    r"(?:\s*(Z|[+-]\d{2}:?\d{2}))?$"
)
_ID_DATE = re.compile(r"^(?:[A-Z]{2})?(\d{4})(\d{2})(\d{2})\d")
_LINK = re.compile(r"^<((?:https?:)?//[^\s<>]*|)>$")
_TAG = re.compile(r"<[A-Za-z][A-Za-z0-9]*[\s/>]|</[A-Za-z]|<!--")
_FIRST_SENTENCE = re.compile(r"^(.+?[。！？!?；;])")
_KNOWN_KEYS = {"layout", "title", "date", "categories", "category", "tags"}


@dataclass(frozen=True, slots=True)
class ParsedPost:
    article: Article
    repairs: tuple[str, ...] = ()
    slug_alias: str | None = None  # the unsafe category the post was filed under


def uid_for(file_id: str) -> str:
    return f"{UID_PREFIX}:{file_id}"


def iter_post_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Every post file under ``paths`` (files as given, directories recursively)."""
    for path in paths:
        if path.is_dir():
            yield from map(Path, post_files(str(path)))
        else:
            yield path


def post_files(directory: str, on_dir: Callable[[str], None] | None = None) -> Iterator[str]:
    """The post files under ``directory``, recursively, in sorted order, as path strings.

    ``on_dir`` hears of each directory once its entries are listed, before its files.
    """
    for root, dirs, files in os.walk(directory):
        if on_dir is not None:
            on_dir(root)
        dirs.sort()
        prefix = root + os.sep
        for name in sorted(files):
            if name.endswith(POST_SUFFIXES) and not name.startswith("."):
                yield prefix + name


def read_post(path: Path) -> ParsedPost:
    """Read and parse one post file; ``PostFormatError`` names the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PostFormatError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    return parse_post_bytes(data, path)


def parse_post_bytes(data: bytes, path: Path) -> ParsedPost:
    """Parse the bytes of the post file at ``path`` (already read, e.g. to digest them)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PostFormatError(
            str(path), f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from exc
    return parse_post(text, path.name, str(path))


def parse_post(text: str, name: str, where: str | None = None) -> ParsedPost:
    """Parse a post's text; ``name`` is its file name (which carries date and id)."""
    where = where or name
    repairs: list[str] = []
    if "\x00" in text:
        raise PostFormatError(where, "binary data (NUL bytes), not a post")
    if text.startswith("\ufeff"):
        text = text[1:]
        repairs.append("byte-order mark removed")
    text = _line_endings(text, repairs)
    if not text.strip():
        raise PostFormatError(where, "empty file")
    front, body = _split_front_matter(text, where)
    fields, order, extra = _read_front_matter(front, where)
    file_date, file_id = _read_file_name(name, where, repairs)
    category_key = "categories" if "categories" in fields or "category" not in fields else "category"
    parts = _read_body(body)
    title = _read_title(fields.get("title"), parts, repairs)
    published, offset = _read_date(fields.get("date"), file_date, file_id, where, repairs)
    category = fields.get(category_key, "").strip()
    slug, outlet = _read_outlet(category, fields.get("tags", ""), repairs)
    body_html, body_raw = _body_html(parts, repairs)
    beijing_day = published.astimezone(BEIJING).strftime("%Y-%m-%d")
    style = PostStyle(
        layout=fields.get("layout", "post"),
        tags=fields.get("tags", ""),
        category_key=category_key,
        date_offset=offset,
        leading_newlines=parts.leading_newlines,
        digest_quote=parts.quote is not None,
        quote_gap=parts.quote_gap,
        body_format=parts.body_format,
        link=parts.link is not None,
        link_gap=parts.link_gap,
        footer=parts.footer,
        footer_gap=parts.footer_gap,
        trailing_newlines=parts.trailing_newlines,
        file_date=file_date if file_date and file_date != beijing_day else None,
        key_order=tuple(order),
        extra_fields=tuple(extra),
    )
    main_text = _text_body(parts.main) if parts.body_format == "text" else ""
    digest = parts.quote if parts.quote is not None else main_text
    article = Article(
        uid=uid_for(file_id),
        outlet=outlet,
        outlet_slug=slug,
        title=title,
        published_at=published,
        file_id=file_id,
        body_html=body_html,
        body_text=main_text if parts.body_format == "text" else html_to_text(body_html),
        digest=digest,
        url=parts.link or "",
        body_raw=body_raw,
        post_style=style,
        # The old site named a post after its East Money id, and linked the article.
        identity=stored_identity(file_id=file_id, url=parts.link or "", share_url="",
                                 extra={}, post_style=True),
    )
    alias = category if category and category != slug else None
    return ParsedPost(article, tuple(repairs), alias)


def _line_endings(text: str, repairs: list[str]) -> str:
    """The text with LF line endings; a file's line endings are its front matter's.

    A front matter (from the opening ``---`` line to the closing one) without
    a CR makes an LF file: every CR after it belongs to the body (East Money
    separated some articles' paragraphs with CRLF) and is kept, so the post
    is written back byte for byte. A CR in the front matter means the whole
    file was written with CRLF (or CR) line endings, e.g. by a Windows editor:
    every CRLF and lone CR becomes LF, a repair.
    """
    if "\r" not in text:
        return text
    if text.startswith("---\n"):
        end = text.find("\n---\n", 3)
        if end != -1 and "\r" not in text[:end]:
            return text
    repairs.append("CRLF line endings converted to LF")
    return text.replace("\r\n", "\n").replace("\r", "\n")


# -- front matter -------------------------------------------------------------

def _split_front_matter(text: str, where: str) -> tuple[str, str]:
    if not text.startswith("---\n"):
        raise PostFormatError(where, "no front matter (the file does not start with '---')")
    end = text.find("\n---\n", 3)
    if end == -1:
        if text.endswith("\n---"):
            return text[4:-4], ""
        raise PostFormatError(where, "front matter is not closed (no second '---' line)")
    return text[4:end + 1], text[end + 5:]


def _read_front_matter(
    front: str, where: str
) -> tuple[dict[str, str], list[str], list[tuple[str, str]]]:
    fields: dict[str, str] = {}
    order: list[str] = []
    extra: list[tuple[str, str]] = []
    for line in front.splitlines():
        match = _KEY_LINE.match(line)
        if match is None:
            if not order and line.strip():
                raise PostFormatError(where, f"front matter line is not 'key: value': {line!r}")
            # A continuation of the previous field (e.g. a YAML list): kept verbatim.
            extra.append(("", line))
            order.append("")
            continue
        key, value = match.group(1), match.group(2) or ""
        if key in _KNOWN_KEYS and key not in fields:
            fields[key] = value
            order.append(key)
        else:
            extra.append((key, value))
            order.append("")
    return fields, order, extra


def _read_file_name(name: str, where: str, repairs: list[str]) -> tuple[str | None, str]:
    match = _FILE_NAME.match(name)
    if match is None or not match.group(2).strip():
        raise PostFormatError(where, "file name is not '<YYYY-MM-DD>-<id>.md'")
    file_date, file_id = match.group(1), match.group(2)
    if file_date is None:
        repairs.append("file name has no date")
    if not is_safe_slug(file_id):
        file_id = safe_slug(file_id)
        repairs.append(f"file id is not URL-safe; using {file_id!r}")
    return file_date, file_id


def _read_title(raw: str | None, parts: _BodyParts, repairs: list[str]) -> str:
    title = _yaml_string(raw or "")
    if title is None:
        inner = (raw or "").strip()
        title = inner[1:-1] if len(inner) >= 2 and inner[0] == inner[-1] == '"' else inner
        repairs.append("title is not valid YAML (unescaped quotes?); read it verbatim")
    if not title.strip():
        source = parts.quote or unescape_text_body(parts.main) or html_to_text(parts.main)
        title = _first_sentence(source)
        repairs.append(f"title is empty; used the start of the body: {title!r}")
    return title


def _yaml_string(raw: str) -> str | None:
    if not raw.strip():
        return ""
    if raw.lstrip()[0] not in "\"'":
        return raw.strip()  # a plain scalar: taken as the text it is
    simple = _SIMPLE_QUOTED.fullmatch(raw)
    if simple is not None:
        return simple.group(1)
    yaml, loader = _yaml()
    try:
        value = yaml.load(raw, Loader=loader)
    except yaml.YAMLError:
        return None
    return value if isinstance(value, str) else None


@functools.cache
def _yaml() -> tuple[Any, Any]:
    """PyYAML and its fastest safe loader, imported for the first title that needs
    them (few do, see _SIMPLE_QUOTED): a re-import of unchanged files reads none."""
    import yaml

    return yaml, getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# A double-quoted scalar without escapes, of characters YAML takes as they are
# (no control characters, line breaks, BOM or surrogates), is the text between
# its quotes: how nearly every title is written, read ten times faster than
# by starting a YAML parser.
_SIMPLE_QUOTED = re.compile(r'"([\t\x20\x21\x23-\x5b\x5d-\x7e\xa0-\u2027\u202a-\ud7ff'
                            r'\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]*)"')


def _first_sentence(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    match = _FIRST_SENTENCE.match(line)
    sentence = match.group(1) if match else line
    return sentence if len(sentence) <= 60 else sentence[:60] + "…"


def _read_date(
    raw: str | None, file_date: str | None, file_id: str, where: str, repairs: list[str]
) -> tuple[datetime, str | None]:
    text = (raw or "").strip().strip("'\"")
    problem = "is not a date"
    match = _DATE.match(text)
    if match is not None:
        y, mo, d, h, mi, s, offset = match.groups()
        tz = offset_timezone(offset) if offset else BEIJING
        try:
            when = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0),
                            tzinfo=tz)
        except ValueError:
            pass
        else:
            try:
                return check_published(when), offset
            except ValueError as exc:
                problem = f"is out of range ({exc})"
    offset = "+0800" if text.endswith("+0800") else None
    candidates = [(day, "file name") for day in (file_date,) if day]
    candidates += [(day, "id") for day in (_date_from_id(file_id),) if day]
    for fallback, origin in candidates:
        day = datetime.strptime(fallback, "%Y-%m-%d").replace(tzinfo=BEIJING)
        try:
            check_published(day)
        except ValueError:
            continue
        repairs.append(f"date {raw!r} {problem}; used {fallback} from the {origin}")
        return day, offset
    raise PostFormatError(where, f"no usable date (date: {raw!r} {problem}; "
                                 "none in the file name or id)")


def _date_from_id(file_id: str) -> str | None:
    match = _ID_DATE.match(file_id)
    if match is None:
        return None
    y, m, d = match.groups()
    try:
        return datetime(int(y), int(m), int(d)).strftime("%Y-%m-%d")
    except ValueError:
        return None


def _read_outlet(category: str, tags: str, repairs: list[str]) -> tuple[str, str]:
    category, tags = category.strip(), tags.strip()
    if tags.endswith("新闻") and legacy_slug(tags[:-2]) == category:
        outlet = tags[:-2]
    else:
        outlet = tags or category
    if not outlet:
        outlet = "未分类"
        repairs.append("no categories or tags; filed under 未分类")
    slug = category or legacy_slug(outlet)
    if not is_safe_slug(slug):
        fixed = safe_slug(slug)
        repairs.append(f"category {slug!r} is not URL-safe; using {fixed!r}")
        slug = fixed
    return slug, outlet


# -- body -----------------------------------------------------------------------

@dataclass(slots=True)
class _BodyParts:
    leading_newlines: int = 0
    quote: str | None = None
    quote_gap: int = 2
    main: str = ""
    body_format: BodyFormat = "text"
    link: str | None = None
    link_gap: int = 2
    footer: str = ""
    footer_gap: int = 2
    trailing_newlines: int = 0


def _read_body(body: str) -> _BodyParts:
    parts = _BodyParts()
    stripped = body.lstrip("\n")
    parts.leading_newlines = len(body) - len(stripped)
    core = stripped.rstrip("\n")
    parts.trailing_newlines = len(stripped) - len(core)
    lines = core.split("\n") if core else []
    link_at = next((i for i in range(len(lines) - 1, -1, -1) if _LINK.match(lines[i])), None)
    if link_at is not None:
        parts.link = _LINK.match(lines[link_at]).group(1)  # type: ignore[union-attr]
        content, parts.link_gap = _strip_blank_tail(lines[:link_at])
        footer_lines, parts.footer_gap = _strip_blank_head(lines[link_at + 1:])
        parts.footer = "\n".join(footer_lines)
    else:
        content = lines
    _read_content(content, parts)
    return parts


def _strip_blank_tail(lines: list[str]) -> tuple[list[str], int]:
    end = len(lines)
    while end and lines[end - 1] == "":
        end -= 1
    return lines[:end], len(lines) - end + 1


def _strip_blank_head(lines: list[str]) -> tuple[list[str], int]:
    start = 0
    while start < len(lines) and lines[start] == "":
        start += 1
    return lines[start:], start + 1


def _read_content(lines: list[str], parts: _BodyParts) -> None:
    if lines and lines[0].startswith("> "):
        end = next((i for i, ln in enumerate(lines) if not ln.startswith(">")), len(lines))
        quote = [ln[2:] if ln.startswith("> ") else ln[1:] for ln in lines[:end]]
        rest, gap = _strip_blank_head(lines[end:])
        if rest:
            parts.quote, parts.quote_gap, lines = "\n".join(quote), gap, rest
    parts.main = "\n".join(lines)
    parts.body_format = "html" if _TAG.search(parts.main) else "text"


def _text_body(main: str) -> str:
    """A plain-text body's text: unescaped, its CRLF (and lone CR) line breaks as LF."""
    return unescape_text_body(main).replace("\r\n", "\n").replace("\r", "\n")


def _body_html(parts: _BodyParts, repairs: list[str]) -> tuple[str, str | None]:
    """The sanitized body HTML, and the body as read when it cannot be written back
    from the clean fields (``publish.jekyll`` writes it instead, byte for byte)."""
    if parts.body_format == "text":
        text = _text_body(parts.main)
        return text_to_html(text), None if escape_text_body(text) == parts.main else parts.main
    cleaned = sanitize_html(parts.main)
    if cleaned == parts.main:
        return cleaned, None
    repairs.append("body HTML had unsafe or malformed markup; sanitized (raw copy kept)")
    return cleaned, parts.main


_TEXT_ENTITY = re.compile(r"&(lt|amp);")


def unescape_text_body(text: str) -> str:
    """Undo the escaping ``publish.jekyll.escape_text_body`` applies."""
    if text[:2] in ("\\>", "\\\\"):
        text = text[1:]
    return _TEXT_ENTITY.sub(lambda m: "<" if m.group(1) == "lt" else "&", text)

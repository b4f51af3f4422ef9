"""Write articles as Jekyll post files, in the format of the sites caixun replaces.

An imported article carries the ``PostStyle`` it was read with, so a post that
was valid on import is written back byte for byte. An article from a news
source gets the default style: the newest format of those sites (date with
``+0800``, a one-line footer linking to the outlet page and the home page).

A post file is its owner's data: an article written in a post style (an
imported post, an item of a legacy East Money family) gets its body as it was
read or fetched (``Article.body_raw``, kept whenever the clean body would not
give the same bytes), unless ``sanitize`` asks for the allow-listed body.
The site and the feeds always show the sanitized body.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Iterator

from caixun.errors import PublishError
from caixun.model import Article, PostStyle
from caixun.publish.atomic import write_atomic
from caixun.normalize import BEIJING, offset_timezone

__all__ = [
    "default_footer",
    "default_style",
    "escape_text_body",
    "keeps_body_as_read",
    "post_filename",
    "render_post",
    "write_posts",
    "yaml_double_quoted",
]

_ENTITY_LIKE = re.compile(r"&(?=#\d+;|#[xX][0-9A-Fa-f]+;|[A-Za-z][A-Za-z0-9]*;)")
_MARKUP_START = re.compile(r"<(?=[A-Za-z/!?>])")
_YAML_ESCAPES = {
    "\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\x00": "\\0",
    "\x07": "\\a", "\x08": "\\b", "\x0b": "\\v", "\x0c": "\\f", "\x1b": "\\e",
    "\x85": "\\N", "\u2028": "\\L", "\u2029": "\\P", "\ufeff": "\\uFEFF",
}
# Characters YAML does not allow unescaped in a stream.
_YAML_UNPRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def yaml_double_quoted(value: str) -> str:
    """``value`` as a YAML double-quoted scalar on one line."""
    out = []
    for char in value:
        escaped = _YAML_ESCAPES.get(char)
        if escaped is None and _YAML_UNPRINTABLE.match(char):
            code = ord(char)
            escaped = f"\\x{code:02X}" if code <= 0xFF else f"\\u{code:04X}"
        out.append(escaped if escaped is not None else char)
    return '"' + "".join(out) + '"'


def escape_text_body(text: str) -> str:
    """A plain-text body as Markdown that shows the same text.

    Only what would turn into markup is escaped (a ``<`` that opens a tag, an
    ``&`` that starts an entity, a leading ``>`` quote), so ordinary text, such
    as ``精度满足<1%``, is written as it is.
    """
    text = _MARKUP_START.sub("&lt;", _ENTITY_LIKE.sub("&amp;", text))
    if text[:1] in (">", "\\"):
        text = "\\" + text
    return text


def default_footer(article: Article, base_url: str = "") -> str:
    style = article.post_style or default_style(article)
    return style.footer_template.format(tags=style.tags or default_tags(article.outlet),
                                        slug=article.outlet_slug, base=base_url.rstrip("/"))


def default_tags(outlet: str) -> str:
    return outlet if outlet.endswith(("新闻", "消息")) else f"{outlet}新闻"


def default_style(article: Article) -> PostStyle:
    quote = bool(article.digest) and article.digest != article.body_text
    return PostStyle(tags=default_tags(article.outlet), digest_quote=quote,
                     link=bool(article.url or article.share_url))


def post_filename(article: Article) -> str:
    style = article.post_style or default_style(article)
    day = style.file_date or article.published_at.astimezone(BEIJING).strftime("%Y-%m-%d")
    return f"{day}-{article.file_id}.md"


def render_post(article: Article, base_url: str = "", *, sanitize: bool = False) -> str:
    """The bytes (as text) of the article's post file.

    ``sanitize``: the sanitized body even where the body as read is kept.
    """
    style = article.post_style or default_style(article)
    return _front_matter(article, style) + _body(article, style, base_url, sanitize)


def _front_matter(article: Article, style: PostStyle) -> str:
    values = {
        "layout": style.layout,
        "title": yaml_double_quoted(article.title),
        "date": _date_value(article, style),
        style.category_key: article.outlet_slug,
        "tags": style.tags,
    }
    extra = iter(style.extra_fields)
    lines = ["---"]
    for key in style.key_order:
        if key:
            lines.append(f"{key}: {values[key]}" if values[key] else f"{key}:")
        else:
            extra_key, raw = next(extra, ("", ""))
            lines.append(f"{extra_key}: {raw}" if extra_key and raw else
                         f"{extra_key}:" if extra_key else raw)
    lines.append("---")
    return "\n".join(lines) + "\n"


def _date_value(article: Article, style: PostStyle) -> str:
    if style.date_offset is None:
        return article.published_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
    local = article.published_at.astimezone(offset_timezone(style.date_offset))
    return local.strftime("%Y-%m-%d %H:%M:%S") + " " + style.date_offset


def _body(article: Article, style: PostStyle, base_url: str, sanitize: bool = False) -> str:
    out = "\n" * style.leading_newlines
    if style.digest_quote:
        quoted = "\n".join("> " + line for line in article.digest.split("\n"))
        out += quoted + "\n" * style.quote_gap
    if keeps_body_as_read(article) and not sanitize:
        out += article.body_raw or ""
    elif style.body_format == "text":
        out += escape_text_body(article.body_text)
    else:
        out += article.body_html
    if style.link:
        out += "\n" * style.link_gap + f"<{article.url or article.share_url}>"
    footer = default_footer(article, base_url) if style.footer is None else style.footer
    if footer:
        out += "\n" * style.footer_gap + footer
    return out + "\n" * style.trailing_newlines


def keeps_body_as_read(article: Article) -> bool:
    """Whether the article's post gets its body as read (``body_raw``), not sanitized.

    Articles in a post style (imported posts, legacy East Money items) whose
    clean body differs from what was read; others have no post to keep.
    """
    return article.post_style is not None and article.body_raw is not None


def write_posts(
    articles: Iterable[Article], directory: Path, base_url: str = "", *,
    sanitize: bool = False,
) -> Iterator[tuple[Article, Path]]:
    """Write each article's post into ``directory``; yields what was written.

    ``sanitize``: every body as the site shows it (allow-listed), not as read.
    Each post is written atomically; a full disk stops the export with a
    :class:`PublishError`, leaving only whole posts.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PublishError.cannot("create the directory", directory, exc) from exc
    for article in articles:
        path = directory / post_filename(article)
        write_atomic(path, render_post(article, base_url, sanitize=sanitize).encode("utf-8"))
        yield article, path

"""The values that flow between stages: ``Article`` and its Jekyll ``PostStyle``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, Mapping
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Article", "BodyFormat", "PostStyle", "normalized_url"]

BodyFormat = Literal["text", "html"]
DEFAULT_KEY_ORDER = ("layout", "title", "date", "categories", "tags")


@dataclass(frozen=True, slots=True)
class PostStyle:
    """How an article is laid out as a Jekyll post file.

    Existing sites wrote their posts in several slightly different ways over
    time (footers, date with or without offset, a blank line after the front
    matter or not). An imported post keeps the style it was read with, so that
    exporting it reproduces the file byte for byte; a fetched article gets the
    default style, which is the newest format of those sites.
    """

    layout: str = "post"
    tags: str = ""
    category_key: str = "categories"
    date_offset: str | None = "+0800"  # None: the date line has no offset
    leading_newlines: int = 0  # blank lines between the front matter and the body
    digest_quote: bool = False  # the body starts with "> digest"
    quote_gap: int = 2  # newlines after the digest quote
    body_format: BodyFormat = "html"
    link: bool = True  # a "<url>" line follows the body
    link_gap: int = 2  # newlines between the body and the link
    footer: str | None = None  # None: from footer_template; "": no footer; else verbatim
    # Placeholders: {tags}, {slug}, {base} (the jekyll.base_url setting).
    footer_template: str = "[返回{tags}]({base}/category/{slug}.html)｜[返回首页]({base}/)"
    footer_gap: int = 2
    trailing_newlines: int = 0
    file_date: str | None = None  # date in the file name when it differs from the post date
    key_order: tuple[str, ...] = DEFAULT_KEY_ORDER
    extra_fields: tuple[tuple[str, str], ...] = ()  # other front-matter lines, verbatim

    def to_json(self) -> dict[str, Any]:
        """The fields that differ from the default style (most posts share most)."""
        default = _DEFAULT_STYLE
        data = {name: getattr(self, name) for name in self.__dataclass_fields__
                if getattr(self, name) != getattr(default, name)}
        if "key_order" in data:
            data["key_order"] = list(self.key_order)
        if "extra_fields" in data:
            data["extra_fields"] = [list(pair) for pair in self.extra_fields]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PostStyle:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["key_order"] = tuple(known.get("key_order", DEFAULT_KEY_ORDER))
        known["extra_fields"] = tuple(tuple(p) for p in known.get("extra_fields", ()))
        return cls(**known)


_DEFAULT_STYLE = PostStyle()


@dataclass(frozen=True, slots=True)
class Article:
    """One news item, as the archive stores it.

    ``body_html`` is always sanitized; ``body_raw`` is the body exactly as the
    source or the post file gave it, kept only when the clean fields would not
    give the same bytes back. It is never rendered: a post of the old site's
    format is exported with it (``publish.jekyll``), the site shows ``body_html``. ``file_id`` is the id in the Jekyll file name and in the
    page URL (``/<outlet_slug>/<YYYY>/<MM>/<DD>/<file_id>.html``).
    """

    uid: str
    outlet: str
    outlet_slug: str
    title: str
    published_at: datetime
    file_id: str
    body_html: str = ""
    body_text: str = ""
    digest: str = ""
    url: str = ""
    share_url: str = ""
    fetched_at: datetime | None = None
    body_raw: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    post_style: PostStyle | None = None
    # The portal's own id (``eastmoney:NW…``, ``cls:…``; see caixun.identity): one
    # article per identity, whichever list or file brings it. "" = read off the article.
    identity: str = ""

    def __post_init__(self) -> None:
        if self.published_at.tzinfo is None:
            raise ValueError(f"{self.uid}: published_at must be timezone-aware")

    @property
    def imported(self) -> bool:
        """Read from a post file (a post's style, never fetched), not fetched from a source."""
        return self.post_style is not None and self.fetched_at is None

    @property
    def url_key(self) -> str:
        """The normalized original URL, one of the article's identity keys."""
        return normalized_url(self.url)

    @property
    def content_hash(self) -> str:
        """A hash of the normalized title and text, one of the identity keys."""
        text = " ".join((self.title + "\n" + self.body_text).split())
        return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()

    def evolve(self, **changes: Any) -> Article:
        return replace(self, **changes)


def normalized_url(url: str) -> str:
    """Scheme-less, lower-case host, no fragment, no trailing slash: '' if empty."""
    url = url.strip()
    if not url:
        return ""
    parts = urlsplit(url if "//" in url else "//" + url)
    path = parts.path.rstrip("/")
    return urlunsplit(("", parts.netloc.lower(), path, parts.query, "")).lstrip("/")

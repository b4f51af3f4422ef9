"""The contract between a news source family and the fetcher.

A family (East Money rolling news, 财联社, an RSS feed …) is a ``Source``
subclass registered under the entry-point group ``caixun.sources`` with its
``kind`` as the name; the built-in families register themselves exactly as a
third-party package would (see ``pyproject.toml``).

The fetcher drives a source through one round:

1. ``list_requests()``: the requests that list the newest items;
2. ``parse_list(request, payload)``: the items of one list payload, each an
   ``Entry`` that may ask for its full text with ``Entry.text_request``;
3. ``next_page(request, payload, entries)``: the request for the page of older
   items after that one, or None (the default: the family does not page);
4. ``parse_text(entry, payload)``: the fields a full-text payload adds;
5. ``to_article(entry, text, fetched_at)``: one clean ``Article``.

Paging (step 3) lets a round catch up with a burst larger than one page. After
each page the fetcher asks for the next one only while all of these hold: the
page was not empty, it brought an item not seen earlier in the round, none of
its items is stored already (the archive's ``list_hashes``), and fewer than
``max_pages`` pages of that list were read. A family that pages declares the
``max_pages`` option (``PAGING_DEFAULTS``, ``PAGING_RULES``); the others read
one page. Only the first page uses conditional GET (its state is kept under
``request.key``); the fetcher names page n ``<key>:page<n>`` and keeps no state
for it. The first round of a source, with nothing stored, reads ``max_pages``
pages. A later page that fails ends the paging with a note; the items of the
pages read are stored all the same.

Sources never do I/O; they turn configuration into requests and payloads
into values. A payload whose shape is wrong raises ``PayloadError`` (the whole
list is unusable); one bad item raises ``ItemError`` (only that item is
skipped and reported by uid).

A ``NameSource`` (``eastmoney-securities``) lists securities' names, not
articles: the fetcher reads every page of each of its lists (``next_page``
until None, at most ``max_pages``), and stores the names each page's
``parse_names`` gives with the archive's ``learn_securities``, page by page,
under the same health record as a news source. A family's ``default_every``
is its interval when its ``[[sources]]`` table gives no ``every``.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, ClassVar, Literal, Mapping

from caixun.errors import ConfigError, SourceError
from caixun.model import Article, PostStyle
from caixun.normalize import (
    beijing_time,
    check_published,
    clean_text,
    clean_title,
    html_to_text,
    sanitize_html,
    strip_indent,
    text_to_html,
)
from caixun.rules import Rule, http_url, like, whole
from caixun.securities import SecurityName
from caixun.slugs import outlet_slug

__all__ = [
    "DEFAULT_EVERY",
    "Entry",
    "ItemError",
    "NameSource",
    "NamesPage",
    "PAGING_DEFAULTS",
    "PAGING_RULES",
    "Request",
    "Source",
    "SourceConfig",
    "available_kinds",
    "build_article",
    "default_every",
    "entry_hash",
    "load_source",
]

ENTRY_POINT_GROUP = "caixun.sources"
PayloadKind = Literal["json", "jsonp", "text", "feed"]
# What a family that pages adds to its ``defaults`` and ``option_rules``: how
# many pages of one list a round may read (the first page included).
PAGING_DEFAULTS: Mapping[str, Any] = {"max_pages": 5}
PAGING_RULES: Mapping[str, Rule] = {"max_pages": whole(1, 50)}
DEFAULT_EVERY = 60.0  # seconds between polls of a family that names no default_every


class ItemError(SourceError):
    """One item of a payload cannot become an article (it is skipped and reported)."""


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One ``[[sources]]`` table of ``caixun.toml``."""

    name: str
    kind: str
    every: float = 60  # seconds between polls
    options: Mapping[str, Any] = field(default_factory=dict)  # URLs and family settings
    origin: str = ""  # the file it was read from, named in errors

    def option(self, key: str, default: Any) -> Any:
        return self.options.get(key, default)


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP GET a source wants made."""

    url: str
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    payload: PayloadKind = "json"  # how the body is decoded: json, jsonp, text or feed bytes
    key: str = "list"  # names the request within its source (conditional GET state)

    def with_params(self, changes: Mapping[str, str]) -> Request:
        """This request with some parameters set: in place when present, else appended."""
        kept = tuple((k, changes.get(k, v)) for k, v in self.params)
        present = {k for k, _ in self.params}
        added = tuple((k, v) for k, v in changes.items() if k not in present)
        return replace(self, params=kept + added)


@dataclass(frozen=True, slots=True)
class Entry:
    """One item of a list payload, before it becomes an article."""

    native_id: str
    fields: Mapping[str, Any]
    text_request: Request | None = None  # the full text to fetch for this item, if any

    @property
    def list_hash(self) -> str:
        return entry_hash(self.fields)


def entry_hash(fields: Mapping[str, Any]) -> str:
    """A hash of a list entry: when it changes, the item's full text is fetched again."""
    data = json.dumps(fields, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.blake2b(data.encode("utf-8"), digest_size=12).hexdigest()


class Source(ABC):
    """A news source family. Subclasses set ``kind``, ``defaults`` and ``description``.

    Every option given is checked when the source is made (``ConfigError``
    naming the file, the source and the option): by the family's
    ``option_rules``, else by name (``url`` and ``*_url`` must be http(s) URLs,
    ``referer`` and ``origin`` too or ""), else it must be of its default's type.
    """

    kind: ClassVar[str]
    description: ClassVar[str] = ""
    # Every option the family reads, with its default: URLs are plain settings,
    # so a user can point a source at a mirror or a proxy.
    defaults: ClassVar[Mapping[str, Any]] = {}
    # Options that need more than their default's type: ranges, URL templates, forms.
    option_rules: ClassVar[Mapping[str, Rule]] = {}
    # Whose ids the native ids are ("cls", "eastmoney" …): two sources of one
    # portal (two categories of one API) then store a shared item once.
    portal: ClassVar[str] = ""
    # Seconds between polls when the [[sources]] table gives no ``every``.
    default_every: ClassVar[float] = DEFAULT_EVERY

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        unknown = set(config.options) - set(self.defaults)
        if unknown:
            raise ConfigError(
                f"{self.label}: unknown option(s) "
                f"{', '.join(sorted(unknown))}; known: {', '.join(sorted(self.defaults))}")
        for key, value in config.options.items():
            problem = self.option_rule(key).problem(value)
            if problem:
                raise ConfigError(f"{self.label}: option {key} {problem}")

    @classmethod
    def option_rule(cls, key: str) -> Rule:
        """What option ``key`` may be (see the class docstring)."""
        if key in cls.option_rules:
            return cls.option_rules[key]
        if key == "url" or key.endswith("_url"):
            return http_url()
        if key in ("referer", "origin"):
            return http_url(empty_ok=True)
        return like(cls.defaults[key])

    @property
    def label(self) -> str:
        """How errors name this source: "caixun.toml: source 'cls' (cls)"."""
        prefix = f"{self.config.origin}: " if self.config.origin else ""
        return f"{prefix}source {self.config.name!r} ({self.kind})"

    @property
    def name(self) -> str:
        return self.config.name

    def option(self, key: str) -> Any:
        return self.config.options.get(key, self.defaults[key])

    def uid(self, native_id: str) -> str:
        return f"{self.name}:{native_id}"

    def identity(self, native_id: str) -> str:
        """The item's identity across sources and lists (``caixun.identity``): by
        default ``<portal>:<native id>`` when the family names its ``portal``."""
        return f"{self.portal}:{native_id}" if self.portal else ""

    @abstractmethod
    def list_requests(self) -> list[Request]:
        """The requests that list the newest items."""

    @abstractmethod
    def parse_list(self, request: Request, payload: Any) -> list[Entry]:
        """The items of one list payload; ``PayloadError`` if its shape is wrong."""

    def next_page(self, request: Request, payload: Any, entries: list[Entry]) -> Request | None:
        """The request for the older items after this page, or None: no (further) page.

        ``payload`` and ``entries`` are the page's, as ``parse_list`` read them. The
        fetcher decides whether to follow it (see the module docstring) and names
        it; by default a family does not page.
        """
        return None

    @property
    def max_pages(self) -> int:
        """How many pages of one list a round may read: the ``max_pages`` option, else 1."""
        return int(self.option("max_pages")) if "max_pages" in self.defaults else 1

    def parse_text(self, entry: Entry, payload: Any) -> Mapping[str, Any]:
        """Fields a full-text payload adds to ``entry`` (by default: none)."""
        return {}

    @abstractmethod
    def to_article(self, entry: Entry, text: Mapping[str, Any] | None,
                   fetched_at: datetime) -> Article:
        """The clean article of one entry; ``ItemError`` if it cannot be one."""


@dataclass(frozen=True, slots=True)
class NamesPage:
    """What one page of a securities list holds: its names, and the rows left out."""

    names: list[SecurityName]
    skipped: list[str] = field(default_factory=list)  # malformed rows, each a warning line
    ignored: int = 0  # well-formed rows that are no security (an index, a board)


class NameSource(Source):
    """A family whose lists hold securities' names (see the module docstring).

    ``list_requests`` and ``next_page`` work as for news; ``parse_names`` turns
    one page into a ``NamesPage`` (``PayloadError`` if the page is unusable).
    Names are not articles: ``parse_list`` and ``to_article`` are never called.
    """

    @abstractmethod
    def parse_names(self, request: Request, payload: Any) -> NamesPage:
        """The names of one list page; ``PayloadError`` if its shape or status is wrong."""

    def parse_list(self, request: Request, payload: Any) -> list[Entry]:
        raise TypeError(f"{self.label} lists names, not articles: use parse_names")

    def to_article(self, entry: Entry, text: Mapping[str, Any] | None,
                   fetched_at: datetime) -> Article:
        raise TypeError(f"{self.label} lists names, not articles")


def available_kinds() -> dict[str, type[Source]]:
    """Every registered family, built-in or from another package, by kind."""
    kinds: dict[str, type[Source]] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        kinds[point.name] = point.load()
    return kinds


def default_every(kind: str) -> float:
    """The seconds between polls of family ``kind`` when its table gives no ``every``
    (only that family is loaded; an unknown kind gets the general default, and
    ``load_source`` names the problem later)."""
    for point in entry_points(group=ENTRY_POINT_GROUP, name=kind):
        try:
            family = point.load()
        except Exception:  # noqa: BLE001 - load_source reports a family that cannot load
            return DEFAULT_EVERY
        every = getattr(family, "default_every", DEFAULT_EVERY)
        return float(every) if isinstance(every, (int, float)) else DEFAULT_EVERY
    return DEFAULT_EVERY


def load_source(config: SourceConfig) -> Source:
    kinds = available_kinds()
    family = kinds.get(config.kind)
    if family is None:
        prefix = f"{config.origin}: " if config.origin else ""
        raise ConfigError(f"{prefix}source {config.name!r}: unknown kind {config.kind!r} "
                          f"(known: {', '.join(sorted(kinds))})")
    return family(config)


def build_article(
    source: Source,
    native_id: str,
    *,
    outlet: str,
    title: str,
    published: str | int | float | datetime | None,
    fetched_at: datetime,
    body_html: str | None = None,
    body_text: str | None = None,
    digest: str = "",
    url: str = "",
    share_url: str = "",
    outlet_slug_: str | None = None,
    extra: Mapping[str, Any] | None = None,
    post_style: PostStyle | None = None,
    file_id: str | None = None,
    identity: str | None = None,
) -> Article:
    """A clean article from raw source fields; ``ItemError`` names what is missing.

    Give ``body_html`` (sanitized here, the raw copy kept when sanitizing changed
    it) or ``body_text`` (plain text; its HTML is made here). Pairs of U+3000
    indents are removed as the original site did; naive times are Beijing time.
    """
    uid = source.uid(native_id)
    title = clean_title(clean_text(title))
    if not title:
        raise ItemError(f"{uid}: empty title")
    if published is None or published == "":
        raise ItemError(f"{uid}: empty time")
    try:
        when = beijing_time(published)
    except (ValueError, OverflowError, OSError) as exc:
        raise ItemError(f"{uid}: unreadable time {published!r}") from exc
    try:
        check_published(when, fetched_at)
    except ValueError as exc:
        raise ItemError(f"{uid}: time {published!r} is out of range: {exc}") from exc
    outlet = clean_title(outlet) or source.name
    raw_html, html, text = None, "", ""
    if body_html:
        cleaned_input = strip_indent(clean_text(body_html))
        html = sanitize_html(cleaned_input)
        raw_html = body_html if html != body_html else None
        text = html_to_text(html)
    elif body_text:
        text = strip_indent(clean_text(body_text)).strip()
        html = text_to_html(text)
    return Article(
        uid=uid, outlet=outlet, outlet_slug=outlet_slug_ or outlet_slug(outlet), title=title,
        published_at=when, file_id=file_id or native_id, body_html=html, body_text=text,
        digest=clean_text(digest).strip(), url=url.strip(), share_url=share_url.strip(),
        fetched_at=fetched_at, body_raw=raw_html, extra=dict(extra or {}),
        post_style=post_style,
        identity=source.identity(native_id) if identity is None else identity)

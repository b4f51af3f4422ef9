"""Build the static site from the archive: everything, or only what changed.

Two phases, as in Pelican: first decide which pages a build must produce,
then render and write just those. A full build splits the outlets (and the
days) between worker processes. An incremental build reads the archive's
change log since the last build of this output directory and derives the
pages those changes affect: the changed articles and their neighbours in the
outlet, the outlet's front page, its newest numbered pages and feed, the pages
of the securities the articles are (or were) about, the day pages, the home
page, the archive index, the site feed and the sitemap. Every build, full or
incremental, also makes each watch list's feed (``/watch/<name>.xml``) from one
query, written only when its bytes change; the build state records the
watches it was made for, so adding, changing or removing one is built too.

Every file is written atomically (temporary file, then rename) and only when
its bytes differ, and files are removed last. Over a site that was built
before, a first pass writes the new pages, each once every page it links to
exists, with stubs to break the cycles (``NewPages``); the second pass writes
the rest. So an interrupted build leaves only whole files and no link to a
missing page. The build state is saved at the very end, so the next build
redoes whatever the interrupted one did not finish. Errors of the file system
become ``PublishError``s naming the file.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import functools
import hashlib
import html
import itertools
import json
import operator
import os
import pickle
import re
import shutil
import stat
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo
from importlib.resources import files
from pathlib import Path
from typing import (TYPE_CHECKING, Any, Callable, Iterable, Iterator, MutableMapping, Sequence,
                    TypeVar)
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jinja2
import markupsafe
from markupsafe import Markup

from caixun import __version__
from caixun.archive import ArticleRef, BuildState, Archive, Stories, open_archive
from caixun.errors import ConfigError, PublishError
from caixun.memory import release_free_memory
from caixun.model import Article
from caixun.publish import feeds, paths, static_search
from caixun.publish.feeds import (FeedEntry, SitemapUrl, atom_feed, sitemap_index, url_entry,
                                   urlset)
from caixun.publish.produced import PathSet
from caixun.securities import MARKETS
from caixun.watch import Watch

if TYPE_CHECKING:
    from caixun.workers import WorkerPool

__all__ = ["BuildReport", "SiteConfig", "build_site"]

FEED_SIZE = 50
ALSO_SHOWN = 10  # other reports of the story listed on an article page
HOME_PER_OUTLET = 5
ITEM_CACHE = 20_000  # formatted list items and links a Renderer keeps (each kind)
SUMMARY_LENGTH = 160  # characters of a feed entry's summary (as newest_with_summary)
WATCHES_MARK = "+watches:"  # in a build state's fingerprint, before the watches' digest
# Headings of the stock index, market by market (caixun.securities.MARKETS).
MARKET_NAMES = {"SH": "沪市", "SZ": "深市", "BJ": "北交所", "HK": "港股", "US": "美股"}


def _native_escape() -> Callable[[Any], Markup]:
    """markupsafe.escape in one C call (``_markup.c``), or itself where no compiler built it."""
    try:
        from caixun.publish._markup import escape
    except ImportError:
        return markupsafe.escape
    return escape


# What the templates print values through, and the list items' markup is formatted
# with (f-strings: Markup.format goes through string.Formatter, in Python).
_escape = _native_escape()

# The securities an article page links: (code, current name or "") in code order.
StockLinks = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class SiteConfig:
    title: str = "财讯"
    url: str = "http://127.0.0.1:8000"
    language: str = "zh-CN"
    timezone: str = "Asia/Shanghai"
    per_page: int = 50
    refresh: int = 0  # seconds; list pages reload themselves when > 0
    theme: str = ""  # a directory whose templates override the built-in ones
    stories: bool = True  # home and day pages show each story once, with its outlets

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")

    @property
    def base_path(self) -> str:
        return urlsplit(self.url).path.rstrip("/")

    @property
    def tz(self) -> tzinfo:
        try:
            return ZoneInfo(self.timezone)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"site.timezone: unknown time zone {self.timezone!r}") from exc

    def check(self) -> None:
        if self.per_page < 1:
            raise ConfigError("site.per_page must be at least 1")
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise ConfigError(f"site.url must be an absolute http(s) URL, not {self.url!r}")
        if self.theme and not Path(self.theme).is_dir():
            raise ConfigError(f"site.theme: {self.theme} is not a directory")
        self.tz  # noqa: B018 - validates the zone name


@dataclass(slots=True)
class BuildReport:
    mode: str = "incremental"  # "full", "incremental" or "unchanged"
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    seconds: float = 0.0
    written_paths: list[str] = field(default_factory=list)

    def merge(self, other: BuildReport) -> None:
        self.written += other.written
        self.unchanged += other.unchanged
        self.removed += other.removed
        self.written_paths += other.written_paths

    def summary(self) -> str:
        return (f"{self.mode} build: {self.written} files written, {self.unchanged} unchanged, "
                f"{self.removed} removed in {self.seconds:.2f} s")


# -- writing files ---------------------------------------------------------------

# Directories a writer remembers having made: a site of 1,000,000 articles has
# some 700,000 of them, and a set of every one grew with it in each worker.
DIRS_KEPT = 10_000


class SiteWriter:
    """Writes files under ``root`` atomically, and only when their bytes differ.

    Removals wait for :meth:`finish`, so a page goes only once every page that
    linked to it has been rewritten. An ``OSError`` (full disk, read-only file
    system, a directory in the way) becomes a :class:`PublishError` naming the
    file, and the temporary file is removed.
    """

    def __init__(self, root: Path, record_paths: bool = False, fresh: bool = False) -> None:
        self.root = root
        # A directory that held no site when the build began: no file there can
        # hold a page's bytes, and reading each target first (a stat of a missing
        # file and its exception, 3.5 µs) was 2-3 % of a full build.
        self._compare = not fresh
        self._root = str(root)
        # One directory of temporary files per process: creating a file locks its
        # directory, and the workers of a full build spun for a shared one's lock
        # (rwsem_spin_on_owner: 10 % of perf's samples of a full build on ext4).
        self.tmp = root / paths.TMP_DIR / str(os.getpid())
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PublishError.cannot("write", root, exc) from exc
        self.report = BuildReport()
        self.produced = PathSet()  # the paths put: compact, a full build gathers them all
        self.done: frozenset[str] = frozenset()  # written whole by the first pass (NewPages)
        self._removals: dict[str, None] = {}
        self._dirs: set[str] = set()  # made already (at most DIRS_KEPT: see _make_parent)
        self._tmp = str(self.tmp)
        self._record = record_paths
        self._counter = 0

    def wants(self, path: str) -> bool:
        """Whether to render ``path`` and put it: not when the first pass wrote it."""
        return path not in self.done

    def put(self, path: str, data: bytes) -> None:
        self.produced.add(path)
        target = f"{self._root}/{path}"
        if self._compare and _holds(target, data):
            self.report.unchanged += 1
            return
        self._replace(path, data)
        self.report.written += 1
        if self._record:
            self.report.written_paths.append(path)

    def _replace(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` (relative to the root) through a temporary file."""
        # Plain strings and os calls: pathlib took half the time of writing a page.
        target = f"{self._root}/{path}"
        self._make_parent(target.rpartition("/")[0])
        self._counter += 1
        tmp = f"{self._tmp}/{self._counter}"
        try:
            _write_new(tmp, data)
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise PublishError.cannot("write", Path(target), exc) from exc

    def _make_parent(self, parent: str) -> None:
        if parent in self._dirs:
            return
        if len(self._dirs) >= DIRS_KEPT:
            self._dirs.clear()  # one mkdir call more for a directory met again
        try:
            # Tolerates a directory another worker makes meanwhile, at any level.
            _make_dirs(parent)
        except OSError as exc:
            folder = Path(parent)
            blocker = next((d for d in (folder, *folder.parents)
                            if d.exists() and not d.is_dir()), None)
            if blocker is not None:  # name the file, not whichever directory failed
                raise PublishError(str(blocker), "cannot create the directory: "
                                   "a file is in the way") from exc
            raise PublishError.cannot("create the directory", folder, exc) from exc
        self._dirs.add(parent)

    def remove(self, path: str) -> None:
        """Remove ``path`` at :meth:`finish`."""
        self._removals[path] = None

    def removals(self) -> tuple[str, ...]:
        """The paths to remove at :meth:`finish`, in order."""
        return tuple(self._removals)

    def finish(self) -> None:
        """Carry out the removals (never of a file this build wrote); drop emptied directories."""
        emptied: set[Path] = set()
        for path in self._removals:
            if path in self.produced:
                continue
            target = self.root / path
            try:
                target.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise PublishError.cannot("remove", target, exc) from exc
            self.report.removed += 1
            emptied.add(target.parent)
        self._removals.clear()
        for directory in sorted(emptied, reverse=True):
            # Up while emptied: a security's last pages leave stock/<code>/page/ and stock/<code>/.
            while directory != self.root and self.root in directory.parents:
                try:
                    directory.rmdir()
                except OSError:  # not empty: it stays
                    break
                directory = directory.parent

    def take_over(self, first: NewPages) -> None:
        """Go on after ``first``: what it wrote whole counts as written by this build."""
        self.done = frozenset(first.whole)
        self.produced |= first.whole
        self._dirs |= first._dirs
        self._counter = first._counter  # the same directory of temporary files
        self.report.merge(first.report)


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


def _make_dirs(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)``, asking mkdir first: a page's new directory
    most often has its parent, which makedirs looks up first. A full build of the
    10,000 bench posts (nearly a new directory a page) made 33,001 stat and mkdir
    calls for its directories, now 24,047; its CPU time 1.5-5 % less."""
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):  # a file in the way, as makedirs says it
            raise
    except FileNotFoundError:
        head = path.rpartition("/")[0]
        if not head or head == path:
            raise
        _make_dirs(head)
        try:
            os.mkdir(path)
        except FileExistsError:  # made meanwhile (another worker)
            if not os.path.isdir(path):
                raise


def _write_new(path: str, data: bytes) -> None:
    """``data`` into the file ``path``, with os calls: open() and its buffered file
    object took a third of the time of writing a page (10 µs of 25-30 on tmpfs)."""
    fd = os.open(path, _CREATE, 0o666)
    try:
        view = memoryview(data)
        while view:  # a regular file takes it all at once, but write() may write less
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _holds(target: str, data: bytes) -> bool:
    """Whether ``target`` is a file holding exactly ``data``.

    Anything unreadable (a corrupt or truncated page, a directory or a pipe in
    its place) does not, so it is rewritten, or fails with a clear error.
    """
    try:
        info = os.stat(target)
        if not (stat.S_ISREG(info.st_mode) and info.st_size == len(data)):
            return False
        with open(target, "rb") as file:
            return file.read() == data
    except OSError:
        return False


_HREF = re.compile(rb'(?<![\w-])href="([^"]*)"')
# A link on a page: <a …href="…">text</a>, or <link …href="…"> in the head.
_LINK = re.compile(rb'<a\b[^>]*?(?<![\w-])href="(?P<href>[^"]*)"[^>]*>(?P<text>.*?)</a>'
                   rb'|<link\b[^>]*?(?<![\w-])href="(?P<head>[^"]*)"[^>]*>', re.S)


class NewPages(SiteWriter):
    """The first pass of a build over a built site: the HTML pages not on disk yet.

    No page may link to a page that does not exist, even for an instant (a
    build can be killed at any point). Writing each page before the pages
    that link to it cannot work alone: a new article and its new neighbour
    link each other, as do a new day page and its articles. So a page put
    here is written whole when every page it links to exists; otherwise
    it is held in memory and written whole as soon as they do. Meanwhile a
    *stub* stands in for it where needed: the page with its links to missing
    pages dropped (their text kept). A page missing only one page waits
    unwritten (mostly its next neighbour, which comes next); one missing
    more, or missing a page that itself waits, is written as a stub at once,
    which breaks every cycle. So each new article is rendered once and
    written once or twice (1.5 times along a run of new articles), and a
    reader may meet a stub only while a build runs (or after a crash, until
    the next build). What is still held at :meth:`close` keeps its stub; the
    second pass writes it whole, after the pages it links to.
    """

    def __init__(self, root: Path, config: SiteConfig, record_paths: bool = False) -> None:
        super().__init__(root, record_paths)
        self._base_url, self._base_path = config.base_url, config.base_path
        self._exists: dict[str, bool] = {}
        self._files: dict[bytes, str | None] = {}  # href → the file it names (_site_file)
        self._held: dict[str, tuple[bytes, set[str]]] = {}  # page → its bytes, what it lacks
        self._unwritten: set[str] = set()  # held pages without a stub on disk
        self._waiting: dict[str, list[str]] = {}  # missing page → held pages linking it
        self.whole: set[str] = set()  # the pages written whole here

    def wants(self, path: str) -> bool:
        return (path.endswith(".html") and path not in self._held and path not in self.whole
                and not (self.root / path).is_file())

    def put(self, path: str, data: bytes) -> None:
        missing = {target for target in self._targets(data) if not self._exists_now(target)}
        missing.discard(path)  # an article names itself as canonical
        if not missing:
            self._whole(path, data)
            self._arrived(path)
            return
        self._held[path] = (data, missing)
        for target in missing:
            self._waiting.setdefault(target, []).append(path)
        if len(missing) == 1 and not missing & self._unwritten:
            self._unwritten.add(path)
        else:
            self._stub(path)

    def remove(self, path: str) -> None:
        pass  # the second pass decides what goes

    def close(self) -> None:
        """Write a stub for every page still waiting unwritten; all then exist."""
        while self._unwritten:
            self._stub(min(self._unwritten))
        self._held.clear()
        self._waiting.clear()

    def _whole(self, path: str, data: bytes) -> None:
        super().put(path, data)
        self.whole.add(path)

    def _stub(self, path: str) -> None:
        data, missing = self._held[path]
        self._unwritten.discard(path)
        stub = _LINK.sub(lambda link: self._keep_or_drop(link, missing), data)
        self._replace(path, stub)
        self._arrived(path)

    def _arrived(self, path: str) -> None:
        """``path`` exists now: write whole the held pages that lacked only it, and so on."""
        appeared = [path]
        while appeared:
            here = appeared.pop()
            self._exists[here] = True
            for waiter in self._waiting.pop(here, ()):
                held = self._held.get(waiter)
                if held is None:
                    continue
                held[1].discard(here)
                if not held[1]:
                    del self._held[waiter]
                    self._whole(waiter, held[0])
                    if waiter in self._unwritten:  # it appears only now
                        self._unwritten.discard(waiter)
                        appeared.append(waiter)

    def _keep_or_drop(self, link: re.Match[bytes], missing: set[str]) -> bytes:
        href = link["href"] if link["href"] is not None else link["head"]
        if self._file_of(href) not in missing:
            return link[0]
        return link["text"] or b""

    def _targets(self, data: bytes) -> set[str]:
        found = {self._file_of(href) for href in set(_HREF.findall(data))}
        found.discard(None)
        return found  # type: ignore[return-value]

    def _file_of(self, href: bytes) -> str | None:
        found = self._files.get(href, "")
        if found == "":  # most links recur from page to page: home, outlet and day pages
            found = self._files[href] = self._site_file(href)
        return found

    def _exists_now(self, path: str) -> bool:
        found = self._exists.get(path)
        if found is None:
            found = self._exists[path] = path not in self._unwritten and (
                self.root / path).is_file()
        return found

    def _site_file(self, href: bytes) -> str | None:
        """The file under ``root`` a link of this site points at; None for other links."""
        url = html.unescape(href.decode("utf-8", "replace")).split("#", 1)[0].split("?", 1)[0]
        if url.startswith(self._base_url + "/"):
            url = url[len(self._base_url):]
        elif url.startswith(self._base_path + "/") and not url.startswith("//"):
            url = url[len(self._base_path):]
        else:
            return None
        rel = url[1:]
        return rel + "index.html" if rel == "" or rel.endswith("/") else rel


_K = TypeVar("_K")
_V = TypeVar("_V")


def _memo(cache: dict[_K, _V], key: _K, make: Callable[[_K], _V]) -> _V:
    """``cache[key]``, made by ``make(key)`` the first time; the cache is emptied at ITEM_CACHE.

    ``make`` takes the key, so that a caller passes a method, not a closure made
    at every call (a day page of the bench makes 250 links, most of them known).
    """
    value = cache.get(key)
    if value is None:
        if len(cache) >= ITEM_CACHE:
            cache.clear()
        value = cache[key] = make(key)
    return value


# -- rendering -------------------------------------------------------------------

class _Template(jinja2.Template):
    """A template printing values through :data:`_escape`, markupsafe's escape without
    its two Python calls a value (a tenth of a full build's CPU): the same Markup."""

    @classmethod
    def _from_namespace(cls, environment: jinja2.Environment, namespace: MutableMapping[str, Any],
                        globals: MutableMapping[str, Any]) -> jinja2.Template:
        # The compiled code imported jinja2.runtime's escape (markupsafe's) into
        # this namespace, its render functions' globals.
        namespace["escape"] = _escape
        return super()._from_namespace(environment, namespace, globals)


class _Environment(jinja2.Environment):
    """Templates whose globals are one dict, not a ChainMap over the environment's.

    Each render copies its template's globals into a new context, and each
    page importing a macro compares them with the macro template's: a
    ChainMap is read key by key in Python there, a fifth of an article
    page's time. The Renderer sets every global before it loads a template
    (Jinja asks the same: "avoid modifying any globals after a template is
    loaded"), so a snapshot holds the same values.
    """

    template_class = _Template

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


class Renderer:
    """Turns archive values into page bytes with the Jinja2 templates."""

    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.tz = config.tz
        loaders: list[jinja2.BaseLoader] = []
        if config.theme:
            loaders.append(jinja2.FileSystemLoader(config.theme))
        loaders.append(jinja2.PackageLoader("caixun.publish", "templates"))
        self.env = _Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=True,
            trim_blocks=False,
            keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined,
            auto_reload=False,
        )
        self._templates: dict[str, jinja2.Template] = {}
        self._also: dict[ArticleRef, Markup] = {}
        self._items: dict[tuple[ArticleRef, bool, bool], str] = {}
        self._links: dict[ArticleRef, str] = {}
        self._outlet_links: dict[tuple[str, str], str] = {}
        self._local_ts: int | None = None  # the last time _local converted, and to what
        self._local_time = datetime.fromtimestamp(0, self.tz)
        # Read once: SiteConfig.base_path parses the URL at every call.
        self._base_path = base = config.base_path
        links: dict[str, Callable[[Any], str]] = {
            "url": lambda path: paths.url_of(path, base),
            "absolute": lambda path: config.base_url + paths.url_of(path),
            "article_url": lambda ref: paths.url_of(_article_path(ref), base),
            "outlet_path": paths.outlet_path,
            "outlet_feed_path": paths.outlet_feed_path,
            "stock_path": paths.stock_path,
            "stock_feed_path": paths.stock_feed_path,
            "watch_feed_path": paths.watch_feed_path,
            "day_path": paths.day_path,
        }
        # Functions for themes ({{ url(day_path(day)) }}), and filters for the built-in
        # templates ({{ day | day_path | url }}): a template calls a filter directly,
        # a function through Context.call, 1.6 µs more a call (an article page made 16).
        self.env.globals.update(links, site=config, refresh=0, list_items=self.list_items,
                                outlet_blocks=self.outlet_blocks)
        self.env.filters.update(links)
        self.env.filters.update(
            clock=lambda ts: self._local(ts).strftime("%H:%M"),
            shortdate=lambda ts: self._local(ts).strftime("%m-%d %H:%M"),
            datetime=lambda ts: self._local(ts).strftime("%Y-%m-%d %H:%M"),
            isotime=lambda ts: self._local(ts).isoformat(),
        )
        self.env.bytecode_cache = template_cache(self.env, config)

    def _also_item(self, ref: ArticleRef) -> Markup:
        """The list item of another report of the story (as article.html would render it).

        Formatted here, not by the template: a story's reports list each other,
        so each item appears on up to ALSO_SHOWN pages and is made once.
        """
        return _memo(self._also, ref, self._make_also_item)

    def _make_also_item(self, ref: ArticleRef) -> Markup:
        # A build of 100,000 articles and more makes most items more than once (they
        # outgrow ITEM_CACHE): the outlet's link is made once, the time cut from the
        # ISO stamp (as in _make_list_item).
        stamp = self._local(ref.published_ts).isoformat()
        return Markup(
            f'<li>{self._outlet_link(ref.outlet_slug, ref.outlet)} '
            f'<a href="{_escape(self._url(ref))}">{_escape(ref.title)}</a> '
            f'<time datetime="{stamp}">{stamp[5:10]} {stamp[11:16]}</time></li>')

    def _outlet_link(self, slug: str, outlet: str) -> str:
        """``<a class="outlet" …>`` of an outlet, as an article's other reports link it."""
        return _memo(self._outlet_links, (slug, outlet), self._make_outlet_link)

    def _make_outlet_link(self, key: tuple[str, str]) -> str:
        slug, outlet = key
        url = paths.url_of(paths.outlet_path(slug), self._base_path)
        return f'<a class="outlet" href="{_escape(url)}">{_escape(outlet)}</a>'

    def list_items(self, refs: Iterable[ArticleRef], show_outlet: bool = True,
                   with_date: bool = True, also: dict[int, list[ArticleRef]] | None = None
                   ) -> Markup:
        """The ``<ol>`` of ``article_list`` in _macros.html, made here rather than by Jinja.

        List pages are most of what a build renders, and an article is listed
        on several of them (outlet, day, home): each item is formatted once.
        """
        items = ['<ol class="list">']
        for ref in refs:
            items.append(self._list_item(ref, show_outlet, with_date))
            others = also.get(ref.id) if also else None
            if others:
                items.append(' <span class="also">也见于')
                items += map(self._also_link, others)
                items.append("</span>")
            items.append("</li>")
        items.append("\n</ol>")
        return Markup("".join(items))

    @staticmethod
    def outlet_blocks(blocks: Iterable[str]) -> Markup:
        """The home page's outlet blocks (:meth:`outlet_block`, or as a page held them,
        see :func:`_home_blocks`), in their order."""
        return Markup("".join(blocks))

    def outlet_block(self, slug: str, outlet: str, refs: list[ArticleRef]) -> str:
        """An outlet's block on the home page (slug, name, newest articles), as the loop
        in home.html made it: a site has hundreds of outlets, a loop of Jinja took most
        of the page's time."""
        url = paths.url_of(paths.outlet_path(slug), self._base_path)
        return (f'\n<section class="outlet-block">\n<h2><a href="{_escape(url)}">'
                f'{_escape(outlet)}</a></h2>\n{self.list_items(refs, False, True)}\n</section>')

    def _also_link(self, ref: ArticleRef) -> str:
        """A story's other report as linked from a list item (a story lists all of them)."""
        return _memo(self._links, ref, self._make_also_link)

    def _make_also_link(self, ref: ArticleRef) -> str:
        return (f' <a href="{_escape(self._url(ref))}" title="{_escape(ref.title)}">'
                f'{_escape(ref.outlet)}</a>')

    def _list_item(self, ref: ArticleRef, show_outlet: bool, with_date: bool) -> str:
        return _memo(self._items, (ref, show_outlet, with_date), self._make_list_item)

    def _make_list_item(self, key: tuple[ArticleRef, bool, bool]) -> str:
        ref, show_outlet, with_date = key
        stamp = self._local(ref.published_ts).isoformat()  # 2026-03-01T16:00:00+08:00
        # "%m-%d %H:%M" or "%H:%M" cut from it: strftime took a quarter of an item's
        # time (a home page of 2,000 outlets lists 10,000). Years are 1970-2099.
        when = f"{stamp[5:10]} {stamp[11:16]}" if with_date else stamp[11:16]
        item = (f'\n<li><time datetime="{stamp}">{when}</time> '
                f'<a href="{_escape(self._url(ref))}">{_escape(ref.title)}</a>')
        if show_outlet:
            item += f" {self._outlet_link(ref.outlet_slug, ref.outlet)}"
        return item

    def _url(self, ref: ArticleRef) -> str:
        return paths.url_of(_article_path(ref), self._base_path)

    def _local(self, ts: int) -> datetime:
        # An article page asks for its time three times (its day, the stamp, the text).
        if ts != self._local_ts:
            self._local_ts, self._local_time = ts, datetime.fromtimestamp(ts, self.tz)
        return self._local_time

    def local_day(self, ts: int) -> date:
        return self._local(ts).date()

    def render(self, template: str, **context: Any) -> bytes:
        compiled = self._templates.get(template)
        if compiled is None:
            compiled = self._templates[template] = self.env.get_template(template)
        return compiled.render(**context).encode("utf-8")

    def article(self, article: Article, ref: ArticleRef, prev: ArticleRef | None,
                next_: ArticleRef | None, stories: Stories = Stories({}, {}),
                stocks: StockLinks = ()) -> bytes:
        others = stories.others(ref.id)
        copied = stories.originals.get(ref.id)
        original = next((r for r in others if r.id == copied), None) if copied else None
        # The reports nearest in time; a big story would otherwise list dozens.
        shown = nearest_in_time(others, ref, ALSO_SHOWN)
        return self.render("article.html", article=article, path=_article_path(ref),
                           ts=ref.published_ts, day=self.local_day(ref.published_ts),
                           prev=prev, next=next_, also=shown,
                           also_items=[self._also_item(r) for r in shown],
                           also_more=len(others) - len(shown),
                           canonical=_article_path(original or ref), stocks=stocks)

    def outlet_front(self, slug: str, outlet: str, newest: list[ArticleRef], total: int,
                     older: str | None) -> bytes:
        return self.render("outlet.html", slug=slug, outlet=outlet, refs=newest, total=total,
                           number=0, newer=None, older=older, refresh=self.config.refresh)

    def outlet_chunk(self, slug: str, outlet: str, number: int, chunk: list[ArticleRef],
                     newer: str, older: str | None) -> bytes:
        return self.render("outlet.html", slug=slug, outlet=outlet, refs=chunk[::-1],
                           total=0, number=number, newer=newer, older=older,
                           first_day=self.local_day(chunk[0].published_ts),
                           last_day=self.local_day(chunk[-1].published_ts))

    def stock_front(self, code: str, name: str, newest: list[ArticleRef], total: int,
                    older: str | None) -> bytes:
        return self.render("stock.html", code=code, label=stock_label(code, name), refs=newest,
                           total=total, number=0, newer=None, older=older,
                           refresh=self.config.refresh)

    def stock_chunk(self, code: str, name: str, number: int, chunk: list[ArticleRef],
                    newer: str, older: str | None) -> bytes:
        return self.render("stock.html", code=code, label=stock_label(code, name),
                           refs=chunk[::-1], total=0, number=number, newer=newer, older=older,
                           first_day=self.local_day(chunk[0].published_ts),
                           last_day=self.local_day(chunk[-1].published_ts))

    def stock_index(self, stocks: Iterable[tuple[str, str, int]]) -> bytes:
        """The securities with articles, (code, name, count), market by market in code order."""
        markets: dict[str, list[tuple[str, str, int]]] = {}
        for code, name, count in sorted(stocks):
            markets.setdefault(code.rsplit(".", 1)[-1], []).append((code, name, count))
        order = {market: n for n, market in enumerate(MARKETS)}
        grouped = [(MARKET_NAMES.get(market, market), rows) for market, rows in
                   sorted(markets.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))]
        return self.render("stocks.html", markets=grouped,
                           total=sum(len(rows) for _, rows in grouped))

    def day(self, day: date, refs: list[ArticleRef], stories: Stories = Stories({}, {})) -> bytes:
        shown, also = self.collapse(refs, stories)
        return self.render("day.html", day=day, refs=shown, total=len(refs), also=also,
                           refresh=self.config.refresh)

    def collapse(self, refs: list[ArticleRef], stories: Stories
                 ) -> tuple[list[ArticleRef], dict[int, list[ArticleRef]]]:
        """With ``site.stories``: each story once, where it first appears in ``refs``.

        Returns the refs to show and, for each shown ref, the story's other articles.
        """
        if not self.config.stories:
            return refs, {}
        shown: list[ArticleRef] = []
        also: dict[int, list[ArticleRef]] = {}
        seen: set[int] = set()
        for ref in refs:
            members = stories.members.get(ref.id)
            if members is None:
                shown.append(ref)
                continue
            if members[0].id in seen:
                continue
            seen.add(members[0].id)
            shown.append(ref)
            also[ref.id] = [m for m in members if m.id != ref.id]
        return shown, also

    def archive_index(self, days: list[tuple[date, int]]) -> bytes:
        return self.render("archive.html", days=days)

    def home(self, latest: list[ArticleRef],
             outlets: Sequence[str],
             stories: Stories = Stories({}, {}), stock_index: bool = False,
             watch_index: bool = False) -> bytes:
        """``stock_index``: the site has stock pages, and the home page links their index;
        ``watch_index``: the same for the watch lists."""
        shown, also = self.collapse(latest, stories)
        return self.render("home.html", latest=shown[:self.config.per_page], also=also,
                           outlets=outlets, refresh=self.config.refresh,
                           stock_index=stock_index, watch_index=watch_index)

    def watch_index(self, watches: Iterable[tuple[str, str, list[str], list[str]]]) -> bytes:
        """The watch lists, (name, query, securities' labels, outlets' names), by name."""
        return self.render("watches.html", watches=list(watches), feed_size=FEED_SIZE)

    def watch_feed(self, watch: Watch, items: list[tuple[ArticleRef, str]]) -> bytes:
        path = paths.watch_feed_path(watch.name)
        return self.feed(watch_title(watch), path, paths.WATCH_INDEX, items)

    def not_found(self) -> bytes:
        return self.render("404.html")

    def redirect(self, ref: ArticleRef) -> bytes:
        """The page left where an alias of the article had its own: it leads there."""
        return self.render("redirect.html", ref=ref, target=_article_path(ref))

    def feed(self, title: str, self_path: str, page_path: str,
             items: list[tuple[ArticleRef, str]]) -> bytes:
        base = self.config.base_url
        entries = [FeedEntry(uid=ref.uid, title=ref.title,
                             link=base + paths.url_of(_article_path(ref)),
                             published=datetime.fromtimestamp(ref.published_ts, timezone.utc),
                             outlet=ref.outlet, summary=summary)
                   for ref, summary in items]
        return atom_feed(title=title, self_url=base + paths.url_of(self_path),
                         page_url=base + paths.url_of(page_path), author=self.config.title,
                         language=self.config.language, entries=entries)


_time_order = operator.attrgetter("published_ts", "id")


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """Jinja's file cache of compiled templates, keyed by what shaped the code too.

    Jinja checks a cached template against its source only. But compiling
    also folds filters applied to constants (``{{ "/stock/" | url }}`` is
    compiled to the site's path), so the salt covers the rest: Jinja's
    version and syntax options, the filters' names, the site settings they
    read, and the code of the modules that define them.
    """

    def __init__(self, salt: str) -> None:
        super().__init__()  # Jinja's private directory under the temporary one
        self.salt = salt

    def get_cache_key(self, name: str, filename: str | None = None) -> str:
        return super().get_cache_key(f"{self.salt}|{name}", filename)

    # A cache that cannot be read or written (a full or damaged temporary file
    # system) costs a compilation, never the build: Jinja lets those errors out.
    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, ValueError, EOFError, TypeError, pickle.UnpicklingError):
            bucket.reset()  # unreadable, or torn: Jinja itself writes whole files

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def template_cache(env: jinja2.Environment, config: SiteConfig) -> jinja2.BytecodeCache | None:
    """Compiled templates kept between runs: each build compiled its templates again,
    about 5 % of an incremental build. None when no private directory can be had
    (the templates are then compiled in each process, as before)."""
    shape = (jinja2.__version__, env.autoescape, env.trim_blocks, env.lstrip_blocks,
             env.keep_trailing_newline, env.newline_sequence, env.block_start_string,
             env.block_end_string, env.variable_start_string, env.variable_end_string,
             env.comment_start_string, env.comment_end_string, env.line_statement_prefix,
             env.line_comment_prefix, sorted(env.extensions), sorted(env.filters),
             sorted(env.tests), repr(config))
    digest = hashlib.sha256(repr(shape).encode())
    try:
        for module in (__file__, paths.__file__):  # the filters' code
            digest.update(Path(module).read_bytes())
        return _TemplateCache(digest.hexdigest()[:32])
    except (OSError, RuntimeError, TypeError):  # no private directory (Jinja's check), no file
        return None


def nearest_in_time(others: Sequence[ArticleRef], ref: ArticleRef,
                    count: int) -> list[ArticleRef]:
    """The ``count`` of ``others`` published nearest to ``ref`` (of equals, the lowest
    ids), oldest first.

    ``others`` come oldest first, then by id, as :class:`Stories` holds them: the
    nearest lie around ref's place, and only those are compared (each page of a
    story of 50 sorted the 49 others: a tenth of the time of an article page).
    """
    if count <= 0 or not others:
        return []
    place = bisect.bisect_left(others, (ref.published_ts, ref.id), key=_time_order)
    low, high = max(place - count, 0), min(place + count, len(others))
    # Reports of the same second just outside may rank before some inside, by id.
    while low and others[low - 1].published_ts == others[low].published_ts:
        low -= 1
    while high < len(others) and others[high].published_ts == others[high - 1].published_ts:
        high += 1
    near = sorted(others[low:high], key=lambda r: (abs(r.published_ts - ref.published_ts), r.id))
    return sorted(near[:count], key=_time_order)


def _article_path(ref: ArticleRef) -> str:
    return paths.article_path(ref.outlet_slug, ref.published_ts, ref.file_id)


def watch_title(watch: Watch) -> str:
    """A watch's feed title: 关注：rates."""
    return f"关注：{watch.name}"


def stock_label(code: str, name: str) -> str:
    """How a page names a security: 贵州茅台（600519.SH）, or the code when no name is known."""
    return f"{name}（{code}）" if name else code


def ref_of(article_id: int, article: Article) -> ArticleRef:
    return ArticleRef(article_id, article.uid, article.title, article.outlet,
                      article.outlet_slug, int(article.published_at.timestamp()), article.file_id)


# -- the outlet's pages ------------------------------------------------------------

def chunk_count(total: int, per_page: int) -> int:
    """Numbered pages of an outlet: none while the front page holds everything."""
    return 0 if total <= per_page else -(-total // per_page)


def front_older_link(slug: str, total: int, per_page: int,
                     chunk_path: Callable[[str, int], str] = paths.outlet_chunk_path
                     ) -> str | None:
    if total <= per_page:
        return None
    return chunk_path(slug, (total - per_page - 1) // per_page + 1)


# Renders a numbered page of an outlet's (or a security's) list: (number, its articles
# oldest first, the newer page, the older page or None) → bytes.
_RenderChunk = Callable[[int, list[ArticleRef], str, str | None], bytes]


def _numbered_pages(writer: SiteWriter, per_page: int, chunk_path: Callable[[int], str],
                    front: str, render: _RenderChunk, refs: list[ArticleRef],
                    first_number: int, total: int) -> None:
    """Write numbered pages ``first_number``… from ``refs`` (which start at that page)."""
    last = chunk_count(total, per_page)
    for number in range(first_number, last + 1):
        start = (number - first_number) * per_page
        _numbered_page(writer, chunk_path, front, render, number,
                       refs[start:start + per_page], last)


def _numbered_page(writer: SiteWriter, chunk_path: Callable[[int], str], front: str,
                   render: _RenderChunk, number: int, chunk: list[ArticleRef],
                   last: int) -> None:
    """Write numbered page ``number`` of ``last``, which lists ``chunk``."""
    path = chunk_path(number)
    if writer.wants(path):
        newer = chunk_path(number + 1) if number < last else front
        older = chunk_path(number - 1) if number > 1 else None
        writer.put(path, render(number, chunk, newer, older))


def render_chunks(renderer: Renderer, writer: SiteWriter, slug: str, outlet: str,
                  refs: list[ArticleRef], first_number: int, total: int) -> None:
    """Write the outlet's numbered pages ``first_number``… from ``refs`` (which start there)."""
    _numbered_pages(
        writer, renderer.config.per_page, lambda n: paths.outlet_chunk_path(slug, n),
        paths.outlet_path(slug),
        lambda number, chunk, newer, older: renderer.outlet_chunk(
            slug, outlet, number, chunk, newer, older),
        refs, first_number, total)


def stock_chunks(renderer: Renderer, writer: SiteWriter, code: str, name: str,
                 refs: list[ArticleRef], first_number: int, total: int) -> None:
    """Write the security's numbered pages ``first_number``… from ``refs`` (as outlets')."""
    _numbered_pages(
        writer, renderer.config.per_page, lambda n: paths.stock_chunk_path(code, n),
        paths.stock_path(code),
        lambda number, chunk, newer, older: renderer.stock_chunk(
            code, name, number, chunk, newer, older),
        refs, first_number, total)


def remove_chunks_after(writer: SiteWriter, slug: str, last: int,
                        chunk_path: Callable[[str, int], str] = paths.outlet_chunk_path) -> None:
    number = last + 1
    while (writer.root / chunk_path(slug, number)).exists():
        writer.remove(chunk_path(slug, number))
        number += 1


# -- full build ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Job:
    archive_path: str
    out_dir: str
    config: SiteConfig
    kind: str  # "outlets", "stocks", "days" or "search"
    keys: tuple[str, ...]
    record_paths: bool
    done: frozenset[str] = frozenset()  # written by the first pass
    # Over a built site: no page is written before a page it links (see NewPages).
    keep_links: bool = False
    blocks: tuple[static_search.Block | static_search.Tail, ...] = ()  # kind "search"
    top: int = 0  # the static search index's cut (kind "search")
    fresh: bool = False  # the build began in an empty directory (see SiteWriter)


@dataclass(slots=True)
class _Done:
    """What a job did: its report, the files it produced, the search blocks it built."""

    report: BuildReport
    produced: PathSet
    blocks: static_search.BuiltBlocks


def _run_job(job: _Job) -> _Done:
    writer = SiteWriter(Path(job.out_dir), job.record_paths, job.fresh)
    writer.done = job.done
    built: static_search.BuiltBlocks = {}
    # Read-only: a writing connection's page cache (64 MiB) filled with the articles
    # a worker reads, in each worker.
    with open_archive(job.archive_path, read_only=True) as archive, archive.snapshot():
        if job.kind == "search":
            for block in job.blocks:
                built[block] = static_search.write_block(archive, writer, block,
                                                         job.config.tz, job.top)
        else:
            renderer = Renderer(job.config)
            if job.kind == "outlets":
                _full_outlets(archive, renderer, writer, job.keys, job.keep_links)
            elif job.kind == "stocks":
                _full_stocks(archive, renderer, writer, job.keys)
            else:
                _full_days(archive, renderer, writer, [date.fromisoformat(d) for d in job.keys])
    writer.finish()
    # A worker does several jobs: the hundreds of MB a level-2 search block took,
    # freed, were still counted in its size during the pages it rendered next
    # (494 MB at 300,000 articles).
    release_free_memory()
    return _Done(writer.report, writer.produced, built)


# Articles whose stories are read at a time by a full build: the stories of the
# whole archive held at once took gigabytes at 1,000,000 articles.
STORY_WINDOW = 1000


# Stories a full build's job keeps read (see Archive.stories): the windows of an
# outlet and the days of a job meet the same stories again and again. A story
# holds up to 50 articles (MAX_STORY), so this keeps at most 100,000 refs (some
# 20 MB), as much as two windows of STORY_WINDOW articles may need.
STORIES_KEPT = 2_000


def _kept_stories(kept: dict[int, tuple[ArticleRef, ...]]) -> dict[int, tuple[ArticleRef, ...]]:
    """``kept``, emptied when it has grown past STORIES_KEPT stories (memory flat in N)."""
    if len(kept) > STORIES_KEPT:
        kept.clear()
    return kept


def _in_windows(archive: Archive, articles: Iterator[tuple[int, Article]]
                ) -> Iterator[tuple[int, Article, Stories, StockLinks]]:
    """Each article with the stories of its window of STORY_WINDOW articles, and its securities."""
    kept: dict[int, tuple[ArticleRef, ...]] = {}
    while window := list(itertools.islice(articles, STORY_WINDOW)):
        ids = [article_id for article_id, _ in window]
        stories = archive.stories(ids, _kept_stories(kept))
        stocks = stock_links(archive, ids)
        for article_id, article in window:
            yield article_id, article, stories, stocks.get(article_id, ())


def stock_links(archive: Archive, article_ids: Sequence[int]) -> dict[int, StockLinks]:
    """The securities of these articles with their current names (untagged ones left out)."""
    codes = archive.article_codes(article_ids)
    if not codes:
        return {}
    names = archive.security_names(sorted({code for found in codes.values() for code in found}))
    return {article_id: tuple((code, names.get(code, "")) for code in found)
            for article_id, found in codes.items()}


def _full_outlets(archive: Archive, renderer: Renderer, writer: SiteWriter,
                  slugs: Sequence[str], keep_links: bool = False) -> None:
    """Every article page and outlet page of ``slugs``, in one pass over their articles
    oldest first.

    A story's reports are in many outlets and near in time: outlet by outlet, a
    build of 100,000 bench articles read each story about twice and made nine in
    ten of the list items of its reports again; in order of time a story is read
    once and its items are made once. Each outlet holds one article (its page is
    written once the next one is known, for its "next" link), the numbered page
    being filled, and its newest references for the front page and feed.

    ``keep_links``: the feed of a new outlet is written first (from the archive), as
    its pages link it and no stub stands in for a feed.
    """
    outlets: dict[str, _OutletPages] = {}
    for slug in slugs:
        newest = archive.outlet_newest(slug, 1)
        if not newest:
            continue
        # The outlet's name on its pages: its newest article's.
        pages = outlets[slug] = _OutletPages(renderer, writer, slug, newest[0].outlet,
                                             archive.outlet_count(slug))
        if keep_links and not (writer.root / paths.outlet_feed_path(slug)).is_file():
            _outlet_feed(archive, renderer, writer, slug, pages.outlet)
            pages.feed_written = True
    for article_id, article, stories, stocks in _in_windows(
            archive, archive.iter_outlet_articles_by_time(slugs)):
        outlets[article.outlet_slug].add(ref_of(article_id, article), article,
                                         _own_story(stories, article_id), stocks)
    for pages in outlets.values():
        pages.finish(archive)


def _own_story(stories: Stories, article_id: int) -> Stories:
    """Of ``stories``, what an article's page shows: its story and the article it copies.

    An outlet holds its last article until its next one comes, maybe many windows
    later: holding the whole window's stories with it grew with the outlets.
    """
    members = stories.members.get(article_id)
    original = stories.originals.get(article_id)
    return Stories({article_id: members} if members else {},
                   {article_id: original} if original is not None else {})


class _OutletPages:
    """An outlet's article and list pages, written as its articles come, oldest first."""

    def __init__(self, renderer: Renderer, writer: SiteWriter, slug: str, outlet: str,
                 total: int) -> None:
        self.renderer, self.writer = renderer, writer
        self.slug, self.outlet, self.total = slug, outlet, total
        self.per_page = renderer.config.per_page
        self.last = chunk_count(total, self.per_page)
        self.chunk: list[ArticleRef] = []  # the numbered page being filled
        self.number = 0  # the numbered pages written
        self.pending: tuple[ArticleRef, Article, Stories, StockLinks] | None = None
        self.prev: ArticleRef | None = None
        # The newest articles so far, with their summaries: the front page's and the feed's.
        self.newest: deque[tuple[ArticleRef, str]] = deque(maxlen=max(FEED_SIZE, self.per_page))
        self.feed_written = False

    def add(self, ref: ArticleRef, article: Article, stories: Stories,
            stocks: StockLinks) -> None:
        if self.pending:
            _put_article(self.renderer, self.writer, *self.pending, self.prev, ref)
            self.prev = self.pending[0]
        self.pending = (ref, article, stories, stocks)
        self.newest.append((ref, _summary(article)))
        if self.last:
            self.chunk.append(ref)
            if len(self.chunk) == self.per_page:
                self._write_chunk()

    def finish(self, archive: Archive) -> None:
        """The last article's page, the last numbered page, the feed and the front page."""
        if self.pending:
            _put_article(self.renderer, self.writer, *self.pending, self.prev, None)
        if self.chunk:
            self._write_chunk()
        newest = list(self.newest)
        if not self.feed_written:
            _outlet_feed(archive, self.renderer, self.writer, self.slug, self.outlet,
                         newest[-FEED_SIZE:][::-1])
        path = paths.outlet_path(self.slug)
        if self.writer.wants(path):
            front = [ref for ref, _ in newest[-self.per_page:]][::-1]
            self.writer.put(path, self.renderer.outlet_front(
                self.slug, self.outlet, front, self.total,
                front_older_link(self.slug, self.total, self.per_page)))

    def _write_chunk(self) -> None:
        self.number += 1
        slug, outlet, renderer = self.slug, self.outlet, self.renderer
        _numbered_page(
            self.writer, lambda n: paths.outlet_chunk_path(slug, n), paths.outlet_path(slug),
            lambda number, chunk, newer, older: renderer.outlet_chunk(
                slug, outlet, number, chunk, newer, older),
            self.number, self.chunk, self.last)
        self.chunk = []


def _put_article(renderer: Renderer, writer: SiteWriter, ref: ArticleRef, article: Article,
                 stories: Stories, stocks: StockLinks, prev: ArticleRef | None,
                 next_: ArticleRef | None) -> None:
    path = _article_path(ref)
    if writer.wants(path):
        writer.put(path, renderer.article(article, ref, prev, next_, stories, stocks))


def _outlet_feed(archive: Archive, renderer: Renderer, writer: SiteWriter, slug: str,
                 outlet: str, entries: list[tuple[ArticleRef, str]] | None = None) -> None:
    """Written before the outlet's pages, which link it (no stub stands in for a feed).

    ``entries``: the feed's (read from the archive when None).
    """
    path = paths.outlet_feed_path(slug)
    if writer.wants(path):
        if entries is None:
            entries = archive.newest_with_summary(FEED_SIZE, slug, SUMMARY_LENGTH)
        writer.put(path, renderer.feed(outlet, path, paths.outlet_path(slug), entries))


class _Summaries:
    """Feed summaries, as ``Archive.newest_with_summary`` cuts them, read an
    article at a time and kept: an article is in the feed of each of its securities."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self._made: dict[int, str] = {}

    def of(self, refs: Iterable[ArticleRef]) -> list[tuple[ArticleRef, str]]:
        items = []
        for ref in refs:
            summary = self._made.get(ref.id)
            if summary is None:
                article = self.archive.get(ref.uid)
                summary = _summary(article) if article is not None else ""
                if len(self._made) >= ITEM_CACHE:
                    self._made.clear()
                self._made[ref.id] = summary
            items.append((ref, summary))
        return items


def _summary(article: Article, length: int = SUMMARY_LENGTH) -> str:
    text = " ".join((article.digest or article.body_text)[:length + 1].split())
    return text if len(text) <= length else text[:length] + "…"


def _full_stocks(archive: Archive, renderer: Renderer, writer: SiteWriter,
                 codes: Sequence[str]) -> None:
    """Every page and feed of these securities."""
    names = archive.security_names(codes)
    summaries = _Summaries(archive)
    for code in codes:
        refs = archive.stock_refs(code)
        if refs:
            _stock_lists(renderer, writer, summaries, code, names.get(code, ""), refs)


def _stock_lists(renderer: Renderer, writer: SiteWriter, summaries: _Summaries, code: str,
                 name: str, refs: list[ArticleRef]) -> None:
    """A security's feed, numbered pages and front page, from all its articles (oldest first)."""
    total, per_page = len(refs), renderer.config.per_page
    _stock_feed(renderer, writer, summaries, code, name, refs[-FEED_SIZE:][::-1])
    stock_chunks(renderer, writer, code, name, refs, 1, total)
    front = paths.stock_path(code)
    if writer.wants(front):
        writer.put(front, renderer.stock_front(
            code, name, refs[-per_page:][::-1], total,
            front_older_link(code, total, per_page, paths.stock_chunk_path)))


def _stock_feed(renderer: Renderer, writer: SiteWriter, summaries: _Summaries, code: str,
                name: str, newest: list[ArticleRef]) -> None:
    """Written before the security's pages, which link it (as an outlet's feed)."""
    path = paths.stock_feed_path(code)
    if writer.wants(path):
        writer.put(path, renderer.feed(stock_label(code, name), path, paths.stock_path(code),
                                       summaries.of(newest[:FEED_SIZE])))


def _stock_pages(archive: Archive, renderer: Renderer, writer: SiteWriter,
                 summaries: _Summaries, code: str, name: str, first: int) -> None:
    """The security's feed, its numbered pages from ``first`` on and its front page
    (as :func:`_outlet_pages`); all go when it has no articles left."""
    per_page = renderer.config.per_page
    total = archive.stock_count(code)
    last = chunk_count(total, per_page)
    front, feed = paths.stock_path(code), paths.stock_feed_path(code)
    if not total:
        writer.remove(front)
        writer.remove(feed)
    wanted = next((n for n in range(first, last + 1)
                   if writer.wants(paths.stock_chunk_path(code, n))), None)
    want_front = total > 0 and writer.wants(front)
    newest: list[ArticleRef] = []
    if want_front or (total and writer.wants(feed)):
        newest = archive.stock_newest(code, max(per_page, FEED_SIZE))
        _stock_feed(renderer, writer, summaries, code, name, newest)
    if wanted is not None:
        refs = archive.stock_refs(code, (wanted - 1) * per_page)
        stock_chunks(renderer, writer, code, name, refs, wanted, total)
    if want_front:
        writer.put(front, renderer.stock_front(
            code, name, newest[:per_page], total,
            front_older_link(code, total, per_page, paths.stock_chunk_path)))
    remove_chunks_after(writer, code, last, paths.stock_chunk_path)


def _stock_index(archive: Archive, renderer: Renderer, writer: SiteWriter,
                 counts: dict[str, int]) -> None:
    """The list of the securities with articles; none when there are none."""
    if not counts:
        writer.remove(paths.STOCK_INDEX)
    elif writer.wants(paths.STOCK_INDEX):
        names = archive.security_names(sorted(counts))
        writer.put(paths.STOCK_INDEX, renderer.stock_index(
            (code, names.get(code, ""), count) for code, count in counts.items()))


def _stock_search(archive: Archive, renderer: Renderer, writer: SiteWriter,
                  counts: dict[str, int]) -> bool:
    """``search/codes.json`` and the script reading it (``assets/search-stocks.js``),
    by which the search page finds a security by code or name; none (and False) when
    no security has articles, so such a site is as it was without them."""
    if not counts:
        writer.remove(static_search.STOCKS_JSON)
        writer.remove(static_search.STOCKS_JS)
        return False
    rows = {row.code: row for row in archive.securities(counts=False)}
    names = archive.security_names(sorted(counts))
    writer.put(static_search.STOCKS_JSON, static_search.stocks_json(
        (code, names.get(code, ""), rows[code].names if code in rows else (),
         paths.url_of(paths.stock_path(code), renderer.config.base_path), count)
        for code, count in counts.items()))
    writer.put(static_search.STOCKS_JS,
               files("caixun.publish").joinpath("static/search-stocks.js").read_bytes())
    return True


# -- watch lists ------------------------------------------------------------------------

def _watch_pages(archive: Archive, renderer: Renderer, writer: SiteWriter,
                 watches: Sequence[Watch], stale: bool = False) -> None:
    """Each watch's feed, its FEED_SIZE newest matches over the whole archive (one query
    a watch, then the summaries), and the index of the watches: nothing without watches.

    Rendered at every build and put as any page: written only when the bytes
    change. ``stale`` (an incremental build): remove the feeds of the watches
    gone, and the index when none is left (a full build removes whatever it
    did not produce).
    """
    wanted: set[str] = set()
    if watches:
        summaries = _Summaries(archive)
        for watch in watches:
            path = paths.watch_feed_path(watch.name)
            wanted.add(path)
            if writer.wants(path):
                refs = archive.watch_refs(watch, limit=FEED_SIZE)
                writer.put(path, renderer.watch_feed(watch, summaries.of(refs)))
        wanted.add(paths.WATCH_INDEX)  # after the feeds it links
        if writer.wants(paths.WATCH_INDEX):
            writer.put(paths.WATCH_INDEX, renderer.watch_index(_watch_rows(archive, watches)))
    if stale:
        for path in _watch_files(writer.root):
            if path not in wanted:
                writer.remove(path)


def _watch_rows(archive: Archive, watches: Sequence[Watch]
                ) -> list[tuple[str, str, list[str], list[str]]]:
    """What the index shows of each watch: its name, query, securities and outlets."""
    codes = sorted({code for watch in watches for code in watch.stocks})
    names = archive.security_names(codes) if codes else {}
    outlets = archive.outlets() if any(watch.outlets for watch in watches) else {}
    return [(watch.name, watch.query.strip(),
             [stock_label(code, names.get(code, "")) for code in watch.stocks],
             [outlets.get(slug, slug) for slug in watch.outlets]) for watch in watches]


def _watch_files(root: Path) -> list[str]:
    """The feeds and the index in ``watch/`` (files of its own: an outlet whose slug
    is ``watch`` has its pages in dated directories under it)."""
    try:
        with os.scandir(root / paths.WATCH_DIR) as entries:
            names = [entry.name for entry in entries if entry.is_file(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(f"{paths.WATCH_DIR}/{name}" for name in names
                  if name.endswith(".xml") or name == "index.html")


def _watch_print(watches: Sequence[Watch]) -> str:
    """What the build state adds to the fingerprint for these watches ("" for none):
    a watch added, changed or removed is built even when no article changed."""
    if not watches:
        return ""
    defined = json.dumps([[watch.name, watch.definition()] for watch in watches],
                         ensure_ascii=False)
    return WATCHES_MARK + hashlib.sha256(defined.encode()).hexdigest()


def _full_days(archive: Archive, renderer: Renderer, writer: SiteWriter,
               days: Sequence[date]) -> None:
    kept: dict[int, tuple[ArticleRef, ...]] = {}
    for day in days:
        _write_day(archive, renderer, writer, day, _kept_stories(kept))


def _write_day(archive: Archive, renderer: Renderer, writer: SiteWriter, day: date,
               kept: dict[int, tuple[ArticleRef, ...]] | None = None) -> None:
    if not writer.wants(paths.day_path(day)):
        return
    start = datetime(day.year, day.month, day.day, tzinfo=renderer.tz)
    end = start + timedelta(days=1)
    refs = archive.refs_between(int(start.timestamp()), int(end.timestamp()))
    if refs:
        stories = archive.stories((r.id for r in refs), kept) if renderer.config.stories else None
        writer.put(paths.day_path(day), renderer.day(day, refs, stories or Stories({}, {})))
    else:
        writer.remove(paths.day_path(day))


def _balanced(weights: dict[str, int], parts: int) -> list[tuple[str, ...]]:
    """Split keys into ``parts`` groups of about equal total weight (greedy)."""
    groups: list[list[str]] = [[] for _ in range(parts)]
    loads = [0] * parts
    for key, weight in sorted(weights.items(), key=lambda kv: -kv[1]):
        lightest = loads.index(min(loads))
        groups[lightest].append(key)
        loads[lightest] += weight
    return [tuple(sorted(g)) for g in groups if g]


def _full_build(archive: Archive, out: Path, config: SiteConfig, jobs: int,
                record_paths: bool, progress: Callable[[str, int, int], None],
                watches: Sequence[Watch] = ()) -> tuple[BuildReport, SiteWriter]:
    renderer = Renderer(config)
    counts = archive.outlet_counts()
    stocks = archive.stock_counts()
    days = {day.isoformat(): n for day, n in _day_counts(archive, renderer)}
    # The static search index's blocks are built by the same workers as the pages, the
    # largest first and before the pages. Built after the pages, in workers of their
    # own, a level-2 block kept one worker busy while the other had nothing left, and
    # the workers forked then inherited the memory the main process had grown; built
    # after a worker's pages, the block's memory came on top of theirs.
    search = static_search.plan_index(archive, out)
    fresh = _is_empty(out)  # then every file in it at the end is one this build wrote
    work = [_Job(archive.location, str(out), config, "search", (), record_paths,
                 blocks=(block,), top=search.top, fresh=fresh)
            for block in sorted(search.todo, key=lambda b: b.lo - b.hi)]
    work += [_Job(archive.location, str(out), config, "outlets", keys, record_paths, fresh=fresh)
             for keys in _balanced(counts, jobs)]
    # A security costs its front page and feed, and its numbered pages.
    stock_weights = {code: 2 + chunk_count(n, config.per_page) for code, n in stocks.items()}
    work += [_Job(archive.location, str(out), config, "stocks", keys, record_paths, fresh=fresh)
             for keys in _balanced(stock_weights, jobs)]
    work += [_Job(archive.location, str(out), config, "days", keys, record_paths, fresh=fresh)
             for keys in _balanced(days, jobs)]
    writer = SiteWriter(out, record_paths, fresh)
    first_pass = int(_is_built(out))
    steps = first_pass + len(work) + 1  # the first pass, each job, the site-wide pages
    if first_pass:
        progress("new pages", 0, steps)
        writer.take_over(_full_new_pages(archive, renderer, out, record_paths))
        work = [dataclasses.replace(job, done=writer.done, keep_links=True) for job in work]
    progress("pages", first_pass, steps)
    built: static_search.BuiltBlocks = {}
    for done, job in enumerate(_run_jobs(work, jobs), first_pass + 1):
        writer.report.merge(job.report)
        writer.produced |= job.produced
        built.update(job.blocks)
        progress("pages", done, steps)
    progress("site-wide pages", steps - 1, steps)
    _redirects(renderer, writer, archive.redirects())
    _site_wide(archive, renderer, writer, stocks=stocks, watches=watches,
               search=(search, built))
    for stale in () if fresh else _files_not_in(out, writer.produced):
        writer.remove(stale)
    writer.finish()
    progress("site-wide pages", steps, steps)
    return writer.report, writer


def _is_empty(out: Path) -> bool:
    """Nothing in ``out`` but a killed build's temporary files."""
    with os.scandir(out) as entries:
        return all(entry.name == paths.TMP_DIR for entry in entries)


def _is_built(out: Path) -> bool:
    """A site was built here before: its new pages go first (see NewPages).

    A first build has no links to keep whole, and would only pay for it.
    """
    return (out / paths.HOME).is_file()


def _full_new_pages(archive: Archive, renderer: Renderer, out: Path,
                    record_paths: bool) -> NewPages:
    """The first pass of a full build over a built site: its new article, outlet and day pages."""
    with archive.snapshot():
        first = NewPages(out, renderer.config, record_paths)
        refs = [ref for ref in archive.iter_refs() if first.wants(_article_path(ref))]
        outlets = [(slug, 1) for slug in sorted(archive.outlet_counts())]
        counts = archive.stock_counts()
        days = [day for day, _ in _day_counts(archive, renderer)]
        stories = archive.stories(r.id for r in refs) if refs else Stories({}, {})
        links = stock_links(archive, [r.id for r in refs]) if refs else {}
        _first_pass(archive, renderer, first, refs, outlets, days, stories,
                    [(code, 1) for code in sorted(counts)], counts, links)
    return first


def _first_pass(archive: Archive, renderer: Renderer, first: NewPages,
                refs: list[ArticleRef], outlets: list[tuple[str, int]], days: list[date],
                stories: Stories, stocks: list[tuple[str, int]] | None = None,
                stock_counts: dict[str, int] | None = None,
                links: dict[int, StockLinks] | None = None) -> None:
    """The new pages among these; list pages first, so their stubs let the articles be whole.

    ``stocks``: the securities whose pages may be new, each with its first page to
    look at; ``stock_counts`` (every security's) when the stock index may be new.
    """
    for slug, number in outlets:
        _outlet_pages(archive, renderer, first, slug, number)
    if stocks:
        names = archive.security_names(code for code, _ in stocks)
        summaries = _Summaries(archive)
        for code, number in stocks:
            _stock_pages(archive, renderer, first, summaries, code, names.get(code, ""), number)
    if stock_counts:
        _stock_index(archive, renderer, first, stock_counts)
    for day in days:
        _write_day(archive, renderer, first, day)
    _incremental_articles(archive, renderer, first, refs, stories, links or {})
    first.close()


def _run_jobs(work: list[_Job], jobs: int) -> Iterator[_Done]:
    if jobs <= 1 or len(work) <= 1:
        yield from map(_run_job, work)
        return
    from caixun.workers import worker_pool  # multiprocessing: not for an incremental build

    # fork: workers inherit the loaded modules, so they start in milliseconds.
    with worker_pool(jobs) as pool:
        yield from pool.each(pool.imap_unordered(_run_job, work))


def _files_not_in(root: Path, produced: PathSet) -> Iterator[str]:
    """Files under ``root`` (as relative paths with ``/``) that the build did not produce.

    Walked with scandir and paths joined as strings: a site of 100,000
    articles has some 70,000 directories, and os.walk with relpath took
    seconds of a full build.
    """
    pending = [("", str(root))]
    while pending:
        prefix, directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_dir():  # a link to a directory is one, as for os.walk: kept, not walked
                if rel != paths.TMP_DIR and not entry.is_symlink():
                    pending.append((rel + "/", entry.path))
            elif rel not in produced:
                yield rel


# -- pages every build writes ----------------------------------------------------------

def _day_counts(archive: Archive, renderer: Renderer) -> list[tuple[date, int]]:
    offset = renderer.tz.utcoffset(datetime.now())
    seconds = int(offset.total_seconds()) if offset is not None else 0
    if isinstance(renderer.tz, ZoneInfo) and renderer.tz.key not in ("Asia/Shanghai", "UTC"):
        return _day_counts_slow(archive, renderer)  # zones with DST shift their offset
    return [(date.fromisoformat(day), n) for day, n in archive.day_counts(seconds)]


def _day_counts_slow(archive: Archive, renderer: Renderer) -> list[tuple[date, int]]:
    counts: dict[date, int] = {}
    for ref in archive.iter_refs():
        day = renderer.local_day(ref.published_ts)
        counts[day] = counts.get(day, 0) + 1
    return sorted(counts.items(), reverse=True)


def _site_wide(archive: Archive, renderer: Renderer, writer: SiteWriter,
               changed_ids: set[int] | None = None,
               stocks: dict[str, int] | None = None, stock_index: bool = True,
               watches: Sequence[Watch] = (), stale_watches: bool = False,
               home_touched: set[str] | None = None,
               search: tuple[static_search.IndexPlan, static_search.BuiltBlocks] | None = None
               ) -> None:
    """Home, archive index, site feed, sitemap, robots.txt, 404 page, stylesheet, search,
    the stock index when ``stock_index`` (or when it is missing), and the watches' feeds
    and index (see :func:`_watch_pages`).

    ``home_touched``: the outlets whose articles changed since the home page on disk
    was built for this site (None: every outlet's block is made again).

    ``stocks``: the article count of each security (read here when None).

    ``search``: the static search index's plan and the blocks built for it (a full
    build's workers build them); None: the blocks are built here.
    """
    config = renderer.config
    if stocks is None:
        stocks = archive.stock_counts()
    if stock_index or (stocks and not (writer.root / paths.STOCK_INDEX).is_file()):
        _stock_index(archive, renderer, writer, stocks)  # before the home page links it
    _watch_pages(archive, renderer, writer, watches, stale_watches)  # before it too
    outlets = _home_blocks(archive, renderer, writer.root / paths.HOME, home_touched)
    days = _day_counts(archive, renderer)
    writer.put(paths.CSS, files("caixun.publish").joinpath("static/style.css").read_bytes())
    writer.put(paths.SEARCH_JS, files("caixun.publish").joinpath("static/search.js").read_bytes())
    if search is None:
        static_search.write_index(archive, writer, renderer.tz, changed_ids)
    else:
        static_search.finish_index(writer, *search)
    stock_search = _stock_search(archive, renderer, writer, stocks)
    writer.put(paths.SEARCH_PAGE, renderer.render("search.html", stock_search=stock_search))
    writer.put(paths.NOT_FOUND, renderer.not_found())
    writer.put(paths.ARCHIVE, renderer.archive_index(days))
    writer.put(paths.FEED, renderer.feed(config.title, paths.FEED, paths.HOME,
                                         archive.newest_with_summary(FEED_SIZE)))
    _sitemap(archive, renderer, writer, days, changed_ids, stocks, bool(watches))
    writer.put(paths.ROBOTS, (f"User-agent: *\nAllow: /\n\n"
                              f"Sitemap: {config.base_url}/{paths.SITEMAP}\n").encode())
    latest = archive.newest(config.per_page * (3 if config.stories else 1))
    stories = archive.stories(r.id for r in latest) if config.stories else Stories({}, {})
    writer.put(paths.HOME, renderer.home(latest, outlets, stories, bool(stocks),
                                         bool(watches)))


# An outlet's block in a home page caixun wrote (Renderer.outlet_block): its link and all.
_OUTLET_BLOCK = re.compile(r'\n<section class="outlet-block">\n<h2><a href="([^"]*)">'
                           r'.*?\n</section>', re.S)


def _home_blocks(archive: Archive, renderer: Renderer, home: Path,
                 touched: set[str] | None) -> list[str]:
    """The home page's outlet blocks, outlets with the latest news first.

    An outlet's block shows its newest articles, so it changes only when its
    articles do: the block of an outlet not ``touched`` is taken from the home
    page on disk (this site's, as the build state says) when it is there.
    The others are read and made: on the bench's 2,000 outlets, reading every
    outlet's newest articles and making 10,000 list items was a fifth of an
    incremental build. The order comes from the outlets' index alone.
    """
    old: dict[str, str] = {}
    if touched is not None:
        try:
            page = home.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            page = ""  # every block is made
        old = {match.group(1): match.group(0) for match in _OUTLET_BLOCK.finditer(page)}
    names: dict[str, str] | None = None
    blocks: list[str] = []
    base = renderer.config.base_path
    for slug in archive.outlets_by_newest():
        block = None
        if old and slug not in (touched or ()):  # a full build has no old blocks: no URL made
            block = old.get(str(_escape(paths.url_of(paths.outlet_path(slug), base))))
        if block is None:
            refs = archive.outlet_newest(slug, HOME_PER_OUTLET)
            if names is None:
                names = archive.outlets()
            block = renderer.outlet_block(slug, refs[0].outlet or names.get(slug, slug), refs)
        blocks.append(block)
    return blocks


# Article ids a part of the sitemap covers (and the URLs of a sitemap in one
# file, at most). A sitemap of 50,000 URLs in one file, as the protocol allows,
# was rewritten whole by every build: 0.1 s at 10,000 articles, growing to 50,000.
SITEMAP_PART = 5_000


def _sitemap(archive: Archive, renderer: Renderer, writer: SiteWriter,
             days: list[tuple[date, int]], changed_ids: set[int] | None,
             stocks: dict[str, int], watch_index: bool = False) -> None:
    """``sitemap.xml``; past the protocol's limit an index of parts.

    Article URLs are split into parts by article id, so a build rewrites only
    the parts holding the changed articles (``changed_ids``; None: all).
    """
    base, limit = renderer.config.base_url, feeds.SITEMAP_LIMIT
    part = min(limit, SITEMAP_PART)
    pages = _page_urls(archive, renderer, days, stocks, watch_index)
    wanted: set[str] = set()
    if len(pages) + archive.count() <= part:
        writer.put(paths.SITEMAP, urlset(pages, _article_entries(base, archive.iter_refs())))
        wanted.add(paths.SITEMAP)
    else:
        parts: list[str] = []
        for number, start in enumerate(range(0, len(pages), limit), 1):
            parts.append(f"sitemap-pages-{number}.xml")
            writer.put(parts[-1], urlset(pages[start:start + limit]))
        for number in range(1, -(-archive.max_article_id() // part) + 1):
            name = f"sitemap-articles-{number}.xml"
            first, last = (number - 1) * part + 1, number * part
            dirty = changed_ids is None or not (writer.root / name).exists() or any(
                first <= i <= last for i in changed_ids)
            if dirty:
                refs = archive.refs_in_id_range(first, last)
                if not refs:
                    continue
                writer.put(name, urlset((), _article_entries(base, refs)))
            parts.append(name)
        writer.put(paths.SITEMAP, sitemap_index(f"{base}/{name}" for name in parts))
        wanted |= set(parts) | {paths.SITEMAP}
    for old in writer.root.glob("sitemap-*.xml"):
        if old.name not in wanted:
            writer.remove(old.name)


def _page_urls(archive: Archive, renderer: Renderer, days: list[tuple[date, int]],
               stocks: dict[str, int], watch_index: bool = False) -> list[SitemapUrl]:
    base, per_page = renderer.config.base_url, renderer.config.per_page
    urls = [SitemapUrl(base + "/"), SitemapUrl(base + paths.url_of(paths.ARCHIVE))]
    for slug, total in sorted(archive.outlet_counts().items()):
        urls.append(SitemapUrl(base + paths.url_of(paths.outlet_path(slug))))
        urls += [SitemapUrl(base + paths.url_of(paths.outlet_chunk_path(slug, n)))
                 for n in range(1, chunk_count(total, per_page) + 1)]
    if stocks:
        urls.append(SitemapUrl(base + paths.url_of(paths.STOCK_INDEX)))
    for code, total in sorted(stocks.items()):
        urls.append(SitemapUrl(base + paths.url_of(paths.stock_path(code))))
        urls += [SitemapUrl(base + paths.url_of(paths.stock_chunk_path(code, n)))
                 for n in range(1, chunk_count(total, per_page) + 1)]
    if watch_index:
        urls.append(SitemapUrl(base + paths.url_of(paths.WATCH_INDEX)))
    urls += [SitemapUrl(base + paths.url_of(paths.day_path(day)), day.isoformat())
             for day, _ in sorted(days)]
    return urls


def _article_entries(base: str, refs: Iterable[ArticleRef]) -> Iterator[str]:
    """The sitemap's ``<url>`` lines of these articles (their pages, dated)."""
    for path, day in paths.dated_article_paths(
            (ref.outlet_slug, ref.published_ts, ref.file_id) for ref in refs):
        yield url_entry(base + paths.url_of(path), day)


# -- incremental build ----------------------------------------------------------------

def _incremental(archive: Archive, out: Path, config: SiteConfig, since: int,
                 until: int, record_paths: bool, progress: Callable[[str, int, int], None],
                 watches: Sequence[Watch] = (),
                 jobs: int = 1) -> tuple[BuildReport, dict[str, str | None]]:
    renderer = Renderer(config)
    writer = SiteWriter(out, record_paths)
    changes = archive.changes_since(since, until)
    uids = {c.uid for c in changes}
    # Where articles are or were: their days' pages change. A relink (the article's
    # story or securities changed, not its title, time or place) changes the pages
    # showing those, its own and its day's; where an article came, went or changed
    # (``listed``), its outlet's lists and feed change too, and its neighbours' pages.
    positions: set[tuple[str, int]] = set()
    listed: set[tuple[str, int]] = set()
    for change in changes:
        here = {(change.outlet_slug, change.published_ts)}
        if change.old_outlet_slug is not None and change.old_published_ts is not None:
            here.add((change.old_outlet_slug, change.old_published_ts))
        positions |= here
        if not change.relink:
            listed |= here
    refs = _affected_refs(archive, uids, listed)
    stories = archive.stories(r.id for r in refs)
    links = stock_links(archive, [r.id for r in refs])
    outlets = _first_outlet_pages(archive, renderer, listed)
    # The positions the archive logged, and each changed article's securities at its
    # time: a change the tags do not log (a page moved to a free file id) still
    # changes the link its securities' pages hold.
    stock_positions = archive.stock_changes_since(since, until)
    content_uids = {c.uid for c in changes if not c.relink}
    stock_positions |= {(code, ref.published_ts) for ref in refs if ref.uid in content_uids
                        for code, _ in links.get(ref.id, ())}
    stocks = _first_stock_pages(archive, renderer, stock_positions)
    # Counts change only where a stock page does; read once, for the index and the sitemap.
    stock_counts = archive.stock_counts()
    days = sorted({renderer.local_day(ts) for _, ts in positions})
    first_pass = int(_is_built(out))
    # Steps: the first pass, the articles, each outlet, each security, each day, the
    # site-wide pages.
    steps = first_pass + len(outlets) + len(stocks) + len(days) + 2
    with contextlib.ExitStack() as stack:
        # A worker for the list pages, when worth one, forked now to be ready when the
        # first pass ends: every page exists then, so the rest may be written in any
        # order (removals wait for finish).
        pool = _lists_worker(len(outlets) + len(stocks) + len(days), jobs, stack)
        if first_pass:
            progress("new pages", 0, steps)
            first = NewPages(out, config, record_paths)
            _first_pass(archive, renderer, first, refs, outlets, days, stories, stocks,
                        stock_counts if stocks else None, links)
            writer.take_over(first)
        lists = _Lists(archive.location, str(out), config, record_paths, writer.done,
                       archive.last_change_seq(), tuple(outlets), tuple(stocks), tuple(days))
        made_apart = (functools.partial(pool.get, pool.apply_async(_make_lists, (lists,)))
                      if pool is not None else None)
        progress("article pages", first_pass, steps)
        uid_paths: dict[str, str | None] = {uid: None for uid in uids}
        uid_paths.update(_incremental_articles(archive, renderer, writer, refs, stories, links))
        if made_apart is None:
            _list_pages(archive, renderer, writer, lists, progress, first_pass + 1, steps)
        progress("site-wide pages", steps - 1 - (len(lists) if made_apart else 0), steps)
        _redirects(renderer, writer, archive.redirects(uids))
        # A relinked story changes pages, not the text the search index holds.
        content_changes = {c.article_id for c in changes if c.article_id and not c.relink}
        _site_wide(archive, renderer, writer, content_changes, stocks=stock_counts,
                   stock_index=bool(stocks), watches=watches, stale_watches=True,
                   home_touched={slug for slug, _ in listed})
        if made_apart is not None:
            made = made_apart()
            if made is None:  # the worker saw another state of the archive
                _list_pages(archive, renderer, writer, lists, lambda *_: None, 0, steps)
            else:
                made.hand_to(writer)
            progress("site-wide pages", steps - 1, steps)
    for uid, old_path in archive.built_paths(str(out), uids).items():
        if uid_paths.get(uid) != old_path:
            writer.remove(old_path)
    writer.finish()
    progress("site-wide pages", steps, steps)
    return writer.report, uid_paths


@dataclass(frozen=True, slots=True)
class _Lists:
    """The list pages an incremental build rewrites: outlets', securities' and days'."""

    archive_path: str
    out_dir: str
    config: SiteConfig
    record_paths: bool
    done: frozenset[str]  # written whole by the first pass
    seq: int  # the last change the build's snapshot holds
    outlets: tuple[tuple[str, int], ...]  # each outlet, with its first page to look at
    stocks: tuple[tuple[str, int], ...]  # ditto, securities
    days: tuple[date, ...]

    def __len__(self) -> int:
        return len(self.outlets) + len(self.stocks) + len(self.days)


@dataclass(slots=True)
class _ListsMade:
    """What a worker did of the list pages, for the build's own writer."""

    report: BuildReport
    produced: PathSet
    removals: tuple[str, ...]

    def hand_to(self, writer: SiteWriter) -> None:
        writer.report.merge(self.report)
        writer.produced |= self.produced
        for path in self.removals:
            writer.remove(path)


# Outlets, securities and days from which their pages are made in a worker while
# this process makes the articles' (see _lists_worker).
LISTS_APART_FROM = 24


def _lists_worker(lists: int, jobs: int, stack: contextlib.ExitStack) -> WorkerPool | None:
    """A worker for the pages of these many outlets, securities and days, or None:
    they are made here. Stopped with ``stack`` (on an error too, with its task).

    A worker costs some 25 ms of wall time to start and set up (its own
    connection and renderer) and 0.1 s of CPU over the build (cold caches, the
    pages of memory the fork copies): 100 new posts among 10,000 bench posts
    rewrite 79 outlets', securities' and days' pages (0.17 s) and 284 articles'
    (0.07 s), and the build takes 0.48 s instead of 0.515 s; 10 new posts (11
    outlets and days) took 0.295 s instead of 0.285 s.
    """
    if jobs < 2 or lists < LISTS_APART_FROM or (os.cpu_count() or 1) < 2:
        return None
    from caixun.workers import in_daemon, worker_pool  # multiprocessing: only where used

    return None if in_daemon() else stack.enter_context(worker_pool(1))


def _make_lists(lists: _Lists) -> _ListsMade | None:
    """In a worker: the list pages, or None when the archive is not as the build saw it."""
    writer = SiteWriter(Path(lists.out_dir), lists.record_paths)
    writer.done = lists.done
    with open_archive(lists.archive_path, read_only=True) as archive, archive.snapshot():
        # Another writer's change since the build's snapshot began would put in
        # links to pages the first pass did not write.
        if archive.last_change_seq() != lists.seq:
            return None
        _list_pages(archive, Renderer(lists.config), writer, lists, lambda *_: None, 0, 0)
    return _ListsMade(writer.report, writer.produced, writer.removals())


def _list_pages(archive: Archive, renderer: Renderer, writer: SiteWriter, lists: _Lists,
                progress: Callable[[str, int, int], None], step: int, steps: int) -> None:
    """The outlets', securities' and days' pages of an incremental build; ``step``
    is the first of theirs for ``progress``."""
    for done, (slug, number) in enumerate(lists.outlets, step):
        progress("outlet pages", done, steps)
        _outlet_pages(archive, renderer, writer, slug, number)
    stocks = lists.stocks
    names = archive.security_names(code for code, _ in stocks) if stocks else {}
    summaries = _Summaries(archive)
    for done, (code, number) in enumerate(stocks, step + len(lists.outlets)):
        progress("stock pages", done, steps)
        _stock_pages(archive, renderer, writer, summaries, code, names.get(code, ""), number)
    for done, day in enumerate(lists.days, step + len(lists.outlets) + len(stocks)):
        progress("day pages", done, steps)
        _write_day(archive, renderer, writer, day)


def _redirects(renderer: Renderer, writer: SiteWriter,
               redirects: list[tuple[str, ArticleRef]]) -> None:
    """Pages where an alias of an article had its own (an old site's post, a merged twin)."""
    for path, ref in redirects:
        if writer.wants(path):
            writer.put(path, renderer.redirect(ref))


def _affected_refs(archive: Archive, uids: set[str],
                   positions: set[tuple[str, int]]) -> list[ArticleRef]:
    """The changed articles and their neighbours, in page order."""
    refs = {ref.uid: ref for ref in archive.refs_by_uid(uids)}
    for slug, ts in positions:
        for ref in archive.around(slug, ts):
            refs.setdefault(ref.uid, ref)
    return sorted(refs.values(), key=lambda r: (r.outlet_slug, r.published_ts, r.id))


def _incremental_articles(archive: Archive, renderer: Renderer, writer: SiteWriter,
                          refs: list[ArticleRef], stories: Stories,
                          links: dict[int, StockLinks]) -> dict[str, str]:
    """Article pages; returns where each article's page is."""
    uid_paths: dict[str, str] = {}
    for ref in refs:
        path = _article_path(ref)
        if not writer.wants(path):
            uid_paths[ref.uid] = path  # written whole by the first pass
            continue
        article = archive.get(ref.uid)
        if article is None:
            continue
        prev, next_ = archive.neighbors(ref.outlet_slug, ref.published_ts, ref.id)
        writer.put(path, renderer.article(article, ref, prev, next_, stories,
                                          links.get(ref.id, ())))
        uid_paths[ref.uid] = path
    return uid_paths


def _first_outlet_pages(archive: Archive, renderer: Renderer,
                        positions: set[tuple[str, int]]) -> list[tuple[str, int]]:
    """Each changed outlet with the first of its numbered pages to rewrite."""
    per_page = renderer.config.per_page
    earliest: dict[str, int] = {}
    for slug, ts in positions:
        earliest[slug] = min(ts, earliest.get(slug, ts))
    # From the page before the change on: a new page changes the "newer"
    # link of the page before it.
    return [(slug, max(1, archive.outlet_position(slug, ts) // per_page))
            for slug, ts in sorted(earliest.items())]


def _first_stock_pages(archive: Archive, renderer: Renderer,
                       positions: set[tuple[str, int]]) -> list[tuple[str, int]]:
    """Each changed security with the first of its numbered pages to rewrite (as outlets')."""
    per_page = renderer.config.per_page
    earliest: dict[str, int] = {}
    for code, ts in positions:
        earliest[code] = min(ts, earliest.get(code, ts))
    return [(code, max(1, archive.stock_position(code, ts) // per_page))
            for code, ts in sorted(earliest.items())]


def _outlet_pages(archive: Archive, renderer: Renderer, writer: SiteWriter, slug: str,
                  first: int) -> None:
    """The outlet's feed, its numbered pages from ``first`` on and its front page."""
    per_page = renderer.config.per_page
    total = archive.outlet_count(slug)
    last = chunk_count(total, per_page)
    front = paths.outlet_path(slug)
    if not total:
        writer.remove(front)
        writer.remove(paths.outlet_feed_path(slug))
    wanted = next((n for n in range(first, last + 1)
                   if writer.wants(paths.outlet_chunk_path(slug, n))), None)
    want_front = total > 0 and writer.wants(front)
    newest: list[ArticleRef] = []
    if want_front or (total and writer.wants(paths.outlet_feed_path(slug))):
        newest = archive.outlet_newest(slug, per_page)
        _outlet_feed(archive, renderer, writer, slug, newest[0].outlet)
    if wanted is not None:
        refs = archive.outlet_refs(slug, (wanted - 1) * per_page)
        render_chunks(renderer, writer, slug, refs[-1].outlet, refs, wanted, total)
    if want_front:
        writer.put(front, renderer.outlet_front(
            slug, newest[0].outlet, newest, total, front_older_link(slug, total, per_page)))
    remove_chunks_after(writer, slug, last)


# -- entry point --------------------------------------------------------------------------

def fingerprint(config: SiteConfig) -> str:
    """Changes when anything other than the archive would change the pages."""
    digest = hashlib.sha256(f"{__version__}|{config!r}".encode())
    roots = [files("caixun.publish").joinpath("templates"), files("caixun.publish").joinpath("static")]
    for root in roots:
        for item in sorted(root.iterdir(), key=lambda p: p.name):
            digest.update(item.name.encode() + item.read_bytes())
    if config.theme:
        for path in sorted(Path(config.theme).rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(config.theme)).encode() + path.read_bytes())
    return digest.hexdigest()


def build_site(archive: Archive, out: Path, config: SiteConfig, *, full: bool = False,
               jobs: int | None = None, record_paths: bool = False,
               progress: Callable[[str, int, int], None] | None = None) -> BuildReport:
    """Build the site into ``out``: incrementally when a previous build is known.

    ``progress(phase, done, total)``, when given, is called in this process as
    the build goes: ``done`` grows (never shrinks) to ``total`` steps (a
    worker's share of the pages, an outlet's pages, the site-wide pages…) and
    ``phase`` names the step under way. A build with nothing to do calls it
    not at all.

    Raises :class:`PublishError` when a file cannot be written; the build
    state is then left as it was, so the next build does the whole job again.
    """
    config.check()
    started = time.perf_counter()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PublishError.cannot("create the directory", out, exc) from exc
    try:
        report = _build(archive, out, config, full, jobs, record_paths,
                        progress or (lambda phase, done, total: None))
    finally:  # leftovers of this build, or of a killed one
        shutil.rmtree(out / paths.TMP_DIR, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _refuse_clashes(archive: Archive, uids: set[str] | None) -> None:
    """Fail before writing anything when two articles would have one page."""
    clashes = [c for c in archive.output_clashes(uids) if c[0].endswith(".html")]
    if clashes:
        path, first, second = clashes[0]
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise PublishError(path, f"{first} and {second} would both be written here{more}; "
                           "nothing was built")


def _build(archive: Archive, out: Path, config: SiteConfig, full: bool,
           jobs: int | None, record_paths: bool,
           progress: Callable[[str, int, int], None]) -> BuildReport:
    key = str(out.resolve())
    watches = archive.watches()
    # The site's fingerprint, and the watches': the pages are for the site's, the
    # watches' feeds (only) for theirs, so a change of watches is built incrementally.
    site_print = fingerprint(config)
    print_ = site_print + _watch_print(watches)
    state = archive.build_state(key)
    until = archive.last_change_seq()
    # A directory emptied or deleted since its last build is built again whole.
    built_for = state.fingerprint.partition(WATCHES_MARK)[0] if state is not None else None
    rebuild = full or built_for != site_print or not _is_built(out)
    if rebuild:
        _refuse_clashes(archive, None)
    elif state is not None and until != state.last_seq:
        _refuse_clashes(archive, {c.uid for c in archive.changes_since(state.last_seq, until)})
    shutil.rmtree(out / paths.TMP_DIR, ignore_errors=True)  # leftovers of a killed build
    if rebuild:
        report, _ = _full_build(archive, out, config, jobs or os.cpu_count() or 1,
                                record_paths, progress, watches)
        report.mode = "full"
        # Every article's page, as its path says (streamed: no dict of a million).
        pages = ((ref.uid, _article_path(ref)) for ref in archive.iter_refs())
        archive.save_build_state(key, BuildState(until, print_), pages, replace_all=True)
    elif state is None or (until == state.last_seq and state.fingerprint == print_):
        report = BuildReport(mode="unchanged")
    else:
        with archive.snapshot():
            report, changed = _incremental(archive, out, config, state.last_seq, until,
                                           record_paths, progress, watches,
                                           jobs or os.cpu_count() or 1)
        archive.save_build_state(key, BuildState(until, print_), changed)
    return report

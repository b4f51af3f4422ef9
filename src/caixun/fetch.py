"""Fetch news: polite, robust HTTP and one polling round per source.

``Fetcher`` makes the GET requests sources ask for:

* per host, at most ``per_host`` requests in flight and at least ``min_gap``
  seconds between the starts of two requests; a ``Retry-After`` pushes the
  host's next start back;
* connect and read timeouts, and a total deadline per request (a server that
  trickles its body cannot hold a host's slots); retries with exponential
  backoff and jitter on connection errors, timeouts, 429 and 5xx — never on
  other 4xx;
* size limits: the body as sent (``max_bytes``, checked against the
  ``Content-Length`` before reading) and once decompressed
  (``max_decoded_bytes``, decoded chunk by chunk, so a gzip bomb never
  inflates in memory);
* redirects followed hop by hop, at most ``max_redirects``, http(s) only, and
  never into a loopback, private or link-local network unless the source's
  own URL is in one (a local mirror);
* conditional GET (``ETag`` / ``Last-Modified``);
* payloads decoded and validated: the charset from a byte-order mark, the
  ``Content-Type`` or the XML declaration, a wrong label detected and noted;
  an empty body, an HTML page where JSON was expected, truncated JSON and a
  JSONP wrapper are told apart.

``poll_source`` runs one round of one source: list → (full text for new or
changed items only) → normalize → store, and returns what happened. A list
whose bytes did not change since the last round is recognised and skipped.

A source that pages (``Source.next_page``, ``max_pages``) has older pages of a
list read after the first while the page just read was not empty, brought an
item not seen earlier in the round and holds no item stored already, up to
``max_pages`` pages: a burst larger than a page between two polls is caught up,
and a first round, with nothing stored, reads ``max_pages`` pages. Only the
first page is asked conditionally and keeps state; page n is named
``<key>:page<n>``. A later page that fails (HTTP, payload) ends the paging: the
items of the pages read are stored and the round's line carries a note, not an
error. Items older than what the failed page held are read only if a later
round pages that far (the next round stops at the first page with an item
stored).

A source of securities' names (``NameSource``: the East Money quote lists)
goes through the same fetcher and the same health record, but its pages hold
names, not articles: every page of each of its lists is read (``next_page``
until None, at most ``max_pages``) and its names stored with
``learn_securities`` as soon as it is read, so a page that fails loses
nothing read before it; the source then fails in its health record (a list
that fails does not stop the next one). Malformed rows are warnings
(``item_errors``); its lists are never asked conditionally.

After a round, ``fetch_round`` (``caixun fetch``) runs one bounded step of the
archive's re-tag (``retag_step``): articles stored before a name was learned
are tagged with it a step at a time (``caixun run`` does the same after its
rounds, on a task of its own).

``next_health`` keeps a source's record. ``SourceHealth.lists`` holds the
conditional-GET state of each list request, by its key; keys starting with
``_`` are reserved for the record itself: ``FAILING_SINCE`` holds the time of
the first failure of the current run of failures (``failing_since``), so a
source that never worked can be told from one that worked and fails now.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import ipaddress
import json
import random
import re
import socket
import time
import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Awaitable, Callable, Mapping, Sequence
from urllib.parse import urlsplit

import httpx

from caixun.archive import Archive, SourceHealth, StoreResult
from caixun.archive.worker import ArchiveWorker, on_archive
from caixun.errors import ArchiveError, FetchError, PayloadError, SourceError
from caixun.model import Article
from caixun.normalize import check_published
from caixun.sources.base import Entry, ItemError, NameSource, Request, Source

__all__ = [
    "FAILING_SINCE",
    "FetchSettings",
    "Fetched",
    "Fetcher",
    "HostGate",
    "Resolver",
    "SourceReport",
    "body_charset",
    "decode_payload",
    "failing_since",
    "fetch_round",
    "health_state",
    "internal_kind",
    "next_health",
    "poll_and_record",
    "poll_source",
    "retag_step",
    "system_resolver",
]

# A longer Retry-After ends the round for that source; its health record backs off.
MAX_RETRY_AFTER = 120.0
# The reserved key of SourceHealth.lists (else conditional-GET state by request key):
# {"at": ISO time} of the first failure of the current run of failures.
FAILING_SINCE = "_failing_since"
DEFAULT_USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                      "(KHTML, like Gecko) Chrome/120.0 Safari/537.36 caixun")
# Articles one re-tag step reads at most (Archive.retag's limit).
RETAG_STEP = 500


@dataclass(frozen=True, slots=True)
class FetchSettings:
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    retries: int = 3  # attempts after the first, for retryable failures
    backoff: float = 0.5  # seconds before the first retry; doubles each time, with jitter
    max_backoff: float = 30.0
    per_host: int = 2  # requests in flight per host
    min_gap: float = 1.0  # seconds between the starts of two requests to one host
    user_agent: str = DEFAULT_USER_AGENT
    total_timeout: float = 60.0  # seconds for the whole request, body included
    max_bytes: int = 20_000_000  # body as sent (compressed)
    max_decoded_bytes: int = 50_000_000  # body once decompressed
    max_redirects: int = 5
    retag_step: int = RETAG_STEP  # articles re-tagged at most after a round; 0: none


@dataclass(frozen=True, slots=True)
class Fetched:
    """A response: its body, or ``not_modified`` for a 304.

    ``charset`` is the codec that reads the body ("" when none does, or not yet
    known); ``charset_note`` says how the body's label was wrong ("" when right).
    """

    url: str
    status: int
    body: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False
    charset: str = ""
    charset_note: str = ""

    @property
    def body_hash(self) -> str:
        return hashlib.blake2b(self.body, digest_size=16).hexdigest()


class HostGate:
    """Politeness per host: a cap on requests in flight and a gap between starts."""

    def __init__(self, per_host: int, min_gap: float) -> None:
        self.per_host = per_host
        self.min_gap = min_gap
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._next_start: dict[str, float] = {}
        # Books a start with the other fetchers of one archive (Archive.reserve_host):
        # (host, gap) → seconds to wait. None: this process is the only one.
        self.shared: Callable[[str, float], Awaitable[float]] | None = None

    def defer(self, host: str, seconds: float) -> None:
        """The host asked us to wait (``Retry-After``): no request before then."""
        until = time.monotonic() + seconds
        self._next_start[host] = max(self._next_start.get(host, 0.0), until)

    async def _wait_turn(self, host: str) -> None:
        lock = self._locks.setdefault(host, asyncio.Lock())
        async with lock:  # starts are serialized, so the gap holds under concurrency
            delay = self._next_start.get(host, 0.0) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.shared is not None:
                delay = await self.shared(host, self.min_gap)
                if delay > 0:
                    await asyncio.sleep(delay)
            self._next_start[host] = time.monotonic() + self.min_gap

    async def run(self, host: str, call: Any) -> Any:
        slots = self._slots.setdefault(host, asyncio.Semaphore(self.per_host))
        async with slots:
            await self._wait_turn(host)
            return await call()


Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""The IP addresses of a host name: ``await resolve("news.example", 443)``."""

REDIRECTS = frozenset({301, 302, 303, 307, 308})
# What BodyDecoder undoes. Said explicitly: httpx would add br or zstd once their
# packages are installed, and those could not be decoded within a size limit.
ACCEPT_ENCODING = "gzip, deflate"


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``getaddrinfo`` gives for ``host`` (the default ``Resolver``)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class _Retryable(Exception):
    """An attempt failed in a way worth another try; ``str()`` says how."""


@dataclass(frozen=True, slots=True)
class _Reply:
    """One HTTP exchange; ``body`` is read only for a final 2xx/3xx response."""

    url: str
    status: int
    headers: httpx.Headers
    body: bytes = b""


class Fetcher:
    """Makes sources' requests with timeouts, limits, retries and per-host politeness.

    ``resolver`` finds the addresses of a redirect's target host (tests map names
    to addresses with it); the default asks the system.
    """

    def __init__(self, settings: FetchSettings | None = None,
                 client: httpx.AsyncClient | None = None,
                 resolver: Resolver | None = None) -> None:
        self.settings = settings or FetchSettings()
        timeout = httpx.Timeout(self.settings.read_timeout, connect=self.settings.connect_timeout)
        # Redirects are followed by _attempt, hop by hop, so every target is checked.
        self.client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self.gate = HostGate(self.settings.per_host, self.settings.min_gap)
        self.resolve = resolver or system_resolver

    async def aclose(self) -> None:
        await self.client.aclose()

    async def get(self, request: Request, validators: Mapping[str, str] | None = None) -> Fetched:
        """GET with retries; ``FetchError`` when it cannot succeed."""
        headers = self._headers(request, validators)
        attempts = self.settings.retries + 1
        problem = ""
        for attempt in range(attempts):
            try:
                return await self._attempt(request, headers)
            except _Retryable as exc:
                problem = str(exc)
            if attempt + 1 < attempts:
                await asyncio.sleep(self._backoff(attempt))
        raise FetchError(f"{request.url}: {problem} (after {attempts} attempts)")

    def _headers(self, request: Request, validators: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"User-Agent": self.settings.user_agent, "Accept-Encoding": ACCEPT_ENCODING,
                   **dict(request.headers)}
        if validators:
            if validators.get("etag"):
                headers["If-None-Match"] = validators["etag"]
            if validators.get("last_modified"):
                headers["If-Modified-Since"] = validators["last_modified"]
        return headers

    async def _attempt(self, request: Request, headers: Mapping[str, str]) -> Fetched:
        """One try: the request and the redirects it leads to, each target checked."""
        url = request.url
        try:
            httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise FetchError(f"{url}: invalid URL ({exc})") from None
        # httpx drops a URL's own query when given params, even empty ones.
        params = httpx.QueryParams(list(request.params)) if request.params else None
        chain = [url]
        for _ in range(self.settings.max_redirects + 1):
            reply = await self._hop(url, params, headers, request)
            target = _redirect_target(request, reply)
            if target is None:
                return self._accept(request, reply)
            await self._check_redirect(request, target)
            url, params = target, None
            chain.append(target)
        loop = ", a loop" if len(set(chain)) < len(chain) else ""
        raise FetchError(f"{request.url}: redirected more than {self.settings.max_redirects} "
                         f"times (fetch.max_redirects{loop}; last to {chain[-1]})")

    async def _hop(self, url: str, params: httpx.QueryParams | None,
                   headers: Mapping[str, str], request: Request) -> _Reply:
        """One request, in its host's turn; transient failures become ``_Retryable``."""
        try:
            reply: _Reply = await self.gate.run(
                urlsplit(url).netloc, lambda: self._exchange(url, params, headers, request))
        except httpx.InvalidURL as exc:  # httpx prepares a redirect's next request itself
            raise FetchError(f"{request.url}: redirect from {url} refused: its Location is "
                             f"no http(s) URL ({exc})") from None
        except TimeoutError:  # asyncio.timeout's: the deadline of the whole request
            raise _Retryable(f"took longer than {self.settings.total_timeout:g} s "
                             "in all") from None
        except httpx.TimeoutException:
            raise _Retryable("timed out") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__}: "
                             f"{exc or 'no detail'})") from None
        return reply

    async def _exchange(self, url: str, params: httpx.QueryParams | None,
                        headers: Mapping[str, str], request: Request) -> _Reply:
        """Connect, headers and body within ``total_timeout``: per-read timeouts alone
        let a server that sends a byte a second hold the host's slot for ever."""
        async with asyncio.timeout(self.settings.total_timeout):
            async with self.client.stream("GET", url, params=params, headers=headers,
                                          follow_redirects=False) as response:
                status = response.status_code
                final = not (status in REDIRECTS and "location" in response.headers)
                wanted = final and status < 400 and status != 304
                body = await self._read_body(request, response) if wanted else b""
                return _Reply(str(response.url), status, response.headers, body)

    async def _read_body(self, request: Request, response: httpx.Response) -> bytes:
        """The body, decompressed; ``FetchError`` (not retried) past the size limits."""
        cap = self.settings.max_bytes
        declared = response.headers.get("content-length", "").strip()
        if declared.isascii() and declared.isdigit() and int(declared) > cap:  # unread
            raise FetchError(f"{request.url}: response larger than {cap:,} bytes "
                             f"(Content-Length {int(declared):,}; fetch.max_bytes)")
        decoder = BodyDecoder(response.headers.get("content-encoding", ""),
                              self.settings.max_decoded_bytes, request.url)
        received = 0
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received > cap:
                raise FetchError(f"{request.url}: response larger than {cap:,} bytes "
                                 "(fetch.max_bytes)")
            decoder.feed(chunk)
        return decoder.finish()

    async def _check_redirect(self, request: Request, target: str) -> None:
        """Refuse a redirect into an internal network, unless the source is in one."""
        if await self._internal_host(request.url, must_resolve=False):
            return  # a local mirror (or a test server) may send us anywhere
        found = await self._internal_host(target, must_resolve=True)
        if found:
            raise FetchError(f"{request.url}: redirect to {target} refused: {found} "
                             "(only a source on such an address may redirect there)")

    async def _internal_host(self, url: str, *, must_resolve: bool) -> str:
        """How ``url``'s host is internal ("127.0.0.1 is a loopback address"), or "".

        A name is resolved; one internal address is enough. A name that does not
        resolve is "" for the source's own URL and ``_Retryable`` for a target.
        """
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")
        if _is_ip(host):  # written as an address: nothing to resolve
            kind = internal_kind(host)
            return f"{host} is {kind}" if kind else ""
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            addresses = await self.resolve(host, port)
        except (OSError, UnicodeError) as exc:  # socket.gaierror; a label too long
            if must_resolve:
                raise _Retryable(f"connection failed (cannot resolve {host}: {exc})") from None
            return ""
        for address in addresses:
            kind = internal_kind(address)
            if kind:
                return f"{host} resolves to {address}, {kind}"
        return ""

    def _accept(self, request: Request, reply: _Reply) -> Fetched:
        """The result of a final response; ``_Retryable`` when it is worth another try."""
        status = reply.status
        if status == 429 or status >= 500:
            wait = self._honour_retry_after(urlsplit(reply.url).netloc, reply.headers)
            if wait is not None and wait > MAX_RETRY_AFTER:
                raise FetchError(f"{request.url}: HTTP {status}, asked to "
                                 f"retry after {wait:.0f} s")
            raise _Retryable(f"HTTP {status}")
        if status == 304:
            return Fetched(reply.url, status, not_modified=True)
        if status >= 400:
            raise FetchError(f"{request.url}: HTTP {status} (not retried)")
        content_type = reply.headers.get("content-type", "")
        charset, note = body_charset(reply.body, content_type, xml=request.payload == "feed")
        return Fetched(reply.url, status, reply.body, content_type,
                       reply.headers.get("etag"), reply.headers.get("last-modified"),
                       charset=charset, charset_note=f"{reply.url}: {note}" if note else "")

    def _honour_retry_after(self, host: str, headers: httpx.Headers) -> float | None:
        seconds = retry_after_seconds(headers.get("retry-after"))
        if seconds is not None and seconds <= MAX_RETRY_AFTER:
            self.gate.defer(host, seconds)
        return seconds

    def _backoff(self, attempt: int) -> float:
        base = min(self.settings.max_backoff, self.settings.backoff * 2.0 ** attempt)
        return float(base * (0.5 + random.random() / 2))  # jitter: many clients don't retry in step


def _redirect_target(request: Request, reply: _Reply) -> str | None:
    """Where a redirect points (absolute), None for a final response; only http(s)."""
    location = reply.headers.get("location")
    if reply.status not in REDIRECTS or location is None:
        return None
    try:
        target = httpx.URL(reply.url).join(location.strip())
    except httpx.InvalidURL as exc:
        raise FetchError(f"{request.url}: redirected to an invalid URL {location!r}") from exc
    if target.scheme not in ("http", "https") or not target.host:
        raise FetchError(f"{request.url}: redirect to {location!r} refused: only http and "
                         "https URLs are followed")
    return str(target)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def internal_kind(address: str) -> str | None:
    """What makes an IP address internal ("a loopback address" …); None for a public
    address or a string that is no IP address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for test, kind in ((ip.is_unspecified, "an unspecified address"),
                       (ip.is_loopback, "a loopback address"),
                       (ip.is_link_local, "a link-local address"),
                       (ip.is_multicast, "a multicast address"),
                       (ip.is_private, "a private address"),
                       (ip.is_reserved, "a reserved address"),
                       (not ip.is_global, "not a public address")):
        if test:
            return kind
    return None


class BodyDecoder:
    """Undoes a ``Content-Encoding`` (gzip, deflate) chunk by chunk, within a size limit.

    Each decompression step is given room for at most one byte past the limit
    (and 1 MiB at a time), so a bomb is refused once it has grown past the limit,
    never inflated whole.
    """

    PIECE = 1 << 20

    def __init__(self, encoding: str, limit: int, url: str) -> None:
        codings = [c.strip().lower() for c in encoding.split(",")]
        codings = [c for c in codings if c not in ("", "identity")]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise FetchError(f"{url}: unsupported Content-Encoding {encoding!r} "
                             f"(caixun asks for {ACCEPT_ENCODING})")
        self.coding = codings[0] if codings else ""
        self.limit, self.url = limit, url
        self.size = 0
        self._parts: list[bytes] = []
        self._fresh = True  # nothing decoded yet: a deflate body may still be raw deflate
        self._zlib = (zlib.decompressobj(16 + zlib.MAX_WBITS) if self.coding.endswith("gzip")
                      else zlib.decompressobj() if self.coding else None)

    def feed(self, data: bytes) -> None:
        if self._zlib is None:
            self._keep(data)
            return
        try:
            self._inflate(data)
        except zlib.error as exc:
            if not (self.coding == "deflate" and self._fresh):
                raise FetchError(f"{self.url}: the {self.coding} body cannot be "
                                 f"decompressed ({exc})") from exc
            # Some servers send raw deflate without the zlib wrapper (httpx accepts it too).
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            self._fresh = False
            self.feed(data)
        self._fresh = False

    def _inflate(self, data: bytes) -> None:
        assert self._zlib is not None
        while data:
            room = self.limit - self.size + 1  # one byte past the limit tells a bomb
            self._keep(self._zlib.decompress(data, min(room, self.PIECE)))
            data = self._zlib.unconsumed_tail

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            if self.coding:
                raise FetchError(f"{self.url}: the body decompresses to more than "
                                 f"{self.limit:,} bytes (fetch.max_decoded_bytes; "
                                 "a compression bomb?)")
            raise FetchError(f"{self.url}: response larger than {self.limit:,} bytes "
                             "(fetch.max_decoded_bytes)")
        if data:
            self._parts.append(data)

    def finish(self) -> bytes:
        if self._zlib is not None:
            self._keep(self._zlib.flush())
        return b"".join(self._parts)


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass  # not a number: an HTTP date
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


# -- payloads -------------------------------------------------------------------------

_JSONP = re.compile(r"^\s*[A-Za-z_$][\w$.]*\s*\(", re.S)


def decode_payload(request: Request, fetched: Fetched) -> Any:
    """The decoded payload of a response; ``PayloadError`` says what is wrong with it.

    A feed is returned as text, decoded by :func:`body_charset` (the feed parser
    reads a ``str`` as the UTF-8 it is); JSON and text likewise.
    """
    if request.payload == "feed":
        if not fetched.body.strip():
            raise PayloadError(f"{fetched.url}: empty response body")
        charset = fetched.charset or body_charset(fetched.body, fetched.content_type,
                                                  xml=True)[0]
        # Nothing reads it cleanly: the parser still gets what can be read (and the
        # fetcher's note says so), as a browser would show it.
        return fetched.body.decode(charset or "utf-8", errors="replace").lstrip("\ufeff")
    text = _text(fetched)
    if request.payload == "text":
        return text
    return _json(fetched, text)


def _text(fetched: Fetched) -> str:
    if not fetched.body.strip():
        raise PayloadError(f"{fetched.url}: empty response body")
    charset, note = fetched.charset, fetched.charset_note
    if not charset:
        charset, note = body_charset(fetched.body, fetched.content_type)
    if not charset:
        raise PayloadError(f"{fetched.url}: {note}")
    return fetched.body.decode(charset).lstrip("\ufeff")


_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"),
         (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))  # UTF-32 LE first: its BOM starts with UTF-16 LE's
_CHARSET_PARAM = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.I)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([^"']+)["']""")


# Bytes past 0x7f needed before the bytes' own evidence outweighs a label that
# also reads them. Measured on the corpus (rss-days titles and summaries encoded
# as GBK, ~30,000 random slices): 7 % of slices with under 4 such bytes were
# valid UTF-8, 1.8 % with 4-7, 0.07 % with 8-11, none from 12 on.
_EVIDENCE = 32
_ASCII = bytes(range(128))
_WESTERN = frozenset({"ascii", "iso8859-1", "cp1252"})  # (nearly) any byte is a character


def body_charset(body: bytes, content_type: str = "", *, xml: bool = False) -> tuple[str, str]:
    """(codec, note): the codec that reads ``body``, and how its label was wrong.

    A byte-order mark decides. The labels are the ``Content-Type`` charset and,
    for XML, the declaration's encoding, in that order; the first one that reads
    the body is used, except that the bytes win over a label that would read
    anything when they are unmistakable (at least ``_EVIDENCE`` bytes past 0x7f):
    valid UTF-8 over any label (GBK text of that length is never valid UTF-8,
    while UTF-8 often decodes as GBK, into nonsense), GB18030 over a Western
    single-byte label. Unlabelled, or when no label reads it: UTF-8, then
    GB18030 (a superset of GBK and GB2312, which Chinese portals send
    unlabelled or mislabelled). The note is "" when the first label was right
    or there was none; the codec is "" when nothing reads the body.
    """
    for bom, codec in _BOMS:
        if body.startswith(bom) and _reads(body, codec):
            return codec, ""
    labels = _charset_labels(body, content_type, xml)
    first = labels[0] if labels else None
    if first and first[0].startswith(("utf-16", "utf-32")) and _reads(body, first[0]):
        return first[0], ""  # no BOM, but said so: its ASCII would also pass as UTF-8
    if body.isascii():
        return "utf-8", ""
    plain = len(body.translate(None, _ASCII)) >= _EVIDENCE
    utf8 = _reads(body, "utf-8")
    if utf8 and (plain or not labels):
        return "utf-8", _mislabel(first, "UTF-8")
    if plain and first and first[0] in _WESTERN and _reads(body, "gb18030"):
        return "gb18030", _mislabel(first, "GB18030")
    for label in labels:
        if _reads(body, label[0]):
            return label[0], "" if label is first else _mislabel(first, label[1])
    if utf8:
        return "utf-8", _mislabel(first, "UTF-8")
    if _reads(body, "gb18030"):
        return "gb18030", _mislabel(first, "GB18030")
    named = f"{first[1]} (as declared), " if first and first[0] not in ("utf-8", "gb18030") \
        else ""
    return "", f"body is neither {named}UTF-8 nor GB18030"


def _charset_labels(body: bytes, content_type: str, xml: bool) -> list[tuple[str, str, str]]:
    """(codec, label as written, where) for each known charset the response names."""
    found = []
    header = _CHARSET_PARAM.search(content_type)
    if header:
        found.append((header.group(1), "the Content-Type"))
    declaration = _XML_ENCODING.match(body[:200]) if xml else None
    if declaration:
        found.append((declaration.group(1).decode("ascii", "replace"), "the XML declaration"))
    labels = []
    for written, where in found:
        try:
            codec = codecs.lookup("gbk" if written.lower() == "x-gbk" else written).name
        except (LookupError, ValueError):  # ValueError: a NUL in the name
            continue  # an unknown name says nothing
        codec = "gb18030" if codec in ("gb2312", "gbk") else codec  # the superset reads both
        labels.append((codec, written, where))
    return labels


def _reads(body: bytes, codec: str) -> bool:
    try:
        body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _mislabel(label: tuple[str, str, str] | None, actual: str) -> str:
    if label is None or label[0] == actual.lower():
        return ""
    return f"labelled charset {label[1]} ({label[2]}) but the body is {actual}; read as {actual}"


def _json(fetched: Fetched, text: str) -> Any:
    stripped = text.strip()
    if stripped.startswith("<") or "html" in fetched.content_type:
        raise PayloadError(f"{fetched.url}: an HTML page instead of JSON "
                           f"(status {fetched.status}): {_snippet(stripped)!r}")
    if _JSONP.match(stripped):
        start, end = stripped.find("("), stripped.rfind(")")
        stripped = stripped[start + 1:end] if end > start else stripped[start + 1:]
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(stripped) - 1 or "Unterminated" in exc.msg or "Expecting" in exc.msg \
                and exc.pos >= len(stripped.rstrip()) - 2:
            raise PayloadError(f"{fetched.url}: truncated JSON (the body ends after "
                               f"{len(fetched.body)} bytes)") from exc
        raise PayloadError(f"{fetched.url}: invalid JSON at character {exc.pos}: "
                           f"{exc.msg}") from exc


def _snippet(text: str) -> str:
    title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
    plain = re.sub(r"<[^>]+>", " ", title.group(1) if title else text)
    return " ".join(plain.split())[:80]


# -- one round of one source -----------------------------------------------------------------

@dataclass(slots=True)
class SourceReport:
    """What one round of one source did."""

    name: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0  # exact copies of stored articles under new ids
    lists_unchanged: int = 0  # list responses skipped: 304 or identical bytes
    older_pages: int = 0  # pages read after the first of a list (a burst caught up)
    item_errors: list[str] = field(default_factory=list)  # "uid: problem"
    error: str | None = None  # the source failed as a whole
    state: dict[str, dict[str, str]] = field(default_factory=dict)  # per list request
    notes: list[str] = field(default_factory=list)  # worth knowing, failed nothing (a charset)
    # A source of securities' names (NameSource): what its pages gave.
    lists_names: bool = False
    names: int = 0  # names read
    names_new: int = 0  # of which new spellings (stored for the first time)
    pages: int = 0  # list pages read
    not_securities: int = 0  # rows that name an index or a board, left out

    @property
    def changed(self) -> bool:
        return bool(self.new or self.updated)

    def summary(self) -> str:
        if self.lists_names:
            return self._names_summary()
        if self.error:
            return f"{self.name}: FAILED: {self.error}"
        text = (f"{self.name}: {self.new} new, {self.updated} updated, "
                f"{self.unchanged} unchanged, {len(self.item_errors)} errors")
        if self.merged:
            text += f", {self.merged} merged into earlier copies"
        if self.lists_unchanged:
            text += f" ({self.lists_unchanged} list(s) not modified)"
        if self.older_pages:
            text += f" ({self.older_pages} older page(s) read)"
        for note in self.notes:
            text += f"; note: {note}"
        return text

    def _names_summary(self) -> str:
        read = (f"{self.names} names read ({self.names_new} new) from {self.pages} "
                f"page(s)")
        if self.error:
            kept = f"; stored all the same: {read}" if self.pages else ""
            return f"{self.name}: FAILED: {self.error}{kept}"
        text = f"{self.name}: {read}"
        if self.not_securities:
            text += f", {self.not_securities} rows not securities (indices, boards)"
        if self.item_errors:
            text += f", {len(self.item_errors)} malformed row(s) left out"
        for note in self.notes:
            text += f"; note: {note}"
        return text


async def poll_source(source: Source, fetcher: Fetcher, archive: Archive | ArchiveWorker,
                      state: Mapping[str, Mapping[str, str]]) -> SourceReport:
    """One round: lists, then full texts of new or changed items, then store.

    ``archive`` is a plain archive (used inline) or an ``ArchiveWorker`` (its
    calls run on the archive's thread, off the event loop); a busy archive is
    waited for either way.
    """
    report = SourceReport(source.name, state=_request_state(state))
    if isinstance(source, NameSource):
        report.lists_names, report.state = True, {}
    try:
        if isinstance(source, NameSource):
            await _learn_names(source, fetcher, archive, report)
            return report
        entries = await _list_entries(source, fetcher, archive, report)
        await _store_entries(source, fetcher, archive, entries, report)
        if report.item_errors:
            # Keep the old validators so the same lists are read again next round
            # and the items that failed are retried (the stored ones are skipped).
            report.state = _request_state(state)
    except (SourceError, ArchiveError) as exc:  # ArchiveError: e.g. locked for 10 minutes
        report.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug in one source must not stop the others
        report.error = f"internal error in the {source.kind} source: {type(exc).__name__}: {exc}"
    return report


def next_health(health: SourceHealth, report: SourceReport, every: float, now: float,
                max_backoff: float) -> SourceHealth:
    """The source's record after a round: back off while it fails, normal after a success."""
    stamp = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds")
    if report.error is None:
        return SourceHealth(health.name, stamp, stamp, 0, None, now + every,
                            _request_state(report.state))
    failures = health.consecutive_failures + 1
    # The exponent is capped: 2.0 ** 1024 overflows after ~1,000 failures in a row.
    delay = min(max_backoff, every * 2.0 ** min(failures - 1, 64))
    lists = {**_request_state(health.lists), FAILING_SINCE: {"at": failing_since(health) or stamp}}
    return SourceHealth(health.name, stamp, health.last_success, failures, report.error,
                        now + max(every, delay), lists)


def failing_since(health: SourceHealth) -> str | None:
    """When the source's current run of failures began (ISO time); None when it is not failing.

    A run recorded before ``FAILING_SINCE`` existed has failed at least since its
    last attempt.
    """
    if health.consecutive_failures <= 0:
        return None
    mark = health.lists.get(FAILING_SINCE)
    at = mark.get("at") if isinstance(mark, Mapping) else None
    return at if isinstance(at, str) and at else health.last_attempt


def health_state(health: SourceHealth) -> str:
    """The source's state: never polled, ok, never reached (failing and never
    succeeded) or failing (it worked before)."""
    if health.consecutive_failures > 0:
        return "failing" if health.last_success else "never reached"
    return "ok" if health.last_attempt else "never polled"


def _request_state(lists: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """The conditional-GET state of ``lists``, by request key, without the reserved keys."""
    return {k: dict(v) for k, v in lists.items() if not k.startswith("_")
            and isinstance(v, Mapping)}


async def fetch_round(sources: Sequence[Source], fetcher: Fetcher,
                      archive: Archive | ArchiveWorker, *, due_only: bool = True,
                      max_backoff: float = 3600.0) -> list[SourceReport]:
    """Poll every due source (or all of them) concurrently; each records its health."""
    now = time.time()
    chosen = [s for s in sources if not due_only
              or (await on_archive(archive, Archive.source_health, s.name)).next_poll <= now]
    reports = list(await asyncio.gather(
        *(poll_and_record(source, fetcher, archive, max_backoff) for source in chosen)))
    if reports:
        # One bounded step: names learned (this round or before) reach older articles.
        try:
            await retag_step(archive, fetcher.settings.retag_step)
        except Exception as exc:  # noqa: BLE001 - what was fetched is stored: say it, go on
            reports[0].notes.append(f"the re-tag of older articles waits for the next "
                                    f"round ({type(exc).__name__}: {exc})")
    return reports


async def retag_step(archive: Archive | ArchiveWorker, limit: int = RETAG_STEP) -> int:
    """One bounded step of the archive's re-tag, when one is pending: up to ``limit``
    articles stored before names were learned are tagged with them. Returns how
    many articles it read (0: nothing was pending, or ``limit`` is 0)."""
    if limit <= 0 or not await on_archive(archive, Archive.retag_pending):
        return 0
    return await on_archive(archive, Archive.retag, limit)


async def poll_and_record(source: Source, fetcher: Fetcher,
                          archive: Archive | ArchiveWorker,
                          max_backoff: float = 3600.0) -> SourceReport:
    """One round of one source, with its health record updated afterwards."""
    health = await on_archive(archive, Archive.source_health, source.name)
    report = await poll_source(source, fetcher, archive, health.lists)
    await on_archive(archive, Archive.save_source_health,
                     next_health(health, report, source.config.every, time.time(), max_backoff))
    return report


async def _list_entries(source: Source, fetcher: Fetcher,
                        archive: Archive | ArchiveWorker,
                        report: SourceReport) -> list[Entry]:
    """The entries of every list of the round: each list's first page, then its
    older pages while they are needed (see the module docstring)."""
    entries: dict[str, Entry] = {}
    for request in source.list_requests():
        first = await _first_page(source, fetcher, request, report)
        if first is not None:
            payload, items = first
            _add(entries, items)
            await _older_pages(source, fetcher, archive, request, payload, items, entries,
                               report)
    return list(entries.values())


async def _first_page(source: Source, fetcher: Fetcher, request: Request,
                      report: SourceReport) -> tuple[Any, list[Entry]] | None:
    """The payload and entries of a list's first page; None when it did not change."""
    known = report.state.get(request.key, {})
    fetched = await fetcher.get(request, known)
    if fetched.not_modified or fetched.body_hash == known.get("body_hash"):
        report.lists_unchanged += 1
        return None
    if fetched.charset_note:  # stored correctly all the same; the operator may tell them
        report.notes.append(fetched.charset_note)
    payload = decode_payload(request, fetched)
    items = source.parse_list(request, payload)
    if not items:
        raise PayloadError(f"{fetched.url}: the list is empty")
    report.state[request.key] = {k: v for k, v in {
        "etag": fetched.etag, "last_modified": fetched.last_modified,
        "body_hash": fetched.body_hash}.items() if v}
    return payload, items


async def _older_pages(source: Source, fetcher: Fetcher, archive: Archive | ArchiveWorker,
                       first: Request, payload: Any, items: list[Entry],
                       entries: dict[str, Entry], report: SourceReport) -> None:
    """Follow ``source.next_page`` from a list's first page while it is needed.

    ``entries`` already holds the first page's items; each page read adds its own.
    """
    request, page, fresh = first, 1, bool(items)
    while page < source.max_pages and fresh and not await _any_stored(source, archive, items):
        page += 1
        try:
            following = source.next_page(request, payload, items)
            if following is None:
                return
            request = replace(following, key=f"{first.key}:page{page}")
            # No validators: only the first page is asked conditionally.
            fetched = await fetcher.get(request)
            payload = decode_payload(request, fetched)
            items = source.parse_list(request, payload)
        except SourceError as exc:
            kept = "page 1" if page == 2 else f"pages 1-{page - 1}"
            report.notes.append(f"page {page} of list {first.key!r} not read, paging stopped "
                                f"(the items of {kept} are kept): {exc}")
            return
        report.older_pages += 1
        if fetched.charset_note:
            report.notes.append(fetched.charset_note)
        fresh = _add(entries, items)  # a server ignoring the cursor repeats a page: stop


async def _learn_names(source: NameSource, fetcher: Fetcher,
                       archive: Archive | ArchiveWorker, report: SourceReport) -> None:
    """Every list of a names source, page by page, each page's names stored at once.

    A list that fails does not stop the next; the failures together fail the
    round (``SourceError``), after everything that could be read was stored.
    """
    failures = []
    for request in source.list_requests():
        try:
            await _learn_list(source, fetcher, archive, request, report)
        except SourceError as exc:
            failures.append(str(exc))
    if failures:
        raise SourceError("; ".join(failures))


async def _learn_list(source: NameSource, fetcher: Fetcher,
                      archive: Archive | ArchiveWorker, first: Request,
                      report: SourceReport) -> None:
    request, page = first, 1
    while True:
        try:
            fetched = await fetcher.get(request)  # never conditional: page 1 says too little
            payload = decode_payload(request, fetched)
            names = source.parse_names(request, payload)
        except SourceError as exc:
            kept = "" if page == 1 else \
                f" (the names of page{'s 1-' if page > 2 else ' '}{page - 1} are kept)"
            raise SourceError(f"{first.key} page {page}: {exc}{kept}") from exc
        if fetched.charset_note:
            report.notes.append(fetched.charset_note)
        report.pages += 1
        report.names += len(names.names)
        report.not_securities += names.ignored
        report.item_errors.extend(names.skipped)
        if names.names:
            new = await on_archive(archive, Archive.learn_securities, names.names)
            report.names_new += len(new)
        following = source.next_page(request, payload, [])
        if following is None:
            return
        if page >= source.max_pages:
            report.notes.append(f"{first.key}: stopped after {page} pages (max_pages); "
                                "the rest of the list is not read")
            return
        page += 1
        request = replace(following, key=f"{first.key}:page{page}")


def _add(entries: dict[str, Entry], items: list[Entry]) -> bool:
    """Add the items not in ``entries`` yet (the same item twice: once); whether any was."""
    before = len(entries)
    for entry in items:
        entries.setdefault(entry.native_id, entry)
    return len(entries) > before


async def _any_stored(source: Source, archive: Archive | ArchiveWorker,
                      items: list[Entry]) -> bool:
    """Whether the source already stored one of ``items``: paging has caught up."""
    uids = [source.uid(entry.native_id) for entry in items]
    return bool(await on_archive(archive, Archive.list_hashes, uids))


async def _store_entries(source: Source, fetcher: Fetcher,
                         archive: Archive | ArchiveWorker,
                         entries: list[Entry], report: SourceReport) -> None:
    known = await on_archive(archive, Archive.list_hashes,
                             [source.uid(e.native_id) for e in entries])
    fresh = [e for e in entries if known.get(source.uid(e.native_id)) != e.list_hash]
    report.unchanged += len(entries) - len(fresh)
    fetched_at = datetime.now(timezone.utc)
    results = await asyncio.gather(*(_article(source, fetcher, e, fetched_at) for e in fresh))
    hashes = {source.uid(e.native_id): e.list_hash for e in fresh}
    articles: list[Article] = []
    for entry, result in zip(fresh, results):
        if isinstance(result, Article):
            articles.append(result)
        else:
            report.item_errors.append(result)
    stored = await on_archive(archive, _store_batch, articles,
                              {a.uid: hashes[a.uid] for a in articles})
    for outcome in stored:
        if outcome is StoreResult.NEW:
            report.new += 1
        elif outcome is StoreResult.UPDATED:
            report.updated += 1
        elif outcome is StoreResult.MERGED:
            report.merged += 1
        else:
            report.unchanged += 1


def _store_batch(archive: Archive, articles: list[Article],
                 hashes: dict[str, str]) -> list[StoreResult]:
    from caixun.archive.base import content_row
    from caixun.archive.securities import scan_article
    from caixun.archive.stories import keyed
    from caixun.dedup import Candidate
    from caixun.segment import index_text

    # Segmenting, fingerprinting (with the ids of the index keys), scanning for
    # securities and making the column values need no lock: done first, other
    # writers (more fetchers, an import) wait only for the writes.
    indexed = [index_text(a.title, a.digest, a.body_text) for a in articles]
    prints = [keyed(Candidate.of(a)) for a in articles]
    scans = [scan_article(a) for a in articles]
    rows = [content_row(a) for a in articles]
    # One transaction: the articles and their "seen" marks land together, and
    # a retry after a busy archive repeats all of it or none.
    with archive.transaction():
        stored = archive.store_many(articles, indexed, prints, scans, rows)
        archive.set_list_hashes(hashes)
    return stored


async def _article(source: Source, fetcher: Fetcher, entry: Entry,
                   fetched_at: datetime) -> Article | str:
    """The entry's article, or a line saying why it could not be made."""
    uid = source.uid(entry.native_id)
    try:
        text = None
        if entry.text_request is not None:
            fetched = await fetcher.get(entry.text_request)
            text = source.parse_text(entry, decode_payload(entry.text_request, fetched))
        article = source.to_article(entry, text, fetched_at)
    except ItemError as exc:
        return str(exc) if str(exc).startswith(uid) else f"{uid}: {exc}"
    except SourceError as exc:
        return f"{uid}: full text: {exc}"
    try:  # build_article checks this; a family that makes its Article itself may not
        check_published(article.published_at, fetched_at)
    except ValueError as exc:
        return f"{uid}: time out of range: {exc}"
    return article

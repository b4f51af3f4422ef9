"""Fetch news: polite, robust HTTP and one polling round per source.

``Fetcher`` makes the GET requests sources ask for:

* per host, at most ``per_host`` requests in flight and at least ``min_gap``
  seconds between the starts of two requests; a ``Retry-After`` pushes the
  host's next start back;
* connect and read timeouts; retries with exponential backoff and jitter on
  connection errors, timeouts, 429 and 5xx — never on other 4xx;
* conditional GET (``ETag`` / ``Last-Modified``);
* payloads decoded and validated: an empty body, an HTML page where JSON was
  expected, truncated JSON and a JSONP wrapper are told apart.

``poll_source`` runs one round of one source: list → (full text for new or
changed items only) → normalize → store, and returns what happened. A list
whose bytes did not change since the last round is recognised and skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

import httpx

from caixun.archive import SourceHealth, SqliteArchive, StoreResult
from caixun.errors import FetchError, PayloadError, SourceError
from caixun.model import Article
from caixun.normalize import check_published
from caixun.sources.base import Entry, ItemError, Request, Source

__all__ = [
    "FetchSettings",
    "Fetched",
    "Fetcher",
    "HostGate",
    "SourceReport",
    "decode_payload",
    "fetch_round",
    "next_health",
    "poll_and_record",
    "poll_source",
]

# A longer Retry-After ends the round for that source; its health record backs off.
MAX_RETRY_AFTER = 120.0
DEFAULT_USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                      "(KHTML, like Gecko) Chrome/120.0 Safari/537.36 caixun")


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


@dataclass(frozen=True, slots=True)
class Fetched:
    """A response: its body, or ``not_modified`` for a 304."""

    url: str
    status: int
    body: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False

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
            self._next_start[host] = time.monotonic() + self.min_gap

    async def run(self, host: str, call: Any) -> Any:
        slots = self._slots.setdefault(host, asyncio.Semaphore(self.per_host))
        async with slots:
            await self._wait_turn(host)
            return await call()


class Fetcher:
    """Makes sources' requests with timeouts, retries and per-host politeness."""

    def __init__(self, settings: FetchSettings | None = None,
                 client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings or FetchSettings()
        timeout = httpx.Timeout(self.settings.read_timeout, connect=self.settings.connect_timeout)
        self.client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=True)
        self.gate = HostGate(self.settings.per_host, self.settings.min_gap)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def get(self, request: Request, validators: Mapping[str, str] | None = None) -> Fetched:
        """GET with retries; ``FetchError`` when it cannot succeed."""
        host = urlsplit(request.url).netloc
        headers = {"User-Agent": self.settings.user_agent, **dict(request.headers)}
        if validators:
            if validators.get("etag"):
                headers["If-None-Match"] = validators["etag"]
            if validators.get("last_modified"):
                headers["If-Modified-Since"] = validators["last_modified"]
        attempts = self.settings.retries + 1
        problem = ""
        for attempt in range(attempts):
            try:
                # httpx drops a URL's own query when given params, even empty ones.
                params = httpx.QueryParams(list(request.params)) if request.params else None
                response = await self.gate.run(host, lambda: self.client.get(
                    request.url, params=params, headers=headers))
            except httpx.TimeoutException:
                problem = "timed out"
            except httpx.TransportError as exc:
                problem = f"connection failed ({type(exc).__name__}: {exc or 'no detail'})"
            else:
                fetched = self._accept(request, response)
                if fetched is not None:
                    return fetched
                problem = f"HTTP {response.status_code}"
                wait = self._honour_retry_after(host, response)
                if wait is not None and wait > MAX_RETRY_AFTER:
                    raise FetchError(f"{request.url}: HTTP {response.status_code}, asked to "
                                     f"retry after {wait:.0f} s")
            if attempt + 1 < attempts:
                await asyncio.sleep(self._backoff(attempt))
        raise FetchError(f"{request.url}: {problem} (after {attempts} attempts)")

    def _accept(self, request: Request, response: httpx.Response) -> Fetched | None:
        """The result of a final response, or None when it is worth retrying."""
        status = response.status_code
        if status == 429 or status >= 500:
            return None
        if status == 304:
            return Fetched(str(response.url), status, not_modified=True)
        if status >= 400:
            raise FetchError(f"{request.url}: HTTP {status} (not retried)")
        return Fetched(str(response.url), status, response.content,
                       response.headers.get("content-type", ""),
                       response.headers.get("etag"), response.headers.get("last-modified"))

    def _honour_retry_after(self, host: str, response: httpx.Response) -> float | None:
        seconds = retry_after_seconds(response.headers.get("retry-after"))
        if seconds is not None and seconds <= MAX_RETRY_AFTER:
            self.gate.defer(host, seconds)
        return seconds

    def _backoff(self, attempt: int) -> float:
        base = min(self.settings.max_backoff, self.settings.backoff * 2.0 ** attempt)
        return float(base * (0.5 + random.random() / 2))  # jitter: many clients don't retry in step


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
    """The decoded payload of a response; ``PayloadError`` says what is wrong with it."""
    if request.payload == "feed":
        if not fetched.body.strip():
            raise PayloadError(f"{fetched.url}: empty response body")
        return fetched.body
    text = _text(fetched)
    if request.payload == "text":
        return text
    return _json(fetched, text)


def _text(fetched: Fetched) -> str:
    if not fetched.body.strip():
        raise PayloadError(f"{fetched.url}: empty response body")
    try:
        return fetched.body.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError:
        try:
            return fetched.body.decode("gb18030")  # some Chinese portals still send GBK
        except UnicodeDecodeError as exc:
            raise PayloadError(f"{fetched.url}: body is neither UTF-8 nor GB18030") from exc


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
    item_errors: list[str] = field(default_factory=list)  # "uid: problem"
    error: str | None = None  # the source failed as a whole
    state: dict[str, dict[str, str]] = field(default_factory=dict)  # per list request

    @property
    def changed(self) -> bool:
        return bool(self.new or self.updated)

    def summary(self) -> str:
        if self.error:
            return f"{self.name}: FAILED: {self.error}"
        text = (f"{self.name}: {self.new} new, {self.updated} updated, "
                f"{self.unchanged} unchanged, {len(self.item_errors)} errors")
        if self.merged:
            text += f", {self.merged} merged into earlier copies"
        if self.lists_unchanged:
            text += f" ({self.lists_unchanged} list(s) not modified)"
        return text


async def poll_source(source: Source, fetcher: Fetcher, archive: SqliteArchive,
                      state: Mapping[str, Mapping[str, str]]) -> SourceReport:
    """One round: lists, then full texts of new or changed items, then store."""
    report = SourceReport(source.name, state={k: dict(v) for k, v in state.items()})
    try:
        entries = await _list_entries(source, fetcher, report)
        await _store_entries(source, fetcher, archive, entries, report)
        if report.item_errors:
            # Keep the old validators so the same lists are read again next round
            # and the items that failed are retried (the stored ones are skipped).
            report.state = {k: dict(v) for k, v in state.items()}
    except SourceError as exc:
        report.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug in one source must not stop the others
        report.error = f"internal error in the {source.kind} source: {type(exc).__name__}: {exc}"
    return report


def next_health(health: SourceHealth, report: SourceReport, every: float, now: float,
                max_backoff: float) -> SourceHealth:
    """The source's record after a round: back off while it fails, normal after a success."""
    stamp = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds")
    if report.error is None:
        return SourceHealth(health.name, stamp, stamp, 0, None, now + every, report.state)
    failures = health.consecutive_failures + 1
    delay = min(max_backoff, every * 2.0 ** (failures - 1))
    return SourceHealth(health.name, stamp, health.last_success, failures, report.error,
                        now + max(every, delay), health.lists)


async def fetch_round(sources: Sequence[Source], fetcher: Fetcher, archive: SqliteArchive, *,
                      due_only: bool = True, max_backoff: float = 3600.0) -> list[SourceReport]:
    """Poll every due source (or all of them) concurrently; each records its health."""
    now = time.time()
    chosen = [s for s in sources
              if not due_only or archive.source_health(s.name).next_poll <= now]
    return list(await asyncio.gather(
        *(poll_and_record(source, fetcher, archive, max_backoff) for source in chosen)))


async def poll_and_record(source: Source, fetcher: Fetcher, archive: SqliteArchive,
                          max_backoff: float = 3600.0) -> SourceReport:
    """One round of one source, with its health record updated afterwards."""
    health = archive.source_health(source.name)
    report = await poll_source(source, fetcher, archive, health.lists)
    archive.save_source_health(
        next_health(health, report, source.config.every, time.time(), max_backoff))
    return report


async def _list_entries(source: Source, fetcher: Fetcher, report: SourceReport) -> list[Entry]:
    entries: dict[str, Entry] = {}
    for request in source.list_requests():
        known = report.state.get(request.key, {})
        fetched = await fetcher.get(request, known)
        if fetched.not_modified or fetched.body_hash == known.get("body_hash"):
            report.lists_unchanged += 1
            continue
        items = source.parse_list(request, decode_payload(request, fetched))
        if not items:
            raise PayloadError(f"{fetched.url}: the list is empty")
        for entry in items:
            entries.setdefault(entry.native_id, entry)  # the same item in two lists: once
        report.state[request.key] = {k: v for k, v in {
            "etag": fetched.etag, "last_modified": fetched.last_modified,
            "body_hash": fetched.body_hash}.items() if v}
    return list(entries.values())


async def _store_entries(source: Source, fetcher: Fetcher, archive: SqliteArchive,
                         entries: list[Entry], report: SourceReport) -> None:
    known = archive.list_hashes([source.uid(e.native_id) for e in entries])
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
    with archive.transaction():  # the articles and "seen" marks land together
        stored = archive.store_many(articles)
        archive.set_list_hashes({a.uid: hashes[a.uid] for a in articles})
    for outcome in stored:
        if outcome is StoreResult.NEW:
            report.new += 1
        elif outcome is StoreResult.UPDATED:
            report.updated += 1
        elif outcome is StoreResult.MERGED:
            report.merged += 1
        else:
            report.unchanged += 1


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

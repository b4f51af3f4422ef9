"""A real HTTP server on 127.0.0.1 that replays news-API payloads, with fault injection.

Fetcher tests point their base URL at :class:`NewsServer` instead of the real hosts.
Requests go through a real socket, so timeouts, connection resets, truncated bodies,
keep-alive and conditional GET behave as they do on the wire.

Server::

    server = NewsServer().start()            # binds 127.0.0.1:0, serves in a daemon thread
    server.route("/web/webapi", rolling_records())          # dict/list -> UTF-8 JSON
    server.route("/feed.xml", rss_xml(day), content_type=RSS_TYPE, etag=True)
    server.route("/x", lambda req: {"echo": req.query})     # dynamic reply
    server.fault("/web/webapi", status(503), too_many(1), reset())  # next 3 requests
    ...  # then normal replies resume
    server.requests[-1].query["type"]; server.hits("/web/webapi")
    server.stop()

Faults (module-level factories): :func:`status`, :func:`too_many`, :func:`slow`,
:func:`reset`, :func:`truncated`, :func:`html_error`, :func:`jsonp`,
:func:`empty_list`, :func:`renamed`; bodies written part by part: :func:`trickle`
(a byte at a time, slowly) and :func:`streamed` (any length, chunked or with a
``Content-Length`` true or false, made as it is sent).

Payload builders read the real corpus (``../shared/corpus``) at call time and
return the documented shapes of NEWS-APIS.md: :func:`rolling_records` (type=102),
:func:`media_nodes` (type=45), :func:`market_records`, :func:`news_texts` /
:func:`media_texts` (GetNewsText.do), :func:`fast_news` (getFastNewsList),
:func:`cls_roll`, :func:`jin10_flash`, :func:`wallstreetcn_lives`,
:func:`sina_feed`, :func:`rss_xml` and the quote lists (:func:`quote_names`,
:func:`clist_lists`, served by :func:`clist_route`). Corpus text is never stored in the
repository; it is read from the shared corpus when a test runs.

Duplicates (the "stored exactly once" case):

* ``rolling_records(repeat=3)`` lists the first 3 records a second time at the end
  of the same list; :func:`repeat_items` does the same for any envelope.
* :func:`overlapping_pages` cuts a list into consecutive pages that share items,
  and ``server.route(path, sequence(page1, page2))`` serves them one poll after the
  other: the shared items arrive twice.
* Ids are derived from links, so the same rss-days link gives the same id in every
  builder call; consecutive rss-days files share links (re-fetch duplicates).

The legacy endpoint multiplexes on a query parameter: use :func:`by_query`, e.g.
``server.route("/web/webapi", by_query("type", {"102": records, "45": nodes}))``.
:func:`install_all` registers every builder under its real path.
"""

from __future__ import annotations

import copy
import hashlib
import html
import io
import json
import os
import re
import socket
import struct
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import formatdate, parsedate_to_datetime
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeAlias
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape as _xml_escape
from xml.sax.saxutils import quoteattr

__all__ = [
    "ATOM_TYPE", "ITEM_LISTS", "PATHS", "BEIJING", "HTML_ERROR_PAGE", "JSON_TYPE", "POSTS_DIR", "RSS_DIR", "RSS_TYPE", "SCRIPT",
    "Fault", "NewsServer", "Post", "Reply", "Request", "Seen",
    "by_query", "cls_roll", "day_files", "empty_list", "fast_news", "fast_news_route",
    "html_error", "install_all", "jin10_flash", "jsonp", "market_records", "media_nodes",
    "media_texts", "news_texts", "overlapping_pages", "parse_post", "reset", "renamed",
    "repeat_items", "rolling_records", "rss_xml", "sequence", "sina_feed", "slow", "status",
    "streamed", "too_many", "trickle", "truncated", "wallstreetcn_lives",
    "CLIST_FILTERS", "clist_lists", "clist_route", "quote_names",
]

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CAIXUN_SHARED", REPO.parent / "shared"))
POSTS_DIR = SHARED / "corpus" / "finews-posts"
RSS_DIR = SHARED / "corpus" / "rss-days"

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
JSON_TYPE = "application/json; charset=utf-8"
RSS_TYPE = "application/rss+xml; charset=utf-8"
ATOM_TYPE = "application/atom+xml; charset=utf-8"
HTML_ERROR_PAGE = "<html><body>系统繁忙</body></html>"
SCRIPT = "<script>alert(1)</script>"

Body: TypeAlias = "bytes | str | dict[str, Any] | list[Any]"


# ======================================================================================
# requests and replies
# ======================================================================================


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it (also what a dynamic route receives).

    ``query`` keeps blank values (``sortEnd=`` → ``""``); a repeated parameter keeps
    its last value. ``headers`` keys are lower case.
    """

    at: float  # time.monotonic() on arrival
    method: str
    path: str  # without the query
    query: dict[str, str]
    headers: dict[str, str]
    target: str = ""  # the raw request target, path plus query
    body: bytes = b""


Request: TypeAlias = Seen


@dataclass
class Reply:
    """What a dynamic route may return (it may also return a bare body)."""

    body: Body = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None


Handler: TypeAlias = Callable[[Seen], "Reply | Body"]


def _encode(body: Body, content_type: str | None) -> tuple[bytes, str]:
    if isinstance(body, (dict, list)):
        return (json.dumps(body, ensure_ascii=False).encode("utf-8"),
                content_type or JSON_TYPE)
    if isinstance(body, str):
        return body.encode("utf-8"), content_type or "text/plain; charset=utf-8"
    if isinstance(body, (bytes, bytearray)):
        return bytes(body), content_type or "application/octet-stream"
    raise TypeError(f"cannot serve a {type(body).__name__} body")


@dataclass
class _Route:
    body: Body | Handler
    status: int
    headers: dict[str, str]
    content_type: str | None
    etag: bool
    last_modified: float


@dataclass
class _Wire:
    """A reply ready to send."""

    status: int
    body: bytes
    headers: list[tuple[str, str]]


# ======================================================================================
# faults
# ======================================================================================


class Fault:
    """Base class of the injectable faults; build them with the factory functions."""


@dataclass(frozen=True)
class _Status(Fault):
    code: int
    body: Body = ""
    headers: dict[str, str] | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class _TooMany(Fault):
    retry_after: float | str


@dataclass(frozen=True)
class _Slow(Fault):
    seconds: float


@dataclass(frozen=True)
class _Reset(Fault):
    pass


@dataclass(frozen=True)
class _Truncated(Fault):
    declare_full: bool = False


@dataclass(frozen=True)
class _HtmlError(Fault):
    code: int = 200
    page: str = HTML_ERROR_PAGE


@dataclass(frozen=True)
class _Jsonp(Fault):
    callback: str | None = "cb"


@dataclass(frozen=True)
class _EmptyList(Fault):
    path: str | None = None


@dataclass(frozen=True)
class _Renamed(Fault):
    old: str
    new: str


def status(code: int, body: Body = "", headers: dict[str, str] | None = None,
           content_type: str | None = None) -> Fault:
    """Answer with ``code`` and ``body`` instead of the route (e.g. 500, 502, 503, 404;
    or 200 with an error envelope such as ``{"errno": 1}``)."""
    return _Status(code, body, headers, content_type)


def too_many(retry_after: float | str) -> Fault:
    """429 with ``Retry-After``: a number of seconds (``2``; a fractional value such as
    ``0.5`` is sent as ``0.5``, which is not standard HTTP), or a string sent as is
    (e.g. an HTTP date)."""
    return _TooMany(retry_after)


def slow(seconds: float) -> Fault:
    """Sleep ``seconds`` (from the arrival of the request), then reply normally. The
    sleep ends early when the server stops, and then nothing is sent."""
    return _Slow(seconds)


def reset() -> Fault:
    """Close the connection abruptly without any response: SO_LINGER 0, then close, so
    the kernel sends a TCP RST. httpx raises ``httpx.ReadError`` (connection reset by
    peer), or ``httpx.RemoteProtocolError`` if it only saw the end of the stream."""
    return _Reset()


def truncated(declare_full: bool = False) -> Fault:
    """The normal body cut in half. By default a correct-looking 200 whose
    ``Content-Length`` is the half length (the client gets an unparseable body and no
    transport error). ``declare_full=True`` announces the full length, sends half and
    closes the connection: httpx raises ``httpx.RemoteProtocolError``."""
    return _Truncated(declare_full)


def html_error(code: int = 200, page: str = HTML_ERROR_PAGE) -> Fault:
    """An HTML error page (``text/html``) where JSON was expected; status 200 by default,
    as busy Chinese portals do."""
    return _HtmlError(code, page)


def jsonp(callback: str | None = "cb") -> Fault:
    """The normal JSON wrapped as ``callback(…);`` with ``application/javascript``.
    ``callback=None`` echoes the request's ``callback`` or ``cb`` parameter (else ``cb``)."""
    return _Jsonp(callback)


def empty_list(path: str | None = None) -> Fault:
    """The normal envelope with its item list emptied. ``path`` is a dotted key path
    (``"data.fastNewsList"``); by default the first of :data:`ITEM_LISTS` present."""
    return _EmptyList(path)


def renamed(old: str, new: str) -> Fault:
    """The normal JSON with key ``old`` renamed to ``new`` (``old`` may be dotted:
    ``renamed("data.fastNewsList", "list")``)."""
    return _Renamed(old, new)


# Where each documented envelope keeps its items, most specific first.
ITEM_LISTS = (
    "records", "nodeList", "record",             # legacy East Money 102 / 45 / market
    "data.fastNewsList", "data.list",            # getFastNewsList, getNewsByColumns
    "data.roll_data",                            # CLS
    "data.items",                                # Wallstreetcn
    "result.data.feed.list",                     # Sina
    "result.cmsArticleWebOld",                   # East Money search
    "data",                                      # Jin10 (a bare list under data)
)


def _walk(payload: Any, dotted: str) -> tuple[Any, str] | None:
    """(parent, last key) of a dotted path, if every step exists."""
    keys = dotted.split(".")
    node = payload
    for key in keys[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(key), dict):
            return None
        node = node[key]
    if isinstance(node, dict) and keys[-1] in node:
        return node, keys[-1]
    return None


def _item_list(payload: Any, path: str | None = None) -> tuple[dict[str, Any], str]:
    for candidate in ([path] if path else ITEM_LISTS):
        found = _walk(payload, candidate)
        if found is not None and isinstance(found[0][found[1]], list):
            return found
    raise KeyError(f"no item list at {path or ITEM_LISTS} in this payload")


def repeat_items(payload: Any, n: int, path: str | None = None) -> Any:
    """A copy of an envelope whose first ``n`` items are listed again at the end."""
    out = copy.deepcopy(payload)
    parent, key = _item_list(out, path)
    parent[key] = parent[key] + copy.deepcopy(parent[key][:n])
    return out


# ======================================================================================
# the server
# ======================================================================================


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    news: "NewsServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, OSError)):
            return  # a client that went away, or a socket we closed on purpose
        self.news._error(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real hosts
    timeout = 30  # idle keep-alive connections do not linger forever
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def setup(self) -> None:
        super().setup()
        self.server.news._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.news._track(self.connection, False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    # -- one request ------------------------------------------------------------------

    def _serve(self) -> None:
        news = self.server.news
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        seen = Seen(at=time.monotonic(), method=self.command, path=split.path,
                    query=dict(parse_qsl(split.query, keep_blank_values=True)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    target=self.path, body=self.rfile.read(length) if length else b"")
        news._record(seen)
        fault = news._next_fault(seen.path)
        try:
            if fault is None:
                self._send(news._conditional(seen, news._normal(seen)))
            else:
                self._fault(fault, seen)
        except (ConnectionError, OSError):
            self.close_connection = True  # the client gave up (e.g. after its timeout)

    def _send(self, wire: _Wire, *, declared_length: int | None = None) -> None:
        self.send_response(wire.status)
        for name, value in wire.headers:  # non-Latin-1 values go out as UTF-8 bytes
            self.send_header(name, value.encode("utf-8").decode("latin-1"))
        if wire.status != 304 and wire.status >= 200 and wire.status != 204:
            self.send_header("Content-Length", str(
                len(wire.body) if declared_length is None else declared_length))
        self.end_headers()
        if wire.status != 304:
            self.wfile.write(wire.body)

    def _abort(self) -> None:
        """Drop the connection with a TCP RST and no response."""
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # socket.close() only closes the descriptor once the makefile() objects are
        # closed too; with SO_LINGER 0 that final close sends the RST.
        for stream in (self.rfile, self.wfile):
            try:
                stream.close()
            except OSError:
                pass
        sock.close()
        self.wfile = io.BytesIO()  # what http.server still flushes goes nowhere
        self.close_connection = True

    def _fault(self, fault: Fault, seen: Seen) -> None:
        news = self.server.news
        match fault:
            case _Status(code, body, headers, content_type):
                data, ctype = _encode(body, content_type)
                self._send(_Wire(code, data, [("Content-Type", ctype),
                                              *(headers or {}).items()]))
            case _TooMany(retry_after):
                value = (retry_after if isinstance(retry_after, str)
                         else f"{retry_after:g}")
                self._send(_Wire(429, "请求过于频繁".encode(), [
                    ("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", value)]))
            case _Slow(seconds):
                remaining = seen.at + seconds - time.monotonic()
                if remaining > 0 and news._stopping.wait(remaining):
                    self._abort()
                    return
                self._send(news._conditional(seen, news._normal(seen)))
            case _Reset():
                self._abort()
            case _Truncated(declare_full):
                wire = news._normal(seen)
                half = _Wire(wire.status, wire.body[: len(wire.body) // 2], wire.headers)
                if declare_full:
                    self._send(half, declared_length=len(wire.body))
                    self.wfile.flush()
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                else:
                    self._send(half)
            case _HtmlError(code, page):
                self._send(_Wire(code, page.encode("utf-8"),
                                 [("Content-Type", "text/html; charset=utf-8")]))
            case _Jsonp() | _EmptyList() | _Renamed():
                self._send(self._rewrite(fault, seen))
            case _Streamed():  # defined at the end: trickle(), streamed()
                fault.write(self, seen)
            case _:
                raise TypeError(f"unknown fault {fault!r}")

    def _rewrite(self, fault: Fault, seen: Seen) -> _Wire:
        news = self.server.news
        wire = news._normal(seen)
        try:
            payload = json.loads(wire.body.decode("utf-8"))
            if isinstance(fault, _Jsonp):
                name = fault.callback or seen.query.get("callback") or seen.query.get("cb") \
                    or "cb"
                text = json.dumps(payload, ensure_ascii=False)
                return _Wire(wire.status, f"{name}({text});".encode("utf-8"),
                             [("Content-Type", "application/javascript; charset=utf-8")])
            if isinstance(fault, _EmptyList):
                parent, key = _item_list(payload, fault.path)
                parent[key] = []
            elif isinstance(fault, _Renamed):
                found = _walk(payload, fault.old)
                if found is None:
                    raise KeyError(f"renamed: no key {fault.old!r} in the payload")
                parent, key = found
                parent[fault.new] = parent.pop(key)
            return _Wire(wire.status, json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                         [("Content-Type", JSON_TYPE)])
        except (ValueError, KeyError) as exc:
            message = f"{type(fault).__name__} on {seen.path}: {exc}"
            news._error(message)
            return _Wire(500, message.encode("utf-8"),
                         [("Content-Type", "text/plain; charset=utf-8")])


class NewsServer:
    """A real HTTP/1.1 server on 127.0.0.1 with static or dynamic routes and faults."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.errors: list[str] = []  # exceptions in dynamic routes, misused faults
        self._routes: dict[str, _Route] = {}
        self._faults: dict[str, deque[Fault]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> "NewsServer":
        if self._httpd is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.news = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={
            "poll_interval": 0.01}, name=f"NewsServer:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            open_connections = list(self._connections)
        for conn in open_connections:  # idle keep-alive connections, sleeping faults
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> "NewsServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    # -- configuration ----------------------------------------------------------------

    def route(self, path: str, body: Body | Handler, *, status: int = 200,
              headers: dict[str, str] | None = None, content_type: str | None = None,
              etag: bool = False, last_modified: float | None = None) -> None:
        """Serve ``body`` for requests to ``path`` (the path without the query).

        ``body`` is bytes, str, a dict/list (JSON, ``ensure_ascii=False``, UTF-8) or a
        callable ``(Seen) -> Reply | body``. With ``etag=True`` replies carry an
        ``ETag`` (a hash of the body) and ``Last-Modified`` (``last_modified``, a Unix
        time, or the registration time), and matching ``If-None-Match`` /
        ``If-Modified-Since`` requests get 304. Registering a path again replaces it.
        """
        path = urlsplit(path).path
        with self._lock:
            self._routes[path] = _Route(body, status, dict(headers or {}), content_type, etag,
                                        int(time.time() if last_modified is None
                                            else last_modified))

    def fault(self, path: str, *faults: Fault) -> None:
        """Queue faults: the next ``len(faults)`` requests to ``path`` get them in order
        (after any faults already queued); then normal replies resume."""
        path = urlsplit(path).path
        for one in faults:
            if not isinstance(one, Fault):
                raise TypeError(f"not a fault: {one!r}")
        with self._lock:
            self._faults.setdefault(path, deque()).extend(faults)

    def pending_faults(self, path: str) -> int:
        with self._lock:
            return len(self._faults.get(urlsplit(path).path, ()))

    def hits(self, path: str) -> int:
        """How many requests arrived for ``path`` (faulted ones included)."""
        path = urlsplit(path).path
        with self._lock:
            return sum(1 for seen in self.requests if seen.path == path)

    def seen(self, path: str) -> list[Seen]:
        path = urlsplit(path).path
        with self._lock:
            return [seen for seen in self.requests if seen.path == path]

    # -- used by the handler threads ----------------------------------------------------

    def _track(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    def _error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            return queue.popleft() if queue else None

    def _normal(self, seen: Seen) -> _Wire:
        with self._lock:
            route = self._routes.get(seen.path)
        if route is None:
            return _Wire(404, f"no route for {seen.path}".encode("utf-8"),
                         [("Content-Type", "text/plain; charset=utf-8")])
        reply = Reply(route.body, route.status, dict(route.headers),  # type: ignore[arg-type]
                      route.content_type)
        if callable(route.body):
            try:
                produced = route.body(seen)
            except Exception:
                message = traceback.format_exc()
                self._error(message)
                return _Wire(500, message.encode("utf-8"),
                             [("Content-Type", "text/plain; charset=utf-8")])
            if isinstance(produced, Reply):
                reply = Reply(produced.body, produced.status,
                              {**route.headers, **produced.headers},
                              produced.content_type or route.content_type)
            else:
                reply.body = produced
        data, ctype = _encode(reply.body, reply.content_type)
        headers = [("Content-Type", ctype), *reply.headers.items()]
        if route.etag:
            headers.append(("ETag", '"' + hashlib.sha256(data).hexdigest()[:24] + '"'))
            headers.append(("Last-Modified", formatdate(route.last_modified, usegmt=True)))
        return _Wire(reply.status, data, headers)

    def _conditional(self, seen: Seen, wire: _Wire) -> _Wire:
        if wire.status != 200 or seen.method != "GET":
            return wire
        sent = dict(wire.headers)
        etag, modified = sent.get("ETag"), sent.get("Last-Modified")
        if etag is None and modified is None:
            return wire
        kept = [(k, v) for k, v in wire.headers if k in ("ETag", "Last-Modified")]
        if_none_match = seen.headers.get("if-none-match")
        if if_none_match is not None:  # takes precedence over If-Modified-Since
            tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
            if etag is not None and ("*" in tags or etag in tags):
                return _Wire(304, b"", kept)
            return wire
        if_modified_since = seen.headers.get("if-modified-since")
        if if_modified_since and modified:
            try:
                since = parsedate_to_datetime(if_modified_since).timestamp()
            except (TypeError, ValueError):
                return wire
            if parsedate_to_datetime(modified).timestamp() <= since:
                return _Wire(304, b"", kept)
        return wire


# -- dynamic-route helpers -----------------------------------------------------------


def sequence(*bodies: Body | Reply) -> Handler:
    """Serve ``bodies`` one per request, in order; the last one repeats."""
    if not bodies:
        raise ValueError("sequence() needs at least one body")
    lock, count = threading.Lock(), [0]

    def handler(seen: Seen) -> Reply | Body:
        with lock:
            index = min(count[0], len(bodies) - 1)
            count[0] += 1
        return bodies[index]
    return handler


def by_query(param: str, replies: dict[str, Any], default: Body | Reply | None = None
             ) -> Handler:
    """Dispatch on one query parameter (``type`` of the legacy webapi, ``id`` of
    GetNewsText.do). Unknown or missing values get ``default`` (else a 404)."""

    def handler(seen: Seen) -> Reply | Body:
        value = seen.query.get(param)
        if value is not None and value in replies:
            return replies[value]  # type: ignore[no-any-return]
        if default is not None:
            return default
        return Reply(f"unknown {param}={value}", status=404)
    return handler


def overlapping_pages(items: Sequence[Any], size: int, overlap: int) -> list[list[Any]]:
    """Consecutive pages of ``size`` items where each page repeats the last ``overlap``
    items of the previous one (0 <= overlap < size)."""
    if not 0 <= overlap < size:
        raise ValueError("need 0 <= overlap < size")
    pages, start = [], 0
    while start < len(items):
        pages.append(list(items[start:start + size]))
        if start + size >= len(items):
            break
        start += size - overlap
    return pages


# ======================================================================================
# the corpus
# ======================================================================================


@dataclass(frozen=True)
class Post:
    """A finews Jekyll post, read the simple way."""

    path: Path
    name_id: str  # the id part of the file name: "2021…" or "NW2022…" or "init"
    title: str
    date: str  # "YYYY-MM-DD HH:MM:SS" or "" (the broken May 2022 post)
    category: str
    tags: str
    body: str  # between the front matter and the <link> line, stripped
    link: str  # inside <…>; "" for "<>" or no link line

    @property
    def id(self) -> str:
        return self.name_id.removeprefix("NW")

    @property
    def info_code(self) -> str:
        return self.name_id if self.name_id.startswith("NW") else "NW" + self.name_id


_FRONT = re.compile(r"---\n(.*?)\n---\n?(.*)", re.S)
_LINK_LINE = re.compile(r"^<((?:https?:)?//[^\s<>]*|)>$", re.M)
_DATE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def _field(front: str, name: str) -> str:
    m = re.search(rf"^{name}:(.*)$", front, re.M)
    return m.group(1).strip() if m else ""


def parse_post(path: Path) -> Post:
    text = path.read_text(encoding="utf-8")
    m = _FRONT.match(text)
    if m is None:
        raise ValueError(f"{path}: no front matter")
    front, rest = m.groups()
    title = _field(front, "title")
    if len(title) >= 2 and title[0] == title[-1] == '"':
        title = title[1:-1]
    date = _DATE.search(_field(front, "date"))
    link = _LINK_LINE.search(rest)
    body = rest[: link.start()] if link else rest
    return Post(path=path, name_id=path.stem.rsplit("-", 1)[-1], title=title,
                date=date.group(0) if date else "", category=_field(front, "categories"),
                tags=_field(front, "tags"), body=body.strip(),
                link=link.group(1) if link else "")


@lru_cache(maxsize=8)
def _posts(posts_dir: str) -> tuple[Post, ...]:
    return tuple(parse_post(p) for p in sorted(Path(posts_dir).glob("*.md")))


def _first_sentence(text: str) -> str:
    m = re.match(r"\s*(.+?[。！？!?])", text, re.S)
    return (m.group(1) if m else text).strip()


def _split_digest(post: Post) -> tuple[str, str]:
    """(digest text, remaining body) — the broken post starts with a "> " digest line."""
    if post.body.startswith("> "):
        first, _, rest = post.body.partition("\n")
        return first[2:].strip(), rest.strip()
    return post.body.split("\n\n")[0].strip(), post.body


def _rolling_posts(posts_dir: Path, include_broken: bool) -> list[Post]:
    posts = [p for p in _posts(str(posts_dir)) if p.category == "emnews"]
    good = sorted((p for p in posts if p.date), key=lambda p: (p.date, p.id), reverse=True)
    broken = [p for p in posts if not p.date] if include_broken else []
    return broken + good


def rolling_records(posts_dir: Path = POSTS_DIR, *, include_broken: bool = False,
                    repeat: int = 0) -> dict[str, Any]:
    """The type=102 envelope ``{"records": [...]}`` from every rolling post (category
    emnews), newest first; the site post and the media post are never included.

    Each record: ``id`` (18 digits), ``infoCode`` (``"NW"+id``), ``title``,
    ``digest`` (``【title】`` + the body's first sentence), ``url_w`` (the post's share
    link, ``""`` where the post has ``<>``) and ``showtime``.
    ``include_broken=True`` puts the undated May 2022 post first, as the documented
    edge case: empty ``title``, ``showtime`` and ``url_w``; its ``digest`` is the
    post's ``> `` digest line. ``repeat=n`` lists the first n records again at the end.
    """
    records = []
    for post in _rolling_posts(posts_dir, include_broken):
        digest, _ = _split_digest(post)
        records.append({
            "id": post.id, "infoCode": post.info_code, "title": post.title,
            "digest": f"【{post.title}】{_first_sentence(digest)}" if post.title else digest,
            "url_w": post.link, "showtime": post.date,
        })
    envelope = {"records": records}
    return repeat_items(envelope, repeat) if repeat else envelope


def _paragraphs(text: str) -> str:
    return "".join(f"<p>{html.escape(p.strip(), quote=False)}</p>"
                   for p in re.split(r"\n\s*\n", text) if p.strip())


def news_texts(posts_dir: Path = POSTS_DIR, *, include_broken: bool = False,
               inject_script: bool = False, include_media: bool = True
               ) -> dict[str, dict[str, str]]:
    """GetNewsText.do replies by infoCode: ``{"content": html}`` for every rolling
    record (the body as escaped ``<p>`` paragraphs; the broken post's raw East Money
    HTML as is) and ``{"text": html}`` for the real media post (media and market items
    were read from key ``text``). ``inject_script=True`` adds :data:`SCRIPT` after the
    first paragraph of the newest record's text. Serve with ``by_query("id", …)``."""
    texts: dict[str, dict[str, str]] = {}
    for post in _rolling_posts(posts_dir, include_broken):
        digest, rest = _split_digest(post)
        body = rest if post.body.startswith("> ") else _paragraphs(post.body)
        texts[post.info_code] = {"content": body}
    if inject_script:
        first = next(k for k, p in zip(texts, _rolling_posts(posts_dir, include_broken))
                     if p.date)
        content = texts[first]["content"]
        cut = content.find("</p>") + len("</p>")
        texts[first] = {"content": content[:cut] + SCRIPT + content[cut:]}
    if include_media:
        for node, text in _media_items(posts_dir, RSS_DIR)[:1]:
            texts[node["infocode"]] = {"text": text}
    return texts


# -- rss-days ---------------------------------------------------------------------------


def day_files(rss_dir: Path = RSS_DIR) -> list[Path]:
    return sorted(Path(rss_dir).glob("*.json"))


@lru_cache(maxsize=128)
def _day(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _outlet(article: dict[str, Any]) -> str | None:
    source = article.get("source")
    if isinstance(source, dict):
        source = source.get("title")
    return source if isinstance(source, str) and source.strip() else None


def _when(article: dict[str, Any]) -> datetime:
    parsed = article.get("published_parsed")
    if parsed:
        return datetime(*parsed[:6]).replace(tzinfo=timezone.utc).astimezone(BEIJING)
    return datetime(2000, 1, 1, tzinfo=BEIJING)


def _showtime(when: datetime) -> str:
    return when.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _plain(fragment: str) -> str:
    text = re.sub(r"<!--.*?-->|<(script|style)\b.*?</\1>", " ", fragment or "", flags=re.S | re.I)
    text = re.sub(r"</?(?:p|br|div|h\d|center|li|tr|table|blockquote)\b[^>]*>", " ", text,
                  flags=re.I)
    text = html.unescape(re.sub(r"<[^>]*>", "", text))
    return " ".join(text.replace("\u3000", " ").split())


_CJK = re.compile(r"[\u4e00-\u9fff]")

# Chinese outlets of rss-days whose items carry a real summary (百度股票焦点 items are
# cut titles only), per builder so that the sources do not all show the same items.
CLS_OUTLETS = ("中新网", "钛媒体")
JIN10_OUTLETS = ("FT中文网", "国家统计局-最新发布")
SINA_OUTLETS = ("36氪",)
MARKET_OUTLETS = ("东方财富网", "东方财富Choice数据", "东方财富研究中心")


def _digits(seed: str, n: int) -> str:
    return str(int(hashlib.sha1(seed.encode("utf-8")).hexdigest(), 16) % 10 ** n).zfill(n)


def _articles(rss_dir: Path, days: Iterable[Path] | None = None) -> list[dict[str, Any]]:
    """Every article of the given days (default all), first occurrence of each link."""
    seen: set[str] = set()
    out = []
    for path in (day_files(rss_dir) if days is None else days):
        for article in _day(str(path))["articles"]:
            if article.get("link") and article["link"] not in seen:
                seen.add(article["link"])
                out.append(article)
    return out


def _chinese(rss_dir: Path, n: int | None, outlets: Sequence[str] | None = None,
             days: Iterable[Path] | None = None, link_filter: str | None = None
             ) -> list[dict[str, Any]]:
    """Chinese articles (CJK in the title), newest first."""
    picked = [a for a in _articles(rss_dir, days)
              if _CJK.search(a.get("title") or "")
              and (outlets is None or _outlet(a) in outlets)
              and (link_filter is None or link_filter in a["link"])]
    picked.sort(key=lambda a: (_when(a), a["link"]), reverse=True)
    return picked if n is None else picked[:n]


def _body(article: dict[str, Any], limit: int) -> str:
    text = _plain(article.get("summary") or "") or article["title"]
    return text[:limit]


# -- legacy media columns and market -----------------------------------------------------


def _media_items(posts_dir: Path, rss_dir: Path) -> list[tuple[dict[str, Any], str]]:
    """(type-45 node, full-text HTML): the real 人民邮电报 post, then synthetic outlets
    whose titles and sentences are taken from the corpus."""
    items: list[tuple[dict[str, Any], str]] = []
    media = [p for p in _posts(str(posts_dir)) if p.category not in ("emnews", "sitenews")]
    for post in media:
        credit = re.search(r"（文章来源：(.+?)）", post.body)
        name = credit.group(1) if credit else post.tags.removesuffix("新闻")
        items.append(({"infocode": post.info_code, "from": name, "title": post.title,
                       "showtime": post.date, "simtitle": post.title,
                       "simdigest": _first_sentence(_plain(post.body))}, post.body))
    rolling = _rolling_posts(posts_dir, False)
    kr = _chinese(rss_dir, 2, outlets=["36氪"])
    synthetic: list[tuple[str, str, str, str]] = [  # outlet, title, sentence, showtime
        ("21世纪经济报道", rolling[2].title, _first_sentence(rolling[2].body),
         rolling[2].date),
        *(("36氪", a["title"], _first_sentence(_body(a, 400)), _showtime(_when(a)))
          for a in kr),
        ("Wind", rolling[5].title, _first_sentence(rolling[5].body), rolling[5].date),
        ("Mysteel", rolling[9].title, _first_sentence(rolling[9].body), rolling[9].date),
    ]
    for i, (outlet, title, sentence, shown) in enumerate(synthetic):
        code = "AN" + shown[:10].replace("-", "") + _digits(outlet + title, 10)
        node: dict[str, Any] = {"infocode": code, "from": outlet, "title": title,
                                "showtime": shown}
        if i % 2 == 0:  # "sometimes simtitle and simdigest"
            node["simtitle"] = title[:12]
            node["simdigest"] = sentence
        text = (_paragraphs(sentence)
                + f'<p class="em_media">（文章来源：{html.escape(outlet)}）</p>')
        items.append((node, text))
    return items


def media_nodes(posts_dir: Path = POSTS_DIR, rss_dir: Path = RSS_DIR) -> dict[str, Any]:
    """The type=45 envelope ``{"nodeList": [...]}``: the real media-column post
    (人民邮电报, infocode ``NW202201112243109259``) first, then synthetic outlets
    (21世纪经济报道, 36氪 ×2, Wind, Mysteel) reusing corpus titles and sentences.
    Key ``infocode`` has a lower-case c; ``simtitle``/``simdigest`` only on some."""
    return {"nodeList": [node for node, _ in _media_items(posts_dir, rss_dir)]}


def media_texts(posts_dir: Path = POSTS_DIR, rss_dir: Path = RSS_DIR
                ) -> dict[str, dict[str, str]]:
    """GetNewsText.do replies ``{"text": html}`` for every node of :func:`media_nodes`."""
    return {node["infocode"]: {"text": text} for node, text in _media_items(posts_dir, rss_dir)}


def market_records(rss_dir: Path = RSS_DIR, n: int = 10,
                   outlets: Sequence[str] | None = MARKET_OUTLETS) -> dict[str, Any]:
    """The market envelope ``{"record": [...]}`` (singular key) with ``infoCode``,
    ``medianame`` (lower case), ``title`` and ``datetime`` from Chinese rss-days items."""
    return {"record": [
        {"infoCode": "NW" + _code(a), "medianame": _outlet(a) or "", "title": a["title"],
         "datetime": _showtime(_when(a))}
        for a in _chinese(rss_dir, n, outlets)]}


# -- East Money 7x24 ----------------------------------------------------------------------


def _code(article: dict[str, Any]) -> str:
    """The 18-digit East Money code: from the link when it has one, else date + hash."""
    m = re.search(r"(?<!\d)(\d{18})(?!\d)", article["link"]) \
        if "eastmoney.com" in article["link"] else None
    if m:
        return m.group(1)
    return _when(article).strftime("%Y%m%d") + _digits(article["link"], 10)


def fast_news(rss_dir: Path = RSS_DIR, *, n: int | None = 50, eastmoney_only: bool = True,
              days: Iterable[Path] | None = None) -> dict[str, Any]:
    """The getFastNewsList envelope ``{"code": "1", "message": "success", "data":
    {"fastNewsList": [...], "sortEnd": ...}}`` from rss-days items on eastmoney.com
    links (``eastmoney_only=False``: any Chinese item), newest first. ``code`` is the
    link's 18-digit id; ``summary`` is ``【title】`` + the plain text; ``realSort`` is a
    16-digit string (epoch µs) and ``sortEnd`` the last item's ``realSort``."""
    items = []
    codes: set[str] = set()
    for a in _chinese(rss_dir, None, days=days,
                      link_filter="eastmoney.com" if eastmoney_only else None):
        code = _code(a)
        if code in codes:
            continue
        codes.add(code)
        when = _when(a)
        items.append({
            "code": code, "title": a["title"],
            "summary": f"【{a['title']}】{_body(a, 300)}",
            "showTime": _showtime(when),
            "realSort": str(int(when.timestamp()) * 1_000_000 + int(code[-6:])),
            "stockList": [], "image": [], "titleColor": 0, "pinglun_Num": 0, "share": 0,
        })
        if n is not None and len(items) >= n:
            break
    items.sort(key=lambda i: int(i["realSort"]), reverse=True)
    return _fast_envelope(items)


def _fast_envelope(items: list[dict[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {"fastNewsList": items}
    if items:
        data["sortEnd"] = items[-1]["realSort"]
    return {"code": "1", "message": "success", "data": data}


def fast_news_route(items: Sequence[dict[str, Any]]) -> Handler:
    """A dynamic getFastNewsList: pages by ``sortEnd`` (items with a smaller
    ``realSort``) and ``pageSize`` (≤ 200, default 20); ``data: null`` when
    ``sortEnd`` or ``req_trace`` is missing, as the real API does."""
    ordered = sorted(items, key=lambda i: int(i["realSort"]), reverse=True)

    def handler(seen: Seen) -> Body:
        if "sortEnd" not in seen.query or "req_trace" not in seen.query:
            return {"code": "1", "message": "success", "data": None}
        size = min(200, int(seen.query.get("pageSize") or 20))
        end = seen.query["sortEnd"]
        page = [i for i in ordered if not end or int(i["realSort"]) < int(end)][:size]
        return _fast_envelope(page)
    return handler


# -- CLS, Jin10, Wallstreetcn, Sina ----------------------------------------------------------


def cls_roll(rss_dir: Path = RSS_DIR, n: int = 8, *, vip: bool = False,
             outlets: Sequence[str] | None = CLS_OUTLETS) -> dict[str, Any]:
    """CLS get_roll_list ``{"errno": 0, "msg": "", "data": {"roll_data": [...]}}`` from
    Chinese rss-days items, newest first. ``vip=True`` adds a ``type`` 20015 item
    (【盘中宝】 teaser) second in the list."""
    items = []
    for i, a in enumerate(_chinese(rss_dir, n, outlets)):
        when = _when(a)
        ident = 1_000_000 + int(_digits(a["link"], 6))
        text = (f"【{a['title']}】财联社{when.month}月{when.day}日电，{_body(a, 200)}")
        items.append({
            "id": ident, "ctime": int(when.timestamp()),
            "modified_time": int(when.timestamp()) + 7, "title": a["title"],
            "content": text, "brief": text, "level": "B" if i % 4 == 0 else "C", "type": -1,
            "shareurl": f"https://api3.cls.cn/share/article/{ident}?os=web&sv=8.4.6"
                        "&app=CailianpressWeb",
            "subjects": [], "stock_list": [], "images": [], "reading_num": 1000 + i,
            "comment_num": 0, "share_num": 0, "author": "财联社", "audio_url": [],
        })
    if vip and items:
        teaser = dict(items[0], id=items[0]["id"] + 1, type=20015, title="【盘中宝】",
                      content="【盘中宝】" + items[0]["title"], brief="【盘中宝】")
        items.insert(1, teaser)
    return {"errno": 0, "msg": "", "data": {"roll_data": items}}


def jin10_flash(rss_dir: Path = RSS_DIR, n: int = 8, *, calendar: bool = False,
                vip: bool = False, outlets: Sequence[str] | None = JIN10_OUTLETS
                ) -> dict[str, Any]:
    """Jin10 ``{"status": 200, "message": "OK", "data": [...]}``: type-0 flashes from
    Chinese rss-days items (20-digit ``id`` = ``YYYYMMDDHHMMSS`` + 6, ``data.content``
    ``【title】…`` with a ``<b>``). ``calendar=True`` adds a type-1 data point (no
    ``content``); ``vip=True`` adds a type-2 VIP promo."""
    items: list[dict[str, Any]] = []
    for i, a in enumerate(_chinese(rss_dir, n, outlets)):
        when = _when(a)
        items.append({
            "id": when.strftime("%Y%m%d%H%M%S") + _digits(a["link"], 6),
            "time": _showtime(when), "type": 0, "important": 1 if i % 3 == 0 else 0,
            "tags": [], "channel": [1], "remark": [],
            "data": {"content": f"<b>【{a['title']}】</b>{_body(a, 200)}", "pic": "",
                     "title": "", "source": _outlet(a) or "", "source_link": a["link"],
                     "link": "", "vip_title": "", "tag": ""},
        })
    newest = items[0]["time"] if items else "2024-05-23 10:00:00"
    if calendar:
        items.insert(1, {
            "id": newest.replace("-", "").replace(":", "").replace(" ", "") + "123400",
            "time": newest, "type": 1, "important": 1, "tags": [], "channel": [1],
            "remark": [], "data": {"name": "第一季度GDP年率", "country": "德国",
                                   "actual": -0.2, "previous": "-0.2", "consensus": "-0.2",
                                   "unit": "%", "star": 3, "pub_time": newest,
                                   "data_id": 123456, "classify": "GDP"}})
    if vip:
        items.insert(1, {
            "id": newest.replace("-", "").replace(":", "").replace(" ", "") + "999900",
            "time": newest, "type": 2, "important": 0, "tags": [], "channel": [1],
            "remark": [], "data": {"content": "金十VIP专享", "title": "VIP", "tag": "VIP",
                                   "link": "https://www.jin10.com/vip_payment/index.html",
                                   "pic": "", "source": "", "source_link": "",
                                   "vip_title": "VIP"}})
    return {"status": 200, "message": "OK", "data": items}


def wallstreetcn_lives(rss_dir: Path = RSS_DIR, n: int = 8) -> dict[str, Any]:
    """Wallstreetcn lives ``{"code": 20000, "message": "OK", "data": {"items": [...],
    "next_cursor": ...}}`` from the 华尔街见闻 rss-days items, newest first; ``id`` is
    the article number of the link, ``next_cursor`` the last ``display_time``."""
    items = []
    for i, a in enumerate(_chinese(rss_dir, n, outlets=["华尔街见闻"])):
        number = re.search(r"(\d+)\D*$", a["link"])
        ident = int(number.group(1)) if number else int(_digits(a["link"], 7))
        text = _body(a, 300)
        items.append({
            "id": ident, "title": a["title"] if i % 2 == 0 else "",
            "content": _paragraphs(text), "content_text": text, "content_more": "",
            "display_time": int(_when(a).timestamp()), "score": 2 if i % 5 == 0 else 1,
            "uri": f"https://wallstreetcn.com/livenews/{ident}",
            "author": {"display_name": "华尔街见闻"}, "images": [],
            "channels": ["global-channel"], "tags": [], "is_calendar": False,
            "comment_count": 0,
        })
    cursor = str(items[-1]["display_time"]) if items else ""
    return {"code": 20000, "message": "OK", "data": {"items": items, "next_cursor": cursor}}


def sina_feed(rss_dir: Path = RSS_DIR, n: int = 8,
              outlets: Sequence[str] | None = SINA_OUTLETS) -> dict[str, Any]:
    """Sina 7x24 ``{"result": {"status": {"code": 0, "msg": "OK"}, "timestamp", "data":
    {"feed": {"list": [...], "page_info": {...}, "max_id", "min_id"}}}}`` from Chinese
    rss-days items, newest first; ``ext`` is a JSON-encoded string."""
    items = []
    for i, a in enumerate(_chinese(rss_dir, n, outlets)):
        when = _when(a)
        ident = 4_000_000 + int(_digits(a["link"], 6))
        docid = "inav" + _digits(a["link"], 10)
        items.append({
            "id": ident, "zhibo_id": 152, "type": 0,
            "rich_text": f"【{a['title']}】{_body(a, 200)}",
            "create_time": _showtime(when), "update_time": _showtime(when + timedelta(seconds=6)),
            "is_focus": 0, "top_value": 0, "like_nums": i, "is_delete": 0,
            "tag": [{"id": "5", "name": "市场"}],
            "ext": json.dumps({"stocks": [], "docurl": a["link"], "docid": docid,
                               "needPushWB": False, "needCMSLink": True}, ensure_ascii=False),
            "docurl": a["link"], "creator": "", "commentid": f"live:finance-152-{ident}:0",
        })
    ids = [i["id"] for i in items]
    stamp = (datetime.strptime(items[0]["create_time"], "%Y-%m-%d %H:%M:%S") if items
             else datetime(2024, 5, 23))
    return {"result": {
        "status": {"code": 0, "msg": "OK"},
        "timestamp": stamp.strftime("%a %b %d %H:%M:%S +0800 %Y"),
        "data": {"feed": {
            "list": items,
            "page_info": {"totalPage": 1, "pageSize": n, "page": 1, "totalNum": len(items)},
            "max_id": max(ids, default=0), "min_id": min(ids, default=0)}}}}


# -- RSS / Atom ----------------------------------------------------------------------------------

_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(text: str | None) -> str:
    return _xml_escape(_XML_ILLEGAL.sub("", text or ""))


def rss_xml(day_file: Path | str, *, atom: bool = False) -> bytes:
    """An RSS 2.0 (or Atom) document of every article of one rss-days file, in order.

    RSS: ``title``, ``link``, ``guid``, ``pubDate`` (the ``published`` string verbatim,
    in whichever of the three corpus styles it has), ``description`` (the summary HTML,
    escaped) and ``<source url=…>outlet</source>``. Atom: RFC 3339 ``published`` /
    ``updated`` from ``published_parsed``, ``summary type="html"``, ``author`` and
    ``source/title``. A ``source`` given as a string or ``{"title": …}`` becomes the
    outlet; a missing or empty one gives no source element (feedparser then reports
    no ``source``, as for the 45 items without one).
    """
    day = _day(str(day_file))
    date = day.get("collection_date", Path(day_file).stem)
    home = "https://github.com/qipeijun/FinancialReport"
    parts = ['<?xml version="1.0" encoding="utf-8"?>\n']
    if atom:
        parts.append(f'<feed xmlns="http://www.w3.org/2005/Atom">\n<title>财经新闻 {_x(date)}'
                     f'</title>\n<id>urn:caixun:rss-days:{_x(date)}</id>\n'
                     f'<link href={quoteattr(home)}/>\n<updated>{_x(date)}T23:59:59Z</updated>\n')
    else:
        parts.append(f'<rss version="2.0">\n<channel>\n<title>财经新闻 {_x(date)}</title>\n'
                     f'<link>{_x(home)}</link>\n<description>rss-days {_x(date)}: '
                     f'{len(day["articles"])} articles</description>\n')
    for a in day["articles"]:
        outlet = _outlet(a)
        if atom:
            stamp = datetime(*a["published_parsed"][:6]).strftime("%Y-%m-%dT%H:%M:%SZ") \
                if a.get("published_parsed") else f"{date}T00:00:00Z"
            parts.append(
                f"<entry>\n<title type=\"text\">{_x(a.get('title'))}</title>\n"
                f"<link rel=\"alternate\" href={quoteattr(_XML_ILLEGAL.sub('', a['link']))}/>\n"
                f"<id>{_x(a['link'])}</id>\n<published>{stamp}</published>\n"
                f"<updated>{stamp}</updated>\n"
                f"<summary type=\"html\">{_x(a.get('summary'))}</summary>\n"
                + (f"<author><name>{_x(outlet)}</name></author>\n"
                   f"<source><title>{_x(outlet)}</title></source>\n" if outlet else "")
                + "</entry>\n")
        else:
            parts.append(
                f"<item>\n<title>{_x(a.get('title'))}</title>\n<link>{_x(a['link'])}</link>\n"
                f"<guid isPermaLink=\"false\">{_x(a['link'])}</guid>\n"
                + (f"<pubDate>{_x(a['published'])}</pubDate>\n" if a.get("published") else "")
                + f"<description>{_x(a.get('summary'))}</description>\n"
                + (f"<source url={quoteattr(home)}>{_x(outlet)}</source>\n" if outlet else "")
                + "</item>\n")
    parts.append("</feed>\n" if atom else "</channel>\n</rss>\n")
    return "".join(parts).encode("utf-8")


# -- East Money quote lists (api/qt/clist/get, NEWS-APIS.md §9.1) --------------------------------

_QUOTE_LINK = re.compile(
    r"""<a\b[^>]*?href\s*=\s*["']?[^"'\s>]*quote\.eastmoney\.com/unify/r/(\d{1,3})\."""
    r"""([0-9A-Za-z.]+)[^>]*>(.*?)</a>""", re.S | re.I)

# The filters the source sends by default (akshare's), by market.
CLIST_FILTERS = {
    "sh": "m:1 t:2,m:1 t:23", "sz": "m:0 t:6,m:0 t:80", "bj": "m:0 t:81 s:2048",
    "hk": "m:128 t:3,m:128 t:4,m:128 t:1,m:128 t:2", "us": "m:105,m:106,m:107",
}


def quote_names(rss_dir: Path = RSS_DIR) -> list[tuple[int, str, str]]:
    """(market id, code, name) of every East Money quote link in rss-days
    (``quote.eastmoney.com/unify/r/<market>.<code>`` with a plain name as its text;
    links around K-line images are left out), the first name of each code, in
    corpus order: stocks, and indices and boards (``90.BK0475``) too."""
    found: dict[tuple[int, str], str] = {}
    for article in _articles(rss_dir):
        for market, code, text in _QUOTE_LINK.findall(article.get("summary") or ""):
            name = html.unescape(re.sub(r"<[^>]*>", "", text)).strip()
            if name and "<" not in text:
                found.setdefault((int(market), code), name)
    return [(market, code, name) for (market, code), name in found.items()]


def _list_market(market: int, code: str) -> str:
    """The list (a key of :data:`CLIST_FILTERS`, else "other") a quote code is on."""
    if market == 1:
        return "sh"
    if market == 0:
        return "bj" if code.startswith(("4", "8", "920")) else "sz"
    if market in (116, 128):
        return "hk"
    return "us" if market in (105, 106, 107) else "other"


def _em_name(market: int, code: str, name: str) -> str:
    """The short name as the list spells it: a Shenzhen class letter full-width, a
    two-character name padded to four (``万科A`` → ``万  科Ａ``)."""
    if market != 0 or not re.search(r"[\u4e00-\u9fff][AB]$", name):
        return name
    base, letter = name[:-1], chr(ord(name[-1]) + 0xFEE0)
    return (f"{base[0]}  {base[1]}" if len(base) == 2 else base) + letter


def clist_lists(rss_dir: Path = RSS_DIR) -> dict[str, list[dict[str, Any]]]:
    """The ``data.diff`` rows (``{"f12": code, "f13": market id, "f14": name}``) of
    each market's list, from :func:`quote_names`, by the keys of
    :data:`CLIST_FILTERS`: Shenzhen class shares spelled as the list does
    (``万  科Ａ``); "other" holds the boards and indices, which no stock list has.
    The Shanghai list also carries two indices (``1.000001`` 上证指数,
    ``1.000300``) and the first boards, as rows that are not securities."""
    lists: dict[str, list[dict[str, Any]]] = {key: [] for key in (*CLIST_FILTERS, "other")}
    for market, code, name in quote_names(rss_dir):
        lists[_list_market(market, code)].append(
            {"f12": code, "f13": market, "f14": _em_name(market, code, name)})
    lists["sh"][3:3] = [{"f12": "000001", "f13": 1, "f14": "上证指数"},
                        {"f12": "000300", "f13": 1, "f14": "沪深300"},
                        *lists["other"][:3]]
    return lists


def _filter_key(fs: str) -> str:
    return " ".join(fs.replace("+", " ").split())


def clist_route(lists: dict[str, Sequence[dict[str, Any]]], *,
                max_page_size: int | None = None,
                page_replies: dict[tuple[str, int], Sequence[Reply | Body]] | None = None
                ) -> Handler:
    """A dynamic ``api/qt/clist/get``: the rows of ``lists[fs]`` (a filter, keyed as
    sent; ``+`` and spaces alike), paged by ``pn`` (1-based) and ``pz``, as
    ``{"rc": 0, "rt", "svr", "lt", "full", "dlmkts", "data": {"total", "diff": [...]}}``
    with ``data: null`` past the last page and for a filter it does not know.
    ``max_page_size`` caps ``pz`` as the real server may. ``page_replies`` answers
    the requests for one page (``(fs, pn)``) with its replies, one per request,
    before the normal page: a 500 that a retry gets past, a page that is no JSON."""
    by_filter = {_filter_key(fs): list(rows) for fs, rows in lists.items()}
    queued = {(_filter_key(fs), pn): deque(replies)
              for (fs, pn), replies in (page_replies or {}).items()}
    lock = threading.Lock()

    def handler(seen: Seen) -> Reply | Body:
        fs = _filter_key(seen.query.get("fs", ""))
        page = int(seen.query.get("pn") or 1)
        with lock:
            waiting = queued.get((fs, page))
            if waiting:
                return waiting.popleft()
        size = int(seen.query.get("pz") or 20)
        size = min(size, max_page_size) if max_page_size else size
        rows = by_filter.get(fs)
        listed = rows[(page - 1) * size:page * size] if rows is not None else []
        data = {"total": len(rows), "diff": listed} if listed and rows is not None else None
        return {"rc": 0, "rt": 6, "svr": 181734976, "lt": 1, "full": 1, "dlmkts": "",
                "data": data}
    return handler


# -- everything at once ------------------------------------------------------------------------

PATHS = {
    "webapi": "/web/webapi",                              # type=102 rolling, type=45 media
    "market": "/information/newmarket/web/webapi",
    "text": "/NewsData/GetNewsText.do",
    "fast": "/comm/web/getFastNewsList",
    "cls": "/v1/roll/get_roll_list",
    "jin10": "/get_flash_list",
    "wallstreetcn": "/apiv1/content/lives",
    "sina": "/api/zhibo/feed",
    "rss": "/rss.xml",
    "atom": "/atom.xml",
    "clist": "/api/qt/clist/get",                         # quote lists, by fs (CLIST_FILTERS)
}


def install_all(server: NewsServer, posts_dir: Path = POSTS_DIR, rss_dir: Path = RSS_DIR,
                *, etag: bool = False) -> dict[str, str]:
    """Register every builder under its real path (see :data:`PATHS`, returned): the
    legacy webapi dispatches on ``type`` (102, 45), GetNewsText.do on ``id``,
    getFastNewsList pages by ``sortEnd``; the feeds serve the first rss-days file;
    the quote list serves :func:`clist_lists` under akshare's filters."""
    server.route(PATHS["webapi"], by_query("type", {
        "102": rolling_records(posts_dir), "45": media_nodes(posts_dir, rss_dir)}), etag=etag)
    server.route(PATHS["market"], market_records(rss_dir), etag=etag)
    server.route(PATHS["text"], by_query("id", {**news_texts(posts_dir),
                                               **media_texts(posts_dir, rss_dir)}))
    server.route(PATHS["fast"], fast_news_route(
        fast_news(rss_dir, n=None)["data"]["fastNewsList"]), etag=etag)
    server.route(PATHS["cls"], cls_roll(rss_dir), etag=etag)
    server.route(PATHS["jin10"], jin10_flash(rss_dir), etag=etag)
    server.route(PATHS["wallstreetcn"], wallstreetcn_lives(rss_dir), etag=etag)
    server.route(PATHS["sina"], sina_feed(rss_dir), etag=etag)
    first = day_files(rss_dir)[0]
    server.route(PATHS["rss"], rss_xml(first), content_type=RSS_TYPE, etag=etag)
    server.route(PATHS["atom"], rss_xml(first, atom=True), content_type=ATOM_TYPE, etag=etag)
    lists = clist_lists(rss_dir)
    server.route(PATHS["clist"], clist_route({CLIST_FILTERS[k]: lists[k] for k in CLIST_FILTERS}))
    return dict(PATHS)


# ======================================================================================
# faults that write their reply part by part
# ======================================================================================


class _Streamed(Fault):
    """A fault that writes its own reply (see :func:`trickle`, :func:`streamed`)."""

    def write(self, handler: _Handler, seen: Seen) -> None:
        raise NotImplementedError


def _head(handler: _Handler, status: int, headers: Iterable[tuple[str, str]]) -> None:
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value.encode("utf-8").decode("latin-1"))
    handler.end_headers()


@dataclass(frozen=True)
class _Trickle(_Streamed):
    bytes_per_second: float

    def write(self, handler: _Handler, seen: Seen) -> None:
        news = handler.server.news
        wire = news._normal(seen)
        _head(handler, wire.status, [*wire.headers, ("Content-Length", str(len(wire.body)))])
        pause = 1.0 / self.bytes_per_second
        for i in range(len(wire.body)):
            if news._stopping.wait(pause):
                handler._abort()
                return
            handler.wfile.write(wire.body[i:i + 1])  # the client's going away ends it


@dataclass(frozen=True)
class _Streaming(_Streamed):
    parts: Callable[[], Iterable[bytes]]
    headers: tuple[tuple[str, str], ...]
    content_length: int | None

    def write(self, handler: _Handler, seen: Seen) -> None:
        news = handler.server.news
        chunked = self.content_length is None
        framing = ("Transfer-Encoding", "chunked") if chunked \
            else ("Content-Length", str(self.content_length))
        _head(handler, 200, [*self.headers, framing])
        for part in self.parts():
            if news._stopping.is_set():
                handler._abort()
                return
            if part:  # an empty chunk would end a chunked body
                handler.wfile.write(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part)
        if chunked:
            handler.wfile.write(b"0\r\n\r\n")


def trickle(bytes_per_second: float) -> Fault:
    """The normal reply (status, headers, a true ``Content-Length``), its body sent one
    byte every ``1 / bytes_per_second`` seconds: a read timeout longer than that never
    trips. Stops when the client goes away or the server stops."""
    return _Trickle(bytes_per_second)


def streamed(parts: Callable[[], Iterable[bytes]], *, content_type: str = JSON_TYPE,
             headers: dict[str, str] | None = None,
             content_length: int | None = None) -> Fault:
    """A 200 whose body is ``parts()``, called when the request arrives (so a body of
    gigabytes is made as it is sent, never held), written part by part: with
    ``Transfer-Encoding: chunked`` (no length), or under ``content_length``, which
    need not be true (a larger one leaves the client waiting for bytes that never
    come). ``headers`` are added as given, e.g. ``{"Content-Encoding": "gzip"}``.
    Stops when the client goes away or the server stops."""
    return _Streaming(parts, (("Content-Type", content_type), *(headers or {}).items()),
                      content_length)


# ======================================================================================
# paged lists (the paging tests: a burst between two polls)
# ======================================================================================
#
# Each route reads its item list at every request, so a test changes what the
# "live" API lists between polls by changing the list in place (``live[:0] = new``).


def sina_items(n: int, rss_dir: Path = RSS_DIR) -> list[dict[str, Any]]:
    """``n`` Sina 7x24 items (as :func:`sina_feed` makes them, from any Chinese
    rss-days outlet), newest first, with distinct ids."""
    items, ids = [], set()
    for item in sina_feed(rss_dir, n=3 * n, outlets=None)["result"]["data"]["feed"]["list"]:
        if item["id"] not in ids:
            ids.add(item["id"])
            items.append(item)
    if len(items) < n:
        raise ValueError(f"the corpus gives only {len(items)} distinct Sina items")
    return items[:n]


def sina_route(items: list[dict[str, Any]]) -> Handler:
    """A Sina ``api/zhibo/feed`` over ``items`` (newest first): pages by ``page``
    (1-based) and ``page_size`` (else ``pagesize``, default 20), ``page_info``
    giving the real page count."""

    def handler(seen: Seen) -> Body:
        size = int(seen.query.get("page_size") or seen.query.get("pagesize") or 20)
        page = int(seen.query.get("page") or 1)
        listed = list(items[(page - 1) * size:page * size])
        ids = [i["id"] for i in listed]
        return {"result": {
            "status": {"code": 0, "msg": "OK"}, "timestamp": "Thu May 23 22:46:48 +0800 2024",
            "data": {"feed": {
                "list": listed,
                "page_info": {"totalPage": max(1, -(-len(items) // size)), "pageSize": size,
                              "page": page, "totalNum": len(items)},
                "max_id": max(ids, default=0), "min_id": min(ids, default=0)}}}}
    return handler


def fast_news_items(n: int, rss_dir: Path = RSS_DIR) -> list[dict[str, Any]]:
    """``n`` getFastNewsList items from any Chinese rss-days item, newest first."""
    return list(fast_news(rss_dir, n=n, eastmoney_only=False)["data"]["fastNewsList"])


def fast_news_live(items: list[dict[str, Any]]) -> Handler:
    """:func:`fast_news_route` over ``items`` as they are at each request."""
    return lambda seen: fast_news_route(items)(seen)


def column_items(n: int, rss_dir: Path = RSS_DIR) -> list[dict[str, Any]]:
    """``n`` getNewsByColumns items (``code``, ``showTime``, ``title``, ``mediaName``,
    ``summary``…) from Chinese rss-days items, newest first. ``uniqueUrl`` is empty,
    so the source's ``article_url`` option names the article page."""
    return [{"code": item["code"], "showTime": item["showTime"], "title": item["title"],
             "mediaName": "东方财富", "summary": item["summary"].split("】", 1)[-1][:120],
             "image": "", "url": "", "uniqueUrl": "", "Np_dst": ""}
            for item in fast_news_items(n, rss_dir)]


def column_route(items: list[dict[str, Any]]) -> Handler:
    """A getNewsByColumns over ``items`` (newest first): pages by ``page_index``
    (1-based) and ``page_size`` (default 20)."""

    def handler(seen: Seen) -> Body:
        size = int(seen.query.get("page_size") or 20)
        page = int(seen.query.get("page_index") or 1)
        return {"code": "1", "message": "success",
                "data": {"list": list(items[(page - 1) * size:page * size])}}
    return handler


def column_articles(items: Iterable[dict[str, Any]]) -> Handler:
    """The article page of each column item, by its ``code`` query parameter: the
    summary as the ``div#ContentBody`` of an HTML page."""
    pages = {item["code"]: (f"<html><head><title>{html.escape(item['title'])}</title></head>"
                            f"<body><div id=\"ContentBody\">{_paragraphs(item['summary'])}"
                            "</div></body></html>") for item in items}
    return by_query("code", {code: Reply(page, content_type="text/html; charset=utf-8")
                             for code, page in pages.items()})

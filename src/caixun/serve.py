"""Serve a built site over HTTP so a user can look at it (``caixun serve``).

The app is Starlette's ``StaticFiles`` in HTML mode (directory URLs answer with
their ``index.html``, ``/a/b`` redirects to ``/a/b/``, the site's ``404.html``
answers a missing path) with these changes:

* content types come from a fixed table, not from the machine's
  ``/etc/mime.types``, so the same site is served the same way everywhere and
  ``feed.xml`` is announced as Atom;
* a path with any component starting with ``.`` is missing, which hides the
  publisher's temporary files (``.caixun-tmp/``) and ``..`` alike;
* a site without ``404.html`` still gets a Chinese not-found page;
* ``Range`` is answered as RFC 9110 §14 says, whatever Starlette's version
  does (see :func:`byte_ranges`);
* the ``/a/b`` → ``/a/b/`` redirect is path-only, so a ``Host`` header is
  never reflected into a ``Location``.

Every request passes :class:`OriginFormOnly` first: a request target in
absolute form (``GET http://other.example/ HTTP/1.1``, as sent to a proxy) is
refused with 400 unless it names this server's own address. The server runs
uvicorn's h11 protocol (:data:`HTTP_PROTOCOL`), which hands such a target to
the app as it came; httptools would keep only its path, and serve it.

Routes passed as ``extra_routes`` (the JSON search API under ``/api/``) are
matched before the site, so a file of the same name cannot shadow them.
Responses over 500 bytes are gzipped for clients that accept it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import stat
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import (FileResponse, HTMLResponse, PlainTextResponse,
                                 RedirectResponse, Response)
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from caixun.errors import ConfigError

__all__ = ["HTTP_PROTOCOL", "OriginFormOnly", "Unsatisfiable", "byte_ranges", "create_app",
           "listen", "serve", "server_config"]

# Smaller bodies gain less from gzip than the header costs.
GZIP_MINIMUM_SIZE = 500
# uvicorn's HTTP/1.1 implementation: h11 passes an absolute-form target through
# for OriginFormOnly to judge (httptools, when installed, would drop its host).
HTTP_PROTOCOL = "h11"
# More ranges than this in one Range header are served as the whole file:
# RFC 9110 §14.2 lets a server ignore a Range that looks like an attack.
MAX_RANGES = 100

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".xml": "application/xml",
}

# The publisher names every Atom feed feed.xml; other .xml files (sitemap.xml)
# are plain XML.
_FEED_NAME = "feed.xml"
_FEED_MEDIA_TYPE = "application/atom+xml"

_NOT_FOUND_PAGE = (
    '<!doctype html>\n<html lang="zh-CN">\n<meta charset="utf-8">\n'
    "<title>页面不存在</title>\n<h1>页面不存在</h1>\n</html>\n"
)


def _media_type(filename: str) -> str | None:
    """The Content-Type for a site file, or None to let Starlette guess."""
    name = os.path.basename(filename)
    if name == _FEED_NAME:
        return _FEED_MEDIA_TYPE
    return _MEDIA_TYPES.get(os.path.splitext(name)[1].lower())


def _is_hidden(path: str) -> bool:
    # StaticFiles hands over a normalised relative path; "." alone is the root.
    return any(part.startswith(".") and part != "." for part in Path(path).parts)


class Unsatisfiable(ValueError):
    """A bytes Range that is invalid or asks for nothing the file has: 416."""


_RANGE_SPEC = re.compile(r"([0-9]+)-([0-9]*)|-([0-9]+)")


def _position(digits: str) -> int:
    # int() refuses more than 4,300 digits; any position past 10**18 is past the file.
    return int(digits) if len(digits) <= 18 else 10**18


def byte_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """The ranges a ``Range`` header asks of a file of ``size`` bytes, as (first, last).

    RFC 9110 §14.2: a range unit other than ``bytes`` (or no unit at all:
    ``abc``) MUST be ignored — None, serve the whole file. A bytes range that
    is invalid (``50-10``, ``abc``, ``0-5,x``) or asks for nothing the file
    has (``5000-`` of 300 bytes, ``-0``) raises :class:`Unsatisfiable`: the
    RFC's SHOULD for both is 416 with ``Content-Range: bytes */size`` (a 400
    would be wrong: the request is well-formed HTTP). Unsatisfiable parts of a
    satisfiable set are dropped; more than :data:`MAX_RANGES` parts: None.
    """
    unit, equals, specs = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    parts = [part.strip() for part in specs.split(",")]
    if len(parts) > MAX_RANGES:
        return None
    ranges = []
    for part in filter(None, parts):  # a list may hold empty elements (RFC 9110 §5.6.1)
        match = _RANGE_SPEC.fullmatch(part)
        if match is None:
            raise Unsatisfiable(part)
        first, last, suffix = match.groups()
        if first is None:
            length = _position(suffix)
            if length and size:
                ranges.append((max(size - length, 0), size - 1))
            continue
        start, end = _position(first), _position(last) if last else None
        if end is not None and end < start:
            raise Unsatisfiable(part)
        if start < size:
            ranges.append((start, size - 1 if end is None else min(end, size - 1)))
    if not ranges:
        raise Unsatisfiable(header)
    return ranges


class _WithRange(Response):
    """A file response that sees the Range header we chose, not the client's.

    Starlette's own parser answers 400 where the RFC asks 416 or to ignore
    (and older versions ignore Range altogether); handing it a clean,
    satisfiable range set (or none) leaves it only the serving.
    """

    def __init__(self, inner: FileResponse, ranges: list[tuple[int, int]] | None) -> None:
        self.inner = inner
        self.status_code = inner.status_code
        self.raw_headers = inner.raw_headers
        self.range = (None if ranges is None else
                      "bytes=" + ",".join(f"{first}-{last}" for first, last in ranges))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"range"]
        if self.range is not None:
            headers.append((b"range", self.range.encode("ascii")))
        await self.inner({**scope, "headers": headers}, receive, send)


def _ranged(response: FileResponse, request: Headers, size: int) -> Response:
    """``response`` as the request's Range and If-Range ask: whole, in parts, or 416."""
    if_range = request.get("if-range")
    if if_range is not None and if_range not in (response.headers.get("etag"),
                                                 response.headers.get("last-modified")):
        return _WithRange(response, None)  # the file changed since: all of it (§13.1.5)
    try:
        return _WithRange(response, byte_ranges(request["range"], size))
    except Unsatisfiable:
        return PlainTextResponse("416 Range Not Satisfiable", status_code=416,
                                 headers={"Content-Range": f"bytes */{size}"})


def _directory_redirect(scope: Scope) -> Response:
    """``/a/b`` → ``/a/b/``, path-only: the Host header a client sent is not echoed.

    Leading slashes collapse to one, so ``//host/dir`` cannot become a
    redirect to another host; the path is percent-encoded (a ``\\`` too).
    """
    location = "/" + quote(scope["path"].lstrip("/"), safe="/") + "/"
    if scope.get("query_string"):
        location += "?" + scope["query_string"].decode("latin-1")
    return RedirectResponse(location)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _names_us(authority_url: str, scope: Scope) -> bool:
    """Whether an absolute-form target names the address this connection came in on."""
    server = scope.get("server")
    try:
        parts = urlsplit(authority_url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a port that is not a number
        return False
    if not server or parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host, our_port = str(server[0]).lower(), server[1]
    if port != our_port:
        return False
    return parts.hostname == host or (parts.hostname == "localhost" and _is_loopback(host))


class OriginFormOnly:
    """Refuses (400) a request target in absolute form unless it names this server.

    RFC 9112 §3.2.2 has a server take the host from such a target and ignore
    ``Host``; a static preview server that served ``GET http://bank.example/``
    as its own page would let a misdirected proxy request pass for another
    site's. One naming this server is served as its path (§3.2.2 says accept
    it); ``*`` (``OPTIONS *``) and anything else not starting with ``/`` is 400.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/"):
            await self.app(scope, receive, send)
            return
        target = scope["path"]
        if not _names_us(target, scope):
            response = PlainTextResponse(
                "400 Bad Request: this server answers only for its own address", 400)
            await response(scope, receive, send)
            return
        raw = urlsplit(scope.get("raw_path", b"").decode("latin-1")).path or "/"
        path = unquote(raw)
        await self.app({**scope, "path": path, "raw_path": raw.encode("latin-1")},
                       receive, send)


class _OpenedFile(FileResponse):
    """A file response for the file as it was opened.

    ``StaticFiles`` stats a file, then opens it by name to send it: a rebuild
    that replaced the file in between (``caixun run`` rebuilds while it
    serves) got the new bytes sent under the old ``Content-Length``, a page
    cut short or a broken connection. Here the length, ETag and bytes all come
    from one open descriptor (read back through ``/proc/self/fd``), closed
    when the response has been sent.
    """

    def __init__(self, fd: int, status_code: int, media_type: str | None) -> None:
        self.fd = fd
        try:
            opened = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        self.size = opened.st_size
        super().__init__(f"/proc/self/fd/{fd}", status_code=status_code, stat_result=opened,
                         media_type=media_type)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class SiteFiles(StaticFiles):
    """``StaticFiles`` with our content types, hidden dotfiles and a Chinese 404."""

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        # Every file lookup (the file, a directory's index.html) passes here,
        # so refusing dot components here covers them all.
        if _is_hidden(path):
            return "", None
        return super().lookup_path(path)

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        # Same as StaticFiles.file_response, which takes no media type, but for the
        # file as it is opened now (see _OpenedFile), not as it was looked up.
        response = _OpenedFile(os.open(full_path, os.O_RDONLY), status_code,
                               _media_type(os.fspath(full_path)))
        request = Headers(scope=scope)
        if self.is_not_modified(response.headers, request):
            response.close()
            return NotModifiedResponse(response.headers)
        if status_code != 200 or "range" not in request:  # Range applies to a 200 only
            return response
        ranged = _ranged(response, request, response.size)
        if not isinstance(ranged, _WithRange):
            response.close()
        return ranged

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            response = await super().get_response(path, scope)
        except HTTPException as exc:
            # StaticFiles raises a bare 404 when the site has no 404.html and
            # for unusable paths (too long, NUL bytes); answer those with a page.
            if exc.status_code != 404:
                raise
            return await self._not_found(scope)
        # StaticFiles' only redirect is a directory's: /a/b → /a/b/, made absolute
        # from the Host header; ours is the same path, without the host.
        return _directory_redirect(scope) if isinstance(response, RedirectResponse) else response

    async def _not_found(self, scope: Scope) -> Response:
        full_path, stat_result = await anyio.to_thread.run_sync(self.lookup_path, "404.html")
        if stat_result is not None and stat.S_ISREG(stat_result.st_mode):
            return self.file_response(full_path, stat_result, scope, status_code=404)
        return HTMLResponse(_NOT_FOUND_PAGE, status_code=404)


def _check_site_dir(site_dir: Path) -> None:
    if not site_dir.exists():
        raise ConfigError(f"site directory {site_dir} does not exist; run `caixun build` first")
    if not site_dir.is_dir():
        raise ConfigError(f"site directory {site_dir} is not a directory; run `caixun build` first")


def create_app(site_dir: Path, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """An ASGI app serving the built site in ``site_dir``, after ``extra_routes``."""
    _check_site_dir(site_dir)
    site = SiteFiles(directory=site_dir, html=True)
    return Starlette(
        routes=[*extra_routes, Mount("/", app=site, name="site")],
        middleware=[Middleware(OriginFormOnly),
                    Middleware(GZipMiddleware, minimum_size=GZIP_MINIMUM_SIZE)],
    )


def server_config(app: ASGIApp, host: str = "127.0.0.1", port: int = 8000) -> uvicorn.Config:
    """uvicorn's settings for serving ``app``: quiet, and the h11 protocol (see module doc)."""
    return uvicorn.Config(app, host=host, port=port, log_level="warning", reload=False,
                          http=HTTP_PROTOCOL)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket for uvicorn; ``ConfigError`` when the port is taken.

    Binding here rather than in uvicorn turns a busy port into a ConfigError;
    uvicorn would log it and call sys.exit.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        server = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    # create_server makes the socket with protocol 0, and asyncio sets
    # TCP_NODELAY only on connections whose protocol says IPPROTO_TCP: without
    # it every response waited 40 ms for the client's delayed ACK (Nagle).
    # Re-wrapping the descriptor reads the real protocol back from the kernel.
    return socket.socket(fileno=server.detach())


def serve(site_dir: Path, host: str = "127.0.0.1", port: int = 8000,
          extra_routes: Sequence[BaseRoute] = ()) -> None:
    """Serve ``site_dir`` (and ``extra_routes``) on ``host:port`` until interrupted (Ctrl-C)."""
    app = create_app(site_dir, extra_routes)
    sock = listen(host, port)
    config = server_config(app, host, port)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on Ctrl-C, then re-raises the signal;
        # for a foreground preview server that is the normal way to stop.
        pass
    finally:
        sock.close()

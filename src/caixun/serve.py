"""Serve a built site over HTTP so a user can look at it (``caixun serve``).

The app is Starlette's ``StaticFiles`` in HTML mode (directory URLs answer with
their ``index.html``, ``/a/b`` redirects to ``/a/b/``, the site's ``404.html``
answers a missing path) with three changes:

* content types come from a fixed table, not from the machine's
  ``/etc/mime.types``, so the same site is served the same way everywhere and
  ``feed.xml`` is announced as Atom;
* a path with any component starting with ``.`` is missing, which hides the
  publisher's temporary files (``.caixun-tmp/``) and ``..`` alike;
* a site without ``404.html`` still gets a Chinese not-found page.

Routes passed as ``extra_routes`` (the JSON search API under ``/api/``) are
matched before the site, so a file of the same name cannot shadow them.
Responses over 500 bytes are gzipped for clients that accept it.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Sequence
from pathlib import Path

import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Scope

from caixun.errors import ConfigError

__all__ = ["create_app", "serve"]

# Smaller bodies gain less from gzip than the header costs.
GZIP_MINIMUM_SIZE = 500

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
        # Same as StaticFiles.file_response, which takes no media type.
        response = FileResponse(
            full_path,
            status_code=status_code,
            stat_result=stat_result,
            media_type=_media_type(os.fspath(full_path)),
        )
        if self.is_not_modified(response.headers, Headers(scope=scope)):
            return NotModifiedResponse(response.headers)
        return response

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            # StaticFiles raises a bare 404 when the site has no 404.html and
            # for unusable paths (too long, NUL bytes); answer those with a page.
            if exc.status_code != 404:
                raise
            return await self._not_found(scope)

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
        middleware=[Middleware(GZipMiddleware, minimum_size=GZIP_MINIMUM_SIZE)],
    )


def _bind(host: str, port: int) -> socket.socket:
    # Binding here rather than in uvicorn turns a busy port into a ConfigError;
    # uvicorn would log it and call sys.exit.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def serve(site_dir: Path, host: str = "127.0.0.1", port: int = 8000,
          extra_routes: Sequence[BaseRoute] = ()) -> None:
    """Serve ``site_dir`` (and ``extra_routes``) on ``host:port`` until interrupted (Ctrl-C)."""
    app = create_app(site_dir, extra_routes)
    sock = _bind(host, port)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", reload=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on Ctrl-C, then re-raises the signal;
        # for a foreground preview server that is the normal way to stop.
        pass
    finally:
        sock.close()

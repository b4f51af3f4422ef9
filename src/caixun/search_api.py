"""``GET /api/search``: the archive's search as JSON, for ``caixun serve`` and ``caixun run``.

``q`` (required, at most 200 characters), ``outlet`` (a slug), ``since`` and
``until`` (``YYYY-MM-DD``, Beijing days, both included), ``page`` (1–50). Pages
hold ``PAGE_SIZE`` results. Answers, each JSON:

* 200 ``{"query", "page", "page_size", "results"}``;
* 400 ``{"error": "…"}`` naming the bad parameter;
* 503 ``{"error": "…"}`` with ``Retry-After``: the archive cannot be read
  (missing, damaged, made by an older caixun; ``Retry-After: 30``), or more
  searches are in flight than the server takes (``Retry-After: 1``).

The archive is opened read-only for each request, so the API never creates,
upgrades or writes it, and an archive replaced or repaired while serving is
picked up by the next request.

Back-pressure: searches run on threads of their own (:class:`SearchPool`),
``MAX_RUNNING`` at a time, with ``MAX_WAITING`` more queued; one past that is
answered 503 at once. Without a bound, 200 concurrent clients on 8,000
articles made the median answer take 5 s and the static pages seconds too.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from caixun.archive import open_archive
from caixun.errors import ArchiveError
from caixun.normalize import BEIJING
from caixun.publish.paths import article_path, url_of
from caixun.segment import MAX_QUERY_CHARS, QueryError

# The web parts (starlette, asyncio, threads) are imported where the routes
# are made: `caixun search` uses search_record and day_bounds only.
if TYPE_CHECKING:
    from concurrent.futures import Future

    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from caixun.archive import SearchHit

__all__ = ["MAX_RUNNING", "MAX_WAITING", "PAGE_SIZE", "Busy", "SearchPool", "day_bounds",
           "parse_day", "search_record", "search_routes"]

T = TypeVar("T")

PAGE_SIZE = 20
MAX_PAGE = 50
# A search is CPU work in SQLite and Python: more running at once than a few
# per core only makes each slower. The short queue absorbs bursts.
MAX_RUNNING = 2 * (os.cpu_count() or 1)
MAX_WAITING = 4 * (os.cpu_count() or 1)
BUSY_RETRY_AFTER = 1  # seconds: a search takes milliseconds to a few hundred
UNAVAILABLE_RETRY_AFTER = 30  # seconds: someone has to import, fetch or repair

# ASCII digits only: str.isdigit() and re's \d also take ² and ⑤, which int()
# then refuses; date.fromisoformat() alone would take 20211208 too.
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PAGE = re.compile(r"[0-9]{1,4}")


class BadParameter(ValueError):
    pass


class Busy(Exception):
    """More searches are in flight than the pool takes."""


class SearchPool:
    """Runs searches on threads of its own, ``running`` at a time, ``waiting`` more queued.

    Its own threads, not the ASGI server's shared pool, so that searches never
    hold the threads StaticFiles reads files with. Past ``running + waiting``
    searches in flight, :meth:`run` raises :class:`Busy` at once.
    """

    def __init__(self, running: int = MAX_RUNNING, waiting: int = MAX_WAITING) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._executor = ThreadPoolExecutor(max_workers=running,
                                            thread_name_prefix="caixun-search")
        self._room = running + waiting
        self._in_flight = 0
        self._lock = threading.Lock()  # the count drops on a worker thread

    async def run(self, func: Callable[[], T]) -> T:
        import asyncio

        with self._lock:
            if self._in_flight >= self._room:
                raise Busy()
            self._in_flight += 1
        try:
            future = self._executor.submit(func)
        except BaseException:
            self._release()
            raise
        # A search counts until its thread is done, even when the client left
        # (the request is cancelled; a running search cannot be).
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, _: Future[Any] | None = None) -> None:
        with self._lock:
            self._in_flight -= 1


def search_record(hit: SearchHit, base_path: str = "") -> dict[str, Any]:
    """One result as JSON: what a list of results shows, and where the page is."""
    ref = hit.ref
    when = datetime.fromtimestamp(ref.published_ts, timezone.utc).astimezone(BEIJING)
    return {
        "uid": ref.uid, "title": ref.title, "outlet": ref.outlet,
        "outlet_slug": ref.outlet_slug, "published_at": when.isoformat(),
        "url": url_of(article_path(ref.outlet_slug, ref.published_ts, ref.file_id), base_path),
        "snippet": hit.snippet, "score": round(hit.score, 4),
    }


def parse_day(value: str) -> date:
    """A ``YYYY-MM-DD`` day; ``ValueError`` for anything else (20211208, 2021-13-01, ２０２１…)."""
    if not _DAY.fullmatch(value):
        raise ValueError(f"not a date like 2021-12-08: {value!r}")
    return date.fromisoformat(value)


def day_bounds(since: date | None, until: date | None) -> tuple[int | None, int | None]:
    """Beijing days → [start, end) Unix seconds; ``until`` includes its whole day.

    The day after 9999-12-31 is past ``date.max``: that ``until`` bounds nothing.
    """
    def start(day: date) -> int:
        return int(datetime(day.year, day.month, day.day, tzinfo=BEIJING).timestamp())

    end = None
    if until is not None and until.toordinal() < date.max.toordinal():
        end = start(date.fromordinal(until.toordinal() + 1))
    return (start(since) if since else None), end


def _day(request: Request, name: str) -> date | None:
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        return parse_day(value)
    except ValueError:
        raise BadParameter(f"{name} must be a date like 2021-12-08, not {value!r}") from None


def _page(request: Request) -> int:
    value = request.query_params.get("page", "1")
    if not _PAGE.fullmatch(value) or not 1 <= int(value) <= MAX_PAGE:
        raise BadParameter(f"page must be a whole number from 1 to {MAX_PAGE}, not {value!r}")
    return int(value)


def _query(request: Request) -> str:
    query = request.query_params.get("q", "")
    if not query.strip():
        raise BadParameter("q is required: what to search for")
    if len(query) > MAX_QUERY_CHARS:
        raise BadParameter(f"q is longer than {MAX_QUERY_CHARS} characters")
    return query


def _error(message: str, status: int, retry_after: int | None = None) -> JSONResponse:
    from starlette.responses import JSONResponse

    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def search_routes(archive_path: Path, base_path: str = "", *, running: int = MAX_RUNNING,
                  waiting: int = MAX_WAITING) -> list[Route]:
    """The API routes, reading the archive at ``archive_path`` (read-only, a connection per request).

    ``running`` and ``waiting`` bound the searches in flight (see :class:`SearchPool`).
    """
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    pool = SearchPool(running, waiting)

    def run(query: str, outlet: str | None, bounds: tuple[int | None, int | None],
            page: int) -> list[dict[str, Any]]:
        with open_archive(archive_path, read_only=True) as archive:
            hits = archive.search(query, outlet=outlet, since_ts=bounds[0], until_ts=bounds[1],
                                  limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        return [search_record(hit, base_path) for hit in hits]

    async def endpoint(request: Request) -> JSONResponse:
        try:
            query, page = _query(request), _page(request)
            bounds = day_bounds(_day(request, "since"), _day(request, "until"))
            outlet = request.query_params.get("outlet") or None
            results = await pool.run(lambda: run(query, outlet, bounds, page))
        except (BadParameter, QueryError) as exc:
            return _error(str(exc), 400)
        except Busy:
            return _error("too many searches at once; try again in a second", 503,
                          BUSY_RETRY_AFTER)
        except ArchiveError as exc:
            return _error(f"search is unavailable: {exc}", 503, UNAVAILABLE_RETRY_AFTER)
        return JSONResponse({"query": query, "page": page, "page_size": PAGE_SIZE,
                             "results": results})

    return [Route("/api/search", endpoint, methods=["GET"])]

"""``GET /api/search``: the archive's search as JSON, for ``caixun serve`` and ``caixun run``.

``q`` (at most 200 characters; required unless ``stock`` is given), ``stock``
(repeatable, at most ``MAX_STOCKS``: only articles tagged with every one of
these securities, each a code in any spelling or a name the archive knows, see
:func:`resolve_stocks`), ``outlet`` (a slug), ``since`` and ``until``
(``YYYY-MM-DD``, Beijing days, both included), ``page`` (1–50). Pages hold
``PAGE_SIZE`` results; each result carries ``stocks``, the codes its article
is tagged with. Answers, each JSON:

* 200 ``{"query", "stocks", "page", "page_size", "results"}``;
* 400 ``{"error": "…"}`` naming the bad parameter (an unknown stock too);
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager, Sequence, TypeVar

from caixun.archive import open_archive
from caixun.errors import ArchiveError
from caixun.normalize import BEIJING
from caixun.publish.paths import article_path, url_of
from caixun.securities import canonical_code, from_native, name_forms, normalize_name
from caixun.segment import MAX_QUERY_CHARS, QueryError

# The web parts (starlette, asyncio, threads) are imported where the routes
# are made: `caixun search` uses search_record and day_bounds only.
if TYPE_CHECKING:
    from concurrent.futures import Future

    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from caixun.archive import SearchHit, Archive
    from caixun.archive.securities import SecurityRow

__all__ = ["MAX_RUNNING", "MAX_STOCKS", "MAX_WAITING", "PAGE_SIZE", "Busy", "SearchPool",
           "UnknownStock", "day_bounds", "parse_day", "resolve_stocks", "search_record",
           "search_records", "search_routes"]

T = TypeVar("T")

PAGE_SIZE = 20
MAX_PAGE = 50
MAX_STOCKS = 10  # stock= parameters of one search
MAX_STOCK_CHARS = 50
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


class UnknownStock(ValueError):
    """A stock given to search by that names no security (or several)."""


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


def search_record(hit: SearchHit, base_path: str = "",
                  stocks: Sequence[str] = ()) -> dict[str, Any]:
    """One result as JSON: what a list of results shows, where the page is, and
    ``stocks``, the codes of the securities the article is tagged with."""
    ref = hit.ref
    when = datetime.fromtimestamp(ref.published_ts, timezone.utc).astimezone(BEIJING)
    return {
        "uid": ref.uid, "title": ref.title, "outlet": ref.outlet,
        "outlet_slug": ref.outlet_slug, "published_at": when.isoformat(),
        "url": url_of(article_path(ref.outlet_slug, ref.published_ts, ref.file_id), base_path),
        "snippet": hit.snippet, "score": round(hit.score, 4), "stocks": list(stocks),
    }


def search_records(archive: Archive, hits: Sequence[SearchHit],
                   base_path: str = "") -> list[dict[str, Any]]:
    """The results as JSON, each with its securities (read in one query)."""
    codes = archive.article_codes([hit.ref.id for hit in hits]) if hits else {}
    return [search_record(hit, base_path, codes.get(hit.ref.id, ())) for hit in hits]


def resolve_stocks(archive: Archive, values: Sequence[str]) -> list[str]:
    """The canonical codes of ``values``, in order, without repeats.

    A value is a code in any spelling :func:`~caixun.securities.from_native`
    takes (``600519``, ``sh600519``, ``1.600519``, ``600519.SH``, ``00700``),
    taken as written even if no article is tagged with it; else a name the
    archive knows (the current name first, then every spelling it learned,
    as the tagger compares them: ``万科`` for ``万科Ａ``), or a US ticker it
    knows (``AAPL``). :class:`UnknownStock` says which value is none of these,
    or names several securities.
    """
    codes: list[str] = []
    rows: list[SecurityRow] | None = None
    for value in values:
        code = from_native(value)
        if code is None:
            if rows is None:
                rows = archive.securities(counts=False)
            code = _stock_by_name(value, rows)
        if code not in codes:
            codes.append(code)
    return codes


def _stock_by_name(value: str, rows: Sequence[SecurityRow]) -> str:
    key = normalize_name(value)
    if not key:
        raise UnknownStock("a stock is blank: give a code such as 600519 or a name")
    ticker = canonical_code(key, "US")
    if ticker is not None and any(row.code == ticker for row in rows):
        return ticker
    found = [row.code for row in rows if normalize_name(row.name) == key]
    if not found:
        found = [row.code for row in rows
                 if any(key in name_forms(name) for name in row.names)]
    if len(found) == 1:
        return found[0]
    if found:
        raise UnknownStock(f"{value!r} names {len(found)} securities ({', '.join(found)}): "
                           "give the code of the one you mean")
    raise UnknownStock(f"no security is called {value!r}: give a code such as 600519 or "
                       "00700.HK, or the name of a security the archive knows")


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


def _query(request: Request, stocks: Sequence[str]) -> str:
    query = request.query_params.get("q", "")
    if not query.strip() and not stocks:
        raise BadParameter("q is required: what to search for (or stock: a security)")
    if len(query) > MAX_QUERY_CHARS:
        raise BadParameter(f"q is longer than {MAX_QUERY_CHARS} characters")
    return query


def _stocks(request: Request) -> list[str]:
    values = [v for v in request.query_params.getlist("stock") if v.strip()]
    if len(values) > MAX_STOCKS:
        raise BadParameter(f"stock is given {len(values)} times; at most {MAX_STOCKS}")
    for value in values:
        if len(value) > MAX_STOCK_CHARS:
            raise BadParameter(f"stock is longer than {MAX_STOCK_CHARS} characters")
    return values


def _error(message: str, status: int, retry_after: int | None = None) -> JSONResponse:
    from starlette.responses import JSONResponse

    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _opener(location: str | Path, size: int) -> Callable[[], ContextManager[Archive]]:
    """Opens the archive read-only for one search: an SQLite file anew each time (cheap);
    a PostgreSQL archive over a connection of a pool, made on the first search."""
    from caixun.archive import is_server_url

    if not is_server_url(location):
        return lambda: open_archive(location, read_only=True)
    from caixun.archive.postgres import PostgresArchive, connection_pool, describe

    pools: list[Any] = []

    @contextmanager
    def borrowed() -> Iterator[Archive]:
        if not pools:
            pools.append(connection_pool(str(location), size))
        from psycopg_pool import PoolTimeout

        try:
            conn = pools[0].getconn()
        except PoolTimeout as exc:  # no connection within the pool's timeout: a dead server
            raise ArchiveError(f"{describe(str(location))}: {exc}") from exc
        try:
            with PostgresArchive(str(location), read_only=True, connection=conn) as archive:
                yield archive
        finally:
            pools[0].putconn(conn)

    return borrowed


def search_routes(archive_path: str | Path, base_path: str = "", *, running: int = MAX_RUNNING,
                  waiting: int = MAX_WAITING) -> list[Route]:
    """The API routes, reading the archive at ``archive_path`` (read-only, a connection per request).

    ``running`` and ``waiting`` bound the searches in flight (see :class:`SearchPool`).
    """
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    pool = SearchPool(running, waiting)
    opened = _opener(archive_path, running)

    def run(query: str, stocks: list[str], outlet: str | None,
            bounds: tuple[int | None, int | None], page: int
            ) -> tuple[list[str], list[dict[str, Any]]]:
        with opened() as archive:
            try:
                codes = resolve_stocks(archive, stocks)
            except UnknownStock as exc:
                raise BadParameter(f"stock: {exc}") from None
            hits = archive.search(query, outlet=outlet, since_ts=bounds[0], until_ts=bounds[1],
                                  limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, stocks=codes)
            return codes, search_records(archive, hits, base_path)

    async def endpoint(request: Request) -> JSONResponse:
        try:
            stocks = _stocks(request)
            query, page = _query(request, stocks), _page(request)
            bounds = day_bounds(_day(request, "since"), _day(request, "until"))
            outlet = request.query_params.get("outlet") or None
            codes, results = await pool.run(lambda: run(query, stocks, outlet, bounds, page))
        except (BadParameter, QueryError) as exc:
            return _error(str(exc), 400)
        except Busy:
            return _error("too many searches at once; try again in a second", 503,
                          BUSY_RETRY_AFTER)
        except ArchiveError as exc:
            return _error(f"search is unavailable: {exc}", 503, UNAVAILABLE_RETRY_AFTER)
        return JSONResponse({"query": query, "stocks": codes, "page": page,
                             "page_size": PAGE_SIZE, "results": results})

    return [Route("/api/search", endpoint, methods=["GET"])]

"""``GET /api/search``: the archive's search as JSON, for ``caixun serve`` and ``caixun run``.

``q`` (required, at most 200 characters), ``outlet`` (a slug), ``since`` and
``until`` (``YYYY-MM-DD``, Beijing days, both included), ``page`` (1–50). Pages
hold ``PAGE_SIZE`` results. A bad parameter is a 400 with ``{"error": "…"}``
naming it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from caixun.archive import SearchHit, open_archive
from caixun.normalize import BEIJING
from caixun.publish.paths import article_path, url_of
from caixun.segment import MAX_QUERY_CHARS, QueryError

__all__ = ["PAGE_SIZE", "search_record", "search_routes"]

PAGE_SIZE = 20
MAX_PAGE = 50


class BadParameter(ValueError):
    pass


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


def _day(request: Request, name: str) -> date | None:
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadParameter(f"{name} must be a date like 2021-12-08, not {value!r}") from None


def _page(request: Request) -> int:
    value = request.query_params.get("page", "1")
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise BadParameter(f"page must be a whole number from 1 to {MAX_PAGE}, not {value!r}")
    return int(value)


def _bounds(since: date | None, until: date | None) -> tuple[int | None, int | None]:
    def start(day: date) -> int:
        return int(datetime(day.year, day.month, day.day, tzinfo=BEIJING).timestamp())

    return (start(since) if since else None,
            start(until + timedelta(days=1)) if until else None)


def search_routes(archive_path: Path, base_path: str = "") -> list[Route]:
    """The API routes, reading the archive at ``archive_path`` (a connection per request)."""

    def run(query: str, outlet: str | None, bounds: tuple[int | None, int | None],
            page: int) -> list[dict[str, Any]]:
        with open_archive(archive_path) as archive:
            hits = archive.search(query, outlet=outlet, since_ts=bounds[0], until_ts=bounds[1],
                                  limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        return [search_record(hit, base_path) for hit in hits]

    async def endpoint(request: Request) -> JSONResponse:
        query = request.query_params.get("q", "")
        try:
            if not query.strip():
                raise BadParameter("q is required: what to search for")
            if len(query) > MAX_QUERY_CHARS:
                raise BadParameter(f"q is longer than {MAX_QUERY_CHARS} characters")
            page = _page(request)
            bounds = _bounds(_day(request, "since"), _day(request, "until"))
            outlet = request.query_params.get("outlet") or None
            results = await run_in_threadpool(run, query, outlet, bounds, page)
        except (BadParameter, QueryError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"query": query, "page": page, "page_size": PAGE_SIZE,
                             "results": results})

    return [Route("/api/search", endpoint, methods=["GET"])]

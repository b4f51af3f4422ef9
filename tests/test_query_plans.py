"""Look-ups by position in time must seek the index, not scan it: their SQLite plans.

On a test archive a scan costs nothing; on a real one it grows with the
archive (the neighbours of an outlet's newest article took 1 ms at 17,000
articles of one outlet, every incremental build, for every new article, and
the re-clustering cursor read the whole time index once per batch). So what
is checked is the plan SQLite chooses for the statements these calls run,
captured as they run.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import pytest

from caixun.archive import SqliteArchive
from caixun.model import Article

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)


def _article(n: int, slug: str) -> Article:
    # Pairs of articles share a time: the (published_ts, id) order must break ties.
    return Article(uid=f"t:{slug}:{n}", outlet=slug, outlet_slug=slug, title=f"{slug} 第{n}条消息",
                   published_at=T0 + timedelta(minutes=10 * (n // 2)), file_id=f"{slug}{n}",
                   body_text=f"{slug} 报道的第{n}条正文，内容各不相同：{n * 7919}。")


@pytest.fixture
def archive(tmp_path: Path) -> SqliteArchive:
    archive = SqliteArchive(tmp_path / "caixun.db")
    archive.store_many([_article(n, slug) for slug in ("alpha", "beta") for n in range(40)])
    return archive


def _selects(archive: SqliteArchive, call: Callable[[], object]) -> list[str]:
    """The SELECT statements ``call`` runs, with their parameters in place."""
    seen: list[str] = []
    archive._db.set_trace_callback(seen.append)
    try:
        call()
    finally:
        archive._db.set_trace_callback(None)
    return [s for s in seen if s.lstrip().upper().startswith("SELECT")]


_LITERAL = re.compile(r"'(?:[^']|'')*'|(?<![\w.])-?\d+(?![\w.])")


def _plan(archive: SqliteArchive, sql: str) -> str:
    """SQLite's plan for a statement as traced (its values in place), its values
    bound again as parameters: with literals, SQLite plans for those values (and
    finds a range in "ts < 5 OR (ts = 5 AND id < 3)" that it cannot with "?")."""
    values: list[object] = []

    def parameter(match: re.Match[str]) -> str:
        text = match.group()
        values.append(text[1:-1].replace("''", "'") if text.startswith("'") else int(text))
        return "?"

    bound = _LITERAL.sub(parameter, sql)
    return " | ".join(row[3] for row in archive._db.execute(f"EXPLAIN QUERY PLAN {bound}",
                                                            values))


def _refs(archive: SqliteArchive, slug: str) -> list[tuple[int, int]]:
    return [(r.published_ts, r.id) for r in archive.outlet_refs(slug)]


def test_an_outlets_neighbours_and_position_seek_the_time_index(
        archive: SqliteArchive) -> None:
    refs = _refs(archive, "alpha")
    for at in (0, 1, len(refs) // 2, len(refs) - 2, len(refs) - 1):
        ts, article_id = refs[at]
        statements = _selects(archive, lambda: (
            archive.neighbors("alpha", ts, article_id),
            archive.outlet_position("alpha", ts, article_id)))
        assert len(statements) == 3
        for sql in statements:
            plan = _plan(archive, sql)
            assert "articles_outlet_published (outlet_slug=? AND published_ts" in plan, plan
        # And they say what they said before: the articles on either side, by
        # (time, id), ties included, and how many come first.
        before, after = archive.neighbors("alpha", ts, article_id)
        assert (before.published_ts, before.id) == refs[at - 1] if at else before is None
        assert ((after.published_ts, after.id) == refs[at + 1] if at + 1 < len(refs)
                else after is None)
        assert archive.outlet_position("alpha", ts, article_id) == at


def test_the_reclustering_cursor_seeks_the_time_index(archive: SqliteArchive) -> None:
    statements = _selects(archive, archive.recluster)
    cursor = [s for s in statements if "ORDER BY published_ts, id LIMIT" in s]
    assert cursor, statements
    for sql in cursor:
        plan = _plan(archive, sql)
        assert "SEARCH" in plan and "articles_published (published_ts>?)" in plan, plan
    assert archive.count() == 80

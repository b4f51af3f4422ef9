"""Look-ups by position in time must seek the index, not scan it: their SQLite plans.

On a test archive a scan costs nothing; on a real one it grows with the
archive (the neighbours of an outlet's newest article took 1 ms at 17,000
articles of one outlet, every incremental build, for every new article, and
the re-clustering cursor read the whole time index once per batch). So what
is checked is the plan SQLite chooses for the statements these calls run,
captured as they run, with the parameters they were run with (with the values
written in, SQLite plans for those values: it finds a range in
"ts < 5 OR (ts = 5 AND id < 3)" that it cannot with "?").
"""

from __future__ import annotations

import sqlite3
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


class RecordingConnection(sqlite3.Connection):
    """A connection that notes each statement it executes, and its parameters."""

    statements: list[tuple[str, tuple[object, ...]]] | None = None

    def execute(self, sql: str, parameters: object = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        if self.statements is not None:
            self.statements.append((sql, tuple(parameters)))  # type: ignore[arg-type]
        return super().execute(sql, parameters)  # type: ignore[arg-type]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Archives opened in the test run on a RecordingConnection."""
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *args, **kwargs: connect(
        *args, **kwargs, factory=RecordingConnection))


@pytest.fixture
def archive(tmp_path: Path, recorded: None) -> SqliteArchive:
    archive = SqliteArchive(tmp_path / "caixun.db")
    archive.store_many([_article(n, slug) for slug in ("alpha", "beta") for n in range(40)])
    return archive


def _selects(archive: SqliteArchive, call: Callable[[], object]
             ) -> list[tuple[str, tuple[object, ...]]]:
    """The SELECT statements ``call`` runs, and their parameters."""
    db = archive._db
    assert isinstance(db, RecordingConnection)
    db.statements = []
    try:
        call()
        return [(sql, params) for sql, params in db.statements
                if sql.lstrip().upper().startswith("SELECT")]
    finally:
        db.statements = None


def _plan(archive: SqliteArchive, statement: tuple[str, tuple[object, ...]]) -> str:
    sql, params = statement
    return " | ".join(row[3] for row in archive._db.execute(f"EXPLAIN QUERY PLAN {sql}",
                                                            params))


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
    cursor = [s for s in statements if "ORDER BY published_ts, id LIMIT" in s[0]]
    assert cursor, statements
    for sql in cursor:
        plan = _plan(archive, sql)
        assert "SEARCH" in plan and "articles_published (published_ts>?)" in plan, plan
    assert archive.count() == 80


def test_beijing_day_counts_read_the_day_index_and_count_every_day(
        tmp_path: Path, recorded: None) -> None:
    archive = SqliteArchive(tmp_path / "days.db")
    # Either side of Beijing midnight (16:00 UTC), and of UTC midnight.
    times = [datetime(2026, 3, d, h, m, s, tzinfo=timezone.utc)
             for d in (1, 2, 3) for h, m, s in ((15, 59, 59), (16, 0, 0), (0, 0, 0), (23, 59, 59))]
    archive.store_many([Article(uid=f"t:day:{n}", outlet="甲", outlet_slug="jia",
                                title=f"第{n}条", published_at=when, file_id=f"d{n}",
                                body_text=f"正文{n * 7919}") for n, when in enumerate(times)])
    expected: dict[str, int] = {}
    for when in times:
        day = (when + timedelta(hours=8)).date().isoformat()
        expected[day] = expected.get(day, 0) + 1
    beijing = archive.day_counts(8 * 3600)
    assert beijing == sorted(expected.items(), reverse=True)
    assert [s for s in _selects(archive, lambda: archive.day_counts(8 * 3600))
            if "articles_day" in _plan(archive, s)]
    # Any other offset: per article, as before.
    utc: dict[str, int] = {}
    for when in times:
        utc[when.date().isoformat()] = utc.get(when.date().isoformat(), 0) + 1
    assert archive.day_counts(0) == sorted(utc.items(), reverse=True)


def test_the_home_pages_outlet_blocks_read_no_article_but_theirs(archive: SqliteArchive) -> None:
    archive.store_many([_article(n, "gamma") for n in range(3)])
    with archive.transaction():  # an outlet whose articles are gone: no block
        archive._db.execute("INSERT INTO outlets (slug, name) VALUES ('empty', '空')")
    blocks = archive.newest_per_outlet(5)
    for statement in _selects(archive, lambda: archive.newest_per_outlet(5)):
        plan = _plan(archive, statement)
        assert "SCAN articles" not in plan, (statement, plan)
    # Each outlet's 5 newest, newest first; the outlets by their newest, newest first.
    expected = sorted(((slug, sorted(_refs(archive, slug), reverse=True)[:5])
                       for slug in ("alpha", "beta", "gamma")), key=lambda b: b[1][0],
                      reverse=True)
    assert [(slug, [(r.published_ts, r.id) for r in refs]) for slug, refs in blocks] == expected


def test_the_outlets_by_their_newest_article_read_the_outlet_index_alone(
        archive: SqliteArchive) -> None:
    archive.store_many([_article(n, "gamma") for n in range(3)])
    with archive.transaction():
        archive._db.execute("INSERT INTO outlets (slug, name) VALUES ('empty', '空')")
    statements = _selects(archive, archive.outlets_by_newest)
    assert len(statements) == 1
    plan = _plan(archive, statements[0])
    assert "SCAN articles" not in plan and "SCAN a " not in plan, plan
    assert "COVERING INDEX articles_outlet_published" in plan, plan
    newest = {slug: max(_refs(archive, slug)) for slug in ("alpha", "beta", "gamma")}
    assert archive.outlets_by_newest() == sorted(newest, key=newest.__getitem__, reverse=True)


def test_a_securitys_position_newest_and_pages_read_one_range_of_its_tags(
        archive: SqliteArchive) -> None:
    """An incremental build asks these for each security an article touched: on a
    security with thousands of articles, reading and sorting them all took ms each."""
    from caixun.securities import SecurityName

    archive.learn_securities([SecurityName("600519.SH", "贵州茅台", "test")])
    archive.store_many([_article(n, "maotai").evolve(title=f"贵州茅台第{n}条")
                        for n in range(40)])
    refs = [(r.published_ts, r.id) for r in archive.stock_refs("600519.SH")]
    assert len(refs) == 40
    ts, article_id = refs[25]
    statements = _selects(archive, lambda: (
        archive.stock_position("600519.SH", ts, article_id),
        archive.stock_newest("600519.SH", 5),
        archive.stock_refs("600519.SH", 30, 3)))
    assert len(statements) == 3
    for statement in statements:
        plan = _plan(archive, statement)
        assert "COVERING INDEX article_securities_time (code=?" in plan, plan
        assert "SCAN" not in plan, plan
    assert "(published_ts,article_id)<" in _plan(archive, statements[0])
    assert archive.stock_position("600519.SH", ts, article_id) == 25
    assert [(r.published_ts, r.id) for r in archive.stock_newest("600519.SH", 5)] == \
        refs[::-1][:5]
    assert [(r.published_ts, r.id) for r in archive.stock_refs("600519.SH", 30, 3)] == \
        refs[30:33]

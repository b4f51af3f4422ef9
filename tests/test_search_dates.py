"""Filtered search (dates, outlet) finds exactly what the plain scan found, whatever the id order.

A filtered search bounds its read of the index with the lowest and highest id
of the time range (from the day index, ``articles_day``) and may check its
matches against a set of the filtered ids instead of reading each one's
article (``SqliteArchive._narrow``). These tests compare it, on real archive
files, with the code it replaced (kept below as :func:`reference_search`) and
with a brute-force filter of every match, both ways of deciding and with and
without the day index (an archive of an earlier caixun opened read-only).
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caixun.archive import SqliteArchive, open_archive
from caixun.archive import base as archive_base
from caixun.archive import sqlite as archive_sqlite
from caixun.model import Article
from caixun.normalize import BEIJING
from caixun.segment import parse_query, snippet

START = datetime(2021, 12, 1, tzinfo=BEIJING)
START_TS = int(START.timestamp())
DAYS = 10
WORDS = ["央行", "降准", "汽车", "芯片", "新能源", "银行", "利率", "股市", "5G", "MLF"]
OUTLETS = [("甲报", "jiabao"), ("乙报", "yibao"), ("丙报", "bingbao")]
NOW = (START + timedelta(days=DAYS + 3)).timestamp()

Hit = tuple[str, float, str]


def reference_search(archive: SqliteArchive, query: str, outlet: str | None,
                     since_ts: int | None, until_ts: int | None, limit: int,
                     offset: int) -> list[Hit]:
    """``SqliteArchive._search`` as it was before the filtered ids were put in a set."""
    db, m = archive._db, archive_base
    parsed = parse_query(query)
    where, params = ["search MATCH ?"], list[Any]([parsed.match])
    if outlet:
        where.append("a.outlet_slug = ?")
        params.append(outlet)
    else:
        where.append("a.duplicate_of IS NULL")
    if since_ts is not None or until_ts is not None:
        where.append("a.published_ts >= ? AND a.published_ts < ?")
        span = (since_ts if since_ts is not None else -2**62,
                until_ts if until_ts is not None else 2**62)
        params += span
        lowest, highest = db.execute("SELECT min(id), max(id) FROM articles WHERE "
                                     "published_ts >= ? AND published_ts < ?", span).fetchone()
        if lowest is None:
            return []
        where.append("search.rowid BETWEEN ? AND ?")
        params += (lowest, highest)
    window = db.execute(
        "SELECT search.rowid, a.published_ts FROM search JOIN articles a ON a.id = search.rowid "
        "WHERE " + " AND ".join(where) + " ORDER BY search.rowid DESC LIMIT ?",
        (*params, max(m.RANK_WINDOW, offset + limit))).fetchall()
    if not window:
        return []
    floor = window[-1][0]
    if len(window) >= m.RANK_WINDOW:
        relevance = {row[0]: -m._TITLE_HIT for row in db.execute(
            "SELECT rowid FROM search WHERE search MATCH ? AND rowid >= ?",
            (parsed.title_match, floor))}
    else:
        relevance = dict(db.execute(
            f"SELECT rowid, bm25(search, {', '.join('?' * len(m._FIELD_WEIGHTS))}) "
            "FROM search WHERE search MATCH ? AND rowid >= ?",
            (*m._FIELD_WEIGHTS, parsed.match, floor)))

    def bonus(ts: int) -> float:
        return m._RECENCY_WEIGHT / (1.0 + max(0.0, NOW - ts) / m._RECENCY_SCALE)

    ranked = sorted(window, key=lambda row: (relevance.get(row[0], 0.0) - bonus(row[1]),
                                             -row[0]))
    hits = []
    for article_id, ts in ranked[offset:offset + limit]:
        uid, title, digest, body = db.execute(
            "SELECT uid, title, digest, body_text FROM articles WHERE id = ?",
            (article_id,)).fetchone()
        hits.append((uid, -relevance.get(article_id, 0.0) + bonus(ts),
                     snippet(body or digest or title, parsed.highlights)))
    return hits


def brute_force(archive: SqliteArchive, query: str, outlet: str | None,
                since_ts: int | None, until_ts: int | None) -> set[str]:
    """Every article the filters keep among all the query's matches, filtered in Python."""
    matches = {row[0] for row in archive._db.execute(
        "SELECT rowid FROM search WHERE search MATCH ?", (parse_query(query).match,))}
    found = set()
    for article_id, uid, slug, ts, duplicate_of in archive._db.execute(
            "SELECT id, uid, outlet_slug, published_ts, duplicate_of FROM articles"):
        if (article_id in matches and (outlet == slug if outlet else duplicate_of is None)
                and (since_ts is None or ts >= since_ts) and (until_ts is None or ts < until_ts)):
            found.add(uid)
    return found


def searched(archive: SqliteArchive, query: str, outlet: str | None, since_ts: int | None,
             until_ts: int | None, limit: int, offset: int = 0) -> list[Hit]:
    return [(h.ref.uid, h.score, h.snippet) for h in archive.search(
        query, outlet=outlet, since_ts=since_ts, until_ts=until_ts, limit=limit,
        offset=offset, now=NOW)]


def article(n: int, words: list[str], outlet: int, ts: int) -> Article:
    name, slug = OUTLETS[outlet]
    body = "，".join(words) + "。"
    return Article(uid=f"d:{n}", outlet=name, outlet_slug=slug, title="".join(words[:2]),
                   published_at=datetime.fromtimestamp(ts, BEIJING), file_id=f"D{n}",
                   body_html=f"<p>{body}</p>", body_text=body)


@st.composite
def corpora(draw: st.DrawFn) -> list[Article]:
    """Articles with random times, stored in an order unrelated to them; some exact copies."""
    count = draw(st.integers(4, 30))
    made: list[Article] = []
    for n in range(count):
        ts = START_TS + draw(st.integers(0, DAYS * 86400 - 1)
                             | st.tuples(st.integers(1, DAYS - 1), st.integers(-1, 1))
                             .map(lambda t: t[0] * 86400 + t[1]))  # at a midnight
        if made and draw(st.integers(0, 5)) == 0:  # an exact copy in another outlet
            original = draw(st.sampled_from(made))
            outlet = (next(i for i, o in enumerate(OUTLETS) if o[1] == original.outlet_slug)
                      + 1) % len(OUTLETS)
            made.append(article(n, original.body_text.rstrip("。").split("，"), outlet, ts))
            continue
        words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=5))
        made.append(article(n, words, draw(st.integers(0, len(OUTLETS) - 1)), ts))
    return made


moments = st.integers(START_TS - 86400, START_TS + (DAYS + 1) * 86400)
spans = st.tuples(st.none() | moments, st.none() | st.integers(1, (DAYS + 2) * 86400)).map(
    lambda s: (s[0], None if s[1] is None else (s[0] or START_TS) + s[1]))
queries = st.sampled_from(WORDS) | st.sampled_from(["央行 降准", '"新能源汽车"', "银行 -利率",
                                                    "5G 芯片", "汽车 MLF"])
searches = st.tuples(queries, st.none() | st.sampled_from([o[1] for o in OUTLETS]), spans,
                     st.integers(1, 12), st.integers(0, 6)).map(
    lambda s: (s[0], s[1], *s[2], s[3], s[4]))


@contextmanager
def stored(articles: list[Article], seed: int = 0) -> Iterator[SqliteArchive]:
    """A fresh archive file holding ``articles``, stored in a shuffled order."""
    order = list(articles)
    random.Random(seed).shuffle(order)
    with tempfile.TemporaryDirectory() as work, open_archive(Path(work) / "a.db") as archive:
        archive.store_many(order)
        yield archive


# (_SET_GAIN, _SAMPLE): the plain read always; as shipped, but deciding on the
# first two matches (the archives here hold fewer than _SAMPLE); the set
# whenever the filters keep any article.
PATHS = [(0, archive_sqlite._SAMPLE), (archive_sqlite._SET_GAIN, 2), (10**9, 1)]


def use_paths(monkeypatch: pytest.MonkeyPatch, gain: int, sample: int) -> None:
    monkeypatch.setattr(archive_sqlite, "_SET_GAIN", gain)
    monkeypatch.setattr(archive_sqlite, "_SAMPLE", sample)


@pytest.mark.parametrize("gain, sample", PATHS)
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                   HealthCheck.too_slow])
@given(corpus=corpora(), runs=st.lists(searches, min_size=1, max_size=6),
       window=st.integers(2, 8), seed=st.integers(0, 2**16), day_index=st.booleans())
def test_filtered_search_finds_what_the_plain_scan_found(
        monkeypatch: pytest.MonkeyPatch, gain: int, sample: int, corpus: list[Article],
        runs: list[tuple[str, str | None, int | None, int | None, int, int]],
        window: int, seed: int, day_index: bool) -> None:
    with stored(corpus, seed) as archive:
        archive._day_index = day_index  # without it, as an archive opened read-only before
        for query, outlet, since_ts, until_ts, limit, offset in runs:
            use_paths(monkeypatch, gain, sample)
            expected = brute_force(archive, query, outlet, since_ts, until_ts)
            every = searched(archive, query, outlet, since_ts, until_ts, limit=10_000)
            assert {uid for uid, _, _ in every} == expected
            monkeypatch.setattr(archive_base, "RANK_WINDOW", window)  # broad and narrow
            assert searched(archive, query, outlet, since_ts, until_ts, limit, offset) == \
                reference_search(archive, query, outlet, since_ts, until_ts, limit, offset)
            monkeypatch.undo()


def moments_of(articles: list[Article]) -> st.SearchStrategy[int]:
    """Times at and next to the articles' and to Beijing midnights, where bounds go wrong."""
    times = [int(a.published_at.timestamp()) for a in articles]
    midnights = [START_TS + n * 86400 for n in range(-1, DAYS + 2)]
    return st.sampled_from(times + midnights).flatmap(
        lambda t: st.sampled_from([t - 1, t, t + 1])) | moments


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(corpus=corpora(), data=st.data(), seed=st.integers(0, 99))
def test_id_bounds_are_the_lowest_and_highest_id_published_in_the_span(
        corpus: list[Article], data: st.DataObject, seed: int) -> None:
    edges = st.none() | moments_of(corpus)
    with stored(corpus, seed) as archive:
        for since_ts, until_ts in data.draw(st.lists(st.tuples(edges, edges), max_size=20)):
            span = (-2**62 if since_ts is None else since_ts, 2**62 if until_ts is None else until_ts)
            low, high = archive._db.execute("SELECT min(id), max(id) FROM articles WHERE "
                                            "published_ts >= ? AND published_ts < ?", span).fetchone()
            expected = None if low is None else (low, high)
            assert archive._id_bounds(span) == expected
            archive._day_index = False
            assert archive._id_bounds(span) == expected
            archive._day_index = True


def day(n: int) -> tuple[int, int]:
    """Day ``n`` after START, Beijing time, as [since, until) seconds."""
    return START_TS + n * 86400, START_TS + (n + 1) * 86400


@pytest.mark.parametrize("gain, sample", PATHS)
def test_an_article_is_found_in_the_day_it_is_dated_now(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gain: int, sample: int) -> None:
    use_paths(monkeypatch, gain, sample)
    with open_archive(tmp_path / "a.db") as archive:
        # Ids against time: the later an article was stored, the older it is.
        archive.store_many([article(n, ["央行", f"消息{n}"], n % 3, day(9 - n)[0] + 3600)
                            for n in range(10)])
        moved = article(4, ["央行", "消息4"], 4 % 3, day(1)[0] + 7200)
        assert searched(archive, "央行", None, *day(5), limit=20)[0][0] == "d:4"
        archive.store(moved)  # re-dated from day 5 to day 1
        assert searched(archive, "央行", None, *day(5), limit=20) == []
        assert [h[0] for h in searched(archive, "央行", None, *day(1), limit=20)] == ["d:4", "d:8"]
        assert [h[0] for h in searched(archive, "消息4", "yibao", *day(1), limit=20)] == ["d:4"]
        archive.delete("d:4")
        assert [h[0] for h in searched(archive, "央行", None, *day(1), limit=20)] == ["d:8"]
        assert searched(archive, "消息4", None, None, None, limit=20) == []


def test_an_archive_without_the_day_index_gets_it_on_a_writable_open(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with open_archive(path) as archive:
        archive.store_many([article(n, ["汽车", "芯片", f"第{n}号"], n % 3, day(9 - n % DAYS)[0] + n)
                            for n in range(40)])
    with sqlite3.connect(path) as db:  # as every caixun before the day index left an archive
        db.execute("DROP INDEX articles_day")
    spans = [day(3), (day(2)[0] + 3600, day(6)[1] - 60), (None, day(4)[1]), (day(8)[0], None)]

    def found(archive: SqliteArchive) -> list[list[Hit]]:
        return [searched(archive, "汽车", outlet, since_ts, until_ts, limit=30)
                for since_ts, until_ts in spans for outlet in (None, "jiabao")]

    with open_archive(path, read_only=True) as archive:  # read-only: searched without it
        assert not archive._day_index
        before = found(archive)
    assert all(before) and len({len(hits) for hits in before}) > 1
    with open_archive(path) as archive:
        assert archive._day_index
        assert found(archive) == before
    with open_archive(path, read_only=True) as archive:
        assert archive._day_index
        assert found(archive) == before

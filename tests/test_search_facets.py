"""Facet tokens (outlet, year, month, day in the search index) give the same results as without.

A search filtered by outlet or dates adds the facets of its filters to the
FTS5 query (``caixun.archive.facets``). These tests check the token cover of
a range of days exactly, and, on real archive files whose articles span
months and a new year, that a filtered search finds what a brute-force
filter of every match finds, and ranks it as the search without facets does
(the id-bound and id-set path, checked against its own reference in
test_search_dates.py). Updates that move an article to another day or outlet,
deletes, and an archive upgraded from before the facets are covered too.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caixun.archive import SqliteArchive, open_archive
from caixun.archive.facets import article_facets, day_tokens, filter_match
from caixun.archive.migrations import MIGRATIONS
from caixun.model import Article
from caixun.normalize import BEIJING
from caixun.segment import parse_query
from test_search_dates import stored

START = datetime(2021, 11, 20, tzinfo=BEIJING)
START_TS = int(START.timestamp())
DAYS = 80  # into February 2022: whole months, a new year
WORDS = ["央行", "降准", "汽车", "芯片", "新能源", "银行", "利率", "5G"]
OUTLETS = [("甲报", "jiabao"), ("乙报", "yi-bao"), ("丙报", "bing_bao")]
NOW = (START + timedelta(days=DAYS + 3)).timestamp()


def covered(tokens: list[str]) -> list[date]:
    """The days the tokens stand for, each as often as a token covers it."""
    days: list[date] = []
    for token in tokens:
        kind, digits = token[0], token[1:]
        if kind == "d":
            days.append(date(int(digits[:4]), int(digits[4:6]), int(digits[6:])))
            continue
        first = date(int(digits[:4]), int(digits[4:6]) if kind == "m" else 1, 1)
        end = (date(first.year + 1, 1, 1) if kind == "y" else
               date(first.year + first.month // 12, first.month % 12 + 1, 1))
        days += [first + timedelta(n) for n in range((end - first).days)]
    return days


@given(first=st.dates(date(1990, 1, 1), date(2100, 1, 1)), length=st.integers(0, 3000))
def test_day_tokens_cover_the_range_exactly_once_with_few_tokens(first: date,
                                                                  length: int) -> None:
    last = first + timedelta(days=length)
    tokens = day_tokens(first, last)
    days = covered(tokens)
    assert sorted(days) == [first + timedelta(n) for n in range(length + 1)]
    years = last.year - first.year + 1
    assert len(tokens) <= 2 * 30 + 2 * 11 + years


def test_an_article_s_facets_are_its_beijing_day_and_outlet() -> None:
    # 23:30 UTC on 31 December is already 1 January in Beijing.
    ts = int(datetime(2021, 12, 31, 16, 30, tzinfo=BEIJING).astimezone(BEIJING).timestamp())
    late = int(datetime(2021, 12, 31, 23, 30, tzinfo=BEIJING).timestamp())
    assert article_facets("x", ts).split()[:3] == ["y2021", "m202112", "d20211231"]
    assert article_facets("x", late + 1800).split()[:3] == ["y2022", "m202201", "d20220101"]
    assert article_facets("a-b", ts).split()[3] != article_facets("ab", ts).split()[3]


def test_a_span_outside_the_archive_matches_nothing_and_all_of_it_adds_nothing() -> None:
    published = (START_TS, START_TS + DAYS * 86400)
    assert filter_match(None, (0, START_TS), published) == ""
    assert filter_match(None, (-2**62, 2**62), published) is None
    assert filter_match(None, (published[0], published[1] + 1), published) is None
    assert filter_match(None, (published[0] + 1, 2**62), published) is not None


def article(n: int, words: list[str], outlet: int, ts: int) -> Article:
    name, slug = OUTLETS[outlet]
    body = "，".join(words) + f"，第{n}号。"
    return Article(uid=f"f:{n}", outlet=name, outlet_slug=slug, title="".join(words[:2]),
                   published_at=datetime.fromtimestamp(ts, BEIJING), file_id=f"F{n}",
                   body_html=f"<p>{body}</p>", body_text=body)


MIDNIGHTS = [START_TS + n * 86400 for n in range(-1, DAYS + 2)]
moments = (st.integers(START_TS - 86400, START_TS + (DAYS + 1) * 86400)
           | st.sampled_from(MIDNIGHTS).flatmap(lambda t: st.sampled_from([t - 1, t, t + 1])))


@st.composite
def corpora(draw: st.DrawFn) -> list[Article]:
    count = draw(st.integers(3, 40))
    return [article(n, draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4)),
                    draw(st.integers(0, len(OUTLETS) - 1)),
                    START_TS + draw(st.integers(0, DAYS * 86400 - 1)))
            for n in range(count)]


spans = st.tuples(st.none() | moments, st.none() | moments)
searches = st.tuples(st.sampled_from(WORDS + ["央行 降准", "银行 -利率", "汽车 OR 芯片"]),
                     st.none() | st.sampled_from([o[1] for o in OUTLETS]), spans)


def brute_force(archive: SqliteArchive, query: str, outlet: str | None,
                since_ts: int | None, until_ts: int | None) -> set[str]:
    matches = {row[0] for row in archive._db.execute(
        "SELECT rowid FROM search WHERE search MATCH ?", (parse_query(query).match,))}
    return {uid for article_id, uid, slug, ts, duplicate_of in archive._db.execute(
        "SELECT id, uid, outlet_slug, published_ts, duplicate_of FROM articles")
        if article_id in matches and (outlet == slug if outlet else duplicate_of is None)
        and (since_ts is None or ts >= since_ts) and (until_ts is None or ts < until_ts)}


def results(archive: SqliteArchive, query: str, outlet: str | None, since_ts: int | None,
            until_ts: int | None, limit: int = 10_000) -> list[tuple[str, float]]:
    return [(hit.ref.uid, hit.score) for hit in archive.search(
        query, outlet=outlet, since_ts=since_ts, until_ts=until_ts, limit=limit, now=NOW)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpus=corpora(), runs=st.lists(searches, min_size=1, max_size=6),
       seed=st.integers(0, 99))
def test_filtered_search_with_facets_equals_brute_force_and_the_search_without(
        corpus: list[Article], runs: list[tuple[str, str | None, tuple[int | None, int | None]]],
        seed: int) -> None:
    with stored(corpus, seed) as archive:
        assert archive._has_facets
        for query, outlet, (since_ts, until_ts) in runs:
            with_facets = results(archive, query, outlet, since_ts, until_ts)
            assert {uid for uid, _ in with_facets} == brute_force(archive, query, outlet,
                                                                  since_ts, until_ts)
            archive._has_facets = False  # the read bounded by ids, as before the facets
            try:
                assert with_facets == results(archive, query, outlet, since_ts, until_ts)
            finally:
                archive._has_facets = True


def day_span(day: datetime) -> tuple[int, int]:
    return int(day.timestamp()), int(day.timestamp()) + 86400


def test_an_update_that_moves_an_article_moves_its_facets(tmp_path: Path) -> None:
    first, second = START, START + timedelta(days=40)
    with open_archive(tmp_path / "a.db") as archive:
        archive.store(article(1, ["央行"], 0, int(first.timestamp()) + 3600))
        archive.store(article(2, ["央行"], 1, int(second.timestamp()) + 3600))
        moved = article(1, ["央行"], 2, int(second.timestamp()) + 7200)
        archive.store(moved)
        assert [uid for uid, _ in results(archive, "央行", None, *day_span(first))] == []
        assert {uid for uid, _ in results(archive, "央行", None, *day_span(second))} == \
            {"f:1", "f:2"}
        assert [uid for uid, _ in results(archive, "央行", "jiabao", None, None)] == []
        assert [uid for uid, _ in results(archive, "央行", "bing_bao", None, None)] == ["f:1"]
        archive.delete("f:1")
        assert [uid for uid, _ in results(archive, "央行", "bing_bao", None, None)] == []
        # The index holds exactly what a fresh one would: nothing of the moved row is left.
        live = archive._db.execute("SELECT count(*) FROM search WHERE search MATCH ?",
                                   ("{facets}: (d20211120 OR d20211230 OR y2021)",)).fetchone()
        assert live[0] == 1


def test_an_archive_from_before_the_facets_is_reindexed_with_them(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    corpus = [article(n, [WORDS[n % len(WORDS)], "银行"], n % len(OUTLETS),
                      START_TS + n * 86400 * 2 + n * 977) for n in range(40)]
    before = [m for m in MIGRATIONS if m.version < 14]
    with SqliteArchive(path, migrations=before) as old:
        old.store_many(corpus)
        assert not old._has_facets
        span = (START_TS + 10 * 86400, START_TS + 50 * 86400)
        expected = results(old, "银行", "yi-bao", *span)
    with SqliteArchive(path) as archive:
        assert archive.schema_version == MIGRATIONS[-1].version and archive._has_facets
        now = results(archive, "银行", "yi-bao", *span)
        # bm25 adds the facets column (weight 0) in: equal to rounding.
        assert [uid for uid, _ in now] == [uid for uid, _ in expected]
        assert [score for _, score in now] == pytest.approx([score for _, score in expected])
        assert {uid for uid, _ in expected} == brute_force(archive, "银行", "yi-bao", *span)
        assert len(expected) > 3


@pytest.mark.parametrize("outlet", [None, "jiabao"])
def test_a_facet_never_matches_a_word_query(tmp_path: Path, outlet: str | None) -> None:
    with open_archive(tmp_path / "a.db") as archive:
        archive.store(article(1, ["汽车"], 0, START_TS + 100))
        # A query for a facet's own spelling searches the text columns only.
        for token in article_facets("jiabao", START_TS + 100).split():
            assert results(archive, token, outlet, None, None) == []


def test_a_long_reindex_is_announced_before_it_starts(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.db"
    with SqliteArchive(path, migrations=[m for m in MIGRATIONS if m.version < 14]) as old:
        old.store_many([article(n, ["银行"], 0, START_TS + n * 600) for n in range(5)])
    monkeypatch.setattr("caixun.archive.base.REINDEX_NOTICE_FROM", 5)
    monkeypatch.setattr("caixun.archive.base._REINDEX_PROGRESS_ROWS", 1)
    clock = iter(range(0, 10 ** 6, 40))  # 40 s an article: a progress notice every other one
    monkeypatch.setattr("caixun.archive.base._Progress.clock",
                        staticmethod(lambda: float(next(clock))))
    told: list[str] = []
    with SqliteArchive(path, notice=told.append) as archive:
        assert len(results(archive, "银行", None, None, None)) == 5
    assert "rebuilding the search index of 5 articles" in told[0]
    assert told[1:] == [f"{path}: 2 of 5 articles indexed (40%), about 2 min left",
                        f"{path}: 4 of 5 articles indexed (80%), about 40 s left",
                        f"{path}: 5 articles indexed in 3 min"]
    with SqliteArchive(path, notice=told.append):
        pass  # rebuilt once: nothing more to say
    assert len(told) == 4

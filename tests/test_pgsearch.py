"""caixun.archive.pgsearch: PostgreSQL finds and ranks what FTS5 does, on the real corpus.

Every feed item of ``rss-days`` is stored in a real SQLite archive (its FTS5
``search`` table is the reference) and, through :func:`pgsearch.index_row`,
in a ``search`` table of a real PostgreSQL database. For the benchmark's
queries and a seeded sample of queries drawn from the corpus, both must
match the same articles and give each the same bm25.
"""

from __future__ import annotations

import calendar
import importlib.util
import json
import math
import random
import re
import sqlite3
import sys
import types
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from itertools import combinations
from typing import Any, Iterable, Iterator

import psycopg
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from caixun.archive import open_archive, pgsearch
from caixun.archive.pgsearch import (Phrase, bm25, index_row, phrase_tsquery, phrases,
                                     relaxed_tsquery, tokens, tsquery)
from caixun.model import Article
from caixun.normalize import clean_title
from caixun.segment import IndexedText, QueryError, index_text, parse_query
from caixun.sources.base import Entry, SourceConfig, load_source
from caixun.sources.rss import entry_id
from conftest import REPO, SHARED

RSS_DAYS = SHARED / "corpus" / "rss-days"
FETCHED = datetime(2026, 9, 1, tzinfo=timezone.utc)
WEIGHTS = "6.0, 6.0, 1.0, 1.0, 0.0"  # SqliteArchive's _FIELD_WEIGHTS
TOLERANCE = 1e-9  # relative, between FTS5's bm25 and pgsearch.bm25
RANDOM_QUERIES = 200
SCHEMA = """
    CREATE TABLE search (article_id bigint PRIMARY KEY, terms tsvector NOT NULL,
                         doc_len integer NOT NULL)
"""
INDEX = "CREATE INDEX search_terms ON search USING gin (terms)"


# -- the corpus, in SQLite and in PostgreSQL -----------------------------------------------

@lru_cache(maxsize=1)
def feed_articles() -> tuple[Article, ...]:
    """Every item of every rss-days file, made an article by the rss source.

    The items' fields are read from the JSON as feedparser would give them from the
    feed (``newsserver.rss_xml``): parsing 51 feeds costs 4 s, the fields are the same.
    """
    source = load_source(SourceConfig("news", "rss", options={"url": "https://example.org/f"}))
    articles: list[Article] = []
    for day in sorted(RSS_DAYS.glob("*.json")):
        for item in json.loads(day.read_text("utf-8"))["articles"]:
            outlet = item.get("source")
            outlet = outlet.get("title") if isinstance(outlet, dict) else outlet
            parsed = item.get("published_parsed")
            fields = {"guid": item["link"], "link": item["link"], "title": item.get("title") or "",
                      "published": item.get("published") or "",
                      "published_utc": calendar.timegm(parsed) if parsed else None,
                      "summary": item.get("summary") or "", "content": "",
                      "source": clean_title(outlet) if isinstance(outlet, str) else "",
                      "feed_title": "财经新闻"}
            native_id = entry_id(fields["guid"], fields["link"])
            articles.append(source.to_article(Entry(native_id, fields), None, FETCHED).evolve(
                uid=f"rss:{day.name}:{native_id}"))
    return tuple(articles)


@dataclass
class Stored:
    fts: sqlite3.Connection  # the archive's connection: its FTS5 table is `search`
    rows: list[tuple[int, str, str, str]]  # id, title, digest, body_text
    indexed: dict[int, IndexedText]
    outlets: list[str]  # by number of articles, most first


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    articles = feed_articles()
    assert len(articles) > 4000
    archive = open_archive(tmp_path_factory.mktemp("pgsearch") / "a.db")
    archive.store_many(articles)
    db = archive._db  # type: ignore[attr-defined]
    rows = [tuple(r) for r in db.execute("SELECT id, title, digest, body_text FROM articles")]
    assert len(rows) > 2500
    outlets = [name for name, _ in Counter(a.outlet for a in articles).most_common()]
    yield Stored(db, rows, {r[0]: index_text(r[1], r[2], r[3]) for r in rows}, outlets)
    archive.close()


@pytest.fixture
def pg(pg_url: str, stored: Stored) -> Iterator[psycopg.Connection[Any]]:
    """A PostgreSQL search table holding every stored article, by index_row."""
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute(SCHEMA)
        with db.cursor() as cursor, cursor.copy(
                "COPY search (article_id, terms, doc_len) FROM STDIN") as copy:
            for article_id, indexed in stored.indexed.items():
                copy.write_row((article_id, *index_row(indexed)))
        db.execute(INDEX)
        db.execute("ANALYZE search")
        yield db


def one(db: psycopg.Connection[Any], sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    row = db.execute(sql, params).fetchone()
    assert row is not None
    return row


def table_size(db: psycopg.Connection[Any]) -> tuple[int, int]:
    """FTS5's row count and total size: count(*) and sum(doc_len) of the search table."""
    rows, total = one(db, "SELECT count(*), sum(doc_len) FROM search")
    return int(rows), int(total)


def phrase_hits(db: psycopg.Connection[Any], found: list[Phrase]) -> list[int]:
    """Per phrase, the articles holding it (bm25's document count)."""
    return [one(db, "SELECT count(*) FROM search WHERE terms @@ %s::tsquery",
                (phrase_tsquery(p),))[0] for p in found]


def article_positions(db: psycopg.Connection[Any], article_id: int
                      ) -> dict[str, list[tuple[int, str]]]:
    """Every lexeme of an article with its (position, weight) pairs, as unnest() gives them."""
    return {lexeme: list(zip(places, weights)) for lexeme, places, weights in db.execute(
        "SELECT lexeme, positions, weights FROM search, unnest(terms) WHERE article_id = %s",
        (article_id,))}


def fts5_scores(db: sqlite3.Connection, match: str) -> dict[int, float]:
    return dict(db.execute(f"SELECT rowid, bm25(search, {WEIGHTS}) FROM search "
                           "WHERE search MATCH ?", (match,)))


@dataclass
class PgScores:
    """What PostgreSQL matches and pgsearch.bm25 makes of it, and the data it read."""

    scores: dict[int, float]  # article matched → pgsearch.bm25
    capped: set[int]  # articles read where a lexeme of the query has 256 positions (all kept)
    found: list[Phrase]
    positions: dict[int, dict[str, list[tuple[int, str]]]]
    lengths: dict[int, int]
    hits: list[int]
    rows: int
    total: int

    def left_behind(self, article_id: int, score: float) -> bool:
        """Whether FTS5's ``score`` is the article's bm25 with more phrases counted than
        those of the parts of the expression the article matches.

        FTS5 counts a phrase where its iterator stands on the row. Where a part of
        the expression has no further match (an AND whose other phrase ends, a NOT
        whose left side never matches), FTS5 stops moving the iterators under it:
        such a phrase counts in the one row it was left on, if that row matches
        through another alternative of an OR. pgsearch.bm25, which reads one row,
        counts only the parts that match it.
        """
        positions = self.positions[article_id]
        present = [sum(pgsearch._instances(p, positions)) > 0 for p in self.found]
        counted: set[int] = set()
        pgsearch._count(pgsearch._expression(self.found), present, counted)
        others = [i for i, there in enumerate(present) if there and i not in counted]
        for size in range(1, len(others) + 1):
            for more in combinations(others, size):
                kept = counted | set(more)
                alone = [Phrase(p.lexemes if i in kept else (), p.prefix, p.title, p.text)
                         for i, p in enumerate(self.found)]
                if math.isclose(bm25(alone, positions, self.lengths[article_id], self.hits,
                                     self.rows, self.total), score, rel_tol=TOLERANCE):
                    return True
        return False


def pg_scores(db: psycopg.Connection[Any], match: str, others: Iterable[int] = ()) -> PgScores:
    """pgsearch.bm25 of every article PostgreSQL matches, from PostgreSQL's data; and of
    these and ``others``, the articles where PostgreSQL kept only some of a lexeme's positions."""
    ids = [row[0] for row in db.execute(
        "SELECT article_id FROM search WHERE terms @@ %s::tsquery", (tsquery(match),))]
    found = phrases(match)
    rows, total = table_size(db)
    hits = phrase_hits(db, found)
    exact = sorted({lexeme for p in found for lexeme in p.lexemes})
    prefixes = sorted({p.lexemes[-1] for p in found if p.prefix and p.lexemes})
    positions: dict[int, dict[str, list[tuple[int, str]]]] = defaultdict(dict)
    for article_id, lexeme, places, weights in db.execute(
            "SELECT article_id, lexeme, positions, weights FROM search, unnest(terms) "
            "WHERE article_id = ANY(%s) AND (lexeme = ANY(%s) OR lexeme ^@ ANY(%s::text[]))",
            (sorted({*ids, *others}), exact, prefixes)):
        positions[article_id][lexeme] = list(zip(places, weights))
    lengths = dict(db.execute("SELECT article_id, doc_len FROM search "
                              "WHERE article_id = ANY(%s)", (ids,)).fetchall())
    capped = {i for i, found_in in positions.items()
              if any(len(places) == pgsearch.MAX_POSITIONS for places in found_in.values())}
    return PgScores({i: bm25(found, positions[i], lengths[i], hits, rows, total) for i in ids},
                    capped, found, positions, lengths, hits, rows, total)


DIFFERENCES: list[float] = []  # the relative score differences seen (printed by -s)
CAPPED: list[tuple[str, int]] = []  # (match, article) where PostgreSQL's 256 positions told
LEFT_BEHIND: list[tuple[str, int]] = []  # (match, article): see PgScores.left_behind


def assert_same(stored: Stored, db: psycopg.Connection[Any], match: str) -> int:
    """FTS5 and PostgreSQL match the same articles with the same bm25; how many.

    Except where PostgreSQL keeps 256 positions of a lexeme the article has more
    of (see pgsearch): there the phrase's count, and so the score, may differ
    (the article may even be missed, its phrase occurring only further on); and
    where FTS5 counts a phrase its iterator was left on (PgScores.left_behind).
    """
    expected = fts5_scores(stored.fts, match)
    found = pg_scores(db, match, expected)
    assert set(found.scores) ^ set(expected) <= found.capped, match
    for article_id, score in expected.items():
        if article_id not in found.scores:
            CAPPED.append((match, article_id))
            continue
        difference = abs(found.scores[article_id] - score) / max(abs(score), 1e-300)
        if difference > TOLERANCE and article_id in found.capped:
            CAPPED.append((match, article_id))
            continue
        if difference > TOLERANCE and found.left_behind(article_id, score):
            LEFT_BEHIND.append((match, article_id))
            continue
        DIFFERENCES.append(difference)
        assert difference <= TOLERANCE, (match, article_id, score, found.scores[article_id])
    return len(expected)


# -- the tokenizer ------------------------------------------------------------------------

def fts5_tokens(texts: list[str]) -> list[list[str]]:
    """What FTS5's unicode61 tokenizer makes of each text (a regular table, fts5vocab)."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='unicode61 remove_diacritics 0')")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    db.executemany("INSERT INTO t (rowid, x) VALUES (?, ?)", enumerate(texts, 1))
    found: list[list[str]] = [[] for _ in texts]
    for doc, term in db.execute("SELECT doc, term FROM v ORDER BY doc, offset"):
        found[doc - 1].append(term)
    return found


def test_tokens_are_fts5s_for_every_column_of_the_corpus(stored: Stored) -> None:
    columns = [value for indexed in stored.indexed.values() for value in indexed.values()]
    raw = [text for row in stored.rows for text in row[1:]]  # the unsegmented text too
    texts = columns + raw
    expected = fts5_tokens(texts)
    assert sum(map(len, expected)) > 1_000_000
    for text, tokens_of_text in zip(texts, expected):
        assert tokens(text) == tokens_of_text, text[:80]


def test_doc_len_is_fts5s_row_size(stored: Stored) -> None:
    """FTS5's size of each row (bm25's D): its tokens, the four of the facets included."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(title_words, title_grams, text_words, "
               "text_grams, facets, tokenize='unicode61 remove_diacritics 0')")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    db.executemany("INSERT INTO t (rowid, title_words, title_grams, text_words, text_grams, "
                   "facets) VALUES (?, ?, ?, ?, ?, 'y2025 m202510 d20251001 o12ab')",
                   [(i, *x.values()) for i, x in stored.indexed.items()])
    sizes = dict(db.execute("SELECT doc, count(*) FROM v GROUP BY doc"))
    for article_id, indexed in stored.indexed.items():
        assert index_row(indexed)[1] == sizes[article_id]


def test_tokens_of_every_code_point_are_fts5s() -> None:
    """Each code point between two letters: a separator, or a token character (folded)."""
    text = " ".join(f"q{chr(code)}q" for code in range(0x110000) if not 0xD800 <= code <= 0xDFFF)
    [expected] = fts5_tokens([text])
    assert len(expected) > 1_100_000
    assert tokens(text) == expected


def test_a_combining_diacritic_starts_no_token_as_in_fts5() -> None:
    """FTS5 takes U+0300..U+0331's diacritics within a token, never at its start."""
    texts = [f"{before}{chr(code)}{after}" for code in range(0x300, 0x332)
             for before, after in (("", ""), ("", "a"), ("a ", "b"), ("中", ""), ("", "中"))]
    assert [tokens(text) for text in texts] == fts5_tokens(texts)


@given(st.text())
@example("\u0323")  # a diacritic alone: no token
@example("\u0300 \u0300a")
def test_tokens_of_any_text_are_fts5s(text: str) -> None:
    text = text.encode("utf-8", "replace").decode("utf-8")  # sqlite3 takes no lone surrogate
    assert tokens(text) == fts5_tokens([text])[0]


def test_tokens_fold_and_separate_as_fts5() -> None:
    text = "A股 ＭＬＦ, Deepseek-V3.2 Ǆemal ÅB İx 人民 民银"
    expected = ["a股", "ｍｌｆ", "deepseek", "v3", "2", "ǆemal", "åb", "İx", "人民", "民银"]
    assert tokens(text) == fts5_tokens([text])[0] == expected
    assert tokens("") == tokens(" ,.!") == []


# -- the index row ------------------------------------------------------------------------

def test_the_stored_corpus_is_what_index_row_means_and_scores_as_fts5(
        stored: Stored, pg: psycopg.Connection[Any]) -> None:
    """A token an entry (index_row) or a lexeme an entry with the positions PostgreSQL
    keeps (what index_row writes of the articles it cannot write so): the same vector.
    And bm25 from every lexeme of an article (``unnest(terms)`` of one article)."""
    stored_terms = dict(pg.execute("SELECT article_id, terms::text FROM search").fetchall())
    for article_id, indexed in stored.indexed.items():
        grams = pgsearch._family(*map(tokens, (indexed.title_grams, indexed.text_grams)))
        words = pgsearch._family(*map(tokens, (indexed.title_words, indexed.text_words)))
        merged = pgsearch._literal(*pgsearch._fit(grams, words))
        assert sorted(merged.split(" ")) == sorted(stored_terms[article_id].split(" "))
    scores_from_whole_rows(stored, pg)


def stored_row(db: psycopg.Connection[Any], literal: str) -> dict[str, list[tuple[int, str]]]:
    return {lexeme: list(zip(places, weights)) for lexeme, places, weights in db.execute(
        "SELECT lexeme, positions, weights FROM unnest(%s::tsvector)", (literal,))}


def test_positions_stop_at_16383_and_a_lexeme_keeps_256(pg_url: str) -> None:
    title = " ".join(f"t{i}" for i in range(16390)) + " x"  # x: title position 16391
    text = "x " + " ".join(f"u{i}" for i in range(20)) + " 甲 乙" * 300
    indexed = IndexedText("", title, "", text)
    literal, length = index_row(indexed)
    assert length == 16391 + 21 + 600 + 4
    naive = " ".join([f"'t{i}':{i + 1}A" for i in range(16390)] + ["'x':16391A", "'x':16393"]
                     + [f"'u{i}':{16394 + i}" for i in range(20)]
                     + [f"'{c}':{16414 + 2 * i + j}" for i in range(300)
                        for j, c in enumerate("甲乙")])
    with psycopg.connect(pg_url) as db:
        row = stored_row(db, literal)
        assert row == stored_row(db, naive)  # PostgreSQL's own reading of every position
    assert row["t0"] == [(1, "A")] and row["t16381"] == [(16382, "A")]
    assert row["t16382"] == row["t16389"] == [(16383, "A")]
    assert row["x"] == [(16383, "A")]  # title and text fall together: the title's weight
    assert row["u0"] == [(16383, "D")]
    assert row["甲"] == [(16383, "D")]


def test_a_lexeme_keeps_its_first_256_positions(pg_url: str) -> None:
    indexed = IndexedText("a b", "甲乙", "a", " ".join(["甲乙 乙"] * 400))
    literal, length = index_row(indexed)
    assert length == 2 + 1 + 1 + 800 + 4
    with psycopg.connect(pg_url) as db:
        row = stored_row(db, literal)
    assert row["甲乙"] == [(1, "A")] + [(3 + 2 * i, "D") for i in range(255)]
    assert row["乙"] == [(4 + 2 * i, "D") for i in range(256)]
    assert row["w:a"] == [(1, "A"), (4, "D")] and row["w:b"] == [(2, "A")]


def test_too_long_a_lexeme_is_left_out(pg_url: str) -> None:
    fits, too_long = "k" * 2044, "k" * 2045  # "w:" + 2044 bytes: PostgreSQL's limit
    indexed = IndexedText("", "", f"{fits} {too_long} {'中' * 600} b", "")
    literal, length = index_row(indexed)
    assert length == 4 + 4
    with psycopg.connect(pg_url) as db:
        row = stored_row(db, literal)
        with pytest.raises(psycopg.errors.ProgramLimitExceeded):
            db.execute("SELECT %s::tsvector", (f"'w:{too_long}'",))
    assert row == {"w:" + fits: [(2, "D")], "w:" + "中" * 600: [(4, "D")], "w:b": [(5, "D")]}


def test_a_vector_past_1_mib_keeps_its_first_lexemes(pg_url: str) -> None:
    words = [f"z{i:09d}" for i in range(70_000)]  # "w:z000000001": 12 bytes
    literal, length = index_row(IndexedText("", "", " ".join(words), ""))
    assert length == 70_000 + 4
    # each kept lexeme counts 12 bytes, 1 of alignment, 2 for the count, 2 for its position
    kept = 1048575 // (12 + 1 + 2 + 2)
    with psycopg.connect(pg_url) as db:
        row = stored_row(db, literal)
        with pytest.raises(psycopg.errors.ProgramLimitExceeded):  # every lexeme: too big
            db.execute("SELECT %s::tsvector", (" ".join(
                f"'w:{w}':{min(i + 2, 16383)}" for i, w in enumerate(words)),))
    assert len(row) == kept
    assert row.keys() == {"w:" + w for w in words[:kept]}
    assert row["w:" + words[16380]] == [(16382, "D")]
    assert row["w:" + words[16381]] == row["w:" + words[kept - 1]] == [(16383, "D")]


def test_quotes_and_backslashes_in_lexemes(pg_url: str) -> None:
    """No token holds them (they are punctuation), but a lexeme that did would be read back."""
    odd = ["it's", "a\\b", "''", "\\'"]
    literal = pgsearch._literal({word: [f"{i + 1}A"] for i, word in enumerate(odd)}, {"x'": ["9"]})
    with psycopg.connect(pg_url) as db:
        assert stored_row(db, literal) == {
            "it's": [(1, "A")], "a\\b": [(2, "A")], "''": [(3, "A")], "\\'": [(4, "A")],
            "w:x'": [(9, "D")]}
        for i, word in enumerate(odd):
            query = phrase_tsquery(Phrase((word,), False, True, False))
            assert one(db, "SELECT %s::tsvector @@ %s::tsquery", (literal, query)) == (True,)
        query = phrase_tsquery(Phrase(("it's", "a\\b"), False, True, True))
        assert one(db, "SELECT %s::tsvector @@ %s::tsquery", (literal, query)) == (True,)
        query = phrase_tsquery(Phrase(("a\\b", "it's"), False, True, True))
        assert one(db, "SELECT %s::tsvector @@ %s::tsquery", (literal, query)) == (False,)


# -- queries ------------------------------------------------------------------------------

def test_tsquery_of_caixuns_expressions() -> None:
    assert tsquery('{title_grams text_grams}: "人民 民银"') == "('人民' <-> '民银')"
    assert tsquery('{title_grams}: "人民 民银"') == "('人民':A <-> '民银':A)"
    assert tsquery('{title_grams text_grams}: "央"*') == "'央':*"
    assert tsquery('{title_grams}: "央"*') == "'央':*A"
    assert tsquery('{title_words text_words}: "a股"') == "'w:a股'"
    assert tsquery('{text_words}: "5g"') == "'w:5g':D"
    assert tsquery('({title_grams text_grams}: "央行" NOT {title_words text_words}: "5g") '
                   'OR {title_words}: "mlf"') == "(('央行' & !'w:5g') | 'w:mlf':A)"
    assert tsquery('{title_grams text_grams}: "央行" AND {title_grams text_grams}: "降准" '
                   'OR {title_grams text_grams}: "降息"') == "(('央行' & '降准') | '降息')"


@pytest.mark.parametrize("match", [
    '{facets}: y2025', '{title_grams text_grams}: "央行" AND {facets}: d20251001',
    '"央行"', 'NEAR("a" "b")', '{title_words title_grams}: "a"',
    '{title_grams text_grams}: "w"*', '{title_grams}: "a" +', '({title_grams}: "a"',
    '{title_grams}: "a" {title_grams}: "b"',  # FTS5's implicit AND: caixun writes AND
])
def test_tsquery_refuses_what_caixun_never_writes(match: str) -> None:
    with pytest.raises(QueryError):
        tsquery(match)


def test_phrases_in_fts5s_order() -> None:
    found = phrases('({title_grams text_grams}: "央"* OR {title_words}: "5g 芯片") '
                    'NOT {text_grams}: "美元"')
    assert found == [Phrase(("央",), True, True, True),
                     Phrase(("w:5g", "w:芯片"), False, True, False),
                     Phrase(("美元",), False, False, True)]
    assert [phrase_tsquery(p) for p in found] == ["'央':*", "('w:5g':A <-> 'w:芯片':A)", "'美元':D"]
    assert phrase_tsquery(Phrase((), False, True, True)) == pgsearch.NOTHING


def fts5_and_pg_table(rows: list[tuple[int, IndexedText]], pg_url: str
                      ) -> tuple[sqlite3.Connection, psycopg.Connection[Any]]:
    """The same articles in a contentless FTS5 table as the archive's, and in PostgreSQL."""
    fts = sqlite3.connect(":memory:")
    fts.execute("CREATE VIRTUAL TABLE search USING fts5(title_words, title_grams, text_words, "
                "text_grams, facets, content='', tokenize='unicode61 remove_diacritics 0')")
    fts.executemany("INSERT INTO search (rowid, title_words, title_grams, text_words, "
                    "text_grams, facets) VALUES (?, ?, ?, ?, ?, 'y2025 m202510 d20251001 o1')",
                    [(i, *x.values()) for i, x in rows])
    db = psycopg.connect(pg_url, autocommit=True)
    db.execute(SCHEMA)
    db.execute(INDEX)
    for i, indexed in rows:
        db.execute("INSERT INTO search VALUES (%s, %s::tsvector, %s)", (i, *index_row(indexed)))
    return fts, db


def test_a_phrase_never_runs_from_the_title_into_the_text(pg_url: str) -> None:
    rows = [(1, IndexedText("a b", "甲乙", "c d", "乙丙 丙")),
            (2, IndexedText("x", "", "b c", "甲乙 乙丙 丙"))]
    fts, db = fts5_and_pg_table(rows, pg_url)
    stored = Stored(fts, [], {}, [])
    with db:
        for match in ('{title_words text_words}: "b c"', '{title_grams text_grams}: "甲乙 乙丙"'):
            assert sorted(fts5_scores(fts, match)) == [2]
            assert_same(stored, db, match)
            title = match.replace(" text_words", "").replace(" text_grams", "")
            assert sorted(fts5_scores(fts, title)) == []
            assert_same(stored, db, title)


@pytest.mark.parametrize(("match", "expected"), [
    ('{title_grams text_grams}: "央行" AND {title_grams text_grams}: ""', []),
    ('{title_grams text_grams}: "-" OR {title_grams text_grams}: "央行"', [1, 3]),
    ('{title_grams text_grams}: "央行" NOT {title_words text_words}: "..."', [1, 3]),
    ('{title_grams text_grams}: ""* NOT {title_grams text_grams}: "央行"', []),
    ('{title_grams text_grams}: "央行" AND ({title_grams}: "降准" OR {text_grams}: "")', [1]),
])
def test_a_phrase_without_tokens_matches_nothing_as_in_fts5(
        pg_url: str, match: str, expected: list[int]) -> None:
    rows = [(i, index_text(title, "", text)) for i, (title, text) in enumerate(
        [("央行降准", "美元"), ("美元", "欧元"), ("新闻", "央行")], 1)]
    fts, db = fts5_and_pg_table(rows, pg_url)
    with db:
        assert sorted(fts5_scores(fts, match)) == expected
        assert_same(Stored(fts, [], {}, []), db, match)


def test_bm25_counts_only_what_fts5_reads(pg_url: str) -> None:
    """A phrase under a NOT, or in an alternative the row does not match, counts nothing
    in FTS5 even where the row holds it; counting it would change these rows' scores."""
    rows = [(i, index_text(title, "", text)) for i, (title, text) in enumerate([
        ("央行降准", "美元走强 欧元"), ("央行降息", "美元 美元 美元"), ("降准", "欧元 央行"),
        ("美元指数", "央行 降准 降息"), ("欧元区", "央行"), ("新闻", "其他 央行 美元 欧元 降准"),
        ("美元", "欧元"), ("央行", "欧元")], 1)]
    fts, db = fts5_and_pg_table(rows, pg_url)
    stored = Stored(fts, [], {}, [])
    queries = ["央行 -(美元 欧元)", "央行 (降准 OR (美元 欧元))", "(降准 OR (美元 欧元)) -降息",
               "央行 OR 欧元", "(央行 -美元) OR 欧元", "央行 (降准 OR 降息 -美元)"]
    differ = 0
    with db:
        count, total = table_size(db)
        for query in queries:
            match = parse_query(query).match
            assert assert_same(stored, db, match) > 0, query
            # every phrase counted wherever the row holds it: phrases made alone
            alone = [Phrase(p.lexemes, p.prefix, p.title, p.text) for p in phrases(match)]
            hits = phrase_hits(db, alone)
            for article_id, score in fts5_scores(fts, match).items():
                length = index_row(dict(rows)[article_id])[1]
                differ += bm25(alone, article_positions(db, article_id), length, hits, count,
                               total) != score
    assert differ >= 3


def test_fts5_counts_a_phrase_its_iterator_was_left_on(pg_url: str) -> None:
    """"domes" is in no row: FTS5 never moves the iterator of 日* (under the NOT that can
    never match) past the first row holding 日, and counts it there; pgsearch.bm25 does not
    count a phrase of a part of the expression the row does not match (see pgsearch)."""
    rows = [(i, index_text(title, "", text)) for i, (title, text) in enumerate([
        ("日报", "App 发布"), ("新闻", "cut 美元"), ("日内", "app 上线"), ("其他", "日 app")]
        + [("其他", "新闻")] * 12, 1)]
    fts, db = fts5_and_pg_table(rows, pg_url)
    words = "{title_words text_words}: "
    match = (f'(({words}"cut" AND {words}"domes") NOT {{title_grams text_grams}}: "日"*) '
             f'OR {words}"app"')
    expected = fts5_scores(fts, match)
    with db:
        found = pg_scores(db, match)
    assert sorted(expected) == sorted(found.scores) == [1, 3, 4]
    assert found.scores[3] == expected[3] and found.scores[4] == expected[4]
    assert found.scores[1] != expected[1]
    every = [Phrase(p.lexemes, p.prefix, p.title, p.text) for p in found.found]  # all counted
    assert bm25(every, found.positions[1], found.lengths[1], found.hits, found.rows,
                found.total) == expected[1]
    assert found.left_behind(1, expected[1])


def benchmark_queries(outlets: list[str]) -> list[str]:
    """The 28 queries of benchmarks/search.py, with the corpus's outlets for its outlet names."""
    path = REPO / "benchmarks" / "search.py"
    spec = importlib.util.spec_from_file_location("caixun_bench_search", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cats = [(f"outlet-{rank}", outlets[rank % len(outlets)]) for rank in range(500)]
    found = [q.text for q in module.queries(types.SimpleNamespace(
        gen=types.SimpleNamespace(cats=cats)))]
    assert len(found) == 28
    return found


def benchmark_queries_match_and_rank_as_fts5(stored: Stored,
                                             pg: psycopg.Connection[Any]) -> None:
    matched = 0
    for query in benchmark_queries(stored.outlets):
        parsed = parse_query(query)
        matched += assert_same(stored, pg, parsed.match)
        assert_same(stored, pg, parsed.title_match)
    assert matched > 500


_CJK_RUN = re.compile("[\u4e00-\u9fff]+")
_ASCII = re.compile("[A-Za-z0-9]+(?:[\u4e00-\u9fff]{1,2})?")


def random_queries(stored: Stored, count: int, seed: int = 20251205) -> list[str]:
    """Words and phrases of the corpus's titles and bodies, combined as people search."""
    rng = random.Random(seed)
    texts = [text for row in stored.rows for text in row[1:] if text]

    def chinese() -> str:
        runs = _CJK_RUN.findall(rng.choice(texts)) or ["央行"]
        run = rng.choice(runs)
        size = rng.choice([1, 1, 2, 2, 2, 3, 3, 4, 5, 6])
        start = rng.randrange(max(1, len(run) - size + 1))
        return run[start:start + size]

    def ascii_word() -> str:
        return rng.choice(_ASCII.findall(rng.choice(texts)) or ["5G"])

    def quoted() -> str:
        text = rng.choice(texts)
        start = rng.randrange(max(1, len(text) - 2))
        return '"' + text[start:start + rng.randint(2, 10)].replace('"', "") + '"'

    def term() -> str:
        return rng.choice([chinese, chinese, chinese, ascii_word, quoted])()

    shapes = ["{a}", "{a} {b}", "{a} {b} {c}", "{a} OR {b}", "{a} -{b}", "({a} OR {b}) {c}",
              "{a} -({b} {c})", "({a} -{b}) OR {c}", "{a} ({b} OR {c} -{d})", "-{a} {b}"]
    found: list[str] = []
    while len(found) < count:
        query = rng.choice(shapes).format(a=term(), b=term(), c=term(), d=term())
        try:
            parse_query(query)
        except QueryError:
            continue
        found.append(query)
    return found


def test_queries_match_and_rank_as_fts5(stored: Stored, pg: psycopg.Connection[Any]) -> None:
    """The benchmark's queries, then queries drawn from the corpus: .match and .title_match."""
    benchmark_queries_match_and_rank_as_fts5(stored, pg)
    queries = random_queries(stored, RANDOM_QUERIES)
    matched = found = 0
    for query in queries:
        parsed = parse_query(query)
        count = assert_same(stored, pg, parsed.match)
        matched += count
        found += count > 0
        assert_same(stored, pg, parsed.title_match)
    assert found > RANDOM_QUERIES // 2  # most queries find something
    assert matched > 10_000
    # the articles with more than 256 of a word are few (English text: "the", "of" …),
    # as are the rows where FTS5 counts a phrase left behind
    assert len(CAPPED) < matched / 200 and len(LEFT_BEHIND) < matched / 200
    print(f"\n{len(queries)} random queries, {matched} matches; largest relative "
          f"difference of {len(DIFFERENCES)} scores: {max(DIFFERENCES):.3g}; left out: "
          f"{len(CAPPED)} where PostgreSQL kept 256 positions of a lexeme, "
          f"{len(LEFT_BEHIND)} where FTS5 counted a phrase left behind")


def test_the_relaxed_query_holds_every_match_and_needs_no_row(
        stored: Stored, pg: psycopg.Connection[Any]) -> None:
    """relaxed_tsquery, which a search asks the GIN index first (postgres._Matches), keeps
    every row the exact query matches, on the benchmark's queries and queries drawn from
    the corpus."""
    def matched(query: str) -> set[int]:
        return {row[0] for row in pg.execute(
            "SELECT article_id FROM search WHERE terms @@ %s::tsquery", (query,))}

    wider = 0
    for query in [*benchmark_queries(stored.outlets), *random_queries(stored, 100, seed=7)]:
        for match in (parse_query(query).match, parse_query(query).title_match):
            exact, relaxed = tsquery(match), relaxed_tsquery(match)
            found, kept = matched(exact), matched(relaxed)
            assert found <= kept, (query, exact, relaxed)
            wider += len(kept) > len(found)
    assert wider > 20  # phrases and weights: the relaxed query is wider for many


def test_relaxed_tsquery_of_caixuns_expressions() -> None:
    assert relaxed_tsquery('{title_grams text_grams}: "人民 民银"') == "('人民' & '民银')"
    assert relaxed_tsquery('{title_grams}: "人民 民银 人民"') == "('人民' & '民银')"
    assert relaxed_tsquery('{title_grams}: "央"*') == "'央':*"
    assert relaxed_tsquery('{title_grams}: "人民 民"*') == "('人民' & '民':*)"
    assert relaxed_tsquery('{text_words}: "5g"') == "'w:5g'"
    # a NOT holds where its left side does; a phrase without tokens matches nothing
    assert relaxed_tsquery('({title_grams text_grams}: "央行" NOT {title_words text_words}: '
                           '"5g") OR {title_words}: "mlf"') == "('央行' | 'w:mlf')"
    assert relaxed_tsquery('{title_grams}: "央行" AND {title_grams}: ""') == pgsearch.NOTHING
    assert relaxed_tsquery('{title_grams}: "央行" OR {title_grams}: ""') == "'央行'"
    plain = '{title_grams text_grams}: "央行" AND {title_words text_words}: "a股"'
    assert relaxed_tsquery(plain) == tsquery(plain)  # nothing to check in a row


def scores_from_whole_rows(stored: Stored, pg: psycopg.Connection[Any]) -> None:
    """bm25 from every lexeme of each article (unnest(terms) of one article at a time)."""
    for query in ("央行 OR 银行", "A股 -美元", "5G", '"人民银行"'):
        match = parse_query(query).match
        expected = fts5_scores(stored.fts, match)
        found = phrases(match)
        rows, total = table_size(pg)
        hits = phrase_hits(pg, found)
        for article_id in sorted(expected)[:40]:
            [length] = one(pg, "SELECT doc_len FROM search WHERE article_id = %s", (article_id,))
            score = bm25(found, article_positions(pg, article_id), length, hits, rows, total)
            assert math.isclose(score, expected[article_id], rel_tol=TOLERANCE, abs_tol=0.0)

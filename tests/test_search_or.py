"""Search syntax: OR between words or phrases, and parentheses, over the real posts.

Each expected result is computed from the results of simpler queries (set
union and intersection), so the test checks the grammar and its translation to
FTS5, not a copy of either.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caixun.archive import SqliteArchive
from caixun.importer import import_posts
from caixun.segment import QueryError, parse_query
from conftest import POSTS

WORDS = ["央行", "降准", "股份", "公司", "增长", "市场", "银行", "美元", "基金", "上涨", "疫情",
         '"人民银行"', '"同比增长"']


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> SqliteArchive:
    archive = SqliteArchive(tmp_path_factory.mktemp("or") / "a.db")
    import_posts([POSTS], archive)
    return archive


def found(archive: SqliteArchive, query: str) -> set[str]:
    return {hit.ref.uid for hit in archive.search(query, limit=10_000)}


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(WORDS), st.sampled_from(WORDS), st.sampled_from(WORDS))
def test_or_is_the_union_and_parentheses_group(corpus: SqliteArchive, a: str, b: str,
                                               c: str) -> None:
    fa, fb, fc = found(corpus, a), found(corpus, b), found(corpus, c)
    assert found(corpus, f"{a} OR {b}") == fa | fb
    assert found(corpus, f"{a} OR {b} OR {c}") == fa | fb | fc
    assert found(corpus, f"{a} ({b} OR {c})") == (fa & fb) | (fa & fc)
    # Juxtaposition binds tighter than OR, as in FTS5 and SQL.
    assert found(corpus, f"{a} {b} OR {c}") == (fa & fb) | fc
    assert found(corpus, f"({a} OR {b}) -{c}") == (fa | fb) - fc


def test_the_corpus_gives_the_or_test_something_to_find(corpus: SqliteArchive) -> None:
    sizes = [len(found(corpus, w)) for w in WORDS]
    assert sum(1 for n in sizes if 0 < n < 117) >= 8  # neither none nor all of the posts


def test_a_lower_case_or_is_a_word_and_brackets_need_not_balance() -> None:
    assert " OR " not in parse_query("降准 or 降息").match
    assert parse_query("降准 (央行").match == parse_query("降准 央行").match
    assert parse_query("降准) 央行").match.count("降准") == 1


@pytest.mark.parametrize("query", ["OR", "OR OR", "()", "-降准 OR -降息", "(-降准)"])
def test_queries_with_nothing_to_find_say_so(query: str) -> None:
    with pytest.raises(QueryError, match="nothing to look for"):
        parse_query(query)


def test_highlights_come_from_every_alternative() -> None:
    assert set(parse_query("降准 OR \"降息\" -加息").highlights) == {"降准", "降息"}

"""The PostgreSQL archive against a real server: the same archive, site and search as SQLite's.

The archive suite itself runs on both backends (conftest's ``archive``
fixture); these tests compare the two on the real corpus and cover what only
a server has: connection errors, rights, several writers at once, copying.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from conftest import POSTS, REPO
from site_helpers import tree
from test_dedup import labelled_items
from caixun.archive import Archive, base, open_archive, postgres
from caixun.archive.copy import copy_archive
from caixun.archive.postgres import describe
from caixun.errors import ArchiveError
from caixun.importer import import_posts
from caixun.publish.jsonl import write_jsonl
from caixun.publish.site import SiteConfig, build_site

CONFIG = SiteConfig(title="财讯", url="https://news.example.com/")
NOW = 1_790_000_000.0  # a fixed clock for the recency blend
# The search benchmark's queries (benchmarks/search.py) and the kinds around them:
# two-character words, phrases, OR, NOT, English, a single character.
QUERIES = ["央行", "降准", "人民币", "美联储 加息", '"货币政策"', "央行 OR 美联储", "股市 -美股",
           "A股", "5G", "芯片", "新能源汽车", "证券", "银行", "Fed", "AI", "市场", "中国 经济",
           "上海", "油价", "黄金", "比特币", "涨", "(央行 OR 银行) 利率", "特朗普", "关税",
           "稀土", "华为", "tariff"]


def _stored(location: str) -> Archive:
    """An archive at ``location`` holding the real corpus: the posts and the rss-days items."""
    archive = open_archive(location)
    import_posts([POSTS], archive)
    items = sorted(labelled_items("near_duplicates").values(),
                   key=lambda a: (a.published_at, a.uid))
    for start in range(0, len(items), 500):
        archive.store_many(items[start:start + 500])
    return archive


@pytest.fixture(scope="module")
def both(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The same corpus in an SQLite file and in a PostgreSQL database."""
    name = "caixun_both"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    url = pg_server.rsplit("/", 1)[0] + "/" + name
    lite = _stored(str(tmp_path_factory.mktemp("lite") / "caixun.db"))
    server = _stored(url)
    yield lite, server
    lite.close()
    server.close()


def test_both_archives_hold_the_same_articles_stories_and_tags(both: Any) -> None:
    lite, server = both
    assert lite.count() == server.count() > 2900  # 4,005 items: copies merge, repeats update
    assert _export(lite) == _export(server)


def _export(archive: Archive) -> str:
    import io

    out = io.StringIO()
    for _ in write_jsonl(archive.iter_articles_linked(), out):
        pass
    return out.getvalue()


def test_most_queries_find_articles_in_both(both: Any) -> None:
    """The comparison below means something: the corpus answers most of its queries."""
    lite, server = both
    answered = [q for q in QUERIES if lite.search(q, limit=1) and server.search(q, limit=1)]
    assert len(answered) >= 20, set(QUERIES) - set(answered)


@pytest.mark.parametrize("query", QUERIES)
def test_search_finds_and_ranks_as_sqlite_does(both: Any, query: str) -> None:
    lite, server = both
    for options in ({}, {"outlet": "huaerjiejianwen"}, {"since_ts": 1_760_000_000}):
        found = [(h.ref.uid, round(h.score, 9)) for h in
                 lite.search(query, limit=50, now=NOW, **options)]
        assert [(h.ref.uid, round(h.score, 9)) for h in
                server.search(query, limit=50, now=NOW, **options)] == found


# Queries whose PostgreSQL form holds a phrase or a column weight: checked in the
# row's terms (see postgres._Matches), the others are answered by the GIN index.
PHRASES = ['"货币政策"', "新能源汽车", "人民币", "美联储 加息", "股市 -美股", "中国 经济",
           "(央行 OR 银行) 利率", "稀土"]


@pytest.mark.parametrize("two_steps", [True, False])
@pytest.mark.parametrize("window", [base.RANK_WINDOW, 60])
def test_a_phrase_is_found_as_sqlite_finds_it_in_one_step_or_two(
        both: Any, two_steps: bool, window: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where PostgreSQL would check the phrase in every row its GIN index gives, the
    search reads the rows of each range of ids first, then checks those (two steps);
    either way, what it finds is SQLite's. A window of 60 reads the newest ids in
    several ranges."""
    lite, server = both
    monkeypatch.setattr(base, "RANK_WINDOW", window)
    monkeypatch.setattr(postgres, "_checks_every_match", lambda *args: two_steps)
    in_two_steps: list[str] = []
    checked = postgres._Matches._checked

    def spy(self: Any, *args: Any) -> Any:
        in_two_steps.append(self.exact)
        return checked(self, *args)

    monkeypatch.setattr(postgres._Matches, "_checked", spy)
    for query in PHRASES:
        for options in ({}, {"outlet": "huaerjiejianwen"}, {"since_ts": 1_760_000_000}):
            found = [(h.ref.uid, round(h.score, 9)) for h in
                     lite.search(query, limit=50, now=NOW, **options)]
            assert [(h.ref.uid, round(h.score, 9)) for h in
                    server.search(query, limit=50, now=NOW, **options)] == found, query
    assert bool(in_two_steps) == two_steps


def test_the_newest_matches_are_read_in_ranges_sized_by_what_was_found(
        both: Any) -> None:
    """The first range is _FIRST_RANGE windows; after a range with matches, what they say
    the rest needs (half again, eight times the last at most); after one without, every
    id left: each range asks the GIN index again."""
    _, server = both
    first, last = server._db.execute("SELECT min(article_id), max(article_id) FROM search"
                                     ).fetchone()
    asked: list[tuple[int, int, int]] = []

    def read(db: Any, low: int, high: int, limit: int) -> list[tuple[int, int]]:
        asked.append((low, high, limit))
        # every 10th id from the newest, within the newest 100; then none until the oldest 5
        return [(i, 0) for i in range(high - 1, low - 1, -1)
                if (last - i < 100 and (last - i) % 10 == 0) or i < first + 5][:limit]

    found = server._newest(SimpleNamespace(read=read), 20)
    assert postgres._FIRST_RANGE == 4
    top = last + 1
    assert asked == [
        (top - 80, top, 20),  # 4 windows: 8 found
        (top - 260, top - 80, 12),  # 12 more at 8 in 80: 120 ids, and half again
        (top - 1610, top - 260, 10),  # 2 found in 180: 10 more take 900, 1,350
        (first, top - 1610, 10),  # none in 1,350: every id left
    ]
    assert [i for i, _ in found] == [last - 10 * k for k in range(10)] + list(
        range(first + 4, first - 1, -1))


@pytest.mark.parametrize("off, checks_every_match", [
    ("enable_seqscan", True),  # the GIN index's rows, then the ids: each row checked
    ("enable_bitmapscan", False),  # the ids by the primary key, each row checked
])
def test_a_plan_checking_every_row_the_gin_index_gives_is_told(
        both: Any, off: str, checks_every_match: bool) -> None:
    _, server = both
    # "+ 0": the ids cannot be read by the primary key, as on a big table where
    # PostgreSQL thinks a phrase rare
    sql = ("SELECT s.article_id FROM search s WHERE s.terms @@ ?::tsquery "
           "AND s.article_id + 0 >= ? AND s.article_id + 0 < ?")
    server._db.execute(f"SET {off} = off")
    try:
        phrase = "('货币' <-> '币政' <-> '政策')"
        assert postgres._checks_every_match(server._db, sql, (phrase, 1, 100)) \
            == checks_every_match
    finally:
        server._db.execute("RESET ALL")


def test_a_site_built_from_postgresql_is_the_site_built_from_sqlite(
        both: Any, tmp_path: Path) -> None:
    lite, server = both
    build_site(lite, tmp_path / "lite", CONFIG, jobs=1)
    build_site(server, tmp_path / "server", CONFIG, jobs=2)  # workers open it again
    assert tree(tmp_path / "server") == tree(tmp_path / "lite")


def test_copy_from_sqlite_to_postgresql_and_back_keeps_every_row(
        both: Any, pg_url: str, tmp_path: Path) -> None:
    lite, _ = both
    with open_archive(pg_url) as server:
        copy_archive(lite, server)
        with open_archive(tmp_path / "back.db") as back:
            copy_archive(server, back)
            assert _export(server) == _export(lite) == _export(back)
            assert server.changes_since() == lite.changes_since() == back.changes_since()
            assert server.search("央行", now=NOW) == lite.search("央行", now=NOW)
            # What stories are weighed and found by goes along: the next article
            # is placed as it would be in the source.
            for table in ("story_terms", "dedup_prints", "dedup_keys"):
                assert _rows(server, table) == _rows(lite, table) == _rows(back, table)
        server.store(_one_more(lite))  # ids go on after the copied ones
        assert server.max_article_id() == lite.max_article_id() + 1


def _rows(archive: Archive, table: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                  for row in archive._db.execute(f"SELECT * FROM {table}").fetchall())


def _one_more(archive: Archive) -> Any:
    article = next(archive.iter_articles())
    return article.evolve(uid="test:after-copy", file_id="after-copy", url="",
                          title="复制之后的新文章", identity="")


def test_copy_refuses_an_archive_that_is_not_empty(both: Any) -> None:
    lite, server = both
    with pytest.raises(ArchiveError, match="empty archive"):
        copy_archive(lite, server)


def _import(url: str, barrier: Any) -> int:
    with open_archive(url) as archive:
        barrier.wait()
        return import_posts([POSTS], archive).counts["new"]


def test_two_imports_at_once_store_each_post_once(pg_url: str, tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(2)
    with context.Pool(2) as pool:
        results = [pool.apply_async(_import, (pg_url, barrier)) for _ in range(2)]
        new = [r.get(timeout=300) for r in results]
    with open_archive(pg_url) as archive:
        uids = sorted(a.uid for a in archive.iter_articles())
    with open_archive(tmp_path / "alone.db") as alone:  # the same posts, one import
        import_posts([POSTS], alone)
        expected = sorted(a.uid for a in alone.iter_articles())
    assert uids == expected and sum(new) == len(expected)  # each stored once, by one of them


def test_an_unreachable_server_is_named_without_its_password() -> None:
    with pytest.raises(ArchiveError) as caught:
        open_archive("postgresql://caixun:s3cret@127.0.0.1:1/news")
    message = str(caught.value)
    assert "postgresql://caixun@127.0.0.1:1/news" in message and "s3cret" not in message
    assert "cannot connect" in message


def test_a_role_without_rights_is_told_so(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS caixun_reader")
        admin.execute("CREATE ROLE caixun_reader LOGIN")
        admin.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    url = pg_url.replace("://caixun@", "://caixun_reader@")
    with pytest.raises(ArchiveError, match="rights"):
        open_archive(url)


def test_read_only_refuses_a_database_without_an_archive(pg_url: str) -> None:
    with pytest.raises(ArchiveError, match="not a caixun archive"):
        open_archive(pg_url, read_only=True)


def test_describe_keeps_host_port_user_and_database_only() -> None:
    assert describe("postgresql://u:pw@db.example.com:5433/news?sslmode=require") == \
        "postgresql://u@db.example.com:5433/news"


def test_the_cli_takes_a_url_for_archive(pg_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    run = [sys.executable, "-m", "caixun.cli", "--archive", pg_url]
    subprocess.run([*run, "import", str(POSTS)], check=True, env=env, cwd=tmp_path,
                   capture_output=True)
    found = subprocess.run([*run, "search", "央行"], check=True, env=env, cwd=tmp_path,
                           capture_output=True, text=True)
    assert "央行" in found.stdout
    assert not (tmp_path / "caixun.db").exists()  # nothing went to an SQLite file


def test_init_with_a_url_writes_it_and_makes_the_archive(pg_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-m", "caixun.cli", "init", "--archive", pg_url],
                          env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    from caixun.settings import load_settings

    settings = load_settings(tmp_path / "caixun.toml")
    assert settings["archive.url"] == pg_url and settings["archive.path"] == "caixun.db"
    with open_archive(pg_url, read_only=True) as archive:  # made: its schema is current
        assert archive.count() == 0
    bad = subprocess.run([sys.executable, "-m", "caixun.cli", "init", "--force", "--archive",
                          "postgresql://caixun:pw@127.0.0.1:1/news"], env=env, cwd=tmp_path,
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "cannot connect" in bad.stderr and "pw" not in bad.stderr
    assert load_settings(tmp_path / "caixun.toml")["archive.url"] == pg_url  # left as it was


def test_archive_copy_command_both_ways_gives_the_same_export(pg_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}

    def caixun(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "caixun.cli", *args], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)

    lite, back = str(tmp_path / "a.db"), str(tmp_path / "back.db")
    assert caixun("--archive", lite, "import", str(POSTS)).returncode == 0
    there = caixun("archive", "copy", lite, pg_url)
    assert there.returncode == 0, there.stderr
    assert "articles) from" in there.stderr and "caixun@" in there.stderr  # the -q-less summary
    assert caixun("archive", "copy", pg_url, back).returncode == 0
    exports = []
    for location in (lite, pg_url, back):
        out = tmp_path / f"export-{len(exports)}.jsonl"
        assert caixun("--archive", location, "export", "jsonl", str(out)).returncode == 0
        exports.append(out.read_bytes())
    assert exports[0] == exports[1] == exports[2] and exports[0].count(b"\n") > 100
    again = caixun("archive", "copy", lite, pg_url)  # the target holds articles now
    assert again.returncode == 1 and "empty archive" in again.stderr

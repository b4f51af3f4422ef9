"""Publication times no page can show are the item's error, never the source's or the build's.

Issue 9.1: a feed item or post dated 0001-01-01 or 9999-12-31 was stored, and then
every build failed (``year 0 is out of range``); a ``9999-12-31T23:59:59Z`` item
failed its whole source every round. The rule tested here (README, "Dates"):
a time must lie in [1970-01-01, 2100-01-01) UTC, and a fetched item may not be
dated more than two days after it was fetched.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import newsserver as ns
from conftest import POSTS
from test_sources_rss import SAMPLE, rss_xml
from caixun.archive import SqliteArchive, open_archive
from caixun.fetch import Fetcher, FetchSettings, fetch_round
from caixun.importer import import_posts
from caixun.normalize import BEIJING
from caixun.publish.site import SiteConfig, build_site
from caixun.sources.base import ItemError, Source, SourceConfig, build_article, load_source

EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
FETCHED = datetime(2026, 9, 1, 12, tzinfo=timezone.utc)
BAD_FEED_DATES = ["9999-12-31T23:59:59Z", "Mon, 01 Jan 0001 00:00:00 +0000",
                  "0001-01-01 00:00:00", "Fri, 31 Dec 9999 23:59:59 GMT", "1969-12-31T23:59:59Z",
                  "2031-01-01T00:00:00Z"]


def acceptable(when: datetime, fetched: datetime) -> bool:
    stamp = when.timestamp()
    return EARLIEST.timestamp() <= stamp < LATEST.timestamp() \
        and stamp <= (fetched + timedelta(days=2)).timestamp()


ZONES = st.sampled_from([timezone.utc, BEIJING, timezone(timedelta(hours=-12)),
                         timezone(timedelta(hours=14))])


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=ZONES))
def test_any_time_is_stored_or_reported_by_uid(when: datetime) -> None:
    source = load_source(SourceConfig("feed", "rss", options={"url": "https://example.org/"}))
    try:
        article = build_article(source, "x1", outlet="测试", title="标题", published=when,
                                fetched_at=FETCHED, body_text="正文")
    except ItemError as exc:
        assert not acceptable(when, FETCHED), f"{when} refused: {exc}"
        assert str(exc).startswith("feed:x1: time ") and "out of range" in str(exc)
    else:
        assert acceptable(when, FETCHED), f"{when} accepted"
        assert article.published_at == when


# -- a real feed over HTTP: the bad items are reported, the good ones stored ----------------

async def _one_round(source: Source, archive: SqliteArchive) -> list[Any]:
    fetcher = Fetcher(FetchSettings(retries=0, min_gap=0.0))
    try:
        return await fetch_round([source], fetcher, archive, due_only=False)
    finally:
        await fetcher.aclose()


def _feed_with_bad_dates() -> tuple[list[dict[str, Any]], set[str]]:
    items = [dict(item) for item in SAMPLE[:24]]
    bad_links = set()
    for n, date in enumerate(BAD_FEED_DATES):
        items[n * 3]["published"] = date
        bad_links.add(items[n * 3]["link"])
    return items, bad_links


def test_a_feed_with_impossible_dates_stores_its_other_items(tmp_path: Path) -> None:
    items, bad_links = _feed_with_bad_dates()
    with ns.NewsServer() as server, open_archive(tmp_path / "a.db") as archive:
        server.route("/feed.xml", rss_xml(items, "none"), content_type=ns.RSS_TYPE)
        source = load_source(SourceConfig("feed", "rss", options={"url": server.url("/feed.xml")}))

        for _ in range(2):  # the source is not failed: the next round is the same
            [report] = asyncio.run(_one_round(source, archive))
            assert report.error is None
            assert len(report.item_errors) == len(BAD_FEED_DATES)
            assert all("out of range" in e for e in report.item_errors), report.item_errors
        stored = {a.url for a in archive.iter_articles()}
        good = {i["link"] for i in items} - bad_links
        assert len(stored) == len(good)
        assert not stored & bad_links
        assert all(a.published_at.year not in (1, 2001, 9999) for a in archive.iter_articles())


def test_json_flash_with_a_year_9999_time_is_one_item_error(tmp_path: Path) -> None:
    payload = ns.cls_roll(n=6)
    items = payload["data"]["roll_data"]
    items[1]["ctime"] = int(datetime(9999, 12, 31, tzinfo=timezone.utc).timestamp())
    items[3]["ctime"] = 253402300799 * 1000  # milliseconds of 9999-12-31T23:59:59Z
    with ns.NewsServer() as server, open_archive(tmp_path / "a.db") as archive:
        server.route("/v1/roll/get_roll_list", payload)
        source = load_source(SourceConfig("cls", "cls", options={
            "list_url": server.url("/v1/roll/get_roll_list")}))

        [report] = asyncio.run(_one_round(source, archive))
    assert report.error is None
    assert sorted(e.split(":")[1] for e in report.item_errors) == sorted(
        str(items[i]["id"]) for i in (1, 3))
    assert report.new == len(items) - 2


# -- post files --------------------------------------------------------------------------------

def _post_with_date(tmp_path: Path, name: str, date: str) -> Path:
    source = next(p for p in sorted(POSTS.glob("2021-*.md")))
    text = source.read_text("utf-8")
    path = tmp_path / "posts" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(re.sub(r"(?m)^date: .*$", f"date: {date}", text, count=1), "utf-8")
    return path


@pytest.mark.parametrize("date", ["0001-01-01 00:00:00 +0800", "9999-12-31 23:59:59 +0800",
                                  "1969-12-31 23:59:59 +0100"])
def test_a_post_dated_out_of_range_takes_its_file_name_date(tmp_path: Path, date: str) -> None:
    path = _post_with_date(tmp_path, "2021-12-08-202112082206870651.md", date)
    outcomes: list[Any] = []
    with open_archive(tmp_path / "a.db") as archive:
        report = import_posts([path], archive, outcomes.append)
        [article] = list(archive.iter_articles())
    assert report.counts["new"] == 1 and report.counts["repaired"] == 1
    [repair] = [r for r in outcomes[0].repairs if "out of range" in r]
    assert "2021-12-08 from the file name" in repair
    assert article.published_at == datetime(2021, 12, 8, tzinfo=BEIJING)


def test_a_post_with_no_usable_date_anywhere_is_skipped_by_name(tmp_path: Path) -> None:
    bad = _post_with_date(tmp_path, "0001-01-01-abc.md", "9999-12-31 23:59:59 +0800")
    good = _post_with_date(tmp_path, "2021-12-08-202112082206870651.md",
                           "2021-12-08 13:20:48 +0800")
    outcomes: list[Any] = []
    with open_archive(tmp_path / "a.db") as archive:
        report = import_posts([bad, good], archive, outcomes.append)
    assert report.counts["skipped"] == 1 and report.counts["new"] == 1
    [skipped] = [o for o in outcomes if o.problem]
    assert skipped.path == bad and "no usable date" in skipped.problem
    assert "out of range" in skipped.problem


# -- archives that already hold such rows ---------------------------------------------------

def _corrupt(db: Path, uid: str, when: datetime) -> None:
    """Date ``uid`` as an older caixun stored it: any time a source gave."""
    with sqlite3.connect(db) as conn:
        ts = int(when.timestamp())
        conn.execute("UPDATE articles SET published_at = ?, published_ts = ? WHERE uid = ?",
                     (when.isoformat(), ts, uid))
        conn.execute("UPDATE changes SET published_ts = ? WHERE uid = ?", (ts, uid))


def test_an_archive_holding_impossible_dates_builds(tmp_path: Path) -> None:
    db, site = tmp_path / "a.db", tmp_path / "site"
    posts = sorted(POSTS.glob("2021-12-0*.md"))[:12]
    with open_archive(db) as archive:
        import_posts(posts, archive)
        uids = [a.uid for a in archive.iter_articles()]
        build_site(archive, site, SiteConfig())  # a first, good build
    with sqlite3.connect(db) as conn:  # imported posts were never fetched: when stored
        fetched = {uid: datetime.fromisoformat(fetched or stored) for uid, fetched, stored
                   in conn.execute("SELECT uid, fetched_at, stored_at FROM articles")}
    _corrupt(db, uids[0], datetime(1, 1, 1, tzinfo=BEIJING))
    _corrupt(db, uids[1], datetime(9999, 12, 31, 23, 59, 59, tzinfo=BEIJING))
    for args in (["build"], ["build", "--full"]):
        done = subprocess.run([sys.executable, "-m", "caixun.cli", "--archive", str(db), *args,
                               "--out", str(site)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    with open_archive(db) as archive:
        for uid in uids[:2]:
            article = archive.get(uid)
            assert article is not None
            assert article.published_at == fetched[uid]
            assert article.extra["published_at_invalid"][:4] in ("0001", "9999")
    day = fetched[uids[0]].astimezone(BEIJING)
    assert list(site.glob(f"*/{day:%Y/%m/%d}/*.html")), "the re-dated article has its page"
    assert not list(site.glob("*/0001/**/*.html")) and not list(site.glob("*/9999/**/*.html"))
    with sqlite3.connect(db) as conn:
        low, high = conn.execute("SELECT min(published_ts), max(published_ts) FROM changes"
                                 ).fetchone()
    assert EARLIEST.timestamp() <= low and high < LATEST.timestamp()


def test_a_time_out_of_range_is_never_stored(tmp_path: Path) -> None:
    """The archive's own guard, for a source family that builds its Article itself."""
    from caixun.errors import ArchiveError
    from caixun.model import Article

    with open_archive(tmp_path / "a.db") as archive:
        for when in (datetime(1, 1, 1, tzinfo=BEIJING), datetime(2100, 1, 1, tzinfo=timezone.utc)):
            article = Article(uid="x:1", outlet="测试", outlet_slug="ceshi", title="标题",
                              published_at=when, file_id="1")
            with pytest.raises(ArchiveError, match="x:1"):
                archive.store(article)
        assert archive.count() == 0


def test_the_redated_time_is_recorded_in_json_export(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with open_archive(db) as archive:
        import_posts(sorted(POSTS.glob("2021-12-0*.md"))[:2], archive)
        uid = next(archive.iter_articles()).uid
    _corrupt(db, uid, datetime(9999, 12, 31, tzinfo=BEIJING))
    open_archive(db).close()  # any command that writes repairs it (read-only ones don't)
    out = tmp_path / "out.jsonl"
    done = subprocess.run([sys.executable, "-m", "caixun.cli", "--archive", str(db),
                           "export", "jsonl", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {r["uid"]: r for r in map(json.loads, out.read_text("utf-8").splitlines())}
    assert rows[uid]["extra"]["published_at_invalid"].startswith("9999-12-31")
    assert not rows[uid]["published_at"].startswith("9999")


def test_a_read_only_command_names_the_unmended_archive(tmp_path: Path) -> None:
    """Read-only commands cannot mend; they say what to do instead of a traceback."""
    db = tmp_path / "a.db"
    with open_archive(db) as archive:
        import_posts(sorted(POSTS.glob("2021-12-0*.md"))[:2], archive)
        uid = next(archive.iter_articles()).uid
    _corrupt(db, uid, datetime(1, 1, 1, tzinfo=BEIJING))
    done = subprocess.run([sys.executable, "-m", "caixun.cli", "--archive", str(db),
                           "search", "央行"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert uid in done.stderr and "caixun build" in done.stderr
    with sqlite3.connect(db) as conn:  # nothing was written
        assert conn.execute("SELECT published_at FROM articles WHERE uid = ?",
                            (uid,)).fetchone()[0].startswith("0001")

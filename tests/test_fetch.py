"""The fetcher and polling rounds against a real HTTP server on 127.0.0.1, faults included."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import newsserver as ns
from caixun.archive import SqliteArchive
from caixun.errors import FetchError, PayloadError
from caixun.fetch import (
    Fetcher,
    FetchSettings,
    decode_payload,
    fetch_round,
    poll_source,
    retry_after_seconds,
)
from caixun.sources.base import Request, Source, SourceConfig, load_source

FAST = FetchSettings(connect_timeout=1.0, read_timeout=0.5, retries=3, backoff=0.01,
                     max_backoff=0.05, per_host=2, min_gap=0.0)


@pytest.fixture
def server() -> Iterator[ns.NewsServer]:
    with ns.NewsServer() as running:  # entering starts it
        yield running
        assert not running.errors, running.errors


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _get(server: ns.NewsServer, path: str, settings: FetchSettings = FAST,
               payload: str = "json") -> Any:
    fetcher = Fetcher(settings)
    try:
        request = Request(server.url(path), payload=payload)  # type: ignore[arg-type]
        return decode_payload(request, await fetcher.get(request))
    finally:
        await fetcher.aclose()


# -- the fetcher ------------------------------------------------------------------------

@pytest.mark.parametrize("fault", [ns.status(500), ns.status(502), ns.status(503),
                                   ns.reset(), ns.slow(1.0)])
def test_transient_failures_are_retried(server: ns.NewsServer, fault: ns.Fault) -> None:
    server.route("/list", {"records": [{"id": "1"}]})
    server.fault("/list", fault, fault)
    assert _run(_get(server, "/list")) == {"records": [{"id": "1"}]}
    assert server.hits("/list") == 3


def test_other_4xx_are_not_retried(server: ns.NewsServer) -> None:
    server.route("/list", {"records": []})
    server.fault("/list", ns.status(404))
    with pytest.raises(FetchError, match=r"HTTP 404 \(not retried\)"):
        _run(_get(server, "/list"))
    assert server.hits("/list") == 1


def test_a_source_that_keeps_failing_gives_a_clear_error(server: ns.NewsServer) -> None:
    server.route("/list", {"records": []})
    server.fault("/list", *[ns.status(503)] * 4)
    with pytest.raises(FetchError, match=r"/list: HTTP 503 \(after 4 attempts\)"):
        _run(_get(server, "/list"))
    server.fault("/list", *[ns.slow(1.0)] * 4)
    with pytest.raises(FetchError, match=r"timed out \(after 4 attempts\)"):
        _run(_get(server, "/list"))


def test_retry_after_is_honoured(server: ns.NewsServer) -> None:
    server.route("/list", {"records": [{"id": "1"}]})
    server.fault("/list", ns.too_many(0.6))
    _run(_get(server, "/list"))
    first, second = server.seen("/list")
    assert second.at - first.at >= 0.55
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds("soon") is None


@pytest.mark.parametrize("fault, message", [
    (ns.truncated(), "truncated JSON"),
    (ns.html_error(), "an HTML page instead of JSON"),
    (ns.status(200, body=""), "empty response body"),
])
def test_broken_payloads_are_distinct_errors(server: ns.NewsServer, fault: ns.Fault,
                                             message: str) -> None:
    server.route("/list", {"records": [{"id": str(i), "title": "标题" * 20} for i in range(30)]})
    server.fault("/list", fault)
    with pytest.raises(PayloadError, match=message):
        _run(_get(server, "/list"))


def test_jsonp_is_unwrapped(server: ns.NewsServer) -> None:
    server.route("/list", {"records": [{"id": "1", "title": "央行"}]})
    server.fault("/list", ns.jsonp("jQuery1234_5678"))
    assert _run(_get(server, "/list")) == {"records": [{"id": "1", "title": "央行"}]}


def test_politeness_gap_and_concurrency_per_host(server: ns.NewsServer) -> None:
    server.route("/slow", lambda seen: (time.sleep(0.15), {"ok": 1})[1])
    settings = FetchSettings(read_timeout=5.0, retries=0, per_host=2, min_gap=0.1)

    async def many() -> None:
        fetcher = Fetcher(settings)
        try:
            await asyncio.gather(*(fetcher.get(Request(server.url("/slow"))) for _ in range(6)))
        finally:
            await fetcher.aclose()

    _run(many())
    starts = sorted(seen.at for seen in server.seen("/slow"))
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    # Never faster than the host's limit (0.1 s); ungated they would start together.
    # The server stamps arrivals on its own threads: on a loaded machine a stamp
    # can come late, which makes the next gap look shorter by as much.
    # So each gap is checked loosely, and all of them together closely.
    assert min(gaps) >= 0.03, gaps
    assert starts[-1] - starts[0] >= 5 * 0.1 - 0.05, gaps
    # At most 2 in flight: the third start waits for the first to finish (0.15 s).
    assert starts[2] - starts[0] >= 0.15 - 0.01


# -- polling sources ----------------------------------------------------------------------

def _configs(server: ns.NewsServer) -> list[SourceConfig]:
    url = server.url
    return [
        SourceConfig("em-rolling", "eastmoney-rolling", 60, {
            "list_url": url("/web/webapi"), "text_url": url("/NewsData/GetNewsText.do?id={code}")}),
        SourceConfig("em-media", "eastmoney-media", 60, {
            "list_url": url("/web/webapi"), "text_url": url("/NewsData/GetNewsText.do?id={code}")}),
        SourceConfig("em-fast", "eastmoney-fast", 60, {"list_url": url("/comm/web/getFastNewsList")}),
        SourceConfig("cls", "cls", 60, {"list_url": url("/v1/roll/get_roll_list")}),
        SourceConfig("jin10", "jin10", 60, {"list_url": url("/get_flash_list")}),
        SourceConfig("wallstreetcn", "wallstreetcn", 60, {"list_url": url("/apiv1/content/lives")}),
        SourceConfig("sina", "sina", 60, {"list_url": url("/api/zhibo/feed")}),
        SourceConfig("rss", "rss", 60, {"url": url("/rss.xml")}),
    ]


async def _round(sources: list[Source], archive: SqliteArchive, **kwargs: Any) -> list[Any]:
    fetcher = Fetcher(FAST)
    try:
        return await fetch_round(sources, fetcher, archive, **kwargs)
    finally:
        await fetcher.aclose()


def test_every_source_family_is_fetched_and_stored(server: ns.NewsServer,
                                                   archive: SqliteArchive) -> None:
    ns.install_all(server)
    sources = [load_source(c) for c in _configs(server)]
    reports = _run(_round(sources, archive))
    by_name = {r.name: r for r in reports}
    for name, report in by_name.items():
        assert report.error is None, report.summary()
        assert report.new > 0, report.summary()
    assert by_name["em-rolling"].new == 114  # every rolling post of the corpus
    stored = list(archive.iter_articles())
    assert len(stored) == sum(r.new for r in reports)
    assert len({a.uid for a in stored}) == len(stored)
    assert all(a.uid.split(":")[0] in by_name for a in stored)
    assert all("<script" not in a.body_html for a in stored)


def test_a_second_round_stores_nothing_twice(server: ns.NewsServer,
                                             archive: SqliteArchive) -> None:
    ns.install_all(server)
    sources = [load_source(c) for c in _configs(server)]
    first = _run(_round(sources, archive))
    count = archive.count()
    texts = server.hits("/NewsData/GetNewsText.do")
    second = _run(_round(sources, archive, due_only=False))
    assert archive.count() == count
    assert all(r.new == 0 and r.updated == 0 for r in second)
    # Unchanged list bodies are recognised, so no full text is fetched again.
    assert server.hits("/NewsData/GetNewsText.do") == texts
    assert all(r.lists_unchanged >= 1 for r in second), [r.summary() for r in second]
    assert sum(r.new for r in first) == count


def test_conditional_get_sends_validators(server: ns.NewsServer, archive: SqliteArchive) -> None:
    ns.install_all(server, etag=True)
    source = load_source(_configs(server)[3])  # cls
    _run(_round([source], archive))
    report = _run(_round([source], archive, due_only=False))[0]
    last = server.seen("/v1/roll/get_roll_list")[-1]
    assert "if-none-match" in last.headers
    assert report.lists_unchanged == 1 and report.error is None


def test_duplicates_across_lists_and_rounds_are_stored_once(server: ns.NewsServer,
                                                            archive: SqliteArchive) -> None:
    records = ns.rolling_records(repeat=5)
    server.route("/web/webapi", ns.sequence(records, ns.rolling_records(repeat=9)))
    server.route("/NewsData/GetNewsText.do", ns.by_query("id", ns.news_texts()))
    source = load_source(_configs(server)[0])
    _run(_round([source], archive))
    _run(_round([source], archive, due_only=False))
    uids = [a.uid for a in archive.iter_articles()]
    assert len(uids) == len(set(uids))
    distinct = {r["id"] for r in records["records"]}
    assert len(uids) == len(distinct)


def test_bad_items_are_reported_by_uid_and_the_rest_stored(server: ns.NewsServer,
                                                           archive: SqliteArchive) -> None:
    records = ns.rolling_records(include_broken=True)["records"]
    server.route("/web/webapi", {"records": records})
    texts = ns.news_texts(include_broken=True, inject_script=True)
    lost = records[5]
    del texts[lost["infoCode"]]  # this item's full text is never there
    server.route("/NewsData/GetNewsText.do", ns.by_query("id", texts))
    server.fault("/NewsData/GetNewsText.do", *[ns.status(500)] * 4)  # transient: retried
    source = load_source(_configs(server)[0])
    report = _run(_round([source], archive))[0]
    assert report.error is None
    assert sorted(report.item_errors) == sorted([
        "em-rolling:202205262391921712: empty title",
        f"em-rolling:{lost['id']}: full text: {server.url('/NewsData/GetNewsText.do')}"
        f"?id={lost['infoCode']}: HTTP 404 (not retried)",
    ])
    assert report.new == len(records) - 2
    assert archive.get("em-rolling:202205262391921712") is None
    assert archive.get(f"em-rolling:{lost['id']}") is None
    newest = archive.get(f"em-rolling:{records[1]['id']}")  # the one with <script> injected
    assert newest is not None and newest.body_raw and "<script>" in newest.body_raw
    assert all("<script" not in a.body_html for a in archive.iter_articles())

    # The failed items are tried again next round, and stored once they work.
    server.route("/NewsData/GetNewsText.do", ns.by_query("id", ns.news_texts()))
    again = _run(_round([source], archive, due_only=False))[0]
    assert again.new == 1 and archive.get(f"em-rolling:{lost['id']}") is not None


def test_one_failing_source_does_not_affect_the_others(server: ns.NewsServer,
                                                       archive: SqliteArchive) -> None:
    ns.install_all(server)
    server.fault("/v1/roll/get_roll_list", *[ns.status(502)] * 4)
    server.fault("/get_flash_list", ns.html_error())
    server.fault("/api/zhibo/feed", ns.renamed("result", "payload"))
    server.fault("/apiv1/content/lives", ns.empty_list())
    sources = [load_source(c) for c in _configs(server)]
    before = time.time()
    reports = {r.name: r for r in _run(_round(sources, archive))}
    assert "HTTP 502" in (reports["cls"].error or "")
    assert "HTML page" in (reports["jin10"].error or "")
    assert reports["sina"].error and "result" in reports["sina"].error
    assert "the list is empty" in (reports["wallstreetcn"].error or "")
    for name in ("em-rolling", "em-media", "em-fast", "rss"):
        assert reports[name].error is None and reports[name].new > 0
    health = archive.source_health("cls")
    assert health.consecutive_failures == 1 and "HTTP 502" in (health.last_error or "")
    assert health.next_poll >= before + 60
    assert archive.source_health("rss").consecutive_failures == 0
    assert archive.source_health("rss").last_success is not None

    # The failing source backs off, then recovers; the health record follows.
    again = _run(_round(sources, archive, due_only=False))
    assert all(r.error is None for r in again), [r.summary() for r in again]
    assert archive.source_health("cls").consecutive_failures == 0
    assert archive.source_health("cls").last_error is None


def test_failures_back_off_exponentially(server: ns.NewsServer, archive: SqliteArchive) -> None:
    server.route("/v1/roll/get_roll_list", {"errno": 1, "msg": "签名错误"})
    source = load_source(_configs(server)[3])
    delays = []
    for _ in range(3):
        start = time.time()
        report = _run(_round([source], archive, due_only=False))[0]
        assert "errno=1" in (report.error or "")
        delays.append(archive.source_health("cls").next_poll - start)
    assert 59 < delays[0] < 62 and 119 < delays[1] < 122 and 239 < delays[2] < 242
    assert archive.source_health("cls").consecutive_failures == 3


def test_only_due_sources_are_polled(server: ns.NewsServer, archive: SqliteArchive) -> None:
    ns.install_all(server)
    sources = [load_source(c) for c in _configs(server)[:2]]
    assert len(_run(_round(sources, archive))) == 2
    assert _run(_round(sources, archive)) == []  # polled just now: not due for 60 s


def test_a_changed_item_fetches_its_text_again(server: ns.NewsServer,
                                               archive: SqliteArchive, tmp_path: Path) -> None:
    records = ns.rolling_records()
    changed = {"records": [dict(records["records"][0], title="更正：" + records["records"][0]["title"]),
                           *records["records"][1:]]}
    server.route("/web/webapi", ns.sequence(records, changed))
    server.route("/NewsData/GetNewsText.do", ns.by_query("id", ns.news_texts()))
    source = load_source(_configs(server)[0])
    _run(_round([source], archive))
    texts = server.hits("/NewsData/GetNewsText.do")
    report = _run(_round([source], archive, due_only=False))[0]
    assert server.hits("/NewsData/GetNewsText.do") == texts + 1
    assert report.updated == 1
    uid = f"em-rolling:{records['records'][0]['id']}"
    assert archive.get(uid).title.startswith("更正：")  # type: ignore[union-attr]
    assert len(archive.versions(uid)) == 1


@pytest.mark.parametrize("failures", [0, 1, 10, 1023, 1024, 5000, 10**9])
def test_backoff_is_bounded_however_long_a_source_has_failed(failures: int) -> None:
    """A source failing every round for weeks must not overflow its backoff (2.0 ** 1024)."""
    from caixun.archive import SourceHealth
    from caixun.fetch import SourceReport, next_health

    now = 1_800_000_000.0
    health = SourceHealth("feed", consecutive_failures=failures)
    after = next_health(health, SourceReport("feed", error="timed out"), 60.0, now, 3600.0)
    assert after.consecutive_failures == failures + 1
    expected = 3600.0 if failures > 20 else min(3600.0, 60.0 * 2 ** failures)
    assert after.next_poll == pytest.approx(now + max(60.0, expected))

"""Today's APIs (issue 10, part 2): paging back to the newest stored item, and what
the maintained clients taught us (NEWS-APIS.md §9.2) — CLS ``last_time`` and
``is_ad``, Jin10 locked, VIP and ad flashes, Sina's desktop ``ext.docurl`` — and
``caixun sources`` telling "never reached" from "failing since".

Every round runs against the real HTTP server of ``newsserver``; the items are
built from the shared corpus at run time.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from click.testing import CliRunner

import newsserver as ns
from caixun.archive import SourceHealth, SqliteArchive
from caixun.cli import main
from caixun.errors import ConfigError
from caixun.fetch import (FAILING_SINCE, Fetcher, FetchSettings, SourceReport, failing_since,
                          fetch_round, next_health)
from caixun.sources.base import Entry, Request, Source, SourceConfig, load_source
from caixun.sources.cls import sign_params
from caixun.sources.sina import Zhibo

FAST = FetchSettings(connect_timeout=1.0, read_timeout=2.0, retries=3, backoff=0.01,
                     max_backoff=0.05, per_host=2, min_gap=0.0)
PAGE = 10  # the page size every paging test asks for


@pytest.fixture
def server() -> Iterator[ns.NewsServer]:
    with ns.NewsServer() as running:
        yield running
        assert not running.errors, running.errors


def poll(source: Source, archive: SqliteArchive) -> SourceReport:
    """One round of one source, due or not, with its health recorded."""
    async def go() -> SourceReport:
        fetcher = Fetcher(FAST)
        try:
            [report] = await fetch_round([source], fetcher, archive, due_only=False)
            return report
        finally:
            await fetcher.aclose()
    return asyncio.run(go())


# -- the three families that page --------------------------------------------------------

@dataclass(frozen=True)
class Family:
    kind: str
    path: str
    make_items: Callable[[int], list[dict[str, Any]]]
    make_route: Callable[[list[dict[str, Any]]], Any]
    id_key: str
    cursor: str  # the query parameter that says which page was asked for
    options: dict[str, Any] = field(default_factory=dict)

    def native_id(self, item: dict[str, Any]) -> str:
        return str(item[self.id_key])

    def is_later_page(self, seen: ns.Seen) -> bool:
        value = seen.query.get(self.cursor, "")
        return value not in ("", "1")


SINA = Family("sina", "/api/zhibo/feed", ns.sina_items, ns.sina_route, "id", "page")
FAST_NEWS = Family("eastmoney-fast", "/comm/web/getFastNewsList", ns.fast_news_items,
                   ns.fast_news_live, "code", "sortEnd")
COLUMNS = Family("eastmoney-columns", "/comm/web/getNewsByColumns", ns.column_items,
                 ns.column_route, "code", "page_index")
FAMILIES = [pytest.param(f, id=f.kind) for f in (SINA, FAST_NEWS, COLUMNS)]


def serve(server: ns.NewsServer, family: Family, items: list[dict[str, Any]],
          live: list[dict[str, Any]], *, route: Any = None, etag: bool = False) -> None:
    """``live`` (changed in place by the test) behind the family's path; column
    items get their article pages."""
    server.route(family.path, route or family.make_route(live), etag=etag)
    if family is COLUMNS:
        server.route("/article", ns.column_articles(items))


def source_for(server: ns.NewsServer, family: Family, name: str = "paged",
               **options: Any) -> Source:
    given: dict[str, Any] = {"list_url": server.url(family.path), "page_size": PAGE,
                             "max_pages": 5, **options}
    if family is COLUMNS:
        given["article_url"] = server.url("/article") + "?code={code}"
    return load_source(SourceConfig(name, family.kind, 60, given))


def list_requests(server: ns.NewsServer, family: Family) -> list[ns.Seen]:
    return server.seen(family.path)


def stored_ids(archive: SqliteArchive, name: str = "paged") -> list[str]:
    return [a.uid.split(":", 1)[1] for a in archive.iter_articles() if a.uid.startswith(name + ":")]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_burst_larger_than_a_page_is_caught_up_and_paging_stops_at_a_stored_item(
        server: ns.NewsServer, archive: SqliteArchive, family: Family) -> None:
    items = family.make_items(45)  # newest first
    live = list(items[30:40])  # one page listed before the burst
    serve(server, family, items, live)
    source = source_for(server, family)

    first = poll(source, archive)
    assert first.error is None and first.new == 10, first.summary()
    assert sorted(stored_ids(archive)) == sorted(family.native_id(i) for i in items[30:40])
    # Nothing was stored: the first round pages back until a page is empty (Sina's
    # page_info says that page 1 is the last one).
    assert len(list_requests(server, family)) == (1 if family is SINA else 2)

    before = len(list_requests(server, family))
    live[:0] = items[5:30]  # a burst of 25 between two polls: more than two pages
    burst = poll(source, archive)
    asked = list_requests(server, family)[before:]
    assert burst.error is None and burst.new == 25, burst.summary()
    assert burst.older_pages == 2 and "(2 older page(s) read)" in burst.summary()
    # Page 3 holds items already stored: paging stopped there, no page 4.
    assert len(asked) == 3
    assert [family.is_later_page(seen) for seen in asked] == [False, True, True]
    if family is FAST_NEWS:  # the cursor is the previous page's last realSort
        assert [s.query["sortEnd"] for s in asked] == [
            "", items[14]["realSort"], items[24]["realSort"]]
    else:
        assert [s.query[family.cursor] for s in asked] == ["1", "2", "3"]

    before = len(list_requests(server, family))
    live[:0] = items[:5]  # a few more: the first page already holds stored items
    few = poll(source, archive)
    assert few.new == 5 and few.older_pages == 0
    assert len(list_requests(server, family)) == before + 1

    ids = stored_ids(archive)
    assert len(ids) == len(set(ids)) == 40  # every item once, none missed
    assert set(ids) == {family.native_id(i) for i in items[:40]}


@pytest.mark.parametrize("family", FAMILIES)
def test_paging_is_bounded_by_max_pages(server: ns.NewsServer, archive: SqliteArchive,
                                        family: Family) -> None:
    items = family.make_items(60)
    serve(server, family, items, list(items))
    report = poll(source_for(server, family, max_pages=3), archive)
    assert report.error is None and report.new == 30 and report.older_pages == 2
    assert len(list_requests(server, family)) == 3
    assert set(stored_ids(archive)) == {family.native_id(i) for i in items[:30]}


def test_later_pages_are_named_after_the_first(server: ns.NewsServer,
                                              archive: SqliteArchive) -> None:
    class Recording(Zhibo):
        keys: list[str] = []

        def next_page(self, request: Request, payload: Any,
                      entries: list[Entry]) -> Request | None:
            self.keys.append(request.key)
            return super().next_page(request, payload, entries)

    items = ns.sina_items(40)
    server.route(SINA.path, ns.sina_route(items))
    source = Recording(SourceConfig("paged", "sina", 60, {
        "list_url": server.url(SINA.path), "page_size": PAGE, "max_pages": 4}))
    poll(source, archive)
    assert source.keys == ["list", "list:page2", "list:page3"]  # page 4 is the last read


@pytest.mark.parametrize("family", FAMILIES)
def test_max_pages_1_reads_one_page(server: ns.NewsServer, archive: SqliteArchive,
                                    family: Family) -> None:
    items = family.make_items(30)
    serve(server, family, items, list(items))
    report = poll(source_for(server, family, max_pages=1), archive)
    assert report.new == 10 and len(list_requests(server, family)) == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_a_broken_later_page_keeps_the_first_pages_items(
        server: ns.NewsServer, archive: SqliteArchive, family: Family) -> None:
    items = family.make_items(30)
    live = list(items)
    normal = family.make_route(live)

    def later_pages_fail(seen: ns.Seen) -> Any:
        if family.is_later_page(seen):
            return ns.Reply("系统繁忙", status=503)
        return normal(seen)

    serve(server, family, items, live, route=later_pages_fail)
    name = f"broken-{family.kind}"
    report = poll(source_for(server, family, name=name), archive)
    assert report.error is None, report.summary()
    assert report.new == 10
    assert set(stored_ids(archive, name)) == {family.native_id(i) for i in items[:10]}
    [note] = report.notes
    assert note.startswith("page 2 of list 'list' not read, paging stopped (the items of "
                           "page 1 are kept): ") and "HTTP 503" in note
    later = [s for s in list_requests(server, family) if family.is_later_page(s)]
    assert len(later) == FAST.retries + 1  # retried like any 5xx, then given up
    health = archive.source_health(name)
    assert health.consecutive_failures == 0 and health.last_error is None


@pytest.mark.parametrize("family", FAMILIES)
def test_only_the_first_page_is_conditional_and_keeps_state(
        server: ns.NewsServer, archive: SqliteArchive, family: Family) -> None:
    items = family.make_items(25)
    serve(server, family, items, list(items), etag=True)
    source = source_for(server, family)
    poll(source, archive)
    first_round = list_requests(server, family)
    assert len(first_round) == (3 if family is SINA else 4)  # 10 + 10 + 5 (+ empty)
    assert all("if-none-match" not in seen.headers for seen in first_round)
    assert archive.source_health("paged").lists.keys() == {"list"}  # no "list:page2"…
    again = poll(source, archive)
    [asked] = list_requests(server, family)[len(first_round):]
    assert "if-none-match" in asked.headers and not family.is_later_page(asked)
    assert again.lists_unchanged == 1 and again.new == 0


@pytest.mark.parametrize("family", [pytest.param(SINA, id="sina"),
                                    pytest.param(COLUMNS, id="eastmoney-columns")])
def test_a_list_that_moves_while_it_is_paged_loses_nothing(
        server: ns.NewsServer, archive: SqliteArchive, family: Family) -> None:
    """Page numbers shift when items arrive between two pages: the shifted items
    come twice (stored once) and none is skipped."""
    items = family.make_items(33)
    live = list(items[3:])
    normal = family.make_route(live)
    arrived = []

    def moving(seen: ns.Seen) -> Any:
        reply = normal(seen)
        if seen.query.get(family.cursor) == "1" and not arrived:
            arrived.append(True)
            live[:0] = items[:3]  # right after the first page was served
        return reply

    serve(server, family, items, live, route=moving)
    source = source_for(server, family)
    first = poll(source, archive)
    assert first.error is None and first.new == 30
    second = poll(source, archive)
    assert second.new == 3
    ids = stored_ids(archive)
    assert len(ids) == len(set(ids)) == 33


def test_a_server_that_ignores_the_cursor_is_not_read_max_pages_times(
        server: ns.NewsServer, archive: SqliteArchive) -> None:
    items = ns.sina_items(10)
    page = {"result": {"status": {"code": 0, "msg": "OK"}, "data": {"feed": {
        "list": items, "page_info": {"totalPage": 900, "pageSize": 10, "page": 1}}}}}
    server.route(SINA.path, page)  # the same page whatever ``page`` says
    report = poll(source_for(server, SINA), archive)
    assert report.new == 10
    assert len(server.seen(SINA.path)) == 2  # the repeat brought nothing new: stop


# -- the paging contract, family by family -------------------------------------------------

def test_request_with_params_sets_in_place_and_appends() -> None:
    request = Request("http://x/", params=(("a", "1"), ("b", "2")), key="list")
    changed = request.with_params({"b": "3", "c": "4"})
    assert changed.params == (("a", "1"), ("b", "3"), ("c", "4"))
    assert changed.key == "list" and request.params == (("a", "1"), ("b", "2"))


def test_fast_news_next_page_prefers_data_sort_end_then_the_last_real_sort() -> None:
    source = load_source(SourceConfig("f", "eastmoney-fast"))
    [request] = source.list_requests()
    items = ns.fast_news_items(3)
    with_cursor = {"code": "1", "data": {"fastNewsList": items, "sortEnd": "123"}}
    following = source.next_page(request, with_cursor, [])
    assert following is not None and dict(following.params)["sortEnd"] == "123"
    assert dict(following.params)["req_trace"]  # still present, or the API answers null
    bare = {"code": "1", "data": {"fastNewsList": items}}
    following = source.next_page(request, bare, [])
    assert following is not None
    assert dict(following.params)["sortEnd"] == items[-1]["realSort"]
    assert [k for k, _ in following.params] == [k for k, _ in request.params]
    # No cursor, or the one just used: no further page.
    assert source.next_page(request, {"code": "1", "data": {"fastNewsList": []}}, []) is None
    assert source.next_page(following, bare, []) is None


def test_column_news_next_page_increments_page_index() -> None:
    source = load_source(SourceConfig("c", "eastmoney-columns"))
    [request] = source.list_requests()
    second = source.next_page(request, {"code": "1", "data": {"list": []}}, [])
    assert second is not None and dict(second.params)["page_index"] == "2"
    third = source.next_page(second, {"code": "1", "data": {"list": []}}, [])
    assert third is not None and dict(third.params)["page_index"] == "3"


def test_sina_next_page_increments_page_and_stops_at_the_last() -> None:
    source = load_source(SourceConfig("s", "sina"))
    [request] = source.list_requests()
    def feed(total: Any) -> dict[str, Any]:
        return {"result": {"status": {"code": 0}, "data": {"feed": {
            "list": [], "page_info": {"totalPage": total}}}}}
    second = source.next_page(request, feed(900), [])
    assert second is not None and dict(second.params)["page"] == "2"
    assert source.next_page(request, feed(1), []) is None
    assert source.next_page(second, feed("2"), []) is None  # a count given as text
    assert source.next_page(request, feed(None), []) is not None  # unknown: page on


@pytest.mark.parametrize("kind, default", [("sina", 5), ("eastmoney-fast", 5),
                                           ("eastmoney-columns", 3)])
def test_max_pages_option(kind: str, default: int) -> None:
    assert load_source(SourceConfig("x", kind)).max_pages == default
    assert load_source(SourceConfig("x", kind, options={"max_pages": 50})).max_pages == 50
    for bad in (0, 51, "5", 2.5):
        with pytest.raises(ConfigError, match="option max_pages must be a whole number "
                                              "from 1 to 50"):
            load_source(SourceConfig("x", kind, options={"max_pages": bad}))


@pytest.mark.parametrize("kind", ["cls", "jin10", "wallstreetcn", "eastmoney-rolling", "rss"])
def test_families_that_do_not_page_read_one_page(kind: str) -> None:
    options = {"url": "https://example.org/feed.xml"} if kind == "rss" else {}
    source = load_source(SourceConfig("x", kind, options=options))
    assert source.max_pages == 1
    with pytest.raises(ConfigError, match="unknown option"):
        load_source(SourceConfig("x", kind, options={**options, "max_pages": 3}))


# -- 财联社: last_time, sv, is_ad ------------------------------------------------------------

def test_cls_asks_with_the_current_time_and_drops_ads(server: ns.NewsServer,
                                                     archive: SqliteArchive) -> None:
    payload = ns.cls_roll(n=6)
    roll = payload["data"]["roll_data"]
    flags: list[Any] = [1, "1", True, 0, "0", None]
    for item, flag in zip(roll, flags):
        item["is_ad"] = flag
    server.route("/v1/roll/get_roll_list", payload)
    source = load_source(SourceConfig("cls", "cls", 60, {
        "list_url": server.url("/v1/roll/get_roll_list")}))
    before = int(time.time())
    report = poll(source, archive)
    after = int(time.time())
    assert report.error is None and report.new == 3
    assert set(stored_ids(archive, "cls")) == {str(i["id"]) for i in roll[3:]}
    [seen] = server.seen("/v1/roll/get_roll_list")
    assert before <= int(seen.query["last_time"]) <= after  # now, in Unix seconds
    assert seen.query["sv"] == "8.4.6"  # akshare's version is the default
    signed = {k: v for k, v in seen.query.items() if k != "sign"}
    assert seen.query["sign"] == sign_params(signed)  # last_time is signed too


# -- 金十: locked, VIP and ad flashes -----------------------------------------------------------

@pytest.mark.parametrize("changes, kept", [
    ({"lock": True}, False), ({"lock": 1}, False), ({"lock": "true"}, False),
    ({"lock": "1"}, False), ({"lock": False}, True), ({"lock": 0}, True),
    ({"lock": "0"}, True), ({"lock": "false"}, True), ({"lock": None}, True),
    ({"vip_level": 1}, False), ({"vip_level": "2"}, False), ({"vip_level": 0.5}, False),
    ({"vip_level": 0}, True), ({"vip_level": "0"}, True), ({"vip_level": None}, True),
    ({"vip_level": ""}, True), ({"vip_level": "abc"}, True), ({"vip_level": -1}, True),
    ({"channel": [5]}, False), ({"channel": ["5"]}, False), ({"channel": [1, 5]}, False),
    ({"channel": [1]}, True), ({"channel": [15, 50]}, True), ({"channel": None}, True),
    ({"channel": "5"}, True),  # not a list: no channels to read
])
def test_jin10_drops_locked_vip_and_ad_flashes(server: ns.NewsServer, archive: SqliteArchive,
                                              changes: dict[str, Any], kept: bool) -> None:
    payload = ns.jin10_flash(n=3)
    target = payload["data"][1]
    target.update(changes)
    server.route("/get_flash_list", payload)
    source = load_source(SourceConfig("jin10", "jin10", 60, {
        "list_url": server.url("/get_flash_list")}))
    report = poll(source, archive)
    assert report.error is None
    ids = set(stored_ids(archive, "jin10"))
    assert {payload["data"][0]["id"], payload["data"][2]["id"]} <= ids
    assert (target["id"] in ids) is kept


# -- 新浪: the desktop url ----------------------------------------------------------------------

def test_sina_links_the_desktop_page_from_ext(server: ns.NewsServer,
                                              archive: SqliteArchive) -> None:
    items = ns.sina_items(2)
    desktop = "https://finance.sina.com.cn/7x24/2026-08-13/doc-inavxyz1234567.shtml"
    mobile = "https://finance.sina.cn/7x24/2026-08-13/detail-inavxyz1234567.d.html"
    items[0].update(ext=json.dumps({"stocks": [], "docurl": desktop}), docurl=mobile)
    items[1].update(ext=json.dumps({"stocks": []}), docurl=mobile)
    server.route(SINA.path, ns.sina_route(items))
    poll(source_for(server, SINA, name="sina"), archive)
    assert archive.get(f"sina:{items[0]['id']}").url == desktop  # type: ignore[union-attr]
    assert archive.get(f"sina:{items[1]['id']}").url == mobile  # type: ignore[union-attr]
    [seen] = server.seen(SINA.path)
    assert seen.query["pagesize"] == seen.query["page_size"] == str(PAGE)


# -- caixun sources: never reached, failing since ----------------------------------------------

def test_failing_since_marks_the_first_failure_of_a_run() -> None:
    t0 = 1_800_000_000.0
    ok = next_health(SourceHealth("s"), SourceReport("s", state={"list": {"etag": "x"}}),
                     60, t0, 3600)
    assert failing_since(ok) is None and ok.lists == {"list": {"etag": "x"}}
    down = next_health(ok, SourceReport("s", error="HTTP 503"), 60, t0 + 60, 3600)
    since = failing_since(down)
    assert since is not None and since.startswith("2027-01-15T08:01:00")
    assert down.lists["list"] == {"etag": "x"}  # the conditional state is kept
    still = next_health(down, SourceReport("s", error="HTTP 503"), 60, t0 + 600, 3600)
    still = next_health(still, SourceReport("s", error="HTTP 503"), 60, t0 + 700, 3600)
    assert failing_since(still) == since and still.consecutive_failures == 3
    assert still.last_attempt is not None and still.last_attempt > since
    # A success ends the run; the reserved key never reaches the request state.
    back = next_health(still, SourceReport("s", state={**still.lists}), 60, t0 + 900, 3600)
    assert failing_since(back) is None and FAILING_SINCE not in back.lists
    assert back.lists == {"list": {"etag": "x"}}
    again = next_health(back, SourceReport("s", error="timed out"), 60, t0 + 960, 3600)
    assert failing_since(again) == again.last_attempt != since


def _cli_config(tmp_path: Path, server: ns.NewsServer) -> None:
    (tmp_path / "caixun.toml").write_text(f"""
[fetch]
retries = 0
min_gap = 0.0

[[sources]]
name = "cls"
kind = "cls"
list_url = "{server.url('/v1/roll/get_roll_list')}"

[[sources]]
name = "sina"
kind = "sina"
list_url = "{server.url('/api/zhibo/feed')}"
""", encoding="utf-8")


def _sources_json() -> dict[str, Any]:
    result = CliRunner().invoke(main, ["sources", "--json"])
    assert result.exit_code == 0, result.output
    return {row["name"]: row for row in json.loads(result.stdout)}


def _row(table: str, name: str) -> str:
    [line] = [line for line in table.splitlines() if line.strip("│┃ ").startswith(name + " ")]
    return line


def test_sources_tells_never_reached_from_failing_since(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: ns.NewsServer) -> None:
    monkeypatch.chdir(tmp_path)
    _cli_config(tmp_path, server)
    server.route("/v1/roll/get_roll_list", ns.cls_roll())
    server.route("/api/zhibo/feed", "系统繁忙", status=503)  # never works
    CliRunner().invoke(main, ["fetch"])
    server.fault("/v1/roll/get_roll_list", ns.status(502))
    assert CliRunner().invoke(main, ["fetch", "--source", "cls", "--source", "sina"]
                              ).exit_code == 1

    rows = _sources_json()
    sina, cls = rows["sina"], rows["cls"]
    assert sina["state"] == "never reached" and sina["last_success"] is None
    assert sina["consecutive_failures"] == 2
    assert sina["failing_since"] is not None and sina["failing_since"] <= sina["last_attempt"]
    assert cls["state"] == "failing" and cls["last_success"] is not None
    assert cls["failing_since"] == cls["last_attempt"] >= cls["last_success"]

    table = CliRunner().invoke(main, ["sources"]).stdout
    assert "never reached since" in _row(table, "sina")
    assert "failing since" in _row(table, "cls")
    assert cls["last_success"][:10] in _row(table, "cls")  # the last success is still shown

    server.route("/api/zhibo/feed", ns.sina_route(ns.sina_items(5)))  # both work again
    assert CliRunner().invoke(main, ["fetch", "--source", "cls", "--source", "sina"]
                              ).exit_code == 0
    rows = _sources_json()
    assert all(r["state"] == "ok" and r["failing_since"] is None for r in rows.values())
    table = CliRunner().invoke(main, ["sources"]).stdout
    assert "since" not in table

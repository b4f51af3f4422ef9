"""The securities lists (East Money's quote list API) against a real HTTP server on
127.0.0.1: names learned page by page, faults, health, and the re-tag of older
articles by `caixun fetch` and `caixun run`. 财联社 and 新浪 names too.

The rows are the East Money quote links of the rss-days corpus (read at test time,
never copied here): stocks of every market, boards, and Shenzhen class shares in
the list's own spelling (``万  科Ａ``).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

import newsserver as ns
from caixun.archive import SqliteArchive, open_archive
from caixun.errors import ConfigError
from caixun.fetch import FetchSettings, Fetcher, fetch_round, poll_and_record, retag_step
from caixun.model import Article
from caixun.normalize import BEIJING
from caixun.securities import SecurityName, from_eastmoney
from caixun.settings import load_settings
from caixun.sources.base import NameSource, SourceConfig, load_source
from caixun.sources.cls import Telegraph
from caixun.sources.securities_em import SecurityLists, clean_name
from caixun.sources.sina import Zhibo
from conftest import REPO

FAST = FetchSettings(connect_timeout=1.0, read_timeout=2.0, retries=2, backoff=0.01,
                     max_backoff=0.05, per_host=2, min_gap=0.0)
PATH = ns.PATHS["clist"]
SH, SZ = ns.CLIST_FILTERS["sh"], ns.CLIST_FILTERS["sz"]


@pytest.fixture(scope="module")
def lists() -> dict[str, list[dict[str, Any]]]:
    return ns.clist_lists()


@pytest.fixture
def server(lists: dict[str, list[dict[str, Any]]]) -> Iterator[ns.NewsServer]:
    with ns.NewsServer() as running:
        running.route(PATH, ns.clist_route(_by_filter(lists)))
        yield running
        assert not running.errors, running.errors


def _by_filter(lists: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {ns.CLIST_FILTERS[key]: lists[key] for key in ns.CLIST_FILTERS}


def _source(server: ns.NewsServer, name: str = "em-securities", **options: Any) -> NameSource:
    config = SourceConfig(name, "eastmoney-securities", 86_400,
                          {"list_url": server.url(PATH), "page_size": 50, **options})
    source = load_source(config)
    assert isinstance(source, NameSource)
    return source


def _expected(rows: list[dict[str, Any]]) -> dict[str, str]:
    """code → name of the rows that are securities (the first name of a code)."""
    found: dict[str, str] = {}
    for row in rows:
        code = from_eastmoney(f"{row['f13']}.{row['f12']}")
        if code:
            found.setdefault(code, clean_name(row["f14"]))
    return found


def _stored(archive: SqliteArchive) -> dict[str, tuple[str, ...]]:
    return {row.code: row.names for row in archive.securities()}


def _poll(source: NameSource, archive: SqliteArchive, settings: FetchSettings = FAST) -> Any:
    async def one() -> Any:
        fetcher = Fetcher(settings)
        try:
            return await poll_and_record(source, fetcher, archive)
        finally:
            await fetcher.aclose()
    return asyncio.run(one())


def _pages(server: ns.NewsServer, fs: str) -> list[int]:
    return [int(seen.query["pn"]) for seen in server.seen(PATH) if seen.query["fs"] == fs]


def _article(n: int, title: str, body: str, **extra: Any) -> Article:
    return Article(uid=f"test:{n}", outlet="测试社", outlet_slug="ceshishe", title=title,
                   published_at=datetime(2026, 5, 1, 9, n, tzinfo=BEIJING), file_id=f"t{n}",
                   body_html=f"<p>{body}</p>", body_text=body, extra=extra)


def _tags(archive: SqliteArchive, uid: str) -> tuple[str, ...]:
    [ref] = archive.refs_by_uid([uid])
    return archive.article_codes([ref.id]).get(ref.id, ())


# -- the family ---------------------------------------------------------------------------

def test_requests_per_market_as_akshare_sends_them() -> None:
    source = load_source(SourceConfig("x", "eastmoney-securities", 60, {
        "fs_bj": "", "fs_us": "m:105+t:1,m:106", "page_size": 500}))
    assert isinstance(source, SecurityLists) and source.default_every == 86_400
    requests = source.list_requests()
    assert [r.key for r in requests] == ["list:sh", "list:sz", "list:hk", "list:us"]  # bj off
    first = requests[0]
    assert first.url == "https://82.push2.eastmoney.com/api/qt/clist/get"
    params = dict(first.params)
    assert params == {"pn": "1", "pz": "500", "po": "1", "np": "1", "fltt": "2", "invt": "2",
                      "fid": "f12", "fs": "m:1 t:2,m:1 t:23", "fields": "f12,f13,f14",
                      "ut": "bd1d9ddb04089700cf9c27f6f7426281"}
    assert dict(requests[3].params)["fs"] == "m:105 t:1,m:106"  # "+" is AND, sent as a space
    assert dict(first.headers)["Referer"] == "https://quote.eastmoney.com/"


@pytest.mark.parametrize("options, problem", [
    ({key: "" for key in ("fs_sh", "fs_sz", "fs_bj", "fs_hk", "fs_us")}, r"every fs_\* option is empty"),
    ({"fs_sh": "m:1 t:2;drop"}, "option fs_sh must be an East Money fs filter"),
    ({"page_size": 0}, "option page_size must be a whole number from 1 to 5000"),
    ({"max_pages": 1001}, "option max_pages must be a whole number from 1 to 1000"),
])
def test_bad_options_are_refused(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_source(SourceConfig("x", "eastmoney-securities", 60, options))


def test_polled_daily_unless_the_table_says_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "caixun.toml"
    path.write_text('[[sources]]\nname = "names"\nkind = "eastmoney-securities"\n\n'
                    '[[sources]]\nname = "names-hourly"\nkind = "eastmoney-securities"\n'
                    'every = 3600\n\n[[sources]]\nname = "cls"\nkind = "cls"\n',
                    encoding="utf-8")
    assert [c.every for c in load_settings(path).sources] == [86_400, 3600, 60]


def test_names_are_cleaned_as_the_archive_compares_them() -> None:
    assert clean_name("万  科Ａ") == "万科A"
    assert clean_name(" 深桑达Ａ ") == "深桑达A"
    assert clean_name("Klarna  Group plc") == "Klarna Group plc"
    assert clean_name("ＳＴ 华微") == "ST华微"


# -- a round against the server --------------------------------------------------------------

def test_every_page_of_every_list_is_read_and_its_names_stored(
        server: ns.NewsServer, archive: SqliteArchive,
        lists: dict[str, list[dict[str, Any]]]) -> None:
    source = _source(server)
    report = _poll(source, archive)
    assert report.error is None, report.summary()
    expected: dict[str, str] = {}
    for key in ns.CLIST_FILTERS:
        expected.update(_expected(lists[key]))
        # Page until pn * pz >= total: every page once, none past the end.
        assert _pages(server, ns.CLIST_FILTERS[key]) == \
            list(range(1, math.ceil(len(lists[key]) / 50) + 1)), key
    stored = _stored(archive)
    assert set(stored) == set(expected)
    assert all(expected[code] in names for code, names in stored.items())
    # The list's own spelling, in the form names are compared in.
    assert stored["000002.SZ"][0] == "万科A"
    assert any(code.endswith(".BJ") for code in stored)
    assert any(code.endswith(".HK") for code in stored) and "TSLA.US" in stored
    # Indices and boards are no securities: left out, counted.
    assert "000001.SH" not in stored and not any("BK" in code for code in stored)
    assert report.not_securities == 5
    assert report.names == sum(len(_expected(lists[k])) for k in ns.CLIST_FILTERS)
    assert report.names_new == report.names and report.pages == len(server.seen(PATH))
    assert f"{report.names} names read ({report.names_new} new)" in report.summary()
    assert {row.source for row in archive.securities()} == {"eastmoney-securities"}
    # Same fetcher, same health record as a news source; polled again in a day.
    health = archive.source_health("em-securities")
    assert health.consecutive_failures == 0 and health.last_error is None
    assert health.last_success and health.next_poll == pytest.approx(time.time() + 86_400, abs=60)
    headers = server.seen(PATH)[0].headers
    assert headers["referer"] == "https://quote.eastmoney.com/" and "Mozilla" in \
        headers["user-agent"]
    # The next day's list teaches nothing new, and says so.
    again = _poll(source, archive)
    assert again.error is None and again.names == report.names and again.names_new == 0


def test_a_page_that_fails_then_succeeds_is_retried(
        server: ns.NewsServer, archive: SqliteArchive,
        lists: dict[str, list[dict[str, Any]]]) -> None:
    server.route(PATH, ns.clist_route(_by_filter(lists), page_replies={
        (SH, 2): [ns.Reply("服务器错误", status=500)]}))
    report = _poll(_source(server, fs_sz="", fs_bj="", fs_hk="", fs_us=""), archive)
    assert report.error is None, report.summary()
    assert _pages(server, SH) == [1, 2, 2] + list(range(3, math.ceil(len(lists["sh"]) / 50) + 1))
    assert set(_stored(archive)) == set(_expected(lists["sh"]))
    assert archive.source_health("em-securities").consecutive_failures == 0


@pytest.mark.parametrize("reply, error", [
    (ns.Reply("var quotes = 系统繁忙", content_type="text/plain; charset=utf-8"),
     "invalid JSON"),
    (ns.Reply({"rc": 102, "data": None}), "rc=102"),
    (ns.Reply({"data": {"total": 1, "diff": []}}), "no rc"),
])
def test_a_page_that_fails_keeps_the_names_read_before_it(
        server: ns.NewsServer, archive: SqliteArchive, lists: dict[str, list[dict[str, Any]]],
        reply: ns.Reply, error: str) -> None:
    server.route(PATH, ns.clist_route(_by_filter(lists), page_replies={(SH, 3): [reply]}))
    report = _poll(_source(server, fs_bj="", fs_hk="", fs_us=""), archive)
    assert _pages(server, SH) == [1, 2, 3]  # a payload error is not retried
    stored = set(_stored(archive))
    assert set(_expected(lists["sh"][:100])) <= stored  # pages 1-2: kept
    assert not set(_expected(lists["sh"][100:])) - set(_expected(lists["sh"][:100])) & stored
    assert set(_expected(lists["sz"])) <= stored  # the next list was still read
    # The round failed, in the health record as for a news source.
    assert report.error is not None and error in report.error
    assert "list:sh page 3" in report.error and "names of pages 1-2 are kept" in report.error
    assert report.summary().startswith("em-securities: FAILED: list:sh page 3")
    assert report.summary().endswith(f"; stored all the same: {report.names} names read "
                                     f"({report.names_new} new) from {report.pages} page(s)")
    health = archive.source_health("em-securities")
    assert health.consecutive_failures == 1 and health.last_error == report.error
    assert health.next_poll >= time.time() + 86_000  # backs off from its own interval


def test_malformed_rows_are_warned_about_and_the_rest_stored(
        server: ns.NewsServer, archive: SqliteArchive,
        lists: dict[str, list[dict[str, Any]]]) -> None:
    good = lists["sz"][:60]
    bad: list[Any] = [{"f12": "000888", "f13": 0}, {"f12": 600000, "f13": 1, "f14": "浦发"},
                      {"f12": "000999", "f13": "深", "f14": "名字"}, ["000001", 0, "平安"],
                      {"f12": "-", "f13": 0, "f14": "-"}]
    rows = good[:55] + bad + good[55:]
    server.route(PATH, ns.clist_route({SZ: rows}))
    report = _poll(_source(server, fs_sh="", fs_bj="", fs_hk="", fs_us=""), archive)
    assert report.error is None, report.summary()
    assert set(_stored(archive)) == set(_expected(good))
    assert len(report.item_errors) == 5
    first = report.item_errors[0]
    # Page 2 of 50 rows: the bad rows are rows 6 to 10 of it.
    assert first.startswith("em-securities (eastmoney-securities): list:sz page 2 row 6: "
                            "f14 (the name) is missing")
    assert "'000888'" in first
    assert "row 7: f12 (the code)" in report.item_errors[1]
    assert "row 8: f13 (the market id)" in report.item_errors[2]
    assert "row 9: a list, not a JSON object" in report.item_errors[3]
    assert "5 malformed row(s) left out" in report.summary()
    assert archive.source_health("em-securities").consecutive_failures == 0


def test_data_null_past_the_end_ends_the_list(
        server: ns.NewsServer, archive: SqliteArchive,
        lists: dict[str, list[dict[str, Any]]]) -> None:
    rows = lists["sh"][:650]  # 13 full pages of 50: the total is the only end mark
    route = ns.clist_route({SH: rows})

    def overstated(seen: ns.Seen) -> Any:  # a total larger than the rows: null past them
        reply = route(seen)
        if isinstance(reply, dict) and reply["data"]:
            reply["data"]["total"] += 1000
        return reply

    server.route(PATH, overstated)
    report = _poll(_source(server, fs_sz="", fs_bj="", fs_hk="", fs_us=""), archive)
    assert report.error is None, report.summary()
    assert _pages(server, SH) == list(range(1, 15))  # page 14: data null, the end
    assert set(_stored(archive)) == set(_expected(rows))


def test_a_server_that_caps_the_page_size_is_paged_with_its_size(
        server: ns.NewsServer, archive: SqliteArchive,
        lists: dict[str, list[dict[str, Any]]]) -> None:
    server.route(PATH, ns.clist_route({SH: lists["sh"]}, max_page_size=100))
    report = _poll(_source(server, page_size=5000, fs_sz="", fs_bj="", fs_hk="", fs_us=""),
                   archive)
    assert report.error is None, report.summary()
    asked = [(int(s.query["pn"]), int(s.query["pz"])) for s in server.seen(PATH)]
    pages = math.ceil(len(lists["sh"]) / 100)
    assert asked == [(1, 5000)] + [(n, 100) for n in range(2, pages + 1)]
    assert set(_stored(archive)) == set(_expected(lists["sh"]))


def test_max_pages_bounds_a_list_and_says_so(server: ns.NewsServer,
                                             archive: SqliteArchive) -> None:
    report = _poll(_source(server, max_pages=2, fs_sz="", fs_bj="", fs_hk="", fs_us=""),
                   archive)
    assert report.error is None and _pages(server, SH) == [1, 2]
    assert "list:sh: stopped after 2 pages (max_pages)" in report.summary()


def test_a_filter_that_matches_nothing_fails_the_source(server: ns.NewsServer,
                                                        archive: SqliteArchive) -> None:
    report = _poll(_source(server, fs_sh="m:1 t:999", fs_sz="", fs_bj="", fs_hk="",
                           fs_us=""), archive)
    assert report.error is not None and "data is null on the first page" in report.error
    assert "'m:1 t:999'" in report.error
    health = archive.source_health("em-securities")
    assert health.consecutive_failures == 1 and health.last_success is None


def test_an_unreachable_list_fails_with_the_fetchers_error(archive: SqliteArchive) -> None:
    source = load_source(SourceConfig("em-securities", "eastmoney-securities", 86_400, {
        "list_url": "http://127.0.0.1:9/api/qt/clist/get", "fs_sz": "", "fs_bj": "",
        "fs_hk": "", "fs_us": ""}))
    assert isinstance(source, NameSource)
    report = _poll(source, archive, FetchSettings(retries=0, connect_timeout=1.0))
    assert report.error is not None and report.error.startswith("list:sh page 1: http://")
    assert archive.securities() == []


# -- names that news sources carry ---------------------------------------------------------

def test_cls_stock_list_names_are_learned_and_tag(server: ns.NewsServer, archive: SqliteArchive,
                                                   lists: dict[str, list[dict[str, Any]]]) -> None:
    payload = ns.cls_roll()
    stocks = [row for row in lists["sh"] + lists["sz"] if _expected([row])][:len(
        payload["data"]["roll_data"])]
    for item, row in zip(payload["data"]["roll_data"], stocks):
        prefix = "sh" if row["f13"] == 1 else "sz"
        item["stock_list"] = [{"name": clean_name(row["f14"]), "StockID": prefix + row["f12"],
                               "RiseRange": 1.5}]
    server.route("/v1/roll/get_roll_list", payload)
    source = load_source(SourceConfig("cls", "cls", 60, {
        "list_url": server.url("/v1/roll/get_roll_list")}))

    async def one() -> Any:
        fetcher = Fetcher(FAST)
        try:
            return await poll_and_record(source, fetcher, archive)
        finally:
            await fetcher.aclose()

    report = asyncio.run(one())
    assert report.error is None and report.new == len(stocks)
    stored = _stored(archive)
    for item, row in zip(payload["data"]["roll_data"], stocks):
        code = from_eastmoney(f"{row['f13']}.{row['f12']}")
        assert code is not None and clean_name(row["f14"]) in stored[code]
        article = archive.get(f"cls:{item['id']}")
        assert article is not None
        assert article.extra["stock_names"] == [[item["stock_list"][0]["StockID"],
                                                 clean_name(row["f14"])]]
        assert code in _tags(archive, f"cls:{item['id']}")  # its StockID tags it
    assert {row.source for row in archive.securities()} == {article.outlet_slug}
    # A name learned from 财联社 tags a later article that only writes the name.
    first = stocks[0]
    archive.store(_article(1, f"{clean_name(first['f14'])}公告", "详见公告。"))
    assert from_eastmoney(f"{first['f13']}.{first['f12']}") in _tags(archive, "test:1")


def test_cls_and_sina_keep_names_next_to_codes() -> None:
    fetched = datetime(2024, 5, 23, 15, 0, tzinfo=timezone.utc)
    cls = load_source(SourceConfig("cls", "cls", 60))
    assert isinstance(cls, Telegraph)
    item = {"id": 1, "ctime": 1716447005, "title": "兆易创新公告", "content": "公告内容。",
            "stock_list": [{"name": "兆易创新", "StockID": "sh603986", "RiseRange": 2.31},
                           {"name": "", "StockID": "sz000001"}, {"StockID": "sz000002"}, "x"]}
    [entry] = cls.parse_list(cls.list_requests()[0], {"errno": 0,
                                                       "data": {"roll_data": [item]}})
    article = cls.to_article(entry, None, fetched)
    assert article.extra["stocks"] == ["sh603986", "sz000001", "sz000002"]
    assert article.extra["stock_names"] == [["sh603986", "兆易创新"]]

    sina = load_source(SourceConfig("sina", "sina", 60))
    assert isinstance(sina, Zhibo)
    ext = {"stocks": [{"market": "cn", "symbol": "sh601318", "key": "中国平安"},
                      {"market": "hk", "symbol": "00700", "key": "腾讯控股"},
                      {"market": "us", "symbol": "aapl", "key": "苹果"},
                      {"market": "fx", "symbol": "usdcny", "key": "美元人民币"},
                      {"market": "cn", "symbol": "sh600519"}]}
    item = {"id": 2, "rich_text": "【标题】正文。", "create_time": "2024-05-23 10:32:05",
            "ext": json.dumps(ext, ensure_ascii=False)}
    [entry] = sina.parse_list(sina.list_requests()[0], {"result": {
        "status": {"code": 0}, "data": {"feed": {"list": [item]}}}})
    article = sina.to_article(entry, None, fetched)
    # Prefixed by market as from_native reads them; a forex pair is no security.
    assert article.extra["stock_names"] == [["sh601318", "中国平安"], ["hk00700", "腾讯控股"],
                                            ["gb_aapl", "苹果"]]


# -- older articles get the names: caixun fetch and caixun run ----------------------------------

def _stored_before(archive: SqliteArchive, name: str) -> None:
    """An article naming ``name`` (a plain-text mention, no link), stored before
    anything taught the name, and the archive's own first pass done."""
    archive.store(_article(1, f"{name}发布公告", f"{name}今日发布公告，业绩预增。"))
    archive.store(_article(2, "天气晴", "今日天气晴。"))
    while archive.retag():
        pass
    assert _tags(archive, "test:1") == () and not archive.retag_pending()


def _a_name(lists: dict[str, list[dict[str, Any]]]) -> tuple[str, str]:
    """(code, name) of a Shanghai stock whose name is a strong (four-character) one."""
    for row in lists["sh"]:
        code = from_eastmoney(f"{row['f13']}.{row['f12']}")
        if code and len(row["f14"]) == 4:
            return code, row["f14"]
    raise AssertionError("no Shanghai name of four characters in the corpus")


def test_fetch_round_runs_one_bounded_retag_step(server: ns.NewsServer, archive: SqliteArchive,
                                                 lists: dict[str, list[dict[str, Any]]]) -> None:
    code, name = _a_name(lists)
    _stored_before(archive, name)
    source = _source(server, fs_sz="", fs_bj="", fs_hk="", fs_us="")

    async def rounds(settings: FetchSettings) -> Any:
        fetcher = Fetcher(settings)
        try:
            return await fetch_round([source], fetcher, archive, due_only=False)
        finally:
            await fetcher.aclose()

    asyncio.run(rounds(_with_step(FAST, 0)))
    assert _tags(archive, "test:1") == () and archive.retag_pending()  # 0: no step
    asyncio.run(rounds(_with_step(FAST, 500)))
    assert code in _tags(archive, "test:1")
    assert _tags(archive, "test:2") == ()


def _with_step(settings: FetchSettings, step: int) -> FetchSettings:
    return replace(settings, retag_step=step)


def test_retag_step_reads_only_while_a_retag_is_pending(archive: SqliteArchive) -> None:
    for n in range(1, 8):
        archive.store(_article(n, f"宁德时代第{n}条", "电池龙头宁德时代"))
    while archive.retag():
        pass
    archive.learn_securities([SecurityName("300750.SZ", "宁德时代", "test")])
    assert asyncio.run(retag_step(archive, 0)) == 0
    assert archive.stock_count("300750.SZ") == 0 and archive.retag_pending()
    steps = 0
    while asyncio.run(retag_step(archive, 3)):
        steps += 1
    assert steps >= 1 and not archive.retag_pending()
    assert archive.stock_count("300750.SZ") == 7
    assert asyncio.run(retag_step(archive, 3)) == 0  # nothing pending: nothing read


def test_run_tags_an_article_stored_before_the_list_was_fetched(
        tmp_path: Path, server: ns.NewsServer, lists: dict[str, list[dict[str, Any]]]) -> None:
    """`caixun run` as a real subprocess (its build forks workers: not from this
    process, whose server threads a fork would copy mid-request)."""
    code, name = _a_name(lists)
    db = tmp_path / "caixun.db"
    with open_archive(db) as archive:
        _stored_before(archive, name)
    (tmp_path / "caixun.toml").write_text(f"""
[fetch]
retries = 1
min_gap = 0.0

[[sources]]
name = "em-securities"
kind = "eastmoney-securities"
list_url = "{server.url(PATH)}"
fs_us = ""
""", encoding="utf-8")
    log = tmp_path / "run.log"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    with log.open("w", encoding="utf-8") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "caixun.cli", "run", "--no-serve"],
                                cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=stderr)

    def tagged() -> tuple[str, ...]:
        try:
            with open_archive(db, read_only=True) as archive:
                return _tags(archive, "test:1")
        except Exception:  # noqa: BLE001 - read while the daemon writes: try again
            return ()

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if "retag:" in log.read_text(encoding="utf-8") and code in tagged():
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            returncode = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("caixun run did not stop on SIGTERM:\n" + log.read_text(encoding="utf-8"))
    text = log.read_text(encoding="utf-8")
    assert returncode == 0 and "Traceback" not in text, text
    assert code in tagged(), text
    assert "em-securities: " in text and "names read" in text
    assert "retag: " in text and "older article(s) checked" in text
    with open_archive(db, read_only=True) as archive:
        assert archive.source_health("em-securities").consecutive_failures == 0
        assert _tags(archive, "test:2") == ()

"""The replay server (tests/newsserver.py) does what it advertises, over a real socket."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import feedparser  # type: ignore[import-untyped]
import httpx
import pytest

from newsserver import (
    HTML_ERROR_PAGE,
    POSTS_DIR,
    RSS_TYPE,
    SCRIPT,
    NewsServer,
    Reply,
    Seen,
    by_query,
    cls_roll,
    day_files,
    empty_list,
    fast_news,
    fast_news_route,
    html_error,
    install_all,
    jin10_flash,
    jsonp,
    market_records,
    media_nodes,
    media_texts,
    news_texts,
    overlapping_pages,
    parse_post,
    renamed,
    repeat_items,
    reset,
    rolling_records,
    rss_xml,
    sequence,
    sina_feed,
    slow,
    status,
    too_many,
    truncated,
    wallstreetcn_lives,
)

SHOWTIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
ID18 = re.compile(r"^\d{18}$")
ROLLING = "/web/webapi"


@pytest.fixture
def server() -> Iterator[NewsServer]:
    news = NewsServer().start()
    try:
        yield news
    finally:
        news.stop()
    assert not news.errors, news.errors


@pytest.fixture
def client(server: NewsServer) -> Iterator[httpx.Client]:
    # trust_env=False: a proxy from the environment must not swallow 127.0.0.1
    with httpx.Client(base_url=server.base_url, timeout=5, trust_env=False) as c:
        yield c


@pytest.fixture(scope="module")
def records() -> dict[str, Any]:
    return rolling_records()


# ======================================================================================
# routes
# ======================================================================================


def test_base_url_is_a_free_port_on_localhost(server: NewsServer) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.base_url)
    assert server.port > 0


def test_json_route_is_utf8_chinese_not_escapes(server: NewsServer, client: httpx.Client,
                                                records: dict[str, Any]) -> None:
    server.route(ROLLING, records)
    response = client.get(ROLLING, params={"type": "102", "count": "100", "newsid": "1"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert "\\u" not in response.text
    assert records["records"][0]["title"].encode("utf-8") in response.content
    assert response.json() == records
    assert int(response.headers["content-length"]) == len(response.content)


def test_str_bytes_status_headers_and_content_type(server: NewsServer,
                                                   client: httpx.Client) -> None:
    server.route("/text", "系统维护中", status=503, headers={"X-Source": "东财"})
    server.route("/raw", b"\x00\x01", content_type="application/x-thing")
    server.route("/list", [1, "二"])
    text = client.get("/text")
    assert (text.status_code, text.text) == (503, "系统维护中")
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    assert text.headers["x-source"] == "东财"  # sent as UTF-8 bytes; httpx decodes them
    raw = client.get("/raw")
    assert (raw.content, raw.headers["content-type"]) == (b"\x00\x01", "application/x-thing")
    assert client.get("/list").json() == [1, "二"]


def test_unknown_path_is_404_and_query_does_not_select_the_route(
        server: NewsServer, client: httpx.Client) -> None:
    server.route("/a?ignored=1", {"ok": True})  # the query of a route path is dropped
    assert client.get("/a", params={"x": "1"}).json() == {"ok": True}
    assert client.get("/missing").status_code == 404


def test_dynamic_route_sees_query_and_headers(server: NewsServer, client: httpx.Client) -> None:
    def echo(seen: Seen) -> Reply:
        return Reply({"query": seen.query, "ua": seen.headers.get("user-agent")},
                     status=201, headers={"X-Echo": "1"})

    server.route("/echo", echo)
    response = client.get("/echo", params={"keyword": "东方财富", "sortEnd": ""},
                          headers={"User-Agent": "Mozilla/5.0 test"})
    assert response.status_code == 201
    assert response.headers["x-echo"] == "1"
    assert response.json() == {"query": {"keyword": "东方财富", "sortEnd": ""},
                               "ua": "Mozilla/5.0 test"}


def test_a_crashing_dynamic_route_is_a_500_and_is_recorded(server: NewsServer,
                                                            client: httpx.Client) -> None:
    def boom(seen: Seen) -> dict[str, Any]:
        raise RuntimeError("route bug")

    server.route("/boom", boom)
    response = client.get("/boom")
    assert response.status_code == 500 and "route bug" in response.text
    assert len(server.errors) == 1 and "route bug" in server.errors[0]
    server.errors.clear()


def test_sequence_and_by_query_helpers(server: NewsServer, client: httpx.Client) -> None:
    server.route("/seq", sequence({"n": 1}, {"n": 2}))
    assert [client.get("/seq").json()["n"] for _ in range(4)] == [1, 2, 2, 2]
    server.route(ROLLING, by_query("type", {"102": {"records": []}, "45": {"nodeList": []}}))
    assert client.get(ROLLING, params={"type": "45"}).json() == {"nodeList": []}
    assert client.get(ROLLING, params={"type": "102"}).json() == {"records": []}
    assert client.get(ROLLING, params={"type": "9"}).status_code == 404


def test_keep_alive_reuses_one_connection(server: NewsServer, client: httpx.Client) -> None:
    server.route("/k", {"ok": 1})
    ports = set()
    for _ in range(3):
        response = client.get("/k")
        stream = response.extensions["network_stream"]
        ports.add(stream.get_extra_info("client_addr"))
    assert len(ports) == 1


# ======================================================================================
# faults
# ======================================================================================


@pytest.mark.parametrize("code", [500, 502, 503, 404])
def test_status_fault(server: NewsServer, client: httpx.Client, code: int) -> None:
    server.route("/s", {"ok": True})
    server.fault("/s", status(code, body="上游错误", headers={"X-Fault": "yes"}))
    response = client.get("/s")
    assert (response.status_code, response.text) == (code, "上游错误")
    assert response.headers["x-fault"] == "yes"
    assert client.get("/s").json() == {"ok": True}  # recovered


def test_status_fault_can_be_a_200_error_envelope(server: NewsServer,
                                                  client: httpx.Client) -> None:
    server.route("/cls", cls_roll(n=2))
    server.fault("/cls", status(200, body={"errno": 1, "msg": "签名错误"}))
    assert client.get("/cls").json() == {"errno": 1, "msg": "签名错误"}
    assert client.get("/cls").json()["errno"] == 0


@pytest.mark.parametrize(("retry_after", "header"), [(2, "2"), (0.5, "0.5"),
                                                     ("Wed, 21 Oct 2015 07:28:00 GMT",
                                                      "Wed, 21 Oct 2015 07:28:00 GMT")])
def test_too_many_sends_429_with_retry_after(server: NewsServer, client: httpx.Client,
                                             retry_after: float | str, header: str) -> None:
    server.route("/t", {"ok": True})
    server.fault("/t", too_many(retry_after))
    response = client.get("/t")
    assert response.status_code == 429
    assert response.headers["retry-after"] == header
    assert client.get("/t").status_code == 200


def test_slow_exceeds_a_short_client_timeout(server: NewsServer) -> None:
    server.route("/slow", {"ok": True})
    server.fault("/slow", slow(2.0))
    started = time.monotonic()
    with httpx.Client(base_url=server.base_url, timeout=0.1, trust_env=False) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.get("/slow")
        assert time.monotonic() - started < 1.9  # before the slow reply (2 s)
        assert c.get("/slow", timeout=10).json() == {"ok": True}  # the queue moved on


def test_slow_within_the_timeout_replies_normally_after_the_delay(
        server: NewsServer, client: httpx.Client) -> None:
    server.route("/slow", {"ok": True})
    server.fault("/slow", slow(0.2))
    started = time.monotonic()
    assert client.get("/slow").json() == {"ok": True}
    assert time.monotonic() - started >= 0.2


def test_stop_does_not_wait_for_a_sleeping_slow_fault() -> None:
    news = NewsServer().start()
    news.route("/slow", {"ok": True})
    news.fault("/slow", slow(30))
    failure: list[BaseException] = []

    def call() -> None:
        try:
            httpx.get(news.url("/slow"), timeout=10, trust_env=False)
        except httpx.HTTPError as exc:
            failure.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    while news.hits("/slow") == 0:
        time.sleep(0.01)
    started = time.monotonic()
    news.stop()
    worker.join(5)
    assert time.monotonic() - started < 2
    assert failure and isinstance(failure[0], httpx.TransportError)


def test_reset_is_a_transport_error_for_httpx(server: NewsServer, client: httpx.Client) -> None:
    server.route("/r", {"ok": True})
    assert client.get("/r").json() == {"ok": True}  # a pooled keep-alive connection
    server.fault("/r", reset())
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError)):
        client.get("/r")
    assert client.get("/r").json() == {"ok": True}  # a fresh connection works
    assert server.hits("/r") == 3


def test_reset_on_a_fresh_connection(server: NewsServer) -> None:
    server.route("/r", {"ok": True})
    server.fault("/r", reset())
    with pytest.raises(httpx.TransportError) as caught:
        httpx.get(server.url("/r"), trust_env=False)
    assert isinstance(caught.value, (httpx.ReadError, httpx.RemoteProtocolError,
                                     httpx.ConnectError))


def test_faults_reach_an_async_client_too(server: NewsServer) -> None:
    """The fetcher is async: the same faults surface through httpx.AsyncClient."""
    server.route("/a", {"ok": True})
    server.fault("/a", reset(), slow(2.0), too_many(3))

    async def run() -> list[str]:
        seen = []
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10,
                                     trust_env=False) as c:
            for n in range(4):
                try:  # a short timeout for the slow reply only: the others may be slow here
                    response = await c.get("/a", timeout=0.2 if n == 1 else 10)
                    seen.append(str(response.status_code))
                except httpx.TransportError as exc:
                    seen.append(type(exc).__name__)
        return seen

    outcome = asyncio.run(run())
    assert outcome[0] in ("ReadError", "RemoteProtocolError")
    assert outcome[1:] == ["ReadTimeout", "429", "200"]


def test_truncated_is_a_correct_looking_200_with_half_the_json(
        server: NewsServer, client: httpx.Client, records: dict[str, Any]) -> None:
    server.route(ROLLING, records)
    full = client.get(ROLLING).content
    server.fault(ROLLING, truncated())
    response = client.get(ROLLING)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.content == full[: len(full) // 2]
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert client.get(ROLLING).json() == records


def test_truncated_declaring_the_full_length_is_a_protocol_error(
        server: NewsServer, client: httpx.Client, records: dict[str, Any]) -> None:
    server.route(ROLLING, records)
    server.fault(ROLLING, truncated(declare_full=True))
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(ROLLING)
    assert client.get(ROLLING).json() == records


def test_html_error_page(server: NewsServer, client: httpx.Client) -> None:
    server.route("/fast", fast_news(n=3))
    server.fault("/fast", html_error(), html_error(502))
    response = client.get("/fast")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == HTML_ERROR_PAGE == "<html><body>系统繁忙</body></html>"
    assert client.get("/fast").status_code == 502
    assert client.get("/fast").json()["code"] == "1"


def test_jsonp_wraps_the_normal_json(server: NewsServer, client: httpx.Client) -> None:
    payload = fast_news(n=3)
    server.route("/fast", payload)
    server.fault("/fast", jsonp(), jsonp(callback=None), jsonp(callback=None))
    first = client.get("/fast")
    assert first.headers["content-type"] == "application/javascript; charset=utf-8"
    assert first.text.startswith("cb(") and first.text.endswith(");")
    assert json.loads(first.text[3:-2]) == payload
    echoed = client.get("/fast", params={"callback": "jQuery3510_1716"})
    assert echoed.text.startswith("jQuery3510_1716(")
    assert client.get("/fast").text.startswith("cb(")  # no callback parameter: "cb"


def test_renamed_top_level_and_nested_keys(server: NewsServer, client: httpx.Client,
                                           records: dict[str, Any]) -> None:
    server.route(ROLLING, records)
    server.fault(ROLLING, renamed("records", "items"))
    body = client.get(ROLLING).json()
    assert list(body) == ["items"] and body["items"] == records["records"]
    server.route("/fast", fast_news(n=2))
    server.fault("/fast", renamed("data.fastNewsList", "list"))
    data = client.get("/fast").json()["data"]
    assert "fastNewsList" not in data and len(data["list"]) == 2


def test_a_misused_fault_is_a_500_and_is_recorded(server: NewsServer,
                                                  client: httpx.Client) -> None:
    server.route("/html", "<p>not json</p>")
    server.fault("/html", renamed("records", "items"))
    assert client.get("/html").status_code == 500
    assert server.errors and "_Renamed" in server.errors[0]
    server.errors.clear()


@pytest.mark.parametrize(("builder", "items_at"), [
    (lambda: rolling_records(), ("records",)),
    (lambda: media_nodes(), ("nodeList",)),
    (lambda: market_records(n=3), ("record",)),
    (lambda: fast_news(n=3), ("data", "fastNewsList")),
    (lambda: cls_roll(n=3), ("data", "roll_data")),
    (lambda: jin10_flash(n=3), ("data",)),
    (lambda: wallstreetcn_lives(n=3), ("data", "items")),
    (lambda: sina_feed(n=3), ("result", "data", "feed", "list")),
])
def test_empty_list_keeps_the_envelope(server: NewsServer, client: httpx.Client,
                                       builder: Any, items_at: tuple[str, ...]) -> None:
    payload = builder()
    server.route("/p", payload)
    server.fault("/p", empty_list())
    emptied = client.get("/p").json()
    node, expected = emptied, payload
    for key in items_at[:-1]:
        node, expected = node[key], expected[key]
    assert node[items_at[-1]] == [] and expected[items_at[-1]]
    assert {k: v for k, v in node.items() if k != items_at[-1]} == \
        {k: v for k, v in expected.items() if k != items_at[-1]}
    assert client.get("/p").json() == payload


def test_empty_list_with_an_explicit_path(server: NewsServer, client: httpx.Client) -> None:
    server.route("/x", {"data": {"a": [1], "b": [2]}})
    server.fault("/x", empty_list("data.b"))
    assert client.get("/x").json() == {"data": {"a": [1], "b": []}}


def test_fault_queue_order_then_recovery_per_path(server: NewsServer,
                                                  client: httpx.Client) -> None:
    server.route("/a", {"ok": "a"})
    server.route("/b", {"ok": "b"})
    server.fault("/a", status(500), too_many(1), html_error())
    server.fault("/a", status(404))  # appended after the first three
    assert server.pending_faults("/a") == 4
    assert client.get("/b").json() == {"ok": "b"}  # other paths are untouched
    seen = [client.get("/a") for _ in range(6)]
    assert [r.status_code for r in seen] == [500, 429, 200, 404, 200, 200]
    assert seen[2].text == HTML_ERROR_PAGE
    assert seen[4].json() == seen[5].json() == {"ok": "a"}
    assert (server.hits("/a"), server.hits("/b"), server.pending_faults("/a")) == (6, 1, 0)


def test_fault_rejects_non_faults(server: NewsServer) -> None:
    with pytest.raises(TypeError):
        server.fault("/a", 500)  # type: ignore[arg-type]


# ======================================================================================
# conditional GET
# ======================================================================================


def test_etag_and_if_none_match(server: NewsServer, client: httpx.Client,
                                records: dict[str, Any]) -> None:
    server.route(ROLLING, records, etag=True)
    first = client.get(ROLLING)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert re.fullmatch(r'"[0-9a-f]{24}"', etag)
    again = client.get(ROLLING, headers={"If-None-Match": etag})
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["etag"] == etag
    weak = client.get(ROLLING, headers={"If-None-Match": f'"other", W/{etag}'})
    assert weak.status_code == 304
    assert client.get(ROLLING, headers={"If-None-Match": '"other"'}).status_code == 200
    # If-None-Match wins over a matching If-Modified-Since
    assert client.get(ROLLING, headers={"If-None-Match": '"other"',
                                        "If-Modified-Since": modified}).status_code == 200
    server.route(ROLLING, repeat_items(records, 1), etag=True)  # the list changed
    changed = client.get(ROLLING, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag


def test_last_modified_and_if_modified_since(server: NewsServer, client: httpx.Client) -> None:
    stamp = 1_700_000_000
    server.route("/feed.xml", rss_xml(day_files()[0]), content_type=RSS_TYPE, etag=True,
                 last_modified=stamp)
    first = client.get("/feed.xml")
    assert first.headers["last-modified"] == formatdate(stamp, usegmt=True)
    same = client.get("/feed.xml", headers={"If-Modified-Since": first.headers["last-modified"]})
    later = client.get("/feed.xml", headers={"If-Modified-Since": formatdate(stamp + 60,
                                                                             usegmt=True)})
    earlier = client.get("/feed.xml", headers={"If-Modified-Since": formatdate(stamp - 60,
                                                                               usegmt=True)})
    assert (same.status_code, later.status_code, earlier.status_code) == (304, 304, 200)
    assert earlier.content == first.content


def test_routes_without_etag_send_no_validators(server: NewsServer,
                                                client: httpx.Client) -> None:
    server.route("/plain", {"ok": 1})
    response = client.get("/plain", headers={"If-None-Match": "*"})
    assert response.status_code == 200
    assert "etag" not in response.headers and "last-modified" not in response.headers


# ======================================================================================
# the request log
# ======================================================================================


def test_request_log_has_times_queries_and_headers(server: NewsServer,
                                                   client: httpx.Client) -> None:
    server.route("/comm/web/getFastNewsList", {"code": "1"})
    before = time.monotonic()
    for trace in ("1", "2"):
        client.get("/comm/web/getFastNewsList",
                   params={"client": "web", "biz": "web_724", "fastColumn": "102",
                           "sortEnd": "", "pageSize": "50", "req_trace": trace},
                   headers={"Referer": "https://kuaixun.eastmoney.com/"})
    after = time.monotonic()
    log = server.seen("/comm/web/getFastNewsList")
    assert len(log) == 2 == server.hits("/comm/web/getFastNewsList")
    assert before <= log[0].at <= log[1].at <= after
    assert log[0].method == "GET"
    assert log[1].query == {"client": "web", "biz": "web_724", "fastColumn": "102",
                            "sortEnd": "", "pageSize": "50", "req_trace": "2"}
    assert log[1].headers["referer"] == "https://kuaixun.eastmoney.com/"
    assert "user-agent" in log[1].headers
    assert log[1].target.startswith("/comm/web/getFastNewsList?client=web")
    assert server.requests == log


def test_faulted_and_unrouted_requests_are_logged_too(server: NewsServer,
                                                      client: httpx.Client) -> None:
    server.fault("/gone", reset())
    with pytest.raises(httpx.TransportError):
        client.get("/gone")
    client.get("/nowhere")
    assert [s.path for s in server.requests] == ["/gone", "/nowhere"]


def test_concurrent_requests_are_all_logged(server: NewsServer) -> None:
    server.route("/c", {"ok": True})
    server.fault("/c", slow(3.0), slow(3.0), slow(3.0))

    def call() -> None:
        httpx.get(server.url("/c"), timeout=10, trust_env=False)

    started = time.monotonic()
    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Slow replies do not block the others: one after another the three take 9 s.
    assert time.monotonic() - started < 6.0
    assert server.hits("/c") == 8


# ======================================================================================
# payload builders: the real corpus, the documented shapes
# ======================================================================================


def test_rolling_records_are_the_114_rolling_posts(records: dict[str, Any]) -> None:
    items = records["records"]
    assert list(records) == ["records"] and len(items) == 114
    ids = [r["id"] for r in items]
    assert len(set(ids)) == 114 and all(ID18.match(i) for i in ids)
    files = {p.name for p in POSTS_DIR.iterdir()}
    for r in items:
        assert set(r) == {"id", "infoCode", "title", "digest", "url_w", "showtime"}
        assert r["infoCode"] == "NW" + r["id"]
        assert f"{r['showtime'][:10]}-{r['id']}.md" in files
        assert r["showtime"].startswith("2021-12-08") and SHOWTIME.match(r["showtime"])
        assert r["title"] and r["digest"].startswith(f"【{r['title']}】")
        assert len(r["digest"]) > len(r["title"]) + 2
        assert r["url_w"] == "" or r["url_w"].endswith(f",{r['id']}.html")
    assert [r["showtime"] for r in items] == sorted((r["showtime"] for r in items),
                                                    reverse=True)
    assert sum(r["url_w"] == "" for r in items) == 1  # the post with "<>"


def test_rolling_records_read_the_post_files() -> None:
    some = sorted(POSTS_DIR.glob("2021-12-08-*.md"))[7]
    post = parse_post(some)
    record = next(r for r in rolling_records()["records"] if r["id"] == post.id)
    text = some.read_text(encoding="utf-8")
    assert f'title: "{record["title"]}"' in text
    assert f"date: {record['showtime']}" in text
    assert f"<{record['url_w']}>" in text
    assert record["digest"].removeprefix(f"【{record['title']}】") in text


def test_rolling_records_with_the_broken_post() -> None:
    items = rolling_records(include_broken=True)["records"]
    assert len(items) == 115
    broken = items[0]
    assert broken["id"] == "202205262391921712" and broken["infoCode"] == "NW" + broken["id"]
    assert broken["title"] == broken["showtime"] == broken["url_w"] == ""
    assert broken["digest"]
    assert all(r["showtime"] for r in items[1:])


def test_duplicates_helpers(records: dict[str, Any]) -> None:
    doubled = rolling_records(repeat=3)["records"]
    assert len(doubled) == 117 and doubled[-3:] == records["records"][:3]
    assert len({r["id"] for r in doubled}) == 114
    pages = overlapping_pages(records["records"], 50, 10)
    assert [len(p) for p in pages] == [50, 50, 34]
    assert pages[0][-10:] == pages[1][:10]
    assert [r for p in pages for r in p if r not in pages[0]][:1] == [records["records"][50]]
    fast = repeat_items(fast_news(n=4), 2)["data"]["fastNewsList"]
    assert [i["code"] for i in fast[-2:]] == [i["code"] for i in fast[:2]]


def test_duplicate_pages_served_in_sequence(server: NewsServer, client: httpx.Client,
                                            records: dict[str, Any]) -> None:
    first, second = overlapping_pages(records["records"], 60, 20)[:2]
    server.route(ROLLING, sequence({"records": first}, {"records": second}))
    got = [r["id"] for _ in range(2) for r in client.get(ROLLING).json()["records"]]
    assert len(got) == 120 and len(set(got)) == 100


def test_news_texts(records: dict[str, Any]) -> None:
    texts = news_texts()
    codes = [r["infoCode"] for r in records["records"]]
    assert [c for c in texts if c in codes] == codes
    for code in codes:
        content = texts[code]["content"]
        assert content.startswith("<p>") and content.endswith("</p>")
        assert SCRIPT not in content
    assert texts["NW202201112243109259"]["text"].rstrip().endswith(
        '<p class="em_media">（文章来源：人民邮电报）</p>')
    raw_lt = texts["NW202112082206796814"]["content"]  # the post with a raw "<1%"
    assert "&lt;1%" in raw_lt and "<1%" not in raw_lt
    injected = news_texts(inject_script=True)
    assert [c for c, v in injected.items() if SCRIPT in v.get("content", "")] == [codes[0]]
    broken = news_texts(include_broken=True)["NW202205262391921712"]["content"]
    assert "<!-- EM_StockImg_Start -->" in broken and 'class="em_media"' in broken


def test_media_nodes_and_texts() -> None:
    nodes = media_nodes()["nodeList"]
    real = nodes[0]
    assert real["infocode"] == "NW202201112243109259" and real["from"] == "人民邮电报"
    assert real["showtime"] == "2022-01-11 09:53:30"
    text = (POSTS_DIR / "2022-01-11-NW202201112243109259.md").read_text(encoding="utf-8")
    assert f'title: "{real["title"]}"' in text and real["simdigest"] in text
    outlets = {n["from"] for n in nodes}
    assert {"人民邮电报", "21世纪经济报道", "36氪"} <= outlets
    for node in nodes:
        assert "infoCode" not in node and SHOWTIME.match(node["showtime"]) and node["title"]
        assert re.fullmatch(r"(AN|NW)\d{18}", node["infocode"])
    assert any("simtitle" in n for n in nodes) and any("simtitle" not in n for n in nodes)
    texts = media_texts()
    assert set(texts) == {n["infocode"] for n in nodes}
    assert all(set(v) == {"text"} for v in texts.values())


def test_market_records_shape() -> None:
    items = market_records(n=5)["record"]
    assert len(items) == 5
    for item in items:
        assert set(item) == {"infoCode", "medianame", "title", "datetime"}
        assert re.fullmatch(r"NW\d{18}", item["infoCode"]) and SHOWTIME.match(item["datetime"])


def test_fast_news_shape() -> None:
    payload = fast_news(n=30)
    assert (payload["code"], payload["message"]) == ("1", "success")
    items = payload["data"]["fastNewsList"]
    assert len(items) == 30
    for item in items:
        assert ID18.match(item["code"]) and SHOWTIME.match(item["showTime"])
        assert item["summary"].startswith(f"【{item['title']}】")
        assert "<" not in item["summary"].removeprefix(f"【{item['title']}】")[:50]
        assert re.fullmatch(r"\d{16}", item["realSort"])
        assert item["stockList"] == [] and isinstance(item["pinglun_Num"], int)
    sorts = [int(i["realSort"]) for i in items]
    assert sorts == sorted(sorts, reverse=True)
    assert payload["data"]["sortEnd"] == items[-1]["realSort"]
    corpus_links = {a["link"] for f in day_files()
                    for a in json.loads(f.read_text(encoding="utf-8"))["articles"]}
    assert all(any(i["code"] in link for link in corpus_links) for i in items)


def test_fast_news_route_pages_by_sort_end(server: NewsServer, client: httpx.Client) -> None:
    items = fast_news(n=25)["data"]["fastNewsList"]
    server.route("/f", fast_news_route(items))
    assert client.get("/f").json()["data"] is None  # no sortEnd / req_trace
    params = {"sortEnd": "", "pageSize": "10", "req_trace": "x"}
    seen: list[str] = []
    while True:
        data = client.get("/f", params=params).json()["data"]
        if not data["fastNewsList"]:
            break
        seen += [i["code"] for i in data["fastNewsList"]]
        params["sortEnd"] = data["sortEnd"]
    assert seen == [i["code"] for i in items]


def test_cls_jin10_wallstreetcn_sina_shapes() -> None:
    cls = cls_roll(n=5, vip=True)
    assert cls["errno"] == 0
    roll = cls["data"]["roll_data"]
    assert len(roll) == 6 and [r["type"] for r in roll].count(20015) == 1
    for r in roll:
        assert isinstance(r["id"], int) and isinstance(r["ctime"], int)
        assert r["content"].startswith("【") and r["level"] in "ABC"

    jin10 = jin10_flash(n=4, calendar=True, vip=True)
    assert (jin10["status"], jin10["message"]) == (200, "OK")
    types = [i["type"] for i in jin10["data"]]
    assert sorted(types) == [0, 0, 0, 0, 1, 2]
    for item in jin10["data"]:
        assert re.fullmatch(r"\d{20}", item["id"]) and SHOWTIME.match(item["time"])
        assert item["id"][:14] == re.sub(r"\D", "", item["time"])
        assert ("content" in item["data"]) == (item["type"] != 1)

    wscn = wallstreetcn_lives(n=5)
    assert wscn["code"] == 20000
    lives = wscn["data"]["items"]
    assert len(lives) == 5 and all(isinstance(i["id"], int) for i in lives)
    assert all(i["content_text"] and i["uri"].endswith(str(i["id"])) for i in lives)
    assert wscn["data"]["next_cursor"] == str(lives[-1]["display_time"])

    sina = sina_feed(n=5)["result"]
    assert sina["status"] == {"code": 0, "msg": "OK"}
    feed = sina["data"]["feed"]
    assert len(feed["list"]) == 5 and feed["page_info"]["totalNum"] == 5
    for item in feed["list"]:
        assert item["rich_text"].startswith("【") and SHOWTIME.match(item["create_time"])
        ext = json.loads(item["ext"])  # a JSON string inside the JSON
        assert ext["docurl"] == item["docurl"]
    assert feed["max_id"] == max(i["id"] for i in feed["list"])


def test_builders_are_deterministic_and_ids_follow_links() -> None:
    assert cls_roll(n=3) == cls_roll(n=3)
    assert sina_feed(n=2)["result"]["data"]["feed"]["list"] == \
        sina_feed(n=4)["result"]["data"]["feed"]["list"][:2]


def _articles(day: Path) -> list[dict[str, Any]]:
    return json.loads(day.read_text(encoding="utf-8"))["articles"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("atom", [False, True])
@pytest.mark.parametrize("index", [0, 10, -1])  # {"title": …} sources; strings; the last day
def test_rss_xml_parses_and_keeps_every_item(index: int, atom: bool) -> None:
    day = day_files()[index]
    articles = _articles(day)
    feed = feedparser.parse(rss_xml(day, atom=atom))
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == ("atom10" if atom else "rss20")
    assert len(feed.entries) == len(articles)
    for entry, article in zip(feed.entries, articles):
        assert entry.title == article["title"] and entry.link == article["link"]
        source = article.get("source")
        outlet = source.get("title") if isinstance(source, dict) else source
        assert entry.get("source", {}).get("title") == (outlet or None)


def test_rss_xml_handles_dict_string_and_missing_sources() -> None:
    kinds: set[str] = set()
    day = day_files()[0]
    for a in _articles(day):
        s = a.get("source")
        kinds.add("dict" if isinstance(s, dict) and s.get("title") else
                  "missing" if not s or isinstance(s, dict) else "str")
    assert kinds == {"dict", "missing", "str"}  # this day has all three
    xml = rss_xml(day).decode("utf-8")
    assert xml.count("<item>") == len(_articles(day))
    assert "<source url=" in xml and "&lt;" in xml  # summary HTML is escaped


def test_install_all_serves_every_endpoint(server: NewsServer, client: httpx.Client) -> None:
    paths = install_all(server)
    rolling = client.get(paths["webapi"], params={"type": "102", "count": "100"}).json()
    assert len(rolling["records"]) == 114
    nodes = client.get(paths["webapi"], params={"type": "45"}).json()["nodeList"]
    code = rolling["records"][5]["infoCode"]
    assert client.get(paths["text"], params={"id": code}).json()["content"].startswith("<p>")
    media = client.get(paths["text"], params={"id": nodes[0]["infocode"]}).json()
    assert "text" in media
    assert client.get(paths["text"], params={"id": "NW0"}).status_code == 404
    assert client.get(paths["market"]).json()["record"]
    fast = client.get(paths["fast"], params={"sortEnd": "", "req_trace": "1",
                                            "pageSize": "5"}).json()
    assert len(fast["data"]["fastNewsList"]) == 5
    assert client.get(paths["cls"]).json()["errno"] == 0
    assert client.get(paths["jin10"]).json()["status"] == 200
    assert client.get(paths["wallstreetcn"]).json()["code"] == 20000
    assert client.get(paths["sina"]).json()["result"]["status"]["code"] == 0
    rss = client.get(paths["rss"])
    assert rss.headers["content-type"] == RSS_TYPE
    assert len(feedparser.parse(rss.content).entries) == len(_articles(day_files()[0]))
    assert feedparser.parse(client.get(paths["atom"]).content).version == "atom10"


def test_stopped_server_refuses_connections() -> None:
    news = NewsServer().start()
    url = news.url("/")
    news.stop()
    news.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, trust_env=False)

"""East Money sources: payloads in the documented shapes, built from the real corpus.

The legacy families must export Jekyll posts in the old site's format: the
media-column post of the corpus is reproduced byte for byte from an East-Money
shaped payload, and every rolling post's file name, front matter and footer.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from conftest import POSTS
from caixun.errors import PayloadError
from caixun.model import Article
from caixun.publish.jekyll import post_filename, render_post
from caixun.sources.base import Entry, ItemError, Request, Source, SourceConfig, load_source
from caixun.sources.eastmoney import (
    ColumnNews,
    FastNews,
    MarketNews,
    MediaColumns,
    RollingNews,
)

BASE = "//finews.withounder.com"
SHANGHAI = ZoneInfo("Asia/Shanghai")
FETCHED = datetime(2026, 1, 1, tzinfo=timezone.utc)
MEDIA_POST = POSTS / "2022-01-11-NW202201112243109259.md"
BROKEN_ROLLING_POST = POSTS / "-202205262391921712.md"
ZNING_SHARE = "http://finews.zning.xyz/html_News/NewsShare.html?infoCode="
ROLLING_FOOTER = ("[返回东财滚动新闻](//finews.withounder.com/emnews/)｜"
                  "[返回首页](//finews.withounder.com/)")


def make(family: type[Source], name: str, **options: Any) -> Any:
    return family(SourceConfig(name, family.kind, options=options))


def articles(source: Source, payload: Any, texts: dict[str, Any] | None = None) -> list[Article]:
    """What the fetcher does with one list payload (full texts given by code)."""
    request = source.list_requests()[0]
    out = []
    for entry in source.parse_list(request, payload):
        text = None
        if entry.text_request is not None and texts is not None:
            text = source.parse_text(entry, texts[entry.text_request.key])
        out.append(source.to_article(entry, text, FETCHED))
    return out


# -- the real rolling posts, read independently of caixun ------------------------------

@dataclass(frozen=True)
class RollingPost:
    path: Path
    id: str
    title: str
    showtime: str
    has_offset: bool
    digest: str  # the body paragraph (or the "> " line of the May 2022 post)
    link: str
    tail: str  # from the blank line before the link to the end of the file


def front_value(front: str, key: str) -> str:
    match = re.search(rf"^{key}:(.*)$", front, re.M)
    assert match is not None, key
    return match.group(1)


def read_rolling(path: Path) -> RollingPost | None:
    text = path.read_text("utf-8")
    _, front, body = text.split("---\n", 2)
    if "categories: emnews" not in front:
        return None
    title = yaml.safe_load(front_value(front, "title"))
    date = front_value(front, "date").strip()
    showtime = date.removesuffix("+0800").strip()
    link_match = list(re.finditer(r"\n\n<([^>\n]*)>", body))[-1]
    digest = body[:link_match.start()].strip("\n")
    digest = digest.split("\n")[0][2:] if digest.startswith("> ") else digest
    return RollingPost(path, path.name.split("-")[-1][:-3], title, showtime,
                       date.endswith("+0800"), digest, link_match.group(1),
                       body[link_match.start():])


ROLLING = [p for p in (read_rolling(path) for path in sorted(POSTS.glob("*.md"))) if p]
DATED = [p for p in ROLLING if p.showtime]


def rolling_record(post: RollingPost) -> dict[str, str]:
    return {"id": post.id, "infoCode": f"NW{post.id}", "title": post.title,
            "digest": f"【{post.title}】{post.digest}", "url_w": post.link,
            "showtime": post.showtime}


def full_text(post: RollingPost) -> dict[str, str]:
    # The full text as GetNewsText.do gives it: HTML with U+3000 indents.
    return {"content": f"<p>\u3000\u3000{html.escape(post.digest, quote=False)}</p>"}


def test_the_corpus_has_the_rolling_posts() -> None:
    assert len(ROLLING) == 115 and len(DATED) == 114


# -- legacy: rolling news (type 102) ---------------------------------------------------

def test_rolling_requests_are_the_documented_endpoints() -> None:
    source = make(RollingNews, "em-rolling")
    [request] = source.list_requests()
    assert request.url == "http://183.136.162.242/web/webapi"
    assert dict(request.params) == {"type": "102", "count": "100", "newsid": "1"}
    assert request.payload == "json"
    entry = source.parse_list(request, {"records": [rolling_record(DATED[0])]})[0]
    assert entry.text_request is not None
    assert entry.text_request.url == ("http://choicewzp1.eastmoney.com/NewsData/"
                                      f"GetNewsText.do?id=NW{DATED[0].id}")
    assert entry.text_request.key == f"text:NW{DATED[0].id}"


def test_the_rolling_digest_is_what_follows_the_last_bracket() -> None:
    source = make(RollingNews, "em-rolling")
    record = {"id": "202112082206928461", "title": "“股王”茅台重回2000元关口！",
              "digest": "【“股王”茅台重回2000元关口】【快讯】酿酒板块多股大涨。",
              "showtime": "2021-12-08 12:41:23"}
    [article] = articles(source, {"records": [record]})
    assert article.digest == "酿酒板块多股大涨。"
    assert article.body_html == "<p>酿酒板块多股大涨。</p>"  # no full text: the digest


def test_a_list_url_written_with_its_query_keeps_it() -> None:
    source = make(RollingNews, "em-rolling",
                  list_url="http://mirror.example/web/webapi?type=102&count=500&newsid=1")
    [request] = source.list_requests()
    assert request.url == "http://mirror.example/web/webapi"
    assert request.params == (("type", "102"), ("count", "500"), ("newsid", "1"))


def test_every_rolling_post_comes_back_from_a_type_102_payload() -> None:
    source = make(RollingNews, "em-rolling")
    payload = {"records": [rolling_record(p) for p in DATED]}
    texts = {f"text:NW{p.id}": full_text(p) for p in DATED}
    got = articles(source, payload, texts)
    assert len(got) == len(DATED)
    for post, article in zip(DATED, got):
        assert article.uid == f"em-rolling:{post.id}"
        assert article.title == post.title
        assert article.published_at == datetime.fromisoformat(post.showtime).replace(
            tzinfo=SHANGHAI)
        assert article.outlet == "东财滚动新闻" and article.outlet_slug == "emnews"
        assert article.digest == post.digest.strip()  # the text after the last 】
        assert article.url == post.link
        assert "\u3000" not in article.body_html
        assert post_filename(article) == post.path.name


def test_rolling_posts_export_in_the_old_format() -> None:
    source = make(RollingNews, "em-rolling")
    payload = {"records": [rolling_record(p) for p in DATED]}
    texts = {f"text:NW{p.id}": full_text(p) for p in DATED}
    one_line_footers = 0
    for post, article in zip(DATED, articles(source, payload, texts)):
        rendered = render_post(article, base_url=BASE)
        real = post.path.read_text("utf-8")
        if post.has_offset:  # the front matter is the real one, line for line
            assert rendered.split("---\n")[1] == real.split("---\n")[1]
        body = rendered.split("---\n", 2)[2]
        assert body.startswith(f"> {article.digest}\n\n<p>")
        assert body.endswith(f"\n\n<{post.link}>\n\n{ROLLING_FOOTER}")
        if post.tail.endswith(ROLLING_FOOTER):
            assert rendered.endswith(post.tail)
            one_line_footers += 1
    assert one_line_footers >= 40


def test_the_may_2022_rolling_post_format() -> None:
    post = read_rolling(BROKEN_ROLLING_POST)
    assert post is not None and post.showtime == ""
    real = BROKEN_ROLLING_POST.read_text("utf-8")
    body_html = real.split("---\n", 2)[2].split("\n\n", 1)[1].rsplit("\n\n<>", 1)[0]
    record = {"id": post.id, "infoCode": f"NW{post.id}", "title": "蔚来用上第四代制冷剂",
              "digest": f"【蔚来用上第四代制冷剂】{post.digest}", "url_w": "",
              "showtime": "2022-05-26 09:12:33"}
    source = make(RollingNews, "em-rolling")
    [article] = articles(source, {"records": [record]},
                         {f"text:NW{post.id}": {"content": body_html}})
    rendered = render_post(article, base_url=BASE)
    assert rendered.startswith('---\nlayout: post\ntitle: "蔚来用上第四代制冷剂"\n'
                               "date: 2022-05-26 09:12:33 +0800\ncategories: emnews\n"
                               "tags: 东财滚动新闻\n---\n> 据霍尼韦尔官网消息")
    assert f"\n> {post.digest}\n\n<p" in rendered
    assert rendered.endswith(post.tail)  # "\n\n<>\n\n" and the one-line footer
    assert post.tail == f"\n\n<>\n\n{ROLLING_FOOTER}"
    # The post gets the HTML the old fetcher got, as it wrote it: the real post's body.
    assert rendered.endswith(real.split("---\n", 2)[2])
    assert "<!--" not in article.body_html and "style=" not in article.body_html
    sanitized = render_post(article, base_url=BASE, sanitize=True)
    assert "<!--" not in sanitized and "style=" not in sanitized  # sanitized
    assert "<!--" in (article.body_raw or "")  # the raw copy is kept
    assert "巨化股份" in article.body_text and "HFO-1234yf" in article.body_html
    assert post_filename(article) == "2022-05-26-202205262391921712.md"


def test_a_rolling_item_without_title_and_time_is_an_item_error() -> None:
    post = read_rolling(BROKEN_ROLLING_POST)
    assert post is not None
    record = {"id": post.id, "infoCode": f"NW{post.id}", "title": "", "showtime": "",
              "url_w": "", "digest": post.digest}
    source = make(RollingNews, "em-rolling")
    [entry] = source.parse_list(source.list_requests()[0], {"records": [record]})
    text = source.parse_text(entry, {"content": "<p>正文</p>"})
    with pytest.raises(ItemError, match=f"em-rolling:{post.id}"):
        source.to_article(entry, text, FETCHED)
    record["title"] = "有标题"  # a title but still no time
    [entry] = source.parse_list(source.list_requests()[0], {"records": [record]})
    with pytest.raises(ItemError, match=f"em-rolling:{post.id}: empty time"):
        source.to_article(entry, text, FETCHED)


def test_items_without_ids_are_dropped_and_odd_fields_tolerated() -> None:
    source = make(RollingNews, "em-rolling")
    payload = {"records": [
        {"title": "没有编号"}, {"id": ""}, "not an object", None,
        {"id": 202112082206928461, "title": "数字编号", "showtime": "2021-12-08 12:41:23",
         "digest": None, "url_w": ["odd"], "infoCode": None},
    ]}
    [entry] = source.parse_list(source.list_requests()[0], payload)
    assert entry.native_id == "202112082206928461" and entry.text_request is None
    article = source.to_article(entry, None, FETCHED)
    assert article.title == "数字编号" and article.url == "" and article.body_html == ""


def test_an_id_unsafe_in_a_file_name_is_an_item_error() -> None:
    source = make(RollingNews, "em-rolling")
    [entry] = source.parse_list(source.list_requests()[0], {"records": [
        {"id": "../../etc/x", "title": "t", "showtime": "2021-12-08 12:41:23"}]})
    with pytest.raises(ItemError, match="not URL-safe"):
        source.to_article(entry, None, FETCHED)


@pytest.mark.parametrize("family, payload", [
    (RollingNews, {"Records": []}),            # renamed key
    (RollingNews, {"records": None}),
    (RollingNews, {"records": {"id": "1"}}),   # not a list
    (RollingNews, [{"id": "1"}]),              # not an object
    (MediaColumns, {"records": []}),           # another family's key
    (MediaColumns, {"nodelist": []}),
    (MarketNews, {"records": []}),             # record is singular here
    (FastNews, {"code": "0", "message": "fail", "data": None}),
    (FastNews, {"code": "1", "data": None}),   # what a missing sortEnd/req_trace gives
    (FastNews, {"code": "1", "data": {"list": []}}),
    (FastNews, {"data": {"fastNewsList": []}}),  # no code at all
    (ColumnNews, {"code": "1", "data": {"fastNewsList": []}}),
    (ColumnNews, {"code": "1", "data": {"list": "x"}}),
    (ColumnNews, {"code": "1", "data": []}),
])
def test_a_changed_shape_is_a_payload_error(family: type[Source], payload: Any) -> None:
    source = make(family, "em")
    with pytest.raises(PayloadError, match=r"em \(eastmoney-"):
        source.parse_list(source.list_requests()[0], payload)


@pytest.mark.parametrize("family, payload", [
    (RollingNews, {"records": []}),
    (MediaColumns, {"nodeList": []}),
    (MarketNews, {"record": []}),
    (FastNews, {"code": "1", "message": "success", "data": {"fastNewsList": []}}),
    (ColumnNews, {"code": "1", "message": "success", "data": {"list": []}}),
])
def test_an_empty_list_is_not_an_error_here(family: type[Source], payload: Any) -> None:
    source = make(family, "em")
    assert source.parse_list(source.list_requests()[0], payload) == []


def test_full_text_reads_content_or_text() -> None:
    source = make(RollingNews, "em-rolling")
    entry = Entry("1", {})
    assert source.parse_text(entry, {"content": "<p>a</p>", "text": "b"}) == {
        "body_html": "<p>a</p>"}
    assert source.parse_text(entry, {"text": "<p>b</p>"}) == {"body_html": "<p>b</p>"}
    media = make(MediaColumns, "em-media")
    assert media.parse_text(entry, {"content": "<p>a</p>", "text": "<p>b</p>"}) == {
        "body_html": "<p>b</p>"}
    for payload in ({"body": "x"}, {"content": None}, [], "text"):
        with pytest.raises(PayloadError, match="full text of 1"):
            source.parse_text(entry, payload)


# -- legacy: media columns and market news --------------------------------------------

def real_media_post() -> tuple[bytes, str, str]:
    data = MEDIA_POST.read_bytes()
    _, front, body = data.decode("utf-8").split("---\n", 2)
    title = yaml.safe_load(front_value(front, "title"))
    return data, title, body.split(f"\n\n<{ZNING_SHARE}", 1)[0]


def test_a_media_column_item_exports_byte_for_byte_as_the_real_post() -> None:
    data, title, content = real_media_post()
    source = make(MediaColumns, "em-media", share_base=ZNING_SHARE)
    [request] = source.list_requests()
    assert dict(request.params) == {"type": "45", "count": "100", "newsid": "1"}
    payload = {"nodeList": [{"infocode": "NW202201112243109259", "from": "人民邮电报",
                             "title": title, "showtime": "2022-01-11 09:53:30",
                             "simtitle": "", "simdigest": ""}]}
    [article] = articles(source, payload, {"text:NW202201112243109259": {"text": content}})
    assert article.uid == "em-media:NW202201112243109259"
    assert (article.outlet, article.outlet_slug) == ("人民邮电报", "renminyoudianbao")
    assert article.url == article.share_url == ZNING_SHARE + "NW202201112243109259"
    assert post_filename(article) == MEDIA_POST.name
    assert render_post(article, base_url=BASE).encode("utf-8") == data


def test_a_market_item_exports_in_the_media_format() -> None:
    data, title, content = real_media_post()
    source = make(MarketNews, "em-market", share_base=ZNING_SHARE)
    requests = source.list_requests()
    assert [r.key for r in requests] == ["list:37", "list:38", "list:39"]
    assert [dict(r.params)["marketType"] for r in requests] == ["37", "38", "39"]
    assert requests[0].url == "http://43.240.125.15:1818/information/newmarket/web/webapi"
    payload = {"record": [{"infoCode": "NW202201112243109259", "medianame": "人民邮电报",
                           "title": title, "datetime": "2022-01-11 09:53:30"}]}
    [article] = articles(source, payload, {"text:NW202201112243109259": {"content": content}})
    assert article.uid == "em-market:NW202201112243109259"
    assert render_post(article, base_url=BASE).encode("utf-8") == data


def test_media_share_links_default_to_the_documented_host() -> None:
    source = make(MediaColumns, "em-media")
    [entry] = source.parse_list(source.list_requests()[0], {"nodeList": [
        {"infocode": "AN202205261565432100", "from": "21世纪经济报道", "title": "t",
         "showtime": "2022-05-26 07:30:00", "simdigest": "摘要"}]})
    article = source.to_article(entry, {"body_html": "<p>正文</p>"}, FETCHED)
    assert article.url == ("http://choicewzp1.eastmoney.com/html_News/NewsShare.html"
                           "?infoCode=AN202205261565432100")
    assert article.outlet_slug == "21shijijingjibaodao"
    assert render_post(article, BASE).endswith(
        "[返回21世纪经济报道新闻]"
        "(//finews.withounder.com/category/21shijijingjibaodao.html)"
        "｜[返回首页](//finews.withounder.com/)")


def test_market_types_can_be_configured() -> None:
    source = make(MarketNews, "em-market", market_types=[38], count=500)
    [request] = source.list_requests()
    assert request.key == "list:38" and dict(request.params)["count"] == "500"


# -- 7x24 fast news ------------------------------------------------------------------

def fast_item(post: RollingPost, **changes: Any) -> dict[str, Any]:
    item = {"code": post.id, "title": "", "summary": f"【{post.title}】{post.digest}",
            "showTime": post.showtime, "realSort": f"{post.id}00",
            "stockList": ["1.600519", "90.BK0475"], "image": [], "titleColor": 0,
            "pinglun_Num": 3, "share": 1}
    item.update(changes)
    return item


def fast_payload(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"code": "1", "message": "success",
            "data": {"sortEnd": items[-1]["realSort"] if items else "", "fastNewsList": items}}


def test_fast_news_request_sends_sort_end_and_req_trace() -> None:
    [request] = make(FastNews, "em-724").list_requests()
    params = dict(request.params)
    assert request.url == "https://np-weblist.eastmoney.com/comm/web/getFastNewsList"
    assert params["sortEnd"] == "" and params["req_trace"]  # both present
    assert params["fastColumn"] == "102" and params["biz"] == "web_724"
    assert dict(request.headers)["Referer"] == "https://kuaixun.eastmoney.com/"


def test_fast_news_titles_come_from_the_headline() -> None:
    source = make(FastNews, "em-724")
    got = articles(source, fast_payload([fast_item(p) for p in DATED]))
    assert len(got) == len(DATED)
    for post, article in zip(DATED, got):
        assert article.uid == f"em-724:{post.id}"
        assert article.title == post.title
        assert "【" not in article.body_text and article.body_text == post.digest.strip()
        assert article.url == f"https://finance.eastmoney.com/a/{post.id}.html"
        assert article.outlet == "东方财富7x24"
        assert article.extra["stocks"] == ["1.600519", "90.BK0475"]


def test_fast_news_with_a_title_strips_the_headline_from_the_body() -> None:
    post = DATED[0]
    source = make(FastNews, "em-724")
    [article] = articles(source, fast_payload([fast_item(post, title="另一个标题")]))
    assert article.title == "另一个标题" and article.body_text == post.digest.strip()


def test_fast_news_without_title_or_headline_is_an_item_error() -> None:
    post = DATED[0]
    source = make(FastNews, "em-724")
    payload = fast_payload([fast_item(post, summary=post.digest, stockList=None)])
    [entry] = source.parse_list(source.list_requests()[0], payload)
    with pytest.raises(ItemError, match=f"em-724:{post.id}: empty title"):
        source.to_article(entry, None, FETCHED)
    payload = fast_payload([fast_item(post, title="", summary="", showTime="")])
    [entry] = source.parse_list(source.list_requests()[0], payload)
    with pytest.raises(ItemError, match=f"em-724:{post.id}"):
        source.to_article(entry, None, FETCHED)


# -- column news -----------------------------------------------------------------------

def column_item(post: RollingPost, **changes: Any) -> dict[str, Any]:
    item = {"code": post.id, "showTime": post.showtime, "title": post.title,
            "mediaName": "证券时报网", "summary": post.digest, "image": "",
            "url": f"http://finance.eastmoney.com/a/{post.id}.html",
            "uniqueUrl": f"https://finance.eastmoney.com/a/{post.id}.html", "Np_dst": ""}
    item.update(changes)
    return item


def article_page(post: RollingPost, container: str) -> str:
    return (f"<!DOCTYPE html><html><head><title>{post.title}</title>"
            "<script>var x = 1;</script></head><body><div class='nav'>导航</div>"
            f"{container.format(body=html.escape(post.digest))}"
            "<div class='footer'>版权</div></body></html>")


def test_column_news_requests_and_full_text() -> None:
    source = make(ColumnNews, "em-col")
    [request] = source.list_requests()
    params = dict(request.params)
    assert request.url == "https://np-listapi.eastmoney.com/comm/web/getNewsByColumns"
    assert params["column"] == "350" and params["biz"] == "web_news_col"
    assert params["req_trace"] and params["page_index"] == "1"
    post = DATED[1]
    payload = {"code": "1", "message": "success", "data": {"list": [column_item(post)]}}
    [entry] = source.parse_list(request, payload)
    assert entry.text_request is not None
    assert entry.text_request.url == f"https://finance.eastmoney.com/a/{post.id}.html"
    assert entry.text_request.payload == "text"
    page = article_page(post, "<div id='ContentBody'><p>{body}</p>"
                              "<script>track()</script></div>")
    article = source.to_article(entry, source.parse_text(entry, page), FETCHED)
    assert article.uid == f"em-col:{post.id}" and article.outlet == "证券时报网"
    assert article.body_text == post.digest.strip()
    assert "script" not in article.body_html and "导航" not in article.body_text


@pytest.mark.parametrize("selector", ["txtinfos", "article-content", "newsContent", "Body"])
def test_column_news_falls_back_to_other_body_selectors(selector: str) -> None:
    post = DATED[2]
    source = make(ColumnNews, "em-col")
    entry = Entry(post.id, column_item(post))
    page = article_page(post, f"<div class='{selector}'><p>{{body}}</p></div>")
    assert "<p>" in source.parse_text(entry, page)["body_html"]


def test_column_news_page_without_a_body_is_a_payload_error() -> None:
    post = DATED[2]
    source = make(ColumnNews, "em-col")
    entry = Entry(post.id, column_item(post))
    with pytest.raises(PayloadError, match="div#ContentBody"):
        source.parse_text(entry, article_page(post, "<div class='other'>{body}</div>"))
    with pytest.raises(PayloadError):
        source.parse_text(entry, article_page(post, "<div id='ContentBody'>  </div>"))


def test_column_news_tolerates_missing_fields() -> None:
    post = DATED[3]
    source = make(ColumnNews, "em-col")
    item = {"code": post.id, "title": post.title, "showTime": post.showtime,
            "uniqueUrl": "javascript:alert(1)"}
    [entry] = source.parse_list(source.list_requests()[0],
                                {"code": "1", "data": {"list": [item]}})
    assert entry.text_request is not None  # never a non-web URL
    assert entry.text_request.url == f"https://finance.eastmoney.com/a/{post.id}.html"
    article = source.to_article(entry, None, FETCHED)
    assert article.outlet == "东方财富" and article.body_html == ""
    assert article.url == f"https://finance.eastmoney.com/a/{post.id}.html"


def test_the_families_are_registered_under_their_kinds() -> None:
    for family in (RollingNews, MediaColumns, MarketNews, FastNews, ColumnNews):
        assert type(load_source(SourceConfig("x", family.kind))) is family
        assert all(isinstance(r, Request) for r in make(family, "x").list_requests())

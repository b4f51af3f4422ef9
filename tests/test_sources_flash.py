"""The 7x24 flash families: 财联社, 金十数据, 华尔街见闻 and 新浪财经.

Payloads are built here in the shapes NEWS-APIS.md documents (§3–§6); the
sentences are realistic but no payload is a captured response.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from datetime import datetime, timezone
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlencode

import pytest

from caixun.errors import ConfigError, PayloadError
from caixun.model import Article
from caixun.normalize import BEIJING
from caixun.sources.base import ENTRY_POINT_GROUP, ItemError, Source, SourceConfig
from caixun.sources.cls import Telegraph, sign_params
from caixun.sources.jin10 import Flash
from caixun.sources.sina import Zhibo
from caixun.sources.wallstreetcn import LiveNews

FETCHED = datetime(2024, 5, 23, 15, 0, tzinfo=timezone.utc)
SCRIPT = "<script>alert('x')</script>"


def make(family: type[Source], name: str, **options: Any) -> Source:
    return family(SourceConfig(name=name, kind=family.kind, options=options))


def articles(source: Source, payload: Any) -> list[Article]:
    [request] = source.list_requests()
    return [source.to_article(entry, None, FETCHED)
            for entry in source.parse_list(request, payload)]


def one(source: Source, payload: Any) -> Article:
    [article] = articles(source, payload)
    return article


def beijing(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=BEIJING)


def assert_no_script(article: Article) -> None:
    assert "<script" not in article.body_html.lower()
    assert "alert" not in article.body_html + article.body_text


@pytest.mark.parametrize("family", [Telegraph, Flash, LiveNews, Zhibo])
def test_the_families_are_registered_under_their_kind(family: type[Source]) -> None:
    [point] = entry_points(group=ENTRY_POINT_GROUP, name=family.kind)
    assert point.load() is family


@pytest.mark.parametrize("family", [Telegraph, Flash, LiveNews, Zhibo])
def test_unknown_options_are_refused(family: type[Source]) -> None:
    with pytest.raises(ConfigError, match="pagesize"):
        make(family, "x", pagesize=10)


# --- 财联社 ---------------------------------------------------------------------

def cls_item(**changes: Any) -> dict[str, Any]:
    item = {
        "id": 1723456, "ctime": 1716447005, "modified_time": 1716447012,
        "title": "长鑫存储增资至约313.9亿",
        "content": "【长鑫存储增资至约313.9亿】财联社5月23日电，天眼查App显示，长鑫存储技术有限公司"
                   "注册资本由约238.9亿人民币增至约313.9亿人民币。",
        "brief": "【长鑫存储增资至约313.9亿】财联社5月23日电，天眼查App显示……",
        "level": "B", "type": -1,
        "shareurl": "https://api3.cls.cn/share/article/1723456?os=web&sv=8.4.6&app=CailianpressWeb",
        "subjects": [{"subject_id": 1135, "subject_name": "存储芯片"}],
        "stock_list": [{"name": "兆易创新", "StockID": "sh603986", "RiseRange": 2.31}],
        "images": [], "reading_num": 10523, "author": "财联社",
    }
    item.update(changes)
    return item


def cls_page(*items: dict[str, Any]) -> dict[str, Any]:
    return {"errno": 0, "msg": "", "data": {"roll_data": list(items)}}


def test_cls_sign_matches_the_reported_vector_and_hashlib() -> None:
    params = {"rn": "50", "os": "web", "app": "CailianpressWeb"}
    query = "app=CailianpressWeb&os=web&rn=50"  # sorted by key
    expected = hashlib.md5(hashlib.sha1(query.encode()).hexdigest().encode()).hexdigest()
    assert sign_params(params) == expected
    # NEWS-APIS.md §3 reports this vector as unverified; it agrees with hashlib.
    assert sign_params(params) == "e833b86a1feaf6119652b85fd0c52676"


def test_cls_sign_uses_query_string_encoding() -> None:
    params = {"category": "hk_us", "last_time": "", "q": "a b&c"}
    query = urlencode(sorted(params.items()))
    assert query == "category=hk_us&last_time=&q=a+b%26c"
    expected = hashlib.md5(hashlib.sha1(query.encode()).hexdigest().encode()).hexdigest()
    assert sign_params(params) == expected


def test_cls_request_is_signed_with_the_base_params() -> None:
    before = int(time.time())
    [request] = make(Telegraph, "cls", sv="7.7.5", rn=30, category="red").list_requests()
    after = int(time.time())
    params = dict(request.params)
    assert request.url == "https://www.cls.cn/v1/roll/get_roll_list"
    assert request.params[-1][0] == "sign"
    unsigned = {k: v for k, v in params.items() if k != "sign"}
    # last_time is now, in Unix seconds, as maintained clients send it (not "").
    assert before <= int(unsigned.pop("last_time")) <= after
    assert unsigned == {"app": "CailianpressWeb", "os": "web", "sv": "7.7.5", "rn": "30",
                        "category": "red", "refresh_type": "1"}
    unsigned["last_time"] = params["last_time"]
    assert [k for k, _ in request.params[:-1]] == sorted(unsigned)
    assert params["sign"] == sign_params(unsigned)
    headers = dict(request.headers)
    assert headers["Referer"] == "https://www.cls.cn/telegraph"
    assert "Mozilla/5.0" in headers["User-Agent"]
    assert headers["Accept"].startswith("application/json")


def test_cls_item_becomes_an_article() -> None:
    article = one(make(Telegraph, "cls-telegraph"), cls_page(cls_item()))
    assert article.uid == "cls-telegraph:1723456"
    assert article.title == "长鑫存储增资至约313.9亿"
    assert article.published_at == beijing(2024, 5, 23, 14, 50, 5)
    assert article.published_at.utcoffset() is not None
    assert article.outlet == "财联社"
    assert article.url == "https://www.cls.cn/detail/1723456"
    assert article.share_url.startswith("https://api3.cls.cn/share/article/1723456")
    assert article.extra == {"level": "B", "stocks": ["sh603986"],
                             "stock_names": [["sh603986", "兆易创新"]], "subjects": ["存储芯片"]}
    # The longer of content and brief, without its headline.
    assert article.body_text.startswith("财联社5月23日电，天眼查App显示，长鑫存储")
    assert article.body_text.endswith("增至约313.9亿人民币。")


def test_cls_prefers_a_brief_longer_than_a_truncated_content() -> None:
    item = cls_item(content="【央行开展逆回购操作】财联社5月23日电，央行今日开展…",
                    brief="【央行开展逆回购操作】财联社5月23日电，央行今日开展20亿元7天期逆回购操作，"
                          "中标利率为1.8%。", title="", ctime=1716447005000)
    article = one(make(Telegraph, "cls"), cls_page(item))
    assert article.title == "央行开展逆回购操作"  # from the 【…】 headline
    assert article.body_text.endswith("中标利率为1.8%。")
    assert article.published_at == beijing(2024, 5, 23, 14, 50, 5)  # 13 digits: ms


def test_cls_without_title_or_headline_takes_the_first_sentence() -> None:
    item = cls_item(title="", content="财联社5月23日电，沪指午后翻红，半导体板块走强。两市成交额放大。",
                    brief="")
    article = one(make(Telegraph, "cls"), cls_page(item))
    assert article.title == "财联社5月23日电，沪指午后翻红，半导体板块走强"


def test_cls_drops_vip_items_and_teasers() -> None:
    kept = cls_item(id=1)
    page = cls_page(
        kept,
        cls_item(id=2, type=20015),
        cls_item(id=3, title="", content="【盘中宝】这一细分领域订单已排至年底，公司产能持续扩张",
                 brief=""),
        cls_item(id=4, title="【电报解读】低空经济再迎催化，这些公司已有布局"),
        cls_item(id=5, title="", content="", brief="【电报解读】光伏行业迎来拐点？"),
    )
    source = make(Telegraph, "cls")
    [request] = source.list_requests()
    assert [entry.native_id for entry in source.parse_list(request, page)] == ["1"]


def test_cls_items_that_cannot_be_articles_name_their_uid() -> None:
    source = make(Telegraph, "cls")
    [request] = source.list_requests()
    empty, timeless = source.parse_list(request, cls_page(
        cls_item(id=7, title="", content="", brief=""), cls_item(id=8, ctime=None)))
    with pytest.raises(ItemError, match="cls:7: empty title"):
        source.to_article(empty, None, FETCHED)
    with pytest.raises(ItemError, match="cls:8: empty time"):
        source.to_article(timeless, None, FETCHED)


@pytest.mark.parametrize("payload, field", [
    ({"errno": 50001, "msg": "签名错误"}, "errno=50001"),
    ({"errno": 0, "data": {}}, "data.roll_data"),
    ({"data": {"roll_data": []}}, "errno"),
    ([], "errno"),
    (cls_page({"ctime": 1716447005, "content": "无编号"}), "id"),
])
def test_cls_envelope_errors(payload: Any, field: str) -> None:
    source = make(Telegraph, "cls")
    with pytest.raises(PayloadError, match=field):
        source.parse_list(source.list_requests()[0], payload)


def test_cls_script_never_reaches_the_body() -> None:
    item = cls_item(content=f"【长鑫存储增资】财联社5月23日电，天眼查App显示增资。{SCRIPT}", brief="")
    article = one(make(Telegraph, "cls"), cls_page(item))
    assert_no_script(article)
    assert article.body_text == "财联社5月23日电，天眼查App显示增资。"


# --- 金十数据 -------------------------------------------------------------------

def jin10_flash(id_: str, when: str, content: str, **changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": id_, "time": when, "type": 0, "important": 0, "tags": [], "channel": [1],
        "remark": [],
        "data": {"content": content, "pic": "", "title": "", "source": "", "source_link": ""},
    }
    item.update(changes)
    return item


GOLD = jin10_flash("20240523111228466800", "2024-05-23 11:12:28",
                   "<b>【黄金的创纪录涨势因投资者获利了结而暂停】</b><br/>现货黄金日内跌1.2%，"
                   "报2372美元/盎司。", important=1)
GDP = {"id": "20240523100000123400", "time": "2024-05-23 10:00:00", "type": 1, "important": 1,
       "data": {"name": "第一季度GDP年率", "country": "德国", "actual": -0.2,
                "previous": "-0.2", "consensus": "-0.2", "unit": "%", "star": 3}}


def jin10_page(*items: dict[str, Any]) -> dict[str, Any]:
    return {"status": 200, "message": "OK", "data": list(items)}


def test_jin10_request_carries_the_app_headers() -> None:
    [request] = make(Flash, "jin10").list_requests()
    headers = dict(request.headers)
    assert request.url == "https://flash-api.jin10.com/get_flash_list"
    assert dict(request.params) == {"channel": "-8200", "vip": "1", "max_time": ""}
    assert headers["x-app-id"] == "bVBF4FyRTn5NJF5n" and headers["x-version"] == "1.0.0"
    assert headers["Referer"] == "https://www.jin10.com/"
    [request] = make(Flash, "jin10", app_id="newid", version="2.0.0").list_requests()
    assert dict(request.headers)["x-app-id"] == "newid"
    assert dict(request.headers)["x-version"] == "2.0.0"


def test_jin10_flash_becomes_an_article() -> None:
    article = one(make(Flash, "jin10"), jin10_page(GOLD))
    assert article.uid == "jin10:20240523111228466800"
    assert article.title == "黄金的创纪录涨势因投资者获利了结而暂停"
    assert article.body_text == "现货黄金日内跌1.2%，报2372美元/盎司。"
    assert "<b>" not in article.body_html
    assert article.published_at == beijing(2024, 5, 23, 11, 12, 28)
    assert article.outlet == "金十数据"
    assert article.url == "https://flash.jin10.com/detail/20240523111228466800"
    assert article.extra == {"important": 1}


def test_jin10_accepts_a_bare_array() -> None:
    assert one(make(Flash, "jin10"), [GOLD]).uid == "jin10:20240523111228466800"


def test_jin10_calendar_point_becomes_a_line_of_text() -> None:
    article = one(make(Flash, "jin10"), jin10_page(GDP))
    line = "德国 第一季度GDP年率 实际 -0.2% 预期 -0.2% 前值 -0.2%"
    assert article.title == line and article.body_text == line
    assert article.published_at == beijing(2024, 5, 23, 10, 0, 0)
    assert article.extra == {"important": 1, "calendar": True}


def test_jin10_calendar_point_without_a_name_is_an_item_error() -> None:
    point = copy.deepcopy(GDP)
    point["data"] = {"country": "德国", "actual": None}
    source = make(Flash, "jin10")
    [entry] = source.parse_list(source.list_requests()[0], jin10_page(point))
    with pytest.raises(ItemError, match="jin10:20240523100000123400"):
        source.to_article(entry, None, FETCHED)


def test_jin10_drops_promos() -> None:
    page = jin10_page(
        GOLD,
        jin10_flash("20240523111500000001", "2024-05-23 11:15:00", "金十VIP独家解读", type=2),
        jin10_flash("20240523111600000002", "2024-05-23 11:16:00", "【VIP】美联储内部分歧加剧",
                    data={"content": "【VIP】美联储内部分歧加剧", "tag": "VIP"}),
        jin10_flash("20240523111700000003", "2024-05-23 11:17:00",
                    '<a href="https://xnews.jin10.com/details/1">点击查看</a>'),
        jin10_flash("20240523111800000004", "2024-05-23 11:18:00", "订阅会员",
                    data={"content": "订阅会员", "link": "https://www.jin10.com/vip_payment/"}),
    )
    assert [a.uid for a in articles(make(Flash, "jin10"), page)] == [
        "jin10:20240523111228466800"]


def test_jin10_drops_english_twins_only() -> None:
    english_twin = jin10_flash("20240523111240000001", "2024-05-23 11:12:40",
                               "Spot gold fell 1.2% on the day to $2372 per ounce.")
    english_alone = jin10_flash("20240523150000000002", "2024-05-23 15:00:00",
                                "ECB's Lagarde: June rate cut is likely.")
    page = jin10_page(GOLD, english_twin, english_alone, GDP)
    uids = [a.uid for a in articles(make(Flash, "jin10"), page)]
    assert uids == ["jin10:20240523111228466800", "jin10:20240523150000000002",
                    "jin10:20240523100000123400"]


def test_jin10_item_without_time_is_an_item_error() -> None:
    source = make(Flash, "jin10")
    [entry] = source.parse_list(source.list_requests()[0], jin10_page(
        jin10_flash("20240523111900000005", "", "【美元指数走高】美元指数日内涨0.3%。")))
    with pytest.raises(ItemError, match="jin10:20240523111900000005: empty time"):
        source.to_article(entry, None, FETCHED)


@pytest.mark.parametrize("payload, field", [
    ({"status": 500, "message": "Internal Error"}, "status=500"),
    ({"status": 200, "data": None}, "data"),
    ({"message": "OK"}, "status"),
    ("<html>", "status"),
])
def test_jin10_envelope_errors(payload: Any, field: str) -> None:
    source = make(Flash, "jin10")
    with pytest.raises(PayloadError, match=field):
        source.parse_list(source.list_requests()[0], payload)


def test_jin10_script_never_reaches_the_body() -> None:
    flash = jin10_flash("20240523112000000006", "2024-05-23 11:20:00",
                        f"【欧元区5月制造业PMI初值】{SCRIPT}录得47.4，预期46.1。")
    article = one(make(Flash, "jin10"), jin10_page(flash))
    assert_no_script(article)
    assert article.body_text == "录得47.4，预期46.1。"


# --- 华尔街见闻 -----------------------------------------------------------------

def wscn_live(**changes: Any) -> dict[str, Any]:
    item = {
        "id": 3152710, "title": "",
        "content": "<p>浙江：4月份，规模以上工业增加值同比增长7.4%。</p>",
        "content_text": "浙江：4月份，规模以上工业增加值同比增长7.4%。",
        "content_more": "", "display_time": 1716446100, "score": 1,
        "uri": "https://wallstreetcn.com/livenews/3152710",
        "author": {"display_name": "石惠"}, "images": [],
        "channels": ["global-channel", "a-stock-channel"], "is_calendar": False,
    }
    item.update(changes)
    return item


def wscn_page(*items: dict[str, Any]) -> dict[str, Any]:
    return {"code": 20000, "message": "OK",
            "data": {"next_cursor": "1716445200", "items": list(items)}}


def test_wallstreetcn_request_options() -> None:
    [request] = make(LiveNews, "wscn").list_requests()
    assert request.url == "https://api-one.wallstcn.com/apiv1/content/lives"
    assert dict(request.params) == {"channel": "global-channel", "limit": "100"}
    assert dict(request.headers)["Referer"] == "https://wallstreetcn.com/"
    [request] = make(LiveNews, "wscn", channel="a-stock-channel", limit=200).list_requests()
    assert dict(request.params) == {"channel": "a-stock-channel", "limit": "200"}


def test_wallstreetcn_live_becomes_an_article() -> None:
    article = one(make(LiveNews, "wallstreetcn"), wscn_page(wscn_live(score=2)))
    assert article.uid == "wallstreetcn:3152710"
    assert article.title == "浙江：4月份，规模以上工业增加值同比增长7.4%"  # first sentence
    assert article.body_text == "浙江：4月份，规模以上工业增加值同比增长7.4%。"
    assert article.published_at == beijing(2024, 5, 23, 14, 35, 0)
    assert article.outlet == "华尔街见闻"
    assert article.url == "https://wallstreetcn.com/livenews/3152710"
    assert article.extra == {"score": 2, "author": "石惠"}


def test_wallstreetcn_prefers_content_text_and_reads_headlines() -> None:
    live = wscn_live(
        id=3152711, title="",
        content="<p>【美股盘前】<b>英伟达</b>涨超3%</p>",
        content_text="【美股盘前】英伟达盘前涨超3%，AMD涨超2%。",
        content_more="<p>甲骨文盘前涨近2%。</p>", uri="")
    article = one(make(LiveNews, "wallstreetcn"), wscn_page(live))
    assert article.title == "美股盘前"
    assert article.body_text == "英伟达盘前涨超3%，AMD涨超2%。\n\n甲骨文盘前涨近2%。"
    assert article.url == "https://wallstreetcn.com/livenews/3152711"  # no uri: the template


def test_wallstreetcn_falls_back_to_html_content() -> None:
    live = wscn_live(title="印度9月CPI同比上涨1.54%", content_text="",
                     content="<p>印度统计部周一公布的数据显示，<strong>印度9月CPI同比上涨1.54%</strong>。</p>")
    article = one(make(LiveNews, "wallstreetcn"), wscn_page(live))
    assert article.title == "印度9月CPI同比上涨1.54%"
    assert article.body_text == "印度统计部周一公布的数据显示，印度9月CPI同比上涨1.54%。"


def test_wallstreetcn_items_that_cannot_be_articles_name_their_uid() -> None:
    source = make(LiveNews, "wscn")
    empty, timeless = source.parse_list(source.list_requests()[0], wscn_page(
        wscn_live(id=1, content="", content_text=""), wscn_live(id=2, display_time=None)))
    with pytest.raises(ItemError, match="wscn:1: empty title"):
        source.to_article(empty, None, FETCHED)
    with pytest.raises(ItemError, match="wscn:2: empty time"):
        source.to_article(timeless, None, FETCHED)


@pytest.mark.parametrize("payload, field", [
    ({"code": 60301, "message": "参数错误", "data": None}, "code=60301"),
    ({"code": 20000, "data": {"next_cursor": "0"}}, "data.items"),
    ({"message": "OK"}, "code"),
])
def test_wallstreetcn_envelope_errors(payload: Any, field: str) -> None:
    source = make(LiveNews, "wscn")
    with pytest.raises(PayloadError, match=field):
        source.parse_list(source.list_requests()[0], payload)


def test_wallstreetcn_script_never_reaches_the_body() -> None:
    live = wscn_live(content_text="", content=f"<p>美元指数短线走高。</p>{SCRIPT}",
                     content_more=SCRIPT)
    article = one(make(LiveNews, "wscn"), wscn_page(live))
    assert_no_script(article)
    assert article.body_text == "美元指数短线走高。"


# --- 新浪财经 -------------------------------------------------------------------

def sina_item(**changes: Any) -> dict[str, Any]:
    ext = {"stocks": [{"market": "cn", "symbol": "sh601318", "key": "中国平安"}],
           "docurl": "https://finance.sina.com.cn/7x24/2024-05-23/doc-inavxyz1234567.shtml",
           "docid": "inavxyz1234567"}
    item = {
        "id": 4576925, "zhibo_id": 152, "type": 0,
        "rich_text": "【沪深两市成交额突破8000亿元】截至10:32，沪深两市成交额突破8000亿元，"
                     "较上个交易日此时放量。",
        "create_time": "2024-05-23 10:32:05", "update_time": "2024-05-23 10:32:11",
        "is_focus": 0, "top_value": 0, "like_nums": 3,
        "tag": [{"id": "5", "name": "市场"}],
        "ext": json.dumps(ext, ensure_ascii=False),
        "docurl": "https://finance.sina.cn/7x24/2024-05-23/detail-inavxyz1234567.d.html",
    }
    item.update(changes)
    return item


def sina_page(*items: dict[str, Any]) -> dict[str, Any]:
    return {"result": {"status": {"code": 0, "msg": "OK"},
                       "timestamp": "Thu May 23 22:46:48 +0800 2024",
                       "data": {"feed": {"list": list(items),
                                         "page_info": {"totalPage": 900, "pageSize": 20,
                                                       "page": 1, "totalNum": 18000}}}}}


def test_sina_request_options() -> None:
    [request] = make(Zhibo, "sina", page_size=50).list_requests()
    assert request.url == "https://zhibo.sina.com.cn/api/zhibo/feed"
    assert dict(request.params) == {"zhibo_id": "152", "tag_id": "0", "page": "1",
                                    "page_size": "50", "pagesize": "50", "dire": "f",
                                    "dpc": "1"}
    assert dict(request.headers)["Referer"] == "https://finance.sina.com.cn/7x24/"


def test_sina_item_becomes_an_article() -> None:
    article = one(make(Zhibo, "sina-7x24"), sina_page(sina_item()))
    assert article.uid == "sina-7x24:4576925"
    assert article.title == "沪深两市成交额突破8000亿元"
    assert article.body_text == "截至10:32，沪深两市成交额突破8000亿元，较上个交易日此时放量。"
    assert article.published_at == beijing(2024, 5, 23, 10, 32, 5)  # a Beijing string
    assert article.outlet == "新浪财经"
    # ext.docurl, the desktop page, is preferred to docurl, the mobile one.
    assert article.url == "https://finance.sina.com.cn/7x24/2024-05-23/doc-inavxyz1234567.shtml"
    assert article.extra == {"stocks": ["sh601318"], "stock_names": [["sh601318", "中国平安"]],
                             "tags": ["市场"]}


def test_sina_url_falls_back_to_the_mobile_docurl() -> None:
    ext = json.dumps({"stocks": [], "docurl": "", "docid": "inavxyz1234567"})
    article = one(make(Zhibo, "sina"), sina_page(sina_item(ext=ext)))
    assert article.url == "https://finance.sina.cn/7x24/2024-05-23/detail-inavxyz1234567.d.html"


@pytest.mark.parametrize("ext", ['{"stocks": [', "", None, "[1, 2]", 42])
def test_sina_bad_ext_keeps_the_item(ext: Any) -> None:
    article = one(make(Zhibo, "sina"), sina_page(sina_item(ext=ext)))
    assert article.title == "沪深两市成交额突破8000亿元"
    assert article.url.startswith("https://finance.sina.cn/")
    assert article.extra == {"tags": ["市场"]}


def test_sina_without_headline_takes_the_first_sentence_and_skips_deleted() -> None:
    plain = sina_item(id=1, rich_text="国家统计局：4月份，全国规模以上工业增加值同比增长6.7%。")
    deleted = sina_item(id=2, is_delete=1)
    [article] = articles(make(Zhibo, "sina"), sina_page(plain, deleted))
    assert article.title == "国家统计局：4月份，全国规模以上工业增加值同比增长6.7%"


def test_sina_items_that_cannot_be_articles_name_their_uid() -> None:
    source = make(Zhibo, "sina")
    empty, timeless = source.parse_list(source.list_requests()[0], sina_page(
        sina_item(id=1, rich_text=""), sina_item(id=2, create_time="")))
    with pytest.raises(ItemError, match="sina:1: empty title"):
        source.to_article(empty, None, FETCHED)
    with pytest.raises(ItemError, match="sina:2: empty time"):
        source.to_article(timeless, None, FETCHED)


@pytest.mark.parametrize("payload, field", [
    ({"result": {"status": {"code": 1, "msg": "zhibo_id error"}}}, "result.status.code=1"),
    ({"result": {"status": {"code": 0}, "data": {"feed": {}}}}, "result.data.feed.list"),
    ({"result": {}}, "result.status"),
    ({}, "result.status"),
])
def test_sina_envelope_errors(payload: Any, field: str) -> None:
    source = make(Zhibo, "sina")
    with pytest.raises(PayloadError, match=field):
        source.parse_list(source.list_requests()[0], payload)


def test_sina_script_never_reaches_the_body() -> None:
    item = sina_item(rich_text=f"【央行：保持流动性合理充裕】{SCRIPT}央行表示将灵活开展公开市场操作。")
    article = one(make(Zhibo, "sina"), sina_page(item))
    assert_no_script(article)
    assert article.body_text == "央行表示将灵活开展公开市场操作。"

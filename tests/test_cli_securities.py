"""Securities on the command line, in the search API and in the JSON Lines export.

`caixun securities` (table and --json), `securities import FILE.csv` (good and
bad rows, GBK, a BOM, the re-tag of earlier articles), `securities retag`,
`search --stock`, `/api/search?stock=` and `export jsonl`'s ``stocks``: on a
real SQLite archive whose articles were stored before any name was known.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from starlette.applications import Starlette

from caixun.archive import open_archive
from caixun.cli import main
from caixun.model import Article
from caixun.normalize import BEIJING
from caixun.publish.jsonl import write_jsonl
from caixun.search_api import search_routes
from caixun.securities import SecurityName
from test_startup import NOT_FOR_SEARCH, _child

# Texts that name securities by name only (tagged once the names are known) and
# by code (tagged at once: 腾讯控股(00700)).
ARTICLES = [
    ("t:1", "贵州茅台发布年报", "贵州茅台营收增长，白酒板块走强。"),
    ("t:2", "腾讯控股(00700)回购股份", "腾讯控股今日回购股份。"),
    ("t:3", "平安银行与贵州茅台签约", "平安银行（原深发展A）与贵州茅台签署合作协议。"),
    ("t:4", "央行降准0.5个百分点", "中国人民银行决定下调金融机构存款准备金率。"),
    ("t:5", "深发展A旧闻", "深发展A年报摘要。"),
]

GOOD_CSV = """\
code,name,full_name,former_names,pair
600519,贵州茅台,贵州茅台酒股份有限公司,,
000001.SZ,平安银行,,深发展A；深发展,
xyz,坏代码,,,

00700,腾讯控股,,,
601318,中国平安,,,02318
02318,中国平安,,,
,无代码,,,
000002,,,,
600036,招商银行,,,nope
"""


def article(n: int, uid: str, title: str, body: str) -> Article:
    return Article(uid=uid, outlet="测试报", outlet_slug="ceshibao", title=title,
                   published_at=datetime(2021, 12, 8, 10, n, tzinfo=BEIJING),
                   file_id=uid.replace(":", ""), body_html=f"<p>{body}</p>", body_text=body)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "caixun.db"
    with open_archive(path) as archive:
        for n, (uid, title, body) in enumerate(ARTICLES, 1):
            archive.store(article(n, uid, title, body))
        while archive.retag():  # the archive's own first pass: nothing by name yet
            pass
    return path


def run(db: Path, *args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, ["--archive", str(db), *args], env=env)


def tags(db: Path) -> dict[str, list[str]]:
    """uid → codes, as the export gives them."""
    result = run(db, "export", "jsonl", "-")
    assert result.exit_code == 0, result.output
    return {r["uid"]: r["stocks"] for r in map(json.loads, result.stdout.splitlines())}


def listing(db: Path) -> dict[str, dict[str, Any]]:
    result = run(db, "securities", "--json")
    assert result.exit_code == 0, result.output
    return {row["code"]: row for row in json.loads(result.stdout)}


def imported(db: Path, tmp_path: Path, text: str = GOOD_CSV, name: str = "list.csv",
             encoding: str = "utf-8", *options: str) -> Result:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return run(db, "securities", "import", *options, str(path))


# -- listing -------------------------------------------------------------------------

def test_an_archive_without_securities_says_so(db: Path, tmp_path: Path) -> None:
    for path in (db, tmp_path / "missing.db"):
        result = run(path, "securities")
        assert result.exit_code == 0
        assert result.stdout.startswith(f"no securities in {path} yet")
        assert "securities import" in result.stdout
        assert json.loads(run(path, "securities", "--json").stdout) == []
    assert not (tmp_path / "missing.db").exists()  # listing creates nothing


def test_the_table_lists_code_name_market_spellings_and_articles(db: Path,
                                                                 tmp_path: Path) -> None:
    assert imported(db, tmp_path).exit_code == 0
    table = run(db, "securities").stdout
    lines = table.splitlines()
    header = next(line for line in lines if "code" in line)
    for column in ("name", "market", "other names", "articles", "pair"):
        assert column in header
    moutai = next(line for line in lines if "600519.SH" in line)
    assert "贵州茅台" in moutai and " SH " in moutai and "贵州茅台酒股份有限公司" in moutai
    assert re.search(r"│\s+2\s+│", moutai)  # t:1 and t:3
    bank = next(line for line in lines if "000001.SZ" in line)
    assert "深发展A、深发展" in bank
    # Most articles first (then by code).
    assert re.findall(r"^│ (\S+) ", table, re.M) == [
        "000001.SZ", "600519.SH", "00700.HK", "02318.HK", "601318.SH"]


# -- import ---------------------------------------------------------------------------

def test_import_stores_the_good_rows_reports_the_bad_and_retags(db: Path,
                                                                tmp_path: Path) -> None:
    before = tags(db)
    assert before["t:1"] == [] and before["t:2"] == ["00700.HK"]  # a code in the text

    result = imported(db, tmp_path)
    assert result.exit_code == 0, result.output
    path = tmp_path / "list.csv"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {path}:4: code 'xyz' is not a security code (600519, sh600519, 600519.SH, "
        "00700.HK; or give a market column); row skipped",
        f"error: {path}:9: no code; row skipped",  # line 5 is blank: lines still count
        f"error: {path}:10: no name for 000002.SZ; row skipped",
        f"error: {path}:11: pair 'nope' is not a security code; row skipped",
    ]
    # 贵州茅台 ×2, 平安银行 ×3, 腾讯控股, 中国平安 ×2
    assert f"{path}: 5 securities, 8 new name(s), 4 bad row(s) skipped" in result.stderr
    assert re.search(r"re-tagged: read [1-9]\d* article\(s\)", result.stderr)

    found = listing(db)
    assert set(found) == {"600519.SH", "000001.SZ", "00700.HK", "601318.SH", "02318.HK"}
    assert found["600519.SH"] == {
        "code": "600519.SH", "name": "贵州茅台", "market": "SH",
        "other_names": ["贵州茅台酒股份有限公司"], "articles": 2, "pair": None,
        "source": "csv:list.csv", "learned_at": found["600519.SH"]["learned_at"]}
    assert found["000001.SZ"]["other_names"] == ["深发展A", "深发展"]
    assert (found["601318.SH"]["pair"], found["02318.HK"]["pair"]) == ("02318.HK", "601318.SH")
    assert found["00700.HK"]["articles"] == 1

    # Articles stored before the names were known are tagged with them now,
    # by the current name and by a former one.
    assert tags(db) == {"t:1": ["600519.SH"], "t:2": ["00700.HK"],
                        "t:3": ["000001.SZ", "600519.SH"], "t:4": [], "t:5": ["000001.SZ"]}

    again = imported(db, tmp_path)  # nothing new the second time
    assert "0 new name(s)" in again.stderr and "re-tagged: read 0 article(s)" in again.stderr


def test_strict_fails_on_a_bad_row_but_keeps_the_good_ones(db: Path, tmp_path: Path) -> None:
    result = imported(db, tmp_path, GOOD_CSV, "list.csv", "utf-8", "--strict")
    assert result.exit_code == 1 and "--strict: some rows were skipped" in result.stderr
    assert "600519.SH" in listing(db)


@pytest.mark.parametrize("encoding", ["gbk", "utf-8-sig", "utf-16"])
def test_gbk_bom_and_utf16_files_are_read(db: Path, tmp_path: Path, encoding: str) -> None:
    """Chinese Excel saves CSV as GBK; "CSV UTF-8" with a BOM; "Unicode text" as UTF-16."""
    separator = "\t" if encoding == "utf-16" else ","
    text = "\n".join(separator.join(row) for row in [
        ("证券代码", "证券简称", "市场", "曾用名"),
        ("600519", "贵州茅台", "沪", ""),
        ("1", "平安银行", "深", "深发展A｜深发展"),  # Excel dropped the zeros of 000001
        ("700", "腾讯控股", "HK", ""),
        ("600519", "错市场", "SZ", ""),
    ]) + "\n"
    result = imported(db, tmp_path, text, f"{encoding}.csv", encoding)
    assert result.exit_code == 0, result.output
    assert f"{encoding}.csv:5: code '600519' is not a security code of market SZ" \
        in result.stderr
    found = listing(db)
    assert {code: row["name"] for code, row in found.items()} == {
        "600519.SH": "贵州茅台", "000001.SZ": "平安银行", "00700.HK": "腾讯控股"}
    assert found["000001.SZ"]["other_names"] == ["深发展A", "深发展"]
    assert found["600519.SH"]["source"] == f"csv:{encoding}.csv"
    assert tags(db)["t:5"] == ["000001.SZ"]


def test_a_file_that_cannot_be_read_is_one_clear_error(db: Path, tmp_path: Path) -> None:
    cases = [
        (b"name,full_name\n\xe8\xb4\xb5\xe5\xb7\x9e,x\n",
         "the header line has no code column (it has: name, full_name)"),
        (b"", "empty: no header line"),
        (b"\x81\x30\xff\xfe\x00\x80code", "neither UTF-8 nor GBK text"),
    ]
    for number, (data, message) in enumerate(cases):
        path = tmp_path / f"bad{number}.csv"
        path.write_bytes(data)
        result = run(db, "securities", "import", str(path))
        assert result.exit_code == 1
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"Error: {path}") and message in line, line
    assert listing(db) == {}


# -- retag ------------------------------------------------------------------------------

def test_retag_tags_articles_stored_before_a_name_was_learned(db: Path) -> None:
    with open_archive(db) as archive:
        archive.learn_securities([SecurityName("600519.SH", "贵州茅台", "test")])
    assert tags(db)["t:1"] == []
    result = run(db, "securities", "retag")
    assert result.exit_code == 0, result.output
    assert "re-tagged: read 2 article(s)" in result.stderr  # the two that name it
    assert tags(db)["t:1"] == ["600519.SH"]
    assert "read 0 article(s)" in run(db, "securities", "retag").stderr  # nothing left
    everything = run(db, "securities", "retag", "--all")
    assert f"read {len(ARTICLES)} article(s)" in everything.stderr
    assert tags(db)["t:3"] == ["600519.SH"]


def test_retag_needs_an_archive(tmp_path: Path) -> None:
    result = run(tmp_path / "none.db", "securities", "retag")
    assert result.exit_code == 1 and "no archive at" in result.stderr
    assert not (tmp_path / "none.db").exists()


def test_the_retag_bar_only_on_a_terminal_and_not_with_quiet(db: Path, tmp_path: Path) -> None:
    marks = re.compile("\x1b\\[|━|re-tagging")
    terminal = {"TTY_COMPATIBLE": "1"}
    drawn = run(db, "securities", "retag", "--all", env=terminal)
    assert drawn.exit_code == 0 and "re-tagging" in drawn.stderr
    quiet = run(db, "-q", "securities", "retag", "--all", env=terminal)
    assert quiet.exit_code == 0 and not marks.search(quiet.stderr) and not quiet.stderr
    plain = run(db, "securities", "retag", "--all",
                env={"TTY_COMPATIBLE": None, "FORCE_COLOR": None})
    assert not marks.search(plain.stderr) and "re-tagged" in plain.stderr


# -- search --------------------------------------------------------------------------------

@pytest.fixture
def named(db: Path, tmp_path: Path) -> Path:
    assert imported(db, tmp_path).exit_code == 0
    return db


def found(db: Path, *args: str) -> list[str]:
    result = run(db, "search", "--json", *args)
    assert result.exit_code == 0, result.output
    return [hit["uid"] for hit in json.loads(result.stdout)]


@pytest.mark.parametrize("stock", ["600519", "sh600519", "SH600519", "1.600519", "600519.SH",
                                   "600519.ss", "贵州茅台", "贵州茅台酒股份有限公司"])
def test_search_by_stock_takes_a_code_in_any_spelling_or_a_name(named: Path,
                                                               stock: str) -> None:
    assert found(named, "--stock", stock) == ["t:3", "t:1"]  # newest first
    assert found(named, "--stock", stock, "年报") == ["t:1"]  # AND-ed with the words


def test_search_by_stock_ands_stocks_and_knows_former_names(named: Path) -> None:
    assert found(named, "--stock", "深发展A") == ["t:5", "t:3"]
    assert found(named, "--stock", "贵州茅台", "--stock", "000001") == ["t:3"]
    assert found(named, "--stock", "00700", "--stock", "600519") == []
    result = run(named, "search", "--json", "--stock", "茅台")
    records = json.loads(run(named, "search", "--json", "--stock", "平安银行").stdout)
    assert [r["stocks"] for r in records] == [["000001.SZ"], ["000001.SZ", "600519.SH"]]
    assert result.exit_code == 1
    assert "--stock: no security is called '茅台'" in result.stderr


def test_search_by_stock_errors(named: Path) -> None:
    ambiguous = run(named, "search", "--stock", "中国平安")
    assert ambiguous.exit_code == 1
    assert "'中国平安' names 2 securities (02318.HK, 601318.SH)" in ambiguous.stderr
    nothing = run(named, "search")
    assert nothing.exit_code == 2 and "give words to search for, or --stock CODE" \
        in nothing.stderr


def test_search_text_shows_the_codes(named: Path) -> None:
    result = run(named, "search", "--stock", "贵州茅台")
    assert "贵州茅台发布年报  [600519.SH]" in result.stdout
    assert "平安银行与贵州茅台签约  [000001.SZ 600519.SH]" in result.stdout
    assert "2 result(s) about 600519.SH" in result.stderr


def test_search_by_stock_imports_no_server_builder_or_rich(named: Path, tmp_path: Path) -> None:
    modules, out = _child(tmp_path, "--archive", str(named), "search", "--json",
                          "--stock", "贵州茅台")
    assert not modules & set(NOT_FOR_SEARCH), sorted(modules & set(NOT_FOR_SEARCH))
    assert [hit["uid"] for hit in json.loads(out)] == ["t:3", "t:1"]


# -- the API --------------------------------------------------------------------------------

def api(db: Path, params: list[tuple[str, str]]) -> httpx.Response:
    app = Starlette(routes=search_routes(db, "/news"))

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/api/search", params=params)
    return asyncio.run(call())


def test_the_api_filters_by_stock_and_says_each_results_stocks(named: Path) -> None:
    reply = api(named, [("stock", "sh600519")])
    assert reply.status_code == 200
    body = reply.json()
    assert body["stocks"] == ["600519.SH"] and body["query"] == ""
    assert [(r["uid"], r["stocks"]) for r in body["results"]] == [
        ("t:3", ["000001.SZ", "600519.SH"]), ("t:1", ["600519.SH"])]
    assert [r["uid"] for r in api(named, [("q", "年报"), ("stock", "贵州茅台")])
            .json()["results"]] == ["t:1"]
    both = api(named, [("stock", "贵州茅台"), ("stock", "深发展A")]).json()
    assert both["stocks"] == ["600519.SH", "000001.SZ"]
    assert [r["uid"] for r in both["results"]] == ["t:3"]
    # Without a stock, results still carry theirs.
    plain = api(named, [("q", "回购")]).json()
    assert [(r["uid"], r["stocks"]) for r in plain["results"]] == [("t:2", ["00700.HK"])]
    assert api(named, [("q", "降准")]).json()["results"][0]["stocks"] == []


@pytest.mark.parametrize("params, message", [
    ([("stock", "茅台")], "stock: no security is called '茅台'"),
    ([("stock", "中国平安")], "names 2 securities"),
    ([("stock", " ")], "q is required"),
    ([("stock", str(n)) for n in range(600000, 600011)], "at most 10"),
    ([("stock", "央" * 51)], "longer than 50"),
])
def test_the_api_says_what_is_wrong_with_a_stock(named: Path, params: list[tuple[str, str]],
                                                 message: str) -> None:
    reply = api(named, params)
    assert reply.status_code == 400 and message in reply.json()["error"], reply.json()


# -- export ---------------------------------------------------------------------------------

def test_export_gives_each_article_its_stocks_sorted(named: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.jsonl"
    assert run(named, "export", "jsonl", str(out)).exit_code == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["uid"], r["stocks"]) for r in records] == [
        ("t:1", ["600519.SH"]), ("t:2", ["00700.HK"]), ("t:3", ["000001.SZ", "600519.SH"]),
        ("t:4", []), ("t:5", ["000001.SZ"])]
    assert list(records[0])[-4:] == ["story", "duplicate_of", "aliases", "stocks"]


def test_stocks_are_read_a_batch_at_a_time(named: Path) -> None:
    with open_archive(named, read_only=True) as archive:
        statements: list[str] = []
        archive._db.set_trace_callback(statements.append)
        rows = list(archive.iter_articles_linked(batch=2))
        archive._db.set_trace_callback(None)
    assert [(row[0].uid, list(row[4])) for row in rows][2] == ("t:3", ["000001.SZ",
                                                                      "600519.SH"])
    codes = [s for s in statements if "article_securities" in s]
    assert len(codes) == 3  # five articles in batches of two
    out = io.StringIO()
    list(write_jsonl(rows, out))
    assert [json.loads(line)["stocks"] for line in out.getvalue().splitlines()] == [
        ["600519.SH"], ["00700.HK"], ["000001.SZ", "600519.SH"], [], ["000001.SZ"]]

"""East Money's quote lists (``api/qt/clist/get``): the names of listed securities.

The list that akshare's ``stock_zh_a_spot_em``, ``stock_bj_a_spot_em``,
``stock_hk_spot_em`` and ``stock_us_spot_em`` page through (NEWS-APIS.md §9.1),
read for three fields only: ``f12`` the code, ``f13`` East Money's market id and
``f14`` the short name. Each row becomes a ``SecurityName`` whose code is
``from_eastmoney(f"{f13}.{f12}")`` (``1.600519`` → ``600519.SH``); the fetcher
stores them with the archive's ``learn_securities``, and the archive tags
articles with them (older ones by its bounded re-tag).

* One list per market, each its own ``fs`` filter option (``fs_sh``, ``fs_sz``,
  ``fs_bj``, ``fs_hk``, ``fs_us``; ``""`` leaves that market out). In a filter a
  comma is OR and a space (or ``+``, as scripts write it in URLs) is AND; a
  ``+`` is sent as a space, so both spellings mean the same.
* Paging: ``pn`` from 1, ``pz`` = ``page_size``, until ``pn * pz >= data.total``,
  or a page with no rows, or ``data: null`` (past the last page), at most
  ``max_pages`` pages. A server that sends fewer rows than asked on page 1 while
  the total is larger capped the page size: the following pages are asked with
  its size, so none is skipped.
* A page whose body is not JSON, whose ``rc`` is not 0, or whose ``data`` is
  null on page 1 (a filter that matches nothing), is an error: the source fails
  in its health record, and the names of the pages read before it are kept.
* Rows that are not securities (indices such as ``1.000001``, boards such as
  ``90.BK0475``) are left out silently; malformed rows (no code, market or name,
  values of the wrong type) are left out with a warning naming the source, the
  list, the page and the row, and the rest of the page is stored.
* Names are stored as read but in the form the archive compares names in
  (NFKC, so full-width ``Ａ`` is ``A``; the padding spaces of Shenzhen names
  removed between Chinese characters): ``万  科Ａ`` is stored as ``万科A``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Mapping

from caixun.errors import ConfigError, PayloadError
from caixun.rules import text, whole
from caixun.securities import SecurityName, from_eastmoney
from caixun.sources.base import Entry, NamesPage, NameSource, Request, SourceConfig
from caixun.sources.eastmoney import merged_request
from caixun.sources.fields import DESKTOP_UA

__all__ = ["MARKETS", "SOURCE", "SecurityLists", "clean_name"]

SOURCE = "eastmoney-securities"  # SecurityName.source of every name learned here
CLIST_URL = "https://82.push2.eastmoney.com/api/qt/clist/get"
UT = "bd1d9ddb04089700cf9c27f6f7426281"  # the public web token every client sends
FIELDS = "f12,f13,f14"  # code, market id, short name
DAY = 86_400.0

# The markets, in the order they are read, and their filters as akshare sends them.
MARKETS = ("sh", "sz", "bj", "hk", "us")
FILTERS = {
    "fs_sh": "m:1 t:2,m:1 t:23",  # Shanghai main board, STAR market (stock_sh_a_spot_em)
    "fs_sz": "m:0 t:6,m:0 t:80",  # Shenzhen main board, ChiNext (stock_sz_a_spot_em)
    "fs_bj": "m:0 t:81 s:2048",  # Beijing (stock_bj_a_spot_em)
    "fs_hk": "m:128 t:3,m:128 t:4,m:128 t:1,m:128 t:2",  # Hong Kong (stock_hk_spot_em)
    "fs_us": "m:105,m:106,m:107",  # NASDAQ, NYSE, AMEX (stock_us_spot_em)
}

_TERM = r"[A-Za-z]+:[0-9A-Za-z_]+"
_FS = re.compile(rf"{_TERM}(?:[ +]+{_TERM})*(?:\s*,\s*{_TERM}(?:[ +]+{_TERM})*)*")
_FS_RULE = text('an East Money fs filter such as "m:1 t:2,m:1 t:23", or "" (market left out)',
                lambda v: v == "" or _FS.fullmatch(v.strip()) is not None)
_CJK = "\u2e80-\u9fff\uf900-\ufaff"
_CJK_SPACE = re.compile(rf"(?<=[{_CJK}])\s+|\s+(?=[{_CJK}])")


def clean_name(raw: str) -> str:
    """A short name as the archive keeps it: NFKC, spaces collapsed, none next to
    a Chinese character (``万  科Ａ`` → ``万科A``; ``Apple Inc`` unchanged)."""
    name = " ".join(unicodedata.normalize("NFKC", raw).split())
    return _CJK_SPACE.sub("", name)


def _count(value: Any) -> int | None:
    """A non-negative count sent as a number or its digits; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _rows(data: Mapping[str, Any]) -> list[Any] | None:
    """``data.diff`` as a list (``np=1``) or the values of an object (``np=2``)."""
    diff = data.get("diff")
    if isinstance(diff, list):
        return diff
    if isinstance(diff, Mapping):
        return list(diff.values())
    return None


def _shown(row: Any) -> str:
    written = repr(row)
    return written if len(written) <= 120 else written[:117] + "..."


class SecurityLists(NameSource):
    """东方财富 quote lists: the A-share, Hong Kong and US listed companies' names."""

    kind = SOURCE
    description = "东方财富 quote lists (api/qt/clist/get): names of A-share, HK and US securities"
    default_every = DAY
    defaults = {
        "list_url": CLIST_URL,
        **FILTERS,
        "page_size": 100,  # rows per page; the server may cap it (then its size is used)
        "max_pages": 200,  # per market and poll; the US list is ~12,000 rows
        "ut": UT,
        "user_agent": DESKTOP_UA,
        "referer": "https://quote.eastmoney.com/",
    }
    option_rules = {"page_size": whole(1, 5000), "max_pages": whole(1, 1000),
                    **{key: _FS_RULE for key in FILTERS}}

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        if not any(str(self.option(key)).strip() for key in FILTERS):
            raise ConfigError(f"{self.label}: every fs_* option is empty: there is no list "
                              "to read")

    def list_requests(self) -> list[Request]:
        headers = tuple((k, v) for k, v in (("User-Agent", str(self.option("user_agent"))),
                                             ("Referer", str(self.option("referer")))) if v)
        requests = []
        for market in MARKETS:
            fs = " ".join(str(self.option(f"fs_{market}")).replace("+", " ").split())
            if not fs:
                continue
            params = [("pn", "1"), ("pz", str(self.option("page_size"))), ("po", "1"),
                      ("np", "1"), ("fltt", "2"), ("invt", "2"), ("fid", "f12"), ("fs", fs),
                      ("fields", FIELDS)]
            if self.option("ut"):
                params.append(("ut", str(self.option("ut"))))
            requests.append(merged_request(str(self.option("list_url")), params,
                                           headers=headers, key=f"list:{market}"))
        return requests

    def where(self, request: Request) -> str:
        """How a warning names a page: "em-securities (eastmoney-securities): list:sh page 2"."""
        return (f"{self.name} ({self.kind}): {request.key.split(':page')[0]} "
                f"page {dict(request.params).get('pn', '?')}")

    def fail(self, problem: str) -> PayloadError:
        # The fetcher adds the list and the page.
        return PayloadError(f"{self.kind}: {problem}")

    def parse_names(self, request: Request, payload: Any) -> NamesPage:
        data = self._data(request, payload)
        if data is None:
            return NamesPage([])  # past the last page
        rows = _rows(data)
        if rows is None:
            raise self.fail("data.diff is missing or not a list")
        names: list[SecurityName] = []
        skipped: list[str] = []
        ignored = 0
        for number, row in enumerate(rows, 1):
            problem, found = self._row(row)
            if problem:
                skipped.append(f"{self.where(request)} row {number}: {problem}, row left out: "
                               f"{_shown(row)}")
            elif found is None:
                ignored += 1
            else:
                names.append(found)
        return NamesPage(names, skipped, ignored)

    def next_page(self, request: Request, payload: Any,
                  entries: list[Entry]) -> Request | None:
        """Page ``pn + 1`` until ``pn * pz`` reaches ``data.total`` (see the module docstring)."""
        params = dict(request.params)
        page, size = _count(params.get("pn")), _count(params.get("pz"))
        data = payload.get("data") if isinstance(payload, Mapping) else None
        rows = _rows(data) if isinstance(data, Mapping) else None
        if not page or not size or not rows:
            return None  # no page number to follow, or past the end
        total = _count(data.get("total")) if isinstance(data, Mapping) else None
        if page == 1 and len(rows) < size and total is not None and len(rows) < total:
            # Fewer rows than asked, more to come: the server capped the page size.
            # Page on with its size, so that pn counts its pages.
            return request.with_params({"pn": "2", "pz": str(len(rows))})
        if total is not None and page * size >= total:
            return None
        if len(rows) < size:
            return None  # a short page is the last one
        return request.with_params({"pn": str(page + 1)})

    def _data(self, request: Request, payload: Any) -> Mapping[str, Any] | None:
        """The page's ``data``; None past the last page; ``PayloadError`` when unusable."""
        if not isinstance(payload, Mapping):
            raise self.fail(f"the payload is a {type(payload).__name__}, not a JSON object")
        if "rc" not in payload:
            keys = ", ".join(sorted(map(str, payload))) or "none"
            raise self.fail(f"the payload has no rc (keys: {keys}); the API changed shape")
        if _count(payload["rc"]) != 0:
            raise self.fail(f"rc={payload['rc']!r} (0 is success)")
        data = payload.get("data")
        if data is None:
            if dict(request.params).get("pn") == "1":
                fs = dict(request.params).get("fs", "")
                raise self.fail(f"data is null on the first page: the filter fs={fs!r} "
                                "matches nothing")
            return None
        if not isinstance(data, Mapping):
            raise self.fail(f"data is a {type(data).__name__}, not a JSON object")
        return data

    def _row(self, row: Any) -> tuple[str, SecurityName | None]:
        """(problem, name): a problem for a malformed row, no name for a non-security."""
        if not isinstance(row, Mapping):
            return f"a {type(row).__name__}, not a JSON object", None
        code, market, name = row.get("f12"), row.get("f13"), row.get("f14")
        if not isinstance(code, str) or not code.strip() or code.strip() == "-":
            return "f12 (the code) is missing or not a string", None
        if isinstance(market, str) and market.strip().isdigit():
            market = int(market.strip())
        if not isinstance(market, int) or isinstance(market, bool) or market < 0:
            return "f13 (the market id) is missing or not a number", None
        if not isinstance(name, str) or not clean_name(name) or clean_name(name) == "-":
            return "f14 (the name) is missing or empty", None
        canonical = from_eastmoney(f"{market}.{code.strip()}")
        if canonical is None:
            return "", None  # an index, a board, a fund: not a security
        return "", SecurityName(canonical, clean_name(name), SOURCE)

"""Securities: canonical codes, the names they go by, and tagging text with them.

A security is named by a canonical code, ``<code>.<market>``: ``600519.SH``,
``000001.SZ``, ``430047.BJ``, ``00700.HK``, ``AAPL.US``. Indices, sector boards,
funds and bonds are not securities here: :func:`from_eastmoney` and
:func:`a_share_market` refuse them, so nothing tags an article with the Shanghai
Composite (``1.000001``) or a board (``90.BK0475``).

:class:`Tagger` finds the securities an article is about:

* **codes** written in the text: ``600519.SH``, ``SH600519``, ``(600519)``,
  ``00700.HK``, ``腾讯控股(00700)``, ``(NASDAQ: AAPL)``; a bare six-digit number
  only when it is the code of a known security and not an amount (no digit or
  unit right after it);
* **names**, every known spelling at once with one Aho–Corasick automaton
  (``ahocorasick_rs``), leftmost-longest, so ``中国平安`` is not also ``平安``;
* **links** to quote pages (East Money, Sina, Xueqiu, 10jqka) and the sources'
  **native fields** (East Money ``stockList``, 财联社 ``stock_list``, 新浪
  ``ext.stocks``), which count whatever the text says.

The rule for weak names. A name that is also an everyday word would tag half the
archive: ``机器人`` (300024.SZ) in every article on robots, ``平安`` in every
article wishing one a safe trip. A name is *weak* when it has one character, is
written in Latin letters only (tickers, ``LI``), or is listed in
``data/common_names.txt``. A weak name tags only with evidence: the same
security's code anywhere in the text, a link or native field naming it, or a
company word right after it (股份, 集团, 控股, 公司, A股, H股 …). A broker
quoted for its view (``中信证券认为``, ``华泰证券研报``) needs the same evidence.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Iterator, Mapping

__all__ = ["MARKETS", "Scanned", "SecurityName", "Tagger", "scan", "a_share_market", "canonical_code",
           "codes_in_links", "from_eastmoney", "from_native", "name_forms", "names_in_links",
           "normalize_name"]

MARKETS = ("SH", "SZ", "BJ", "HK", "US")

# East Money market ids (the number before the dot in "1.600519"): 0 Shenzhen and
# Beijing, 1 Shanghai, 116 and 128 Hong Kong, 105/106/107 the US exchanges.
# Every other id (90 boards, 100 world indices, futures, forex) is not a security.
_EASTMONEY_HK = {"116", "128"}
_EASTMONEY_US = {"105", "106", "107"}

_SH_PREFIXES = ("600", "601", "603", "605", "688", "689", "900")
_SZ_PREFIXES = ("000", "001", "002", "003", "004", "300", "301", "302", "200", "201")
_BJ_PREFIXES = ("430", "830", "831", "832", "833", "834", "835", "836", "837", "838", "839",
                "870", "871", "872", "873", "920")


def a_share_market(code: str) -> str | None:
    """SH, SZ or BJ for a six-digit stock code; None for index, fund and bond codes."""
    if len(code) != 6 or not code.isdigit():
        return None
    if code.startswith(_SH_PREFIXES):
        return "SH"
    if code.startswith(_SZ_PREFIXES):
        return "SZ"
    if code.startswith(_BJ_PREFIXES):
        return "BJ"
    return None


def canonical_code(code: str, market: str) -> str | None:
    """``<code>.<market>`` when ``code`` can be a stock of ``market``, else None."""
    code, market = code.strip().upper(), market.strip().upper()
    if market in ("SH", "SZ", "BJ"):
        return f"{code}.{market}" if a_share_market(code) == market else None
    if market == "HK":
        if code.isdigit() and 1 <= len(code) <= 5 and int(code):
            return f"{code.zfill(5)}.HK"
        return None
    if market == "US":
        if re.fullmatch(r"[A-Z][A-Z0-9]{0,5}(?:[.\-_][A-Z]{1,2})?", code):
            return f"{code.replace('_', '.')}.US"
        return None
    return None


def from_eastmoney(secid: str) -> str | None:
    """A canonical code from East Money's ``<market id>.<code>`` (``1.600519``)."""
    market_id, dot, code = secid.strip().partition(".")
    if not dot:
        return None
    if market_id == "1":
        return canonical_code(code, "SH")
    if market_id == "0":
        market = a_share_market(code)
        return canonical_code(code, market) if market in ("SZ", "BJ") else None
    if market_id in _EASTMONEY_HK:
        return canonical_code(code, "HK")
    if market_id in _EASTMONEY_US:
        return canonical_code(code, "US")
    return None


_PREFIXED = re.compile(r"(?i)(sh|sz|bj)(\d{6})|(hk)(\d{4,5})|(?:us|gb_)([a-z][a-z0-9.]{0,7})")
_CANONICAL = re.compile(r"(?i)([0-9A-Z.\-]{1,8})\.(SH|SZ|BJ|HK|US|SS)")


def from_native(value: str) -> str | None:
    """A canonical code from any spelling a source's own field uses.

    ``1.600519`` (East Money), ``sh603986`` (财联社, 新浪), ``hk00700``,
    ``gb_aapl``/``usAAPL`` (新浪), ``600519.SH`` (already canonical); a bare
    six-digit A-share code, a five-digit Hong Kong one.
    """
    value = value.strip()
    if re.fullmatch(r"\d{1,3}\.[0-9A-Za-z.]+", value) and not re.fullmatch(r"\d{6}\.\w+", value):
        return from_eastmoney(value)
    if match := _CANONICAL.fullmatch(value):
        market = match.group(2).upper()
        return canonical_code(match.group(1), "SH" if market == "SS" else market)
    if match := _PREFIXED.fullmatch(value):
        if match.group(1):
            return canonical_code(match.group(2), match.group(1))
        if match.group(3):
            return canonical_code(match.group(4), "HK")
        return canonical_code(match.group(5), "US")
    if value.isdigit():
        if len(value) == 6:
            market = a_share_market(value)
            return canonical_code(value, market) if market else None
        if len(value) == 5:
            return canonical_code(value, "HK")
    return None


# -- names -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SecurityName:
    """One spelling of a security's name, and where it was learned."""

    code: str  # canonical
    name: str
    source: str  # "eastmoney-link", "cls", "securities-em", "csv:<file>", …
    kind: str = "short"  # short (简称), full (全称), former (曾用名), other


_ST_PREFIX = re.compile(r"^(?:S\*ST|\*ST|SST|ST|S)(?=[^\x00-\x7f])")
_CLASS_SUFFIX = re.compile(r"(?:-[A-Z]{1,2}|[AB])$")
_SPACES = re.compile(r"\s+")


def normalize_name(name: str) -> str:
    """The form names and text are compared in: NFKC (Ａ → A), no spaces, upper case."""
    return _SPACES.sub("", unicodedata.normalize("NFKC", name)).upper()


def name_forms(name: str) -> list[str]:
    """The spellings a name is found by: as listed, without ``*ST``, without a class mark.

    ``万  科Ａ`` → ``万科A``, ``万科``; ``*ST实达`` → ``*ST实达``, ``ST实达``, ``实达``;
    ``小米集团-W`` → ``小米集团-W``, ``小米集团``.
    """
    base = normalize_name(name)
    forms = [base] if base else []
    bare = _ST_PREFIX.sub("", base)
    if bare != base:  # a bare two-character rest (实达) is too often something else
        forms += [f"ST{bare}"] if base.startswith("*") else []
        forms += [bare] if len(bare) >= 3 else []
    for form in list(forms):
        stripped = _CLASS_SUFFIX.sub("", form)
        if stripped != form and _has_cjk(stripped) and len(stripped) >= 2:
            forms.append(stripped)
    return list(dict.fromkeys(f for f in forms if f))


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


@lru_cache(maxsize=1)
def common_names() -> frozenset[str]:
    """Names that are everyday words (``data/common_names.txt``): they need evidence."""
    from importlib.resources import files

    text = files("caixun").joinpath("data/common_names.txt").read_text(encoding="utf-8")
    return frozenset(normalize_name(line.split("#")[0]) for line in text.splitlines()
                     if line.split("#")[0].strip())


def is_weak(form: str) -> bool:
    """Whether a name needs evidence to tag (see the module's rule)."""
    return len(form) <= 1 or form.isascii() or form in common_names()


# -- links -------------------------------------------------------------------------------

_QUOTE_LINK = re.compile(
    r"""<a\b[^>]*?href\s*=\s*["']?(?P<href>[^"'\s>]+)[^>]*>(?P<text>.*?)</a>""",
    re.IGNORECASE | re.DOTALL)
_LINK_CODES = (
    (re.compile(r"quote\.eastmoney\.com/unify/r/(\d{1,3}\.[0-9A-Za-z.]+)"), from_eastmoney),
    (re.compile(r"quote\.eastmoney\.com/(?:concept/)?((?:sh|sz|bj)\d{6}|hk\d{5}|us[a-z.]+)",
                re.I), from_native),
    (re.compile(r"finance\.sina\.com\.cn/realstock/company/((?:sh|sz|bj)\d{6})", re.I),
     from_native),
    (re.compile(r"xueqiu\.com/S/((?:SH|SZ|BJ)\d{6}|\d{5}|[A-Z]{1,5})(?:[/?#\"]|$)"),
     from_native),
    (re.compile(r"stockpage\.10jqka\.com\.cn/(\d{6})"), from_native),
)
_TAGS = re.compile(r"<[^>]*>")


def _code_of_link(href: str) -> str | None:
    for pattern, parse in _LINK_CODES:
        if match := pattern.search(href):
            return parse(match.group(1))
    return None


def names_in_links(html: str) -> Iterator[tuple[str, str]]:
    """(code, link text) of each quote-page link in ``html``: names learned from markup."""
    for match in _QUOTE_LINK.finditer(html):
        code = _code_of_link(match.group("href"))
        if code:
            yield code, unicodedata.normalize("NFKC", _TAGS.sub("", match.group("text"))).strip()


def codes_in_links(html: str) -> set[str]:
    """The codes of the quote pages ``html`` links to."""
    return {code for code, _ in names_in_links(html)}


# -- codes in text -----------------------------------------------------------------------

# Codes as text writes them. A bare number is looked up only when no digit,
# letter or unit touches it, so 600000元 and 2025 are never codes.
_TEXT_CODES = re.compile(
    # The lookahead first: most characters of Chinese text fail it at once,
    # which halves the scan (82 -> 37 µs per rss-days item).
    r"(?=[0-9A-Z(纳纽])(?:(?<![0-9A-Za-z])(?:"
    r"(?P<cn>\d{6})\.(?P<cnm>SH|SZ|BJ|SS)"
    r"|(?P<pm>SH|SZ|BJ)(?P<pc>\d{6})"
    r"|(?P<hk>\d{4,5})\.HK"
    r"|(?P<us>[A-Z][A-Z0-9]{0,5})\.US|(?P<us2>[A-Z][A-Z0-9]{1,5})\.(?:O|N|OQ)"
    r"|(?:NASDAQ|NYSE|AMEX|纳斯达克|纽交所)\s*[:：]\s*(?P<ex>[A-Z][A-Z0-9.]{0,6})"
    r")(?![0-9A-Za-z])"
    r"|\((?P<paren>\d{5,6})(?:\.(?P<pm2>SH|SZ|BJ|HK))?\)"
    r"|(?<![0-9A-Za-z.])(?P<bare>\d{6})(?![0-9A-Za-z.%万亿元股手只份个位年月日号]))")


def _text_code(match: re.Match[str]) -> str | None:
    group = match.group
    if group("cn"):
        market = group("cnm")
        return canonical_code(group("cn"), "SH" if market == "SS" else market)
    if group("pc"):
        return canonical_code(group("pc"), group("pm"))
    if group("hk"):
        return canonical_code(group("hk"), "HK")
    if group("us") or group("us2"):
        return canonical_code(group("us") or group("us2"), "US")
    if group("ex"):
        return canonical_code(group("ex"), "US")
    if group("paren"):
        code, market = group("paren"), group("pm2")
        if market:
            return canonical_code(code, market)
        return from_native(code)  # (600519) an A-share, (00700) Hong Kong
    return from_native(group("bare"))


# -- tagging -----------------------------------------------------------------------------

_COMPANY_WORD = re.compile(
    r"(?:股份|集团|控股|公司|科技|银行|证券|A股|H股|港股|美股|股价|股票|ADR|\(|（)")
_EVIDENCE_AFTER = 4  # characters after a weak name searched for a company word
# A broker quoted for its view (中信证券认为…, 华泰证券研报指出…) is the source
# of an opinion, not what the article is about: it needs evidence like a weak name.
_BROKER = re.compile(r"(?:证券|中金公司|中信建投|国泰海通|申万宏源|国联民生|中国银河)$")
_OPINION = re.compile(r"(?:研报|研究|认为|表示|指出|首席|分析师|策略|宏观|判断|强调|预判)")


class Tagger:
    """Finds the securities a text is about, given every known name.

    Build one from the archive's names (``Tagger(names)``: (code, name) pairs);
    :meth:`learn` adds names as the archive learns them: they go to a small
    second automaton, merged into the main one once it has
    :attr:`MERGE_AFTER` forms (making the main one costs ~1 ms per 1,000
    names, too much to repeat for every article that teaches a name).

    ``ahocorasick_rs`` (Rust) over ``pyahocorasick``: on the rss-days items
    13 µs per item against 136, the same matches.
    """

    MERGE_AFTER = 256

    def __init__(self, names: Iterable[tuple[str, str]] = ()) -> None:
        self._forms: dict[str, set[str]] = {}  # form -> codes, in the main automaton
        self._pending: dict[str, set[str]] = {}  # form -> codes, in the second one
        self._codes: set[str] = set()
        for code, name in names:
            self._add(code, name, self._forms)
        self._main = _automaton(self._forms)
        self._second: tuple[Any, list[tuple[str, tuple[str, ...]]]] | None = None
        self._second_stale = False

    def __len__(self) -> int:
        return len(self._forms) + len(self._pending)

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(self._codes)

    def knows(self, code: str, name: str) -> bool:
        """Whether every spelling of ``name`` already tags ``code``."""
        return all(code in (self._forms.get(f) or self._pending.get(f) or ())
                   for f in name_forms(name))

    def _add(self, code: str, name: str, into: dict[str, set[str]]) -> bool:
        self._codes.add(code)
        added = False
        for form in name_forms(name):
            known = self._forms.get(form) or self._pending.get(form)
            if known is None or code not in known:
                into.setdefault(form, set()).add(code)
                added = True
        return added

    def learn(self, code: str, name: str) -> bool:
        """Add a spelling; True if it was new."""
        if not self._add(code, name, self._pending):
            return False
        if len(self._pending) >= self.MERGE_AFTER:
            for form, codes in self._pending.items():
                self._forms.setdefault(form, set()).update(codes)
            self._pending.clear()
            self._main, self._second = _automaton(self._forms), None
        else:
            self._second_stale = True
        return True

    def tag(self, text: str, linked: Iterable[str] = (), native: Iterable[str] = ()
            ) -> tuple[str, ...]:
        """The codes ``text`` names, with ``linked`` (codes of its quote links, see
        :func:`codes_in_links`) and ``native`` (a source's own stock field), sorted."""
        scanned, normalized = _scan(text, linked, native)
        return self.tag_scanned(scanned, text, normalized)

    def tag_scanned(self, scanned: Scanned, text: str, normalized: str | None = None
                    ) -> tuple[str, ...]:
        """:meth:`tag` of ``text`` given what :func:`scan` found in it (e.g. in a
        worker process: what it sends back holds no text)."""
        evidence = set(scanned.codes)
        evidence.update(code for code in scanned.if_known if code in self._codes)
        tags = set(evidence)
        if self._main is None and not self._pending:
            return tuple(sorted(tags))  # no names known: nothing more to look for
        if normalized is None:
            from caixun.segment import normalize

            normalized = normalize(text)
        found = normalized
        for end, form, codes in self._names_in(found):
            after = found[end + 1:end + 1 + _EVIDENCE_AFTER]
            if not is_weak(form) and not (_BROKER.search(form) and _OPINION.match(after)):
                tags.update(codes)
                continue
            strong = _COMPANY_WORD.match(after) is not None
            tags.update(code for code in codes if strong or code in evidence)
        return tuple(sorted(tags))

    def _names_in(self, text: str) -> Iterator[tuple[int, str, tuple[str, ...]]]:
        """(end index, form, codes) of each name, leftmost-longest, not overlapping."""
        if self._second_stale:
            self._second, self._second_stale = _automaton(self._pending), False
        for found in (self._main, self._second):
            if found is not None and text:
                automaton, forms = found
                for index, _, end in automaton.find_matches_as_indexes(text):
                    form, codes = forms[index]
                    yield end - 1, form, codes


def _automaton(forms: Mapping[str, set[str]]) -> tuple[Any, list[tuple[str, tuple[str, ...]]]] | None:
    """An Aho–Corasick automaton of ``forms``, leftmost-longest, and each pattern's
    (form, codes); None if there are none."""
    if not forms:
        return None
    import ahocorasick_rs

    patterns = [(form, tuple(sorted(codes))) for form, codes in forms.items()]
    automaton = ahocorasick_rs.AhoCorasick(
        [form for form, _ in patterns], matchkind=ahocorasick_rs.MatchKind.LeftmostLongest)
    return automaton, patterns


@dataclass(frozen=True, slots=True)
class Scanned:
    """What tagging finds in a text before it looks for names: the part that needs
    no names, so that import workers can do it."""

    codes: tuple[str, ...]  # written out, linked or in a native field: they tag
    if_known: tuple[str, ...]  # bare numbers that tag if they are a known code


def scan(text: str, linked: Iterable[str] = (), native: Iterable[str] = (),
         normalized: str | None = None) -> Scanned:
    """The codes ``text`` writes, with the linked and native ones (see :meth:`Tagger.tag`);
    ``normalized``: ``segment.normalize(text)`` when the caller has it already."""
    return _scan(text, linked, native, normalized)[0]


def _scan(text: str, linked: Iterable[str], native: Iterable[str],
          normalized: str | None = None) -> tuple[Scanned, str]:
    """:func:`scan`, and the normalized text it read (names are looked for in it)."""
    from caixun.segment import normalize

    found = normalize(text) if normalized is None else normalized
    codes = set(linked)
    codes.update(code for value in native if (code := from_native(value)))
    if_known = set()
    for match in _TEXT_CODES.finditer(found):
        code = _text_code(match)
        if code is None:
            continue
        if match.group("bare") or (match.group("paren") and not match.group("pm2")
                                   and not _named(match)):
            if_known.add(code)
        else:
            codes.add(code)
    return Scanned(tuple(sorted(codes)), tuple(sorted(if_known - codes))), found


def _named(match: re.Match[str]) -> bool:
    """Whether a code in brackets follows a name: 腾讯控股(00700)."""
    start = match.start()
    return start > 0 and _has_cjk(match.string[start - 1])

"""Chinese-aware tokens for the search index, and queries that match them.

Each indexed text gets two token streams, in two kinds of FTS5 columns:

* **words**: the words jieba (rjieba, search mode, with a user dictionary of
  finance terms, ``data/finance_words.txt``) finds that carry letters or
  digits: codes (600519, 00700.HK), English, mixed terms (A股, 5G, MLF). jieba
  keeps A股 whole where a character tokenizer would split it.
* **grams**: every run of Chinese characters as overlapping character bigrams,
  the run's last character as a unigram (人民银行 → 人民 民银 银行 行). A
  Chinese query of two or more characters is the phrase of its bigrams, so it
  matches wherever the text contains it as a substring; a single character is a
  prefix query (every character starts some gram).

Guarantee (tested): an article whose title, digest or body contains a query's
Chinese string as a substring is found — whether jieba made it a word, part of
a longer word, or split it across two words; ASCII terms (codes, English,
5G, MLF) match as whole words, case-insensitively.

The same functions segment at index time and at query time; ``VERSION``
changes whenever their output would, and the archive then rebuilds the index.
"""

from __future__ import annotations

import html
import operator
import re
import threading
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

__all__ = ["STATIC_VERSION", "VERSION", "IndexedText", "Query", "QueryError", "index_text",
           "pack_terms", "parse_query", "static_terms", "unpack_terms",
           "snippet"]

VERSION = "3"  # bump when tokens change: the archive then rebuilds the index
MAX_QUERY_CHARS = 200
MAX_TERMS = 12

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RUN = re.compile(f"[{_CJK}]+")
_WORD_CHARS = re.compile(f"[{_CJK}A-Za-z0-9]")
_ASCII_WORD = re.compile(r"[a-z0-9]+")
_ASCII_ALNUM = re.compile("[A-Za-z0-9\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]")


class QueryError(ValueError):
    """A search query that cannot be run (empty, too long, only exclusions)."""


_JIEBA_LOCK = threading.Lock()


def _jieba() -> Any:
    # lru_cache alone lets a second thread load the dictionary while the first
    # already cuts, and rjieba's add_word then fails ("RuntimeError: Already
    # borrowed": concurrent searches in `caixun serve` hit it).
    with _JIEBA_LOCK:
        return _load_jieba()


@lru_cache(maxsize=1)
def _load_jieba() -> Any:
    # Imported here: rjieba loads jieba's dictionary when imported (~0.1 s),
    # and only indexing and some queries need it (see _term_words).
    from importlib.resources import files

    import rjieba

    words = files("caixun").joinpath("data/finance_words.txt").read_text(encoding="utf-8")
    for line in words.splitlines():
        word = line.split("#")[0].strip()
        if word:
            rjieba.add_word(word, None, None)
    return rjieba


# Full-width ASCII (ＭＬＦ６００５１９) and the ideographic space fold to their
# half-width forms; a translation table is many times faster than NFKC, which
# would also rewrite every Chinese comma.
_HALF_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_FULL_WIDTH = re.compile("[\uff01-\uff5e\u3000]")


def normalize(text: str) -> str:
    """Half-width and upper case: 'ａ股', 'A股' and 'Ａ股' segment alike.

    jieba's dictionary spells mixed terms in upper case (A股, MLF); the tokens
    are lower-cased afterwards, as FTS5 folds case anyway.
    """
    if _FULL_WIDTH.search(text):  # rare, and translate() is slow on Chinese text
        text = text.translate(_HALF_WIDTH)
    return text.upper()


def words(text: str) -> list[str]:
    """jieba's search-mode words of ``text`` that carry letters, digits or Chinese."""
    return [w.lower() for w in _jieba().cut_for_search(normalize(text))
            if w.isalnum() or _WORD_CHARS.search(w)]


def grams(text: str) -> list[str]:
    """Bigrams of every Chinese run, each run's last character as a unigram."""
    out: list[str] = []
    for run in _CJK_RUN.findall(text):  # folding width or case changes no Chinese
        out += map(operator.add, run, run[1:])
        out.append(run[-1])
    return out


@dataclass(frozen=True, slots=True)
class IndexedText:
    """The four FTS5 column values of one article, and its static-search terms.

    ``static`` is :func:`static_terms` of the article packed by :func:`pack_terms`:
    the archive keeps it, so the site's search index is built without
    segmenting the articles again.
    """

    title_words: str
    title_grams: str
    text_words: str
    text_grams: str
    static: bytes = b""

    def values(self) -> tuple[str, str, str, str]:
        return (self.title_words, self.title_grams, self.text_words, self.text_grams)


def index_text(title: str, digest: str, body_text: str) -> IndexedText:
    text = f"{digest}\n{body_text}" if digest and digest not in body_text else body_text
    static = pack_terms(static_terms(f"{title}\n{text}"))
    return IndexedText(_words_column(title), " ".join(grams(title)),
                       _words_column(text), " ".join(grams(text)), static)


_WITH_ASCII = re.compile(r"\S*[A-Za-z0-9]\S*")


def _words_column(text: str) -> str:
    # Chinese words are found through the grams, so this column keeps only the
    # words with letters or digits (codes, English, A股, 5G): half the tokens.
    # Text without any has nothing for it, and jieba need not run.
    if not _ASCII_ALNUM.search(text):
        return ""
    joined = " ".join(_jieba().cut_for_search(normalize(text)))
    return " ".join(_WITH_ASCII.findall(joined)).lower()


# -- queries -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: what must match, what must not, and the strings to highlight."""

    match: str  # an FTS5 MATCH expression
    highlights: tuple[str, ...] = field(default_factory=tuple)

    @property
    def title_match(self) -> str:
        """The same expression over the title columns only (for "is it in the title")."""
        return self.match.replace("{title_grams text_grams}", "{title_grams}").replace(
            "{title_words text_words}", "{title_words}")


_PART = re.compile(r'(-?)"([^"]*)"|(-?)(\S+)')


def parse_query(text: str) -> Query:
    """``QUERY`` → FTS5: words AND-ed, ``"quoted phrase"`` contiguous, ``-word`` excluded."""
    text = text.strip()
    if not text:
        raise QueryError("the query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"the query is longer than {MAX_QUERY_CHARS} characters")
    include: list[str] = []
    exclude: list[str] = []
    highlights: list[str] = []
    for match in _PART.finditer(text):
        negated = bool(match.group(1) or match.group(3))
        phrase = match.group(2) is not None
        raw = match.group(2) if phrase else match.group(4)
        expression = _phrase(raw) if phrase else _term(raw)
        if expression is None:
            continue
        (exclude if negated else include).append(expression)
        if not negated:
            highlights += [raw] if phrase else _term_words(raw)
    if not include:
        raise QueryError("the query has nothing to look for (only exclusions or punctuation)")
    if len(include) + len(exclude) > MAX_TERMS:
        raise QueryError(f"the query has more than {MAX_TERMS} terms")
    expression = " AND ".join(include)
    for excluded in exclude:
        expression = f"({expression}) NOT {excluded}"
    return Query(expression, tuple(highlights))


def _term(raw: str) -> str | None:
    """An unquoted term: each of its words must occur (anywhere in the article).

    A Chinese run that jieba splits into single characters (下半 → 下, 半) is
    looked for as written instead: single characters alone match almost anything.
    """
    parts = [_piece(w) for w in _term_words(raw)]
    return "(" + " AND ".join(parts) + ")" if parts else None


def _term_words(raw: str) -> list[str]:
    # However jieba cuts one to three Chinese characters, the run is looked
    # for as written (one word, or a single character joins its neighbours):
    # such a term (央行, 降准, 美联储) needs no dictionary, and a search for it
    # starts without loading one.
    if len(raw) <= 3 and _CJK_RUN.fullmatch(raw):
        return [raw]
    return _cut_term_words(raw)


def _cut_term_words(raw: str) -> list[str]:
    found: list[str] = []
    run: list[str] = []  # consecutive all-Chinese words

    def close_run() -> None:
        if any(len(w) == 1 for w in run):
            found.append("".join(run))
        else:
            found.extend(run)
        run.clear()

    for word in _jieba().cut(normalize(raw)):
        if _CJK_RUN.fullmatch(word):
            run.append(word)
            continue
        close_run()
        if _WORD_CHARS.search(word):
            found.append(word)
    close_run()
    return found


def _phrase(raw: str) -> str | None:
    """A quoted phrase: its pieces must occur together, as written."""
    pieces = _pieces(normalize(raw).lower())
    if not pieces:
        return None
    return "(" + " AND ".join(_piece(p) for p in pieces) + ")"


def _pieces(text: str) -> list[str]:
    """Chinese runs and ASCII words of a phrase, in order."""
    return re.findall(f"[{_CJK}]+|[a-z0-9]+", text)


def _piece(word: str) -> str:
    """One (normalized) word: as a jieba word, or (Chinese) as a substring of the text."""
    chinese = "".join(_CJK_RUN.findall(word))
    ascii_words = _ASCII_WORD.findall(word.lower())
    options = []
    if chinese == word:
        options.append(_chinese(word))
    elif not chinese:
        options.append("{title_words text_words}: " + _quoted(" ".join(_words_of(word))))
    else:
        options.append("{title_words text_words}: " + _quoted(" ".join(_words_of(word))))
        substring = [_chinese(run) for run in _CJK_RUN.findall(word)]
        substring += ["{title_words text_words}: " + _quoted(w) for w in ascii_words]
        options.append("(" + " AND ".join(substring) + ")")
    return options[0] if len(options) == 1 else "(" + " OR ".join(options) + ")"


def _words_of(word: str) -> list[str]:
    return [w.lower() for w in _jieba().cut(word) if _WORD_CHARS.search(w)] or [word.lower()]


def _chinese(run: str) -> str:
    if len(run) == 1:
        return "{title_grams text_grams}: " + _quoted(run) + "*"
    bigrams = " ".join(run[i:i + 2] for i in range(len(run) - 1))
    return "{title_grams text_grams}: " + _quoted(bigrams)


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def snippet(text: str, highlights: tuple[str, ...], width: int = 60) -> str:
    """An escaped excerpt of ``text`` around the first hit, hits wrapped in ``<mark>``."""
    folded = normalize(text)
    needles = sorted({normalize(h) for h in highlights if h.strip()}, key=len, reverse=True)
    first = min((i for i in (folded.find(n) for n in needles) if i >= 0), default=0)
    start = max(0, first - width // 3)
    end = min(len(text), start + width)
    excerpt = text[start:end]
    pattern = "|".join(re.escape(n) for n in needles)
    marked = _mark(excerpt, normalize(excerpt), pattern) if pattern else html.escape(excerpt)
    return ("…" if start else "") + marked + ("…" if end < len(text) else "")


def _mark(excerpt: str, folded: str, pattern: str) -> str:
    # Positions in the folded excerpt map to the original: NFKC + upper keeps
    # the length of CJK, ASCII and full-width characters alike.
    if len(folded) != len(excerpt):
        return html.escape(excerpt)
    out, last = [], 0
    for hit in re.finditer(pattern, folded):
        out.append(html.escape(excerpt[last:hit.start()]))
        out.append("<mark>" + html.escape(excerpt[hit.start():hit.end()]) + "</mark>")
        last = hit.end()
    out.append(html.escape(excerpt[last:]))
    return "".join(out)


# -- the static site's search terms ------------------------------------------------

# Bump when static_terms change: terms stored by an older caixun are then
# recomputed by the build (caixun.publish.static_search).
STATIC_VERSION = 1
_STATIC_RUN = re.compile(f"[{_CJK}]+|[a-z0-9]+")
_FULL_WIDTH_ALNUM = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]")


def static_terms(text: str) -> list[str]:
    """The distinct static-search terms of ``text``, in order of first appearance.

    The rules (and the identical ``staticTerms`` of ``search.js``) are in
    ``caixun.publish.static_search``.
    """
    found: dict[str, None] = {}
    previous: re.Match[str] | None = None
    for match in _STATIC_RUN.finditer(_fold(text)):
        run = match.group()
        adjacent = previous is not None and previous.end() == match.start()
        if run[0] < "\u0080":
            if adjacent and previous is not None:
                found[previous.group()[-1] + run] = None
            found[run] = None
        else:
            if adjacent and previous is not None:
                found[previous.group() + run[0]] = None
            found.update(dict.fromkeys(map(operator.add, run, run[1:])))
        previous = match
    return list(found)


def _fold(text: str) -> str:
    """``normalize(text).lower()`` as far as terms go, faster on Chinese text.

    Full-width punctuation turns into ASCII punctuation under ``normalize``:
    both separate runs alike, so only full-width letters and digits are folded.
    """
    if _FULL_WIDTH_ALNUM.search(text):
        text = _FULL_WIDTH_ALNUM.sub(lambda m: chr(ord(m.group()) - 0xFEE0), text)
    return text.upper().lower()


def pack_terms(terms: list[str]) -> bytes:
    """Terms as the archive keeps them: one per line, deflated (about half the bytes)."""
    return zlib.compress("\n".join(terms).encode("utf-8"), 1)


def unpack_terms(data: bytes) -> list[str]:
    text = zlib.decompress(data).decode("utf-8")
    return text.split("\n") if text else []

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
import sys
import threading
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["STATIC_VERSION", "VERSION", "IndexedText", "Query", "QueryError", "index_text",
           "pack_terms", "parse_query", "static_terms", "unpack_term_bytes", "unpack_term_lines",
           "snippet"]

VERSION = "3"  # bump when tokens change: the archive then rebuilds the index
MAX_QUERY_CHARS = 200
MAX_TERMS = 12

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_ASCII_WORD = re.compile(r"[a-z0-9]+")
_ASCII_ALNUM = re.compile("[A-Za-z0-9\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]")


# The expressions with the Chinese ranges, compiled when first used: re maps every
# code point of a range, a millisecond for each, and most commands that import
# this module need few of them or none (indexing long texts and building a site
# go through numpy and the stored terms). Read as module attributes too.
_PATTERNS = {
    "_CJK_RUN": f"[{_CJK}]+",
    "_WORD_CHARS": f"[{_CJK}A-Za-z0-9]",
    # At every Chinese character: it and the next one if that is Chinese too (a
    # bigram), else it alone (the run's last character, a unigram).
    "_GRAM": f"(?=([{_CJK}][{_CJK}]?))[{_CJK}]",
    "_STATIC_RUN": f"[{_CJK}]+|[a-z0-9]+",
}


@lru_cache(maxsize=None)
def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(_PATTERNS[name])


def __getattr__(name: str) -> re.Pattern[str]:
    if name in _PATTERNS:
        return _pattern(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def dictionary_loaded() -> bool:
    """Whether this process has loaded the segmenter's dictionary (read a post, say)."""
    return "rjieba" in sys.modules  # importing it loads the dictionary


# Full-width ASCII (ＭＬＦ６００５１９) and the ideographic space fold to their
# half-width forms; replacing them from a table is many times faster than NFKC,
# which would also rewrite every Chinese comma.
_HALF_WIDTH = {chr(code): chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)} | {"\u3000": " "}
_FULL_WIDTH = re.compile("[\uff01-\uff5e\u3000]")


def normalize(text: str) -> str:
    """Half-width and upper case: 'ａ股', 'A股' and 'Ａ股' segment alike.

    jieba's dictionary spells mixed terms in upper case (A股, MLF); the tokens
    are lower-cased afterwards, as FTS5 folds case anyway.
    """
    # Chinese text has a few distinct full-width characters (，：（）) many times
    # over: one replace() per distinct one is ~4x faster than translate(),
    # which looks every character up in a dict.
    for char in set(_FULL_WIDTH.findall(text)):
        text = text.replace(char, _HALF_WIDTH[char])
    return text.upper()


def words(text: str) -> list[str]:
    """jieba's search-mode words of ``text`` that carry letters, digits or Chinese."""
    search = _pattern("_WORD_CHARS").search
    return [w.lower() for w in _jieba().cut_for_search(normalize(text))
            if w.isalnum() or search(w)]


def grams(text: str) -> list[str]:
    """Bigrams of every Chinese run, each run's last character as a unigram."""
    return _pattern("_GRAM").findall(text)  # folding width or case changes no Chinese


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


def indexed_body(digest: str, body_text: str) -> str:
    """The text indexed besides the title: the digest, unless the body holds it, and the body."""
    return f"{digest}\n{body_text}" if digest and digest not in body_text else body_text


def index_text(title: str, digest: str, body_text: str) -> IndexedText:
    return index_text_normalized(title, digest, body_text)[0]


def index_text_normalized(title: str, digest: str, body_text: str) -> tuple[IndexedText, str]:
    """:func:`index_text`, and ``normalize(title + "\n" + indexed_body(...))``, which it
    computes anyway (tagging scans the same text: see caixun.securities.scan)."""
    text = indexed_body(digest, body_text)
    # Normalized once: the words columns cut it, and lower-cased it is the folded
    # text the grams and static terms are read from (see _vector_columns).
    upper_title, upper_text = normalize(title), normalize(text)
    return _indexed(title, text, upper_title, upper_text), f"{upper_title}\n{upper_text}"


def _indexed(title: str, text: str, upper_title: str, upper_text: str) -> IndexedText:
    if len(title) + len(text) < _VECTOR_FROM:
        title_grams, text_grams = " ".join(grams(title)), " ".join(grams(text))
        static = pack_terms(static_terms(f"{title}\n{text}"))
    else:
        title_grams, text_grams, static = _vector_columns(upper_title.lower(),
                                                          upper_text.lower())
    return IndexedText(_words_column(title, upper_title), title_grams,
                       _words_column(text, upper_text), text_grams, static)


_WITH_ASCII = re.compile(r"\S*[A-Za-z0-9]\S*")
_HAS_ASCII = re.compile("[A-Za-z0-9]")


def _words_column(text: str, normalized: str) -> str:
    """The words column of ``text``; ``normalized`` is ``normalize(text)``."""
    # Chinese words are found through the grams, so this column keeps only the
    # words with letters or digits (codes, English, A股, 5G): half the tokens.
    # Text without any has nothing for it, and jieba need not run.
    if not _ASCII_ALNUM.search(text):
        return ""
    joined = " ".join(_jieba().cut_for_search(_ascii_clauses(normalized)))
    return " ".join(_WITH_ASCII.findall(joined)).lower()


def _ascii_clauses(text: str) -> str:
    """``text`` without the comma-separated clauses that hold no ASCII letter or digit.

    jieba cuts each run of its word characters (CJK, A-Za-z0-9 and +#&._%-)
    on its own and the rest a character at a time, so a comma (， once
    normalized) parts nothing it keeps together: the clauses left out give no
    word _words_column keeps, and cutting the rest gives the same words, 5-10x
    faster on Chinese news.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: jieba rejects the text, as it always did
        return text
    return ",".join(filter(_HAS_ASCII.search, text.split(",")))


# -- the grams columns and static terms of a long text, vectorised ------------------
#
# index_text spends most of its time making the same two-character strings for
# the grams and the static terms. From about 100 characters on, numpy makes
# both from the text's code points at once; the results are exactly those of
# grams() and static_terms() (tests/test_read_path_equivalence.py).

_VECTOR_FROM = 100  # characters: below, numpy's fixed cost outweighs its gain


@lru_cache(maxsize=1)
def _cjk_table() -> NDArray[np.bool_]:
    import numpy as np

    table = np.zeros(0x10000, dtype=bool)  # every _CJK range lies in the BMP
    for low, high in ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF)):
        table[low:high + 1] = True
    return table


def _vector_columns(folded_title: str, folded_text: str) -> tuple[str, str, bytes]:
    """``" ".join(grams(...))`` of a title and a text, and their packed static terms.

    The title and text come folded: ``_fold()``, or ``normalize().lower()``
    (which also turns full-width punctuation into ASCII: punctuation still,
    that separates runs alike, so the terms are the same).
    """
    import numpy as np

    # Folding changes no Chinese character and makes none, so the folded text
    # has the same Chinese runs as the text: one array serves grams and terms.
    # (It works character by character: title and text folded apart are the
    # joined text static_terms folds.)
    folded = f"{folded_title}\n{folded_text}"
    codes = np.frombuffer(folded.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    cjk = _cjk_table()[np.minimum(codes, 0xFFFF)]
    pair = np.zeros_like(cjk)  # pair[i]: characters i and i + 1 are both Chinese
    np.logical_and(cjk[:-1], cjk[1:], out=pair[:-1])
    title_grams, text_grams = _vector_grams(codes, cjk, pair, len(folded_title))
    terms = _vector_terms(folded, codes, cjk, pair)
    return title_grams, text_grams, _deflate(terms)


def _vector_grams(codes: NDArray[np.uint32], cjk: NDArray[np.bool_], pair: NDArray[np.bool_],
                  split: int) -> tuple[str, str]:
    """The grams of ``codes[:split]`` and ``codes[split + 1:]``, space-separated."""
    import numpy as np

    # Row i: character i, the next one, a space; kept: the character and the
    # space if it is Chinese, the next one if that is Chinese too.
    rows = np.empty((len(codes), 3), dtype=np.uint32)
    rows[:, 0] = codes
    rows[:-1, 1] = codes[1:]
    rows[-1, 1] = 0
    rows[:, 2] = 0x20
    keep = np.empty((len(codes), 3), dtype=bool)
    keep[:, 0] = cjk
    keep[:, 1] = pair
    keep[:, 2] = cjk
    joined = rows[keep].tobytes().decode("utf-32-le")  # every gram followed by a space
    cut = int(np.count_nonzero(keep[:split]))
    return (joined[:cut - 1] if cut else ""), joined[cut:-1]


def _vector_terms(folded: str, codes: NDArray[np.uint32], cjk: NDArray[np.bool_],
                  pair: NDArray[np.bool_]) -> str:
    """``"\\n".join(static_terms(text))``, from ``text`` folded and its arrays."""
    import numpy as np

    # static_terms emits each term at a place in the text: a bigram, and a
    # character joined to the ASCII word after it, at the character (2 * i);
    # an ASCII word at its start (2 * i); a word joined to the character after
    # it just before that character (2 * i - 1). Terms in the order of their
    # first place are static_terms' order.
    starts = np.flatnonzero(pair)
    firsts = _first_occurrences((codes[starts] << 16) | codes[starts + 1], starts)
    block = np.empty((len(firsts), 3), dtype=np.uint32)
    block[:, 0] = codes[firsts]
    block[:, 1] = codes[firsts + 1]
    block[:, 2] = 0x0A
    bigrams = block.tobytes().decode("utf-32-le")  # three characters a bigram
    words = _ascii_terms(folded, codes, cjk.tobytes() + b"\0")
    if not words:
        return bigrams[:-1]
    slots = np.searchsorted(firsts * 2, list(words.values())).tolist()
    parts: list[str] = []
    done = 0
    for slot, word in zip(slots, words):
        parts += (bigrams[3 * done:3 * slot], word, "\n")
        done = slot
    parts.append(bigrams[3 * done:])
    return "".join(parts)[:-1]


def _first_occurrences(keys: NDArray[np.integer[Any]],
                       places: NDArray[np.intp]) -> NDArray[np.intp]:
    """The places where a key occurs for the first time, in order."""
    import numpy as np

    # Key and place in one integer: sorted, each key's first place leads its group.
    packed = (keys.astype(np.uint64) << np.uint64(32)) | places.astype(np.uint64)
    packed.sort()
    first = np.ones(len(packed), dtype=bool)
    np.not_equal(packed[1:] >> np.uint64(32), packed[:-1] >> np.uint64(32), out=first[1:])
    found = (packed[first] & np.uint64(0xFFFFFFFF)).astype(np.intp)
    found.sort()
    return found


def _ascii_terms(folded: str, codes: NDArray[np.uint32], cjk: bytes) -> dict[str, int]:
    """static_terms' ASCII words and words joined to a character, with their first place."""
    import numpy as np

    # The runs of [a-z0-9] (a regex scans Chinese text for them at half the speed).
    alnum = np.zeros(len(codes) + 2, dtype=bool)  # a False before and after the text
    np.less(codes - 0x61, 26, out=alnum[1:-1])  # a-z (below "a", the subtraction wraps)
    alnum[1:-1] |= (codes - 0x30) < 10  # 0-9
    edges = iter(np.flatnonzero(alnum[1:] != alnum[:-1]).tolist())  # start, end, start, ...
    terms: dict[str, int] = {}
    for start, end in zip(edges, edges):
        word = folded[start:end]
        if start and cjk[start - 1]:
            terms.setdefault(folded[start - 1] + word, 2 * start - 2)
        terms.setdefault(word, 2 * start)
        if cjk[end]:
            terms.setdefault(word + folded[end], 2 * end - 1)
    return terms


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


# A quoted phrase, an opening or closing parenthesis, or a bare term; the
# first three may be negated with a leading "-".
_TOKEN = re.compile(r'(-?)"([^"]*)"|(-?)(\()|(\))|(-?)([^\s()"]+)')


@dataclass
class _Parser:
    """Recursive descent over a query's tokens (see :func:`parse_query`)."""

    tokens: list[tuple[str, bool, str]]  # (kind, negated, text); kind: phrase ( ) term OR
    at: int = 0
    terms: int = 0
    highlights: list[str] = field(default_factory=list)

    def peek(self) -> str | None:
        return self.tokens[self.at][0] if self.at < len(self.tokens) else None

    def any_of(self) -> str | None:
        """Alternatives joined by OR: the expression, or None if all were empty."""
        options = [self.all_of()]
        while self.peek() == "OR":
            self.at += 1
            options.append(self.all_of())
        found = [o for o in options if o is not None]
        if not found:
            return None
        return found[0] if len(found) == 1 else "(" + " OR ".join(found) + ")"

    def all_of(self) -> str | None:
        """Items one after another (AND), the negated ones excluded (NOT)."""
        include: list[str] = []
        exclude: list[str] = []
        while self.peek() not in (None, "OR", ")"):
            kind, negated, text = self.tokens[self.at]
            self.at += 1
            if kind == "(":
                expression = self.any_of()
                if self.peek() == ")":
                    self.at += 1
            else:
                expression = self.atom(kind, text, negated)
            if expression is not None:
                (exclude if negated else include).append(expression)
        if not include:
            if exclude:
                raise QueryError("the query has nothing to look for (only exclusions "
                                 "or punctuation)")
            return None
        expression = include[0] if len(include) == 1 else "(" + " AND ".join(include) + ")"
        for excluded in exclude:
            expression = f"({expression} NOT {excluded})"
        return expression

    def atom(self, kind: str, text: str, negated: bool) -> str | None:
        phrase = kind == "phrase"
        expression = _phrase(text) if phrase else _term(text)
        if expression is None:
            return None
        self.terms += 1
        if not negated:
            self.highlights += [text] if phrase else _term_words(text)
        return expression


def _tokens(text: str) -> list[tuple[str, bool, str]]:
    tokens = []
    for match in _TOKEN.finditer(text):
        if match.group(2) is not None:
            tokens.append(("phrase", bool(match.group(1)), match.group(2)))
        elif match.group(4):
            tokens.append(("(", bool(match.group(3)), "("))
        elif match.group(5):
            tokens.append((")", False, ")"))
        elif match.group(7) == "OR":
            tokens.append(("OR", False, "OR"))
        else:
            tokens.append(("term", bool(match.group(6)), match.group(7)))
    return tokens


def parse_query(text: str) -> Query:
    """``QUERY`` → FTS5: words AND-ed, ``"quoted phrase"`` contiguous, ``-word`` excluded,
    ``a OR b`` either, parentheses to group (``降准 (央行 OR 人民银行)``)."""
    text = text.strip()
    if not text:
        raise QueryError("the query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"the query is longer than {MAX_QUERY_CHARS} characters")
    parser = _Parser(_tokens(text))
    expression = parser.any_of()
    while parser.at < len(parser.tokens):  # an unmatched ")": the rest, AND-ed
        parser.at += 1
        rest = parser.any_of()
        if rest is not None:
            expression = rest if expression is None else f"({expression} AND {rest})"
    if expression is None:
        raise QueryError("the query has nothing to look for (only exclusions or punctuation)")
    if parser.terms > MAX_TERMS:
        raise QueryError(f"the query has more than {MAX_TERMS} terms")
    return Query(expression, tuple(parser.highlights))


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
    if len(raw) <= 3 and _pattern("_CJK_RUN").fullmatch(raw):
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

    chinese, has_word_chars = _pattern("_CJK_RUN").fullmatch, _pattern("_WORD_CHARS").search
    for word in _jieba().cut(normalize(raw)):
        if chinese(word):
            run.append(word)
            continue
        close_run()
        if has_word_chars(word):
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
    chinese = "".join(_pattern("_CJK_RUN").findall(word))
    ascii_words = _ASCII_WORD.findall(word.lower())
    options = []
    if chinese == word:
        options.append(_chinese(word))
    elif not chinese:
        options.append("{title_words text_words}: " + _quoted(" ".join(_words_of(word))))
    else:
        options.append("{title_words text_words}: " + _quoted(" ".join(_words_of(word))))
        substring = [_chinese(run) for run in _pattern("_CJK_RUN").findall(word)]
        substring += ["{title_words text_words}: " + _quoted(w) for w in ascii_words]
        options.append("(" + " AND ".join(substring) + ")")
    return options[0] if len(options) == 1 else "(" + " OR ".join(options) + ")"


def _words_of(word: str) -> list[str]:
    search = _pattern("_WORD_CHARS").search
    return [w.lower() for w in _jieba().cut(word) if search(w)] or [word.lower()]


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
_FULL_WIDTH_ALNUM = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]")


def static_terms(text: str) -> list[str]:
    """The distinct static-search terms of ``text``, in order of first appearance.

    The rules (and the identical ``staticTerms`` of ``search.js``) are in
    ``caixun.publish.static_search``.
    """
    # Every term in order, repeats too; one dict.fromkeys() keeps the first of each.
    found: list[str] = []
    previous = ""
    previous_end = -1
    for match in _pattern("_STATIC_RUN").finditer(_fold(text)):
        run = match.group()
        adjacent = previous_end == match.start()
        if run[0] < "\u0080":
            if adjacent:
                found.append(previous[-1] + run)
            found.append(run)
        else:
            if adjacent:
                found.append(previous + run[0])
            found += map(operator.add, run, run[1:])
        previous, previous_end = run, match.end()
    return list(dict.fromkeys(found))


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
    return _deflate("\n".join(terms))


def _deflate(lines: str) -> bytes:
    return zlib.compress(lines.encode("utf-8"), 1)


def unpack_term_bytes(data: bytes) -> list[bytes]:
    """The terms :func:`pack_terms` packed, UTF-8 encoded (as a block writes them)."""
    text = zlib.decompress(data)
    return text.split(b"\n") if text else []


def unpack_term_lines(data: bytes) -> bytes:
    """The terms :func:`pack_terms` packed, UTF-8 encoded, one per line (b"": none)."""
    return zlib.decompress(data)

"""The PostgreSQL search index: FTS5's tokens, matches and bm25 with a ``tsvector``.

The PostgreSQL archive searches Chinese exactly as the SQLite one does: the
same :mod:`caixun.segment` columns, the same FTS5 expressions from
:func:`~caixun.segment.parse_query`, the same ranking. It keeps one row per
article in ``search(article_id bigint primary key, terms tsvector not null,
doc_len integer not null)`` (a GIN index on ``terms``, no extension):

* :func:`tokens` is what FTS5's ``unicode61 remove_diacritics 0`` tokenizer
  makes of a string: its token characters (categories L*, N*, Co, 25
  combining diacritics of U+0300..U+0331 but not at a token's start, and every
  code point its Unicode table does not know, which it counts as a letter) and
  its case folding,
  read off SQLite itself (``tests/test_pgsearch.py`` checks every code point).
* :func:`index_row` makes ``terms``: the tokens of the four columns of
  :class:`~caixun.segment.IndexedText` as two families of lexemes, the grams
  (``title_grams``, ``text_grams``: the token itself) and the words
  (``title_words``, ``text_words``: ``"w:"`` + the token, so that a one-character
  prefix query, ``'央':*``, finds grams only). In each family the title's
  tokens are at positions 1..n with weight A, the text's at n+2, n+3 … with
  weight D: the gap keeps a phrase from running from the title into the text,
  the weight tells a title hit from a text hit (``:A`` restricts a query to the
  title; a hit weighs 6.0 in the title, 1.0 in the text, as ``_FIELD_WEIGHTS``
  of the SQLite archive). ``doc_len`` counts every token, plus the four facet
  tokens each FTS5 row has (:data:`FACET_TOKENS`).
* :func:`tsquery` translates an FTS5 expression (``{title_grams text_grams}:
  "人民 民银"``, ``"央"*``, AND, OR, NOT, parentheses) into a ``tsquery``;
  :func:`phrases`, :func:`phrase_tsquery` and :func:`bm25` give FTS5's
  ``bm25(search, 6.0, 6.0, 1.0, 1.0, 0.0)`` of a matching article from what
  PostgreSQL returns (``unnest(terms)``, ``count(*)``, ``sum(doc_len)``).

Where PostgreSQL cannot hold what FTS5 does (measured on PostgreSQL 15), the
row is made as PostgreSQL would store it, so that the literal is what is kept:

* **Positions stop at 16383.** A larger position is stored as 16383; a lexeme's
  positions that fall together keep the highest weight. In a family of more
  than 16382 tokens (about 16,000 Chinese characters of title and text) the
  tokens beyond are still found as single tokens, but not as phrases (a phrase
  running up to the last kept position may even be found where FTS5 has none),
  and their instances count once at most.
* **256 positions per lexeme.** PostgreSQL keeps a lexeme's 256 first
  positions. A token more frequent than that in one article (公司 in a long
  report, "the" in an English one) counts 256 times at most in bm25, and a
  phrase whose every occurrence starts past the 256th occurrence of one of
  its lexemes is not found. (On the corpus: about one score in 10,000.)
* **A lexeme is at most 2046 bytes**, a ``tsvector`` at most 1 MiB (lexemes
  and positions: 1048575 bytes). A longer lexeme (a token of over 511
  characters, which no query of :data:`~caixun.segment.MAX_QUERY_CHARS`
  characters can name) is left out; an article whose lexemes would not fit
  keeps those that first occur earliest (the lexemes are kept in order of
  their first position while their conservative size fits). ``doc_len``
  still counts every token, as FTS5 does.

One thing of FTS5 is not mirrored: it counts a phrase's instances in a row
where the phrase's iterator stands on that row, and it stops moving the
iterators under a part of the expression that has no further match (an AND
one of whose phrases has no more rows, a NOT whose left side has none): such
a phrase counts in the one row it was left on if that row matches through
another alternative of an OR, though the part holding it does not match
there. Which row that is depends on where FTS5's scan started (the SQLite
archive's own bm25 of a row changes with its ``rowid >=`` bound). :func:`bm25`
reads one row and counts what FTS5 counts when no iterator is left behind:
the phrases of the parts of the expression that match the row. (On the
corpus: a few scores in 100,000, of queries with OR.)

Nothing else differs: on the real corpus (``tests/test_pgsearch.py``) the
matches are FTS5's and the scores are equal to the last bit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from collections import defaultdict, deque
from functools import lru_cache
from itertools import accumulate, chain
from typing import Mapping, Sequence

from caixun.segment import IndexedText, QueryError

__all__ = ["FACET_TOKENS", "Phrase", "bm25", "index_row", "phrase_tsquery", "phrases",
           "relaxed_tsquery", "tokens", "tsquery"]

FACET_TOKENS = 4  # tokens of the facets column (caixun.archive.facets): in FTS5's doc length
WORDS = "w:"  # the words family's lexemes: WORDS + token
NOTHING = "'w:'"  # a tsquery no row matches: no token is empty, no gram holds ":"
MAX_POSITION = 16383  # PostgreSQL's: a larger position is stored as this one
MAX_POSITIONS = 256  # positions PostgreSQL keeps of one lexeme
MAX_LEXEME_BYTES = 2046
MAX_TSVECTOR_BYTES = 1048575  # lexemes and positions
_LONGEST_TOKEN = (MAX_LEXEME_BYTES - len(WORDS)) // 4  # characters: within MAX_LEXEME_BYTES

# bm25 as FTS5's fts5Bm25Function, with the SQLite archive's column weights.
_K1 = 1.2
_B = 0.75
_TITLE_WEIGHT = 6.0
_TEXT_WEIGHT = 1.0


# -- FTS5's unicode61 tokenizer --------------------------------------------------------
#
# Read off SQLite 3.40 (its fts5_unicode2.c tables, unchanged since 2018): every
# code point that separates tokens (hex, "first-last"), and every one that folds
# to another ("first-last[/2]:±delta": /2 for every second code point of the
# range). Lone surrogates, which no database takes, separate too.

_SEPARATORS = (
    "0-2f 3a-40 5b-60 7b-a9 ab-b1 b4 b6-b8 bb bf d7 f7 2c2-2c5 2d2-2df 2e5-2eb 2ed 2ef-2ff "
    "305 30d-30e 310 312-31a 31c-322 329-32c 32f 332-36f 375 37e 384-385 387 3f6 482-489 "
    "55a-55f 589-58a 58f 591-5c7 5f3-5f4 600-604 606-61b 61e-61f 64b-65f 66a-66d 670 6d4 "
    "6d6-6e4 6e7-6ed 6fd-6fe 700-70d 70f 711 730-74a 7a6-7b0 7eb-7f3 7f6-7f9 816-819 "
    "81b-823 825-827 829-82d 830-83e 859-85b 85e 8e4-8fe 900-903 93a-93c 93e-94f 951-957 "
    "962-965 970 981-983 9bc 9be-9c4 9c7-9c8 9cb-9cd 9d7 9e2-9e3 9f2-9f3 9fa-9fb a01-a03 "
    "a3c a3e-a42 a47-a48 a4b-a4d a51 a70-a71 a75 a81-a83 abc abe-ac5 ac7-ac9 acb-acd "
    "ae2-ae3 af0-af1 b01-b03 b3c b3e-b44 b47-b48 b4b-b4d b56-b57 b62-b63 b70 b82 bbe-bc2 "
    "bc6-bc8 bca-bcd bd7 bf3-bfa c01-c03 c3e-c44 c46-c48 c4a-c4d c55-c56 c62-c63 c7f "
    "c82-c83 cbc cbe-cc4 cc6-cc8 cca-ccd cd5-cd6 ce2-ce3 d02-d03 d3e-d44 d46-d48 d4a-d4d "
    "d57 d62-d63 d79 d82-d83 dca dcf-dd4 dd6 dd8-ddf df2-df4 e31 e34-e3a e3f e47-e4f "
    "e5a-e5b eb1 eb4-eb9 ebb-ebc ec8-ecd f01-f1f f34-f3f f71-f87 f8d-f97 f99-fbc fbe-fcc "
    "fce-fda 102b-103e 104a-104f 1056-1059 105e-1060 1062-1064 1067-106d 1071-1074 "
    "1082-108d 108f 109a-109f 10fb 135d-1368 1390-1399 1400 166d-166e 1680 169b-169c "
    "16eb-16ed 1712-1714 1732-1736 1752-1753 1772-1773 17b4-17d6 17d8-17db 17dd 1800-180e "
    "18a9 1920-192b 1930-193b 1940 1944-1945 19b0-19c0 19c8-19c9 19de-19ff 1a17-1a1b "
    "1a1e-1a1f 1a55-1a5e 1a60-1a7c 1a7f 1aa0-1aa6 1aa8-1aad 1b00-1b04 1b34-1b44 1b5a-1b7c "
    "1b80-1b82 1ba1-1bad 1be6-1bf3 1bfc-1bff 1c24-1c37 1c3b-1c3f 1c7e-1c7f 1cc0-1cc7 "
    "1cd0-1ce8 1ced 1cf2-1cf4 1dc0-1de6 1dfc-1dff 1fbd 1fbf-1fc1 1fcd-1fcf 1fdd-1fdf "
    "1fed-1fef 1ffd-1ffe 2000-2064 206a-206f 207a-207e 208a-208e 20a0-20b9 20d0-20f0 "
    "2100-2101 2103-2106 2108-2109 2114 2116-2118 211e-2123 2125 2127 2129 212e 213a-213b "
    "2140-2144 214a-214d 214f 2190-23f3 2400-2426 2440-244a 249c-24e9 2500-26ff 2701-2775 "
    "2794-2b4c 2b50-2b59 2ce5-2cea 2cef-2cf1 2cf9-2cfc 2cfe-2cff 2d70 2d7f 2de0-2e2e "
    "2e30-2e3b 2e80-2e99 2e9b-2ef3 2f00-2fd5 2ff0-2ffb 3000-3004 3008-3020 302a-3030 "
    "3036-3037 303d-303f 3099-309c 30a0 30fb 3190-3191 3196-319f 31c0-31e3 3200-321e "
    "322a-3247 3250 3260-327f 328a-32b0 32c0-32fe 3300-33ff 4dc0-4dff a490-a4c6 a4fe-a4ff "
    "a60d-a60f a66f-a67e a69f a6f0-a6f7 a700-a716 a720-a721 a789-a78a a802 a806 a80b "
    "a823-a82b a836-a839 a874-a877 a880-a881 a8b4-a8c4 a8ce-a8cf a8e0-a8f1 a8f8-a8fa "
    "a926-a92f a947-a953 a95f a980-a983 a9b3-a9cd a9de-a9df aa29-aa36 aa43 aa4c-aa4d "
    "aa5c-aa5f aa77-aa79 aa7b aab0 aab2-aab4 aab7-aab8 aabe-aabf aac1 aade-aadf aaeb-aaf1 "
    "aaf5-aaf6 abe3-abed d800-dfff fb1e fb29 fbb2-fbc1 fd3e-fd3f fdfc-fdfd fe00-fe19 "
    "fe20-fe26 fe30-fe52 fe54-fe66 fe68-fe6b feff ff01-ff0f ff1a-ff20 ff3b-ff40 ff5b-ff65 "
    "ffe0-ffe6 ffe8-ffee fff9-ffff 10100-10102 10137-1013f 10179-10189 10190-1019b "
    "101d0-101fd 1039f 103d0 10857 1091f 1093f 10a01-10a03 10a05-10a06 10a0c-10a0f "
    "10a38-10a3a 10a3f 10a50-10a58 10a7f 10b39-10b3f 11000-11002 11038-1104d 11080-11082 "
    "110b0-110c1 11100-11102 11127-11134 11140-11143 11180-11182 111b3-111c0 111c5-111c8 "
    "116ab-116b7 12470-12473 16f51-16f7e 16f8f-16f92 1d000-1d0f5 1d100-1d126 1d129-1d1dd "
    "1d200-1d245 1d300-1d356 1d6c1 1d6db 1d6fb 1d715 1d735 1d74f 1d76f 1d789 1d7a9 1d7c3 "
    "1eef0-1eef1 1f000-1f02b 1f030-1f093 1f0a0-1f0ae 1f0b1-1f0be 1f0c1-1f0cf 1f0d1-1f0df "
    "1f110-1f12e 1f130-1f16b 1f170-1f19a 1f1e6-1f202 1f210-1f23a 1f240-1f248 1f250-1f251 "
    "1f300-1f320 1f330-1f335 1f337-1f37c 1f380-1f393 1f3a0-1f3c4 1f3c6-1f3ca 1f3e0-1f3f0 "
    "1f400-1f43e 1f440 1f442-1f4f7 1f4f9-1f4fc 1f500-1f53d 1f540-1f543 1f550-1f567 "
    "1f5fb-1f640 1f645-1f64f 1f680-1f6c5 1f700-1f773 e0001 e0020-e007f e0100-e01ef"
)
_FOLDS = (
    "41-5a:+20 b5:+307 c0-d6:+20 d8-de:+20 100-12e/2:+1 132-136/2:+1 139-147/2:+1 "
    "14a-176/2:+1 178:-79 179-17d/2:+1 17f:-10c 181:+d2 182-184/2:+1 186:+ce 187:+1 "
    "189-18a:+cd 18b:+1 18e:+4f 18f:+ca 190:+cb 191:+1 193:+cd 194:+cf 196:+d3 197:+d1 "
    "198:+1 19c:+d3 19d:+d5 19f:+d6 1a0-1a4/2:+1 1a6:+da 1a7:+1 1a9:+da 1ac:+1 1ae:+da "
    "1af:+1 1b1-1b2:+d9 1b3-1b5/2:+1 1b7:+db 1b8:+1 1bc:+1 1c4:+2 1c5:+1 1c7:+2 1c8:+1 "
    "1ca:+2 1cb-1db/2:+1 1de-1ee/2:+1 1f1:+2 1f2-1f4/2:+1 1f6:-61 1f7:-38 1f8-21e/2:+1 "
    "220:-82 222-232/2:+1 23a:+2a2b 23b:+1 23d:-a3 23e:+2a28 241:+1 243:-c3 244:+45 "
    "245:+47 246-24e/2:+1 370-372/2:+1 376:+1 386:+26 388-38a:+25 38c:+40 38e-38f:+3f "
    "391-3a1:+20 3a3-3ab:+20 3c2:+1 3cf:+8 3d0:-1e 3d1:-19 3d5:-f 3d6:-16 3d8-3ee/2:+1 "
    "3f0:-36 3f1:-30 3f4:-3c 3f5:-40 3f7:+1 3f9:-7 3fa:+1 3fd-3ff:-82 400-40f:+50 "
    "410-42f:+20 460-480/2:+1 48a-4be/2:+1 4c0:+f 4c1-4cd/2:+1 4d0-526/2:+1 531-556:+30 "
    "10a0-10c5:+1c60 10c7:+1c60 10cd:+1c60 1e00-1e94/2:+1 1e9b:-3a 1e9e:-1dbf "
    "1ea0-1efe/2:+1 1f08-1f0f:-8 1f18-1f1d:-8 1f28-1f2f:-8 1f38-1f3f:-8 1f48-1f4d:-8 "
    "1f59-1f5f/2:-8 1f68-1f6f:-8 1f88-1f8f:-8 1f98-1f9f:-8 1fa8-1faf:-8 1fb8-1fb9:-8 "
    "1fba-1fbb:-4a 1fbc:-9 1fbe:-1c05 1fc8-1fcb:-56 1fcc:-9 1fd8-1fd9:-8 1fda-1fdb:-64 "
    "1fe8-1fe9:-8 1fea-1feb:-70 1fec:-7 1ff8-1ff9:-80 1ffa-1ffb:-7e 1ffc:-9 2126:-1d5d "
    "212a:-20bf 212b:-2046 2132:+1c 2160-216f:+10 2183:+1 2c00-2c2e:+30 2c60:+1 2c62:-29f7 "
    "2c63:-ee6 2c64:-29e7 2c67-2c6b/2:+1 2c6d:-2a1c 2c6e:-29fd 2c6f:-2a1f 2c70:-2a1e "
    "2c72:+1 2c75:+1 2c7e-2c7f:-2a3f 2c80-2ce2/2:+1 2ceb-2ced/2:+1 2cf2:+1 a640-a66c/2:+1 "
    "a680-a696/2:+1 a722-a72e/2:+1 a732-a76e/2:+1 a779-a77b/2:+1 a77d:-8a04 a77e-a786/2:+1 "
    "a78b:+1 a78d:-a528 a790-a792/2:+1 a7a0-a7a8/2:+1 a7aa:-a544 ff21-ff3a:+20 "
    "10400-10427:+28"
)

# The combining diacritics FTS5 takes as token characters (sqlite3Fts5UnicodeIsdiacritic):
# within a token only; one cannot start a token ("\u0301a" is the token "a").
_DIACRITICS = "300-304 306-30c 30f 311 31b 323-328 32d-32e 330-331"

# Text of Chinese characters and spaces only (the grams columns), or of ASCII and
# Chinese characters (most words columns), is split without the full tables: every
# code point of these Chinese ranges is a token character that folds to itself.
_CHINESE = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_NOT_GRAMS = re.compile(f"[^ {_CHINESE}]")
_NOT_COMMON = re.compile(f"[^\x00-\x7f{_CHINESE}]")
_COMMON_TOKEN = re.compile(f"[0-9a-z{_CHINESE}]+")


def _ranges(spec: str) -> list[tuple[int, int]]:
    return [(int(first, 16), int(last or first, 16))
            for first, _, last in (item.partition("-") for item in spec.split())]


def _class(ranges: Sequence[tuple[int, int]]) -> str:
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


@lru_cache(maxsize=1)
def _fold_table() -> dict[int, int]:
    table = {}
    for item in _FOLDS.split():
        span, _, delta = item.partition(":")
        span, every_second, _ = span.partition("/")
        [(first, last)] = _ranges(span)
        for code in range(first, last + 1, 2 if every_second else 1):
            table[code] = code + int(delta, 16)
    return table


@lru_cache(maxsize=1)
def _full_tokenizer() -> tuple[re.Pattern[str], re.Pattern[str], dict[int, int]]:
    """The token runs, the characters that fold, and how they fold."""
    table = _fold_table()
    foldable = _class([(code, code) for code in sorted(table)])
    separators = _class(_ranges(_SEPARATORS))
    runs = re.compile(f"[^{separators}{_class(_ranges(_DIACRITICS))}][^{separators}]*")
    return runs, re.compile(f"[{foldable}]"), table


def tokens(text: str) -> list[str]:
    """The tokens FTS5's ``unicode61 remove_diacritics 0`` tokenizer makes of ``text``."""
    if not _NOT_GRAMS.search(text):
        return text.split()
    if not _NOT_COMMON.search(text):
        return _COMMON_TOKEN.findall(text.lower())  # lower() folds A-Z alone here
    runs, foldable, table = _full_tokenizer()
    if foldable.search(text):
        text = text.translate(table)
    return runs.findall(text)


# -- the index row -------------------------------------------------------------------

_TITLE_MARKS = [""] + [f"{position}A" for position in range(1, MAX_POSITION + 1)]
_TEXT_MARKS = [""] + [str(position) for position in range(1, MAX_POSITION + 1)]


def index_row(indexed: IndexedText) -> tuple[str, int]:
    """The article's ``terms`` (``tsvector`` input, for ``%s::tsvector``) and ``doc_len``.

    Each token is written as an entry of its own (``'人民':1A '民银':2A …``):
    PostgreSQL merges the entries of a lexeme as it reads them, and keeps its
    first 256 positions, faster than Python would. An article PostgreSQL
    could not read so (a family of more than 16382 tokens, a vector near
    1 MiB, too long a lexeme) is written a lexeme an entry, made to fit as
    PostgreSQL stores it (see the module's docstring).
    """
    columns = indexed.values()
    title_words, title_grams, text_words, text_grams = map(tokens, columns)
    count = len(title_words) + len(title_grams) + len(text_words) + len(text_grams)
    # Each entry's lexeme takes 4 bytes a character at most ("w:" 2 more); merged, a
    # lexeme also takes an alignment byte, 2 bytes for its number of positions and 2
    # a position.
    if (4 * sum(map(len, columns)) + 7 * count <= MAX_TSVECTOR_BYTES
            and len(title_grams) + 1 + len(text_grams) <= MAX_POSITION
            and len(title_words) + 1 + len(text_words) <= MAX_POSITION
            and _longest(columns, title_words, title_grams, text_words, text_grams)
            <= _LONGEST_TOKEN):
        literal = " ".join(filter(None, (_entries(title_grams, text_grams, ""),
                                         _entries(title_words, text_words, WORDS))))
        if "\\" not in literal and literal.count("'") == 2 * count:
            return literal, count + FACET_TOKENS
    grams, words = _fit(_family(title_grams, text_grams), _family(title_words, text_words))
    return _literal(grams, words), count + FACET_TOKENS


def _longest(columns: Sequence[str], *tokens: list[str]) -> int:
    """The length of the longest token, or less where no column is long enough to matter."""
    return max([max(map(len, found), default=0)
                for column, found in zip(columns, tokens) if len(column) > _LONGEST_TOKEN] or [0])


def _entries(title: list[str], text: list[str], prefix: str) -> str:
    """An entry per token of one family: ``'人民':1A '民银':2A … '银行':9``."""
    if not title and not text:
        return ""
    marks = _TITLE_MARKS[1:len(title) + 1] + _TEXT_MARKS[len(title) + 2:len(title) + 2 + len(text)]
    return f"'{prefix}" + f" '{prefix}".join(map("':".join, zip(title + text, marks)))


def _family(title: list[str], text: list[str]) -> dict[str, list[str]]:
    """Token → its positions as the literal writes them ("3A", "17"), in one family."""
    end = len(title) + 1 + len(text)
    if end > MAX_POSITION:
        return _clamped_family(title, text)
    found: defaultdict[str, list[str]] = defaultdict(list)
    marks = _TITLE_MARKS[1:len(title) + 1] + _TEXT_MARKS[len(title) + 2:end + 1]
    # found[token].append(mark) for each token, without a Python loop (3x faster)
    deque(map(list.append, map(found.__getitem__, title + text), marks), maxlen=0)
    if max(map(len, found.values()), default=0) > MAX_POSITIONS:
        for kept in found.values():
            del kept[MAX_POSITIONS:]
    return found


def _clamped_family(title: list[str], text: list[str]) -> dict[str, list[str]]:
    """:func:`_family` of a long text, as PostgreSQL stores it: positions past
    :data:`MAX_POSITION` become that one (with the highest weight among them)."""
    places: dict[str, dict[int, bool]] = {}  # token → position → in the title
    for position, (token, in_title) in enumerate(
            [(t, True) for t in title] + [("", False)] + [(t, False) for t in text], 1):
        if token:
            kept = places.setdefault(token, {})
            at = min(position, MAX_POSITION)
            kept[at] = kept.get(at, False) or in_title
    return {token: [(_TITLE_MARKS if in_title else _TEXT_MARKS)[position]
                    for position, in_title in list(at.items())[:MAX_POSITIONS]]
            for token, at in places.items()}


def _fit(grams: dict[str, list[str]], words: dict[str, list[str]]
         ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The families without what PostgreSQL refuses: too long a lexeme, too big a vector."""
    longest = max(max(map(len, grams), default=0), max(map(len, words), default=0))
    # Each lexeme takes its bytes (4 a character at most, "w:" 2 more), an alignment byte
    # at most, 2 bytes for its number of positions and 2 for each position.
    size = 4 * (sum(map(len, grams)) + sum(map(len, words))) + 5 * len(words) \
        + 3 * len(grams) + 2 * (sum(map(len, grams.values())) + sum(map(len, words.values())))
    if longest <= _LONGEST_TOKEN and size <= MAX_TSVECTOR_BYTES:
        return grams, words
    entries = [(len(token.encode()) + len(prefix), prefix, token, marks)
               for prefix, family in (("", grams), (WORDS, words))
               for token, marks in family.items()]
    entries = [entry for entry in entries if entry[0] <= MAX_LEXEME_BYTES]
    entries.sort(key=lambda entry: _first_position(entry[3]))
    sizes = accumulate(lexeme_bytes + 3 + 2 * len(marks) for lexeme_bytes, _, _, marks in entries)
    kept: tuple[dict[str, list[str]], dict[str, list[str]]] = ({}, {})
    for (_, prefix, token, marks), total in zip(entries, sizes):
        if total > MAX_TSVECTOR_BYTES:
            break
        kept[prefix == WORDS][token] = marks
    return kept


def _first_position(marks: list[str]) -> int:
    return int(marks[0].rstrip("A"))


_GRAM_ENTRY = "'{}':{}".format
_WORD_ENTRY = ("'" + WORDS + "{}':{}").format


def _literal(grams: dict[str, list[str]], words: dict[str, list[str]]) -> str:
    text = " ".join(chain(map(_GRAM_ENTRY, grams, map(",".join, grams.values())),
                          map(_WORD_ENTRY, words, map(",".join, words.values()))))
    if "\\" in text or text.count("'") != 2 * (len(grams) + len(words)):
        # never from tokens() (quotes and backslashes are punctuation): escape each lexeme
        text = " ".join([f"{_quote(token)}:{','.join(marks)}" for token, marks in grams.items()]
                        + [f"{_quote(WORDS + token)}:{','.join(marks)}"
                           for token, marks in words.items()])
    return text


def _quote(lexeme: str) -> str:
    """A lexeme as ``tsvector`` and ``tsquery`` input write it."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


# -- FTS5 expressions ----------------------------------------------------------------

# FTS5's tokens: spaces, {columns}, a quoted string, ( ) * :, a bare word (FTS5's
# characters of one: letters, digits, _, \x1a and every byte of a non-ASCII one), else.
_LEXER = re.compile(r'[ \t\n\r]*(?:(\{[^}]*\})|("(?:[^"]|"")*")|([()*:])'
                    r'|([\w\x1a\x80-\U0010ffff]+)|(.))', re.S)
_COLUMNS = {"title_words": (WORDS, "title"), "text_words": (WORDS, "text"),
            "title_grams": ("", "title"), "text_grams": ("", "text")}
_ALL_COLUMNS = frozenset(_COLUMNS) | {"facets"}


@dataclass(frozen=True, slots=True)
class _And:
    children: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Or:
    children: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Not:
    left: _Node
    right: _Node


_Node = _And | _Or | _Not | int  # an int: the phrase of that index


@dataclass(frozen=True, slots=True)
class Phrase:
    """One phrase of an FTS5 expression: what FTS5's bm25 counts, one term each.

    ``lexemes`` as in ``terms`` (no lexemes: a quoted string without tokens,
    which matches nothing); ``prefix``: the last lexeme is a prefix; ``title``,
    ``text``: the columns it is looked for in. ``expression`` and ``index``
    place it in the expression it comes from: which phrases count in a row
    depends on which parts of the expression the row matches (see :func:`bm25`).
    """

    lexemes: tuple[str, ...]
    prefix: bool
    title: bool
    text: bool
    expression: _Node | None = field(default=None, compare=False, repr=False)
    index: int = field(default=0, compare=False, repr=False)


@dataclass
class _Parser:
    """FTS5's query grammar, the part caixun writes (see fts5parse.y).

    NOT binds tighter than AND, AND tighter than OR; ``{columns}:`` or
    ``column:`` filters a phrase or a parenthesized expression (nested filters
    intersect). Phrases side by side (FTS5's implicit AND, which drops the
    phrases without tokens) are refused: caixun writes AND.
    """

    text: str
    at: int = 0
    items: list[tuple[str, str]] = field(default_factory=list)
    found: list[tuple[tuple[str, ...], bool, frozenset[str]]] = field(default_factory=list)

    def tokens(self) -> list[tuple[str, str]]:
        """(kind, text): kind is { " ( ) * : word, or the operator AND OR NOT."""
        out: list[tuple[str, str]] = []
        for match in _LEXER.finditer(self.text):
            braces, quoted, mark, word, other = match.groups()
            if other is not None:
                raise QueryError(f"not supported in an FTS5 expression here: {other!r}")
            if braces is not None:
                out.append(("{", braces[1:-1]))
            elif quoted is not None:
                out.append(('"', quoted[1:-1].replace('""', '"')))
            elif mark is not None:
                out.append((mark, mark))
            elif word in ("AND", "OR", "NOT"):
                out.append((word, word))
            elif word == "NEAR":
                raise QueryError("NEAR is not supported")
            elif word is not None:
                out.append(("word", word))
        return out

    def parse(self) -> _Node:
        self.items = self.tokens()
        node = self.any_of(_ALL_COLUMNS)
        if self.at != len(self.items):
            raise QueryError(f"syntax error in FTS5 expression {self.text!r}")
        return node

    def peek(self) -> str | None:
        return self.items[self.at][0] if self.at < len(self.items) else None

    def take(self, kind: str) -> str:
        if self.peek() != kind:
            raise QueryError(f"syntax error in FTS5 expression {self.text!r}")
        self.at += 1
        return self.items[self.at - 1][1]

    def any_of(self, columns: frozenset[str]) -> _Node:
        options = [self.all_of(columns)]
        while self.peek() == "OR":
            self.at += 1
            options.append(self.all_of(columns))
        return options[0] if len(options) == 1 else _Or(tuple(options))

    def all_of(self, columns: frozenset[str]) -> _Node:
        parts = [self.without(columns)]
        while self.peek() == "AND":
            self.at += 1
            parts.append(self.without(columns))
        return parts[0] if len(parts) == 1 else _And(tuple(parts))

    def without(self, columns: frozenset[str]) -> _Node:
        node = self.primary(columns)
        while self.peek() == "NOT":
            self.at += 1
            node = _Not(node, self.primary(columns))
        return node

    def primary(self, columns: frozenset[str]) -> _Node:
        node = self.group(columns) if self.peek() == "(" else self.phrase(columns)
        if self.peek() in ("{", '"', "word", "("):
            raise QueryError(f"phrases side by side in FTS5 expression {self.text!r}")
        return node

    def group(self, columns: frozenset[str]) -> _Node:
        self.take("(")
        node = self.any_of(columns)
        self.take(")")
        return node

    def filtered(self, columns: frozenset[str]) -> frozenset[str]:
        """The columns a filter at the cursor leaves of ``columns`` (none there: all)."""
        kind = self.peek()
        if kind == "{" or (kind == "word" and self.at + 1 < len(self.items)
                           and self.items[self.at + 1][0] == ":"):
            names = frozenset(self.take(kind).split())
            if not names or not names <= _ALL_COLUMNS:
                raise QueryError(f"unknown columns in FTS5 expression {self.text!r}")
            self.take(":")
            return columns & names
        return columns

    def phrase(self, columns: frozenset[str]) -> _Node:
        columns = self.filtered(columns)
        if self.peek() == "(":
            return self.group(columns)
        kind = self.peek()
        text = self.take(kind if kind in ('"', "word") else '"')
        prefix = self.peek() == "*"
        if prefix:
            self.at += 1
        self.found.append((tuple(tokens(text)), prefix, columns))
        return len(self.found) - 1


@lru_cache(maxsize=256)
def _parsed(match: str) -> tuple[_Node, tuple[Phrase, ...]]:
    parser = _Parser(match)
    tree = parser.parse()
    return tree, tuple(_phrase(found, tree, index) for index, found in enumerate(parser.found))


def _phrase(found: tuple[tuple[str, ...], bool, frozenset[str]], tree: _Node,
            index: int) -> Phrase:
    words, prefix, columns = found
    if columns == _ALL_COLUMNS:
        raise QueryError(f"a phrase without a column filter: {' '.join(words)!r}")
    if "facets" in columns:
        raise QueryError("facet filters are columns of the PostgreSQL archive, "
                         "not part of its search expressions")
    families = {_COLUMNS[name][0] for name in columns}
    if len(families) > 1:
        raise QueryError(f"a phrase in both words and grams columns: {sorted(columns)}")
    family = families.pop() if families else ""
    if prefix and words and family == "" and words[-1] == "w":
        raise QueryError('the gram prefix "w"* would match every word')
    parts = {_COLUMNS[name][1] for name in columns}
    lexemes = tuple(family + word for word in words) if parts else ()
    return Phrase(lexemes, prefix, "title" in parts, "text" in parts, tree, index)


def phrases(match: str) -> list[Phrase]:
    """The phrases of an FTS5 expression, in FTS5's order (the order bm25 adds them)."""
    return list(_parsed(match)[1])


def phrase_tsquery(phrase: Phrase) -> str:
    """The ``tsquery`` of the articles holding ``phrase`` in its columns (bm25's count)."""
    return _phrase_query(phrase) or NOTHING


def _phrase_query(phrase: Phrase) -> str | None:
    """The phrase as ``tsquery``; None if it matches nothing."""
    if not phrase.lexemes:
        return None
    weight = "" if phrase.title == phrase.text else "A" if phrase.title else "D"
    last = len(phrase.lexemes) - 1
    words = [_quote(lexeme) + (":" if weight or (phrase.prefix and i == last) else "")
             + ("*" if phrase.prefix and i == last else "") + weight
             for i, lexeme in enumerate(phrase.lexemes)]
    return words[0] if len(words) == 1 else "(" + " <-> ".join(words) + ")"


def tsquery(match: str) -> str:
    """An FTS5 expression (``parse_query(...).match`` or ``.title_match``) as ``tsquery``.

    A phrase without tokens matches nothing, as in FTS5: ``X AND ""`` nothing,
    ``X OR ""`` and ``X NOT ""`` what X does. Raises ``QueryError`` for what
    caixun never writes (NEAR, facet filters, a phrase without a column filter …).
    """
    tree, found = _parsed(match)
    return _query(tree, found) or NOTHING


def relaxed_tsquery(match: str) -> str:
    """A ``tsquery`` matching every row :func:`tsquery` of ``match`` does, which the GIN
    index answers without reading a row: each phrase as its lexemes anywhere in the row
    (no positions, no weights to check), a NOT without its right side.

    PostgreSQL checks a phrase or a weight in the row's own ``terms``, the whole
    vector read for each row the index hands over; a search may ask this first,
    among the ids it reads, and check the exact query in what it finds (see
    ``caixun.archive.postgres._Matches``). Equal to :func:`tsquery` when that needs
    no check.
    """
    tree, found = _parsed(match)
    return _relaxed(tree, found) or NOTHING


def _relaxed(node: _Node, found: Sequence[Phrase]) -> str | None:
    if isinstance(node, int):
        phrase = found[node]
        if not phrase.lexemes:
            return None
        last = len(phrase.lexemes) - 1
        words = list(dict.fromkeys(_quote(lexeme) + (":*" if phrase.prefix and i == last else "")
                                   for i, lexeme in enumerate(phrase.lexemes)))
        return words[0] if len(words) == 1 else "(" + " & ".join(words) + ")"
    if isinstance(node, _Not):  # left & !right holds where left does
        return _relaxed(node.left, found)
    parts = [_relaxed(child, found) for child in node.children]
    if isinstance(node, _And):
        return None if None in parts else "(" + " & ".join(p for p in parts if p) + ")"
    kept = [p for p in parts if p is not None]
    return None if not kept else kept[0] if len(kept) == 1 else "(" + " | ".join(kept) + ")"


def _query(node: _Node, found: Sequence[Phrase]) -> str | None:
    if isinstance(node, int):
        return _phrase_query(found[node])
    if isinstance(node, _Not):
        left, right = _query(node.left, found), _query(node.right, found)
        return left if left is None or right is None else f"({left} & !{right})"
    parts = [_query(child, found) for child in node.children]
    if isinstance(node, _And):
        return None if None in parts else "(" + " & ".join(p for p in parts if p) + ")"
    kept = [p for p in parts if p is not None]
    return None if not kept else kept[0] if len(kept) == 1 else "(" + " | ".join(kept) + ")"


# -- bm25 ----------------------------------------------------------------------------

def bm25(phrases: Sequence[Phrase], positions: Mapping[str, Sequence[tuple[int, str]]],
         doc_len: int, hits: Sequence[int], rows: int, total_len: int) -> float:
    """FTS5's ``bm25(search, 6.0, 6.0, 1.0, 1.0, 0.0)`` of a matching article (lower: better).

    ``phrases``: :func:`phrases` of the expression; ``positions``: lexeme →
    (position, weight letter) of the article, as ``unnest(terms)`` gives them
    (other lexemes may be there too); ``hits``: per phrase, the articles
    :func:`phrase_tsquery` matches; ``rows``, ``total_len``: ``count(*)`` and
    ``sum(doc_len)`` of the search table.

    As FTS5, a phrase's instances in the row count only where the parts of the
    expression holding it match the row: not under the right side of a NOT,
    not in an alternative of an OR or a part of an AND that does not match.
    """
    counts = [_instances(phrase, positions) for phrase in phrases]
    counted: set[int] = set()
    _count(_expression(phrases), [title + text > 0 for title, text in counts], counted)
    avgdl = float(total_len) / float(rows)
    score = 0.0
    for i, phrase in enumerate(phrases):
        idf = math.log((rows - hits[i] + 0.5) / (hits[i] + 0.5))
        if idf <= 0.0:
            idf = 1e-6
        title, text = counts[i] if i in counted else (0, 0)
        freq = _TITLE_WEIGHT * title + _TEXT_WEIGHT * text
        score += idf * ((freq * (_K1 + 1.0))
                        / (freq + _K1 * (1 - _B + _B * float(doc_len) / avgdl)))
    return -1.0 * score


def _expression(phrases: Sequence[Phrase]) -> _Node:
    """The expression the phrases come from; phrases made alone: all of them AND-ed."""
    tree = phrases[0].expression if phrases else None
    if tree is None:
        return _And(tuple(range(len(phrases))))
    if any(p.expression != tree or p.index != i for i, p in enumerate(phrases)):
        raise ValueError("bm25() needs the phrases of one expression, as phrases() gives them")
    return tree


def _matches(node: _Node, found: list[bool]) -> bool:
    if isinstance(node, int):
        return found[node]
    if isinstance(node, _Not):
        return _matches(node.left, found) and not _matches(node.right, found)
    if isinstance(node, _And):
        return all(_matches(child, found) for child in node.children)
    return any(_matches(child, found) for child in node.children)


def _count(node: _Node, found: list[bool], counted: set[int]) -> None:
    """Add to ``counted`` the phrases FTS5 reads the instances of, under ``node`` (which
    matches the row): every part of an AND, the parts of an OR that match, a NOT's left."""
    if isinstance(node, int):
        counted.add(node)
    elif isinstance(node, _Not):
        _count(node.left, found, counted)
    else:
        for child in node.children:
            if isinstance(node, _And) or _matches(child, found):
                _count(child, found, counted)


def _instances(phrase: Phrase, positions: Mapping[str, Sequence[tuple[int, str]]]
               ) -> tuple[int, int]:
    """How often the phrase occurs in the row's title and in its text (in its columns)."""
    if not phrase.lexemes:
        return 0, 0
    places = [_places(lexeme, positions, phrase.prefix and i == len(phrase.lexemes) - 1)
              for i, lexeme in enumerate(phrase.lexemes)]
    title = text = 0
    for start, weight in places[0].items():
        if weight == "A" and not phrase.title or weight != "A" and not phrase.text:
            continue
        if all(later.get(start + offset) == weight
               for offset, later in enumerate(places[1:], 1)):
            if weight == "A":
                title += 1
            else:
                text += 1
    return title, text


def _places(lexeme: str, positions: Mapping[str, Sequence[tuple[int, str]]],
            prefix: bool) -> dict[int, str]:
    """Position → weight letter of a lexeme (of every lexeme it starts, for a prefix)."""
    if not prefix:
        return dict(positions.get(lexeme, ()))
    found: dict[int, str] = {}
    for other, places in positions.items():
        if other.startswith(lexeme):
            found.update(places)
    return found

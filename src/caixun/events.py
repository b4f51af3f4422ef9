"""What an article says, for telling one event told in other words: terms, figures, rarity.

Character shingles (:mod:`caixun.dedup`) find copies; two reports of one event
in their own words share few shingles but the same *things*: institutions,
companies, places and people (jieba's words, tagged), the figures
(percentages, amounts, index levels), the headline's keywords. Each is weighted
by its rarity in the archive (inverse document frequency: "美股" and "指数" say
little, "摩尔线程" and "6.3565" much), so the archive counts the articles
holding each term (``story_terms``), oldest first.

An article's features are made in two steps, so that the costly one runs
outside the write transaction (in an import worker, or before a fetcher's turn):

* :func:`extract` (pure): the terms with their counts, the figures, the
  headline's terms, whether the headline is Chinese, the outlet.
* :func:`weigh` (with the archive's counts at the time): the stored bytes,
  the :data:`TOP_TERMS` heaviest terms as a unit vector of TF-IDF weights, and
  each figure and headline term with its relative rarity (IDF over the
  logarithm of the number of articles: 1 for a term no other article has).

:func:`inputs` and :func:`event_score` are the decision: a logistic model over
the cosine of the words, the shingle similarity of :mod:`caixun.dedup`, the
shared figures' and headline terms' rarity, a conflict of headline figures,
the hours apart and the languages, fitted by ``benchmarks/dedup.py --only
events`` on the fit part of ``tests/data/dedup_labels.json`` and reported
there on the held-out part. It links reports of *other* outlets only: two
reports of one outlet within days share its style and its recurring subjects
(the same column, the same market each day), and on the fit part they were
the model's false pairs; copies within an outlet are the shingles' work.
:func:`key_terms` are the index keys that bring such candidates up.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["COEFFICIENTS", "EVENT_THRESHOLD", "INPUTS", "KEY_RARITY", "KEY_TERMS", "TOP_TERMS", "EventTerms",
           "Features", "event_score", "extract", "figures", "inputs",
           "key_terms", "logit", "outlet_of", "pair_features", "read", "term_id", "weigh",
           "Rater"]

LEAD_CHARS = 600  # characters of the text after the headline whose words count
TOP_TERMS = 40  # terms kept per article (the heaviest): the vector the cosine compares
KEY_TERMS = 8  # index keys per article: its rarest figures and heaviest words
KEY_RARITY = 0.5  # a key term is held by fewer than about the square root of the articles
_VERSION = 1

# jieba's part-of-speech tags of words that name nothing: particles, pronouns,
# adverbs, conjunctions, prepositions, numerals and measure words (figures are
# read apart), punctuation and the like.
_SKIP_TAGS = frozenset({"x", "uj", "ul", "uz", "uv", "ud", "ug", "u", "p", "c", "d", "r", "m",
                        "mq", "q", "y", "e", "o", "f", "zg", "w", "t", "tg", "rr", "rz"})
_ENGLISH_STOP = frozenset(
    "the and for with from that this are was were has have had will would its into over "
    "after about than more says said new can not but also been their they which what who "
    "when where how why all out off amid as at by of on in to is it be or an a".split())
# A figure: digits with a decimal part, a percent sign, or a unit of money or
# count after them; whole numbers of three digits or more (years, levels, codes).
_FIGURE = re.compile(r"(\d+(?:\.\d+)?)\s*(%|％|亿|万|美元|元|点|bp|个基点)?")
_THOUSANDS = re.compile(r"(?<=\d)[,，](?=\d{3}(?!\d))")
_CJK = re.compile("[\u3400-\u9fff]")
# A digest rounds up many reports (财经晚报, 早餐, 利好消息一览, 公告最新快递,
# "8点1氪丨A；B；C", a morning briefing): it shares words, figures and shingles
# with each report it rounds up, and with the next digest, without being one
# event with any of them. A newspaper named in a headline (联合早报, 新民晚报) is
# no digest, nor is news of the courier trade (快递业务量).
# (Looked behind once 早报 or 晚报 is found, not at every character.)
_NEWSPAPER = "(?<!联合早报)(?<!新民晚报)(?<!北京晚报)(?<!羊城晚报)(?<!扬子晚报)(?<!钱江晚报)" \
             "(?<!齐鲁晚报)(?<!今晚报)"
_DIGEST = re.compile(
    rf"(?:早报|午报|晚报|夜报){_NEWSPAPER}|早餐|周报|日报[｜|丨]|一览|汇总|速递|速览|要闻"
    r"|(?:公告|消息|新闻|资讯)(?:最新)?(?:快递|精选|集锦|合集)"
    r"|[；;][^；;]+[；;]"  # three headlines in one
    r"|\b(?:briefing|round-?up|what to watch|things to know)\b", re.IGNORECASE)
_CHINESE_FLAG, _DIGEST_FLAG = 1, 2  # the bits of the stored header's flags byte
_SURROGATE = re.compile("[\ud800-\udfff]")
_NAMING = re.compile(r"[^\W_]")  # a letter or digit (a word is not only spaces and marks)


@dataclass(frozen=True, slots=True)
class EventTerms:
    """An article's features before weighting (see :func:`extract`).

    Its terms are its words, the larger id first, then its figures, the
    smaller id first, each once: the orders the stored features keep them in
    (so the writer sorts nothing but weights). They are kept packed, as the
    arrays the writer weighs and counts them with (an import worker or a
    fetcher makes them; the one process that writes reads them without
    building a Python object per term).
    """

    every: bytes  # the term ids of its words, then of its figures: little-endian int64
    word_weights: bytes  # 1 + log of how often each word occurs in headline and lead: float64
    title_at: bytes  # where the headline's words are among the words, smaller id first: uint16
    chinese: bool  # the headline is Chinese
    outlet: int  # a 32-bit hash of the outlet's name
    digest: bool = False  # the headline is a digest's (see is_digest)

    def ids(self) -> list[int]:
        """The term ids, as :attr:`every` packs them."""
        return list(struct.unpack(f"<{len(self.every) // 8}q", self.every))

    def array(self) -> NDArray[np.int64]:
        """The term ids as an array (no copy)."""
        ids: NDArray[np.int64] = _numpy().frombuffer(self.every, dtype="<i8")
        return ids


@dataclass(frozen=True, slots=True)
class Features:
    """Stored features read back (see :func:`read`)."""

    chinese: bool
    outlet: int
    words: dict[int, float]  # term id → weight; the weights are a unit vector
    figures: dict[int, float]  # term id → relative rarity
    title: dict[int, float]  # term id → relative rarity


@functools.lru_cache(maxsize=1 << 16)
def term_id(kind: str, term: str) -> int:
    """A term as a signed 64-bit integer (the key of ``story_terms``)."""
    return _term_id(kind, term)


def _term_id(kind: str, term: str) -> int:
    digest = hashlib.blake2b(f"{kind}\x1f{term}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


@functools.cache
def _numpy() -> Any:
    """numpy, imported when first needed (an import statement in a function called
    per article costs a microsecond or two each time)."""
    import numpy

    return numpy


@functools.lru_cache(maxsize=1)
def _jieba() -> Any:
    from caixun.segment import _jieba

    return _jieba()


# (word, tag) → the word's term id, or 0 for a word that names nothing: articles
# share most of their words, so each is judged and hashed once per process (a
# third of extracting). Replaced, not cleared, when full: a thread reading the
# old one meanwhile still finds what it put in.
_WORD_IDS: dict[tuple[str, str], int] = {}
_WORD_IDS_LIMIT = 1 << 17  # about 30 MB


def _word_id(word: str, tag: str) -> int:
    """A tagged word's term id, or 0 for a particle, pronoun, figure, mark and the like."""
    if tag in _SKIP_TAGS or len(word) <= 1:
        return 0
    word = word.lower()
    if tag == "eng" and (len(word) <= 2 or word in _ENGLISH_STOP):
        return 0
    if word.isdigit() or not _NAMING.search(word):
        return 0
    return _term_id("w", word)


def _word_ids(text: str) -> list[int]:
    """The term ids of the words of a text that name something, in order."""
    global _WORD_IDS
    tagged = _jieba().tag(text)
    ids = _WORD_IDS
    if len(ids) > _WORD_IDS_LIMIT:
        ids = _WORD_IDS = {}
    found = list(map(ids.get, tagged))
    if None in found:
        for n, pair in enumerate(tagged):
            if found[n] is None:
                found[n] = ids[pair] = _word_id(*pair)
    return [term for term in found if term]


def figures(text: str) -> set[str]:
    """The figures a text states: ``6.3565``, ``1.69%``, ``40亿``, ``2018``."""
    out = set()
    for number, unit in _FIGURE.findall(_THOUSANDS.sub("", text)):
        unit = {"％": "%"}.get(unit, unit)
        if unit or "." in number or len(number) >= 3:
            out.add(number + unit)
    return out


def extract(title: str, text: str, outlet: str) -> EventTerms:
    """The features of an article (``text``: its body, or the digest of a teaser)."""
    np = _numpy()
    title, lead = _without_surrogates(title), _without_surrogates(text[:LEAD_CHARS])
    head_and_lead = f"{title}\n{lead}"
    # jieba cuts no word across a line break: the headline's words, then the lead's,
    # are the words of both together.
    headline = _word_ids(title)
    # The words, the larger id first, and how often each occurs.
    ascending, counts = _distinct(np.array(headline + _word_ids(lead), dtype=np.int64))
    # The headline's, the smaller id first: the larger position first.
    title_at = len(ascending) - 1 - np.searchsorted(ascending, sorted(set(headline))[:255])
    figures_ = np.array(sorted({term_id("f", f) for f in figures(head_and_lead)}),
                        dtype=np.int64)
    figures_ = figures_[~_within(ascending, figures_)]
    return EventTerms(
        every=np.concatenate((ascending[::-1], figures_)).astype("<i8").tobytes(),
        word_weights=(1 + np.log(counts[::-1].astype(np.float64))).tobytes(),
        title_at=title_at.astype("<u2").tobytes(),
        chinese=bool(_CJK.search(title)),
        outlet=term_id("o", outlet) & 0xFFFFFFFF,
        digest=is_digest_title(title),
    )


def is_digest_title(title: str) -> bool:
    """Whether a headline is a digest's (a round-up of many reports, see _DIGEST)."""
    return _DIGEST.search(title) is not None


def _without_surrogates(text: str) -> str:
    """The text with lone surrogates (a broken feed's escapes, no text jieba can
    take) made spaces; looked for only when the text cannot be encoded."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub(" ", text)
    return text


def _distinct(ids: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.intp]]:
    """The distinct ids, ascending, and how often each occurs (numpy's unique, without
    the overhead that is most of its time on a hundred values)."""
    np = _numpy()
    ordered = np.sort(ids)
    first = np.empty(len(ordered) + 1, dtype=bool)
    first[0] = first[-1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:-1])
    starts = np.flatnonzero(first)
    distinct: NDArray[Any] = ordered[starts[:-1]]
    counts: NDArray[Any] = starts[1:] - starts[:-1]
    return distinct, counts


def sorted_unique(ids: NDArray[Any]) -> NDArray[Any]:
    """``np.unique(ids)``: numpy 2's imports numpy.ma on first use (18 ms a process)."""
    return _distinct(ids)[0]


def _within(ascending: NDArray[np.int64], ids: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Which of ``ids`` are in the ascending array ``ascending``."""
    np = _numpy()
    if not len(ascending):
        return np.zeros(len(ids), dtype=bool)  # type: ignore[no-any-return]
    found: NDArray[Any] = ascending[np.minimum(np.searchsorted(ascending, ids),
                                                    len(ascending) - 1)] == ids
    return found


# version, flags (Chinese, digest), outlet, words, figures, title terms, keys
_HEAD = struct.Struct("<BBIHBBB")


def weigh(terms: EventTerms, docs: NDArray[Any] | Sequence[int], total: int) -> bytes:
    """The stored features, weighted by the archive's counts (``docs``: the number
    of articles holding each term of ``terms.every``, ``total``: the number of
    articles). A term's rarity is its IDF relative to the archive's size: 1 for
    a term no other article holds."""
    np = _numpy()
    keys = terms.array()
    if total:
        rarity = np.log((total + 1) / (np.asarray(docs, dtype=np.float64) + 1)) / math.log(total + 2)
    else:
        rarity = np.ones(len(keys))
    n_words = len(terms.word_weights) // 8
    weights = np.frombuffer(terms.word_weights, dtype=np.float64) * rarity[:n_words]
    # The heaviest first; of equal weights, the larger id first (the words' order).
    top = np.argsort(-weights, kind="stable")[:TOP_TERMS]
    top = top[weights[top] > 0]
    figures_ = np.arange(n_words, min(len(keys), n_words + 255))
    title = np.frombuffer(terms.title_at, dtype="<u2").astype(np.intp)
    stored = rarity.astype(np.float32)  # the key terms are chosen by the rarity as stored
    rare = figures_[stored[figures_] >= KEY_RARITY]
    rare = rare[np.lexsort((keys[rare], -stored[rare]))][:KEY_TERMS // 2]
    heavy = top[rarity[top] >= KEY_RARITY][:KEY_TERMS - len(rare)]
    at = np.concatenate((top, figures_, title, rare, heavy))
    pairs = np.empty(len(at), dtype=_PAIRS)
    pairs["key"] = keys[at]
    pairs["weight"] = np.concatenate((
        weights[top] / (math.sqrt(float(np.square(weights[top]).sum())) or 1.0),
        rarity[figures_], rarity[title], np.zeros(len(rare) + len(heavy))))
    flags = _CHINESE_FLAG * terms.chinese | _DIGEST_FLAG * terms.digest
    head = _HEAD.pack(_VERSION, flags, terms.outlet, len(top), len(figures_),
                      len(title), len(rare) + len(heavy))
    data: bytes = head + pairs.tobytes()
    return data


_PAIRS = [("key", "<i8"), ("weight", "<f4")]  # packed: struct's "<qf", 12 bytes
_PAIR = struct.Struct("<qf")


@functools.lru_cache(maxsize=4096)
def read(data: bytes) -> Features:
    """Stored features back from their bytes (cached: candidates recur)."""
    version, flags, outlet, n_words, n_figures, n_title, _ = _HEAD.unpack_from(data)
    if version != _VERSION:
        raise ValueError(f"event features of version {version}, expected {_VERSION}")
    pairs = list(_PAIR.iter_unpack(data[_HEAD.size:]))
    return Features(bool(flags & _CHINESE_FLAG), outlet, dict(pairs[:n_words]),
                    dict(pairs[n_words:n_words + n_figures]),
                    dict(pairs[n_words + n_figures:n_words + n_figures + n_title]))


def key_terms(data: bytes) -> list[int]:
    """An article's index keys: its rarest figures and heaviest words, of those at
    least :data:`KEY_RARITY` rare, :data:`KEY_TERMS` in all (chosen when weighed).

    Two reports of one event the model links share rare terms; looking up
    the new article's keys in the window brings the stored ones that share
    one (see :func:`caixun.dedup.event_keys`). A term most articles hold is
    no key: in a flood of look-alikes it would bring up the flood.
    """
    *_, n_words, n_figures, n_title, n_keys = _HEAD.unpack_from(data)
    start = _HEAD.size + _PAIR.size * (n_words + n_figures + n_title)
    return [key for key, _ in _PAIR.iter_unpack(data[start:start + _PAIR.size * n_keys])]


def _shared(a: dict[int, float], b: dict[int, float]) -> float:
    """Sum of the smaller rarity of each shared term."""
    if len(a) > len(b):
        a, b = b, a
    return sum(min(w, b[k]) for k, w in a.items() if k in b)


def pair_features(x: Features, y: Features) -> tuple[float, float, float, bool, bool, bool]:
    """Cosine of the words, shared figures' and headline terms' rarity, same outlet,
    both Chinese, both not Chinese."""
    small, large = (x.words, y.words) if len(x.words) <= len(y.words) else (y.words, x.words)
    cosine = sum(w * large[k] for k, w in small.items() if k in large)
    return (cosine, _shared(x.figures, y.figures), _shared(x.title, y.title),
            x.outlet == y.outlet, x.chinese and y.chinese, not x.chinese and not y.chinese)


# The model's inputs, in order, and their coefficients as benchmarks/dedup.py
# --only events fits them (logistic regression, L2 penalty 1, on every pair of
# the fit part within the window; uncertain pairs left out).
INPUTS = ("bias", "cosine", "similarity", "figures", "title", "conflict", "log_hours",
          "same_outlet", "chinese", "english")
COEFFICIENTS: dict[str, float] = {
    "bias": -4.302, "cosine": 2.114, "similarity": 0.411, "figures": 2.074, "title": 2.745,
    "conflict": -1.432, "log_hours": -1.259, "same_outlet": -1.728, "chinese": -0.493,
    "english": -0.889,
}
# From this probability two reports of other outlets are one event. Every pair
# in the window compared: on the fit part 0.5, 0.7 and 0.9 found 15, 13 and 12
# pairs, all true; on the held-out part 10 of 14, 8 of 12 and 6 of 10.
EVENT_THRESHOLD = 0.5


def inputs(x: Features, y: Features, similarity: float, conflict: bool,
           hours: float) -> dict[str, float]:
    """The model's inputs for a pair."""
    cosine, shared_figures, shared_title, same_outlet, chinese, english = pair_features(x, y)
    return {"bias": 1.0, "cosine": cosine, "similarity": similarity,
            "figures": min(shared_figures, 3.0), "title": min(shared_title, 3.0),
            "conflict": float(conflict), "log_hours": math.log1p(hours),
            "same_outlet": float(same_outlet), "chinese": float(chinese),
            "english": float(english)}


def event_score(values: Mapping[str, float],
                coefficients: Mapping[str, float] = COEFFICIENTS) -> float:
    """The probability that a pair is one event, from :func:`inputs`."""
    z = sum(coefficients[name] * value for name, value in values.items())
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))



def logit(probability: float) -> float:
    """The model's value at which its probability is ``probability``."""
    return math.log(probability / (1 - probability))


# A term's id in the joined arrays of Rater: a headline term is a word too, so its
# id is told apart with this mask (figures' ids are apart already).
_TITLE_MASK = 0x7E1E_0000_0000_0001


def is_digest(data: bytes) -> bool:
    """Whether stored features are a digest's, read from their header alone."""
    return bool(data[1] & _DIGEST_FLAG)


def outlet_of(data: bytes) -> int:
    """The outlet hash of stored features, read from their header alone."""
    outlet: int = _OUTLET.unpack_from(data, 2)[0]
    return outlet


_OUTLET = struct.Struct("<I")


@functools.lru_cache(maxsize=4096)
def _arrays(data: bytes) -> tuple[bool, NDArray[Any], NDArray[Any], NDArray[Any]]:
    """Stored features as arrays (cached: candidates recur): Chinese headline; the
    ids of the words, figures and headline terms joined (see _TITLE_MASK); their
    weights as float64; which of the three each is (0, 1, 2)."""
    np = _numpy()
    version, flags, _, n_words, n_figures, n_title, _ = _HEAD.unpack_from(data)
    if version != _VERSION:
        raise ValueError(f"event features of version {version}, expected {_VERSION}")
    pairs = np.frombuffer(data, dtype=_PAIRS, offset=_HEAD.size)
    pairs = pairs[:n_words + n_figures + n_title]
    keys = pairs["key"].copy()
    keys[n_words + n_figures:] ^= _TITLE_MASK
    groups = np.repeat(np.array([0, 1, 2], dtype=np.intp), [n_words, n_figures, n_title])
    return bool(flags & _CHINESE_FLAG), keys, pairs["weight"].astype(np.float64), groups


class Rater:
    """The model's value for one new article against many stored reports of other
    outlets (its same-outlet term is 0), in array arithmetic: :meth:`partial` is all of it but the shingle similarity and the
    headline-figure conflict, which only the pairs that can reach the threshold
    need (:meth:`bound`); :meth:`probability` adds them. The same arithmetic as
    :func:`inputs` and :func:`event_score`, which tests compare it with.
    """

    def __init__(self, new: bytes, coefficients: Mapping[str, float] = COEFFICIENTS) -> None:
        self.coefficients = coefficients
        self.chinese, keys, weights, groups = _arrays(new)
        order = keys.argsort(kind="stable")
        self.keys, self.weights, self.groups = keys[order], weights[order], groups[order]

    def partial(self, others: Sequence[bytes], hours: Sequence[float]) -> NDArray[Any]:
        """The model's value less its similarity and conflict terms, per stored article."""
        np = _numpy()
        c = self.coefficients
        parsed = [_arrays(other) for other in others]
        cosine, figures_, title = self._shared(parsed)
        chinese = np.array([p[0] for p in parsed], dtype=bool)
        both = chinese if self.chinese else np.zeros(len(parsed), dtype=bool)
        neither = np.zeros(len(parsed), dtype=bool) if self.chinese else ~chinese
        value: NDArray[Any] = (c["bias"] + c["cosine"] * cosine
                               + c["figures"] * np.minimum(figures_, 3.0)
                               + c["title"] * np.minimum(title, 3.0)
                               + c["log_hours"] * np.log1p(np.array(hours, dtype=np.float64))
                               + c["chinese"] * both + c["english"] * neither)
        return value

    def bound(self, partial: NDArray[Any]) -> NDArray[Any]:
        """The highest value each pair can reach, whatever its similarity and conflict."""
        c = self.coefficients
        return partial + max(c["similarity"], 0.0) + max(c["conflict"], 0.0)

    def probability(self, partial: float, similarity: float, conflict: bool) -> float:
        c = self.coefficients
        z = partial + c["similarity"] * similarity + c["conflict"] * float(conflict)
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def _shared(self, parsed: list[tuple[bool, NDArray[Any], NDArray[Any], NDArray[Any]]]
                ) -> NDArray[Any]:
        """Per stored article: the cosine of the words, and the sums of the smaller
        rarity of each shared figure and of each shared headline term (3 rows)."""
        np = _numpy()
        out: NDArray[Any] = np.zeros((3, len(parsed)))
        if not len(self.keys) or not parsed:
            return out
        keys = np.concatenate([p[1] for p in parsed])
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        hit = self.keys[at] == keys
        if not hit.any():
            return out
        owner = np.repeat(np.arange(len(parsed)), [len(p[1]) for p in parsed])[hit]
        theirs = np.concatenate([p[2] for p in parsed])[hit]
        ours, group = self.weights[at[hit]], self.groups[at[hit]]
        values = np.where(group == 0, theirs * ours, np.minimum(theirs, ours))
        counted: NDArray[Any] = np.bincount(group * len(parsed) + owner, weights=values,
                                            minlength=3 * len(parsed)).reshape(3, -1)
        return counted

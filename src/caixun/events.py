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
from typing import Any, Mapping, Sequence

__all__ = ["COEFFICIENTS", "EVENT_THRESHOLD", "INPUTS", "KEY_TERMS", "TOP_TERMS", "EventTerms",
           "Features", "event_score", "every_term", "extract", "figures", "inputs",
           "key_terms", "pair_features", "read", "term_id", "weigh"]

LEAD_CHARS = 600  # characters of the text after the headline whose words count
TOP_TERMS = 40  # terms kept per article (the heaviest): the vector the cosine compares
KEY_TERMS = 8  # index keys per article: its rarest figures and heaviest words
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
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class EventTerms:
    """An article's features before weighting (see :func:`extract`)."""

    words: Mapping[int, int]  # term id → count in headline and lead
    figures: frozenset[int]  # term ids of the figures
    title: frozenset[int]  # term ids of the headline's words
    chinese: bool  # the headline is Chinese
    outlet: int  # a 32-bit hash of the outlet's name


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
    digest = hashlib.blake2b(f"{kind}\x1f{term}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


@functools.lru_cache(maxsize=1)
def _jieba() -> Any:
    from caixun.segment import _jieba

    return _jieba()


def _words(text: str) -> list[str]:
    found = []
    for word, tag in _jieba().tag(text):
        if tag in _SKIP_TAGS or len(word) < 2 or word.isdigit():
            continue
        word = word.lower()
        if tag == "eng" and (word in _ENGLISH_STOP or len(word) < 3):
            continue
        if not word.strip() or not any(ch.isalnum() for ch in word):
            continue
        found.append(word)
    return found


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
    # Lone surrogates (a broken feed's escapes) are no text jieba can take.
    title, lead = _SURROGATE.sub(" ", title), _SURROGATE.sub(" ", text[:LEAD_CHARS])
    words: dict[int, int] = {}
    for word in _words(f"{title}\n{lead}"):
        key = term_id("w", word)
        words[key] = words.get(key, 0) + 1
    return EventTerms(
        words=words,
        figures=frozenset(term_id("f", f) for f in figures(f"{title}\n{lead}")),
        title=frozenset(term_id("w", w) for w in _words(title)),
        chinese=bool(_CJK.search(title)),
        outlet=term_id("o", outlet) & 0xFFFFFFFF,
    )


def every_term(terms: EventTerms) -> list[int]:
    """The term ids whose article counts the archive keeps (each once)."""
    return sorted(set(terms.words) | terms.figures)


_HEAD = struct.Struct("<BBIHBB")  # version, Chinese, outlet, words, figures, title terms


def _rarity(docs: int, total: int) -> float:
    """IDF relative to the archive's size: 1 for a term no other article has."""
    return math.log((total + 1) / (docs + 1)) / math.log(total + 2) if total else 1.0


def weigh(terms: EventTerms, docs: Mapping[int, int], total: int) -> bytes:
    """The stored features, weighted by the archive's counts (``docs``: the number
    of articles holding each term, ``total``: the number of articles)."""
    weighted = sorted(((1 + math.log(count)) * _rarity(docs.get(key, 0), total), key)
                      for key, count in terms.words.items())
    top = [(w, key) for w, key in reversed(weighted[-TOP_TERMS:]) if w > 0]
    norm = math.sqrt(sum(w * w for w, _ in top)) or 1.0
    figures_ = sorted(terms.figures)[:255]
    title = sorted(terms.title)[:255]
    parts = [_HEAD.pack(_VERSION, terms.chinese, terms.outlet, len(top), len(figures_),
                        len(title))]
    parts += [struct.pack("<qf", key, w / norm) for w, key in top]
    parts += [struct.pack("<qf", key, _rarity(docs.get(key, 0), total)) for key in figures_]
    parts += [struct.pack("<qf", key, _rarity(docs.get(key, 0), total)) for key in title]
    return b"".join(parts)


_PAIR = struct.Struct("<qf")


@functools.lru_cache(maxsize=4096)
def read(data: bytes) -> Features:
    """Stored features back from their bytes (cached: candidates recur)."""
    version, chinese, outlet, n_words, n_figures, n_title = _HEAD.unpack_from(data)
    if version != _VERSION:
        raise ValueError(f"event features of version {version}, expected {_VERSION}")
    pairs = list(_PAIR.iter_unpack(data[_HEAD.size:]))
    return Features(bool(chinese), outlet, dict(pairs[:n_words]),
                    dict(pairs[n_words:n_words + n_figures]),
                    dict(pairs[n_words + n_figures:n_words + n_figures + n_title]))


def key_terms(data: bytes) -> list[int]:
    """An article's index keys: its :data:`KEY_TERMS` rarest figures and heaviest words.

    Two reports of one event the model links share rare terms; looking up
    the new article's keys in the window brings the stored ones that share
    one (see :func:`caixun.dedup.event_keys`).
    """
    x = read(data)
    rare = sorted(x.figures, key=lambda k: (-x.figures[k], k))[:KEY_TERMS // 2]
    heavy = sorted(x.words, key=lambda k: (-x.words[k], k))[:KEY_TERMS - len(rare)]
    return rare + heavy


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
# From this probability two reports of other outlets are one event: on the fit
# part 0.5, 0.7 and 0.9 found 15, 13 and 12 pairs, all true; on the held-out
# part 6 of 8, 5 of 7 and 4 of 6.
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


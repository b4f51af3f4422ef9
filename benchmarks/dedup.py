"""Benchmark: precision and recall of ``caixun.dedup`` on the labelled set, and its speed.

Run it by hand from the repository root::

    python benchmarks/dedup.py                     # everything, defaults
    python benchmarks/dedup.py --sizes 2000        # smaller clustering run
    python benchmarks/dedup.py --no-simhash        # skip the SimHash comparison
    python benchmarks/dedup.py --only store flood  # just the archive parts (3 and 4)
    python benchmarks/dedup.py --only flood --flood 5000

1. Quality. ``tests/data/dedup_labels.json`` has five parts (its ``method``
   says how they were made): ``stories``, exhaustive same-story labels of the
   117 finews posts and 8 consecutive rss-days files (638 distinct items; the
   event model is fitted on it), ``more_stories``, the same for 14 more rss-days
   files in five runs of days (880 distinct items; fitted on too),
   ``held_out``, the same for 21 rss-days files in six runs of days (1,102
   distinct items; never fitted on), ``held_out_2``, the same for the 9
   rss-days files left, in three runs (567 distinct items; never fitted on;
   labelled after everything else was fixed), and
   ``near_duplicates``, every candidate pair of the whole rss-days corpus
   (2,835 links) judged. For the two story-level parts each line also gives
   the recall of each kind of pair: copies (one text) and other words;
   Chinese-Chinese, English-English and cross-language (by the headlines).
   Articles are read as caixun reads them (``read_post``; the RSS source on
   ``rss_xml`` of each day, each day's item an item of its own), clustered
   with ``dedup.cluster`` (shingles from similarity t, and the event model of
   ``caixun/events.py``) and scored pairwise over distinct items (an rss link
   counts once) by ``pair_scores`` of ``tests/test_dedup.py``; uncertain pairs
   are left out. Printed per shingle threshold: precision, recall, hits /
   predicted / true pairs, the recall of the "copy" tier (one text). Then the
   shingles alone at the default threshold with every article in the window
   as a candidate (no LSH index, no event model), and the same pipeline
   (exact keys, window, minimum length) with a 64-bit SimHash of the same
   shingles in place of MinHash, all pairs in the window compared, at several
   similarity thresholds (1 - Hamming distance / 64). Last, the two held-out
   parts together at the defaults (each clustered on its own, the pairs added).

1b. Events (``--only events``). The logistic model of ``caixun/events.py``
   fitted again on ``stories`` and ``more_stories`` (its coefficients printed
   beside the ones in the code), then every pair in the window compared (no
   index) on those and the held-out parts, at three probability thresholds, for every
   outlet and for other outlets only (what caixun does).

1b'. Securities (``--only securities``). The same fit with one more input:
   whether the two articles are tagged with a security in common (the tagger
   knowing every name the corpus' East Money quote links give), beside the
   model without it, at two probability cuts, other outlets only.

1c. Candidates (``--only candidates``). Whether candidate generation (exact,
   LSH, headline and event keys, looked up in the archive within the window,
   bounded per article) misses pairs. Every feed item and post of the corpus
   stored oldest first: the pairs of distinct stored articles within the
   window that the shingles would link (similarity from the threshold, both
   long enough), how many were compared when the later one was stored, how
   many are one story anyway (through a copy), how many neither. Then, per
   story-level part, the same-story pairs of other outlets that caixun misses:
   compared and rated too low, or never a candidate; and how many of the
   latter the event model would link (p from ``EVENT_THRESHOLD``) were they
   compared.

2. Speed. Microseconds per ``fingerprint`` over the 4,122 corpus articles
   (mean and median, and for the 400-token leads alone), the same for the
   SimHash, and ``cluster`` wall time for N generated articles (``--sizes``):
   article ``i`` is corpus article ``i % 4,122`` with a new uid, published
   ``i`` minutes after 2026-01-01 (about 1,440 a day), every third one with
   its last sentence dropped and every fifth one with a word of the first
   sentence changed (so the index sees near duplicates, not only copies).

3. Archive. ``store_many`` of the 4,005 real rss-days feed items, oldest
   first, with the search index alone (schema 5) and with stories too: what
   story placement costs a write, and how many re-listings are merged; then
   with stories and each article's fingerprint given (``prints``), with its
   search tokens given too (``indexed``), and with its securities scan and
   column values too (``scans``, ``rows``), as the importer's workers and the
   fetchers make them: what is left for the process that writes.

4. Worst case (``--flood N``, 20,000 by default). ``store_many`` of N
   look-alikes published within two days, so every one is in every other's
   window: one results announcement template with another company, code and
   figures (the headline figure shared by one article in 40). Printed per
   tenth of the run: µs per article, wall clock and CPU time. Flat means that
   placing an article does not cost more as look-alikes pile up.

Only the standard library, caixun and the test helpers are used; nothing is
asserted. The numbers in ``caixun/dedup.py``'s docstring come from this script.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import test_dedup as td  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
import test_stories as ts  # type: ignore[import-not-found, unused-ignore]  # noqa: E402

from caixun import dedup  # noqa: E402
from caixun import events as ef  # noqa: E402
from caixun.archive import SqliteArchive  # noqa: E402
from caixun import segment  # noqa: E402
from caixun.archive.base import content_row  # noqa: E402
from caixun.archive.migrations import MIGRATIONS, Migration  # noqa: E402
from caixun.archive.securities import scan_article  # noqa: E402
from caixun.dedup import Candidate, Clusterer  # noqa: E402
from caixun.model import Article  # noqa: E402
from caixun.segment import IndexedText  # noqa: E402

PARTS = ("stories", "more_stories", "held_out", "held_out_2", "near_duplicates")
# The event model is fitted on the first two, reported on the next two.
FIT_PARTS, HELD_OUT = ("stories", "more_stories"), ("held_out", "held_out_2")
THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7)
SIMHASH_THRESHOLDS = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
_CJK = re.compile(r"[\u4e00-\u9fff]")


# -- quality -----------------------------------------------------------------------------------

def _first_articles(items: Mapping[str, Article]) -> dict[str, Article]:
    first: dict[str, Article] = {}
    for item in sorted(items, key=lambda i: (items[i].published_at, i)):
        first.setdefault(td.unit(item), items[item])
    return first


def kinds(items: Mapping[str, Article], part: str) -> dict[str, set[frozenset[str]]]:
    """The same-story pairs of a part by kind: copies (one text) and other words;
    Chinese-Chinese, English-English and cross-language (by the headlines)."""
    first = _first_articles(items)
    truth = td.truth(part)
    chinese = {u for u, a in first.items() if _CJK.search(a.title)}
    by_language = {"zh-zh": 2, "en-en": 0, "cross": 1}
    out = {"copies": truth.copy, "other words": truth.same - truth.copy}
    for name, count in by_language.items():
        out[name] = {p for p in truth.same if len(p & chinese) == count}
    return out


def held_out_together() -> None:
    """caixun at its defaults on the held-out parts together: each part clustered on
    its own (pairs across parts were never labelled), the pairs of each kind added."""
    hits = predicted = true = 0
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for part in HELD_OUT:
        items = td.labelled_items(part)
        s = td.pair_scores(items, dedup.cluster(list(items.values())), part)
        hits, predicted, true = hits + s.hits, predicted + s.predicted, true + s.true
        missed = {frozenset(p) for p in s.missed_pairs}
        for kind, pairs in kinds(items, part).items():
            found[kind][0] += len(pairs - missed)
            found[kind][1] += len(pairs)
    print(f"\n{' + '.join(HELD_OUT)}, together: caixun (default) "
          f"P {hits / max(predicted, 1):.3f}  R {hits / max(true, 1):.3f}  "
          f"({hits}/{predicted}/{true})  "
          + "  ".join(f"{kind} {n}/{of}" for kind, (n, of) in found.items()))


def report(name: str, items: Mapping[str, Article], stories: Mapping[str, str], part: str
           ) -> None:
    s = td.pair_scores(items, stories, part)
    extra = ""
    if "stories" in td.labels()[part]:  # story-level labels: recall of every kind
        missed = {frozenset(p) for p in s.missed_pairs}
        extra = "  " + "  ".join(f"{kind} {len(pairs - missed)}/{len(pairs)}"
                                 for kind, pairs in kinds(items, part).items())
    print(f"  {name:<22} P {s.precision:.3f}  R {s.recall:.3f}  "
          f"({s.hits}/{s.predicted}/{s.true})  copy R {s.copy_recall:.3f}{extra}")


def brute_force(articles: Sequence[Article], score: Callable[[Article, Article], float],
                threshold: float, window: timedelta = dedup.WINDOW,
                min_tokens: int = dedup.MIN_TOKENS) -> dict[str, str]:
    """The clusterer's decisions with every article in the window as a candidate."""
    exact: dict[str, list[Candidate]] = defaultdict(list)
    stories: dict[str, str] = {}
    seen: list[tuple[Article, str, int]] = []
    clusterer = Clusterer(threshold=2.0, window=window, min_tokens=min_tokens)  # exact only
    for article in sorted(articles, key=lambda a: (a.published_at, a.uid)):
        new = Candidate.of(article)
        tokens = dedup.read_fingerprint(new.fingerprint).tokens
        found = [c for k in new.exact_keys for c in exact.get(k, ())]
        story = clusterer.assign(new, found)
        if story is None and tokens >= min_tokens:
            recent = []
            for entry in reversed(seen):
                if article.published_at - entry[0].published_at > window:
                    break
                recent.append(entry)
            best: tuple[float, str] | None = None
            for other, other_story, other_tokens in reversed(recent):  # oldest first
                if other_tokens >= min_tokens:
                    value = score(article, other)
                    if value >= threshold and (best is None or value > best[0]):
                        best = (value, other_story)
            story = best[1] if best else None
        story = story or article.uid
        stories[article.uid] = story
        for key in new.exact_keys:
            exact[key].append(Candidate(story, new.published_at, new.fingerprint, new.exact_keys))
        seen.append((article, story, tokens))
    return stories


def simhash(article: Article) -> int:
    """64-bit SimHash of the same shingles the MinHash fingerprint uses (weight 1 each)."""
    text = dedup.fingerprint_text(article.title, article.body_text or article.digest)
    parts = dedup.tokens(text)[:dedup.MAX_TOKENS]
    shingles = {" ".join(parts[i:i + dedup.SHINGLE])
                for i in range(max(len(parts) - dedup.SHINGLE + 1, min(len(parts), 1)))}
    if not shingles:
        return 0
    bits = [format(int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big"),
                   "064b") for s in shingles]
    half = len(bits) / 2
    value = 0
    for column in zip(*bits):
        value = value << 1 | (column.count("1") > half)
    return value


def quality(args: argparse.Namespace) -> None:
    print("Quality: pairwise over distinct items; (hits/predicted/true pairs). 'caixun t': "
          "dedup.cluster, shingles from similarity t, and the event model")
    for part in PARTS:
        items = td.labelled_items(part)
        articles = list(items.values())
        print(f"\n{part}: {len(items)} items, {len(_first_articles(items))} distinct, "
              f"{len(td.truth(part).same)} same-story pairs, "
              f"{len(td.truth(part).uncertain)} uncertain")
        for threshold in THRESHOLDS:
            mark = " (default)" if threshold == dedup.THRESHOLD else ""
            stories = dedup.cluster(articles, Clusterer(threshold=threshold))
            report(f"caixun t={threshold}{mark}", items, stories, part)
        prints = {a.uid: dedup.fingerprint(a) for a in articles}
        stories = brute_force(articles, lambda a, b: dedup.similarity(prints[a.uid],
                                                                      prints[b.uid]),
                              dedup.THRESHOLD)
        report("shingles only, no LSH", items, stories, part)
        if args.simhash:
            hashes = {a.uid: simhash(a) for a in articles}
            for threshold in SIMHASH_THRESHOLDS:
                stories = brute_force(
                    articles,
                    lambda a, b: 1 - bin(hashes[a.uid] ^ hashes[b.uid]).count("1") / 64,
                    threshold)
                report(f"SimHash t={threshold}", items, stories, part)
    held_out_together()


# -- events: one event told in other words (an experiment) ------------------------------------

@dataclass(frozen=True)
class _Seen:
    """An article as the event experiment sees it."""

    unit: str
    article: Article
    fingerprint: dedup.Fingerprint
    features: ef.Features


def _event_articles(items: Mapping[str, Article]) -> list[_Seen]:
    """The distinct items oldest first, their features weighed by the counts of the
    items before them (as an archive storing them in that order would count)."""
    docs: dict[int, int] = defaultdict(int)
    out = []
    for number, (unit, article) in enumerate(sorted(_first_articles(items).items(),
                                                    key=lambda kv: (kv[1].published_at, kv[0]))):
        terms = ef.extract(article.title, article.body_text or article.digest, article.outlet)
        features = ef.read(ef.weigh(terms, [docs[key] for key in terms.ids()], number))
        for key in terms.ids():
            docs[key] += 1
        out.append(_Seen(unit, article, dedup.read_fingerprint(dedup.fingerprint(article)),
                         features))
    return out


def _pair_inputs(new: _Seen, old: _Seen) -> dict[str, float] | None:
    """The event model's inputs for two articles, None when out of the window."""
    hours = abs((new.article.published_at - old.article.published_at).total_seconds()) / 3600
    if hours > dedup.WINDOW.total_seconds() / 3600:
        return None
    x, y = new.fingerprint, old.fingerprint
    j = dedup.jaccard(x, y) if x.shingles and y.shingles else 0.0
    conflict = not (x.numbers <= y.numbers or y.numbers <= x.numbers)
    return ef.inputs(new.features, old.features, dedup._similarity(x, y, j) if j else 0.0,
                     conflict, hours)


def fit_event_model(parts: Sequence[str],
                    inputs: Callable[[_Seen, _Seen], dict[str, float] | None] | None = None,
                    names: Sequence[str] = ef.INPUTS) -> dict[str, float]:
    """Logistic regression (L2, lambda 1, Newton's method) over every pair of each
    part's distinct items within the window, uncertain pairs left out (``inputs``:
    a pair's inputs, by ``names``; default: the model's own)."""
    import numpy as np

    rows, labels = [], []
    for part in parts:
        seen, truth = _event_articles(td.labelled_items(part)), td.truth(part)
        for n, new in enumerate(seen):
            for old in seen[:n]:
                pair = frozenset((new.unit, old.unit))
                values = (inputs or _pair_inputs)(new, old)
                if values is not None and pair not in truth.uncertain:
                    rows.append([values[name] for name in names])
                    labels.append(float(pair in truth.same))
    return dict(zip(names, fit_logistic(np.array(rows), np.array(labels))))


def securities_inputs() -> Callable[[_Seen, _Seen], dict[str, float] | None]:
    """The model's inputs and ``securities``: 1 when both articles are tagged with a
    security in common. The tagger knows every (code, link text) pair of the
    corpus' East Money quote links, as ``tests/test_securities_quality.py``'s does
    (an archive learns names from its sources' security lists)."""
    import test_securities_quality as sq  # type: ignore[import-not-found, unused-ignore]

    from caixun.securities import Tagger, names_in_links

    tagger = Tagger(sorted({(code, name) for _, item in sq.corpus()
                            for code, name in names_in_links(item.get("summary") or "")
                            if name}))
    tags: dict[str, frozenset[str]] = {}

    def codes(article: Article) -> frozenset[str]:
        if article.uid not in tags:
            tags[article.uid] = frozenset(tagger.tag(
                f"{article.title}\n{article.body_text or article.digest}"))
        return tags[article.uid]

    def inputs(new: _Seen, old: _Seen) -> dict[str, float] | None:
        values = _pair_inputs(new, old)
        if values is not None:
            values["securities"] = float(bool(codes(new.article) & codes(old.article)))
        return values

    return inputs


def securities_quality() -> None:
    """The event model fitted with and without the shared-securities input, side by side."""
    inputs, names = securities_inputs(), (*ef.INPUTS, "securities")
    base = fit_event_model(FIT_PARTS)
    with_securities = fit_event_model(FIT_PARTS, inputs, names)
    print(f"Events with tagged securities as an input, fitted on {' and '.join(FIT_PARTS)}, "
          f"every pair in the window compared\n  without: {base}\n  with: {with_securities}")
    for part in (*FIT_PARTS, *HELD_OUT):
        items = td.labelled_items(part)
        print(f"{part}{' (fitted on)' if part in FIT_PARTS else ' (not fitted on)'}:")
        for threshold in (0.5, 0.9):
            report(f"without p>={threshold}", items,
                   event_cluster(items, base, threshold, False), part)
            report(f"with p>={threshold}", items,
                   event_cluster(items, with_securities, threshold, False, inputs), part)


def fit_logistic(x: Any, y: Any) -> list[float]:
    """Coefficients of a logistic regression of ``y`` on the columns of ``x`` (the
    first the bias, not penalized; L2, lambda 1, Newton's method), rounded."""
    import numpy as np

    w = np.zeros(x.shape[1])
    penalty = np.diag([0.0] + [1.0] * (x.shape[1] - 1))
    for _ in range(50):
        p = 1 / (1 + np.exp(-(x @ w)))
        w -= np.linalg.solve((x * (p * (1 - p))[:, None]).T @ x + penalty,
                             x.T @ (p - y) + penalty @ w)
    return [round(float(v), 3) for v in w]


def event_cluster(items: Mapping[str, Article], coefficients: Mapping[str, float],
                  threshold: float, same_outlet: bool,
                  inputs: Callable[[_Seen, _Seen], dict[str, float] | None] | None = None
                  ) -> dict[str, str]:
    """Oldest first, each article joins the story of the earlier one in the window that
    the shingles (dedup.similarity >= THRESHOLD, both long enough) or the event model
    (probability >= threshold; other outlets only unless ``same_outlet``) rate highest.
    ``inputs``: the model's inputs of a pair (default: ``_pair_inputs``)."""
    stories: dict[str, str] = {}
    seen = _event_articles(items)
    for n, new in enumerate(seen):
        best: tuple[float, str] | None = None
        for old in seen[:n]:
            values = (inputs or _pair_inputs)(new, old)
            if values is None:
                continue
            shingles = values["similarity"] if min(new.fingerprint.tokens,
                                                   old.fingerprint.tokens) >= dedup.MIN_TOKENS \
                else 0.0
            score = shingles if shingles >= dedup.THRESHOLD else 0.0
            if same_outlet or not values["same_outlet"]:
                event = ef.event_score(values, coefficients)
                score = max(score, event if event >= threshold else 0.0)
            if score and (best is None or score > best[0]):
                best = (score, stories[old.article.uid])
        stories[new.article.uid] = best[1] if best else new.article.uid
    return stories


def event_quality() -> None:
    coefficients = fit_event_model(FIT_PARTS)
    print(f"Events (caixun/events.py): the logistic model fitted on {' and '.join(FIT_PARTS)}, every pair "
          f"in the window compared\n  coefficients: {coefficients}")
    if coefficients != ef.COEFFICIENTS:
        print(f"  (caixun.events.COEFFICIENTS differ: {ef.COEFFICIENTS})")
    for part in (*FIT_PARTS, *HELD_OUT):
        items = td.labelled_items(part)
        print(f"{part}{' (fitted on)' if part in FIT_PARTS else ' (not fitted on)'}:")
        report("caixun (default)", items, dedup.cluster(list(items.values())), part)
        for same_outlet in (True, False):
            for threshold in (0.5, 0.7, 0.9):
                name = f"events p>={threshold}" + ("" if same_outlet else " other outlets")
                report(name, items, event_cluster(items, coefficients, threshold, same_outlet),
                       part)
    held_out_together()


# -- candidates --------------------------------------------------------------------------------

def _stored_in_order(items: Mapping[str, Article], path: Path
                     ) -> tuple[list[Article], dict[str, Candidate], dict[str, int],
                                dict[int, int], dict[int, set[int]]]:
    articles = sorted({a.uid: a for a in items.values()}.values(),
                      key=lambda a: (a.published_at, a.uid))
    prints = {a.uid: Candidate.of(a) for a in articles}
    return (articles, prints, *ts.store_recording_candidates(path, articles, prints))


def _model_probability(db: Any, earlier: tuple[int, Article], later: tuple[int, Article],
                       prints: Mapping[str, Candidate]) -> float:
    """The event model's probability for a pair, from the features as stored."""
    (a, x), (b, y) = earlier, later
    event = {i: bytes(db.execute("SELECT event FROM dedup_prints WHERE article_id = ?",
                                 (i,)).fetchone()[0]) for i in (a, b)}
    fx, fy = (dedup.read_fingerprint(prints[z.uid].fingerprint) for z in (x, y))
    similarity = dedup.similarity(fx, fy) if fx.shingles and fy.shingles else 0.0
    conflict = not (fx.numbers <= fy.numbers or fy.numbers <= fx.numbers)
    hours = abs((y.published_at - x.published_at).total_seconds()) / 3600
    return ef.event_score(ef.inputs(ef.read(event[a]), ef.read(event[b]), similarity,
                                    conflict, hours))


def candidates() -> None:
    print("Candidates: every pair the shingles would link (similarity from "
          f"{dedup.THRESHOLD}, both of {dedup.MIN_TOKENS} tokens or more, within "
          f"{dedup.WINDOW.days} days), every feed item and post stored oldest first")
    corpus = {**td.labelled_items("near_duplicates"), **td.posts()}
    with tempfile.TemporaryDirectory() as tmp:
        articles, prints, ids, story, compared = _stored_in_order(corpus, Path(tmp) / "a.db")
    outcomes = ts.pair_outcomes(ts.pairs_above_the_threshold(articles, prints), ids, story,
                                compared)
    print(f"  {len(articles):,} articles, {sum(map(len, outcomes.values()))} pairs of distinct "
          "articles: " + ", ".join(f"{name} {len(pairs)}" for name, pairs in outcomes.items()))
    for x, y in outcomes["neither"]:
        print(f"    never compared: {x.title[:40]} | {y.title[:40]}")
    for part in (*FIT_PARTS, *HELD_OUT):
        items = td.labelled_items(part)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "a.db"
            articles, prints, ids, story, compared = _stored_in_order(items, path)
            first = _first_articles(items)
            counts: dict[str, int] = defaultdict(int)
            with SqliteArchive(path) as archive:
                for pair in td.truth(part).same:
                    x, y = sorted((first[u] for u in pair), key=lambda a: (a.published_at, a.uid))
                    a, b = ids[x.uid], ids[y.uid]
                    if story[a] == story[b] or x.outlet == y.outlet:
                        continue
                    if a in compared[b]:
                        counts["compared"] += 1
                        continue
                    counts["never a candidate"] += 1
                    p = _model_probability(archive._db, (a, x), (b, y), prints)
                    counts["never a candidate, model p >= threshold"] += p >= ef.EVENT_THRESHOLD
        print(f"  {part}: same-story pairs of other outlets missed: "
              + ", ".join(f"{name} {n}" for name, n in counts.items()))


# -- speed -------------------------------------------------------------------------------------

def _micros(function: Callable[[Article], object], articles: Sequence[Article]
            ) -> list[float]:
    out = []
    for article in articles:
        start = time.perf_counter()
        function(article)
        out.append((time.perf_counter() - start) * 1e6)
    return out


def generated(corpus: Sequence[Article], n: int) -> list[Article]:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    out = []
    for i in range(n):
        base = corpus[i % len(corpus)]
        text = base.body_text or base.digest
        if i % 3 == 0:
            sentences = re.split(r"(?<=[。！？.!?])", text)
            text = "".join(sentences[:-2] if len(sentences) > 2 else sentences)
        if i % 5 == 0:
            text = text.replace("，", "，据悉，", 1) if "，" in text else text + " (update)"
        out.append(base.evolve(uid=f"gen:{i}", file_id=f"gen{i}", url=f"https://gen.test/{i}",
                               published_at=start + timedelta(minutes=i), body_text=text,
                               digest=""))
    return out


def speed(args: argparse.Namespace) -> None:
    corpus = list({a.uid: a for a in td.labelled_items("near_duplicates").values()}.values())
    corpus += [a for _, a in td._finews()]
    for _ in range(2):  # warm up
        dedup.fingerprint(corpus[0])
    times = _micros(dedup.fingerprint, corpus)
    long_ones = [t for t, a in zip(times, corpus) if dedup.read_fingerprint(
        dedup.fingerprint(a)).tokens >= dedup.MAX_TOKENS]
    print(f"\nSpeed: fingerprint of {len(corpus)} corpus articles "
          f"(PERMUTATIONS={dedup.PERMUTATIONS}): mean {statistics.mean(times):.0f} µs, "
          f"median {statistics.median(times):.0f} µs; "
          f"{len(long_ones)} capped {dedup.MAX_TOKENS}-token leads: "
          f"median {statistics.median(long_ones):.0f} µs")
    if args.simhash:
        times = _micros(simhash, corpus)
        print(f"       SimHash of the same shingles: mean {statistics.mean(times):.0f} µs, "
              f"median {statistics.median(times):.0f} µs")
    for n in args.sizes:
        articles = generated(corpus, n)
        start = time.perf_counter()
        stories = dedup.cluster(articles)
        seconds = time.perf_counter() - start
        multi = sum(1 for g in dedup.story_groups(stories) if len(g) > 1)
        print(f"  cluster({n} generated articles): {seconds:.1f} s "
              f"({seconds / n * 1e6:.0f} µs/article), {len(set(stories.values()))} stories, "
              f"{multi} with more than one article")



def store_speed() -> None:
    """What stories cost the archive: the real feed items stored with and without them.

    Then with stories, given each article's fingerprint (``prints``) and its
    search tokens too (``indexed``), made beforehand as the importer's worker
    processes make them: what is left for the one process that writes.
    """
    articles = sorted({a.uid: a for a in td.labelled_items("near_duplicates").values()}.values(),
                      key=lambda a: (a.published_at, a.uid))
    prints = [Candidate.of(a) for a in articles]
    tokens = [segment.index_text(a.title, a.digest, a.body_text) for a in articles]
    scans = [scan_article(a) for a in articles]
    rows = [content_row(a) for a in articles]
    print(f"\nArchive: store_many of the {len(articles)} rss-days feed items, oldest first, "
          "500 per transaction, into a fresh archive")
    runs: list[tuple[str, Sequence[Migration], list[Candidate] | None,
                     list[IndexedText] | None, bool]]
    runs = [("search index, no stories (schema 5)", MIGRATIONS[:5], None, None, False),
            ("search index and stories", MIGRATIONS, None, None, False),
            ("the same, fingerprints given", MIGRATIONS, prints, None, False),
            ("the same, fingerprints and search tokens given", MIGRATIONS, prints, tokens, False),
            ("the same, and scans and column values given (all an importer's workers "
             "and a fetcher make)", MIGRATIONS, prints, tokens, True)]
    for name, migrations, given, indexed, more in runs:
        with tempfile.TemporaryDirectory() as tmp, \
                SqliteArchive(Path(tmp) / "a.db", migrations=migrations) as archive:
            start, cpu = time.perf_counter(), time.process_time()
            for first in range(0, len(articles), 500):
                part = slice(first, first + 500)
                archive.store_many(articles[part], indexed[part] if indexed else None,
                                   given[part] if given else None,
                                   scans[part] if more else None, rows[part] if more else None)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            print(f"  {name}: {len(articles) / seconds:,.0f} articles/s "
                  f"({seconds / len(articles) * 1e6:,.0f} µs/article, "
                  f"CPU {cpu / len(articles) * 1e6:,.0f} µs); "
                  f"{archive.count():,} stored, the rest merged into earlier copies")


# Company names and codes for the worst case: 20 x 20 x 12 names, one code each.
_NAME_1, _NAME_2, _NAME_3 = "华中东西南北金银海天新宏泰恒安盛鑫瑞达通", "科电光能药材信通智联源创兴达丰盈康泰远华", "股份集团科技控股实业电子"


def flood_articles(n: int) -> list[Article]:
    """n look-alikes in one window: one results template, published by n companies.

    Only the company, its code and the figures change; headlines share their
    figure with one article in 40 (those may be one story, until it is full).
    """
    start = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
    step = timedelta(days=2) / n
    out = []
    for i in range(n):
        name = (_NAME_1[i % 20] + _NAME_2[i // 20 % 20] + _NAME_3[i // 400 % 12]
                + ("" if i < 4800 else str(i // 4800)))
        growth = 5 + i % 40
        title = f"{name}：前三季度净利润同比增长{growth}%"
        body = (f"{name}（{600000 + i}）晚间公告，公司预计2025年前三季度实现营业收入{10 + i % 97}.{i % 10}"
                f"亿元，同比增长{3 + i % 29}%；归属于上市公司股东的净利润{1 + i % 13}.{i % 7}亿元，同比增长"
                f"{growth}%。公司表示，业绩增长主要系主营产品销量增加、降本增效措施持续推进所致。报告期内，"
                f"公司研发投入{i % 5 + 1}.{i % 9}亿元，经营活动产生的现金流量净额同比改善。")
        out.append(Article(uid=f"flood:{i}", outlet="公告速递", outlet_slug="gonggao", title=title,
                           published_at=start + step * i, file_id=f"flood{i}",
                           body_html=f"<p>{body}</p>", body_text=body,
                           url=f"https://flood.test/{i}"))
    return out


def flood(n: int) -> None:
    """The worst case for placement: every article resembles every other one."""
    articles = flood_articles(n)
    part = max(n // 10, 1)
    print(f"\nWorst case: store_many of {n:,} look-alikes (one template, other company and "
          "figures) published within two days, 500 per transaction; µs per article, wall "
          "clock and CPU time of this process (less noisy on a shared machine)")
    with tempfile.TemporaryDirectory() as tmp, SqliteArchive(Path(tmp) / "a.db") as archive:
        for first in range(0, n, part):
            last = min(first + part, n)
            start, cpu = time.perf_counter(), time.process_time()
            for batch in range(first, last, 500):
                archive.store_many(articles[batch:min(batch + 500, last)])
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            print(f"  articles {first + 1:>6,} to {last:>6,}: "
                  f"{seconds / (last - first) * 1e6:>7,.0f} µs/article, "
                  f"CPU {cpu / (last - first) * 1e6:>7,.0f} µs")
        members = archive.stories().members.values()
        stories = {refs[0].id: len(refs) for refs in members}
        print(f"  {archive.count():,} stored; {len(stories):,} stories of more than one article, "
              f"the largest of {max(stories.values(), default=1)}")


SECTIONS = ("quality", "events", "securities", "candidates", "speed", "store", "flood")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="run only these parts (default: all)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--flood", type=int, default=20000,
                        help="look-alike articles stored in the worst case")
    parser.add_argument("--no-simhash", dest="simhash", action="store_false")
    parser.add_argument("--no-quality", dest="quality", action="store_false")
    args = parser.parse_args()
    if args.quality and "quality" in args.only:
        quality(args)
    if "events" in args.only:
        event_quality()
    if "securities" in args.only:
        securities_quality()
    if "candidates" in args.only:
        candidates()
    if "speed" in args.only:
        speed(args)
    if "store" in args.only:
        store_speed()
    if "flood" in args.only:
        flood(args.flood)


if __name__ == "__main__":
    main()

"""One event told in other words (caixun.events): the model, its fast path, the archive's counts."""

from __future__ import annotations

import dataclasses
import pickle
import struct
from collections import Counter
from pathlib import Path

import pytest

from test_dedup import labelled_items, unit
from test_stories import _story_rows
from caixun import dedup, events
from caixun.archive import SqliteArchive, open_archive
from caixun.archive import stories as story_index
from caixun.archive.base import Archive
from caixun.dedup import Candidate
from caixun.model import Article


def _corpus() -> list[Article]:
    """The fit part's distinct items (a link seen on several days: its first), oldest first."""
    items = labelled_items("stories")
    first: dict[str, Article] = {}
    for item in sorted(items, key=lambda i: (items[i].published_at, i)):
        first.setdefault(unit(item), items[item])
    return list(first.values())


def _weighed(articles: list[Article]) -> list[Candidate]:
    """Candidates weighed as the reference clusterer weighs them, oldest first."""
    counts = dedup.TermCounts()
    out = []
    for article in articles:
        candidate = counts.weigh(Candidate.of(article))
        counts.add(candidate)
        out.append(candidate)
    return out


def _title(articles: list[Article], start: str) -> Article:
    [found] = [a for a in articles if a.title.startswith(start)]
    return found


def test_extraction_is_pure_and_survives_a_worker() -> None:
    article = _corpus()[10]
    terms = events.extract(article.title, article.body_text or article.digest, article.outlet)
    assert terms == events.extract(article.title, article.body_text or article.digest,
                                   article.outlet)
    assert pickle.loads(pickle.dumps(Candidate.of(article))).terms == terms
    ids = terms.ids()
    assert len(set(ids)) == len(ids)  # each term once
    words = ids[:len(terms.word_weights) // 8]
    assert words and ids[len(words):]  # words and figures: 6.3565, 2018 ...
    assert words == sorted(words, reverse=True)
    # The headline's words are those of the headline alone.
    headline = events.extract(article.title, "", article.outlet)
    title = [words[n] for n in struct.unpack(f"<{len(terms.title_at) // 2}H", terms.title_at)]
    assert title and title == sorted(title) and set(title) <= set(headline.ids())
    # Broken text (a lone surrogate from a bad feed) is no error.
    events.extract("标题\ud800", "正文\udfff内容", "x")


def test_figures_are_read_as_the_text_states_them() -> None:
    assert events.figures("沪指收报3,882.78点，涨1.69%，成交1.2万亿元，北向资金40亿") >= {
        "3882.78点", "1.69%", "1.2万", "40亿"}
    assert "12" not in events.figures("12家公司")  # a count of two digits is no figure


def test_the_fast_rater_is_the_model() -> None:
    """Rater (arrays, all candidates at once) = inputs + event_score (one pair at a time),
    for reports of other outlets (the only ones the archive rates)."""
    candidates = _weighed(_corpus()[:300])
    checked = reaching = 0
    for n, new in enumerate(candidates):
        outlet = events.outlet_of(new.event)
        others = [c for c in candidates[max(0, n - 40):n] if events.outlet_of(c.event) != outlet]
        if not others:
            continue
        hours = [abs((new.published_at - c.published_at).total_seconds()) / 3600 for c in others]
        rater = events.Rater(new.event)
        partial = rater.partial([c.event for c in others], hours)
        bounds = rater.bound(partial)
        mine = dedup.read_fingerprint(new.fingerprint)
        for other, value, bound, apart in zip(others, partial.tolist(), bounds.tolist(), hours):
            theirs = dedup.read_fingerprint(other.fingerprint)
            j = dedup.jaccard(mine, theirs)
            similarity = dedup._similarity(mine, theirs, j) if j else 0.0
            conflict = not (mine.numbers <= theirs.numbers or theirs.numbers <= mine.numbers)
            expected = events.event_score(events.inputs(
                events.read(new.event), events.read(other.event), similarity, conflict, apart))
            assert rater.probability(value, similarity, conflict) == pytest.approx(expected,
                                                                                   abs=1e-9)
            # The bound never drops a pair that reaches the threshold.
            if expected >= events.EVENT_THRESHOLD:
                reaching += 1
                assert bound >= events.logit(events.EVENT_THRESHOLD)
            checked += 1
    assert checked > 3000 and reaching > 0


def test_weights_are_a_unit_vector_and_keys_are_rare_terms() -> None:
    candidates = _weighed(_corpus())
    for candidate in candidates[100:]:
        features = events.read(candidate.event)
        assert sum(w * w for w in features.words.values()) == pytest.approx(1.0, abs=1e-5) \
            or not features.words
        assert len(features.words) <= events.TOP_TERMS
        keys = events.key_terms(candidate.event)
        assert len(keys) <= events.KEY_TERMS
        rare = {k for k, r in (features.figures | features.title).items()
                if r >= events.KEY_RARITY}
        assert set(keys) <= set(features.words) | set(features.figures)
        assert {k for k in keys if k in features.figures} <= rare


def test_a_report_in_other_words_by_another_outlet_joins_the_story(archive: SqliteArchive
                                                                    ) -> None:
    """Two reports of one US session's close by two outlets, few words in common."""
    articles = _corpus()
    first = _title(articles, "美股三大指数集体收涨 英特尔涨超7%")
    second = _title(articles, "全球市场：道指、标普刷新纪录高位")
    assert first.outlet != second.outlet
    assert dedup.similarity(dedup.fingerprint(first), dedup.fingerprint(second)) < \
        dedup.THRESHOLD  # the shingles alone would keep them apart
    archive.store_many(articles)
    rows = _story_rows(archive)
    assert rows[first.uid][0] == rows[second.uid][0]


def test_a_copy_joins_its_original_before_the_event_model_is_asked() -> None:
    """A report the model links to another outlet's (probability 0.99) joins the
    story of a stored near copy of it instead (similarity 0.58): a copy first."""
    articles = _corpus()
    first = _title(articles, "美股三大指数集体收涨 英特尔涨超7%")
    second = _title(articles, "全球市场：道指、标普刷新纪录高位")
    weighed = dict(zip([a.uid for a in articles], _weighed(articles)))
    other = dataclasses.replace(weighed[first.uid], story_id="event")
    new = weighed[second.uid]
    copy = second.evolve(uid="x:copy", url="https://example.com/copy", share_url="",
                         body_text=second.body_text[300:])  # a reprint, its lead cut
    stored_copy = Candidate.of(copy, story_id="copy")
    assert dedup.THRESHOLD <= dedup.similarity(stored_copy.fingerprint, new.fingerprint) < 0.9
    assert not set(stored_copy.exact_keys) & set(new.exact_keys)  # not the same article
    clusterer = dedup.Clusterer()
    assert clusterer.assign(new, [other]) == "event"
    assert clusterer.assign(new, [stored_copy]) == "copy"
    assert clusterer.assign(new, [other, stored_copy]) == "copy"


def test_two_reports_of_one_outlet_are_joined_as_copies_only(tmp_path: Path) -> None:
    """The same pair under one outlet: no event link (only shingles join within one)."""
    articles = _corpus()
    first = _title(articles, "美股三大指数集体收涨 英特尔涨超7%")
    second = _title(articles, "全球市场：道指、标普刷新纪录高位")
    renamed = [a.evolve(outlet=first.outlet, outlet_slug=first.outlet_slug) if a is second else a
               for a in articles]
    with open_archive(tmp_path / "a.db") as archive:
        archive.store_many(renamed)
        rows = _story_rows(archive)
    assert rows[first.uid][0] != rows[second.uid][0]


def _recount(archive: Archive) -> Counter[int]:
    """The articles holding each term, counted from scratch."""
    counts: Counter[int] = Counter()
    placed = {r[0] for r in archive._db.execute(
        "SELECT a.uid FROM articles a JOIN dedup_prints p ON p.article_id = a.id")}
    for article in archive.iter_articles():
        if article.uid not in placed:
            continue
        terms = Candidate.of(article).terms
        assert terms is not None
        counts.update(terms.ids())
    counts[story_index.TOTAL_TERM] = len(placed)
    return counts


def test_term_counts_are_the_articles_holding_each_term(archive: SqliteArchive,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    articles = _corpus()[:240]
    archive.store_many(articles[:100])
    # A batch that fails half-way counts nothing.
    calls = 0
    place = story_index.place

    def failing(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 30:
            raise RuntimeError("disk full")
        return place(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("caixun.archive.stories.place", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        archive.store_many(articles[100:200])
    monkeypatch.setattr("caixun.archive.stories.place", place)
    archive.store_many(articles[100:])
    stored = dict(archive._db.execute("SELECT term, docs FROM story_terms").fetchall())
    assert stored == dict(_recount(archive))


def test_reclustering_resumes_where_it_stopped(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    articles = _corpus()[:300]
    path = tmp_path / "a.db"
    with open_archive(path) as archive:
        archive.store_many(articles)
        archive._db.execute("UPDATE search_meta SET value = '4' WHERE key = 'stories_version'")
    monkeypatch.setattr("caixun.archive.base.RECLUSTER_BATCH", 50)
    place = story_index.place
    calls = 0

    def failing(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 120:  # in the third batch
            raise RuntimeError("killed")
        return place(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("caixun.archive.stories.place", failing)
    with pytest.raises(RuntimeError, match="killed"):
        open_archive(path)
    calls = -(10 ** 9)  # no more failures; count what the second opening places
    with SqliteArchive(path) as archive:
        resumed = calls + 10 ** 9
        rows = _story_rows(archive)
        version = archive._db.execute(
            "SELECT value FROM search_meta WHERE key = 'stories_version'").fetchone()[0]
        stored = dict(archive._db.execute("SELECT term, docs FROM story_terms").fetchall())
        recount = dict(_recount(archive))
        stored_articles = list(archive.iter_articles())
    assert resumed == len(articles) - 100  # two batches were done and kept
    assert version == story_index.VERSION
    assert stored == recount
    assert {u: s for u, (s, _) in rows.items()} == dedup.cluster(stored_articles)

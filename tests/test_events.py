"""One event told in other words (caixun.events): the model, its fast path, the archive's counts."""

from __future__ import annotations

import dataclasses
import pickle
import struct
from collections import Counter
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from test_dedup import labelled_items, unit
from test_stories import _story_rows
from caixun import dedup, events
from caixun.archive import SqliteArchive, open_archive
from caixun.archive import stories as story_index
from caixun.archive.base import Archive
from caixun.dedup import Candidate
from caixun.model import Article


def _corpus(part: str = "stories") -> list[Article]:
    """A labelled part's distinct items (a link seen on several days: its first),
    oldest first; by default the part the event model is fitted on."""
    items = labelled_items(part)
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


@given(st.lists(st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1), max_size=60)
       | st.lists(st.integers(min_value=-3, max_value=3), max_size=60))
def test_sorted_unique_is_numpys_unique(values: list[int]) -> None:
    ids = np.array(values, dtype=np.int64)
    assert events.sorted_unique(ids).tolist() == np.unique(ids).tolist()


def _assign(new: Article, stored: Article, story: str = "stored") -> str | None:
    """The story a new article joins, the stored one its only candidate
    (both weighed by the counts of the fit part, as an archive holding it would)."""
    counts = dedup.TermCounts()
    for candidate in _weighed(_corpus()):
        counts.add(candidate)
    old = dataclasses.replace(counts.weigh(Candidate.of(stored)), story_id=story)
    counts.add(old)
    return dedup.Clusterer().assign(counts.weigh(Candidate.of(new)), [old])


def test_one_outlets_daily_column_is_not_one_story_with_yesterdays() -> None:
    """Two real "全球市场" closing reports of one outlet, 23 hours apart: they share
    the column's template (similarity above the threshold) but not the session."""
    articles = _corpus("near_duplicates")
    monday = _title(articles, "全球市场：美股三大指数收跌 纳指跌超1% 半导体")
    tuesday = _title(articles, "全球市场：美股三大指数集体收跌 纳指、标普跌超1%")
    similarity = dedup.similarity(dedup.fingerprint(monday), dedup.fingerprint(tuesday))
    assert dedup.THRESHOLD <= similarity < dedup.COPY_SIMILARITY
    assert monday.outlet == tuesday.outlet
    assert tuesday.published_at - monday.published_at > dedup.SAME_OUTLET_APART
    assert _assign(tuesday, monday) is None
    # The rule, not the texts, keeps them apart: an hour apart, or by two outlets, one story.
    hour_later = tuesday.evolve(published_at=monday.published_at + timedelta(hours=1))
    assert _assign(hour_later, monday) == "stored"
    other_outlet = tuesday.evolve(outlet="另一家", outlet_slug="another")
    assert _assign(other_outlet, monday) == "stored"
    # A day-old report of the outlet republished (a near copy) joins its story.
    reprint = monday.evolve(uid="x:reprint", url="https://example.com/reprint", share_url="",
                            published_at=tuesday.published_at,
                            body_text=monday.body_text[:-200])
    assert _assign(reprint, monday) == "stored"


def test_a_digest_joins_no_report_it_rounds_up_only_its_copies() -> None:
    """A real evening digest (氪星晚报｜A；B；C…) and a report made of one of its
    items: similar enough to be one story by shingles, but a digest is a story
    of its own, whichever comes first; a copy of the digest still joins it."""
    digest = _title(_corpus("near_duplicates"), "氪星晚报｜爱立信")
    assert events.is_digest_title(digest.title)
    item = digest.title.split("｜", 1)[1].split("；")[1]
    report = digest.evolve(uid="x:report", url="https://example.com/report", share_url="",
                           outlet="中新网", outlet_slug="chinanews", title=item,
                           published_at=digest.published_at + timedelta(minutes=30),
                           body_text=digest.body_text[200:700])
    assert not events.is_digest_title(report.title)
    similarity = dedup.similarity(dedup.fingerprint(digest), dedup.fingerprint(report))
    assert dedup.THRESHOLD <= similarity < dedup.COPY_SIMILARITY
    assert _assign(report, digest) is None
    assert _assign(digest.evolve(published_at=report.published_at + timedelta(minutes=30)),
                   report) is None
    # The same texts under a headline that is no digest's: one story.
    assert _assign(report, digest.evolve(title=item + "等")) == "stored"
    copy = digest.evolve(uid="x:copy", url="https://example.com/copy", share_url="",
                         outlet="中新网", outlet_slug="chinanews",
                         body_text=digest.body_text[:-100])
    assert _assign(copy, digest) == "stored"


def test_a_round_up_of_announcements_is_a_digest_and_a_newspapers_name_is_not() -> None:
    """Every real evening round-up of listed companies' announcements
    (…重大事项公告最新快递) is a digest; the real headlines on the courier trade
    (快递业务量) are not, nor a headline naming a newspaper whose name ends as a
    column's does (联合早报, 新民晚报)."""
    titles = {a.title for a in _corpus("near_duplicates")}
    round_ups = {t for t in titles if "公告最新快递" in t}
    couriers = {t for t in titles if "快递" in t} - round_ups
    assert len(round_ups) >= 10 and len(couriers) >= 2
    assert all(map(events.is_digest_title, round_ups))
    assert not any(map(events.is_digest_title, couriers))
    for paper in ("联合早报", "新民晚报", "北京晚报", "羊城晚报", "扬子晚报", "钱江晚报", "齐鲁晚报",
                  "新快报", "今晚报"):
        assert not events.is_digest_title(f"{paper}：央行宣布降准0.5个百分点"), paper
        assert not events.is_digest_title(f"据{paper}报道，央行宣布降准"), paper
    for column in ("财经晚报：", "港股早报｜", "午报：", "公司新闻精选："):
        assert events.is_digest_title(f"{column}央行宣布降准0.5个百分点"), column


def test_two_digests_are_copies_only_under_one_headline() -> None:
    """One outlet's two real evening round-ups of a day (…公告最新快递 and
    …利好消息一览) open with the same announcements, as near copies would; each
    is a round-up of its own. A copy of either, under its headline, joins it."""
    articles = _corpus("near_duplicates")
    announcements = {a.title.split("晚间")[0]: a for a in articles if "公告最新快递" in a.title}
    pairs = [(announcements[day], a) for a in articles if "利好消息一览" in a.title
             for day in (a.title.split("晚间")[0],) if day in announcements]
    close = [(a, b) for a, b in pairs if dedup.similarity(dedup.fingerprint(a), dedup.fingerprint(b))
             >= dedup.COPY_SIMILARITY]
    assert len(close) >= 2
    for first, second in close:
        later = second.evolve(published_at=first.published_at + timedelta(hours=1))
        assert _assign(later, first) is None
        assert _assign(first.evolve(published_at=later.published_at + timedelta(hours=1)),
                       later) is None
        copy = first.evolve(uid="x:copy", url="https://example.com/copy", share_url="",
                            outlet="中新网", outlet_slug="chinanews",
                            published_at=later.published_at, body_text=first.body_text[:-100])
        assert _assign(copy, first) == "stored"


def test_the_event_model_links_no_report_to_a_digest() -> None:
    """A real report (肯德基…涨价) that the model links, in other words, to the evening
    digest that rounded it up five hours before, when that digest is taken for a
    plain report; as a digest it stays alone."""
    articles = _corpus("near_duplicates")
    digest = _title(articles, "氪星晚报｜爱立信")
    report = _title(articles, "肯德基回应部分外送产品涨价")
    assert dedup.similarity(dedup.fingerprint(digest), dedup.fingerprint(report)) < 0.1
    counts = dedup.TermCounts()
    for candidate in _weighed(_corpus()):
        counts.add(candidate)

    def stored(digest_flag: bool) -> Candidate:
        made = Candidate.of(digest, story_id="digest")
        assert made.terms is not None and made.terms.digest
        return counts.weigh(dataclasses.replace(
            made, terms=dataclasses.replace(made.terms, digest=digest_flag)))

    new = Candidate.of(report)
    assert dedup.Clusterer().assign(counts.weigh(new), [stored(False)]) == "digest"
    assert dedup.Clusterer().assign(counts.weigh(new), [stored(True)]) is None


@pytest.mark.parametrize("title, chinese", [("氪星晚报｜甲公司发布新品；乙公司裁员；丙公司上市", True),
                                            ("Asia Morning Briefing: markets wait for the Fed",
                                             False)])
def test_the_digest_flag_is_stored_beside_the_language(title: str, chinese: bool) -> None:
    """The header byte that said "Chinese" keeps that bit and adds the digest's;
    reading either never mistakes one for the other."""
    terms = events.extract(title, "正文" * 40 if chinese else "text " * 40, "outlet")
    assert terms.digest and terms.chinese == chinese
    data = events.weigh(terms, [0] * len(terms.ids()), 10)
    assert events.is_digest(data)
    assert events.read(data).chinese == chinese
    assert events.Rater(data).chinese == chinese
    plain = events.weigh(dataclasses.replace(terms, digest=False), [0] * len(terms.ids()), 10)
    assert not events.is_digest(plain) and events.read(plain).chinese == chinese
    assert plain[2:] == data[2:]  # the rest of the features as before


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


class _PlacementKilled:
    """``stories.place`` patched to fail at its ``at``-th call, as a killed process
    would stop; ``calls`` counts them (``at=0``: never fails)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: int) -> None:
        self.at, self.calls, self._place = at, 0, story_index.place
        monkeypatch.setattr("caixun.archive.stories.place", self)

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        if self.calls == self.at:
            raise RuntimeError("killed")
        return self._place(*args, **kwargs)  # type: ignore[arg-type]


def test_term_counts_are_the_articles_holding_each_term(archive: SqliteArchive,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    articles = _corpus()[:240]
    archive.store_many(articles[:100])
    # A batch that fails half-way counts nothing.
    killed = _PlacementKilled(monkeypatch, 30)
    with pytest.raises(RuntimeError, match="killed"):
        archive.store_many(articles[100:200])
    killed.at = 0
    archive.store_many(articles[100:])
    stored = dict(archive._db.execute("SELECT term, docs FROM story_terms").fetchall())
    assert stored == dict(_recount(archive))


def _stories_of_an_older_version(path: Path, articles: int) -> int:
    """An archive of the first ``articles`` of the corpus whose stories an older
    caixun made (its opening re-clusters them); how many articles it holds."""
    with open_archive(path) as archive:
        archive.store_many(_corpus()[:articles])
        archive._db.execute("UPDATE search_meta SET value = '4' WHERE key = 'stories_version'")
        return archive.count()


def test_a_long_reclustering_is_announced_before_it_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.db"
    count = _stories_of_an_older_version(path, 30)
    monkeypatch.setattr("caixun.archive.base.REINDEX_NOTICE_FROM", 5)
    told: list[str] = []
    with SqliteArchive(path, notice=told.append):
        pass
    assert len(told) == 2 and all(str(path) in line for line in told)
    assert f"placing the {count:,} articles in stories again" in told[0]
    assert f"{count:,} articles placed in stories in " in told[1]  # and when it is done
    with SqliteArchive(path, notice=told.append):
        pass  # placed once: nothing more to say
    assert len(told) == 2


def test_a_long_reclustering_tells_how_far_it_is_and_a_resumed_one_what_is_left(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.db"
    count = _stories_of_an_older_version(path, 200)
    monkeypatch.setattr("caixun.archive.base.REINDEX_NOTICE_FROM", 5)
    monkeypatch.setattr("caixun.archive.base.RECLUSTER_BATCH", 50)
    clock = iter(range(0, 10 ** 6, 40))  # 40 s a batch: a progress notice every other one
    monkeypatch.setattr("caixun.archive.base._Progress.clock",
                        staticmethod(lambda: float(next(clock))))
    killed = _PlacementKilled(monkeypatch, 180)  # in the fourth batch
    told: list[str] = []
    with pytest.raises(RuntimeError, match="killed"):
        SqliteArchive(path, notice=told.append)
    assert f"placing the {count:,} articles in stories again" in told[0]
    # After two batches (80 s): 100 placed at 50 per 40 s; the rest at that rate.
    left = count - 100
    assert told[1:] == [f"{path}: 100 of {count:,} articles placed in stories "
                        f"({100 / count:.0%}), about {left * 80 / 100:.0f} s left"]
    killed.at = 0
    told.clear()
    with SqliteArchive(path, notice=told.append):
        pass
    assert f"going on with placing the {count - 150:,} articles left of {count:,} " \
        "in stories again" in told[0]
    # 50 left at 40 s a batch: the clock read at the start and after the one batch.
    assert told[1:] == [f"{path}: {count - 150:,} articles placed in stories in 40 s"]


def test_reclustering_resumes_where_it_stopped(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    articles = _corpus()[:300]
    path = tmp_path / "a.db"
    with open_archive(path) as archive:
        archive.store_many(articles)
        archive._db.execute("UPDATE search_meta SET value = '4' WHERE key = 'stories_version'")
    monkeypatch.setattr("caixun.archive.base.RECLUSTER_BATCH", 50)
    killed = _PlacementKilled(monkeypatch, 120)  # in the third batch
    with pytest.raises(RuntimeError, match="killed"):
        open_archive(path)
    killed.at, killed.calls = 0, 0  # no more failures; count what the second opening places
    with SqliteArchive(path) as archive:
        resumed = killed.calls
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

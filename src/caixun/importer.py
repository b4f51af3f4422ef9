"""Import Jekyll post files into the archive: read → parse → store, in batches.

One bad file never stops an import: it is reported and skipped, and every
other file is stored. Batches are stored in one transaction each, so an
interrupted import leaves whole articles only.
"""

from __future__ import annotations

import itertools
import multiprocessing
import sqlite3
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

from caixun.archive import SqliteArchive, StoreResult
from caixun.errors import ArchiveError, PostFormatError
from caixun.model import Article
from caixun.dedup import Candidate
from caixun.segment import IndexedText, index_text
from caixun.sources.jekyll import ParsedPost, iter_post_paths, read_post

__all__ = ["FileOutcome", "ImportReport", "import_posts"]

BATCH_SIZE = 1000


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """What happened to one file: stored (with its result) or skipped."""

    path: Path
    result: StoreResult | None = None
    repairs: tuple[str, ...] = ()
    problem: str | None = None  # why it was skipped


@dataclass(slots=True)
class ImportReport:
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: FileOutcome) -> None:
        self.counts["files"] += 1
        if outcome.problem is not None:
            self.counts["skipped"] += 1
            return
        assert outcome.result is not None
        self.counts[outcome.result.value] += 1
        if outcome.repairs:
            self.counts["repaired"] += 1

    def summary(self) -> str:
        c = self.counts
        return (f"{c['files']} files: {c['new']} new, {c['updated']} updated, "
                f"{c['unchanged']} unchanged, {c['repaired']} repaired, "
                f"{c['skipped']} skipped")


OutcomeCallback = Callable[[FileOutcome], None]


# Below this many files a worker pool costs more than it saves.
PARALLEL_FROM = 1000


@dataclass(frozen=True, slots=True)
class _Read:
    path: Path
    parsed: ParsedPost | None = None
    indexed: IndexedText | None = None
    problem: str | None = None
    print_: Candidate | None = None  # the fingerprint, when made in a worker


def _read_in_worker(path: Path) -> _Read:
    """:func:`_read`, and the fingerprint too: what a worker can do for the archive."""
    read = _read(path)
    if read.parsed is None:
        return read
    return replace(read, print_=Candidate.of(read.parsed.article))


def _read(path: Path) -> _Read:
    """Read, parse and segment one post: the CPU-bound part, run in workers."""
    try:
        parsed = read_post(path)
    except PostFormatError as exc:
        return _Read(path, problem=exc.problem)
    article = parsed.article
    return _Read(path, parsed, index_text(article.title, article.digest, article.body_text))


def _read_all(paths: Iterable[Path], jobs: int) -> Iterator[_Read]:
    """Every post under ``paths``, in order; parsed on ``jobs`` cores when there are many."""
    walk = iter_post_paths(paths)
    head = list(itertools.islice(walk, PARALLEL_FROM))
    if jobs <= 1 or len(head) < PARALLEL_FROM:
        yield from map(_read, itertools.chain(head, walk))
        return
    # Two windows of files in flight: the workers read the next window while
    # this process stores the last one, and what waits in memory stays bounded
    # (a pool left to itself reads ahead of the writes until memory runs out).
    window = PARALLEL_FROM * 2
    files = itertools.chain(head, walk)
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        pending = pool.imap(_read_in_worker, list(itertools.islice(files, window)),
                            chunksize=64)
        while True:
            chunk = list(itertools.islice(files, window))
            following = pool.imap(_read_in_worker, chunk, chunksize=64) if chunk else None
            yield from pending
            if following is None:
                return
            pending = following


def _store_batch(archive: SqliteArchive, batch: list[_Read]) -> list[StoreResult]:
    """Store a batch in one transaction: all of it, or (full disk…) none of it."""
    try:
        with archive.transaction():
            prints = [r.print_ for r in batch if r.print_]
            results = archive.store_many([r.parsed.article for r in batch if r.parsed],
                                         [r.indexed for r in batch if r.indexed],
                                         prints if len(prints) == len(batch) else None)
            for read in batch:
                assert read.parsed is not None
                if read.parsed.slug_alias:
                    archive.add_outlet_alias(read.parsed.slug_alias,
                                             read.parsed.article.outlet_slug)
    except sqlite3.Error as exc:  # store_many maps its own errors; the aliases do not
        raise ArchiveError(f"{archive.path}: cannot store posts: {exc}") from exc
    return results


def import_posts(
    paths: Iterable[Path],
    archive: SqliteArchive,
    on_outcome: OutcomeCallback | None = None,
    batch_size: int = BATCH_SIZE,
    jobs: int | None = None,
) -> ImportReport:
    """Import every post under ``paths``; ``on_outcome`` hears about each file.

    ``jobs`` > 1 parses and segments large imports in that many worker
    processes; whether that is faster depends on the machine (the archive
    writes stay in this process), so one process is the default.
    """
    report = ImportReport()
    batch: list[_Read] = []

    def emit(outcome: FileOutcome) -> None:
        report.add(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    def flush() -> None:
        results = _store_batch(archive, batch)
        for read, result in zip(batch, results):
            assert read.parsed is not None
            emit(FileOutcome(read.path, result, read.parsed.repairs))
        batch.clear()

    for read in _read_all(paths, jobs or 1):
        if read.problem is not None:
            emit(FileOutcome(read.path, problem=read.problem))
            continue
        batch.append(read)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return report

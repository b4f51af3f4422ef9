"""Import Jekyll post files into the archive: read → parse → store, in batches.

One bad file never stops an import: it is reported and skipped, and every
other file is stored. Batches are stored in one transaction each, so an
interrupted import leaves whole articles only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from caixun.archive import SqliteArchive, StoreResult
from caixun.errors import PostFormatError
from caixun.model import Article
from caixun.sources.jekyll import iter_post_paths, read_post

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


def import_posts(
    paths: Iterable[Path],
    archive: SqliteArchive,
    on_outcome: OutcomeCallback | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import every post under ``paths``; ``on_outcome`` hears about each file."""
    report = ImportReport()
    batch: list[tuple[Path, Article, tuple[str, ...], str | None]] = []

    def emit(outcome: FileOutcome) -> None:
        report.add(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    def flush() -> None:
        with archive.transaction():
            results = archive.store_many(article for _, article, _, _ in batch)
            for _, article, _, alias in batch:
                if alias:
                    archive.add_outlet_alias(alias, article.outlet_slug)
        for (path, _, repairs, _), result in zip(batch, results):
            emit(FileOutcome(path, result, repairs))
        batch.clear()

    for path in iter_post_paths(paths):
        try:
            parsed = read_post(path)
        except PostFormatError as exc:
            emit(FileOutcome(path, problem=exc.problem))
            continue
        batch.append((path, parsed.article, parsed.repairs, parsed.slug_alias))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return report

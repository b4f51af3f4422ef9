"""The archive: the one place that stores and queries articles."""

from __future__ import annotations

from pathlib import Path

from caixun.archive.sqlite import (
    ArticleRef,
    ArticleVersion,
    BuildState,
    Change,
    SearchHit,
    SourceHealth,
    SqliteArchive,
    Stories,
    StoreResult,
)

__all__ = ["ArticleRef", "ArticleVersion", "BuildState", "Change", "SearchHit", "SourceHealth",
           "SqliteArchive", "Stories", "StoreResult", "open_archive"]


def open_archive(path: str | Path) -> SqliteArchive:
    """Open (creating and upgrading as needed) the archive at ``path``."""
    return SqliteArchive(path)

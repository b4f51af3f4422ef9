"""The archive: the one place that stores and queries articles."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

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


def open_archive(path: str | Path, *, read_only: bool = False,
                 notice: Callable[[str], None] | None = None) -> SqliteArchive:
    """Open (creating and upgrading as needed) the archive at ``path``.

    ``read_only`` for commands that only read (search, export, the search
    API): the file must exist (else an ``ArchiveError`` saying how to make
    one), it is opened so that nothing can be written — not even on a
    read-only disk — and nothing is created, migrated or re-indexed. An
    archive whose schema or search index an older caixun made is refused
    (the index only by ``search``) until a writing command upgrades it.
    ``notice`` is told before an upgrade step that takes a while.
    """
    return SqliteArchive(path, read_only=read_only, notice=notice)

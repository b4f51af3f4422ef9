"""The archive: the one place that stores and queries articles.

``base.py`` holds what every archive does; ``sqlite.py`` (the default, one
file) and ``postgres.py`` (a server, for several machines) only what differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from caixun.archive.base import (
    Archive,
    ArticleRef,
    ArticleVersion,
    BuildState,
    Change,
    SearchHit,
    SourceHealth,
    Stories,
    StoreResult,
)
from caixun.archive.sqlite import SqliteArchive

__all__ = ["Archive", "ArticleRef", "ArticleVersion", "BuildState", "Change", "SearchHit",
           "SourceHealth", "SqliteArchive", "Stories", "StoreResult", "is_server_url",
           "open_archive"]


def is_server_url(location: str | Path) -> bool:
    """Whether an archive location names a PostgreSQL database rather than an SQLite file."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def open_archive(location: str | Path, *, read_only: bool = False,
                 notice: Callable[[str], None] | None = None) -> Archive:
    """Open (creating and upgrading as needed) the archive at ``location``.

    ``location`` is an SQLite file's path, or a ``postgresql://`` URL.
    ``read_only`` for commands that only read (search, export, the search
    API): the archive must exist (else an ``ArchiveError`` saying how to make
    one), it is opened so that nothing can be written — not even on a
    read-only disk — and nothing is created, migrated or re-indexed. An
    archive whose schema or search index an older caixun made is refused
    (the index only by ``search``) until a writing command upgrades it.
    ``notice`` is told before an upgrade step that takes a while.
    """
    if is_server_url(location):
        from caixun.archive.postgres import PostgresArchive

        return PostgresArchive(str(location), read_only=read_only, notice=notice)
    return SqliteArchive(location, read_only=read_only, notice=notice)

"""Copy an archive into another, table by table: SQLite to PostgreSQL or back.

Rows keep their ids, so stories, aliases, versions, tags, the change log and
the build state arrive as they were, and a site built from either archive is
the same. Only the search index is not copied: the two databases index
differently, and the destination builds its own from the articles.
"""

from __future__ import annotations

import itertools
from typing import Callable

from caixun.archive.base import Archive
from caixun.errors import ArchiveError

__all__ = ["TABLES", "copy_archive", "rows_to_copy"]

# Parents before children (foreign keys), each with the column that orders it.
TABLES: tuple[tuple[str, str], ...] = (
    ("outlets", "slug"), ("outlet_aliases", "alias"), ("articles", "id"),
    ("article_versions", "article_id, version"), ("changes", "seq"),
    ("article_aliases", "uid"), ("dedup_prints", "article_id"),
    ("dedup_keys", "key, published_ts, article_id"), ("story_terms", "term"),
    ("static_terms", "article_id"),
    ("securities", "code"), ("security_names", "rowid"),
    ("article_securities", "code, article_id"), ("stock_changes", "change_seq, code"),
    ("watches", "name"), ("outbox", "id"), ("source_health", "name"),
    ("source_items", "uid"), ("site_builds", "out_dir"), ("site_articles", "out_dir, uid"),
    ("import_files", "path"), ("search_meta", "key"),
)
BATCH = 1000
# search_meta rows that describe the index, which the destination makes itself.
_OWN_META = ("segment_version",)


def rows_to_copy(source: Archive) -> int:
    """How many rows :func:`copy_archive` copies (for a progress bar)."""
    return sum(int(source._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
               for table, _ in TABLES)


def copy_archive(source: Archive, target: Archive,
                 progress: Callable[[int], None] | None = None) -> int:
    """Copy every row of ``source`` into the empty archive ``target``; returns the rows.

    ``progress`` is told of each batch copied (its number of rows). All or
    nothing: one transaction on the target.
    """
    if source.schema_version != target.schema_version:
        raise ArchiveError(f"{source.path} has schema version {source.schema_version} and "
                           f"{target.path} {target.schema_version}: open both with this caixun "
                           "(a command that writes to each upgrades it)")
    if target.count():
        raise ArchiveError(f"{target.path} already holds {target.count():,} articles; "
                           "copy into an empty archive")
    copied = 0
    with source.snapshot(), target.transaction():
        target._clear_copied_tables([name for name, _ in TABLES])
        for table, order in TABLES:
            columns = target._copied_columns(table)
            where = (" WHERE key NOT IN (" + ", ".join(f"'{k}'" for k in _OWN_META) + ")"
                     if table == "search_meta" else "")
            rows = source._stream(f"SELECT {', '.join(columns)} FROM {table}{where} "
                                  f"ORDER BY {order}", (), BATCH)
            while batch := list(itertools.islice(rows, BATCH)):
                target._insert_copied(table, columns, batch)
                copied += len(batch)
                if progress is not None:
                    progress(len(batch))
        target._after_copy()
        target.reindex()
    return copied

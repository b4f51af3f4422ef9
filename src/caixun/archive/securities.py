"""Securities in the archive: names learned, articles tagged, stock pages to rebuild.

Tables (migration 12): ``securities`` (one row per canonical code: its current
name, market, the other listing of the same company), ``security_names``
(every spelling ever learned, with where and when; its rowid — in PostgreSQL
a column of that name — is the order learned, which the re-tag follows),
``article_securities`` (code, article, and since migration 17 the article's
publication time, kept equal to the article's: a stock page's position and its
newest articles are one range of the index on code and time) and
``stock_changes`` (which stock pages a change in the ``changes`` log touches,
for incremental builds).

:mod:`caixun.securities` decides what an article is about; this module stores
it. Every function runs inside the caller's transaction, so an article and its
tags are written together or not at all.
"""

from __future__ import annotations

from caixun.archive.connection import Connection, insert_ignoring
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Sequence

from caixun.model import Article
from caixun.segment import indexed_body
from caixun.securities import Scanned, SecurityName, Tagger, names_in_links, scan

__all__ = ["SecurityRow", "article_codes", "learn", "learned_from", "scan_article", "list_securities",
           "load_tagger", "set_tags", "tagger_names"]


@dataclass(frozen=True, slots=True)
class SecurityRow:
    """One security as ``caixun securities`` lists it."""

    code: str
    name: str
    market: str
    names: tuple[str, ...]  # every spelling learned, the current name first
    articles: int
    pair: str | None = None
    source: str = ""
    learned_at: str = ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def learned_from(article: Article) -> list[SecurityName]:
    """The names an article's own markup and fields teach: quote links, native names."""
    html = article.body_raw or article.body_html
    names = [SecurityName(code, text, f"link:{article.outlet_slug}")
             for code, text in (names_in_links(html) if "<a" in html else ())
             if 2 <= len(text) <= 24]
    for value, name in article.extra.get("stock_names", ()) or ():
        from caixun.securities import from_native

        code = from_native(str(value))
        if code and isinstance(name, str) and 2 <= len(name.strip()) <= 24:
            names.append(SecurityName(code, name.strip(), article.outlet_slug))
    return names


def scan_article(article: Article, learned: Sequence[SecurityName] | None = None,
                 normalized: str | None = None) -> Scanned:
    """:func:`caixun.securities.scan` of an article: its text, links and native field
    (``normalized``: its text as ``segment.index_text_normalized`` gave it)."""
    links = learned_from(article) if learned is None else learned
    native = [str(v) for v in article.extra.get("stocks", ()) or ()]
    return scan(article_text(article), {n.code for n in links}, native, normalized)


def article_text(article: Article) -> str:
    """What an article is tagged from: the text its search index holds (title, digest
    unless the body holds it, body)."""
    return f"{article.title}\n{indexed_body(article.digest, article.body_text)}"


def learn(db: Connection, names: Iterable[SecurityName],
          renamed: set[str] | None = None) -> list[SecurityName]:
    """Store the names; returns those that were new spellings (in order).

    A security's current name is the last short name a list or a source gave
    it (a link's text never renames); the names it had stay as former names and
    keep tagging (the text of older articles uses them). The codes whose current
    name changed are added to ``renamed``: their pages show the name.
    """
    now, new = _now(), []
    for entry in names:
        if not entry.name.strip():
            continue
        market = entry.code.rsplit(".", 1)[-1]
        if renamed is not None and entry.kind == "short" and not entry.source.startswith("link:"):
            row = db.execute("SELECT name FROM securities WHERE code = ?",
                             (entry.code,)).fetchone()
            if row is not None and row[0] != entry.name:
                renamed.add(entry.code)
        db.execute(
            "INSERT INTO securities (code, name, market, source, learned_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (code) DO UPDATE SET "
            "name = CASE WHEN excluded.source NOT LIKE 'link:%' AND ? = 'short' "
            "THEN excluded.name ELSE securities.name END, "
            "updated_at = CASE WHEN excluded.source NOT LIKE 'link:%' AND ? = 'short' "
            "AND securities.name <> excluded.name THEN excluded.updated_at "
            "ELSE securities.updated_at END",
            (entry.code, entry.name, market, entry.source, now, now, entry.kind, entry.kind))
        cursor = db.execute(insert_ignoring(
            db, "INSERT INTO security_names (code, name, kind, source, learned_at) "
            "VALUES (?, ?, ?, ?, ?)"), (entry.code, entry.name, entry.kind, entry.source, now))
        if cursor.rowcount:
            new.append(entry)
    return new


def set_pair(db: Connection, code: str, other: str) -> None:
    """Link two listings of one company (A and H shares)."""
    db.execute("UPDATE securities SET pair = ? WHERE code = ?", (other, code))
    db.execute("UPDATE securities SET pair = ? WHERE code = ?", (code, other))


def tagger_names(db: Connection) -> list[tuple[str, str]]:
    return db.execute("SELECT code, name FROM security_names ORDER BY rowid").fetchall()


def load_tagger(db: Connection) -> Tagger:
    return Tagger(tagger_names(db))


def article_codes(db: Connection, article_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    """The codes each article is tagged with (articles without tags are left out)."""
    found: dict[int, list[str]] = {}
    for start in range(0, len(article_ids), 500):
        part = list(article_ids[start:start + 500])
        for article_id, code in db.execute(
                "SELECT article_id, code FROM article_securities WHERE article_id IN ("
                + ",".join("?" * len(part)) + ") ORDER BY article_id, code", part):
            found.setdefault(article_id, []).append(code)
    return {k: tuple(v) for k, v in found.items()}


def set_tags(db: Connection, article_id: int, codes: Sequence[str],
             change_seq: int, published_ts: int, old_ts: int | None = None,
             new: bool = False, timed: bool = True) -> bool:
    """Make the article's tags ``codes``; log the stock pages that change. True if tags did.

    Every page of a stock the article is or was on changes (it lists the
    article's title at its time); ``old_ts`` is its time before this change
    when it moved, where it leaves a gap. The tags keep the article's time
    (``timed``: False for an archive from before migration 17).
    """
    before = set() if new else {row[0] for row in db.execute(
        "SELECT code FROM article_securities WHERE article_id = ?", (article_id,))}
    after = set(codes)
    added, removed = after - before, before - after
    if added:
        columns, ts = ("code, article_id, published_ts", (published_ts,)) if timed \
            else ("code, article_id", ())
        db.executemany(f"INSERT INTO article_securities ({columns}) "
                       f"VALUES ({', '.join('?' * (2 + len(ts)))})",
                       [(code, article_id, *ts) for code in sorted(added)])
    if removed:
        db.executemany("DELETE FROM article_securities WHERE code = ? AND article_id = ?",
                       [(code, article_id) for code in sorted(removed)])
    if timed and before - removed and old_ts is not None and old_ts != published_ts:
        db.execute("UPDATE article_securities SET published_ts = ? WHERE article_id = ?",
                   (published_ts, article_id))
    touched = [(code, published_ts) for code in sorted(after | removed)]
    if old_ts is not None and old_ts != published_ts:
        touched += [(code, old_ts) for code in sorted(before)]
    if change_seq and touched:
        db.executemany("INSERT INTO stock_changes (change_seq, code, published_ts) "
                       "VALUES (?, ?, ?)", [(change_seq, c, ts) for c, ts in touched])
    return bool(added or removed)


def forget(db: Connection, article_id: int, change_seq: int, published_ts: int) -> None:
    """A deleted article leaves its stock pages."""
    set_tags(db, article_id, (), change_seq, published_ts)


def list_securities(db: Connection, counts: bool = True) -> list[SecurityRow]:
    """Every security with its spellings and article count, most articles first
    (without ``counts``, each count is 0 and nothing reads the tags: by code)."""
    counts_of = dict(db.execute(
        "SELECT code, count(*) FROM article_securities GROUP BY code").fetchall()
    ) if counts else {}
    spellings: dict[str, list[str]] = {}
    for code, name in db.execute("SELECT code, name FROM security_names ORDER BY rowid"):
        spellings.setdefault(code, []).append(name)
    rows = []
    for code, name, market, pair, source, learned_at in db.execute(
            "SELECT code, name, market, pair, source, learned_at FROM securities"):
        names = [name] + [n for n in spellings.get(code, []) if n != name]
        rows.append(SecurityRow(code, name, market, tuple(names), counts_of.get(code, 0),
                                pair, source, learned_at))
    return sorted(rows, key=lambda r: (-r.articles, r.code))

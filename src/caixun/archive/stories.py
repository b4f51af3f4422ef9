"""Stories in the archive: fingerprints, identity and LSH keys, story ids.

Every stored article gets a row in ``dedup_prints`` (its MinHash fingerprint,
exact keys and weighed event features) and rows in ``dedup_keys`` (each key as
a 64-bit integer with the publication time, so near-duplicate and event keys
are looked up inside the time window with one index range per key).
``story_terms`` counts the articles holding each event term (and, under
:data:`TOTAL_TERM`, the articles counted): the rarity :mod:`caixun.events`
weighs a new article's terms by. ``articles.story_id`` is the id of the
story's first stored article; ``articles.duplicate_of`` is set when an article
is an exact duplicate (same URL, same content) of an earlier one, and names
that one. :mod:`caixun.dedup` decides; this module only stores and looks up.

All functions run inside the caller's transaction, so an article, its search
tokens and its story are written together or not at all.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from caixun.archive.connection import Connection, is_sqlite
import struct
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Iterable, NamedTuple, Sequence

from caixun import events
from caixun.dedup import MAX_STORY, WINDOW, Candidate, Clusterer, lsh_keys

__all__ = ["TOTAL_TERM", "VERSION", "Lookup", "Placement", "Recent", "look_up", "clear", "forget",
           "key_id", "key_ids", "keyed", "members", "others", "place", "replace_print", "weigh",
           "TermCache"]

VERSION = "7"  # bump when fingerprints, keys or limits change: the archive then re-clusters
TOTAL_TERM = 0  # the row of story_terms that counts the articles counted
_WINDOW_SECONDS = int(WINDOW.total_seconds())
_CLUSTERER = Clusterer()
# What one placement reads, at most, however many articles share its keys (a
# template published by a thousand companies, a flash repeated every hour):
# KEY_ROWS index rows per key on average. When the keys have no more, every row
# is read, as always; when they have more, KEY_ROWS of each key's rows (for an
# LSH key the newest in the window; for an exact key the earliest ever and the
# earliest in the window). Of the LSH candidates, the MAX_CANDIDATES sharing the
# most keys are compared.
KEY_ROWS = 16
MAX_CANDIDATES = 64


def key_id(key: str) -> int:
    """A key as a signed 64-bit integer (SQLite's INTEGER)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(),
                          "little", signed=True)


class Placement(NamedTuple):
    """Where a new article went."""

    story_id: int
    duplicate_of: int | None  # the original, for an exact copy
    others: list[int]  # the story's other articles: their pages change


def _ts(value: datetime) -> int:
    return int(value.timestamp())


@functools.lru_cache(maxsize=64)
def _exact_sql(keys: int) -> str:
    first = ("SELECT article_id FROM (SELECT article_id FROM dedup_keys WHERE key = ? "
             "ORDER BY published_ts, article_id LIMIT ?) AS k")
    in_window = ("SELECT article_id FROM (SELECT article_id FROM dedup_keys WHERE key = ? "
                 "AND published_ts >= ? ORDER BY published_ts, article_id LIMIT ?) AS k")
    return " UNION ".join([first, in_window] * keys)


@functools.lru_cache(maxsize=64)
def _band_sql(keys: int) -> str:
    newest = ("SELECT article_id FROM (SELECT article_id FROM dedup_keys WHERE key = ? AND "
              "published_ts BETWEEN ? AND ? ORDER BY published_ts DESC, article_id DESC LIMIT ?) "
              "AS k")
    return " UNION ALL ".join([newest] * keys)


def _exact_ids(db: Connection, keys: list[int], ts: int) -> list[int]:
    cap = KEY_ROWS * len(keys)
    rows = db.execute("SELECT article_id FROM dedup_keys WHERE key IN ("
                      + ",".join("?" * len(keys)) + ") LIMIT ?", [*keys, cap + 1]).fetchall()
    if len(rows) > cap:
        params: list[int] = []
        for key in keys:
            params += (key, KEY_ROWS, key, ts - _WINDOW_SECONDS, KEY_ROWS)
        rows = db.execute(_exact_sql(len(keys)), params).fetchall()
    return [row[0] for row in rows]


def _band_ids(db: Connection, keys: list[int], ts: int) -> list[int]:
    """The MAX_CANDIDATES articles in the window sharing the most keys (those
    sharing as many: the newest), in no particular order."""
    cap, low, high = KEY_ROWS * len(keys), ts - _WINDOW_SECONDS, ts + _WINDOW_SECONDS
    rows = db.execute("SELECT article_id FROM dedup_keys WHERE key IN ("
                      + ",".join("?" * len(keys)) + ") AND published_ts BETWEEN ? AND ? LIMIT ?",
                      [*keys, low, high, cap + 1]).fetchall()
    if len(rows) > cap:
        params: list[int] = []
        for key in keys:
            params += (key, low, high, KEY_ROWS)
        rows = db.execute(_band_sql(len(keys)), params).fetchall()
    shared = Counter([article_id for article_id, in rows])
    if len(shared) <= MAX_CANDIDATES:  # every one of them: their order does not matter
        return list(shared)
    return sorted(shared, key=lambda i: (-shared[i], -i))[:MAX_CANDIDATES]


def _candidates(db: Connection, new: Candidate, exact: list[int], bands: list[int],
                article_id: int, recent: Recent | None, with_events: bool) -> list[Candidate]:
    """The stored articles sharing a key with the new one, by id."""
    ts = _ts(new.published_at)
    ids: set[int] = set()
    if exact:
        ids.update(_exact_ids(db, exact, ts))
    if bands:
        ids.update(_band_ids(db, bands, ts))
    ids.discard(article_id)
    known = recent if recent is not None else {}
    missing = [i for i in ids if i not in known]
    if len(known) + len(missing) > RECENT_LIMIT:
        known.clear()
        missing = list(ids)
    if missing:
        marks = ",".join("?" * len(missing))
        rows = db.execute(
            "SELECT a.id, coalesce(a.story_id, a.id), a.published_ts, p.fingerprint, "
            f"p.exact_keys, {'p.event' if with_events else 'NULL'} FROM articles a "
            f"JOIN dedup_prints p ON p.article_id = a.id WHERE a.id IN ({marks})",
            missing).fetchall()
        for ref, story, published, print_, keys, event in rows:
            known[ref] = _candidate(story, published, bytes(print_), keys, ref,
                                    bytes(event) if event else b"")
    return [known[i] for i in sorted(ids) if i in known]


def _candidate(story: int, published_ts: int, print_: bytes, keys: str, ref: int,
               event: bytes) -> Candidate:
    """A stored article as the clusterer sees it (as read from its rows)."""
    return Candidate(str(story), datetime.fromtimestamp(published_ts, timezone.utc), print_,
                     tuple(keys.split("\n")) if keys else (), ref, event=event)


def _write_print(db: Connection, article_id: int, new: Candidate,
                 keys: Sequence[int], with_events: bool) -> None:
    if with_events:
        db.execute("INSERT INTO dedup_prints (article_id, fingerprint, exact_keys, event) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT (article_id) DO UPDATE SET "
                   "fingerprint = excluded.fingerprint, exact_keys = excluded.exact_keys, "
                   "event = excluded.event",
                   (article_id, new.fingerprint, "\n".join(new.exact_keys), new.event))
    else:  # an archive from before event features (schema 15 or older)
        db.execute("INSERT INTO dedup_prints (article_id, fingerprint, exact_keys) "
                   "VALUES (?, ?, ?) ON CONFLICT (article_id) DO UPDATE SET "
                   "fingerprint = excluded.fingerprint, exact_keys = excluded.exact_keys",
                   (article_id, new.fingerprint, "\n".join(new.exact_keys)))
    if not keys:
        return
    ts = _ts(new.published_at)
    # One statement for all the rows (or a few): the same rows as one execution
    # each, in the same order, in a third less time.
    for start in range(0, len(keys), _KEY_ROWS_PER_INSERT):
        part = keys[start:start + _KEY_ROWS_PER_INSERT]
        params: list[int] = []
        for key in part:
            params += (key, ts, article_id)
        db.execute(_insert_keys_sql(len(part), is_sqlite(db)), params)


_KEY_ROWS_PER_INSERT = 250  # 750 parameters: below every SQLite's limit (999 before 3.32)
_TERM_ROWS_PER_UPSERT = 400  # 800 parameters
_TERMS_PER_READ = 500  # SQLite: terms per IN list (PostgreSQL takes them all as one array)


def _parts(db: Connection, terms: list[int]) -> list[list[int]]:
    if not terms:
        return []
    if not is_sqlite(db):
        return [terms]
    return [terms[start:start + _TERMS_PER_READ] for start in range(0, len(terms),
                                                                     _TERMS_PER_READ)]


@functools.lru_cache(maxsize=64)
def _read_terms_sql(count: int) -> str:
    """The counts of ``count`` terms (SQLite), or of an array of them (0: PostgreSQL)."""
    where = f"IN ({','.join('?' * count)})" if count else "= ANY(?::bigint[])"
    return f"SELECT term, docs FROM story_terms WHERE term {where}"


@functools.lru_cache(maxsize=64)
def _upsert_terms_sql(rows: int) -> str:
    return ("INSERT INTO story_terms (term, docs) VALUES " + ",".join(["(?, ?)"] * rows)
            + " ON CONFLICT (term) DO UPDATE SET docs = story_terms.docs + excluded.docs")


@functools.lru_cache(maxsize=128)
def _insert_keys_sql(rows: int, sqlite: bool) -> str:
    insert = ("INSERT INTO dedup_keys (key, published_ts, article_id) VALUES "
              + ",".join(["(?, ?, ?)"] * rows))
    # SQLite's own form: its ON CONFLICT takes three times as long here.
    return insert.replace("INSERT", "INSERT OR IGNORE", 1) if sqlite else \
        f"{insert} ON CONFLICT DO NOTHING"


def _key_ids(new: Candidate) -> tuple[list[int], list[int]]:
    """The ids of the new article's exact keys and of its LSH keys."""
    return _exact_key_ids(new), _lsh_key_ids(new)


def _exact_key_ids(new: Candidate) -> list[int]:
    return list(new.key_ids[0]) if new.key_ids is not None else key_ids(new.exact_keys)


def _lsh_key_ids(new: Candidate) -> list[int]:
    return (list(new.key_ids[1]) if new.key_ids is not None
            else key_ids(lsh_keys(new.fingerprint)))


def key_ids(keys: Sequence[str]) -> list[int]:
    """:func:`key_id` of each key (the digests unpacked at once)."""
    if not keys:
        return []
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(key.encode("utf-8"), digest_size=8).digest() for key in keys])
    return list(struct.unpack(f"<{len(keys)}q", digests))


# Event keys are term ids, told apart from the ids of other keys by this mask
# (dedup.event_keys names them "e:<term id>" for the in-memory reference).
_EVENT_KEYS = 0x5EC0_7E22_E4E1_7000


def event_key_ids(event: bytes) -> list[int]:
    """The ids of an article's event keys (:func:`caixun.events.key_terms`)."""
    return [term ^ _EVENT_KEYS for term in events.key_terms(event)] if event else []


def keyed(new: Candidate) -> Candidate:
    """The candidate with its key ids computed: work a worker process can take
    off the process that writes (a fifth of a placement's CPU time)."""
    exact, bands = _key_ids(new)
    return dataclasses.replace(new, key_ids=(tuple(exact), tuple(bands)))


# Candidates read or placed in the current write transaction, by article id: the
# next placements of a batch compare with the same recent articles, which then
# need no reading and decoding again. Only valid while the transaction lasts
# (another process may write between two) and until a story or a fingerprint
# changes otherwise than by place(): the archive clears it then.
Recent = dict[int, Candidate]
RECENT_LIMIT = 20_000


class Lookup(NamedTuple):
    """What the index knows about a new article, before it is stored."""

    candidate: Candidate  # with its event features weighed, once complete
    keys: list[int]  # the ids of its exact keys, then (once complete) of its LSH and event keys
    found: list[Candidate]  # by id
    same: Candidate | None  # the stored article it is an exact copy of, if any
    with_events: bool = True  # the archive keeps event features (schema 16)
    complete: bool = True  # the candidates sharing an LSH or event key are found too

    def original(self) -> Candidate | None:
        """The stored article the new one is an exact copy of, if any."""
        return self.same


def look_up(db: Connection, new: Candidate, article_id: int = 0,
            recent: Recent | None = None, with_events: bool = True,
            terms: TermCache | None = None) -> Lookup:
    """The stored articles that may be the new one's story (exact, LSH and event keys).

    An exact copy's lookup stops at its exact keys: it is most often merged
    into the article it copies, and needs no more (a tenth of the real feed
    items are such copies); :func:`place` completes it otherwise.
    """
    exact = _exact_key_ids(new)
    found = _candidates(db, new, exact, [], article_id, recent, with_events)
    same = _CLUSTERER.exact_match(new, found)
    lookup = Lookup(new, exact, found, same, with_events, complete=False)
    return lookup if same is not None else _complete(db, lookup, article_id, recent, terms)


def _complete(db: Connection, lookup: Lookup, article_id: int, recent: Recent | None,
              terms: TermCache | None) -> Lookup:
    """The lookup with the candidates sharing an LSH or event key added (its event
    features weighed first), as one lookup of all its keys would find them."""
    if lookup.complete:
        return lookup
    new, with_events = lookup.candidate, lookup.with_events
    bands = _lsh_key_ids(new)
    if with_events:
        new = weigh(db, new, terms)
        bands = bands + event_key_ids(new.event)
    known = {c.ref for c in lookup.found}
    found = sorted([*lookup.found, *(c for c in _candidates(db, new, [], bands, article_id,
                                                             recent, with_events)
                                     if c.ref not in known)], key=_ref)
    return Lookup(new, lookup.keys + bands, found, _CLUSTERER.exact_match(new, found),
                  with_events)


def _ref(candidate: Candidate) -> int:
    return candidate.ref


def weigh(db: Connection, new: Candidate, terms: TermCache | None = None) -> Candidate:
    """The candidate with its event features weighed by the archive's counts."""
    if new.terms is None:
        return new
    docs, total = (terms or TermCache()).read(db, new.terms)
    return dataclasses.replace(new, event=events.weigh(new.terms, docs, total))


class TermCache:
    """The counts of ``story_terms`` read or changed in the current write transaction.

    Writers take turns (SQLite's write lock, PostgreSQL's advisory lock), so
    no other process changes them meanwhile: each term is read once per
    transaction (:meth:`prefetch` reads a batch's at once), and what the
    transaction added is written once, by :meth:`flush` before the commit (a
    term in many articles of a batch is one row written, not one per
    article). The archive clears it when a transaction begins, so what a
    rolled back one added is never written.

    The counts are arrays sorted by term: an article's hundred-odd terms are
    found, read and counted in a few array operations, not a dictionary
    operation each (they were a tenth of what storing an article cost).
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        # Arrays from the first read on: a transaction that reads no counts (an
        # incremental build's) imports no numpy.
        self.terms: Any = None  # sorted
        self.docs: Any = None  # the counts now
        self.docs_read: Any = None  # the counts as read (or last written)
        self.total: int | None = None  # the articles counted (TOTAL_TERM), now
        self.total_read = 0
        self._last: tuple[bytes, Any] | None = None  # an article's terms and where they are

    def prefetch(self, db: Connection, articles: Iterable[events.EventTerms]) -> None:
        """Read the counts of every term of these articles (those not read yet)."""
        np = _numpy()
        self._know(db, events.sorted_unique(np.frombuffer(b"".join(a.every for a in articles),
                                                           dtype="<i8")))

    def read(self, db: Connection, article: events.EventTerms) -> tuple[Any, int]:
        """The number of articles holding each of an article's terms (0 for a term
        none holds), in the order of ``article.every``, and the number counted."""
        at = self._where(db, article)
        assert self.total is not None  # read with the terms
        return self.docs[at], self.total

    def add(self, db: Connection, new: Candidate) -> None:
        """One more article (the new one) holds each of its terms."""
        if new.terms is None:
            return
        at = self._where(db, new.terms)
        self.docs[at] += 1  # an article's terms are distinct: each position once
        assert self.total is not None
        self.total += 1

    def flush(self, db: Connection) -> None:
        """Write what was added (before the transaction commits): in statements of
        many rows on SQLite, in one statement of two arrays on PostgreSQL."""
        if self.total is None:
            return  # nothing read, nothing added
        np = _numpy()
        changed = np.flatnonzero(self.docs != self.docs_read)
        added = self.total - self.total_read
        if not len(changed) and not added:
            return
        terms = [TOTAL_TERM, *self.terms[changed].tolist()]
        counts = [added, *(self.docs[changed] - self.docs_read[changed]).tolist()]
        if is_sqlite(db):
            for start in range(0, len(terms), _TERM_ROWS_PER_UPSERT):
                part = slice(start, start + _TERM_ROWS_PER_UPSERT)
                db.execute(_upsert_terms_sql(len(terms[part])),
                           [v for row in zip(terms[part], counts[part]) for v in row])
        else:
            db.execute("INSERT INTO story_terms (term, docs) SELECT * FROM "
                       "unnest(?::bigint[], ?::bigint[]) ON CONFLICT (term) DO UPDATE "
                       "SET docs = story_terms.docs + excluded.docs", (terms, counts))
        self.docs_read = self.docs.copy()
        self.total_read = self.total

    def _where(self, db: Connection, article: events.EventTerms) -> Any:
        """Where an article's terms are in the arrays (read first if need be)."""
        if self._last is not None and self._last[0] is article.every:
            return self._last[1]
        np = _numpy()
        ids = article.array()
        if self.total is None:
            self._know(db, events.sorted_unique(ids))
        at = np.searchsorted(self.terms, ids)
        if len(ids) and not (len(self.terms) and (
                self.terms[np.minimum(at, len(self.terms) - 1)] == ids).all()):
            self._know(db, events.sorted_unique(ids))
            at = np.searchsorted(self.terms, ids)
        self._last = (article.every, at)
        return at

    def _know(self, db: Connection, ids: Any) -> None:
        """Read the counts of those of ``ids`` (sorted, distinct) not read yet."""
        np = _numpy()
        if self.total is None:
            row = db.execute("SELECT docs FROM story_terms WHERE term = ?",
                             (TOTAL_TERM,)).fetchone()
            self.total = self.total_read = int(row[0]) if row else 0
            self.terms, self.docs, self.docs_read = (np.empty(0, dtype=np.int64)
                                                     for _ in range(3))
        ids = ids[ids != TOTAL_TERM]
        if len(self.terms):
            ids = ids[~np.isin(ids, self.terms, assume_unique=True)]
        if not len(ids):
            return
        missing = ids.tolist()
        found: dict[int, int] = {}
        for part in _parts(db, missing):
            found.update(db.execute(_read_terms_sql(len(part) if is_sqlite(db) else 0),
                                    part if is_sqlite(db) else [part]).fetchall())
        counts = np.array([found.get(term, 0) for term in missing], dtype=np.int64)
        terms = np.concatenate((self.terms, ids))
        order = np.argsort(terms, kind="stable")
        self.terms = terms[order]
        self.docs = np.concatenate((self.docs, counts))[order]
        self.docs_read = np.concatenate((self.docs_read, counts))[order]
        self._last = None


@functools.cache
def _numpy() -> Any:
    import numpy

    return numpy


def place(db: Connection, article_id: int, new: Candidate | Lookup,
          recent: Recent | None = None, with_events: bool = True,
          terms: TermCache | None = None) -> Placement:
    """Give a newly stored article its story (and, for an exact copy, its original).

    Its terms are counted in ``terms`` (written by its flush); without one, at once.
    """
    lookup = _complete(db, new if isinstance(new, Lookup) else
                       look_up(db, new, article_id, recent, with_events, terms),
                       article_id, recent, terms)
    new, keys, found, same, with_events, _ = lookup
    duplicate_of = _original(db, same.ref) if same is not None else None
    # The story it joins among the candidates whose stories are not full: a
    # part of all the candidates. What the clusterer chooses among all of them
    # it chooses among the open ones too, if it is one of them (its choice is
    # the first best, or the first exact copy); if it chooses nothing among
    # all, nothing among the open ones either. So the candidates' stories are
    # only counted when its choice is full. (No exact copy among all the
    # candidates: none among the open ones either.)
    exact = same is not None
    chosen = _CLUSTERER.assign(new, found, exact=exact)
    if chosen is not None and _full_stories(db, {int(chosen)}):
        full = _full_stories(db, {int(c.story_id) for c in found})
        open_ = [c for c in found if int(c.story_id) not in full]
        chosen = _CLUSTERER.assign(new, open_, exact=exact)
    story = int(chosen) if chosen is not None else article_id
    db.execute("UPDATE articles SET story_id = ?, duplicate_of = ? WHERE id = ?",
               (story, duplicate_of, article_id))
    _write_print(db, article_id, new, keys, with_events)
    if with_events:
        counts = terms if terms is not None else TermCache()
        counts.add(db, new)
        if terms is None:
            counts.flush(db)
    if recent is not None:
        recent[article_id] = _candidate(story, _ts(new.published_at), new.fingerprint,
                                        "\n".join(new.exact_keys), article_id, new.event)
    others = [row[0] for row in db.execute(
        "SELECT id FROM articles WHERE story_id = ? AND id <> ?",
        (story, article_id))] if story != article_id else []
    return Placement(story, duplicate_of, others)


def _full_stories(db: Connection, story_ids: set[int]) -> set[int]:
    """The stories among ``story_ids`` that have MAX_STORY articles already."""
    if not story_ids:
        return set()
    marks = ",".join("?" * len(story_ids))
    return {row[0] for row in db.execute(
        f"SELECT story_id FROM articles WHERE story_id IN ({marks}) GROUP BY story_id "
        "HAVING count(*) >= ?", [*story_ids, MAX_STORY])}


def _original(db: Connection, article_id: int) -> int:
    row = db.execute("SELECT duplicate_of FROM articles WHERE id = ?", (article_id,)).fetchone()
    return int(row[0]) if row and row[0] is not None else article_id


def replace_print(db: Connection, article_id: int, new: Candidate,
                  with_events: bool = True, terms: TermCache | None = None) -> None:
    """An article's text changed: new fingerprint and keys; it keeps its story.

    Its new terms are weighed by the counts as they are; the counts, which
    hold its old terms, stay (a count is a rarity, not an inventory).
    """
    db.execute("DELETE FROM dedup_keys WHERE article_id = ?", (article_id,))
    exact, bands = _key_ids(new)
    if with_events:
        new = weigh(db, new, terms)
        bands = bands + event_key_ids(new.event)
    _write_print(db, article_id, new, exact + bands, with_events)


def forget(db: Connection, article_id: int) -> list[int]:
    """Before an article is deleted: unlink it; returns the other members of its story.

    Its exact copies now duplicate the earliest of them instead.
    """
    row = db.execute("SELECT story_id FROM articles WHERE id = ?", (article_id,)).fetchone()
    db.execute("DELETE FROM dedup_keys WHERE article_id = ?", (article_id,))
    copies = [r[0] for r in db.execute(
        "SELECT id FROM articles WHERE duplicate_of = ? ORDER BY id", (article_id,))]
    if copies:
        db.execute("UPDATE articles SET duplicate_of = NULL WHERE id = ?", (copies[0],))
        db.executemany("UPDATE articles SET duplicate_of = ? WHERE id = ?",
                       [(copies[0], other) for other in copies[1:]])
    if row is None or row[0] is None:
        return []
    others = [r[0] for r in db.execute(
        "SELECT id FROM articles WHERE story_id = ? AND id <> ? ORDER BY id", (row[0], article_id))]
    if others and row[0] == article_id:  # the story is named after its first article
        db.execute("UPDATE articles SET story_id = ? WHERE story_id = ?", (others[0], article_id))
    return others


def others(db: Connection, article_id: int) -> list[int]:
    """The other articles of an article's story."""
    return [r[0] for r in db.execute(
        "SELECT b.id FROM articles a JOIN articles b ON b.story_id = a.story_id "
        "WHERE a.id = ? AND b.id <> a.id", (article_id,))]


def clear(db: Connection, with_events: bool = True) -> None:
    """Forget every story (before :func:`place` is run again on every article)."""
    db.execute("DELETE FROM dedup_keys")
    db.execute("DELETE FROM dedup_prints")
    if with_events:
        db.execute("DELETE FROM story_terms")
    db.execute("UPDATE articles SET story_id = NULL, duplicate_of = NULL "
               "WHERE story_id IS NOT NULL OR duplicate_of IS NOT NULL")


def members(db: Connection, story_ids: Iterable[int]) -> dict[int, list[int]]:
    """The article ids of each story, oldest publication first."""
    wanted = sorted(set(story_ids))
    out: dict[int, list[int]] = {}
    for start in range(0, len(wanted), 500):
        part = wanted[start:start + 500]
        marks = ",".join("?" * len(part))
        for story, article_id in db.execute(
                f"SELECT story_id, id FROM articles WHERE story_id IN ({marks}) "
                "ORDER BY published_ts, id", part):
            out.setdefault(story, []).append(article_id)
    return out

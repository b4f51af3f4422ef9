"""Watch lists in the archive: the watches known, matching at write time, the outbox.

``watches`` records each watch by name with its definition and ``after_id``:
the last article id when it was added, so "stored after the watch was added"
is ``id > after_id``. A watch whose definition changes is a new watch (its
``after_id`` moves). When a new article is stored, every watch that notifies is
checked against it in the same transaction and a match is written to
``outbox``: a crash after the commit loses no notification, a crash before it
loses the article too (and the next fetch brings both). An article is matched
once, when it is first stored; ``UNIQUE (watch, uid)`` keeps one notification
per watch and article whatever happens.
"""

from __future__ import annotations

import json
from caixun.archive.connection import Connection, insert_ignoring
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from caixun.watch import Notification, Watch, payload

__all__ = ["claim_pending", "finish", "match_new", "pending_count", "sync", "watch_condition"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def in_sync(db: Connection, watches: Sequence[Watch]) -> bool:
    """Whether the stored watches are ``watches`` already (a read: no write lock)."""
    known = {name: (definition, notifies) for name, definition, notifies in db.execute(
        "SELECT name, definition, notifies FROM watches")}
    return known == {w.name: (w.definition(), int(w.notifies)) for w in watches}


def sync(db: Connection, watches: Sequence[Watch]) -> list[str]:
    """Make the stored watches those configured; returns the names added or changed."""
    known = {name: (definition, notifies) for name, definition, notifies in db.execute(
        "SELECT name, definition, notifies FROM watches")}
    last_id = int(db.execute("SELECT coalesce(max(id), 0) FROM articles").fetchone()[0])
    added = []
    for watch in watches:
        definition = watch.definition()
        stored = known.pop(watch.name, None)
        if stored is not None and stored[0] == definition:
            if stored[1] != watch.notifies:
                db.execute("UPDATE watches SET notifies = ? WHERE name = ?",
                           (int(watch.notifies), watch.name))
            continue
        db.execute("INSERT INTO watches (name, definition, notifies, added_at, after_id) "
                   "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                   "definition = excluded.definition, notifies = excluded.notifies, "
                   "added_at = excluded.added_at, after_id = excluded.after_id",
                   (watch.name, definition, int(watch.notifies), _now(), last_id))
        added.append(watch.name)
    for name in known:  # no longer configured: forgotten, its pending notifications too
        db.execute("DELETE FROM watches WHERE name = ?", (name,))
        db.execute("DELETE FROM outbox WHERE watch = ? AND state = 'pending'", (name,))
    return added


def watch_condition(watch: Watch, match: Any, in_search: str) -> tuple[str, tuple[Any, ...]]:
    """The articles ``a`` a watch matches, as a WHERE condition (``match``: the
    query as the archive's ``in_search`` condition takes it, None without a query)."""
    either, values = [], list[Any]()
    if match is not None:
        either.append(in_search)
        values.append(match)
    if watch.stocks:
        either.append("a.id IN (SELECT article_id FROM article_securities WHERE code IN ("
                      + ",".join("?" * len(watch.stocks)) + "))")
        values += watch.stocks
    condition = "(" + " OR ".join(either) + ")"
    if watch.outlets:
        condition += " AND a.outlet_slug IN (" + ",".join("?" * len(watch.outlets)) + ")"
        values += watch.outlets
    return condition, tuple(values)


def match_new(db: Connection, article_id: int, matches: Iterable[tuple[Watch, Any]],
              row: dict[str, Any], in_search: str) -> int:
    """Queue a notification for each watch the new article ``article_id`` matches."""
    queued = 0
    for watch, match in matches:
        condition, values = watch_condition(watch, match, in_search)
        hit = db.execute(f"SELECT 1 FROM articles a WHERE a.id = ? AND {condition} AND "
                         "a.id > (SELECT after_id FROM watches WHERE name = ?)",
                         (article_id, *values, watch.name)).fetchone()
        if hit is None:
            continue
        body = payload(watch.name, row["uid"], row["title"], row["url"], row["outlet"],
                       row["published_at"], row["stocks"], row["snippet"])
        db.execute(insert_ignoring(db, "INSERT INTO outbox (watch, uid, payload, created_at) "
                                       "VALUES (?, ?, ?, ?)"),
                   (watch.name, row["uid"], json.dumps(body, ensure_ascii=False), _now()))
        queued += 1
    return queued


def claim_pending(db: Connection, now: float, limit: int) -> list[Notification]:
    """Pending notifications due at ``now``, oldest first."""
    return [Notification(i, watch, uid, json.loads(body), attempts)
            for i, watch, uid, body, attempts in db.execute(
                "SELECT id, watch, uid, payload, attempts FROM outbox WHERE state = 'pending' "
                "AND next_at <= ? ORDER BY id LIMIT ?", (now, limit))]


def finish(db: Connection, notification_id: int, delivered: bool, error: str,
           retry_at: float | None) -> None:
    """Record an attempt: delivered, pending again from ``retry_at``, or failed."""
    if delivered:
        db.execute("UPDATE outbox SET state = 'delivered', done_at = ?, attempts = attempts + 1,"
                   " last_error = NULL WHERE id = ?", (_now(), notification_id))
    elif retry_at is not None:
        db.execute("UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ? "
                   "WHERE id = ?", (retry_at, error, notification_id))
    else:
        db.execute("UPDATE outbox SET state = 'failed', done_at = ?, attempts = attempts + 1, "
                   "last_error = ? WHERE id = ?", (_now(), error, notification_id))


def pending_count(db: Connection) -> int:
    return int(db.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0])

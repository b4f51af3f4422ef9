"""Watch lists: what a watch is, what a notification says, and delivering them.

A watch (``[[watch]]`` in caixun.toml) names a query in the search syntax,
securities and outlets. An article **matches** when it satisfies the query or
names one of the securities (either, when both are given: "my holdings or
降准"), and comes from one of the outlets when outlets are given. A match is
an article *stored after the watch was added*: the archive writes its
notification to an outbox in the article's own transaction
(:mod:`caixun.archive.watches`), so a crash loses none; :class:`Deliverer`
sends what is pending, to a webhook (POST JSON with an ``Idempotency-Key``) or
a command, and marks it delivered only when the receiver took it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

if TYPE_CHECKING:
    from caixun.archive import Archive
    from caixun.archive.worker import ArchiveWorker

__all__ = ["DeliveryReport", "Delivery", "Deliverer", "Notification", "Watch", "WatchError",
           "backoff", "deliver_pending", "read_watches"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MAX_ATTEMPTS = 12  # about a day of retries with the backoff below


class WatchError(ValueError):
    """A watch that cannot work (no name, nothing to match, a bad target)."""


@dataclass(frozen=True, slots=True)
class Watch:
    """One ``[[watch]]``: what matches, and where its matches are sent."""

    name: str
    query: str = ""
    stocks: tuple[str, ...] = ()
    outlets: tuple[str, ...] = ()
    notify: str = ""  # a URL to POST each match to
    command: tuple[str, ...] = ()  # or a command to run for each ({title}, {url} …)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise WatchError(f"watch {self.name!r}: a name is 1–64 letters, digits, - or _ "
                             "(it names the feed /watch/<name>.xml)")
        if not (self.query.strip() or self.stocks):
            raise WatchError(f"watch {self.name!r}: give a query or stocks to match")
        if self.notify and not re.match(r"https?://", self.notify):
            raise WatchError(f"watch {self.name!r}: notify must be an http(s) URL")
        if self.notify and self.command:
            raise WatchError(f"watch {self.name!r}: give notify or command, not both")
        if self.name == "deliver":
            raise WatchError("a watch cannot be called 'deliver' (`caixun watch deliver` "
                             "delivers the pending notifications)")

    @property
    def notifies(self) -> bool:
        return bool(self.notify or self.command)

    def definition(self) -> str:
        """What decides the matches, as stored: a changed definition is a new watch."""
        return json.dumps({"query": self.query.strip(), "stocks": sorted(self.stocks),
                           "outlets": sorted(self.outlets)}, ensure_ascii=False,
                          sort_keys=True)


@dataclass(frozen=True, slots=True)
class Notification:
    """A pending notification, as the outbox keeps it."""

    id: int
    watch: str
    uid: str
    payload: Mapping[str, Any]
    attempts: int = 0

    @property
    def idempotency_key(self) -> str:
        return f"{self.watch}:{self.uid}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one attempt: delivered, to retry (when), or failed for good."""

    notification: Notification
    delivered: bool
    error: str = ""
    retry: bool = False


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: 5 s doubling, ≤ 1 h."""
    return float(min(5 * 2 ** max(0, attempts - 1), 3600))


@dataclass
class Deliverer:
    """Sends notifications to their watch's target; never raises for a receiver's fault.

    A webhook is retried on connection errors, timeouts and 5xx answers; any
    other 4xx answer is a failure reported and not retried (the receiver
    refuses it, and would again). A command is retried when it exits non-zero.
    """

    watches: Mapping[str, Watch]
    timeout: float = 10.0
    client: Any = None  # an httpx.AsyncClient (tests give one with their transport)
    log: Callable[[str], None] = field(default=lambda message: None)

    async def deliver(self, notification: Notification) -> Delivery:
        watch = self.watches.get(notification.watch)
        if watch is None or not watch.notifies:
            return Delivery(notification, False, "the watch no longer notifies")
        if watch.command:
            return await self._run(watch, notification)
        return await self._post(watch, notification)

    async def _post(self, watch: Watch, notification: Notification) -> Delivery:
        import httpx

        client = self.client or httpx.AsyncClient(timeout=self.timeout)
        try:
            response = await client.post(
                watch.notify, json=dict(notification.payload),
                headers={"Idempotency-Key": notification.idempotency_key,
                         "User-Agent": "caixun watch"}, timeout=self.timeout)
        except httpx.HTTPError as exc:
            return Delivery(notification, False, f"{watch.notify}: {type(exc).__name__}: "
                            f"{exc or 'no answer'}", retry=True)
        finally:
            if self.client is None:
                await client.aclose()
        if 200 <= response.status_code < 300:
            return Delivery(notification, True)
        error = f"{watch.notify}: HTTP {response.status_code}"
        return Delivery(notification, False, error, retry=response.status_code >= 500
                        or response.status_code in (408, 429))

    async def _run(self, watch: Watch, notification: Notification) -> Delivery:
        values = {k: (", ".join(v) if isinstance(v, list) else str(v))
                  for k, v in notification.payload.items()}
        try:
            argv = [part.format_map(_Missing(values)) for part in watch.command]
        except (ValueError, IndexError) as exc:
            return Delivery(notification, False, f"command: bad placeholder: {exc}")
        import asyncio  # here: importing the archive must not import asyncio

        try:
            done = await asyncio.to_thread(subprocess.run, argv, capture_output=True,
                                           timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Delivery(notification, False, f"command {argv[0]}: {exc}", retry=True)
        if done.returncode == 0:
            return Delivery(notification, True)
        tail = done.stderr.decode("utf-8", "replace").strip()[-200:]
        return Delivery(notification, False, f"command {argv[0]} exited {done.returncode}"
                        + (f": {tail}" if tail else ""), retry=True)


_FIELDS = {"name": str, "query": str, "stocks": list, "outlets": list, "notify": str,
           "command": list}


def read_watches(tables: Any, where: str) -> tuple[Watch, ...]:
    """The ``[[watch]]`` tables of a settings file; ``WatchError`` names what is wrong."""
    if not isinstance(tables, list):
        raise WatchError(f"{where}: watches must be written as [[watch]] tables")
    watches: list[Watch] = []
    for position, table in enumerate(tables, 1):
        here = f"{where}: [[watch]] #{position}"
        if not isinstance(table, dict):
            raise WatchError(f"{here}: not a table")
        for key, value in table.items():
            kind = _FIELDS.get(key)
            if kind is None:
                raise WatchError(f"{here}: unknown key {key!r} (known: {', '.join(_FIELDS)})")
            if not isinstance(value, kind) or (kind is list and not all(
                    isinstance(v, str) for v in value)):
                raise WatchError(f"{here}: {key} must be "
                                 + ("a list of strings" if kind is list else "a string"))
        try:
            watch = Watch(str(table.get("name", "")), table.get("query", ""),
                          _codes(table.get("stocks", []), here), tuple(table.get("outlets", [])),
                          table.get("notify", ""), tuple(table.get("command", [])))
        except WatchError as exc:
            raise WatchError(f"{here}: {exc}") from exc
        if any(w.name == watch.name for w in watches):
            raise WatchError(f"{here}: the name {watch.name!r} is used twice")
        if watch.query.strip():
            from caixun.segment import QueryError, parse_query

            try:
                parse_query(watch.query)
            except QueryError as exc:
                raise WatchError(f"{here}: query {watch.query!r}: {exc}") from exc
        watches.append(watch)
    return tuple(watches)


def _codes(values: Sequence[str], where: str) -> tuple[str, ...]:
    from caixun.securities import from_native

    codes = []
    for value in values:
        code = from_native(value)
        if code is None:
            raise WatchError(f"{where}: stocks: {value!r} is not a security code "
                             "(600519.SH, 000001.SZ, 00700.HK, AAPL.US …)")
        codes.append(code)
    return tuple(codes)


class _Missing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def payload(watch: str, uid: str, title: str, url: str, outlet: str, published_at: str,
            stocks: Sequence[str], snippet: str) -> dict[str, Any]:
    """The JSON a webhook receives for one match."""
    return {"watch": watch, "uid": uid, "title": title, "url": url, "outlet": outlet,
            "published_at": published_at, "stocks": list(stocks), "snippet": snippet}


@dataclass
class DeliveryReport:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"notifications: {self.delivered} delivered, {self.retrying} to retry, "
                f"{self.failed} failed")


async def deliver_pending(archive: Archive | ArchiveWorker, deliverer: Deliverer, *,
                          limit: int = 100, concurrency: int = 8,
                          clock: Callable[[], float] = time.time) -> DeliveryReport:
    """Send the notifications due now (at most ``limit``), ``concurrency`` at a time,
    recording each outcome as it comes: delivered, retried later with
    :func:`backoff`, or failed (a 4xx answer, or :data:`MAX_ATTEMPTS` reached)."""
    import asyncio

    from caixun.archive import Archive
    from caixun.archive.worker import on_archive

    report = DeliveryReport()
    due = await on_archive(archive, Archive.pending_notifications, clock(), limit)
    gate = asyncio.Semaphore(concurrency)

    async def one(notification: Notification) -> None:
        async with gate:
            outcome = await deliverer.deliver(notification)
        attempts = notification.attempts + 1
        if outcome.delivered:
            await on_archive(archive, Archive.record_delivery, notification.id, True)
            report.delivered += 1
            return
        message = f"watch {notification.watch}, {notification.uid}: {outcome.error}"
        if outcome.retry and attempts < MAX_ATTEMPTS:
            await on_archive(archive, Archive.record_delivery, notification.id, False,
                             outcome.error, clock() + backoff(attempts))
            report.retrying += 1
        else:
            await on_archive(archive, Archive.record_delivery, notification.id, False,
                             outcome.error)
            report.failed += 1
            deliverer.log(f"{message} (given up)")
        report.errors.append(message)

    await asyncio.gather(*(one(n) for n in due))
    return report

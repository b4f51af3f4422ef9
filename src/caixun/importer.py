"""Import Jekyll post files into the archive: walk → check → read → parse → store, in batches.

A file is read only when it may have changed since it was imported. Every
stored file is recorded (its resolved path, size, modification time, the
blake2b digest of its bytes and the uid it became) in the transaction that
stores its article. On the next import a file with the recorded path, size
and modification time is not opened (as rsync and git decide); one whose
size or time differs is digested, and parsed only when its bytes differ (a
touched file just has its record refreshed).

One bad file never stops an import: it is reported and skipped (and read
again next time), and every other file is stored. Batches are stored in one
transaction each, so an interrupted import leaves whole articles only, and
no file recorded whose article is missing.
"""

from __future__ import annotations

import contextlib
import copyreg
import dataclasses
import functools
import hashlib
import io
import itertools
import json
import operator
import os
import pickle
import sqlite3
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import (TYPE_CHECKING, Any, Callable, Generator, Iterable, Iterator, Mapping,
                    NamedTuple, Sequence)

from caixun.archive import Archive, StoreResult
from caixun.archive.base import content_row
from caixun.archive.securities import scan_article
from caixun.archive.stories import keyed
from caixun.dedup import Candidate
from caixun.events import EventTerms
from caixun.securities import Scanned
from caixun.errors import ArchiveError, PostFormatError
from caixun.segment import IndexedText, dictionary_loaded, index_text_normalized
from caixun.model import Article, PostStyle
from caixun.sources.jekyll import ParsedPost, parse_post_bytes, post_files

if TYPE_CHECKING:
    from multiprocessing.pool import AsyncResult

    from caixun.workers import WorkerPool

__all__ = ["FileOutcome", "ImportReport", "default_jobs", "import_posts", "warm_up"]

BATCH_SIZE = 1000
# Files whose records are looked up in one query; what waits in memory stays bounded.
CHECK_BATCH = 500
# Earlier trees a tree imported from a new path is looked for in (see _moved_from).
MOVED_FROM = 8
# Bump when caixun.sources.jekyll reads a post differently: every file is read again.
READER_VERSION = "1"
# A file modified this recently may be written again within the same tick of
# the file system's clock, showing no new time: its time is not recorded, so
# the next import digests it (git's "racily clean" files).
RECENT_NS = 2 * 10**9


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """What happened to one file: stored (with its result) or skipped.

    ``read`` is False for a file unchanged on disk since its import: not
    opened; its result is ``UNCHANGED`` and its repairs those found then.
    """

    file: str  # the file's path as walked
    result: StoreResult | None = None
    repairs: tuple[str, ...] = ()
    problem: str | None = None  # why it was skipped
    read: bool = True

    @property
    def path(self) -> Path:
        # Made when asked for: a re-import of 100,000 unchanged files reports
        # each, and building Path objects was a fifth of its time.
        return Path(self.file)


@dataclass(slots=True)
class ImportReport:
    """Counts: files, skipped, repaired, each ``StoreResult`` value, and
    ``unread`` (the unchanged files not opened, see ``FileOutcome.read``)."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: FileOutcome) -> None:
        self.counts["files"] += 1
        if outcome.problem is not None:
            self.counts["skipped"] += 1
            return
        assert outcome.result is not None
        self.counts[outcome.result.value] += 1
        if not outcome.read:
            self.counts["unread"] += 1
        if outcome.repairs:
            self.counts["repaired"] += 1

    def summary(self) -> str:
        c = self.counts
        unread = f" ({c['unread']} not read)" if c["unread"] else ""
        return (f"{c['files']} files: {c['new']} new, {c['updated']} updated, "
                f"{c['unchanged']} unchanged{unread}, {c['repaired']} repaired, "
                f"{c['skipped']} skipped")


OutcomeCallback = Callable[[FileOutcome], None]


BUSY_SAMPLES = 3  # of 0.2 s each, at most (see default_jobs)


def default_jobs() -> int:
    """Processes to import with: one per core this process may run on, less the busy ones.

    A core counts as busy when other work keeps it so now: the idle time of
    the whole machine over a short sample (``/proc/stat``), not the 1-minute
    load average, which still counts, a minute later, work that has ended (a
    corpus just generated, a build just done). On a machine with no idle core
    a worker process only takes time from the process that stores, the part
    that cannot be shared: one process is faster there.

    A sample that finds cores busy is taken again, up to BUSY_SAMPLES in all,
    and the least busy one counts: a moment's work elsewhere (a short command
    run meanwhile) must not decide a long import. One benchmark's import of
    10,000 posts went on in one process, twice as long, with nothing lasting
    beside it.
    """
    cores = _cores()
    busy = _busy_cores()
    for _ in range(BUSY_SAMPLES - 1):
        if round(cores - busy) >= cores:
            break
        busy = min(busy, _busy_cores())
    return max(1, min(cores, round(cores - busy)))


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _busy_cores(sample: float = 0.2) -> float:
    """How many cores are busy, from the machine's CPU times over ``sample`` seconds."""
    first = _cpu_times()
    if first is None:
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average here either
            return 0.0
    time.sleep(sample)
    second = _cpu_times()
    if second is None:
        return 0.0
    total, idle = second[0] - first[0], second[1] - first[1]
    online = os.cpu_count() or 1
    return online * (total - idle) / total if total > 0 else 0.0


def _cpu_times() -> tuple[int, int] | None:
    """All and idle (idle + iowait) CPU time of the machine so far, in clock ticks."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]), sum(fields[3:5])) if len(fields) >= 5 else None


# From this many files to read, the idle cores are counted for more workers
# than the early one (see _read_all). Measured on 2 cores
# (benchmarks/import_export.py): with a worker, the process that stores spends
# a quarter less CPU time from 1,000 files on, so with an idle core it pays
# from there; with none it never does (see default_jobs).
PARALLEL_FROM = 1000
WARM_UP_WAIT = 10.0  # seconds: a worker lost while warming up is not waited for longer
# Files to parse from which the early worker (see _early_pool) is waited for
# when it is not warm yet; fewer are read here.
EARLY_FROM = 64
# What reading a file of the recorded size costs, most often (read, digest, found
# unchanged: some 30 µs), in files to parse (about a millisecond each).
DIGEST_SHARE = 1 / 30
# Files walked and checked ahead, and handed to the workers, at a time.
WINDOW = 1000
PARCEL = 32  # files a worker reads per task
# The first post this process parses costs it some 0.17 s (the segmenter's
# dictionary, the sanitizer, tables): as many files as a warm worker parses
# meanwhile. Until it has parsed one, it helps the workers behind with posts
# to parse only when more than this many wait unsent (see _Shared).
COLD_READ = 300


# -- check: which files to read ------------------------------------------------

class _Record(NamedTuple):
    """What was recorded of a file when it was imported."""

    size: int
    mtime_ns: int
    digest: bytes
    uid: str
    repairs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Job:
    """A file to read: its stat (taken before reading) and, when its size is the
    recorded one, the record to compare its digest with."""

    path: str
    key: str  # the resolved path: the record's key
    size: int = -1
    mtime_ns: int = -1  # -1 when too recent to be trusted (RECENT_NS)
    known: _Record | None = None


def _walk(paths: Iterable[Path], dirs: _TreeDirs | None = None) -> Iterator[tuple[str, str]]:
    """Every post file under ``paths`` (as ``iter_post_paths``), with its resolved path.

    A directory is resolved once; a file under it is keyed by the resolved
    directory and its path inside (a symbolic link to a post by the link's path).
    Paths are strings: a walk of 100,000 files spent most of its time making
    Path objects. ``dirs`` notes the directories walked.
    """
    for top in paths:
        if not top.is_dir():
            yield str(top), str(top.parent.resolve() / top.name)
            continue
        base, prefix = str(top.resolve()), str(top) + os.sep
        on_dir = dirs.walking(base, str(top)) if dirs is not None else None
        for name in post_files(str(top), on_dir):
            yield name, f"{base}{os.sep}{name[len(prefix):]}"


class _TreeDirs:
    """The directories of the trees an import walks, each with its modification time.

    A file added to, removed from or renamed in a directory changes its time,
    and a new directory its parent's: when no directory of a tree changed
    since its last import, most likely no file is new (an edit in place
    changes no directory's time, and is found by the check all the same).
    Only a hint, of when to start the early worker (see _read_all).
    """

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, int]] = {}  # resolved top → directory inside → time

    def walking(self, base: str, top: str) -> Callable[[str], None]:
        """What to call with each directory of the tree ``top`` (resolved: ``base``)."""
        found = self.seen.setdefault(base, {})

        def on_dir(root: str) -> None:
            with contextlib.suppress(OSError):  # gone meanwhile: the walk says so
                found[root[len(top):].lstrip(os.sep)] = os.stat(root).st_mtime_ns

        return on_dir

    def record(self, archive: Archive) -> None:
        for base, dirs in self.seen.items():
            archive.record_import_dirs(base, dirs)


def _may_have_new_files(paths: Sequence[Path], archive: Archive) -> bool:
    """Whether a directory of these trees changed since their last import (see _TreeDirs)."""
    for top in paths:
        if not top.is_dir():
            return True
        base = str(top.resolve())
        recorded = archive.import_dirs(base)
        if not recorded:
            return True
        for inside, mtime_ns in recorded.items():
            try:
                if os.stat(os.path.join(base, inside)).st_mtime_ns != mtime_ns:
                    return True
            except OSError:
                return True
    return False


def _moved_from(paths: Sequence[Path], archive: Archive) -> dict[str, list[str]]:
    """Each tree of ``paths`` never imported from its path, with the trees imported
    before: where it may have been moved or copied from (see _check).

    A tree moved, renamed or copied keeps its files' bytes and names, but its
    records are keyed by the old path: its files would all be parsed again.
    """
    tops = [str(top.resolve()) for top in paths if top.is_dir()]
    if not tops:
        return {}
    earlier = archive.import_tops()
    moved: dict[str, list[str]] = {}
    for top in tops:
        if earlier and top not in earlier:
            # Those of the same name first: a moved _posts is still _posts.
            name = os.path.basename(top)
            moved[top] = sorted(earlier, key=lambda old: os.path.basename(old) != name)[:MOVED_FROM]
    return moved


def _earlier_records(keys: Sequence[str], moved: Mapping[str, list[str]], archive: Archive
                     ) -> dict[str, tuple[int, int, bytes, str, str]]:
    """key → the record of the same file (by its path inside the tree) under a tree
    it may have been moved from, for the keys of ``moved``'s trees."""
    candidates: dict[str, str] = {}  # an earlier key → the key it may have become
    for key in keys:
        for top, earlier in moved.items():
            if key.startswith(top + os.sep):
                inside = key[len(top):]
                for old in earlier:
                    candidates.setdefault(old + inside, key)
                break
    if not candidates:
        return {}
    found: dict[str, tuple[int, int, bytes, str, str]] = {}
    for old, record in archive.import_records(list(candidates), READER_VERSION).items():
        found.setdefault(candidates[old], record)
    return found


def _check(files: Iterator[tuple[str, str]], archive: Archive,
           unchanged: OutcomeCallback, moved: Mapping[str, list[str]] | None = None
           ) -> Iterator[_Job]:
    """The files to read; ``unchanged`` hears of each file with its recorded stat.

    A file of a tree of ``moved`` (see _moved_from) with no record of its own
    is compared with the record of the same file in the tree it came from:
    only digested, and parsed only when its bytes differ.
    """
    while chunk := list(itertools.islice(files, CHECK_BATCH)):
        records = archive.import_records([key for _, key in chunk], READER_VERSION)
        if moved:
            records_elsewhere = _earlier_records(
                [key for _, key in chunk if key not in records], moved, archive)
        recent = time.time_ns() - RECENT_NS
        for path, key in chunk:
            try:
                stat = os.stat(path)
            except OSError:
                yield _Job(path, key)  # reading it says what is wrong
                continue
            raw = records.get(key)
            if raw is not None and raw[0] == stat.st_size and raw[1] == stat.st_mtime_ns:
                # Unchanged, most files of a re-import: nothing more is made for it.
                unchanged(FileOutcome(path, StoreResult.UNCHANGED, _repairs(raw[4]), read=False))
                continue
            if raw is None and moved:
                raw = records_elsewhere.get(key)
            mtime = stat.st_mtime_ns if stat.st_mtime_ns < recent else -1
            if raw is None or raw[0] != stat.st_size:
                yield _Job(path, key, stat.st_size, mtime)
            else:
                yield _Job(path, key, stat.st_size, mtime, _Record(*raw[:4], _repairs(raw[4])))


def _repairs(recorded: str) -> tuple[str, ...]:
    return tuple(json.loads(recorded)) if recorded != "[]" else ()


# -- read: the CPU-bound part, in workers for many files ----------------------------

@dataclass(frozen=True, slots=True)
class _Read:
    """A file read: parsed, skipped (``problem``), or neither (the bytes recorded)."""

    job: _Job
    digest: bytes = b""
    parsed: ParsedPost | None = None
    indexed: IndexedText | None = None
    problem: str | None = None
    print_: Candidate | None = None  # the fingerprint, when made in a worker
    scanned: Scanned | None = None  # what tagging needs no names for, ditto
    row: tuple[Any, ...] | None = None  # the article's column values, ditto


def _file_bytes(path: str) -> bytes:
    with open(path, "rb") as post:
        return post.read()


def _read(job: _Job, fingerprint: bool = False) -> _Read:
    """Read, digest, parse and segment one post (and fingerprint it, in a worker)."""
    try:
        data = _file_bytes(job.path)
    except OSError as exc:
        return _Read(job, problem=f"cannot read: {exc.strerror or exc}")
    return _read_bytes(job, data, fingerprint)


def _read_bytes(job: _Job, data: bytes, fingerprint: bool) -> _Read:
    """:func:`_read` of a file's bytes."""
    digest = hashlib.blake2b(data, digest_size=32).digest()
    if job.known is not None and job.known.digest == digest:
        return _Read(job, digest)
    try:
        parsed = parse_post_bytes(data, Path(job.path))
    except PostFormatError as exc:
        return _Read(job, digest, problem=exc.problem)
    article = parsed.article
    indexed, normalized = index_text_normalized(article.title, article.digest,
                                                article.body_text)
    if not fingerprint:
        return _Read(job, digest, parsed, indexed)
    return _Read(job, digest, parsed, indexed, print_=keyed(Candidate.of(article)),
                 scanned=scan_article(article, normalized=normalized), row=content_row(article))


WARM_UP_FILE = "2024-01-02-1.md"
# A post of every part a worker reads (headline, digest, HTML with figures, a
# code and English words) to warm a worker up with (see _warm).
_WARM_UP_POST = """---
layout: post
title: "预热：A股收盘 上证指数涨0.52%"
date: 2024-01-02 15:00:00 +0800
categories: renminyoudianbao
tags: 人民邮电报
---

> 沪深两市成交额1.2万亿元。

<p>上证指数收涨0.52%，报3,000.12点；600000 浦发银行 fell 1.5% in Shanghai trading.</p>
""".encode("utf-8")


def _warm() -> None:
    """Load what reading a post needs (the segmenter's dictionary, numpy, tables):
    in the early worker as it starts, or here before a pool of workers forks."""
    _read_bytes(_Job(WARM_UP_FILE, ""), _WARM_UP_POST, fingerprint=True)


def warm_up() -> None:
    """Load what reading a post needs in this process (some 0.3 s the first time,
    a millisecond after): a process that imports again and again (``caixun run``
    with ``import.paths``) then forks its workers warm, and they read at once."""
    _warm()


def _ready_to_store() -> None:
    """Import what storing needs (numpy: 0.07 s) while the early worker warms up:
    this process has nothing else to do until it sends its first posts, and the
    first store would import it then, on the way of every other."""
    import numpy  # noqa: F401


def _read_in_worker(parcel: list[_Job]) -> list[_Read]:
    """:func:`_read` of a few files, and fingerprints too: what a worker can do for the archive."""
    return [_read(job, fingerprint=True) for job in parcel]


def _read_to_send(parcel: list[_Job]) -> bytes:
    """:func:`_read_in_worker`, pickled as :func:`_received` unpickles it."""
    out = io.BytesIO()
    pickler = pickle.Pickler(out, pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _dispatch_table()
    pickler.dump(_read_in_worker(parcel))
    return out.getvalue()


def _received(data: bytes) -> list[_Read]:
    reads: list[_Read] = pickle.loads(data)
    return reads


@functools.cache
def _dispatch_table() -> dict[type, Callable[[Any], Any]]:
    """Reads pickled as their constructors' calls: each value a field of its class in
    order (a dataclass's own pickling calls Python for every field twice, on both
    sides: the reads of a parcel were pickled in twice the time, unpickled in a
    third more). The same objects come out (tests/test_import_incremental.py)."""
    table: dict[type, Callable[[Any], Any]] = dict(copyreg.dispatch_table)
    for cls in (_Read, _Job, ParsedPost, Article, PostStyle, IndexedText, Candidate, Scanned,
                EventTerms):
        fields = dataclasses.fields(cls)
        if len(fields) > 1 and all(f.init and not f.kw_only for f in fields):
            table[cls] = _reducer(cls, operator.attrgetter(*(f.name for f in fields)))
    return table


def _reducer(cls: type, values: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, ...]]:
    def reduce(obj: Any) -> tuple[Any, ...]:
        if type(obj) is not cls:  # a subclass: pickled as usual
            return obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)  # type: ignore[no-any-return]
        return cls, values(obj)  # attrgetter of several names: a tuple

    return reduce


def _parcels(files: Iterator[_Job]) -> list[list[_Job]]:
    """The next window of files, in parcels of ``PARCEL``: a worker's task."""
    window = list(itertools.islice(files, WINDOW))
    return [window[start:start + PARCEL] for start in range(0, len(window), PARCEL)]


def _read_all(todo: Iterator[_Job], jobs: int, held: Callable[[], int] = lambda: 0,
              early: bool = True) -> Generator[_Read | None, None, None]:
    """Every file of ``todo`` read, in order; on ``jobs`` cores.

    ``jobs=0``: one worker, and for many files as many as :func:`default_jobs`
    finds idle cores. ``held``: how many reads the caller holds, not stored
    yet (see :class:`_Shared`). ``early``: the worker starts before the
    files are checked (see :func:`_early_pool`); else once they are, and only
    for EARLY_FROM files or more.

    With workers, ``None`` says that the next file is not read yet and this
    process has nothing to read meanwhile: time to store what was read
    (rather than wait for a full batch).
    """
    if jobs != 1:
        from caixun.workers import in_daemon  # multiprocessing: only where it is used

        if in_daemon():
            jobs = 1  # a daemonic process (a pool's worker) may not have children
    pool = _early_pool(jobs) if early else None
    try:
        warm = pool.apply_async(int) if pool is not None else None  # done once it is warm
        head, work = _look_ahead(todo)
        if not early and work >= min(EARLY_FROM, PARALLEL_FROM):
            pool = _early_pool(jobs)
            warm = pool.apply_async(int) if pool is not None else None
        files = itertools.chain(head, todo)
        if work >= PARALLEL_FROM and jobs == 0:
            if warm is not None:
                warm.wait(WARM_UP_WAIT)  # its warming up must not count as a busy core
            jobs = default_jobs()  # sampled only when more workers might pay
        workers = jobs - 1 if jobs else int(
            warm is not None and (work >= EARLY_FROM or warm.ready()))
        if not work or workers < 1:
            if pool is not None:
                pool.terminate()
                pool = None
            yield from map(_read, files)
            return
        if pool is None or workers > 1:
            # More cores than the early worker: a pool of them, forked with
            # what reading needs loaded here once.
            if pool is not None:
                pool.terminate()
            pool = None
            from caixun.workers import worker_pool

            _warm()
            pool = worker_pool(workers)
        elif warm is not None and not warm.ready():
            _ready_to_store()
        yield from _Shared(pool, files, held).reads()
    finally:
        if pool is not None:
            pool.terminate()


def _early_pool(jobs: int) -> WorkerPool | None:
    """One worker, warming up while this process checks the files, when there
    may be an idle core for it (``jobs`` is not 1, and this process may run on two).

    Reading the first post costs a process about 0.3 s (the segmenter's
    dictionary, numpy, tables); checking 10,000 files about 0.1 s. A worker
    started first is warm, or most of the way, when the files to read are
    known, and reads them while this process stores. When none is to be read,
    or only a few and it is not warm yet (this process reads them sooner), it
    is stopped: a core's fraction of a second, not this process's.
    """
    if jobs == 1:
        return None
    if _cores() < 2 and jobs == 0:
        return None
    from caixun.workers import worker_pool  # multiprocessing: only where it is used

    return worker_pool(1, warm=_warm)


def _look_ahead(todo: Iterator[_Job]) -> tuple[list[_Job], float]:
    """The first files of ``todo``, until they are PARALLEL_FROM files' parsing of
    work, and how much work they are, in files to parse.

    A file of the recorded size is most often only digested and found unchanged
    (touched, or written too recently to trust its time when imported): it counts
    DIGEST_SHARE of a file to parse. Counted as a whole file, the 1,200 such files
    of a re-import after a corpus was generated started the workers, and sampled
    the cores for 0.2 s, to parse 100 new posts; not counted at all, the files of
    a tree checked out anew (every time changed) would never start them for the
    new posts after them. At most PARALLEL_FROM / DIGEST_SHARE files are held.
    """
    head: list[_Job] = []
    work = 0.0
    for job in todo:
        head.append(job)
        work += 1 if job.known is None else DIGEST_SHARE
        if work >= PARALLEL_FROM:
            break
    return head, work


class _Parcel:
    """A worker's task: files to read, sent to a worker (``sent``) or read here.

    ``tail``: the reads of its last files, when this process read them while
    the workers were behind (the other files are then read as before).
    """

    __slots__ = ("files", "sent", "tail")

    def __init__(self, files: list[_Job]) -> None:
        self.files = files
        self.sent: AsyncResult[bytes] | None = None
        self.tail: deque[_Read] = deque()


class _Shared:
    """The files read by the workers and, while they are behind, by this process too.

    This process is one of the ``jobs``: it stores, the part that cannot be
    shared. The workers are sent the parcels in order, a window and a bit
    ahead of what is stored (enough to keep them busy while a batch is
    stored; a pool left to itself reads ahead of the writes until memory runs
    out). Another window waits behind those. When the next parcel is not read
    yet, this process reads the last waiting file itself rather than wait: a
    batch is then stored whole, not in the small parts that cost the writer
    more, and no core is idle while the workers are behind. (One file at a
    time: when the workers are ahead after all, storing waits a file's time
    at most.) The reads are yielded in the order of the files, whoever read them.

    Once every file is handed out, what this process ``held`` unstored it
    must store after the workers are done, alone: so it reads only while
    more files wait than it holds, and it stores what it holds (``None``)
    as soon as that is as many as are left to read, while the workers read
    them. The batches get smaller towards the end, and the last one is small.

    Until this process is ``warm`` (has parsed a post), it reads a file that
    must be parsed only when more than COLD_READ such wait unsent: a re-import
    of a hundred new posts among files written too recently to trust their
    time spent 0.17 s here to parse three of them.
    """

    def __init__(self, pool: WorkerPool, files: Iterator[_Job],
                 held: Callable[[], int] = lambda: 0,
                 warm: Callable[[], bool] = dictionary_loaded) -> None:
        self.pool = pool
        self.files: Iterator[_Job] | None = files
        self.held = held
        self.warm = warm
        self.order: deque[_Parcel] = deque()  # not yielded yet, in the files' order
        self.waiting: deque[_Parcel] = deque()  # of those, the ones not sent
        self.sent = 0  # parcels sent and not yielded yet
        self.ahead = -(-WINDOW // PARCEL) + 8  # parcels sent ahead, at most

    def reads(self) -> Iterator[_Read | None]:
        while True:
            self._plan()
            if not self.order:
                return
            if self.files is None and self.held() >= self._unread():
                yield None  # store now, while the workers read the rest: see above
            parcel = self.order[0]
            if parcel.sent is not None and not parcel.sent.ready():
                if self.waiting and self._worth_reading_here():
                    # read the last waiting file here meanwhile
                    last = self.waiting[-1]
                    last.tail.appendleft(_read(last.files.pop(), fingerprint=True))
                    if not last.files:
                        self.waiting.pop()
                    continue
                yield None
                self.pool.wait(parcel.sent)
            self.order.popleft()
            if parcel.sent is not None:
                self.sent -= 1
                yield from _received(parcel.sent.get())
            elif parcel.files:  # never sent: read here
                self.waiting.remove(parcel)
                yield from _read_in_worker(parcel.files)
            yield from parcel.tail

    def _worth_reading_here(self) -> bool:
        """Whether to read the last waiting file here while the workers are behind."""
        if self.files is None and self._unsent() <= self.held():
            return False
        if self.waiting[-1].files[-1].known is not None or self.warm():
            return True  # most often only digested; or parsed at a warm file's cost
        to_parse = (job for parcel in self.waiting for job in parcel.files if job.known is None)
        return any(True for _ in itertools.islice(to_parse, COLD_READ, None))

    def _unsent(self) -> int:
        return sum(len(parcel.files) for parcel in self.waiting)

    def _unread(self) -> int:
        """Files not yielded yet (not all of them unread: a rough measure is enough)."""
        return sum(len(parcel.files) + len(parcel.tail) for parcel in self.order)

    def _plan(self) -> None:
        """Walk and check a window more when few parcels wait; send the workers theirs."""
        window = -(-WINDOW // PARCEL)
        # What was read here waits its turn in memory too: at most two windows more.
        if (self.files is not None and len(self.waiting) < window
                and len(self.order) < self.ahead + 2 * window):
            parcels = [_Parcel(files) for files in _parcels(self.files)]
            if parcels:
                self.order.extend(parcels)
                self.waiting.extend(parcels)
            else:
                self.files = None
        while self.waiting and self.sent < self.ahead:
            parcel = self.waiting.popleft()
            parcel.sent = self.pool.apply_async(_read_to_send, (parcel.files,))
            self.sent += 1


# -- store ----------------------------------------------------------------------------

_Row = tuple[str, int, int, bytes, str, str]  # what Archive.record_imports takes


def _record(read: _Read, uid: str, repairs: tuple[str, ...]) -> _Row:
    job = read.job
    return (job.key, job.size, job.mtime_ns, read.digest, uid,
            json.dumps(list(repairs), ensure_ascii=False))


def _store_batch(archive: Archive, batch: list[_Read]) -> list[StoreResult]:
    """Store a batch and record its files in one transaction: all of it, or (full disk…) none.

    Returns the results of the parsed reads; the others (same bytes as
    recorded) only have their record's stat refreshed.
    """
    parsed = [(r, r.parsed) for r in batch if r.parsed is not None]
    prints = [r.print_ for r, _ in parsed if r.print_ is not None]
    scans = [r.scanned for r, _ in parsed if r.scanned is not None]
    rows = [r.row for r, _ in parsed if r.row is not None]
    records = [_record(r, p.article.uid, p.repairs) for r, p in parsed]
    records += [_record(r, r.job.known.uid, r.job.known.repairs)
                for r in batch if r.parsed is None and r.job.known is not None]
    try:
        with archive.transaction():
            results = archive.store_many([p.article for _, p in parsed],
                                         [r.indexed for r, _ in parsed if r.indexed],
                                         prints if len(prints) == len(parsed) else None,
                                         scans if len(scans) == len(parsed) else None,
                                         rows if len(rows) == len(parsed) else None)
            for _, post in parsed:
                if post.slug_alias:
                    archive.add_outlet_alias(post.slug_alias, post.article.outlet_slug)
            archive.record_imports(records, READER_VERSION)
    except sqlite3.Error as exc:  # store_many maps its own errors; the rest does not
        raise ArchiveError(f"{archive.path}: cannot store posts: {exc}") from exc
    return results


def import_posts(
    paths: Iterable[Path],
    archive: Archive,
    on_outcome: OutcomeCallback | None = None,
    batch_size: int = BATCH_SIZE,
    jobs: int | None = None,
) -> ImportReport:
    """Import every post under ``paths``; ``on_outcome`` hears about each file.

    Worker processes read, parse, segment and fingerprint the files while
    this one stores them: by default one, started at once (see _early_pool),
    and when at least ``PARALLEL_FROM`` files are to be parsed (see
    _look_ahead) one per idle core less this one; ``jobs`` gives their number
    plus one. A batch is then stored whenever the workers are behind, not
    only when it is full. ``jobs=1``: everything in this process.
    """
    report = ImportReport()
    batch: list[_Read] = []

    def emit(outcome: FileOutcome) -> None:
        report.add(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    def flush() -> None:
        results = iter(_store_batch(archive, batch))
        for read in batch:
            if read.parsed is not None:
                emit(FileOutcome(read.job.path, next(results), read.parsed.repairs))
            else:
                assert read.job.known is not None
                emit(FileOutcome(read.job.path, StoreResult.UNCHANGED, read.job.known.repairs))
        batch.clear()

    paths = list(paths)
    early = _may_have_new_files(paths, archive)
    dirs = _TreeDirs()
    todo = _check(_walk(paths, dirs), archive, emit, _moved_from(paths, archive))
    # Closed at once when storing fails: its workers, which hold the archive's
    # files open since they forked, end then and not when the error is collected.
    with contextlib.closing(_read_all(todo, jobs or 0, batch.__len__, early)) as reads:
        for read in reads:
            if read is None:  # the workers are behind: store what they have read
                if batch:
                    flush()
                continue
            if read.problem is not None:
                emit(FileOutcome(read.job.path, problem=read.problem))
                continue
            batch.append(read)
            if len(batch) >= batch_size:
                flush()
    if batch:
        flush()
    dirs.record(archive)
    return report

"""Importing again: files unchanged since their import are not read, on real files and SQLite.

A file whose path, size and modification time are those recorded is not
opened; a touched one (new time, same bytes) is digested but not parsed; an
edited one is imported again. Posts come from the real corpus (one file name
starts with '-'), copied into ``tmp_path``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import caixun.importer as importer
import caixun.sources.jekyll as jekyll
from caixun.archive import SqliteArchive, StoreResult, open_archive
from caixun.archive.migrations import MIGRATIONS
from caixun.cli import main
from caixun.importer import FileOutcome, ImportReport, import_posts
from conftest import POSTS

EDITED = "2021-12-08-202112082206672930.md"
EDITED_UID = "jekyll:202112082206672930"


@pytest.fixture
def posts(tmp_path: Path) -> Path:
    tree = tmp_path / "posts"
    shutil.copytree(POSTS, tree)
    assert any(p.name.startswith("-") for p in tree.iterdir())
    return tree


class Reads:
    """Counts the files opened and the posts parsed by the importer."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened: list[Path] = []
        self.parsed: list[str] = []
        read_bytes, parse_post = importer._file_bytes, jekyll.parse_post

        def counting_read(path: str) -> bytes:
            self.opened.append(Path(path))
            return read_bytes(path)

        def counting_parse(text: str, name: str, where: str | None = None) -> Any:
            self.parsed.append(name)
            return parse_post(text, name, where)

        monkeypatch.setattr(importer, "_file_bytes", counting_read)
        monkeypatch.setattr(jekyll, "parse_post", counting_parse)

    def clear(self) -> None:
        self.opened.clear()
        self.parsed.clear()


def _import(tree: Path, db: Path, **kwargs: Any) -> tuple[ImportReport, list[FileOutcome]]:
    outcomes: list[FileOutcome] = []
    with open_archive(db) as archive:
        report = import_posts([tree], archive, outcomes.append, **kwargs)
    return report, outcomes


def _records(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT path, size, mtime_ns, digest, uid, repairs "
                            "FROM import_files ORDER BY path").fetchall()


def _articles(db: Path) -> list[Any]:
    with open_archive(db, read_only=True) as archive:
        return list(archive.iter_articles())


_PAST = itertools.count(1_600_000_000)  # 2020-09-13: well before the import


def _touch(path: Path) -> None:
    """Give ``path`` a modification time of its own, long past (not a recent one)."""
    os.utime(path, (time.time(), next(_PAST)))


def test_a_second_import_of_the_same_tree_reads_no_file(
    posts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "a.db"
    reads = Reads(monkeypatch)
    first, first_outcomes = _import(posts, db)
    assert len(reads.opened) == len(reads.parsed) == 117
    assert first.counts["new"] == 117
    reads.clear()
    second, outcomes = _import(posts, db)
    assert reads.opened == [] and reads.parsed == []
    assert second.counts["unchanged"] == second.counts["unread"] == 117
    assert second.summary() == ("117 files: 0 new, 0 updated, 117 unchanged (117 not read), "
                                f"{first.counts['repaired']} repaired, 0 skipped")
    # What a file was repaired of is said again, as when it was read.
    assert {(o.path, o.repairs) for o in outcomes} == {
        (o.path, o.repairs) for o in first_outcomes}
    assert all(not o.read and o.result is StoreResult.UNCHANGED for o in outcomes)
    records = _records(db)
    assert len(records) == 117
    assert {r[0] for r in records} == {str(p.resolve()) for p in posts.iterdir()}
    assert all(len(r[3]) == 32 for r in records)  # blake2b digests


def test_an_unchanged_file_is_not_opened_even_when_unreadable(
    posts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "a.db"
    _import(posts, db)

    def refuse(path: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "read_bytes", refuse)  # as chmod 000 would, for anyone but root
    report, _ = _import(posts, db)
    assert report.counts["unchanged"] == report.counts["unread"] == 117
    assert report.counts["skipped"] == 0


def test_a_touched_file_is_digested_not_parsed_and_its_stat_refreshed(
    posts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "a.db"
    _import(posts, db)
    before = _dump(db)
    touched = posts / EDITED
    _touch(touched)
    reads = Reads(monkeypatch)
    report, outcomes = _import(posts, db)
    assert reads.opened == [touched] and reads.parsed == []
    assert report.counts["unchanged"] == 117 and report.counts["unread"] == 116
    [outcome] = [o for o in outcomes if o.read]
    assert outcome.path == touched and outcome.result is StoreResult.UNCHANGED
    assert _dump(db) == before  # no article written, nothing logged
    [record] = [r for r in _records(db) if r[0] == str(touched.resolve())]
    assert record[2] == touched.stat().st_mtime_ns
    reads.clear()
    third, _ = _import(posts, db)
    assert reads.opened == [] and third.counts["unread"] == 117


def _dump(db: Path) -> tuple[list[Any], list[Any]]:
    with sqlite3.connect(db) as conn:
        return (conn.execute("SELECT uid, title, body_html, version, updated_at FROM articles "
                             "ORDER BY uid").fetchall(),
                conn.execute("SELECT seq FROM changes").fetchall())


@pytest.mark.parametrize("same_size", [False, True], ids=["longer", "same size"])
def test_an_edited_file_is_imported_again_and_the_old_version_kept(
    posts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, same_size: bool
) -> None:
    db = tmp_path / "a.db"
    _import(posts, db)
    path = posts / EDITED
    text = path.read_text(encoding="utf-8")
    edited = (text.replace("6.3512", "6.3521") if same_size
              else text.replace("6.3512", "6.40").replace('title: "离岸', 'title: "更正：离岸'))
    assert edited != text and (len(edited) == len(text)) == same_size
    path.write_text(edited, encoding="utf-8")
    _touch(path)  # a time of its own, and not a recent one
    reads = Reads(monkeypatch)
    report, _ = _import(posts, db)
    assert reads.parsed == [EDITED]
    assert report.counts["updated"] == 1 and report.counts["unread"] == 116
    with open_archive(db) as archive:
        article = archive.get(EDITED_UID)
        assert article is not None and ("6.3521" if same_size else "6.40") in article.body_text
        assert len(archive.versions(EDITED_UID)) == 1
    reads.clear()
    third, _ = _import(posts, db)
    assert reads.opened == [] and third.counts["unread"] == 117


def test_a_moved_file_is_imported_from_its_new_path_as_the_same_article(
    posts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "a.db"
    _import(posts, db)
    articles = _articles(db)
    (posts / "2021").mkdir()
    moved = (posts / EDITED).rename(posts / "2021" / EDITED)
    reads = Reads(monkeypatch)
    report, outcomes = _import(posts, db)
    assert reads.opened == [moved]
    [outcome] = [o for o in outcomes if o.read]
    assert outcome.result is StoreResult.UNCHANGED
    assert report.counts["unchanged"] == 117 and report.counts["unread"] == 116
    assert _articles(db) == articles
    assert str(moved.resolve()) in {r[0] for r in _records(db)}
    reads.clear()
    _import(posts, db)
    assert reads.opened == []


def test_a_file_modified_just_before_its_import_is_digested_next_time(
    posts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its time is not trusted: the same clock tick could hold another edit."""
    db = tmp_path / "a.db"
    fresh = posts / EDITED
    fresh.write_bytes(fresh.read_bytes())  # modified now
    _import(posts, db)
    reads = Reads(monkeypatch)
    report, _ = _import(posts, db)
    assert reads.opened == [fresh] and reads.parsed == []
    assert report.counts["unread"] == 116
    _touch(fresh)  # as it will be, once the time is old enough
    _import(posts, db)
    reads.clear()
    assert _import(posts, db)[0].counts["unread"] == 117 and reads.opened == []


def test_a_deleted_file_leaves_its_article(posts: Path, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    _import(posts, db)
    (posts / EDITED).unlink()
    report, _ = _import(posts, db)
    assert report.counts["files"] == 116 and report.counts["unread"] == 116
    assert any(a.uid == EDITED_UID for a in _articles(db))


def test_a_skipped_file_is_read_again_and_so_is_one_whose_article_was_deleted(
    posts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "a.db"
    bad = posts / "2021-12-09-broken.md"
    bad.write_text("no front matter here\n", encoding="utf-8")
    _import(posts, db)
    with open_archive(db) as archive:
        assert archive.delete(EDITED_UID)
    reads = Reads(monkeypatch)
    report, outcomes = _import(posts, db)
    assert sorted(reads.opened) == [posts / EDITED, bad]
    assert report.counts["skipped"] == 1 and report.counts["new"] == 1
    assert [o.path for o in outcomes if o.problem] == [bad]


def test_a_fresh_archive_equals_a_re_imported_one(posts: Path, tmp_path: Path) -> None:
    again, fresh = tmp_path / "again.db", tmp_path / "fresh.db"
    _import(posts, again)
    for path in sorted(posts.iterdir())[::10]:
        _touch(path)
    edited = posts / EDITED
    edited.write_text(edited.read_text(encoding="utf-8").replace("6.3512", "6.40"),
                      encoding="utf-8")
    (posts / "sub").mkdir()
    (posts / "2021-12-08-202112082206703990.md").rename(
        posts / "sub" / "2021-12-08-202112082206703990.md")
    _import(posts, again)
    _import(posts, again)
    _import(posts, fresh)
    assert _articles(again) == _articles(fresh)
    exported = []
    for db in (again, fresh):
        out = tmp_path / f"export-{db.stem}"
        result = CliRunner().invoke(main, ["--archive", str(db), "-q", "export", "jekyll",
                                           str(out)])
        assert result.exit_code == 0, result.output
        exported.append({p.name: p.read_bytes() for p in out.iterdir()})
    assert exported[0] == exported[1] and len(exported[0]) == len(_articles(fresh))


def test_an_interrupted_import_records_no_file_whose_article_is_missing(
    posts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "a.db"
    record_imports = SqliteArchive.record_imports
    calls = []

    def failing_third(self: SqliteArchive, records: Any, reader: str) -> None:
        calls.append(1)
        record_imports(self, records, reader)  # written, then the batch fails
        if len(calls) == 3:
            raise RuntimeError("killed")

    monkeypatch.setattr(SqliteArchive, "record_imports", failing_third)
    with pytest.raises(RuntimeError, match="killed"):
        _import(posts, db, batch_size=16)
    monkeypatch.undo()
    with sqlite3.connect(db) as conn:
        stored = {r[0] for r in conn.execute("SELECT uid FROM articles")}
        stored |= {r[0] for r in conn.execute("SELECT uid FROM article_aliases")}
    records = _records(db)
    assert len(records) == 32  # the two batches before the failing one
    assert {r[4] for r in records} <= stored
    report, _ = _import(posts, db)
    assert report.counts["unread"] == 32 and report.counts["new"] + report.counts["merged"] == 85
    assert _import(posts, db)[0].counts["unread"] == 117


def test_an_archive_without_the_record_table_reads_every_file(
    posts: Path, tmp_path: Path
) -> None:
    db = tmp_path / "old.db"
    for _ in range(2):
        with SqliteArchive(db, migrations=MIGRATIONS[:9]) as archive:
            report = import_posts([posts], archive)
    assert report.counts["unchanged"] == 117 and report.counts["unread"] == 0


def _copies(tree: Path, count: int) -> None:
    """``count`` posts of their own (each links its own article), from the corpus."""
    tree.mkdir()
    sources = sorted(POSTS.glob("2021-12-08-*.md"))
    for n in range(count):
        source = sources[n % len(sources)]
        own_id = source.stem.rsplit("-", 1)[-1]
        copy = tree / f"2021-12-08-{n:018d}.md"
        copy.write_text(source.read_text(encoding="utf-8").replace(own_id, f"{n:018d}"),
                        encoding="utf-8")
        _touch(copy)


def test_importing_in_worker_processes_equals_importing_in_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "PARALLEL_FROM", 20)
    monkeypatch.setattr(importer, "WINDOW", 16)
    tree = tmp_path / "posts"
    _copies(tree, 150)
    dbs = {jobs: tmp_path / f"jobs{jobs}.db" for jobs in (1, 2)}
    for jobs, db in dbs.items():
        report, _ = _import(tree, db, jobs=jobs, batch_size=40)
        assert report.counts["new"] == 150
    assert _articles(dbs[1]) == _articles(dbs[2])
    assert _records(dbs[1]) == _records(dbs[2])
    # Touched and edited files, read again in workers.
    for path in sorted(tree.iterdir())[:60]:
        _touch(path)
    # Enough edited files (PARALLEL_FROM counts the files to parse) for the workers,
    # which read the touched ones among them too.
    for edited in sorted(tree.iterdir())[5:150:6]:
        edited.write_text(edited.read_text(encoding="utf-8").replace('title: "', 'title: "更正：', 1),
                          encoding="utf-8")
        _touch(edited)
    for jobs, db in dbs.items():
        report, _ = _import(tree, db, jobs=jobs, batch_size=40)
        assert (report.counts["updated"], report.counts["unchanged"],
                report.counts["unread"]) == (25, 125, 75)
    assert _articles(dbs[1]) == _articles(dbs[2])
    assert _records(dbs[1]) == _records(dbs[2])


def test_files_only_to_digest_do_not_start_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Touched files and a few new ones: the few are parsed here, with no core
    sampling and no worker processes (they pay only for files to parse)."""
    import caixun.workers as workers

    monkeypatch.setattr(importer, "PARALLEL_FROM", 20)
    started: list[str] = []
    start_pool, sample = workers.worker_pool, importer.default_jobs
    monkeypatch.setattr(workers, "worker_pool",
                        lambda n: started.append("pool") or start_pool(n))
    monkeypatch.setattr(importer, "default_jobs", lambda: started.append("sample") or 2)
    tree, more = tmp_path / "posts", tmp_path / "more"
    _copies(tree, 120)
    _copies(more, 160)  # the same 120, and 40 more
    db = tmp_path / "a.db"
    report, _ = _import(tree, db)
    assert report.counts["new"] == 120 and started == ["sample", "pool"]
    started.clear()
    for path in tree.iterdir():
        _touch(path)  # digested, found unchanged
    newer = sorted(more.iterdir())[120:]
    for path in newer[:15]:
        shutil.copy(path, tree / path.name)
    report, _ = _import(tree, db)
    assert (report.counts["new"], report.counts["unchanged"], report.counts["unread"]) == (
        15, 120, 0)
    assert started == []
    for path in tree.iterdir():
        _touch(path)
    for path in newer[15:]:
        shutil.copy(path, tree / path.name)  # 25 to parse: the workers pay again
    report, _ = _import(tree, db)
    assert (report.counts["new"], report.counts["unchanged"]) == (25, 135)
    assert started == ["sample", "pool"]
    # A tree checked out anew (every time changed): enough files only to digest
    # are work for the workers too, DIGEST_SHARE of a parse each.
    started.clear()
    monkeypatch.setattr(importer, "PARALLEL_FROM", 4)
    for path in tree.iterdir():
        _touch(path)
    report, _ = _import(tree, db)
    assert (report.counts["unchanged"], report.counts["unread"]) == (160, 0)
    assert started == ["sample", "pool"]  # 160 × 1/30 ≥ 4


def test_caixun_import_says_how_many_files_it_did_not_read(posts: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    runs = [CliRunner().invoke(main, ["--archive", db, "import", str(posts)]) for _ in range(2)]
    assert all(run.exit_code == 0 for run in runs)
    assert "117 unchanged (117 not read)" in runs[1].stderr



def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_the_default_number_of_processes_leaves_out_the_cores_kept_busy_now() -> None:
    # One spinning process per core: no core is idle, so the import runs in
    # one process (a worker would only take time from the one that stores).
    import multiprocessing

    cores = len(os.sched_getaffinity(0))
    context = multiprocessing.get_context("fork")
    spinners = [context.Process(target=_spin, args=(3.0,)) for _ in range(os.cpu_count() or 1)]
    for spinner in spinners:
        spinner.start()
    try:
        time.sleep(0.3)
        assert importer._busy_cores() >= cores - 0.5
        assert importer.default_jobs() == 1
    finally:
        for spinner in spinners:
            spinner.terminate()
            spinner.join()


def test_cpu_times_are_read_from_proc_stat() -> None:
    times = importer._cpu_times()
    assert times is not None
    total, idle = times
    assert 0 <= idle <= total
    later = importer._cpu_times()
    assert later is not None and later[0] >= total


class _Later:
    """A worker's result that is ready only after a few looks: the reader is behind."""

    def __init__(self, value: list[Any], looks: int) -> None:
        self.value, self.looks = value, looks

    def ready(self) -> bool:
        self.looks -= 1
        return self.looks < 0

    def wait(self, timeout: float | None = None) -> None:
        self.looks = -1

    def get(self, timeout: float | None = None) -> list[Any]:
        return self.value


class _SlowPool:
    """Reads each parcel when it is sent (here), and says it is done a few looks later."""

    def __init__(self, looks: int) -> None:
        self.looks = looks
        self.sent: list[str] = []

    def apply_async(self, func: Any, args: tuple[Any, ...]) -> _Later:
        self.sent += [job.path for job in args[0]]
        return _Later(func(*args), self.looks)


@pytest.mark.parametrize("looks", [0, 2, 40])
def test_the_reads_shared_with_this_process_come_in_the_order_of_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, looks: int
) -> None:
    monkeypatch.setattr(importer, "WINDOW", 10)
    monkeypatch.setattr(importer, "PARCEL", 3)
    tree = tmp_path / "posts"
    _copies(tree, 80)
    jobs = [importer._Job(str(p), str(p)) for p in sorted(tree.iterdir())]
    pool = _SlowPool(looks)
    reads = list(importer._Shared(pool, iter(jobs)).reads())  # type: ignore[arg-type]
    here = {job.path for job in jobs} - set(pool.sent)
    assert [r for r in reads if r is not None] == [importer._read(job, True) for job in jobs]
    assert sorted(pool.sent + list(here)) == sorted(job.path for job in jobs)
    if looks == 0:  # the workers are never behind: this process only stores
        assert not here and None not in reads
    if looks == 40:  # always behind: this process reads whatever waits
        assert len(here) > 10


def test_the_reads_a_worker_sends_arrive_as_they_were_read(posts: Path, tmp_path: Path) -> None:
    bad = tmp_path / "2021-12-08-bad.md"
    bad.write_bytes(b"---\ntitle: \xff\n---\n")
    files = sorted(posts.iterdir())[:20]
    known = importer._Record(1, 2, importer._read(importer._Job(str(files[0]), "k")).digest,
                             "jekyll:x", ("a repair",))
    jobs = [importer._Job(str(f), str(f), 5, 6) for f in files]
    jobs += [importer._Job(str(bad), "b"), importer._Job(str(tmp_path / "gone.md"), "g"),
             importer._Job(str(files[0]), "k", 1, 2, known)]
    reads = importer._read_in_worker(jobs)
    assert {r.problem is not None for r in reads} == {True, False}
    assert reads[-1].parsed is None and reads[-1].problem is None  # the recorded bytes
    sent = importer._received(importer._read_to_send(jobs))
    assert sent == reads
    # A parsed post comes with its column values, made by the worker for the writer.
    assert [r.row is not None for r in sent] == [r.parsed is not None for r in sent]
    assert [type(r.parsed and r.parsed.article.post_style) for r in sent] == \
        [type(r.parsed and r.parsed.article.post_style) for r in reads]


STORE_FAILS = """
import sys
from pathlib import Path
sys.path.insert(0, {src!r})
from caixun.archive import open_archive
from caixun.errors import CaixunError
from caixun.importer import import_posts

with open_archive({db!r}) as archive:
    store, calls = archive.store_many, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == {fail_at}:
            raise CaixunError("{db}: cannot store: database or disk is full")
        return store(*args, **kwargs)

    archive.store_many = failing
    try:
        import_posts([Path({tree!r})], archive, jobs=3, batch_size=100)
    except CaixunError as error:
        print("failed:", error)
"""


@pytest.mark.parametrize("fail_at", [1, 3])
def test_an_import_whose_storing_fails_while_the_workers_read_ends_with_the_error(
    tmp_path: Path, fail_at: int
) -> None:
    """The error stops the worker pool while its workers send parcels of posts:
    the import ends with the error, whole (a pool stopped while busy could
    hang: ``tests/test_workers.py``). A hang fails after 120 s."""
    import subprocess
    import sys

    tree, db = tmp_path / "posts", tmp_path / "a.db"
    _copies(tree, 1_500)
    script = STORE_FAILS.format(src=str(Path(importer.__file__).parents[1]), db=str(db),
                                tree=str(tree), fail_at=fail_at)
    for _ in range(2):
        child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               timeout=120)
        assert child.returncode == 0, child.stderr[-2000:]
        assert child.stdout == f"failed: {db}: cannot store: database or disk is full\n"
        assert "Traceback" not in child.stderr, child.stderr[-2000:]

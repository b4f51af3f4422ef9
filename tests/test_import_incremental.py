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
import signal
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
from caixun.errors import ArchiveError, WorkerError
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
    """Counts the files opened and the posts parsed by the importer, in this
    process and in its workers (which append to a log file: they fork)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, logs: Path) -> None:
        self._logs = logs  # under the test's tmp_path: pytest removes it in time
        logs.mkdir()
        read_bytes, parse_post = importer._file_bytes, jekyll.parse_post

        def counting_read(path: str) -> bytes:
            self._log("opened", path)
            return read_bytes(path)

        def counting_parse(text: str, name: str, where: str | None = None) -> Any:
            self._log("parsed", name)
            return parse_post(text, name, where)

        monkeypatch.setattr(importer, "_file_bytes", counting_read)
        monkeypatch.setattr(jekyll, "parse_post", counting_parse)

    def _log(self, kind: str, value: str) -> None:
        if value.endswith(importer.WARM_UP_FILE):
            return  # the workers' warm-up, not a file of the tree
        line = f"{os.getpid()} {value}\n".encode()
        fd = os.open(self._logs / kind, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line)  # one write of a short line: never interleaved
        finally:
            os.close(fd)

    def _lines(self, kind: str) -> list[tuple[int, str]]:
        try:
            lines = (self._logs / kind).read_text().splitlines()
        except FileNotFoundError:
            return []
        return [(int(pid), value) for pid, value in (line.split(" ", 1) for line in lines)]

    @property
    def opened(self) -> list[Path]:
        return [Path(value) for _, value in self._lines("opened")]

    @property
    def parsed(self) -> list[str]:
        return [value for _, value in self._lines("parsed")]

    def opened_by(self) -> dict[str, int]:
        """The process that opened each file, by file name."""
        return {Path(value).name: pid for pid, value in self._lines("opened")}

    def clear(self) -> None:
        for kind in ("opened", "parsed"):
            (self._logs / kind).unlink(missing_ok=True)


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
    reads = Reads(monkeypatch, tmp_path / "reads")
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
    reads = Reads(monkeypatch, tmp_path / "reads")
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
    reads = Reads(monkeypatch, tmp_path / "reads")
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
    reads = Reads(monkeypatch, tmp_path / "reads")
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


def _import_url(tree: Path, url: str) -> tuple[ImportReport, list[FileOutcome]]:
    outcomes: list[FileOutcome] = []
    with open_archive(url) as archive:
        report = import_posts([tree], archive, outcomes.append)
    return report, outcomes


def _record_uids(url: str, tree: Path) -> dict[str, str]:
    """File name → the uid recorded for it under ``tree``."""
    with open_archive(url, read_only=True) as archive:
        keys = [str(path.resolve()) for path in tree.iterdir()]
        return {Path(key).name: record[3] for key, record in
                archive.import_records(keys, importer.READER_VERSION).items()}


@pytest.mark.parametrize("to", ["site/posts", "renamed"], ids=["moved", "renamed"])
def test_a_tree_moved_or_renamed_is_digested_not_parsed(
    posts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, archive_url: str, to: str
) -> None:
    """Its records were keyed by the old path: its files are compared with them by
    their path inside the tree; only an edited one is parsed (on both backends)."""
    _import_url(posts, archive_url)
    with open_archive(archive_url, read_only=True) as archive:
        articles = list(archive.iter_articles())
    uids = _record_uids(archive_url, posts)
    moved = tmp_path / to
    moved.parent.mkdir(exist_ok=True)
    posts.rename(moved)
    edited = moved / EDITED
    edited.write_text(edited.read_text(encoding="utf-8").replace("6.3512", "6.40"),
                      encoding="utf-8")
    _touch(edited)
    reads = Reads(monkeypatch, tmp_path / "reads")
    report, outcomes = _import_url(moved, archive_url)
    assert reads.parsed == [EDITED]
    assert sorted(reads.opened) == sorted(moved.iterdir())  # digested: not trusted by stat
    assert report.counts["unchanged"] == 116 and report.counts["updated"] == 1
    assert report.counts["unread"] == 0 and report.counts["skipped"] == 0
    assert {o.result for o in outcomes if o.path != edited} == {StoreResult.UNCHANGED}
    assert _record_uids(archive_url, moved) == uids  # the same articles, now under the new path
    with open_archive(archive_url, read_only=True) as archive:
        now = list(archive.iter_articles())
    assert [a for a in now if a.uid != EDITED_UID] == [a for a in articles
                                                        if a.uid != EDITED_UID]
    assert "6.40" in next(a for a in now if a.uid == EDITED_UID).body_text
    reads.clear()
    third, _ = _import_url(moved, archive_url)
    assert reads.opened == [] and third.counts["unread"] == 117


def test_a_copy_of_a_tree_is_digested_not_parsed_and_both_stay_known(
    posts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "a.db"
    _import(posts, db)
    (tmp_path / "elsewhere").mkdir()
    copy = tmp_path / "elsewhere" / "posts"
    shutil.copytree(posts, copy)  # new modification times as well as a new path
    (copy / EDITED).unlink()
    reads = Reads(monkeypatch, tmp_path / "reads")
    report, _ = _import(copy, db)
    assert reads.parsed == [] and len(reads.opened) == 116
    assert report.counts["unchanged"] == 116
    reads.clear()
    for tree in (posts, copy):
        again, _ = _import(tree, db)
        assert again.counts["unread"] == len(list(tree.iterdir()))
    assert reads.opened == []


def test_a_new_tree_whose_files_share_paths_with_an_earlier_one_is_parsed(
    posts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the same bytes under the same path inside the tree are taken for the
    same file: another site's posts, of other sizes or bytes, are all read."""
    db = tmp_path / "a.db"
    _import(posts, db)
    other = tmp_path / "other"
    other.mkdir()
    for path in sorted(posts.iterdir())[:20]:
        text = path.read_text(encoding="utf-8")
        (other / path.name).write_text(text.replace("东财", "東財", 1) if "东财" in text
                                       else text + " ", encoding="utf-8")
        _touch(other / path.name)
    reads = Reads(monkeypatch, tmp_path / "reads")
    report, _ = _import(other, db)
    assert sorted(reads.parsed) == sorted(p.name for p in other.iterdir())
    assert report.counts["unchanged"] + report.counts["updated"] + report.counts["new"] \
        + report.counts["skipped"] == 20


def test_a_file_modified_just_before_its_import_is_digested_next_time(
    posts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its time is not trusted: the same clock tick could hold another edit."""
    db = tmp_path / "a.db"
    fresh = posts / EDITED
    fresh.write_bytes(fresh.read_bytes())  # modified now
    _import(posts, db)
    reads = Reads(monkeypatch, tmp_path / "reads")
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
    reads = Reads(monkeypatch, tmp_path / "reads")
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


def test_the_cores_are_sampled_only_for_many_files_to_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Touched files and a few new ones: no core sampling (0.2 s) and no pool
    beyond the one early worker; PARALLEL_FROM files to parse (a touched
    file counting DIGEST_SHARE of one) are worth sampling for more."""
    import caixun.workers as workers

    monkeypatch.setattr(importer, "PARALLEL_FROM", 20)
    started: list[Any] = []
    start_pool = workers.worker_pool
    monkeypatch.setattr(workers, "worker_pool",
                        lambda n, **kw: started.append(("pool", n)) or start_pool(n, **kw))
    monkeypatch.setattr(importer, "default_jobs", lambda: started.append("sample") or 2)
    tree, more = tmp_path / "posts", tmp_path / "more"
    _copies(tree, 120)
    _copies(more, 160)  # the same 120, and 40 more
    db = tmp_path / "a.db"
    report, _ = _import(tree, db)
    # Two processes: the early worker is the one worker.
    assert report.counts["new"] == 120 and started == [("pool", 1), "sample"]
    started.clear()
    for path in tree.iterdir():
        _touch(path)  # digested, found unchanged
    newer = sorted(more.iterdir())[120:]
    for path in newer[:15]:
        shutil.copy(path, tree / path.name)
    report, _ = _import(tree, db)
    assert (report.counts["new"], report.counts["unchanged"], report.counts["unread"]) == (
        15, 120, 0)
    assert started == [("pool", 1)]
    started.clear()
    for path in tree.iterdir():
        _touch(path)
    for path in newer[15:]:
        shutil.copy(path, tree / path.name)  # 25 to parse: worth sampling
    report, _ = _import(tree, db)
    assert (report.counts["new"], report.counts["unchanged"]) == (25, 135)
    assert started == [("pool", 1), "sample"]
    # A tree checked out anew (every time changed): enough files only to digest
    # are work for the workers too, DIGEST_SHARE of a parse each.
    started.clear()
    monkeypatch.setattr(importer, "PARALLEL_FROM", 4)
    for path in tree.iterdir():
        _touch(path)
    report, _ = _import(tree, db)
    assert (report.counts["unchanged"], report.counts["unread"]) == (160, 0)
    assert started == [("pool", 1), "sample"]  # 160 × 1/30 ≥ 4
    # One process asked for: no worker, no sampling.
    started.clear()
    _import(tree, db, jobs=1)
    assert started == []


def _slow_warm_up(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    warm = importer._warm

    def slow() -> None:
        time.sleep(seconds)
        warm()

    monkeypatch.setattr(importer, "_warm", slow)


def test_a_worker_started_at_once_reads_the_files_while_this_process_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The early worker is waited for when EARLY_FROM files are to be parsed (a
    slow warm-up makes sure it is not warm yet); fewer are read here, as
    sooner; none at all, and it is stopped. No worker outlives an import."""
    import multiprocessing

    _slow_warm_up(monkeypatch, 1.0)
    monkeypatch.setattr(importer, "EARLY_FROM", 10)
    tree = tmp_path / "posts"
    _copies(tree, 30)
    files = sorted(tree.iterdir())
    for path in files[6:]:
        path.rename(tmp_path / path.name)
    db = tmp_path / "a.db"
    reads = Reads(monkeypatch, tmp_path / "reads")
    report, _ = _import(tree, db)  # 6 files
    assert report.counts["new"] == 6
    assert set(reads.opened_by().values()) == {os.getpid()}
    assert multiprocessing.active_children() == []
    for path in files[6:]:
        (tmp_path / path.name).rename(path)
    reads.clear()
    report, _ = _import(tree, db)  # 24 more: the worker reads them, or most
    assert report.counts["new"] == 24
    by = reads.opened_by()
    assert set(by) == {path.name for path in files[6:]}
    assert set(by.values()) - {os.getpid()}  # a worker read some
    assert multiprocessing.active_children() == []
    reads.clear()
    report, _ = _import(tree, db)  # nothing to read
    assert report.counts["unread"] == 30 and reads.opened == []
    assert multiprocessing.active_children() == []


def test_a_worker_that_is_warm_reads_even_a_few_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warm before the files to read are known (here: checking them is slow),
    the early worker reads even one."""
    tree = tmp_path / "posts"
    _copies(tree, 3)
    check, warm, warmed = importer._check, importer._warm, tmp_path / "warm"

    def warm_and_say() -> None:
        warm()
        warmed.touch()

    def slow_check(*args: Any) -> Any:
        deadline = time.monotonic() + 60
        while not warmed.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(1.0)  # and the pool has heard it (its first task done)
        yield from check(*args)

    monkeypatch.setattr(importer, "_warm", warm_and_say)
    monkeypatch.setattr(importer, "_check", slow_check)
    reads = Reads(monkeypatch, tmp_path / "reads")
    report, _ = _import(tree, tmp_path / "a.db")
    assert report.counts["new"] == 3
    assert os.getpid() not in reads.opened_by().values()


def test_storing_that_fails_stops_the_worker_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker holds the archive's files open (it forked with them): it must
    end with the import, not when the error is collected (on a full disk it
    kept the deleted write-ahead log's space)."""
    import multiprocessing

    tree = tmp_path / "posts"
    _copies(tree, 80)

    def failing(*args: Any) -> Any:
        raise ArchiveError("a.db: cannot store posts: disk I/O error")

    monkeypatch.setattr(importer, "_store_batch", failing)
    with pytest.raises(ArchiveError) as raised:
        _import(tree, tmp_path / "a.db")
    assert "cannot store posts" in str(raised.value)  # held: its frames too
    assert multiprocessing.active_children() == []


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


def test_a_moments_work_elsewhere_leaves_the_import_its_workers() -> None:
    # A process that keeps a core busy for a quarter of a second as the import
    # samples the cores (a command typed meanwhile): the first sample finds it,
    # the next does not, and the import keeps a worker on every core.
    import multiprocessing

    cores = len(os.sched_getaffinity(0))
    for _ in range(3):  # a core kept busy through every look is other load, not the spike
        spinner = multiprocessing.get_context("fork").Process(target=_spin, args=(0.25,))
        spinner.start()
        try:
            jobs = importer.default_jobs()
        finally:
            spinner.join()
        if jobs == cores:
            break
    assert jobs == cores


@pytest.mark.parametrize("samples, jobs, taken", [
    ([0.0], 2, 1),              # idle: one sample
    ([1.0, 0.1], 2, 2),         # busy a moment: idle on the second look
    ([1.0, 0.9, 0.8], 1, 3),    # busy throughout: one process, after three looks
    ([2.0, 1.4, 0.6], 1, 3),    # the least busy look counts
    ([2.0, 0.3], 2, 2),
])
def test_cores_found_busy_are_looked_at_again(monkeypatch: pytest.MonkeyPatch,
                                              samples: list[float], jobs: int,
                                              taken: int) -> None:
    looks = iter(samples)
    monkeypatch.setattr(importer, "_cores", lambda: 2)
    monkeypatch.setattr(importer, "_busy_cores", lambda: next(looks))
    assert importer.default_jobs() == jobs
    assert len(samples) - sum(1 for _ in looks) == taken


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

    def wait(self, result: _Later) -> None:  # WorkerPool.wait: no worker dies here
        result.wait()


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


@pytest.mark.parametrize("cold_read", [5, 500])
def test_a_cold_process_parses_here_only_when_many_posts_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cold_read: int
) -> None:
    """Its first parse costs it a dictionary's load: not worth it for a few posts,
    while the files only to digest are still read here."""
    monkeypatch.setattr(importer, "WINDOW", 10)
    monkeypatch.setattr(importer, "PARCEL", 3)
    monkeypatch.setattr(importer, "COLD_READ", cold_read)
    tree = tmp_path / "posts"
    _copies(tree, 80)
    paths = sorted(tree.iterdir())
    known = {str(p): importer._read(importer._Job(str(p), str(p))).digest for p in paths[2::3]}
    jobs = [importer._Job(str(p), str(p), 1, 2, importer._Record(1, 2, known[str(p)], "u", ()))
            if str(p) in known else importer._Job(str(p), str(p)) for p in paths]
    pool = _SlowPool(40)
    reads = list(importer._Shared(pool, iter(jobs), warm=lambda: False).reads())  # type: ignore[arg-type]
    here = {job.path for job in jobs} - set(pool.sent)
    assert [r for r in reads if r is not None] == [importer._read(job, True) for job in jobs]
    parsed_here = here - set(known)
    if cold_read == 500:  # 54 posts to parse: the worker parses them all
        assert here and not parsed_here
    else:
        assert parsed_here


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


def _import_in_a_worker(tree: str, db: str) -> int:
    with open_archive(Path(db)) as archive:
        return import_posts([Path(tree)], archive).counts["new"]


def test_an_import_in_a_pools_worker_reads_in_that_process(tmp_path: Path) -> None:
    """A pool's workers are daemonic and may have no children of their own:
    an import there reads in its own process (it failed: "daemonic processes
    are not allowed to have children")."""
    import multiprocessing

    tree = tmp_path / "posts"
    _copies(tree, 70)  # past EARLY_FROM
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_import_in_a_worker, (str(tree), str(tmp_path / "a.db"))) == 70


class WorkerStarts:
    """When the importer decides to start its worker: the chunks of files it had
    checked by then, each time (0: before the check, as for a tree with new files)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.starts: list[int] = []
        self.checked = 0
        early_pool, records = importer._early_pool, SqliteArchive.import_records

        def counting_records(archive: Any, *args: Any, **kwargs: Any) -> Any:
            self.checked += 1
            return records(archive, *args, **kwargs)

        def noting_pool(jobs: int) -> Any:
            self.starts.append(self.checked)
            return early_pool(jobs)

        monkeypatch.setattr(importer, "_early_pool", noting_pool)
        monkeypatch.setattr(SqliteArchive, "import_records", counting_records)

    def of(self, tree: Path, db: Path) -> tuple[list[int], ImportReport]:
        """The starts of one import of ``tree``, and its report."""
        self.starts, self.checked = [], 0
        report, _ = _import(tree, db)
        return self.starts, report


def _new_post(tree: Path, number: int) -> Path:
    source = tree / EDITED
    own = tree / f"2021-12-08-{number:018d}.md"
    own.write_text(source.read_text(encoding="utf-8").replace(EDITED_UID.split(":")[1],
                                                               f"{number:018d}"),
                   encoding="utf-8")
    return own


def test_the_worker_starts_before_the_check_only_when_a_directory_of_the_tree_changed(
    posts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, worker = tmp_path / "a.db", WorkerStarts(monkeypatch)
    assert worker.of(posts, db)[0] == [0]  # never imported: at once
    assert worker.of(posts, db)[0] == []  # nothing changed: none at all
    _new_post(posts, 1)
    starts, report = worker.of(posts, db)
    assert starts == [0] and report.counts["new"] == 1
    assert worker.of(posts, db)[0] == []

    # A directory inside: its own time tells of a file added to it.
    (posts / "more").mkdir()
    shutil.move(_new_post(posts, 2), posts / "more")
    starts, report = worker.of(posts, db)
    assert starts == [0] and report.counts["new"] == 1
    assert worker.of(posts, db)[0] == []
    _new_post(posts, 3).rename(posts / "more" / "third.md")
    os.utime(posts, (1, 1_600_000_000))  # the top's time no different from before
    with open_archive(db) as archive:  # ...as it was recorded
        recorded = archive.import_dirs(str(posts.resolve()))
        archive.record_import_dirs(str(posts.resolve()), {**recorded, "": 1_600_000_000 * 10**9})
    starts, report = worker.of(posts, db)
    assert starts == [0] and report.counts["new"] == 1

    # A file removed: its directory's time changes (nothing to read, nothing started).
    (posts / "more" / "third.md").unlink()
    assert worker.of(posts, db)[0] == [0]
    assert worker.of(posts, db)[0] == []


def test_posts_edited_in_place_are_read_by_a_worker_started_after_the_check(
    posts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No directory changes then: the worker starts once the check has found
    EARLY_FROM files to read, and not for fewer (this process reads them)."""
    db, worker = tmp_path / "a.db", WorkerStarts(monkeypatch)
    worker.of(posts, db)
    before = {a.uid: (a.body_html, a.body_text) for a in _articles(db)}
    names = sorted(p.name for p in posts.iterdir() if not p.name.startswith("-"))

    def edit(chosen: list[str]) -> None:
        for name in chosen:  # in place: the same file, its directory untouched
            _, front, body = (posts / name).read_text(encoding="utf-8").split("---\n", 2)
            with open(posts / name, "w", encoding="utf-8") as post:
                post.write(f"---\n{front}---\n更正：{body}")

    edit(names[:2])
    starts, report = worker.of(posts, db)
    assert starts == [] and report.counts["updated"] == 2
    monkeypatch.setattr(importer, "EARLY_FROM", 3)
    edit(names[2:7])
    starts, report = worker.of(posts, db)
    assert starts == [1] and report.counts["updated"] == 5
    after = {a.uid: (a.body_html, a.body_text) for a in _articles(db)}
    assert sum(after[uid] != before[uid] for uid in before) == 7


_TEST_PROCESS = os.getpid()
_READ_TO_SEND = importer._read_to_send


def _read_in_a_worker_that_dies(parcel: list[Any]) -> bytes:
    """_read_to_send, but the worker dies (as the out-of-memory killer kills it) on
    the parcel holding post 100."""
    if os.getpid() != _TEST_PROCESS and any(job.path.endswith("000100.md") for job in parcel):
        os.kill(os.getpid(), signal.SIGKILL)
    return _READ_TO_SEND(parcel)


def test_an_import_whose_worker_dies_ends_with_the_error_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: it waited for ever for the posts the dead worker had taken. Now it says
    so; what it stored before stays, whole, and the next import reads the rest."""
    monkeypatch.setattr(importer, "PARALLEL_FROM", 20)
    monkeypatch.setattr(importer, "WINDOW", 16)
    monkeypatch.setattr(importer, "_read_to_send", _read_in_a_worker_that_dies)
    tree = tmp_path / "posts"
    _copies(tree, 150)
    db = tmp_path / "a.db"
    with pytest.raises(WorkerError, match=r"^a worker process ended before its work was "
                                          r"done \(killed by SIGKILL\)$"):
        _import(tree, db, jobs=2, batch_size=16)
    stored = _articles(db)
    assert stored and len(stored) < 150
    assert {r[4] for r in _records(db)} == {a.uid for a in stored}
    monkeypatch.setattr(importer, "_read_to_send", _READ_TO_SEND)
    report, _ = _import(tree, db, jobs=2, batch_size=16)
    assert report.counts["unread"] == len(stored)
    assert report.counts["new"] == 150 - len(stored)
    fresh = tmp_path / "fresh.db"
    _import(tree, fresh, jobs=1)
    assert _articles(db) == _articles(fresh)


def test_an_import_whose_idle_worker_is_killed_ends_with_the_error_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: the worker, killed while it waited for its next parcel, kept the task
    pipe's lock; the worker started in its place waited for that lock, and so did
    stopping the pool after the WorkerError: the import hung for ever."""
    import multiprocessing

    import caixun.workers

    monkeypatch.setattr(caixun.workers, "STOP_WAIT", 1.0)
    monkeypatch.setattr(importer, "PARALLEL_FROM", 20)
    monkeypatch.setattr(importer, "WINDOW", 16)
    monkeypatch.setattr(importer, "PARCEL", 4)
    store_batch, killed = importer._store_batch, []

    def store_then_kill(archive: Any, batch: list[Any]) -> list[StoreResult]:
        if not killed:  # the worker reads the parcels it was sent, then waits for more
            time.sleep(0.5)
            for worker in multiprocessing.active_children():
                os.kill(worker.pid, signal.SIGKILL)
                killed.append(worker.pid)
        return store_batch(archive, batch)

    monkeypatch.setattr(importer, "_store_batch", store_then_kill)
    tree = tmp_path / "posts"
    _copies(tree, 150)
    db = tmp_path / "a.db"
    with pytest.raises(WorkerError, match=r"\(killed by SIGKILL\)$"):
        _import(tree, db, jobs=2, batch_size=8)
    assert killed and multiprocessing.active_children() == []
    stored = _articles(db)
    assert stored and len(stored) < 150
    assert {r[4] for r in _records(db)} == {a.uid for a in stored}
    monkeypatch.setattr(importer, "_store_batch", store_batch)
    report, _ = _import(tree, db, jobs=2, batch_size=8)
    assert report.counts["new"] == 150 - len(stored)

"""Disks that fill up, file systems that turn read-only, pages in the way, builds killed.

Issue 9, items 9 and 10. Each fault is real: a small tmpfs mounted for the
test and filled (the tests run as root, as CI does), remounted read-only, a
directory where a page should be, ``kill -9`` of a real ``caixun build``.
Wanted every time: one line naming the file and the cause, exit status 1,
nothing half-written left behind, and the next run finishing the job; and,
whenever a build stops, no page linking to a page that does not exist.
"""

from __future__ import annotations

import html
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caixun.archive import open_archive
from caixun.errors import CaixunError, PublishError
from caixun.importer import import_posts
from caixun.model import Article
from caixun.publish import paths
from caixun.publish.site import NewPages, SiteConfig, SiteWriter, build_site
from caixun.sources.jekyll import read_post
from conftest import POSTS, REPO
from site_helpers import make_article, tree

URL = "https://news.example.com"
CONFIG = SiteConfig(title="财讯测试", url=URL, per_page=5)
SETTINGS = f'[site]\nurl = "{URL}"\nper_page = 5\ntitle = "财讯测试"\n'
ENOSPC = "No space left on device"


# -- the faults ---------------------------------------------------------------------

@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """Mounts small tmpfs disks (``tmpfs("disk", "2m")``); unmounts them afterwards."""
    mounted: list[Path] = []

    def mount(name: str, size: str = "2m") -> Path:
        where = tmp_path / name
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755",
                               "tmpfs", str(where)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"a real full disk needs a tmpfs mount, which is not permitted here "
                        f"(run as root): {proc.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` until ``leave`` bytes are left; delete the file returned to free them."""
    filler = disk / f".filler-{len(list(disk.glob('.filler-*')))}"
    info = os.statvfs(disk)
    with open(filler, "wb", buffering=0) as out, suppress(OSError):
        out.write(b"\0" * max(0, info.f_bavail * info.f_frsize - leave))
        while not leave:  # to the last byte
            out.write(b"\0" * 512)
    return filler


def remount(disk: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], check=True)


# -- running caixun -------------------------------------------------------------------

def caixun(cwd: Path, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real console script, in a fresh process."""
    return subprocess.run(_command(*args), cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _command(*args: str | Path) -> list[str]:
    script = Path(sys.executable).with_name("caixun")
    head = [str(script)] if script.is_file() else [sys.executable, "-m", "caixun.cli"]
    return head + [str(a) for a in args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src")}


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The run failed with exit status 1 and one line of error, no traceback."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and proc.stderr.strip().endswith(errors[0]), proc.stderr
    return errors[0]


# -- import onto a full disk ------------------------------------------------------------

def _uids(path: Path) -> set[str]:
    with open_archive(path) as archive:
        return {a.uid for a in archive.iter_articles()}


@pytest.fixture(scope="module")
def every_uid(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """What importing the whole corpus stores, on a disk with room."""
    path = tmp_path_factory.mktemp("roomy") / "caixun.db"
    with open_archive(path) as archive:
        import_posts([POSTS], archive)
    return _uids(path)


@pytest.mark.parametrize("left_kb, cache_pages, batch", [
    (300, 5, 1000), (120, 5, 1000), (60, 5, 1000),   # full while writing: SQLite rolls back
    (300, 2000, 1000), (60, 2000, 1000),             # full at COMMIT, when the WAL grows
    (300, 5, 16), (150, 2000, 16),                   # some batches fit, one does not
])
def test_import_onto_a_full_disk_names_the_cause_and_keeps_the_archive(
    tmpfs: Callable[[str, str], Path], every_uid: set[str], left_kb: int, cache_pages: int,
    batch: int,
) -> None:
    """Was: "cannot rollback - no transaction is active", the real cause buried."""
    disk = tmpfs("disk", "4m")  # room for the write-ahead log of a whole import
    path = disk / "caixun.db"
    posts = sorted(POSTS.iterdir())
    with open_archive(path) as archive:
        import_posts(posts[:10], archive)
    held = _uids(path)
    filler = fill(disk, left_kb * 1024)
    stored: list[Path] = []  # the files of the batches reported stored (committed)
    with open_archive(path) as archive:
        # A small page cache makes SQLite write (and fail) before COMMIT, as a
        # big import does with the default cache.
        archive._db.execute(f"PRAGMA cache_size={cache_pages}")
        with pytest.raises(CaixunError) as raised:
            import_posts(posts, archive, lambda o: stored.extend([o.path] if o.result else []),
                         batch_size=batch)
    assert str(raised.value).startswith(f"{path}: cannot ")
    assert str(raised.value).endswith("database or disk is full")
    after = _uids(path)  # whole batches only: what it held, and what was reported stored
    assert after == held | {read_post(post).article.uid for post in stored}
    filler.unlink()
    with open_archive(path) as archive:
        report = import_posts(posts, archive)
    assert _uids(path) == every_uid
    assert report.counts["new"] == len(every_uid) - len(after)


def test_caixun_import_onto_a_full_disk_is_one_line_and_a_rerun_finishes(
    tmpfs: Callable[[str, str], Path], every_uid: set[str], tmp_path: Path
) -> None:
    disk = tmpfs("disk", "2m")
    path = disk / "caixun.db"
    few = tmp_path / "few"
    few.mkdir()
    for post in sorted(POSTS.iterdir())[:10]:
        shutil.copy(post, few / post.name)
    assert caixun(tmp_path, "--archive", path, "-q", "import", few).returncode == 0
    held = _uids(path)
    filler = fill(disk, 100 * 1024)
    line = one_error_line(caixun(tmp_path, "--archive", path, "-q", "import", POSTS))
    assert line.startswith(f"Error: {path}: cannot ") and line.endswith("database or disk is full")
    assert _uids(path) == held  # opens, on the full disk, with everything it held
    filler.unlink()
    rerun = caixun(tmp_path, "--archive", path, "import", POSTS)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(every_uid) - len(held)} new" in rerun.stderr.splitlines()[-1]
    assert _uids(path) == every_uid


# -- builds onto a full, read-only or blocked disk ------------------------------------------

def _articles(start: int, stop: int, outlets: int = 6, first_day: int = 1) -> list[Article]:
    return [make_article(n, outlet=f"媒体{n % outlets}", slug=f"meiti{n % outlets}",
                         day=first_day + n % 4, minute=n % 600) for n in range(start, stop)]


def _store(archive_path: Path, articles: list[Article]) -> None:
    with open_archive(archive_path) as archive:
        archive.store_many(articles)


def _reference(tmp_path: Path, archive_path: Path) -> dict[str, bytes]:
    """The site a clean build of this archive gives, on a disk with room."""
    ref = tmp_path / "reference"
    shutil.rmtree(ref, ignore_errors=True)
    ref.mkdir()
    shutil.copy(archive_path, ref / "a.db")
    (ref / "caixun.toml").write_text(SETTINGS)
    done = caixun(ref, "--archive", ref / "a.db", "-q", "build", "--out", ref / "site")
    assert done.returncode == 0, done.stderr
    return tree(ref / "site")


def _whole(root: Path) -> list[str]:
    """Files that are not whole: an HTML page without its end, XML or JSON that does not parse."""
    bad = []
    for path in root.rglob("*"):
        if path.is_dir() or path.name.startswith(".filler"):
            continue
        data = path.read_bytes()
        try:
            if path.suffix == ".html":
                assert data.endswith(b"</html>\n")
            elif path.suffix == ".xml":
                ET.fromstring(data)
            elif path.suffix == ".json":
                json.loads(data)
        except (AssertionError, ET.ParseError, ValueError):
            bad.append(str(path.relative_to(root)))
    return bad


@pytest.mark.parametrize("built_before, left_kb", [
    (False, 0), (False, 400),  # the full build's workers fail: the error comes back whole
    (True, 0), (True, 48), (True, 400),  # in the first pass, the article pages, the index…
])
def test_a_build_onto_a_full_disk_fails_cleanly_and_the_next_one_completes(
    tmpfs: Callable[[str, str], Path], tmp_path: Path, left_kb: int, built_before: bool
) -> None:
    disk = tmpfs("disk", "6m")
    site, archive_path = disk / "site", tmp_path / "a.db"
    (tmp_path / "caixun.toml").write_text(SETTINGS)
    build = ("--archive", archive_path, "-q", "build", "--out", site)
    _store(archive_path, _articles(0, 150))
    if built_before:
        assert caixun(tmp_path, *build).returncode == 0
    _store(archive_path, _articles(150, 450, outlets=9, first_day=3))
    before = tree(site) if built_before else {}
    filler = fill(disk, left_kb * 1024)
    line = one_error_line(caixun(tmp_path, *build))
    assert re.fullmatch(rf"Error: {re.escape(str(site))}(/\S+)?: cannot (write|create the "
                        rf"directory): {ENOSPC}", line), line
    assert not (site / paths.TMP_DIR).exists()  # no temporary file left
    assert _whole(site) == []  # no half file
    after = tree(site)
    for path in before.keys() - after.keys():  # nothing was removed before the end
        pytest.fail(f"{path} was removed by a build that did not finish")
    filler.unlink()
    again = caixun(tmp_path, *build)
    assert again.returncode == 0, again.stderr  # the build state was not saved as complete:
    assert tree(site) == _reference(tmp_path, archive_path)  # this build does the whole job


def test_a_build_onto_a_read_only_disk_is_one_line_and_changes_nothing(
    tmpfs: Callable[[str, str], Path], tmp_path: Path
) -> None:
    disk = tmpfs("disk", "8m")
    site, archive_path = disk / "site", tmp_path / "a.db"
    (tmp_path / "caixun.toml").write_text(SETTINGS)
    build = ("--archive", archive_path, "-q", "build", "--out", site)
    _store(archive_path, _articles(0, 100))
    assert caixun(tmp_path, *build).returncode == 0
    _store(archive_path, _articles(100, 160))
    before = tree(site)
    remount(disk, "ro")
    line = one_error_line(caixun(tmp_path, *build))
    assert line == f"Error: {site}: cannot write: Read-only file system"
    fresh = one_error_line(caixun(tmp_path, "--archive", archive_path, "-q", "build",
                                  "--out", disk / "new"))
    assert fresh == f"Error: {disk / 'new'}: cannot create the directory: Read-only file system"
    remount(disk, "rw")
    assert tree(site) == before
    assert caixun(tmp_path, *build).returncode == 0
    assert tree(site) == _reference(tmp_path, archive_path)


def _page_of(article: Article) -> str:
    return paths.article_path(article.outlet_slug, int(article.published_at.timestamp()),
                              article.file_id)


def _some_article(site: Path) -> Path:
    """The page of article 88, whose next neighbour is new (100), so its links change."""
    return site / _page_of(_articles(88, 89)[0])


def _dir_in_place_of_a_page(site: Path) -> tuple[str, str]:
    page = site / _page_of(_articles(100, 101)[0])  # a new article's
    (page / "stray").mkdir(parents=True)
    return str(page), "cannot write: Is a directory"


def _file_in_place_of_a_directory(site: Path) -> tuple[str, str]:
    shutil.rmtree(site / "category")
    (site / "category").write_text("not a directory")
    return str(site / "category"), "cannot create the directory: a file is in the way"


def _home_is_a_directory(site: Path) -> tuple[str, str]:
    (site / paths.HOME).unlink()
    (site / paths.HOME).mkdir()
    return str(site / paths.HOME), "cannot write: Is a directory"


@pytest.mark.parametrize("block", [_dir_in_place_of_a_page, _file_in_place_of_a_directory,
                                   _home_is_a_directory])
def test_something_in_the_way_of_a_page_is_one_clear_line(
    tmp_path: Path, block: Callable[[Path], tuple[str, str]]
) -> None:
    site, archive_path = tmp_path / "site", tmp_path / "a.db"
    (tmp_path / "caixun.toml").write_text(SETTINGS)
    build = ("--archive", archive_path, "-q", "build", "--out", site)
    _store(archive_path, _articles(0, 100))
    assert caixun(tmp_path, *build).returncode == 0
    _store(archive_path, _articles(100, 130))
    where, problem = block(site)
    assert one_error_line(caixun(tmp_path, *build)) == f"Error: {where}: {problem}"
    assert not (site / paths.TMP_DIR).exists()
    target = Path(where)
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    assert caixun(tmp_path, *build).returncode == 0
    assert tree(site) == _reference(tmp_path, archive_path)


def test_directories_another_process_makes_meanwhile_are_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers of a full build make the same directories at once: at every level,
    the directory a writer is about to make may have been made an instant before."""
    real_mkdir = os.mkdir

    def made_first_by_another(path: str, mode: int = 0o777) -> None:
        if os.path.isdir(os.path.dirname(path)):
            with suppress(FileExistsError):
                real_mkdir(path)  # the other process
        real_mkdir(path, mode)  # FileExistsError, or FileNotFoundError for a missing parent

    writer = SiteWriter(tmp_path / "site")
    monkeypatch.setattr(os, "mkdir", made_first_by_another)
    pages = {"a/2026/03/01/x.html": b"x", "a/2026/03/02/y.html": b"y", "b/c/d/e/f.html": b"f"}
    for path, data in pages.items():
        writer.put(path, data)
    (tmp_path / "site" / "g").write_text("a file in the way")
    with pytest.raises(PublishError, match="a file is in the way"):
        writer.put("g/h/i.html", b"i")
    monkeypatch.undo()
    assert {path: (tmp_path / "site" / path).read_bytes() for path in pages} == pages
    assert writer.report.written == len(pages)


def test_a_write_cut_short_by_the_system_is_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """write() may write fewer bytes than asked (a signal, a pipe, some file
    systems): the writer goes on until the page is whole, never renaming a part."""
    real_write = os.write
    calls: list[int] = []

    def a_few_bytes_at_a_time(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data[:7]))

    pages = {"a/2026/03/01/x.html": "新闻".encode() * 100, "b.html": b"", "c.html": b"c" * 7}
    writer = SiteWriter(tmp_path / "site")
    monkeypatch.setattr(os, "write", a_few_bytes_at_a_time)
    for path, data in pages.items():
        writer.put(path, data)
    monkeypatch.undo()
    assert {path: (tmp_path / "site" / path).read_bytes() for path in pages} == pages
    assert len(calls) == -(-600 // 7) + 1  # the long page in pieces, the short one at once


_CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "garbage of the same length": lambda data: bytes(255 - b for b in data),
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "binary": lambda data: os.urandom(len(data)),
}
@pytest.mark.parametrize("shift", [0, 1, 2])
def test_corrupt_pages_are_rewritten(tmp_path: Path, shift: int) -> None:
    """The incremental build compares bytes with what is on disk: any damage is a change,
    and a pipe in a page's place is replaced, never read."""
    site, archive_path = tmp_path / "site", tmp_path / "a.db"
    (tmp_path / "caixun.toml").write_text(SETTINGS)
    build = ("--archive", archive_path, "-q", "build", "--out", site)
    _store(archive_path, _articles(0, 100))
    assert caixun(tmp_path, *build).returncode == 0
    _store(archive_path, _articles(100, 103))
    damage = sorted(_CORRUPTIONS)
    for n, page in enumerate([site / paths.HOME, site / paths.FEED, site / paths.SEARCH_MANIFEST,
                              _some_article(site)]):
        page.write_bytes(_CORRUPTIONS[damage[(n + shift) % len(damage)]](page.read_bytes()))
    fifo = site / paths.ARCHIVE
    fifo.unlink()
    os.mkfifo(fifo)  # a reader would wait for ever on it
    done = caixun(tmp_path, *build, timeout=60)
    assert done.returncode == 0, done.stderr
    assert tree(site) == _reference(tmp_path, archive_path)


_MANIFESTS = [None, '{"format": 1}', "[]", '{"blocks": 3}', "{", "\x00\xff",
              '{"format": %d, "terms": %d, "levels": %s, "docs_per_chunk": %d, '
              '"blocks": [{"level": "x"}]}']


@pytest.mark.parametrize("manifest", range(len(_MANIFESTS)))
def test_a_damaged_search_index_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           manifest: int) -> None:
    """What the build reads back of the search index (its manifest) may be corrupt, and a
    block it lists may be gone (None: the manifest is left as it is)."""
    from caixun.publish import static_search

    monkeypatch.setattr(static_search, "LEVEL_SIZES", (8, 32))  # many blocks, few articles
    site, archive_path = tmp_path / "site", tmp_path / "a.db"
    _store(archive_path, _articles(0, 30))
    with open_archive(archive_path) as archive:
        build_site(archive, site, CONFIG, jobs=1)
        archive.store_many(_articles(30, 31))
        text = _MANIFESTS[manifest]
        if text is not None:
            if "%" in text:
                text %= (static_search.FORMAT, static_search.TERMS_VERSION,
                         json.dumps(list(static_search.LEVEL_SIZES)), static_search.DOCS_PER_CHUNK)
            (site / paths.SEARCH_MANIFEST).write_text(text)
        shutil.rmtree(site / paths.SEARCH_DIR / "0-1")  # ids 8…15: untouched by the change
        build_site(archive, site, CONFIG, jobs=1)
        full = tmp_path / "full"
        build_site(archive, full, CONFIG, jobs=1)
    assert tree(site) == tree(full)


# -- export onto a full disk -----------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "caixun.db"
    with open_archive(path) as archive:
        import_posts([POSTS], archive)
    return path


@pytest.mark.parametrize("left_kb", [0, 8, 64])
@pytest.mark.parametrize("old_export", [False, True])
def test_export_jsonl_onto_a_full_disk_leaves_no_empty_or_half_file(
    tmpfs: Callable[[str, str], Path], tmp_path: Path, corpus_archive: Path, left_kb: int,
    old_export: bool,
) -> None:
    """Was: a 0-byte (or half) file at the target."""
    disk = tmpfs("disk", "1m")
    target = disk / "out.jsonl"
    good = tmp_path / "good.jsonl"
    assert caixun(tmp_path, "--archive", corpus_archive, "-q", "export", "jsonl",
                  good).returncode == 0
    assert good.stat().st_size > 2 * 64 * 1024  # more than the disk has left
    if old_export:
        target.write_text('{"uid": "an earlier export"}\n')
    kept = target.read_bytes() if old_export else None
    filler = fill(disk, left_kb * 1024)
    line = one_error_line(caixun(tmp_path, "--archive", corpus_archive, "-q", "export",
                                 "jsonl", target))
    assert line == f"Error: {target}: cannot write: {ENOSPC}"
    assert sorted(p.name for p in disk.iterdir()) == \
        sorted([filler.name] + (["out.jsonl"] if old_export else []))  # no temporary file
    assert (target.read_bytes() if target.exists() else None) == kept
    filler.unlink()
    assert caixun(tmp_path, "--archive", corpus_archive, "-q", "export", "jsonl",
                  target).returncode == 0
    assert target.read_bytes() == good.read_bytes()


@pytest.mark.parametrize("left_kb", [0, 64])
def test_export_jekyll_onto_a_full_disk_leaves_whole_posts_only(
    tmpfs: Callable[[str, str], Path], tmp_path: Path, corpus_archive: Path, left_kb: int
) -> None:
    disk = tmpfs("disk", "2m")
    out, good = disk / "posts", tmp_path / "good"
    assert caixun(tmp_path, "--archive", corpus_archive, "-q", "export", "jekyll",
                  good).returncode == 0
    expected = tree(good)
    filler = fill(disk, left_kb * 1024)
    line = one_error_line(caixun(tmp_path, "--archive", corpus_archive, "-q", "export",
                                 "jekyll", out))
    assert re.fullmatch(rf"Error: {re.escape(str(out))}(/\S+)?: cannot (write|create the "
                        rf"directory): {ENOSPC}", line), line
    written = tree(out) if out.exists() else {}
    assert len(written) < len(expected)
    for name, data in written.items():  # every post there is whole; no temporary file
        assert expected.get(name) == data, name
    filler.unlink()
    assert caixun(tmp_path, "--archive", corpus_archive, "-q", "export", "jekyll",
                  out).returncode == 0
    assert tree(out) == expected


# -- no link to a missing page, whenever a build stops ------------------------------------------

_LINK = re.compile(r'(?:href|src)="([^"]+)"')


def dangling(site: Path) -> list[tuple[str, str]]:
    """(page, link) for every link of the site, relative or absolute, to a file not there."""
    found = []
    for page in site.rglob("*.html"):
        if paths.TMP_DIR in page.parts:
            continue
        for link in _LINK.findall(page.read_text(encoding="utf-8")):
            url = html.unescape(link).split("#")[0]
            if url.startswith(URL + "/"):
                url = url[len(URL):]
            if not url.startswith("/") or url.startswith("//"):
                continue
            rel = url[1:]
            target = site / rel / "index.html" if rel == "" or rel.endswith("/") else site / rel
            if not target.is_file():
                found.append((str(page.relative_to(site)), link))
    return found


def _many_new_posts(archive_path: Path) -> None:
    """Runs of new articles in old and new outlets, on old and new days, and stories."""
    new = _articles(100, 700, outlets=9, first_day=3)
    copies = [a.evolve(uid=f"copy:{a.uid}", outlet="转载", outlet_slug="zhuanzai",
                       file_id=f"C{a.file_id}") for a in new[::25]]
    with open_archive(archive_path) as archive:
        old = [a for a in archive.iter_articles()][::20]
        copies += [a.evolve(uid=f"copy:{a.uid}", outlet="转载", outlet_slug="zhuanzai",
                            file_id=f"C{a.file_id}") for a in old]
        archive.store_many(new + copies)


def _save(work: Path, backup: Path) -> None:
    shutil.rmtree(backup, ignore_errors=True)
    shutil.copytree(work / "site", backup / "site")
    shutil.copy(work / "a.db", backup / "a.db")  # with the build state


def _restore(backup: Path, work: Path) -> None:
    shutil.rmtree(work / "site")
    shutil.copytree(backup / "site", work / "site")
    for name in ("a.db-wal", "a.db-shm"):
        (work / name).unlink(missing_ok=True)
    shutil.copy(backup / "a.db", work / "a.db")


@pytest.mark.parametrize("full", [False, True], ids=["incremental", "full"])
def test_a_killed_build_leaves_no_link_to_a_missing_page(tmp_path: Path, full: bool) -> None:
    """kill -9 at random points of a build adding 600 articles (new days, new outlets,
    stories): after every kill each link resolves. Was: 4,567 dangling links."""
    work = tmp_path / "work"
    work.mkdir()
    archive_path, site = work / "a.db", work / "site"
    (work / "caixun.toml").write_text(SETTINGS)
    build: list[str | Path] = ["--archive", archive_path, "-q", "build", "--out", site]
    build += ["--full"] if full else []
    _store(archive_path, _articles(0, 100))
    assert caixun(work, *build).returncode == 0
    _many_new_posts(archive_path)
    _save(work, tmp_path / "backup")
    started = time.monotonic()
    assert caixun(work, *build).returncode == 0  # uninterrupted: how long, and what it gives
    seconds, reference = time.monotonic() - started, tree(site)
    assert dangling(site) == []
    rng, kills, k, attempts, finished = random.Random(9 + full), 10, 0, 0, True
    while k < kills:  # each kill in its own slice of the build's time
        attempts += 1
        assert attempts <= 3 * kills, "the builds ended before they could be killed"
        if k % 2 == 0 or finished:  # odd ones kill a build resuming the killed one before
            _restore(tmp_path / "backup", work)
        proc = subprocess.Popen(_command(*build), cwd=work, env=_env())
        time.sleep(seconds * rng.uniform(k / kills, (k + 1) / kills))
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert dangling(site)[:5] == [], f"after a kill in slice {k} of {kills}"
        assert _whole(site) == []
        if finished:  # faster than the timed build (which a busy machine slowed): aim earlier
            seconds *= 0.8
        else:
            k += 1
    assert caixun(work, *build).returncode == 0
    assert tree(site) == reference
    assert dangling(site) == []


# -- the first pass, write by write ----------------------------------------------------------------

class _Watched(NewPages):
    """Checks, at every file it writes, that the file links only to files that exist."""

    writes: list[str]

    def _replace(self, path: str, data: bytes) -> None:
        for link in re.findall(rb'href="/([^"]*)"', data):
            assert (self.root / link.decode()).is_file() or link.decode() == path, \
                f"{path} links missing {link!r}"
        super()._replace(path, data)
        self.writes.append(Path(path).name)


def _page(links: list[int]) -> bytes:
    body = "".join(f'<li><a href="/p/{n}.html">第{n}页</a></li>' for n in links)
    return f"<!DOCTYPE html>\n<ul>{body}</ul>\n</html>\n".encode()


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(2, 14).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.sets(st.integers(0, n + 2), max_size=4), min_size=n, max_size=n),
    st.permutations(range(n)))))
def test_new_pages_never_link_a_missing_page(tmp_path_factory: pytest.TempPathFactory,
                                             graph: tuple[int, list[set[int]], list[int]]) -> None:
    """Any links among new pages (cycles too), put in any order: at every write each link
    of the file written resolves; each page is whole at the end unless it links a page
    that never came; none is written more than twice."""
    n, links, order = graph
    root = tmp_path_factory.mktemp("pages")
    (root / "p").mkdir()
    (root / "p" / f"{n}.html").write_bytes(_page([]))  # n: a page that exists; n+1, n+2 never come
    first = _Watched(root, CONFIG)
    first.writes = []
    for page in order:
        first.put(f"p/{page}.html", _page(sorted(links[page])))
    first.close()
    never = {n + 1, n + 2}
    for page in range(n):
        path = root / "p" / f"{page}.html"
        if links[page] & never:
            assert f"p/{page}.html" not in first.whole
            assert b"/p/%d.html" % max(links[page] & never) not in path.read_bytes()
        else:
            assert path.read_bytes() == _page(sorted(links[page]))
    assert max((first.writes.count(name) for name in set(first.writes)), default=0) <= 2
    assert [p for p in (root / paths.TMP_DIR).rglob("*") if not p.is_dir()] == []  # none left


def test_a_run_of_new_articles_costs_one_and_a_half_writes_each(tmp_path: Path) -> None:
    """A run of new neighbours (each links the one before and after) is the common case."""
    first = _Watched(tmp_path, CONFIG)
    first.writes = []
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "0.html").write_bytes(_page([]))
    for page in range(1, 101):
        first.put(f"p/{page}.html", _page([page - 1] + ([page + 1] if page < 100 else [])))
    first.close()
    assert len(first.writes) == 150
    assert first.whole == {f"p/{page}.html" for page in range(1, 101)}


_PARTS = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4)


def _entries(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): "dir" if p.is_dir() else "file" for p in root.rglob("*")}


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dirs=st.lists(_PARTS, max_size=4), files=st.lists(_PARTS, max_size=3), target=_PARTS)
def test_a_pages_directories_are_made_as_makedirs_makes_them(
        tmp_path_factory: pytest.TempPathFactory, dirs: list[list[str]], files: list[list[str]],
        target: list[str]) -> None:
    """The writer's mkdir-first way gives what ``os.makedirs(exist_ok=True)`` gives, over
    any tree of directories and files in the way: the same tree, or the same error."""
    from caixun.publish.site import _make_dirs

    outcomes = []
    for make in (lambda p: os.makedirs(p, exist_ok=True), _make_dirs):
        root = tmp_path_factory.mktemp("tree")
        for parts in dirs:
            with suppress(OSError):
                os.makedirs(root.joinpath(*parts), exist_ok=True)
        for parts in files:
            with suppress(OSError):
                root.joinpath(*parts).write_bytes(b"x")
        try:
            make(str(root.joinpath(*target)))
            error = None
        except OSError as exc:
            error = type(exc)
        outcomes.append((error, _entries(root)))
    assert outcomes[0] == outcomes[1]

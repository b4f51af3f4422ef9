"""The static site: golden pages, incremental = full, atomic and interruptible builds."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import feedparser
import pytest

from caixun.archive import SqliteArchive, open_archive
from caixun.errors import PublishError, WorkerError
from caixun.importer import import_posts
from caixun.publish import paths, site
from caixun.publish.site import Renderer, SiteConfig, build_site
from conftest import POSTS, REPO
from site_helpers import broken_links, make_article, mtimes, tree

GOLDEN = Path(__file__).parent / "golden" / "site"
GOLDEN_POSTS = [
    "2022-01-11-NW202201112243109259.md",   # 人民邮电报, HTML body
    "2021-12-08-202112082206672930.md",     # rolling news, old footer
    "2021-12-08-202112082206796814.md",     # raw "<" in the text
    "2021-12-08-202112082206870651.md",     # empty share link
    "2021-12-01-init.md",                   # the site post
]
CONFIG = SiteConfig(title="财讯测试", url="https://news.example.com", per_page=3)
TEMPLATES = REPO / "src" / "caixun" / "publish" / "templates"


def _import(archive: SqliteArchive, names: list[str], tmp_path: Path) -> None:
    posts = tmp_path / "posts"
    posts.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(POSTS / name, posts / name)
    import_posts([posts], archive)


def test_golden_site(archive: SqliteArchive, tmp_path: Path) -> None:
    """A handful of real posts build exactly into the checked-in pages."""
    _import(archive, GOLDEN_POSTS, tmp_path)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=1)
    built, expected = tree(out), tree(GOLDEN)
    if os.environ.get("CAIXUN_UPDATE_GOLDEN"):  # after a deliberate change: review the diff
        shutil.rmtree(GOLDEN, ignore_errors=True)
        shutil.copytree(out, GOLDEN)
        pytest.fail("golden pages rewritten; review them with git diff")
    assert sorted(built) == sorted(expected)
    for path in expected:
        assert built[path] == expected[path], f"{path} differs from the golden page"


def test_article_page_shows_what_a_reader_needs(archive: SqliteArchive, tmp_path: Path) -> None:
    _import(archive, GOLDEN_POSTS, tmp_path)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG)
    html = (out / "renminyoudianbao/2022/01/11/NW202201112243109259.html").read_text()
    assert "<h1>工信部科技司：以更加精准务实举措抓好产业科技创新工作</h1>" in html
    assert '<a class="outlet" href="/category/renminyoudianbao.html">人民邮电报</a>' in html
    assert '<a href="/2022/01/11/"><time datetime="2022-01-11T09:53:30+08:00">2022-01-11 09:53</time></a>' in html
    assert "<p>2021年，工业和信息化部科技司坚持" in html
    assert 'href="http://finews.zning.xyz/html_News/NewsShare.html?infoCode=NW202201112243109259"' in html
    rolling = (out / "emnews/2021/12/08/202112082206796814.html").read_text()
    assert "精度满足&lt;1%" in rolling
    assert 'rel="prev" href="/emnews/2021/12/08/202112082206672930.html"' in rolling
    assert 'rel="next" href="/emnews/2021/12/08/202112082206870651.html"' in rolling


def test_every_internal_link_resolves(archive: SqliteArchive, tmp_path: Path) -> None:
    import_posts([POSTS], archive)
    for config in (CONFIG, SiteConfig(url="https://example.com/news/", per_page=7)):
        out = tmp_path / f"site-{config.per_page}"
        build_site(archive, out, config)
        assert broken_links(out, config.base_path) == []
        assert len(list(out.rglob("*.html"))) > 117


def test_feeds_are_valid_atom(archive: SqliteArchive, tmp_path: Path) -> None:
    import_posts([POSTS], archive)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG)
    for feed_path in ["feed.xml", "category/emnews/feed.xml",
                      "category/renminyoudianbao/feed.xml"]:
        feed = feedparser.parse((out / feed_path).read_bytes())
        assert not feed.bozo, f"{feed_path}: {feed.bozo_exception}"
        assert feed.version == "atom10"
        assert feed.feed.id and feed.feed.updated
        assert any(link.rel == "self" and link.href == f"https://news.example.com/{feed_path}"
                   for link in feed.feed.links)
        assert feed.entries
        ids = [entry.id for entry in feed.entries]
        assert len(set(ids)) == len(ids) and all(i.startswith("urn:uuid:") for i in ids)
        for entry in feed.entries:
            assert entry.link.startswith("https://news.example.com/")
            assert (out / entry.link.removeprefix("https://news.example.com/")).is_file()
            assert entry.updated and entry.title and entry.author
    site = feedparser.parse((out / "feed.xml").read_bytes())
    assert len(site.entries) == 50
    assert site.entries[0].title.startswith("据霍尼韦尔官网消息")  # newest first
    assert site.feed.updated == "2022-05-25T16:00:00Z"  # the newest entry's time


def test_sitemap_splits_past_the_limit(archive: SqliteArchive, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import_posts([POSTS], archive)
    out = tmp_path / "site"
    monkeypatch.setattr("caixun.publish.feeds.SITEMAP_LIMIT", 100)
    build_site(archive, out, CONFIG)
    index = (out / "sitemap.xml").read_text()
    assert "<sitemapindex" in index
    parts = sorted(p.name for p in out.glob("sitemap-*.xml"))
    assert parts == ["sitemap-articles-1.xml", "sitemap-articles-2.xml", "sitemap-pages-1.xml"]
    assert all(f"<loc>https://news.example.com/{p}</loc>" in index for p in parts)
    locs = [loc for part in parts for loc in
            re.findall(r"<loc>([^<]+)</loc>", (out / part).read_text())]
    assert len(locs) == len(set(locs)) > 117
    assert "https://news.example.com/renminyoudianbao/2022/01/11/NW202201112243109259.html" in locs
    robots = (out / "robots.txt").read_text()
    assert "Sitemap: https://news.example.com/sitemap.xml" in robots


def test_a_build_rewrites_only_the_sitemap_part_of_a_new_article(
        archive: SqliteArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Far below the protocol's 50,000 URLs the sitemap is in parts of SITEMAP_PART
    article ids: one file of every article was rewritten by every build."""
    monkeypatch.setattr(site, "SITEMAP_PART", 50)
    import_posts([POSTS], archive)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG)
    parts = sorted(p.name for p in out.glob("sitemap-articles-*.xml"))
    assert parts == [f"sitemap-articles-{n}.xml" for n in (1, 2, 3)]
    assert [len(re.findall("<url>", (out / p).read_text())) for p in parts] == [50, 50, 17]
    archive.store(make_article(1, "人民邮电报", "renminyoudianbao", day=12))
    report = build_site(archive, out, CONFIG, record_paths=True)
    written = {p for p in report.written_paths if p.startswith("sitemap")}
    assert written == {"sitemap-pages-1.xml", "sitemap-articles-3.xml"}  # the index is the same
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)


def _full_tree(archive: SqliteArchive, tmp_path: Path, config: SiteConfig) -> dict[str, bytes]:
    fresh = tmp_path / f"fresh-{time.monotonic_ns()}"
    build_site(archive, fresh, config, full=True)
    result = tree(fresh)
    shutil.rmtree(fresh)
    return result


def test_incremental_build_equals_full_build(archive: SqliteArchive, tmp_path: Path) -> None:
    import_posts([POSTS], archive)
    out = tmp_path / "site"
    assert build_site(archive, out, CONFIG).mode == "full"
    before = mtimes(out)

    # New articles in a new outlet and an existing one, an update, a delete.
    for n in range(1, 8):
        archive.store(make_article(n))
    archive.store(make_article(100, outlet="东财滚动新闻", slug="emnews", day=8, minute=500))
    old = archive.get("jekyll:202112082206672930")
    assert old is not None
    archive.store(old.evolve(title="更正：" + old.title))
    archive.delete("jekyll:202112082207168450")

    report = build_site(archive, out, CONFIG, record_paths=True)
    assert report.mode == "incremental"
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)
    assert not (out / "emnews/2021/12/08/202112082207168450.html").exists()
    # Untouched pages were not rewritten: same mtime.
    untouched = "renminyoudianbao/2022/01/11/NW202201112243109259.html"
    assert mtimes(out)[untouched] == before[untouched]
    assert untouched not in report.written_paths
    assert len(report.written_paths) < len(before) / 2

    again = build_site(archive, out, CONFIG)
    assert again.mode == "unchanged" and again.written == 0


def test_an_incremental_build_makes_only_the_home_blocks_of_changed_outlets(
        archive: SqliteArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import_posts([POSTS], archive)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG)
    made: list[str] = []
    make_block = Renderer.outlet_block

    def outlet_block(self: Renderer, slug: str, *args: Any) -> str:
        made.append(slug)
        return make_block(self, slug, *args)

    monkeypatch.setattr(Renderer, "outlet_block", outlet_block)
    outlets = {a.outlet_slug for a in archive.iter_articles()}
    assert len(outlets) >= 3
    # One new article: its outlet's block is made, the others' are the page's.
    archive.store(make_article(1, "东财滚动新闻", "emnews", day=9, minute=30))
    assert build_site(archive, out, CONFIG).mode == "incremental"
    assert made == ["emnews"]
    full = _full_tree(archive, tmp_path, CONFIG)
    assert (out / "index.html").read_bytes() == full["index.html"]
    # Without the home page on disk (or with one caixun did not write), every block is.
    (out / "index.html").write_text("<html>not ours</html>", encoding="utf-8")
    made.clear()
    archive.store(make_article(2, "东财滚动新闻", "emnews", day=9, minute=31))
    build_site(archive, out, CONFIG)
    assert sorted(made) == sorted(outlets)
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)


def _count_lists_made_apart(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one each time a worker's list pages reach the build."""
    handed: list[int] = []
    hand_to = site._ListsMade.hand_to

    def counted(self: Any, writer: site.SiteWriter) -> None:
        handed.append(self.report.written)
        hand_to(self, writer)

    monkeypatch.setattr(site._ListsMade, "hand_to", counted)
    return handed


# 60: the sitemap is split in parts; lists apart: an incremental build's outlet,
# security and day pages are made in a worker (however few), the rest here.
@pytest.mark.parametrize("sitemap_limit, lists_apart", [(50_000, False), (60, False),
                                                        (50_000, True)])
def test_random_changes_keep_incremental_equal_to_full(
    archive: SqliteArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sitemap_limit: int,
    lists_apart: bool
) -> None:
    """Rounds of random adds, edits, moves and deletes: incremental == full each time."""
    monkeypatch.setattr("caixun.publish.feeds.SITEMAP_LIMIT", sitemap_limit)
    monkeypatch.setattr(site, "LISTS_APART_FROM", 1 if lists_apart else 10**9)
    handed = _count_lists_made_apart(monkeypatch)
    rng = random.Random(20211208 + sitemap_limit)
    import_posts([POSTS], archive)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG)
    outlets = [("上海证券报", "shanghaizhengquanbao"), ("东财滚动新闻", "emnews"),
               ("人民邮电报", "renminyoudianbao"), ("36氪", "36ke")]
    next_id = 1
    for _ in range(6):
        for _ in range(rng.randint(1, 12)):
            action = rng.random()
            uids = [a.uid for a in archive.iter_articles()]
            if action < 0.5 or not uids:
                outlet, slug = rng.choice(outlets)
                archive.store(make_article(next_id, outlet, slug, day=rng.randint(7, 10),
                                           minute=rng.randint(0, 900)))
                next_id += 1
            elif action < 0.7:
                article = archive.get(rng.choice(uids))
                assert article is not None
                archive.store(article.evolve(title=article.title + "（更新）"))
            elif action < 0.85:
                article = archive.get(rng.choice(uids))
                assert article is not None
                outlet, slug = rng.choice(outlets)
                archive.store(article.evolve(outlet=outlet, outlet_slug=slug,
                                             published_at=article.published_at.replace(
                                                 day=rng.randint(7, 10))))
            else:
                archive.delete(rng.choice(uids))
        assert build_site(archive, out, CONFIG, jobs=2).mode == "incremental"
        assert tree(out) == _full_tree(archive, tmp_path, CONFIG)
        assert broken_links(out) == []
    assert len(handed) == (6 if lists_apart else 0)
    assert not lists_apart or sum(handed) > 0


def _store_one_more_first(lists: site._Lists) -> site._ListsMade | None:
    """_make_lists, after another writer stored an article (as a fetcher of ``caixun run``)."""
    with open_archive(lists.archive_path) as other:
        other.store(make_article(99, title="晚到的新闻", day=10))
    return _MAKE_LISTS(lists)


_MAKE_LISTS = site._make_lists


def test_list_pages_a_worker_would_make_from_a_later_archive_are_made_here(
        archive: SqliteArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker reads the archive anew; when another writer stored an article after
    the build's snapshot began, its outlet's and day's pages would link to a page the
    build does not write. It makes nothing then, and the build makes them from its
    own snapshot: the new article comes whole with the next build."""
    monkeypatch.setattr(site, "LISTS_APART_FROM", 1)
    handed = _count_lists_made_apart(monkeypatch)
    import_posts([POSTS], archive)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG)
    for n in range(1, 5):
        archive.store(make_article(n, day=10))
    monkeypatch.setattr(site, "_make_lists", _store_one_more_first)
    assert build_site(archive, out, CONFIG, jobs=2).mode == "incremental"
    assert broken_links(out) == []
    assert all("晚到的新闻" not in page.read_text() for page in out.rglob("*.html"))
    assert handed == []
    assert "测试新闻4" in (out / "2021/12/10/index.html").read_text()
    monkeypatch.setattr(site, "_make_lists", _MAKE_LISTS)
    assert build_site(archive, out, CONFIG, jobs=2).mode == "incremental"
    assert handed != []
    assert "晚到的新闻" in (out / "2021/12/10/index.html").read_text()
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)


def test_a_list_page_a_worker_cannot_write_fails_the_build_and_the_next_repairs_it(
        archive: SqliteArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's error is the build's, as one written here would be: the file and
    the cause; its temporary files are gone and the next build finishes the job."""
    monkeypatch.setattr(site, "LISTS_APART_FROM", 1)
    import_posts([POSTS], archive)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG)
    feed = out / "category/emnews/feed.xml"
    feed.unlink()
    (feed / "stray").mkdir(parents=True)  # only the worker writes it: no new page links it
    archive.store(make_article(1, "东财滚动新闻", "emnews", day=9, minute=30))
    with pytest.raises(PublishError) as failed:
        build_site(archive, out, CONFIG, jobs=2)
    assert str(failed.value) == f"{feed}: cannot write: Is a directory"
    assert type(failed.value.__cause__).__name__ == "RemoteTraceback"  # raised in the worker
    shutil.rmtree(feed)
    assert build_site(archive, out, CONFIG, jobs=2).mode == "incremental"
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)
    assert not (out / paths.TMP_DIR).exists()


_TEST_PROCESS = os.getpid()
_RUN_JOB = site._run_job


def _job_whose_worker_dies(job: site._Job) -> site._Done:
    """_run_job, but the worker of the days' pages dies (the out-of-memory killer's way)."""
    if job.kind == "days" and os.getpid() != _TEST_PROCESS:
        os.kill(os.getpid(), signal.SIGKILL)
    return _RUN_JOB(job)


def _lists_whose_worker_dies(lists: site._Lists) -> site._ListsMade | None:
    if os.getpid() != _TEST_PROCESS:
        os.kill(os.getpid(), signal.SIGKILL)
    return _MAKE_LISTS(lists)


@pytest.mark.parametrize("full", [True, False], ids=["full", "incremental"])
def test_a_build_whose_worker_dies_fails_and_the_next_one_does_its_job(
        archive: SqliteArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        full: bool) -> None:
    """Was: the build waited for ever for the pages the dead worker had taken."""
    monkeypatch.setattr(site, "LISTS_APART_FROM", 1)
    import_posts([POSTS], archive)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG)
    archive.store(make_article(1, "东财滚动新闻", "emnews", day=9, minute=30))
    monkeypatch.setattr(site, "_run_job", _job_whose_worker_dies)
    monkeypatch.setattr(site, "_make_lists", _lists_whose_worker_dies)
    with pytest.raises(WorkerError, match=r"^a worker process ended before its work was "
                                          r"done \(killed by SIGKILL\)$"):
        build_site(archive, out, CONFIG, full=full, jobs=2)
    assert not (out / paths.TMP_DIR).exists()
    assert broken_links(out) == []
    monkeypatch.setattr(site, "_run_job", _RUN_JOB)
    monkeypatch.setattr(site, "_make_lists", _MAKE_LISTS)
    again = build_site(archive, out, CONFIG, jobs=2)
    assert again.mode == "incremental"  # the build state is that of the build before
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)


@pytest.mark.parametrize("jobs", [2, 3])
def test_a_build_whose_idle_workers_are_killed_stops_its_pool_and_ends(
        archive: SqliteArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        jobs: int) -> None:
    """Was: workers killed once their jobs were done (the out-of-memory killer's
    SIGKILL), one of them waiting for a task with the task pipe's lock held,
    left the build waiting for ever as it stopped the pool. Their work was done:
    the build ends, whole, once the pool is left behind (STOP_WAIT, 1 s here)."""
    import multiprocessing

    import caixun.workers

    monkeypatch.setattr(caixun.workers, "STOP_WAIT", 1.0)
    import_posts([POSTS], archive)
    out = tmp_path / "site"
    killed: list[int] = []

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "pages" and done == total - 1 and not killed:  # the last job's result
            time.sleep(0.2)  # every worker back waiting for a task
            for worker in multiprocessing.active_children():
                os.kill(worker.pid, signal.SIGKILL)
                killed.append(worker.pid)

    report = build_site(archive, out, CONFIG, full=True, jobs=jobs, progress=progress)
    assert report.mode == "full" and len(killed) == jobs
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)
    assert broken_links(out) == []
    assert multiprocessing.active_children() == []


def test_a_settings_change_rebuilds_everything(archive: SqliteArchive, tmp_path: Path) -> None:
    import_posts([POSTS], archive)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG)
    report = build_site(archive, out, SiteConfig(title="新名字", url=CONFIG.url, per_page=3))
    assert report.mode == "full"
    assert "新名字" in (out / "index.html").read_text()
    assert "新名字" in (out / "emnews/2021/12/08/202112082206672930.html").read_text()


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_full_rebuild_removes_every_file_it_did_not_write(
        archive: SqliteArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    """What a full build produced comes back from its workers as digests (PathSet):
    left-over files anywhere in the site go, and nothing it wrote, even where a
    worker forgot the directories it made (DIRS_KEPT)."""
    monkeypatch.setattr(site, "DIRS_KEPT", 3)
    import_posts([POSTS], archive)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG, jobs=jobs)
    gone = "emnews/2021/12/08/202112082207168450.html"
    assert (out / gone).is_file()
    archive.delete("jekyll:202112082207168450")
    left_over = ["emnews/2021/12/08/left-over.html", "old/deep/dir/page.html",
                 "search/0-0/s999.bin", "search/9-9/m.json", "绿色/页.html"]
    for name in left_over:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("old")
    build_site(archive, out, CONFIG, full=True, jobs=jobs)
    assert not (out / gone).exists()
    assert not any((out / name).exists() for name in left_over)
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_first_build_writes_each_file_once_and_a_rebuild_only_what_differs(
        archive: SqliteArchive, tmp_path: Path, jobs: int) -> None:
    """Into an empty directory pages are written without comparing each with the file
    there first (there is none); over a built site they are compared, so a full
    rebuild writes only the pages that differ on disk (one tampered with, one gone)."""
    import_posts([POSTS], archive)
    out = tmp_path / "site"
    out.mkdir()
    first = build_site(archive, out, CONFIG, jobs=jobs)
    files = sorted(tree(out))
    assert (first.written, first.unchanged) == (len(files), 0)
    tampered, gone = out / files[len(files) // 3], out / files[2 * len(files) // 3]
    tampered.write_bytes(tampered.read_bytes() + b" ")
    gone.unlink()
    again = build_site(archive, out, CONFIG, full=True, jobs=jobs)
    assert (again.written, again.unchanged) == (2, len(files) - 2)
    assert tree(out) == _full_tree(archive, tmp_path, CONFIG)


def test_a_theme_overrides_a_template(archive: SqliteArchive, tmp_path: Path) -> None:
    _import(archive, GOLDEN_POSTS, tmp_path)
    theme = tmp_path / "theme"
    theme.mkdir()
    (theme / "day.html").write_text(
        '{% extends "base.html" %}{% block main %}<p class="mine">{{ day }}: '
        '{{ refs | length }}</p>{% endblock %}', encoding="utf-8")
    out = tmp_path / "site"
    build_site(archive, out, SiteConfig(url=CONFIG.url, theme=str(theme)))
    assert '<p class="mine">2021-12-08: 3</p>' in (out / "2021/12/08/index.html").read_text()
    assert "<h1>" in (out / "archive/index.html").read_text()  # others stay built-in


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary directory of the test's own, where Jinja puts its cache directory."""
    import tempfile

    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def _compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the templates compiled from here on."""
    import jinja2

    compiled: list[str] = []
    compile_ = jinja2.Environment.compile

    def counted(self: jinja2.Environment, source: Any, name: str | None = None,
                *args: Any, **kwargs: Any) -> Any:
        compiled.append(str(name))
        return compile_(self, source, name, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counted)
    return compiled


def test_compiled_templates_are_kept_for_the_next_build(
        archive: SqliteArchive, tmp_path: Path, private_tmp: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _import(archive, GOLDEN_POSTS, tmp_path)
    compiled = _compiles(monkeypatch)
    build_site(archive, tmp_path / "first", CONFIG, jobs=1)
    assert {"article.html", "base.html", "home.html", "day.html"} <= set(compiled)
    assert len(list(private_tmp.glob("_jinja2-cache-*/*.cache"))) == len(set(compiled))
    compiled.clear()
    build_site(archive, tmp_path / "second", CONFIG, full=True, jobs=1)
    assert compiled == []  # every template read from the cache
    monkeypatch.setattr(site, "template_cache", lambda env, config: None)
    build_site(archive, tmp_path / "uncached", CONFIG, full=True, jobs=1)
    assert compiled  # compiled again, and the same pages either way
    assert tree(tmp_path / "second") == tree(tmp_path / "uncached") == tree(tmp_path / "first")


def test_a_theme_template_edited_is_compiled_again(
        archive: SqliteArchive, tmp_path: Path, private_tmp: Path) -> None:
    _import(archive, GOLDEN_POSTS, tmp_path)
    theme = tmp_path / "theme"
    theme.mkdir()
    config = SiteConfig(url=CONFIG.url, theme=str(theme))
    for mark in ("mine", "ours"):  # the same name, the same size, another text
        (theme / "day.html").write_text(
            '{% extends "base.html" %}{% block main %}<p class="' + mark + '">{{ day }}</p>'
            '{% endblock %}', encoding="utf-8")
        out = tmp_path / mark
        build_site(archive, out, config, jobs=1)
        assert f'<p class="{mark}">2021-12-08</p>' in (out / "2021/12/08/index.html").read_text()


def test_templates_compiled_under_other_settings_are_not_used(
        archive: SqliteArchive, tmp_path: Path, private_tmp: Path) -> None:
    """Compiling folds filters applied to constants: a template compiled for one site
    path must not serve another (nor other syntax options, nor other filters)."""
    def key(env: Any, config: SiteConfig = CONFIG) -> str:
        cache = site.template_cache(env, config)
        assert cache is not None
        return cache.get_cache_key("article.html")

    first = key(Renderer(CONFIG).env)
    assert key(Renderer(CONFIG).env) == first
    for change in ({"trim_blocks": True}, {"autoescape": False},
                   {"variable_start_string": "[["}):
        assert key(Renderer(CONFIG).env.overlay(**change)) != first
    fewer = Renderer(CONFIG).env
    del fewer.filters["day_path"]
    assert key(fewer) != first
    assert key(Renderer(CONFIG).env, replace(CONFIG, url=CONFIG.url + "/news")) != first
    # Built in turn under two site paths, in one process, with one cache, and without:
    _import(archive, GOLDEN_POSTS, tmp_path)
    for url in ("https://news.example.com/news", CONFIG.url, "https://news.example.com/news"):
        config = replace(CONFIG, url=url)
        build_site(archive, tmp_path / "cached", config, full=True, jobs=1)
        with pytest.MonkeyPatch.context() as uncached:
            uncached.setattr(site, "template_cache", lambda env, config: None)
            build_site(archive, tmp_path / "compiled", config, full=True, jobs=1)
        assert tree(tmp_path / "cached") == tree(tmp_path / "compiled"), url


def test_a_template_cache_that_fails_costs_a_compilation_not_the_build(
        archive: SqliteArchive, tmp_path: Path, private_tmp: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    from jinja2 import bccache

    _import(archive, GOLDEN_POSTS, tmp_path)
    build_site(archive, tmp_path / "expected", CONFIG, full=True, jobs=1)
    shutil.rmtree(private_tmp)
    private_tmp.mkdir()

    def full_disk(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as failing:  # nothing can be written
        failing.setattr(bccache.tempfile, "NamedTemporaryFile", full_disk)
        build_site(archive, tmp_path / "unwritten", CONFIG, full=True, jobs=1)
    assert not list(private_tmp.glob("_jinja2-cache-*/*.cache"))
    build_site(archive, tmp_path / "cached", CONFIG, full=True, jobs=1)  # fills the cache
    cached = list(private_tmp.glob("_jinja2-cache-*/*.cache"))
    assert cached
    cached[0].write_bytes(cached[0].read_bytes()[:40])  # a torn file
    compiled = _compiles(monkeypatch)
    real_open = open

    def failing_read(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if str(file).endswith(".cache") and str(file) != str(cached[0]) and "r" in mode:
            raise OSError(errno.EIO, "Input/output error")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(bccache, "open", failing_read, raising=False)
    build_site(archive, tmp_path / "unread", CONFIG, full=True, jobs=1)
    assert len(set(compiled)) == len(cached)  # every template compiled again
    for name in ("unwritten", "cached", "unread"):
        assert tree(tmp_path / name) == tree(tmp_path / "expected"), name


def test_without_a_private_cache_directory_templates_are_compiled_each_time(
        archive: SqliteArchive, tmp_path: Path, private_tmp: Path) -> None:
    _import(archive, GOLDEN_POSTS, tmp_path)
    (private_tmp / f"_jinja2-cache-{os.getuid()}").write_text("not a directory")
    assert site.template_cache(Renderer(CONFIG).env, CONFIG) is None
    build_site(archive, tmp_path / "site", CONFIG, jobs=1)
    assert (tmp_path / "site/2021/12/08/index.html").is_file()


_LINK_FILTERS = re.compile(
    r"\{\{ (?P<value>[^|{}]+?) \| (?:(?P<path>\w+_path) \| )?(?P<link>url|absolute|article_url) \}\}")


def _as_functions(template: str) -> str:
    """A built-in template with its link filters written as the functions a theme calls:
    ``{{ day | day_path | url }}`` as ``{{ url(day_path(day)) }}``."""
    def call(match: re.Match[str]) -> str:
        value = match["value"]
        inner = f"{match['path']}({value})" if match["path"] else value
        return f"{{{{ {match['link']}({inner}) }}}}"

    return _LINK_FILTERS.sub(call, template)


def test_a_theme_calling_the_link_functions_builds_the_same_site(
        archive: SqliteArchive, tmp_path: Path) -> None:
    _import(archive, GOLDEN_POSTS, tmp_path)
    theme = tmp_path / "theme"
    theme.mkdir()
    rewritten = 0
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        (theme / template.name).write_text(_as_functions(text), encoding="utf-8")
        rewritten += _as_functions(text) != text
    assert rewritten >= 10 and "| url" not in "".join(
        p.read_text(encoding="utf-8") for p in theme.iterdir())
    config = SiteConfig(title=CONFIG.title, url="https://news.example.com/news")  # a base path
    build_site(archive, tmp_path / "built-in", config)
    build_site(archive, tmp_path / "themed", replace(config, theme=str(theme)))
    assert tree(tmp_path / "themed") == tree(tmp_path / "built-in")


def test_autorefresh_only_on_list_pages(archive: SqliteArchive, tmp_path: Path) -> None:
    _import(archive, GOLDEN_POSTS, tmp_path)
    out = tmp_path / "site"
    build_site(archive, out, SiteConfig(url=CONFIG.url, refresh=60))
    refresh = '<meta http-equiv="refresh" content="60">'
    assert refresh in (out / "index.html").read_text()
    assert refresh in (out / "category/emnews.html").read_text()
    assert refresh not in (out / "emnews/2021/12/08/202112082206672930.html").read_text()


def _build_command(archive_path: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "caixun.cli", "--archive", str(archive_path), "-q",
            "build", "--out", str(out)]


@pytest.mark.parametrize("first_build_done", [False, True])
def test_a_killed_build_is_repaired_by_the_next(tmp_path: Path, first_build_done: bool) -> None:
    """kill -9 in the middle of a build; the next build gives the clean full result."""
    archive_path, out = tmp_path / "a.db", tmp_path / "site"
    with open_archive(archive_path) as archive:
        import_posts([POSTS], archive)
        for n in range(1, 1500):
            archive.store(make_article(n, outlet=f"媒体{n % 40}", slug=f"meiti{n % 40}",
                                       day=1 + n % 28))
        if first_build_done:
            build_site(archive, out, CONFIG)
            for n in range(1500, 2500):
                archive.store(make_article(n, outlet=f"媒体{n % 40}", slug=f"meiti{n % 40}",
                                           day=1 + n % 28, title=f"第二批{n}"))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    (tmp_path / "caixun.toml").write_text('[site]\nurl = "https://news.example.com"\n'
                                          "per_page = 3\ntitle = \"财讯测试\"\n")
    proc = subprocess.Popen(_build_command(archive_path, out), cwd=tmp_path, env=env)
    deadline = time.monotonic() + 60
    target = 600 if not first_build_done else 20
    while time.monotonic() < deadline and proc.poll() is None:
        done = sum(1 for _ in out.rglob("*.html")) if not first_build_done else \
            sum(1 for p in out.rglob("*.html") if "第二批" in p.read_text())
        if done >= target:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the build finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for path in out.rglob("*"):  # no half-written file is visible, whatever was done
        assert path.is_dir() or paths_ok(path)
    subprocess.run(_build_command(archive_path, out), cwd=tmp_path, env=env, check=True)
    assert not (out / ".caixun-tmp").exists()
    with open_archive(archive_path) as archive:
        assert tree(out) == _full_tree(archive, tmp_path, CONFIG)


def paths_ok(path: Path) -> bool:
    if ".caixun-tmp" in path.parts:
        return True  # temporary files are never published and are swept next build
    data = path.read_bytes()
    return data.endswith(b"</html>\n") or path.suffix != ".html"


def test_a_deleted_site_directory_is_built_again(archive: SqliteArchive, tmp_path: Path) -> None:
    """The archive remembers the last build of a directory; a directory removed since
    (or emptied) is not 'unchanged' but built again whole."""
    import_posts([POSTS], archive)
    out = tmp_path / "site"
    build_site(archive, out, CONFIG)
    expected = tree(out)
    shutil.rmtree(out)
    report = build_site(archive, out, CONFIG)
    assert report.mode == "full" and tree(out) == expected

"""`caixun run` with ``import.paths``: post files another program writes, imported while it runs.

A real subprocess, real corpus posts copied into a directory it watches, the
site it serves read over HTTP.
"""

from __future__ import annotations

import html
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from caixun.archive import open_archive
from caixun.errors import ArchiveError, ConfigError
from caixun.publish.paths import article_path
from caixun.settings import load_settings

from conftest import POSTS
from test_run import Daemon, _free_port, _wait

# The corpus' rolling posts, oldest first by their ids; the last ones arrive while it runs.
ROLLING = sorted(p for p in POSTS.glob("2021-12-08-*.md"))
LATER = 5


def _served(port: int, path: str) -> str | None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return str(response.read().decode("utf-8"))
    except (urllib.error.URLError, OSError):
        return None


def _article_path(db: Path, uid: str) -> str | None:
    """The served path of an article, once the archive has it."""
    try:
        with open_archive(db, read_only=True) as archive:
            refs = archive.refs_by_uid([uid])
    except ArchiveError:  # polled while the daemon creates the archive
        return None
    return "/" + article_path(refs[0].outlet_slug, refs[0].published_ts, refs[0].file_id) \
        if refs else None


def _uid(post: Path) -> str:
    return "jekyll:" + post.stem.split("-", 3)[3]


def test_posts_written_while_caixun_run_runs_are_stored_built_and_served(tmp_path: Path) -> None:
    posts = tmp_path / "posts"
    posts.mkdir()
    for post in ROLLING[:-LATER]:
        shutil.copy2(post, posts)
    port = _free_port()
    (tmp_path / "caixun.toml").write_text(
        f'[site]\nurl = "http://127.0.0.1:{port}"\n\n[import]\npaths = ["posts", "gone"]\n'
        'every = 1\n',
        encoding="utf-8")  # no [[sources]]: the posts are the site's only input
    daemon = Daemon(tmp_path, port)
    db = tmp_path / "caixun.db"
    try:
        first = ROLLING[0]
        _wait("the first posts on the site",
              lambda: (path := _article_path(db, _uid(first))) is not None
              and _served(port, path) is not None, daemon)
        for post in ROLLING[-LATER:]:  # written by the other program while caixun runs
            shutil.copy2(post, posts)
        (posts / "2021-12-08-202112089999999999.md").write_bytes(b"\x00\x01 not a post")
        newest = ROLLING[-1]
        _wait("the posts written later on the site",
              lambda: (path := _article_path(db, _uid(newest))) is not None
              and _served(port, path) is not None, daemon)
        with open_archive(db, read_only=True) as archive:
            title = archive.get(_uid(newest)).title  # type: ignore[union-attr]
        _wait("the newest post on the home page",
              lambda: html.escape(title, quote=False) in (_served(port, "/") or ""),
              daemon)
        time.sleep(3)  # three more imports: the broken file is read each time
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        code = daemon.proc.wait(timeout=30)
    log = daemon.text()
    assert code == 0, log
    with open_archive(db, read_only=True) as archive:
        assert archive.count() == len(ROLLING)
    assert "polling 0 source(s); importing posts, gone every 1 s" in log
    [gone] = [line for line in log.splitlines() if "import: gone:" in line]  # said once
    assert "cannot read: No such file or directory (skipped)" in gone, log
    # One summary line per import that stored news (the later posts may take two).
    stored = [int(n) for n in re.findall(r"import: \d+ files: (\d+) new", log)]
    assert stored[0] == len(ROLLING) - LATER and sum(stored[1:]) == LATER, log
    broken = [line for line in log.splitlines() if "202112089999999999" in line]
    assert len(broken) == 1 and "binary data (NUL bytes), not a post (skipped)" in broken[0], log
    assert "task failed" not in log and log.rstrip().endswith("stopped"), log


def test_import_paths_must_be_a_list_of_paths(tmp_path: Path) -> None:
    config = tmp_path / "caixun.toml"
    for bad in ('"posts"', '["posts", ""]', "[1]"):
        config.write_text(f"[import]\npaths = {bad}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=r"caixun\.toml: import\.paths must be a list of "
                                              r"paths"):
            load_settings(config)
    config.write_text('[import]\npaths = ["posts", "/srv/site/_posts"]\nevery = 0.5\n',
                      encoding="utf-8")
    with pytest.raises(ConfigError, match=r"import\.every must be a number"):
        load_settings(config)
    config.write_text('[import]\npaths = ["posts", "/srv/site/_posts"]\n', encoding="utf-8")
    assert load_settings(config)["import.paths"] == ["posts", "/srv/site/_posts"]


def test_a_stop_during_an_import_ends_it_at_its_next_file_keeping_what_was_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop comes once the first batch (10 posts) is stored: the import ends
    there, instead of storing the other 107 before the daemon can stop."""
    import asyncio

    import caixun.importer as importer
    from caixun import run
    from caixun.fetch import FetchSettings
    from caixun.publish.site import SiteConfig

    posts = tmp_path / "posts"
    shutil.copytree(POSTS, posts)
    stop = asyncio.Event()
    loop: list[asyncio.AbstractEventLoop] = []
    real_import = importer.import_posts

    def import_in_batches_of_ten(paths: Any, archive: Any, on_outcome: Any, **kwargs: Any) -> Any:
        def heard(outcome: Any) -> None:
            loop[0].call_soon_threadsafe(stop.set)
            time.sleep(0.05)  # the stop reaches the import task meanwhile
            on_outcome(outcome)
        return real_import(paths, archive, heard, batch_size=10, jobs=1)

    monkeypatch.setattr(importer, "import_posts", import_in_batches_of_ten)
    options = run.RunOptions(archive_path=tmp_path / "caixun.db", out=tmp_path / "site",
                             site=SiteConfig(), fetch=FetchSettings(), serve=False,
                             imports=(posts,))
    lines: list[str] = []

    async def main() -> None:
        loop.append(asyncio.get_running_loop())
        await asyncio.wait_for(run.run_daemon(options, [], lines.append, stop), 60)

    asyncio.run(main())
    with open_archive(tmp_path / "caixun.db", read_only=True) as archive:
        stored = archive.count()
        recorded = archive.import_records([str(p.resolve()) for p in posts.iterdir()],
                                          importer.READER_VERSION)
    assert stored == 10, lines
    assert len(recorded) == 10  # a record for each file whose article is stored, no other
    assert not any("task failed" in line for line in lines), lines

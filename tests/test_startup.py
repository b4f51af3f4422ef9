"""Start-up and progress: a command imports only what it uses; a long build shows a bar.

The child processes report ``sys.modules``; no test here measures time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from caixun import cli, segment
from caixun.archive import open_archive
from caixun.cli import main
from caixun.importer import import_posts
from caixun.publish.site import SiteConfig, build_site
from caixun.search_api import search_record
from conftest import POSTS, REPO

# What no command below may import: the web server, the fetcher, the site builder.
NEVER = ("starlette", "uvicorn", "httpx", "jinja2", "feedparser", "caixun.fetch",
         "caixun.publish.site")
# ... nor, for --version and --help, the archive, the settings or rich.
NOT_FOR_HELP = NEVER + ("rich", "caixun.archive", "caixun.settings", "caixun.segment",
                        "nh3", "selectolax", "rjieba")
NOT_FOR_SEARCH = NEVER + ("rich", "asyncio", "yaml", "caixun.importer", "selectolax", "nh3")

CHILD = """
import json, sys
import caixun.cli
modules_file, *args = sys.argv[1:]
status = None
try:
    caixun.cli.main(args, prog_name="caixun")
except SystemExit as exc:
    status = exc.code
with open(modules_file, "w") as out:
    json.dump({"status": status, "modules": sorted(sys.modules)}, out)
"""

_NAMES = sorted(p.name for p in POSTS.iterdir() if not p.name.startswith("-"))
# Thirty posts, and those that the queries below find.
FEW_POSTS = sorted(set(_NAMES[:30]) | {name for name in _NAMES if any(
    word in (POSTS / name).read_text(encoding="utf-8") for word in ("央行", "A股", "人民银行"))})
CONFIG = SiteConfig(title="财讯测试", url="https://news.example.com", per_page=3)
PROGRESS_MARKS = re.compile("\x1b\\[|━|building")


def _child(tmp_path: Path, *args: str) -> tuple[set[str], str]:
    modules = tmp_path / "modules.json"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(modules), *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    report = json.loads(modules.read_text())
    assert report["status"] in (0, None), proc.stderr
    return set(report["modules"]), proc.stdout


def _posts(tmp_path: Path, names: list[str]) -> Path:
    posts = tmp_path / "posts"
    posts.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(POSTS / name, posts / name)
    return posts


@pytest.fixture
def small_archive(tmp_path: Path) -> Path:
    db = tmp_path / "small.db"
    with open_archive(db) as archive:
        import_posts([_posts(tmp_path, FEW_POSTS)], archive)
    return db


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_import_almost_nothing(tmp_path: Path, args: list[str]) -> None:
    modules, out = _child(tmp_path, *args)
    assert "caixun" in out
    assert not modules & set(NOT_FOR_HELP), sorted(modules & set(NOT_FOR_HELP))


def test_importing_the_cli_imports_almost_nothing(tmp_path: Path) -> None:
    modules = tmp_path / "modules.json"
    code = f"import json, sys, caixun.cli; json.dump(sorted(sys.modules), open({str(modules)!r}, 'w'))"
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    loaded = set(json.loads(modules.read_text()))
    assert not loaded & set(NOT_FOR_HELP), sorted(loaded & set(NOT_FOR_HELP))


# What a small incremental build needs none of: numpy (its search blocks' bitmaps are
# small), worker processes, what xml.sax.saxutils would bring, the HTML parser and sanitizer.
NOT_FOR_A_SMALL_BUILD = ("numpy", "multiprocessing", "urllib.request", "http.client",
                         "xml.sax", "rjieba", "rich", "selectolax", "nh3")


# ... nor a small import: numpy without numpy.ma (np.unique's); in one process
# (--jobs 1), no worker either (by default one starts at once: see importer._early_pool).
NOT_FOR_A_SMALL_IMPORT = NEVER + ("numpy.ma", "rich")


@pytest.mark.parametrize("jobs", [(), ("--jobs", "1")])
def test_a_small_import_imports_only_what_it_uses(tmp_path: Path, jobs: tuple[str, ...]) -> None:
    posts = _posts(tmp_path, FEW_POSTS[:10])
    modules, _ = _child(tmp_path, "-q", "--archive", str(tmp_path / "a.db"), "import", *jobs,
                        str(posts))
    assert "caixun.importer" in modules
    unused = set(NOT_FOR_A_SMALL_IMPORT) | ({"multiprocessing"} if jobs else set())
    assert not modules & unused, sorted(modules & unused)
    if jobs:  # read here (by default too, as the worker is not warm yet: not asserted)
        assert {"numpy", "rjieba"} <= modules
    with open_archive(tmp_path / "a.db", read_only=True) as archive:
        assert archive.count() == 10


def test_a_re_import_of_unchanged_files_imports_no_parser(tmp_path: Path) -> None:
    posts = _posts(tmp_path, FEW_POSTS[:10])
    hour_ago = time.time() - 3600  # older than a stat can be trusted for (RECENT_NS)
    for post in posts.iterdir():
        os.utime(post, (hour_ago, hour_ago))
    db = tmp_path / "a.db"
    with open_archive(db) as archive:
        import_posts([posts], archive)
    modules, _ = _child(tmp_path, "--archive", str(db), "import", str(posts))
    assert "caixun.importer" in modules
    # Nothing is read, so nothing parses, segments or fingerprints.
    unused = {"yaml", "rjieba", "numpy"}
    assert not modules & unused, sorted(modules & unused)


def test_a_small_incremental_build_imports_only_what_it_uses(tmp_path: Path) -> None:
    db, site = tmp_path / "a.db", tmp_path / "site"
    with open_archive(db) as archive:
        import_posts([_posts(tmp_path, FEW_POSTS[:20])], archive)
    build = ("--archive", str(db), "build", "--out", str(site))
    assert "full build" in subprocess.run(
        [sys.executable, "-m", "caixun.cli", *build], capture_output=True, text=True,
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO / "src")}).stderr
    with open_archive(db) as archive:
        import_posts([_posts(tmp_path, FEW_POSTS[20:])], archive)
    modules, _ = _child(tmp_path, *build)
    assert "caixun.publish.site" in modules and "jinja2" in modules
    assert not modules & set(NOT_FOR_A_SMALL_BUILD), sorted(modules & set(NOT_FOR_A_SMALL_BUILD))
    assert (site / "index.html").is_file()


def _jieba_hits(db: Path, query: str) -> list[dict[str, object]]:
    """The results as before: every query term cut by jieba, as it always was."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(segment, "_term_words", segment._cut_term_words)
        with open_archive(db, read_only=True) as archive:
            return [search_record(hit) for hit in archive.search(query, limit=20, now=0)]


@pytest.mark.parametrize("query", ["央行", "人民银行", "A股", "A股 -央行", '"日本央行"'])
def test_search_imports_neither_server_nor_builder_and_finds_the_same(
    tmp_path: Path, small_archive: Path, query: str
) -> None:
    modules, out = _child(tmp_path, "--archive", str(small_archive), "search", "--json", query)
    assert not modules & set(NOT_FOR_SEARCH), sorted(modules & set(NOT_FOR_SEARCH))
    found = json.loads(out)
    expected = _jieba_hits(small_archive, query)
    # Scores blend in recency (the clock moves): compare what was found, in order.
    assert [h["uid"] for h in found] == [h["uid"] for h in expected]
    assert [h["snippet"] for h in found] == [h["snippet"] for h in expected]
    if query == "央行":
        assert found and "rjieba" not in modules  # a short Chinese term needs no dictionary


def test_short_chinese_terms_parse_as_jieba_would_cut_them() -> None:
    """One to three Chinese characters: the query is the same without jieba's dictionary."""
    texts = [p.read_text(encoding="utf-8") for p in sorted(POSTS.iterdir())]
    runs = {run for text in texts for run in re.findall(f"[{segment._CJK}]+", text)}
    terms = {run[i:i + n] for run in runs for n in (1, 2, 3) for i in range(len(run) - n + 1)}
    assert len(terms) > 5000
    for term in sorted(terms):
        assert segment._term_words(term) == segment._cut_term_words(term), term


# -- progress ------------------------------------------------------------------------------

def _check_progress(calls: list[tuple[str, int, int]]) -> None:
    assert calls, "the build reported no progress"
    dones = [done for _, done, _ in calls]
    assert {total for _, _, total in calls} == {calls[-1][2]}
    assert dones == sorted(dones) and dones[0] >= 0
    assert dones[-1] == calls[-1][2]
    assert all(phase for phase, _, _ in calls)


@pytest.mark.parametrize("jobs", [1, 2])
def test_build_reports_progress_full_and_incremental(tmp_path: Path, jobs: int) -> None:
    out = tmp_path / "site"
    with open_archive(tmp_path / "a.db") as archive:
        import_posts([_posts(tmp_path, FEW_POSTS[:20])], archive)
        full: list[tuple[str, int, int]] = []
        assert build_site(archive, out, CONFIG, jobs=jobs,
                          progress=lambda *call: full.append(call)).mode == "full"
        _check_progress(full)

        again: list[tuple[str, int, int]] = []  # a full build over a built site: two passes
        build_site(archive, out, CONFIG, jobs=jobs, full=True,
                   progress=lambda *call: again.append(call))
        _check_progress(again)
        assert again[0][0] == "new pages"

        import_posts([_posts(tmp_path, FEW_POSTS[20:])], archive)
        incremental: list[tuple[str, int, int]] = []
        assert build_site(archive, out, CONFIG, jobs=jobs,
                          progress=lambda *call: incremental.append(call)).mode == "incremental"
        _check_progress(incremental)
        assert {"article pages", "outlet pages", "day pages"} <= {c[0] for c in incremental}

        unchanged: list[tuple[str, int, int]] = []
        assert build_site(archive, out, CONFIG, progress=lambda *call: unchanged.append(call)
                          ).mode == "unchanged"
        assert unchanged == []


def test_a_long_build_into_a_pipe_imports_no_rich(tmp_path: Path, small_archive: Path) -> None:
    """No bar is drawn there, so rich is not asked whether stderr is a terminal."""
    child = CHILD.replace("import caixun.cli\n", "import caixun.cli\ncaixun.cli.BAR_DELAY = 0.0\n")
    modules = tmp_path / "modules.json"
    env = {key: value for key, value in os.environ.items()
           if key not in ("TTY_COMPATIBLE", "FORCE_COLOR")}
    for tty_compatible in (None, "1"):
        if tty_compatible:
            env["TTY_COMPATIBLE"] = tty_compatible  # rich takes stderr for a terminal then
        proc = subprocess.run([sys.executable, "-c", child, str(modules), "--archive",
                               str(small_archive), "build", "--full", "--out",
                               str(tmp_path / "site")], capture_output=True, text=True,
                              env={**env, "PYTHONPATH": str(REPO / "src")}, cwd=tmp_path)
        report = json.loads(modules.read_text())
        assert report["status"] in (0, None), proc.stderr
        assert ("rich" in report["modules"]) == bool(tty_compatible)
        assert bool(PROGRESS_MARKS.search(proc.stderr)) == bool(tty_compatible)


def test_build_bar_only_on_a_terminal_and_not_with_quiet(
    tmp_path: Path, small_archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "BAR_DELAY", 0.0)  # every build is "long"
    not_a_terminal = {"TTY_COMPATIBLE": None, "FORCE_COLOR": None}
    terminal = {"TTY_COMPATIBLE": "1"}  # rich then takes stderr for a terminal

    def build(*options: str, env: dict[str, str | None]) -> str:
        result = CliRunner().invoke(main, ["--archive", str(small_archive), *options, "build",
                                           "--full", "--out", str(tmp_path / "site")], env=env)
        assert result.exit_code == 0, result.output
        return result.stderr

    plain = build(env=not_a_terminal)
    assert not PROGRESS_MARKS.search(plain) and "full build:" in plain
    assert not PROGRESS_MARKS.search(build("-q", env=terminal))
    assert "building" in build(env=terminal)  # the bar, drawn on a "terminal"


"""The command line: help, version, one-line errors, quiet mode, settings, JSON Lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from caixun import __version__
from caixun.cli import main
from caixun.settings import SETTINGS
from conftest import POSTS, REPO
from site_helpers import tree


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, prefix + (name,))
        else:
            found.append(prefix + (name,))
    return found


ALL_COMMANDS = _commands(main)


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: " ".join(c) or "caixun")
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.output
    summary = result.output.split("\n\n")[1].strip()
    assert len(summary) > 10, f"{command} has no help text"


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.output.strip() == f"caixun, version {__version__}"


def test_console_script_runs_and_errors_are_one_line(tmp_path: Path) -> None:
    """A real subprocess: no traceback, one line on stderr, non-zero exit."""
    bad = tmp_path / "bad.db"
    bad.write_text("not a database " * 100)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-m", "caixun.cli", "--archive", str(bad),
                           "export", "jsonl", "-"], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"Error: {bad}: cannot open the archive: file is not a database"]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("config, message", [
    ("[archive]\npath = 3\n", "archive.path must be a file path (not empty, not a directory), not 3"),
    ("[archive]\npaht = 'x.db'\n", "unknown setting 'archive.paht'"),
    ("[archive\n", "not valid TOML"),
])
def test_bad_settings_are_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "caixun.toml").write_text(config)
    result = CliRunner().invoke(main, ["export", "jsonl", "-"])
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: caixun.toml: ") and message in line


def test_archive_path_comes_from_option_then_config_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    here = tmp_path
    runner.invoke(main, ["import", str(POSTS / "2021-12-01-init.md")])
    assert (here / "caixun.db").exists()
    (here / "caixun.toml").write_text('[archive]\npath = "from-config.db"\n')
    runner.invoke(main, ["import", str(POSTS / "2021-12-01-init.md")])
    assert (here / "from-config.db").exists()
    runner.invoke(main, ["--archive", "from-option.db", "import",
                         str(POSTS / "2021-12-01-init.md")])
    assert (here / "from-option.db").exists()
    result = runner.invoke(main, ["--config", "missing.toml", "export", "jsonl", "-"])
    assert result.exit_code == 1 and "missing.toml: no such config file" in result.stderr


def test_quiet_prints_no_summary(tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    loud = CliRunner().invoke(main, ["--archive", db, "import", str(POSTS)])
    quiet = CliRunner().invoke(main, ["--archive", db, "-q", "import", str(POSTS)])
    assert "imported 117 files: 117 new" in loud.stderr
    assert "imported" not in quiet.stderr
    assert quiet.exit_code == 0


def test_jsonl_export_has_every_field(tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    CliRunner().invoke(main, ["--archive", db, "import", str(POSTS)])
    result = CliRunner().invoke(main, ["--archive", db, "export", "jsonl", "-"])
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 117
    required = {"uid", "title", "outlet", "outlet_slug", "published_at", "url", "digest",
                "body_html", "body_text"}
    for record in records:
        assert required <= record.keys()
        assert datetime.fromisoformat(record["published_at"]).utcoffset() is not None
        assert "body_raw" not in record
    media = next(r for r in records if r["uid"] == "jekyll:NW202201112243109259")
    assert media["outlet_slug"] == "renminyoudianbao"
    assert media["published_at"] == "2022-01-11T09:53:30+08:00"
    times = [datetime.fromisoformat(r["published_at"]) for r in records]
    assert times == sorted(times)

    out = tmp_path / "all.jsonl"
    CliRunner().invoke(main, ["--archive", db, "export", "jsonl", str(out)])
    assert out.read_text(encoding="utf-8") == result.stdout


def test_readme_documents_every_command_and_setting() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for command in ALL_COMMANDS[1:]:
        assert f"caixun {' '.join(command)}" in readme, f"README lacks 'caixun {' '.join(command)}'"
    for option in ("--archive", "--config", "--quiet", "--version", "--strict"):
        assert option in readme
    for setting in SETTINGS:
        assert f"`{setting.key}`" in readme, f"README lacks setting {setting.key}"


def test_readme_documents_every_source_family_and_option() -> None:
    from caixun.sources.base import available_kinds

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for kind, family in available_kinds().items():
        assert f"`{kind}`" in readme, f"README lacks source kind {kind}"
        for option in family.defaults:
            assert f"`{option}`" in readme, f"README lacks option {option} of {kind}"


def test_import_with_build_makes_the_site_import_then_build_makes(tmp_path: Path,
                                                                 archive_url: str) -> None:
    """``import --build`` (on either backend) is the two commands in one process:
    the same site as ``import`` then ``build`` make (on SQLite), whether the
    build is the first or an incremental one after more posts arrive."""
    posts = sorted(POSTS.iterdir())
    early, late = posts[: len(posts) // 2], posts[len(posts) // 2:]
    results = {}
    for way in ("two commands", "one"):
        folder, out = tmp_path / way / "_posts", tmp_path / way / "site"
        db = archive_url if way == "one" else str(tmp_path / way / "a.db")
        folder.mkdir(parents=True)
        sites = []
        for batch in (early, late):
            for post in batch:
                (folder / post.name).write_bytes(post.read_bytes())
            args = ["--archive", db, "import", str(folder)]
            if way == "one":
                result = CliRunner().invoke(main, [*args, "--build", "--out", str(out)])
            else:
                result = CliRunner().invoke(main, args)
                assert result.exit_code == 0, result.output
                result = CliRunner().invoke(main, ["--archive", db, "build", "--out", str(out)])
            assert result.exit_code == 0, result.output
            assert f"→ {out}" in result.stderr.splitlines()[-1]
            sites.append(tree(out))
        results[way] = sites
    assert results["one"] == results["two commands"]
    first, second = results["one"]
    assert len(second) > len(first)  # the second batch's articles were built in
    assert any(p not in first and p.endswith(".html") and late[0].name[11:-3] in p
               for p in second), "the second batch's first post has no page"


def test_import_with_build_builds_what_was_stored_and_strict_still_fails(tmp_path: Path) -> None:
    posts, out = tmp_path / "posts", tmp_path / "site"
    posts.mkdir()
    good = sorted(POSTS.iterdir())[:3]
    for post in good:
        (posts / post.name).write_bytes(post.read_bytes())
    (posts / "2021-12-09-empty.md").write_bytes(b"")
    result = CliRunner().invoke(main, ["--archive", str(tmp_path / "a.db"), "import",
                                       "--strict", "--build", "--out", str(out), str(posts)])
    assert result.exit_code == 1
    assert "2021-12-09-empty.md: empty file (skipped)" in result.stderr
    assert "Error: --strict: some files were skipped or repaired" in result.stderr
    assert "full build:" in result.stderr  # built before --strict answered
    pages = [p for p in tree(out) if p.endswith(".html")]
    for post in good:
        assert any(post.name[11:-3] in page for page in pages), post.name


def test_import_out_without_build_is_a_usage_error_and_imports_nothing(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    result = CliRunner().invoke(main, ["--archive", str(db), "import", "--out",
                                       str(tmp_path / "site"), str(POSTS)])
    assert result.exit_code == 2
    assert "--out is the output directory of --build" in result.stderr
    assert not db.exists() and not (tmp_path / "site").exists()

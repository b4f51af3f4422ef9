"""The source commands: init, fetch, sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

import newsserver as ns
from caixun.cli import main
from caixun.config_template import BUILT_IN_SOURCES, LEGACY_SOURCES
from caixun.settings import load_settings
from caixun.sources.base import load_source


@pytest.fixture
def server() -> Iterator[ns.NewsServer]:
    with ns.NewsServer() as running:
        ns.install_all(running)
        yield running


def test_init_writes_a_config_with_every_built_in_source(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    settings = load_settings(tmp_path / "caixun.toml")
    assert [c.name for c in settings.sources] == [name for name, *_ in BUILT_IN_SOURCES]
    for config in settings.sources:
        load_source(config)  # every table is valid as written
    kinds = {c.kind for c in settings.sources}
    assert {"eastmoney-fast", "eastmoney-columns"} <= kinds  # today's East Money APIs: on
    # The legacy bare-IP lists are there, commented out, with a note saying why.
    assert not kinds & {"eastmoney-rolling", "eastmoney-media", "eastmoney-market"}
    text = (tmp_path / "caixun.toml").read_text(encoding="utf-8")
    for name, kind, _, _ in LEGACY_SOURCES:
        assert f'# [[sources]]\n# name = "{name}"\n# kind = "{kind}"\n' in text
    assert "bare-IP hosts" in text and "no maintained client" in text
    assert '# list_url = "http://183.136.162.242/web/webapi"' in text
    assert '# kind = "rss"' in text
    again = CliRunner().invoke(main, ["init"])
    assert again.exit_code == 1 and "exists; use --force" in again.stderr
    assert CliRunner().invoke(main, ["init", "--force"]).exit_code == 0


def _config(tmp_path: Path, server: ns.NewsServer) -> None:
    (tmp_path / "caixun.toml").write_text(f"""
[fetch]
retries = 0
min_gap = 0.0

[[sources]]
name = "em-rolling"
kind = "eastmoney-rolling"
list_url = "{server.url('/web/webapi')}"
text_url = "{server.url('/NewsData/GetNewsText.do')}?id={{code}}"

[[sources]]
name = "cls"
kind = "cls"
list_url = "{server.url('/v1/roll/get_roll_list')}"
""", encoding="utf-8")


def test_fetch_prints_a_line_per_source_and_fails_when_one_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: ns.NewsServer
) -> None:
    monkeypatch.chdir(tmp_path)
    _config(tmp_path, server)
    server.fault("/v1/roll/get_roll_list", ns.status(503))
    result = CliRunner().invoke(main, ["fetch"])
    assert result.exit_code == 1
    assert "em-rolling: 114 new, 0 updated, 0 unchanged, 0 errors" in result.stdout
    assert "cls: FAILED: " in result.stdout and "HTTP 503" in result.stdout
    assert "Error: some sources failed; see above" in result.stderr

    again = CliRunner().invoke(main, ["fetch"])  # nothing is due now
    assert again.exit_code == 0 and "no source is due" in again.stderr
    named = CliRunner().invoke(main, ["fetch", "--source", "cls"])
    assert named.exit_code == 0 and named.stdout.startswith("cls: ")
    unknown = CliRunner().invoke(main, ["fetch", "--source", "nope"])
    assert unknown.exit_code == 1 and "unknown source(s): nope" in unknown.stderr


def test_sources_shows_health(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              server: ns.NewsServer) -> None:
    monkeypatch.chdir(tmp_path)
    _config(tmp_path, server)
    server.fault("/v1/roll/get_roll_list", ns.html_error())
    CliRunner().invoke(main, ["fetch"])
    result = CliRunner().invoke(main, ["sources", "--json"])
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["em-rolling"]["consecutive_failures"] == 0
    assert rows["em-rolling"]["last_success"]
    assert rows["cls"]["consecutive_failures"] == 1
    assert "HTML page instead of JSON" in rows["cls"]["last_error"]
    table = CliRunner().invoke(main, ["sources"])
    assert table.exit_code == 0 and "em-rolling" in table.stdout


def test_no_sources_configured_is_a_clear_error(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["fetch"])
    assert result.exit_code == 1 and "no sources configured" in result.stderr


def test_sources_names_the_post_trees_caixun_run_imports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A site fed by import.paths alone has no source to list, and is no error."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "caixun.toml").write_text('[import]\npaths = ["_posts", "old"]\nevery = 30\n',
                                          encoding="utf-8")
    result = CliRunner().invoke(main, ["sources"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ("caixun run also imports _posts, old every 30 s "
                             "(setting import.paths)\n")
    listed = CliRunner().invoke(main, ["sources", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []
    with (tmp_path / "caixun.toml").open("a", encoding="utf-8") as config:
        config.write('\n[[sources]]\nname = "cls"\nkind = "cls"\n')
    both = CliRunner().invoke(main, ["sources"])
    assert both.exit_code == 0 and "cls" in both.stdout
    assert both.stdout.rstrip().endswith("every 30 s (setting import.paths)")


@pytest.mark.parametrize("table, message", [
    ('[[sources]]\nkind = "cls"\n', "'name' must be"),
    ('[[sources]]\nname = "a b"\nkind = "cls"\n', "'name' must be"),
    ('[[sources]]\nname = "x"\n', "'kind' is missing"),
    ('[[sources]]\nname = "x"\nkind = "cls"\nevery = 0\n', "'every' must be"),
    ('[[sources]]\nname = "x"\nkind = "cls"\n[[sources]]\nname = "x"\nkind = "cls"\n',
     "used twice"),
    ('[[sources]]\nname = "x"\nkind = "nosuch"\n', "unknown kind 'nosuch'"),
    ('[[sources]]\nname = "x"\nkind = "cls"\nlist_ur = "http://x"\n', "unknown option(s) list_ur"),
])
def test_bad_source_tables_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               table: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "caixun.toml").write_text(table, encoding="utf-8")
    result = CliRunner().invoke(main, ["fetch"])
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert message in line

"""The watch commands and settings: [[watch]] tables, fetch delivering, watch NAME, watch deliver."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

import newsserver as ns
from caixun.cli import main
from test_cli_sources import _config as sources_config
from test_watch import Receiver


@pytest.fixture
def server() -> Iterator[ns.NewsServer]:
    with ns.NewsServer() as running:
        ns.install_all(running)
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def _config(tmp_path: Path, server: ns.NewsServer, watches: str) -> None:
    """test_cli_sources' two sources, with ``watches`` appended."""
    sources_config(tmp_path, server)
    config = tmp_path / "caixun.toml"
    config.write_text(config.read_text(encoding="utf-8") + watches, encoding="utf-8")


def test_fetch_notifies_each_match_once_and_the_list_agrees(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: ns.NewsServer,
        receiver: Receiver) -> None:
    monkeypatch.chdir(tmp_path)
    _config(tmp_path, server, f"""
[[watch]]
name = "companies"
query = "公司 OR 股份"
notify = "{receiver.url}"

[[watch]]
name = "quiet"
query = "降准"
""")
    result = CliRunner().invoke(main, ["fetch"])
    assert result.exit_code == 0, result.output
    listed = CliRunner().invoke(main, ["watch", "companies", "--json", "--limit", "1000"])
    assert listed.exit_code == 0, listed.output
    matches = {row["uid"] for row in json.loads(listed.stdout)}
    # Matched at write time (the article's own transaction) and listed by a query
    # over the archive afterwards: the same articles.
    assert {key.split(":", 1)[1] for key in receiver.keys()} == matches
    assert 0 < len(matches) < 114 and set(receiver.keys().values()) == {1}
    assert "notifications: " in result.stderr
    again = CliRunner().invoke(main, ["watch", "deliver"])
    assert again.exit_code == 0 and "0 delivered" in again.stderr and "0 pending" in again.stderr
    assert set(receiver.keys().values()) == {1}


def test_a_failing_receiver_leaves_notifications_pending(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: ns.NewsServer,
        receiver: Receiver) -> None:
    monkeypatch.chdir(tmp_path)
    _config(tmp_path, server, f"""
[[watch]]
name = "companies"
query = "公司"
notify = "{receiver.url}"
""")
    receiver.plan = ["503"] * 1000
    result = CliRunner().invoke(main, ["fetch"])
    assert result.exit_code == 0, result.output  # a dead receiver fails no fetch
    assert "to retry" in result.stderr and receiver.keys() == {}
    later = CliRunner().invoke(main, ["watch", "deliver"])  # not due yet: backoff
    assert later.exit_code == 0 and "0 delivered" in later.stderr
    assert " pending" in later.stderr and "; 0 pending" not in later.stderr


@pytest.mark.parametrize("table, message", [
    ('name = "a"\nquery = "降准"\ncolour = "red"', "unknown key 'colour'"),
    ('name = "a"\nquery = "-降准"', "nothing to look for"),
    ('name = "a"\nstocks = ["茅台"]', "is not a security code"),
    ('name = "a b"\nquery = "x"', "letters, digits"),
    ('name = "deliver"\nquery = "x"', "cannot be called 'deliver'"),
    ('name = "a"\nquery = "x"\nnotify = "file:///etc/passwd"', "http"),
])
def test_bad_watch_tables_are_refused_with_their_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "caixun.toml").write_text(f"[[watch]]\n{table}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["watch", "a"])
    assert result.exit_code != 0
    assert "caixun.toml: [[watch]] #1" in result.output and message in result.output


def test_two_watches_of_one_name_and_an_unknown_watch(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "caixun.toml").write_text(
        '[[watch]]\nname = "a"\nquery = "x"\n[[watch]]\nname = "a"\nquery = "y"\n',
        encoding="utf-8")
    assert "used twice" in CliRunner().invoke(main, ["watch", "a"]).output
    (tmp_path / "caixun.toml").write_text('[[watch]]\nname = "a"\nquery = "x"\n',
                                          encoding="utf-8")
    unknown = CliRunner().invoke(main, ["watch", "b"])
    assert unknown.exit_code == 1 and "no watch named 'b'" in unknown.output

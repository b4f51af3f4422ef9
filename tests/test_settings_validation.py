"""Every setting and source option is checked once, at load (issue 9, item 6).

A value of the wrong type or out of range is a ``ConfigError`` naming the file
and the key, never a hang (``per_host = 0``), a traceback (``per_page = 1e20``)
or a value accepted as given (``refresh = -1``, ``url = 5``). The tests go over
every entry of the settings table and every option of every registered family,
so a new setting or option is covered without a new test.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner
from hypothesis import given, settings as hypothesis_settings, strategies as st

import newsserver as ns
from caixun.cli import main
from caixun.config_template import (BUILT_IN_SOURCES, LEGACY_SOURCES, NAME_SOURCES,
                                    config_template)
from caixun.errors import ConfigError
from caixun.settings import EVERY, SETTINGS, Setting, load_settings
from caixun.sources.base import Source, SourceConfig, available_kinds, load_source
from conftest import POSTS, REPO

# One value of each TOML type.
SAMPLES: list[Any] = [True, 7, 2.5, "text", ["x"], {"a": 1}]


def literal(value: Any) -> str:
    """``value`` written as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {literal(v)}" for k, v in value.items()) + "}"


def is_of_type(value: Any, default: Any) -> bool:
    """Whether ``value`` has the default's TOML type (an integer counts as a float)."""
    if isinstance(default, float) and type(value) is int:
        return True
    return type(value) is type(default)


def write(directory: Path, setting: Setting, value: Any) -> Path:
    path = directory / "caixun.toml"
    path.write_text(f"[{setting.section}]\n{setting.name} = {literal(value)}\n",
                    encoding="utf-8")
    return path


def refusal(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return str(caught.value)


def loaded(setting: Setting, value: Any) -> Any:
    """The value as loaded from a caixun.toml that sets only ``setting``."""
    with tempfile.TemporaryDirectory() as directory:
        return load_settings(write(Path(directory), setting, value))[setting.key]


def refused(setting: Setting, value: Any) -> str:
    with tempfile.TemporaryDirectory() as directory:
        path = write(Path(directory), setting, value)
        message = refusal(path)
    assert message.startswith(f"{path}: {setting.key} must be {setting.allowed.what}, not "), \
        message
    return message


def by_key(settings: list[Setting]) -> Any:
    return pytest.mark.parametrize("setting", settings, ids=[s.key for s in settings])


NUMBERS = [s for s in SETTINGS if type(s.default) in (int, float)]
WHOLE = [s for s in NUMBERS if type(s.default) is int]
FLOATS = [s for s in NUMBERS if type(s.default) is float]
TEXTS = [s for s in SETTINGS if isinstance(s.default, str)]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths (site.theme, archive.path) are read from the working directory."""
    monkeypatch.chdir(tmp_path)


# -- the settings table ----------------------------------------------------------------

@by_key(list(SETTINGS))
def test_the_default_is_allowed_and_loads_as_written(setting: Setting) -> None:
    assert setting.allowed.problem(setting.default) is None
    value = loaded(setting, setting.default)
    assert value == setting.default and type(value) is type(setting.default)


@by_key(list(SETTINGS))
def test_a_value_of_every_other_type_is_refused_naming_file_and_key(setting: Setting) -> None:
    wrong = [v for v in SAMPLES if not is_of_type(v, setting.default)]
    assert wrong
    for value in wrong:
        refused(setting, value)


@by_key(NUMBERS)
def test_every_number_setting_has_a_range(setting: Setting) -> None:
    rule = setting.allowed
    assert rule.low is not None and rule.high is not None
    assert rule.low <= setting.default <= rule.high


def _outside(low: float, high: float, whole: bool) -> st.SearchStrategy[Any]:
    below = st.integers(max_value=math.ceil(low) - 1)
    above = st.integers(min_value=math.floor(high) + 1)
    if whole:
        return st.one_of(below, above)
    return st.one_of(below, above, st.floats(max_value=low, exclude_max=True),
                     st.floats(min_value=high, exclude_min=True),
                     st.sampled_from([math.nan, math.inf, -math.inf]))


@by_key(NUMBERS)
@hypothesis_settings(max_examples=40)
@given(data=st.data())
def test_numbers_out_of_range_are_refused(setting: Setting, data: st.DataObject) -> None:
    rule = setting.allowed
    assert rule.low is not None and rule.high is not None
    value = data.draw(_outside(rule.low, rule.high, type(setting.default) is int))
    refused(setting, value)


@by_key(NUMBERS)
@hypothesis_settings(max_examples=40)
@given(data=st.data())
def test_numbers_in_range_are_accepted(setting: Setting, data: st.DataObject) -> None:
    rule = setting.allowed
    assert rule.low is not None and rule.high is not None
    integers = st.integers(math.ceil(rule.low), math.floor(rule.high))
    if type(setting.default) is int:
        value = data.draw(integers)
        assert loaded(setting, value) == value
    else:
        value = data.draw(st.one_of(integers, st.floats(rule.low, rule.high)))
        got = loaded(setting, value)
        assert got == float(value) and type(got) is float  # an integer is read as a float


@by_key(WHOLE)
@hypothesis_settings(max_examples=25)
@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_whole_number_settings_refuse_every_float(setting: Setting, value: float) -> None:
    """1e17 and 2.0 are TOML floats: refused, not truncated or compared as numbers."""
    refused(setting, value)


@pytest.mark.parametrize("key, value", [
    ("fetch.per_host", 0), ("fetch.per_host", -1), ("fetch.retries", -1),
    ("fetch.retries", 1e17), ("fetch.read_timeout", -1), ("site.per_page", 1e20),
    ("site.per_page", 10 ** 20), ("site.refresh", -1), ("fetch.max_redirects", -1),
    ("fetch.max_bytes", 0), ("fetch.total_timeout", 0), ("fetch.connect_timeout", math.nan),
])
def test_the_reported_values_are_refused(key: str, value: Any) -> None:
    [setting] = [s for s in SETTINGS if s.key == key]
    refused(setting, value)


# Values of the right type that are still wrong, for every text setting.
BAD_TEXT: dict[str, list[str]] = {
    "archive.path": ["", "   ", "."],  # "." is a directory
    "archive.url": ["caixun.db", "mysql://db/news", "postgresql://db/news x",
                    "http://db/news", "postgresql://db/\nnews"],
    "site.title": ["财讯\n", "a\x00b"],
    "site.url": ["", "ftp://example.org/", "example.org", "http://", "http://exa mple.org/",
                 "https://example.org:99999/", "javascript:alert(1)", "5"],
    "site.language": ["", "zh CN", "中文", "-x", "zh_CN"],
    "site.timezone": ["", "Mars/Olympus", "../../etc/passwd", "/etc/localtime", "Asia"],
    "site.theme": ["no-such-directory", "caixun.toml"],  # the latter is a file
    "site.out": ["", "  "],
    "fetch.user_agent": ["caixun\r\nX-Injected: 1", "tab\there"],
    "jekyll.base_url": ["finews.example.com", "//finews example.com", "ftp://x", "(x)"],
}
GOOD_TEXT: dict[str, list[str]] = {
    "site.url": ["https://news.example.com/news", "http://127.0.0.1:8000"],
    "site.language": ["en", "zh-Hant-TW"],
    "site.timezone": ["UTC", "America/New_York"],
    "site.theme": ["theme"],  # made by the test
    "jekyll.base_url": ["//finews.example.com", "https://finews.example.com", "/news"],
    "archive.path": ["data/news.db"],
    "archive.url": ["postgresql://caixun:pw@db.example.com:5432/news", "postgres://db/news", ""],
    "fetch.user_agent": ["Mozilla/5.0 (X11; Linux x86_64)"],
}


def test_every_text_setting_has_bad_examples() -> None:
    assert set(BAD_TEXT) == {s.key for s in TEXTS}


@by_key(TEXTS)
def test_text_settings_refuse_malformed_values(setting: Setting, tmp_path: Path) -> None:
    (tmp_path / "caixun.toml").write_text("")
    for value in BAD_TEXT[setting.key]:
        refused(setting, value)


@by_key([s for s in TEXTS if s.key in GOOD_TEXT])
def test_text_settings_accept_good_values(setting: Setting, tmp_path: Path) -> None:
    (tmp_path / "theme").mkdir()
    for value in GOOD_TEXT[setting.key]:
        assert loaded(setting, value) == value


@pytest.mark.parametrize("value", ["", ".", "  "])
def test_the_archive_override_is_checked(value: str) -> None:
    with pytest.raises(ConfigError, match="^archive.path given on the command line must be "
                                          "a file path"):
        load_settings(None, {"archive.path": value})


def test_an_unknown_setting_names_the_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "caixun.toml").write_text("[fetch]\nper_hots = 1\n")
    assert refusal(tmp_path / "caixun.toml").startswith(
        f"{tmp_path / 'caixun.toml'}: unknown setting 'fetch.per_hots'")


# -- [[sources]] tables ----------------------------------------------------------------

def _sources(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "caixun.toml"
    path.write_text(f'[[sources]]\nname = "x"\nkind = "cls"\n{body}\n', encoding="utf-8")
    return path


@pytest.mark.parametrize("every", [0, -1, 0.5, math.nan, math.inf, 10 ** 9, "60", True, [60]])
def test_every_out_of_range_or_of_the_wrong_type_is_refused(tmp_path: Path, every: Any) -> None:
    message = refusal(_sources(tmp_path, f"every = {literal(every)}"))
    assert message.startswith(f"{tmp_path / 'caixun.toml'}: [[sources]] #1 (x): 'every' "
                              f"must be {EVERY.what}, not "), message


@pytest.mark.parametrize("every", [1, 60, 90.5, 604_800])
def test_every_in_range_is_accepted(tmp_path: Path, every: float) -> None:
    [config] = load_settings(_sources(tmp_path, f"every = {every}")).sources
    assert config.every == every


@pytest.mark.parametrize("written", ["sources = [1]", 'sources = ["cls"]', "sources = [[]]"])
def test_a_sources_entry_that_is_not_a_table_is_refused(tmp_path: Path, written: str) -> None:
    (tmp_path / "caixun.toml").write_text(written + "\n")
    assert "[[sources]] #1: must be a table" in refusal(tmp_path / "caixun.toml")


# -- every option of every family ------------------------------------------------------

FAMILIES = sorted(available_kinds().items())
REQUIRED: dict[str, dict[str, Any]] = {"rss": {"url": "https://example.org/feed.xml"}}
OPTIONS = [(kind, key) for kind, family in FAMILIES for key in family.defaults]
# List options that may also be written as one string (a selector; "37,38").
ALSO_TEXT = {("eastmoney-market", "market_types"), ("eastmoney-columns", "content_selectors")}


def family(kind: str) -> type[Source]:
    return available_kinds()[kind]


def make(kind: str, **options: Any) -> Source:
    config = SourceConfig("x", kind, 60, {**REQUIRED.get(kind, {}), **options},
                          origin="caixun.toml")
    return load_source(config)


def refuses(kind: str, key: str, value: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        make(kind, **{key: value})
    message = str(caught.value)
    assert message.startswith(f"caixun.toml: source 'x' ({kind}): option {key} must be "), \
        message
    return message


def by_option(options: list[tuple[str, str]]) -> Any:
    return pytest.mark.parametrize("kind, key", options, ids=[f"{k}.{o}" for k, o in options])


@pytest.mark.parametrize("kind", [k for k, _ in FAMILIES])
def test_every_default_given_explicitly_loads(kind: str) -> None:
    make(kind, **{**family(kind).defaults, **REQUIRED.get(kind, {})})


@by_option(OPTIONS)
def test_an_option_of_another_type_is_refused(kind: str, key: str) -> None:
    default = family(kind).defaults[key]
    wrong = [v for v in SAMPLES if not is_of_type(v, default)
             and not ((kind, key) in ALSO_TEXT and isinstance(v, str))]
    assert wrong
    for value in wrong:
        refuses(kind, key, value)


INT_OPTIONS = [(k, o) for k, o in OPTIONS if type(family(k).defaults[o]) is int]


def test_the_families_have_whole_number_options() -> None:
    assert len(INT_OPTIONS) >= 7  # rn, count ×3, page_size ×3, limit, full_text_min_chars


@by_option(INT_OPTIONS)
def test_every_whole_number_option_has_a_range(kind: str, key: str) -> None:
    rule = family(kind).option_rule(key)
    assert rule.low is not None and rule.high is not None
    assert rule.low <= family(kind).defaults[key] <= rule.high
    make(kind, **{key: int(rule.low)})
    make(kind, **{key: int(rule.high)})
    for value in (int(rule.low) - 1, int(rule.high) + 1, float(family(kind).defaults[key])):
        refuses(kind, key, value)


@by_option(INT_OPTIONS)
@hypothesis_settings(max_examples=30)
@given(data=st.data())
def test_whole_number_options_out_of_range_are_refused(kind: str, key: str,
                                                       data: st.DataObject) -> None:
    rule = family(kind).option_rule(key)
    assert rule.low is not None and rule.high is not None
    refuses(kind, key, data.draw(_outside(rule.low, rule.high, whole=True)))


def test_the_reported_option_is_refused() -> None:
    message = refuses("rss", "full_text_min_chars", "many")
    assert message.endswith('must be a whole number from 0 to 1_000_000, not "many"')
    refuses("rss", "url", 5)


URL_OPTIONS = [(k, o) for k, o in OPTIONS if o == "url" or o.endswith("_url")]
OPTIONAL_URLS = [(k, o) for k, o in OPTIONS if o in ("referer", "origin")]
TEMPLATES = [(k, o) for k, o in URL_OPTIONS if "{" in family(k).defaults[o]]


@by_option(URL_OPTIONS + OPTIONAL_URLS)
def test_url_options_must_be_http_urls(kind: str, key: str) -> None:
    for value in ("ftp://example.org/x", "example.org/x", "http://", "http://a b/x",
                  "https://example.org:99999/", "javascript:alert(1)", "http://a/\n"):
        refuses(kind, key, value)
    if (kind, key) in URL_OPTIONS:
        refuses(kind, key, "")
    else:
        make(kind, **{key: ""})  # an empty Referer or Origin is not sent


@by_option(URL_OPTIONS)
@hypothesis_settings(max_examples=30)
@given(value=st.text(max_size=40).filter(lambda v: "://" not in v))
def test_text_without_a_scheme_is_no_url(kind: str, key: str, value: str) -> None:
    refuses(kind, key, value)


@by_option(URL_OPTIONS)
def test_a_mirror_url_is_accepted(kind: str, key: str) -> None:
    placeholder = re.findall(r"\{\w+\}", family(kind).defaults[key])
    make(kind, **{key: "http://127.0.0.1:8080/mirror/" + "".join(placeholder)})


@by_option(TEMPLATES)
def test_url_templates_must_hold_their_placeholder(kind: str, key: str) -> None:
    """A detail URL without {id} would give every article the same URL."""
    default = family(kind).defaults[key]
    [name] = re.findall(r"\{(\w+)\}", default)
    for value in (default.replace("{" + name + "}", ""), default.replace(name, "other"),
                  default.replace("}", ""), default + "{0}"):
        refuses(kind, key, value)


STRING_OPTIONS = [(k, o) for k, o in OPTIONS if isinstance(family(k).defaults[o], str)]


@by_option(STRING_OPTIONS)
def test_string_options_refuse_control_characters(kind: str, key: str) -> None:
    """Many end up in a request header, where a newline would inject another one."""
    refuses(kind, key, "a\r\nX-Injected: 1")


def test_a_family_checks_its_own_forms() -> None:
    for bad in ("div[", ["div#a", "div["], [], [""], [5]):
        refuses("eastmoney-columns", "content_selectors", bad)
    make("eastmoney-columns", content_selectors="div.a, p")
    make("eastmoney-columns", content_selectors=["div#ContentBody", "article"])
    for bad in ([], "", "37,x", ["37", "x"], [True], [37.0]):
        refuses("eastmoney-market", "market_types", bad)
    make("eastmoney-market", market_types="37, 38")
    make("eastmoney-market", market_types=[37, "38"])


# -- the command line ------------------------------------------------------------------

@pytest.mark.parametrize("table, message", [
    ('kind = "nosuch"', "caixun.toml: source 'x': unknown kind 'nosuch'"),
    ('kind = "cls"\nlist_ur = "http://x/"', "caixun.toml: source 'x' (cls): unknown option(s) "
                                           "list_ur"),
    ('kind = "cls"\nrn = 0', "caixun.toml: source 'x' (cls): option rn must be a whole number "
                             "from 1 to 100, not 0"),
    ('kind = "rss"\nurl = 5', "caixun.toml: source 'x' (rss): option url must be an http:// "
                              "or https:// URL, not 5"),
])
def test_sources_loads_every_source_before_showing_health(tmp_path: Path, table: str,
                                                          message: str) -> None:
    (tmp_path / "caixun.toml").write_text(f'[[sources]]\nname = "x"\n{table}\n')
    result = CliRunner().invoke(main, ["sources"])
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: {message}")
    assert not (tmp_path / "caixun.db").exists()  # refused before the archive is opened


def _uncommented(template: str) -> str:
    """The template with every commented setting and option written out."""
    lines = [re.sub(r"^# (\[\[sources\]\]|\w+ = .*)$", r"\1", line)
             for line in template.splitlines()]
    first_source = lines.index("[[sources]]")  # a feed's url option; [archive] url stays ""
    return "\n".join("url = \"https://example.org/feed.xml\""
                     if line == 'url = ""' and at > first_source else line
                     for at, line in enumerate(lines)) + "\n"


def test_init_writes_a_config_that_loads_even_with_every_line_uncommented(
        tmp_path: Path) -> None:
    assert CliRunner().invoke(main, ["init"]).exit_code == 0
    result = CliRunner().invoke(main, ["sources"])
    assert result.exit_code == 0, result.stderr
    assert all(name in result.stdout for name, *_ in BUILT_IN_SOURCES)

    full = tmp_path / "full.toml"
    full.write_text(_uncommented(config_template()), encoding="utf-8")
    settings = load_settings(full)
    assert all(settings[s.key] == s.default for s in SETTINGS)
    assert [c.name for c in settings.sources] == [
        n for n, *_ in (*BUILT_IN_SOURCES, *LEGACY_SOURCES, *NAME_SOURCES)] + ["my-feed"]
    for config in settings.sources:
        source = load_source(config)
        assert set(config.options) == set(source.defaults)  # every option was written out


# -- the real console script -----------------------------------------------------------

def _caixun(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("caixun")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "caixun.cli"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    try:
        return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"caixun {' '.join(args)} still running after {timeout} s (hangs)")


@pytest.fixture
def server() -> Iterator[ns.NewsServer]:
    with ns.NewsServer() as running:
        ns.install_all(running)
        yield running


@pytest.mark.parametrize("setting, message", [
    ("per_host = 0", "fetch.per_host must be a whole number from 1 to 64, not 0"),
    ("per_host = -1", "fetch.per_host must be a whole number from 1 to 64, not -1"),
    ("retries = 1e17", "fetch.retries must be a whole number from 0 to 10, not 1e+17"),
    ("read_timeout = -1", "fetch.read_timeout must be a number from 0.1 to 3600, not -1"),
])
def test_fetch_refuses_a_bad_fetch_setting_at_once(tmp_path: Path, server: ns.NewsServer,
                                                    setting: str, message: str) -> None:
    """per_host = 0 made ``caixun fetch`` wait for ever for a free slot."""
    (tmp_path / "caixun.toml").write_text(
        f'[fetch]\n{setting}\nmin_gap = 0.0\n\n[[sources]]\nname = "cls"\nkind = "cls"\n'
        f'list_url = "{server.url("/v1/roll/get_roll_list")}"\n', encoding="utf-8")
    proc = _caixun("fetch", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"Error: caixun.toml: {message}"]
    assert server.requests == []  # refused before any request


@pytest.mark.parametrize("per_page, shown", [
    ("1e20", "1e+20"), ("100000000000000000000", "100000000000000000000"), ("0", "0")])
def test_build_refuses_a_bad_per_page_without_a_traceback(tmp_path: Path, per_page: str,
                                                         shown: str) -> None:
    """10**20 passed the old type check and ended in an IntegrityError traceback."""
    assert CliRunner().invoke(main, ["import", str(POSTS / "2021-12-01-init.md")]).exit_code == 0
    (tmp_path / "caixun.toml").write_text(f"[site]\nper_page = {per_page}\n")
    proc = _caixun("build", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"Error: caixun.toml: site.per_page must be a whole number from 1 to 1000, not {shown}"]
    assert not (tmp_path / "site").exists()


def test_an_empty_archive_option_is_refused(tmp_path: Path) -> None:
    proc = _caixun("--archive", "", "search", "央行", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        'Error: archive.path given on the command line must be a file path '
        '(not empty, not a directory), not ""']


def test_the_readme_settings_table_gives_every_setting_its_allowed_values() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for setting in SETTINGS:
        [row] = [line for line in readme.splitlines() if line.startswith(f"| `{setting.key}` |")]
        assert row.endswith(f"| {setting.allowed.what} |"), row

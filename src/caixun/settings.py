"""Settings: one table of every setting, read from ``caixun.toml``.

Defaults, validation (type and range, once, at load) and the README's settings
table all come from ``SETTINGS``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from caixun.errors import ConfigError
from caixun.rules import (
    Rule,
    directory_or_empty,
    file_path,
    flag,
    http_url,
    language_tag,
    like,
    number,
    paths,
    postgres_url_or_empty,
    text,
    time_zone,
    whole,
)

if TYPE_CHECKING:
    from caixun.sources.base import SourceConfig
    from caixun.watch import Watch

__all__ = ["CONFIG_FILE", "EVERY", "SETTINGS", "Setting", "Settings", "load_settings"]

CONFIG_FILE = "caixun.toml"
WEEK = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Setting:
    section: str
    name: str
    default: Any
    help: str
    rule: Rule | None = None  # None: any value of the default's type

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def allowed(self) -> Rule:
        return self.rule or like(self.default)


def _base_url(value: str) -> bool:
    """A footer link prefix: "", a path, a scheme-relative or an http(s) URL."""
    return value == "" or (value.startswith(("/", "http://", "https://"))
                           and not any(c.isspace() or c in "()<>\"" for c in value))


SETTINGS: tuple[Setting, ...] = (
    Setting("archive", "path", "caixun.db",
            "The archive's SQLite file (relative to the working directory).", file_path()),
    Setting("archive", "url", "",
            "A PostgreSQL database to keep the archive in instead "
            "(postgresql://user:password@host:port/database; the password may come from "
            "PGPASSWORD or ~/.pgpass instead). Several fetchers on several machines "
            "can share it.", postgres_url_or_empty()),
    Setting("site", "title", "财讯", "The site's name, shown on every page and in feeds."),
    Setting("site", "url", "http://127.0.0.1:8000",
            "The site's absolute URL (feeds, sitemap and canonical links use it; "
            "its path, e.g. /news, prefixes every link).", http_url()),
    Setting("site", "language", "zh-CN", "The pages' lang attribute and the feeds' xml:lang.",
            language_tag()),
    Setting("site", "timezone", "Asia/Shanghai",
            "Time zone of the times shown and of the day pages.", time_zone()),
    Setting("site", "per_page", 50,
            "Articles per list page (home's newest, outlet pages).", whole(1, 1000)),
    Setting("site", "refresh", 0,
            "Seconds after which list pages reload themselves; 0 turns it off "
            "(the old site used 60).", whole(0, 86_400)),
    Setting("site", "theme", "",
            "A directory of templates that override the built-in ones by file name.",
            directory_or_empty()),
    Setting("site", "out", "site", "Where `caixun build` writes the site.",
            text("a directory path (not empty)", lambda v: v.strip() != "")),
    Setting("site", "stories", True,
            "Show each story once on the home and day pages, with the other outlets "
            "that carry it (\"也见于\"); false lists every article.", flag()),
    Setting("fetch", "connect_timeout", 5.0, "Seconds to wait for a connection.",
            number(0.1, 600)),
    Setting("fetch", "read_timeout", 15.0, "Seconds to wait for a response.",
            number(0.1, 3600)),
    Setting("fetch", "retries", 3,
            "Retries after a connection error, timeout, 429 or 5xx (never other 4xx).",
            whole(0, 10)),
    # 0 would let no request start: a fetch would wait for ever.
    Setting("fetch", "per_host", 2, "Requests in flight to one host at most.", whole(1, 64)),
    Setting("fetch", "min_gap", 1.0, "Seconds between the starts of two requests to one host.",
            number(0, 3600)),
    Setting("fetch", "user_agent", "",
            "User-Agent header; empty: a desktop browser's, as the APIs expect.", text()),
    Setting("fetch", "total_timeout", 60.0,
            "Seconds one request may take in all (connect, headers and the whole body): "
            "a server that trickles its response cannot hold a source for ever.",
            number(0.1, 86_400)),
    Setting("fetch", "max_bytes", 20_000_000,
            "Largest response body, in bytes, as sent (compressed); a larger one fails the request.",
            whole(1, 10_000_000_000)),
    Setting("fetch", "max_decoded_bytes", 50_000_000,
            "Largest response body, in bytes, once decompressed (a gzip bomb fails the request).",
            whole(1, 10_000_000_000)),
    Setting("fetch", "max_redirects", 5, "Redirects followed at most for one request.",
            whole(0, 20)),
    Setting("fetch", "retag_step", 500,
            "Articles re-tagged at most after a round of fetching, when securities' names "
            "were learned since older articles were stored (0: never).", whole(0, 100_000)),
    Setting("fetch", "lease", 60.0,
            "Seconds a fetcher (`caixun run --role fetch`) holds the source it polls, "
            "renewed while it polls: a fetcher killed meanwhile has its source polled by "
            "another this late at most.", number(1, 3600)),
    Setting("fetch", "max_backoff", 3600.0,
            "Longest wait, in seconds, before polling a failing source again.",
            number(0, WEEK)),
    Setting("import", "paths", [],
            "Jekyll post files or directories that `caixun run` imports again every "
            "`import.every` seconds, as `caixun import` does (only new and changed files "
            "are read): a site whose posts another program still writes. Relative to "
            "the working directory.", paths()),
    Setting("import", "every", 60.0,
            "Seconds between two imports of `import.paths` by `caixun run`.",
            number(1, WEEK)),
    Setting("jekyll", "base_url", "",
            "Prefix of the footer links in exported posts that have no footer of "
            "their own, e.g. '//finews.example.com'.",
            text('"", a path or a URL such as //finews.example.com (no spaces)', _base_url)),
)
# A source's seconds between polls ([[sources]] every): not a setting, checked alike.
EVERY = replace(number(1, WEEK), what=f"a number of seconds from 1 to {WEEK} (a week)")
_BY_KEY = {s.key: s for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class Settings:
    values: Mapping[str, Any]
    source: Path | None = None
    sources: tuple[SourceConfig, ...] = ()  # the [[sources]] tables
    watches: tuple[Watch, ...] = ()  # the [[watch]] tables

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


def load_settings(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Defaults, then ``caixun.toml`` (``path``, or the working directory's), then overrides
    (from the command line, e.g. ``--archive``); every value is checked here, once."""
    values = {s.key: s.default for s in SETTINGS}
    source = path if path is not None else Path(CONFIG_FILE)
    sources: tuple[SourceConfig, ...] = ()
    watches: tuple[Watch, ...] = ()
    if source.exists():
        data = _read_toml(source)
        values.update(_read_values(source, data))
        sources = _read_sources(source, data.get("sources", []))
        watches = _read_watches(source, data.get("watch", []))
    elif path is not None:
        raise ConfigError(f"{path}: no such config file")
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _checked("", key, value)
    return Settings(values, source if source.exists() else None, sources, watches)


def _read_watches(path: Path, tables: Any) -> tuple[Watch, ...]:
    if not tables:
        return ()
    from caixun.watch import WatchError, read_watches  # only when there are some

    try:
        return read_watches(tables, str(path))
    except WatchError as exc:
        raise ConfigError(str(exc)) from exc


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def _read_values(path: Path, data: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for section, table in data.items():
        if section in ("sources", "watch"):
            continue
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section!r} must be a [section] table")
        for name, value in table.items():
            values[f"{section}.{name}"] = _checked(path, f"{section}.{name}", value)
    return values


def _checked(where: Path | str, key: str, value: Any) -> Any:
    """The value of a known setting as the program uses it; else a ``ConfigError``
    naming the file it came from (``where``; "" for the command line) and the key."""
    named = f"{where}: {key}" if where else f"{key} given on the command line"
    setting = _BY_KEY.get(key)
    if setting is None:
        known = ", ".join(sorted(_BY_KEY))
        raise ConfigError(f"{where or 'the command line'}: unknown setting {key!r} "
                          f"(known: {known})")
    problem = setting.allowed.problem(value)
    if problem:
        raise ConfigError(f"{named} {problem}")
    return setting.allowed.convert(value)


_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _read_sources(path: Path, tables: Any) -> tuple[SourceConfig, ...]:
    if not isinstance(tables, list):
        raise ConfigError(f"{path}: sources must be written as [[sources]] tables")
    configs: list[SourceConfig] = []
    for position, table in enumerate(tables, 1):
        config = _read_source(path, f"{path}: [[sources]] #{position}", table)
        if any(c.name == config.name for c in configs):
            raise ConfigError(f"{path}: [[sources]] #{position}: the name {config.name!r} "
                              "is used twice")
        configs.append(config)
    return tuple(configs)


def _read_source(path: Path, where: str, table: Any) -> SourceConfig:
    """One [[sources]] table; its options are checked when the source is loaded.

    Without ``every``, the family's own default applies (``default_every``: a
    minute for news, a day for the securities lists).
    """
    # With the sources, only when there are some.
    from caixun.sources.base import SourceConfig, default_every

    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table of name, kind and options")
    options = dict(table)
    name, kind, every = options.pop("name", None), options.pop("kind", None), \
        options.pop("every", None)
    if not isinstance(name, str) or not _SOURCE_NAME.match(name):
        raise ConfigError(f"{where}: 'name' must be letters, digits, '.', '_' or '-'")
    if not isinstance(kind, str) or not kind:
        raise ConfigError(f"{where} ({name}): 'kind' is missing")
    if every is None:
        every = default_every(kind)
    problem = EVERY.problem(every)
    if problem:
        raise ConfigError(f"{where} ({name}): 'every' {problem}")
    return SourceConfig(name, kind, every, options, origin=str(path))

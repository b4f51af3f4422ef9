"""Settings: one table of every setting, read from ``caixun.toml``.

Defaults, validation and the README's settings table all come from ``SETTINGS``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from caixun.errors import ConfigError
from caixun.sources.base import SourceConfig

__all__ = ["CONFIG_FILE", "SETTINGS", "Setting", "Settings", "load_settings"]

CONFIG_FILE = "caixun.toml"


@dataclass(frozen=True, slots=True)
class Setting:
    section: str
    name: str
    default: Any
    help: str

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"


SETTINGS: tuple[Setting, ...] = (
    Setting("archive", "path", "caixun.db",
            "The archive's SQLite file (relative to the working directory)."),
    Setting("site", "title", "财讯", "The site's name, shown on every page and in feeds."),
    Setting("site", "url", "http://127.0.0.1:8000",
            "The site's absolute URL (feeds, sitemap and canonical links use it; "
            "its path, e.g. /news, prefixes every link)."),
    Setting("site", "language", "zh-CN", "The pages' lang attribute and the feeds' xml:lang."),
    Setting("site", "timezone", "Asia/Shanghai",
            "Time zone of the times shown and of the day pages."),
    Setting("site", "per_page", 50,
            "Articles per list page (home's newest, outlet pages)."),
    Setting("site", "refresh", 0,
            "Seconds after which list pages reload themselves; 0 turns it off "
            "(the old site used 60)."),
    Setting("site", "theme", "",
            "A directory of templates that override the built-in ones by file name."),
    Setting("site", "out", "site", "Where `caixun build` writes the site."),
    Setting("site", "stories", True,
            "Show each story once on the home and day pages, with the other outlets "
            "that carry it (\"也见于\"); false lists every article."),
    Setting("fetch", "connect_timeout", 5.0, "Seconds to wait for a connection."),
    Setting("fetch", "read_timeout", 15.0, "Seconds to wait for a response."),
    Setting("fetch", "retries", 3,
            "Retries after a connection error, timeout, 429 or 5xx (never other 4xx)."),
    Setting("fetch", "per_host", 2, "Requests in flight to one host at most."),
    Setting("fetch", "min_gap", 1.0, "Seconds between the starts of two requests to one host."),
    Setting("fetch", "user_agent", "",
            "User-Agent header; empty: a desktop browser's, as the APIs expect."),
    Setting("fetch", "total_timeout", 60.0,
            "Seconds one request may take in all (connect, headers and the whole body): "
            "a server that trickles its response cannot hold a source for ever."),
    Setting("fetch", "max_bytes", 20_000_000,
            "Largest response body, in bytes, as sent (compressed); a larger one fails the request."),
    Setting("fetch", "max_decoded_bytes", 50_000_000,
            "Largest response body, in bytes, once decompressed (a gzip bomb fails the request)."),
    Setting("fetch", "max_redirects", 5, "Redirects followed at most for one request."),
    Setting("fetch", "max_backoff", 3600.0,
            "Longest wait, in seconds, before polling a failing source again."),
    Setting("jekyll", "base_url", "",
            "Prefix of the footer links in exported posts that have no footer of "
            "their own, e.g. '//finews.example.com'."),
)
_BY_KEY = {s.key: s for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class Settings:
    values: Mapping[str, Any]
    source: Path | None = None
    sources: tuple[SourceConfig, ...] = ()  # the [[sources]] tables

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


def load_settings(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Defaults, then ``caixun.toml`` (``path``, or the working directory's), then overrides."""
    values = {s.key: s.default for s in SETTINGS}
    source = path if path is not None else Path(CONFIG_FILE)
    sources: tuple[SourceConfig, ...] = ()
    if source.exists():
        data = _read_toml(source)
        values.update(_read_values(source, data))
        sources = _read_sources(source, data.get("sources", []))
    elif path is not None:
        raise ConfigError(f"{path}: no such config file")
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    return Settings(values, source if source.exists() else None, sources)


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
        if section == "sources":
            continue
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section!r} must be a [section] table")
        for name, value in table.items():
            key = _checked(path, f"{section}.{name}", value)
            values[key] = float(value) if isinstance(_BY_KEY[key].default, float) else value
    return values


_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _read_sources(path: Path, tables: Any) -> tuple[SourceConfig, ...]:
    if not isinstance(tables, list):
        raise ConfigError(f"{path}: sources must be written as [[sources]] tables")
    configs: list[SourceConfig] = []
    for number, table in enumerate(tables, 1):
        where = f"{path}: [[sources]] #{number}"
        options = dict(table)
        name, kind, every = options.pop("name", None), options.pop("kind", None), \
            options.pop("every", 60)
        if not isinstance(name, str) or not _SOURCE_NAME.match(name):
            raise ConfigError(f"{where}: 'name' must be letters, digits, '.', '_' or '-'")
        if not isinstance(kind, str) or not kind:
            raise ConfigError(f"{where} ({name}): 'kind' is missing")
        if isinstance(every, bool) or not isinstance(every, (int, float)) or every <= 0:
            raise ConfigError(f"{where} ({name}): 'every' must be a positive number of seconds")
        if any(c.name == name for c in configs):
            raise ConfigError(f"{where}: the name {name!r} is used twice")
        configs.append(SourceConfig(name, kind, every, options))
    return tuple(configs)


def _checked(path: Path, key: str, value: Any) -> str:
    setting = _BY_KEY.get(key)
    if setting is None:
        known = ", ".join(sorted(_BY_KEY))
        raise ConfigError(f"{path}: unknown setting {key!r} (known: {known})")
    if isinstance(setting.default, float) and isinstance(value, int) \
            and not isinstance(value, bool):
        return key
    if not isinstance(value, type(setting.default)) or isinstance(value, bool) != isinstance(
            setting.default, bool):
        expected = type(setting.default).__name__
        raise ConfigError(f"{path}: {key} must be a {expected}, not {value!r}")
    return key

"""Settings: one table of every setting, read from ``caixun.toml``.

Defaults, validation and the README's settings table all come from ``SETTINGS``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from caixun.errors import ConfigError

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
    Setting("jekyll", "base_url", "",
            "Prefix of the footer links in exported posts that have no footer of "
            "their own, e.g. '//finews.example.com'."),
)
_BY_KEY = {s.key: s for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class Settings:
    values: Mapping[str, Any]
    source: Path | None = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


def load_settings(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Defaults, then ``caixun.toml`` (``path``, or the working directory's), then overrides."""
    values = {s.key: s.default for s in SETTINGS}
    source = path if path is not None else Path(CONFIG_FILE)
    if source.exists():
        values.update(_read_file(source))
    elif path is not None:
        raise ConfigError(f"{path}: no such config file")
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    return Settings(values, source if source.exists() else None)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    values: dict[str, Any] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            continue  # arrays of tables ([[sources]]) belong to the sources stage
        for name, value in table.items():
            values[_checked(path, f"{section}.{name}", value)] = value
    return values


def _checked(path: Path, key: str, value: Any) -> str:
    setting = _BY_KEY.get(key)
    if setting is None:
        known = ", ".join(sorted(_BY_KEY))
        raise ConfigError(f"{path}: unknown setting {key!r} (known: {known})")
    if not isinstance(value, type(setting.default)):
        expected = type(setting.default).__name__
        raise ConfigError(f"{path}: {key} must be a {expected}, not {value!r}")
    return key

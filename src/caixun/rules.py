"""What a setting or a source option may be: a type, a range, a form.

A ``Rule`` both tests a value and says in words what the value must be, so the
message that refuses one (``fetch.per_host must be a whole number from 1 to 64,
not 0``) and the README's "allowed" column come from the same place. Rules never
raise: ``problem`` returns the message, and the caller, who knows the file and
the key, raises the ``ConfigError``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

__all__ = [
    "Rule",
    "directory_or_empty",
    "either",
    "file_path",
    "flag",
    "http_url",
    "language_tag",
    "like",
    "list_of",
    "number",
    "paths",
    "shown",
    "text",
    "time_zone",
    "url_template",
    "whole",
]


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Rule:
    """A test of a value and its description, which completes "must be …"."""

    what: str
    accepts: Callable[[Any], bool]
    convert: Callable[[Any], Any] = _same  # the value as the program uses it
    low: float | None = None  # the range of a number rule, for tests and docs
    high: float | None = None

    def problem(self, value: Any) -> str | None:
        """``None`` if ``value`` is allowed, else "must be …, not …"."""
        return None if self.accepts(value) else f"must be {self.what}, not {shown(value)}"


def shown(value: Any) -> str:
    """A value as it would be written in ``caixun.toml`` (shortened)."""
    if isinstance(value, bool):
        written = "true" if value else "false"
    elif isinstance(value, (str, list, dict)):
        written = json.dumps(value, ensure_ascii=False, default=repr)  # as TOML writes them
    else:
        written = repr(value)
    return written if len(written) <= 80 else written[:77] + "..."


def _figure(value: float) -> str:
    """A bound as TOML may write it: 1_000_000 rather than 1e+06."""
    if float(value).is_integer():
        whole_value = int(value)
        return f"{whole_value:_}" if abs(whole_value) >= 1_000_000 else str(whole_value)
    return f"{value:g}"


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" from {_figure(low)} to {_figure(high)}"
    if low is not None:
        return f" of at least {_figure(low)}"
    return f" of at most {_figure(high)}" if high is not None else ""


def _within(value: float, low: float | None, high: float | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # TOML true is no number


def whole(low: int | None = None, high: int | None = None) -> Rule:
    """A TOML integer in the range: 1e17 or 2.0 is a float, so it is refused."""
    return Rule(f"a whole number{_bounds(low, high)}",
                lambda v: _is_int(v) and _within(v, low, high), low=low, high=high)


def number(low: float | None = None, high: float | None = None) -> Rule:
    """A finite integer or float in the range, used as a float."""
    def accepts(value: Any) -> bool:
        return (_is_int(value) or isinstance(value, float)) and math.isfinite(value) \
            and _within(value, low, high)
    return Rule(f"a number{_bounds(low, high)}", accepts, float, low, high)


def flag() -> Rule:
    return Rule("true or false", lambda v: isinstance(v, bool))


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def text(what: str = "one line of text", test: Callable[[str], bool] | None = None) -> Rule:
    """A string without control characters (they would break headers and
    pages) that passes ``test``."""
    return Rule(what, lambda v: isinstance(v, str) and not _CONTROL.search(v)
                and (test is None or test(v)))


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port such as :99999
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) \
        and not any(c.isspace() for c in value)


def http_url(empty_ok: bool = False) -> Rule:
    what = "an http:// or https:// URL" + (' or ""' if empty_ok else "")
    return text(what, lambda v: (empty_ok and v == "") or _is_http_url(v))


def _formats(template: str, fields: tuple[str, ...]) -> str | None:
    try:
        return template.format(**{name: "1" for name in fields})
    except (KeyError, IndexError, ValueError, AttributeError):
        return None


def url_template(*fields: str) -> Rule:
    """An http(s) URL holding ``{field}``, filled in per item: without it every
    item would get the same URL (and be taken for copies of one article)."""
    names = " and ".join("{" + name + "}" for name in fields)

    def accepts(value: str) -> bool:
        filled = _formats(value, fields)
        return filled is not None and all("{" + n + "}" in value for n in fields) \
            and _is_http_url(filled)
    return text(f"an http:// or https:// URL containing {names}", accepts)


def _is_zone(value: str) -> bool:
    try:
        ZoneInfo(value)
    except (KeyError, ValueError, OSError):  # not found (a KeyError), not a key, unreadable
        return False
    return True


def time_zone() -> Rule:
    return text("a time zone name such as Asia/Shanghai", lambda v: v != "" and _is_zone(v))


_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")


def language_tag() -> Rule:
    return text("a language tag such as zh-CN", lambda v: bool(_LANGUAGE_TAG.match(v)))


def file_path() -> Rule:
    return text("a file path (not empty, not a directory)",
                lambda v: v.strip() != "" and not Path(v).is_dir())


def postgres_url_or_empty() -> Rule:
    return text('"" or a postgresql:// URL (postgresql://user:password@host:port/database)',
                lambda v: v == "" or (v.startswith(("postgresql://", "postgres://"))
                                      and not any(c.isspace() for c in v)))


def directory_or_empty() -> Rule:
    return text('"" or an existing directory', lambda v: v == "" or Path(v).is_dir())


def paths() -> Rule:
    """A TOML array, maybe empty, of file or directory paths (one line each, not blank)."""
    return list_of(text("a non-empty string", lambda v: v.strip() != ""),
                   "a list of paths, each a non-empty string", empty_ok=True)


def list_of(item: Rule, what: str = "", empty_ok: bool = False) -> Rule:
    """A TOML array whose every element ``item`` accepts; non-empty unless ``empty_ok``."""
    return Rule(what or f"a non-empty list, each {item.what}",
                lambda v: isinstance(v, list) and (empty_ok or len(v) > 0)
                and all(item.accepts(element) for element in v))


def either(*rules: Rule) -> Rule:
    return Rule(" or ".join(rule.what for rule in rules),
                lambda v: any(rule.accepts(v) for rule in rules))


def like(default: Any) -> Rule:
    """The rule of a value of the default's type: a bool, whole number, number,
    one line of text or list of the default's element type."""
    if isinstance(default, bool):
        return flag()
    if isinstance(default, int):
        return whole()
    if isinstance(default, float):
        return number()
    if isinstance(default, str):
        return text()
    if isinstance(default, (list, tuple)):
        return list_of(like(default[0])) if default else Rule(
            "a list", lambda v: isinstance(v, list))
    kind = type(default)
    return Rule(f"a {kind.__name__}", lambda v: isinstance(v, kind))

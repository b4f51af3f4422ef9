"""The commented ``caixun.toml`` that ``caixun init`` writes.

Everything in it comes from the settings table and from the registered source
families, so the template cannot fall behind the code.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from caixun.settings import SETTINGS
from caixun.sources.base import Source, available_kinds

__all__ = ["BUILT_IN_SOURCES", "LEGACY_SOURCES", "NAME_SOURCES", "config_template",
           "toml_value"]

# The sources a new caixun.toml starts with: (name, kind, seconds between polls, note).
BUILT_IN_SOURCES: tuple[tuple[str, str, int, str], ...] = (
    ("em-fast", "eastmoney-fast", 60, "东方财富 7x24 fast news"),
    ("em-columns", "eastmoney-columns", 300, "East Money column lists, with article text"),
    ("cls", "cls", 60, "财联社 telegraph"),
    ("jin10", "jin10", 60, "金十数据 flash"),
    ("wallstreetcn", "wallstreetcn", 60, "华尔街见闻 live news"),
    ("sina", "sina", 60, "新浪财经 7x24"),
)

# The old site's East Money lists, written commented out after the others.
LEGACY_SOURCES: tuple[tuple[str, str, int, str], ...] = (
    ("em-rolling", "eastmoney-rolling", 60, "东财滚动新闻 (the old site's main feed)"),
    ("em-media", "eastmoney-media", 120, "East Money media columns: one outlet per paper"),
    ("em-market", "eastmoney-market", 300, "East Money market news (marketType 37/38/39)"),
)
LEGACY_NOTE = (
    "# The old site's East Money lists (NEWS-APIS.md §1). They call bare-IP hosts",
    "# that no maintained client uses any more, so they are off. To use one,",
    "# uncomment its [[sources]], name, kind and every lines (the other lines are",
    "# its defaults). Their items export (caixun export jekyll) in the old site's",
    "# format.",
)


# Lists of securities' names, written commented out after the legacy lists.
NAME_SOURCES: tuple[tuple[str, str, int, str], ...] = (
    ("em-securities", "eastmoney-securities", 86_400,
     "East Money quote lists: A-share (SH, SZ, BJ), Hong Kong and US names"),
)
NAME_NOTE = (
    "# Securities' names (NEWS-APIS.md §9.1): the listed companies of East Money's",
    "# quote lists, read once a day (each market's fs filter is an option; \"\"",
    "# leaves a market out). They add no articles: the archive learns the names",
    "# and tags articles with them, older ones a bounded step after each round",
    "# (fetch.retag_step). To use it, uncomment its [[sources]], name, kind and",
    "# every lines.",
)


def toml_value(value: Any) -> str:
    """A TOML literal for the simple values settings use."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON strings are TOML basic strings
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML literal for {value!r}")


def _settings_part(values: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    section = ""
    for setting in SETTINGS:
        if setting.section != section:
            section = setting.section
            lines += ["", f"[{section}]"]
        lines.append(f"# {setting.help}")
        if setting.key in values:
            lines.append(f"{setting.name} = {toml_value(values[setting.key])}")
        else:
            lines.append(f"# {setting.name} = {toml_value(setting.default)}")
    return lines


def _source_table(kinds: dict[str, type[Source]], name: str, kind: str, every: int, note: str,
                  *, prefix: str) -> list[str]:
    """One [[sources]] table with its options' defaults commented; ``prefix`` "# "
    comments the whole table out."""
    family = kinds.get(kind)
    if family is None:
        return []
    lines = ["", f"# {note}", f"{prefix}[[sources]]", f"{prefix}name = {toml_value(name)}",
             f"{prefix}kind = {toml_value(kind)}", f"{prefix}every = {every}"]
    return lines + [f"# {key} = {toml_value(value)}" for key, value in family.defaults.items()]


def _source_part() -> list[str]:
    kinds = available_kinds()
    lines = ["", "# News sources: every URL is a plain option, so a source can point at a",
             "# mirror or a proxy. Remove a table to stop polling that source."]
    for source in BUILT_IN_SOURCES:
        lines += _source_table(kinds, *source, prefix="")
    lines += ["", *LEGACY_NOTE]
    for source in LEGACY_SOURCES:
        lines += _source_table(kinds, *source, prefix="# ")
    if any(kind in kinds for _, kind, _, _ in NAME_SOURCES):
        lines += ["", *NAME_NOTE]
    for source in NAME_SOURCES:
        lines += _source_table(kinds, *source, prefix="# ")
    rss = kinds.get("rss")
    if rss is not None:
        lines += ["", "# Any RSS or Atom feed (uncomment and set url):", "# [[sources]]",
                  '# name = "my-feed"', '# kind = "rss"', "# every = 600"]
        lines += [f"# {key} = {toml_value(value)}" for key, value in rss.defaults.items()]
    return lines


def config_template(values: Mapping[str, Any] | None = None) -> str:
    """The commented settings file; ``values`` (setting key → value) are written set."""
    header = ["# caixun.toml — settings for caixun (财讯).",
              "# Commented lines show the defaults; uncomment to change one."]
    return "\n".join(header + _settings_part(values or {}) + _source_part()) + "\n"

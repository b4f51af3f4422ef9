"""Outlet slugs: the pinyin of the outlet name, as existing sites made them.

The existing sites built a category slug with ``xpinyin``:
``Pinyin().get_pinyin(name).replace("-", "")`` (人民邮电报 → ``renminyoudianbao``,
21世纪经济报道 → ``21shijijingjibaodao``). ``outlet_slug`` reproduces that rule so
old URLs keep working. That rule also produced slugs with spaces or parentheses
(``anxinguojizhengquan(xianggang)``); ``safe_slug`` turns those into URL-safe
ones, and the archive keeps the old spelling as an alias.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

__all__ = ["is_safe_slug", "legacy_slug", "outlet_slug", "safe_slug"]

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_UNSAFE_RUN = re.compile(r"[^a-z0-9._-]+")


@lru_cache(maxsize=1)
def _pinyin() -> Any:
    from xpinyin import Pinyin  # type: ignore[import-untyped]

    return Pinyin()


@lru_cache(maxsize=65536)
def legacy_slug(outlet: str) -> str:
    """The slug exactly as the old generator made it (may be unsafe)."""
    return str(_pinyin().get_pinyin(outlet)).replace("-", "")


def is_safe_slug(slug: str) -> bool:
    """True if the slug needs no escaping in a URL path segment or file name."""
    return bool(_SAFE.match(slug)) and slug not in {".", ".."}


def safe_slug(slug: str) -> str:
    """A URL-safe form of ``slug``; a slug that is already safe is unchanged.

    Unsafe slugs are lower-cased and every run of other characters becomes one
    ``-``: ``21shijijingjibaodao  nancailicaitong`` →
    ``21shijijingjibaodao-nancailicaitong``.
    """
    if is_safe_slug(slug):
        return slug
    cleaned = _UNSAFE_RUN.sub("-", slug.lower()).strip("-._")
    return cleaned or "outlet"


def outlet_slug(outlet: str) -> str:
    """The URL-safe slug of an outlet name (the legacy rule, made safe)."""
    return safe_slug(legacy_slug(outlet.strip()))

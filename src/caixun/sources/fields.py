"""Small helpers the source families share: reading fields out of JSON items.

Every field of a payload is optional and may have any type, so the field
readers answer "" (or an empty list) for what is missing or of the wrong type
rather than raising. Only ``envelope_items`` and ``identified`` raise
``PayloadError``, for a page whose shape has changed.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from caixun.errors import PayloadError
from caixun.normalize import clean_title, html_to_text, sanitize_html, split_headline

__all__ = [
    "DESKTOP_UA", "SENTENCE_END", "TITLE_CHARS", "dig", "envelope_items", "first_sentence",
    "identified", "level", "named_codes", "names", "plain_text", "string_field", "text_field",
    "title_and_body", "truthy", "web_url",
]

DESKTOP_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
              "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36")
TITLE_CHARS = 60  # the longest title ``first_sentence`` makes, the ellipsis included
SENTENCE_END = re.compile(r"[。！？!?]")


def string_field(item: Mapping[str, Any], key: str) -> str:
    """A string field of an item: "" when absent, null or not a string."""
    value = item.get(key)
    return value if isinstance(value, str) else ""


def text_field(item: Mapping[str, Any], key: str) -> str:
    """A string field of an item: "" when absent, null or not a scalar.

    Unlike ``string_field``, a number (not a bool) is read as its text.
    """
    value = item.get(key)
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


_FALSE_WORDS = frozenset({"", "0", "false", "no", "null", "none"})


def truthy(value: Any) -> bool:
    """A flag as the APIs send it: ``true``, a non-zero number or a string such as
    ``"1"`` or ``"true"``; not ``false``, 0, null, ``""``, ``"0"`` or ``"false"``."""
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_WORDS
    if isinstance(value, (bool, int, float)):
        return bool(value)
    return False  # null, a list, an object: no flag


def level(value: Any) -> float:
    """A numeric level (``vip_level``) given as a number or its text; 0 when it is neither."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value) if value == value else 0.0  # NaN: no level
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return 0.0
        return number if number == number else 0.0
    return 0.0


def names(values: Any, key: str) -> list[str]:
    """``value[key]`` of each object in the list ``values`` that has a non-empty one."""
    if not isinstance(values, list):
        return []
    return [str(v[key]) for v in values if isinstance(v, Mapping) and v.get(key)]


def named_codes(values: Any, code_key: str, name_key: str,
                code: Callable[[Mapping[str, Any], str], str] | None = None) -> list[list[str]]:
    """``[code, name]`` of each object in the list ``values`` that has both as
    non-empty strings (``extra["stock_names"]``: the archive learns the names).
    ``code`` makes the code of an object from its ``code_key`` value (by default
    that value as it is)."""
    if not isinstance(values, list):
        return []
    pairs = []
    for value in values:
        if not isinstance(value, Mapping):
            continue
        raw, name = value.get(code_key), value.get(name_key)
        if isinstance(raw, str) and raw.strip() and isinstance(name, str) and name.strip():
            made = code(value, raw.strip()) if code else raw.strip()
            if made:
                pairs.append([made, name.strip()])
    return pairs


def web_url(value: str) -> str:
    """``value`` if it is an http(s) URL, else "": a payload must not smuggle in a
    ``javascript:`` link, nor make the fetcher read anything but a web page."""
    value = value.strip()
    return value if urlsplit(value).scheme in ("http", "https") else ""


def plain_text(raw: str, paragraph_break: str = "\n\n") -> str:
    """The text of a field that may hold HTML, one paragraph per line.

    Sanitizing first drops a ``<script>`` with its content instead of keeping
    the script as text. The lines of the text are joined with
    ``paragraph_break``: by default a blank line, so each is a paragraph.
    """
    return paragraph_break.join(html_to_text(sanitize_html(raw)).split("\n"))


def dig(value: Any, *keys: str) -> Any:
    """``value[k1][k2]…``: None as soon as a step is not a JSON object or lacks the key."""
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def envelope_items(payload: Any, *, source: str, code_key: str, ok: Any, message_key: str,
                   where: str) -> list[Any]:
    """The list at the dotted path ``where`` of a ``{<code_key>, <message_key>, data}`` payload.

    ``PayloadError`` (naming the ``source``) if the payload has no ``code_key``,
    if its code is not ``ok``, or if there is no list at ``where``.
    """
    if not isinstance(payload, Mapping) or code_key not in payload:
        raise PayloadError(f"{source}: the payload has no {code_key} envelope")
    if payload[code_key] != ok:
        raise PayloadError(f"{source}: {code_key}={payload[code_key]!r} "
                           f"{message_key}={payload.get(message_key)!r}")
    items = dig(payload, *where.split("."))
    if not isinstance(items, list):
        raise PayloadError(f"{source}: {where} is missing or not a list")
    return items


def identified(items: list[Any], *, source: str, where: str) -> list[Mapping[str, Any]]:
    """The items that are objects with an id.

    A page with items of which none has an id is a changed shape, not an empty
    page: ``PayloadError`` naming the ``source`` and the list's path ``where``.
    """
    found = [item for item in items
             if isinstance(item, Mapping) and item.get("id") not in (None, "")]
    if items and not found:
        raise PayloadError(f"{source}: no item of {where} has an id")
    return found


def title_and_body(text: str, title: str = "") -> tuple[str, str]:
    """(title, body) of a flash: ``【headline】body`` split, the headline left out of the body.

    The title is ``title`` (cleaned), else the headline, else the body's first sentence.
    """
    headline, body = split_headline(text)
    body = body.strip()
    return clean_title(title) or headline or first_sentence(body), body


def first_sentence(text: str, limit: int = TITLE_CHARS) -> str:
    """A title for a flash without one: its first sentence, cut to ``limit`` characters."""
    line = text.split("\n", 1)[0]
    end = SENTENCE_END.search(line)
    sentence = line[:end.start()] if end else line
    return sentence if len(sentence) <= limit else sentence[:limit - 1] + "…"

"""An item's identity: the portal's own id, whichever list or file brings it.

A uid (``<source>:<native id>``) names an item as one source saw it. The
same article reaches caixun by several ways: East Money lists one article in
its rolling, media, market, column and 7x24 lists, and a site moving to
caixun imports the post its old fetcher wrote of it. The *identity* is what
they share: ``eastmoney:<infoCode>``, ``cls:<id>`` … The archive keeps one
article per identity; the other uids become its aliases.

East Money's ids: an article's ``infoCode`` is two capitals and 18 digits
(``NW`` news, ``AN`` announcements …); the 18 digits, ``YYYYMMDD`` and a
sequence, are what the rolling list calls ``id``, the 7x24 and column lists
``code``, the article URL ``/a/<code>.html`` and the old site its post's file
name. Digits without a prefix are a news item: ``NW``.

Where a source says nothing (articles stored by older versions, imported
posts), the identity is read off what the article carries: the info code in
``extra``, a portal's article URL, the file id of a post in the old site's
format.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

__all__ = ["EASTMONEY", "eastmoney_identity", "identity_from_url", "stored_identity"]

EASTMONEY = "eastmoney"

# 18 digits that start with a plausible date: an East Money code, not any number.
_DIGITS = r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{10}"
_EM_CODE = re.compile(rf"([A-Z]{{2}})?({_DIGITS})")
# Article URLs: finance.eastmoney.com/a/<code>.html and /news/<column>,<code>.html
# (any *.eastmoney.com host), and the share page …/NewsShare.html?infoCode=<code>,
# which the old site linked through its own mirror host.
_EM_URL = re.compile(
    rf"(?:\beastmoney\.com/(?:a|news/\d+,)|/html_News/NewsShare\.html\?infoCode=)"
    rf"/?((?:[A-Z]{{2}})?{_DIGITS})(?!\d)")
# Other portals' article pages, as their sources make them (NEWS-APIS.md).
_PORTAL_URLS = (
    ("cls", re.compile(r"^(?:https?:)?//(?:www\.)?cls\.cn/detail/(\d+)$")),
    ("jin10", re.compile(r"^(?:https?:)?//flash\.jin10\.com/detail/(\d+)$")),
    ("wallstreetcn", re.compile(r"^(?:https?:)?//wallstreetcn\.com/livenews/(\d+)$")),
)


def eastmoney_identity(code: str) -> str:
    """``eastmoney:<infoCode>`` of an East Money id or info code; "" if it is neither."""
    match = _EM_CODE.fullmatch(code.strip())
    if match is None:
        return ""
    return f"{EASTMONEY}:{match.group(1) or 'NW'}{match.group(2)}"


def identity_from_url(url: str) -> str:
    """The identity an article URL names, if it is a known portal's article page."""
    url = url.strip()
    if not url:
        return ""
    match = _EM_URL.search(url)
    if match is not None:
        return eastmoney_identity(match.group(1))
    for portal, pattern in _PORTAL_URLS:
        found = pattern.match(url)
        if found is not None:
            return f"{portal}:{found.group(1)}"
    return ""


def stored_identity(*, file_id: str, url: str, share_url: str, extra: Mapping[str, Any],
                    post_style: bool) -> str:
    """The identity of an article that came without one (older archives, imported posts).

    ``post_style``: the article is written as a post of the old site (an
    imported post, or an item of a legacy East Money family), whose file id
    is its East Money id.
    """
    info = extra.get("info_code")
    if isinstance(info, str) and (found := eastmoney_identity(info)):
        return found
    for link in (url, share_url):
        if found := identity_from_url(link):
            return found
    return eastmoney_identity(file_id) if post_style else ""

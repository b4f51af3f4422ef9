"""Write articles as JSON Lines: one object per article, for other tools.

Each object also says how the article is tied to others, so a reader can
de-duplicate as caixun does: ``story`` (one uid shared by every article of a
story, the article's own for a story of one), ``duplicate_of`` (the uid of
the article it copies exactly, or null) and ``aliases`` (its other uids); and
which securities it is about: ``stocks``, their canonical codes (``600519.SH``),
sorted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Sequence, Union

from caixun.model import Article
from caixun.publish.atomic import atomic_file

__all__ = ["Linked", "Tagged", "article_record", "write_jsonl", "write_jsonl_file"]

# (article, story uid, uid of the original or None, alias uids): as
# ``Archive.iter_articles_linked`` gives them.
Linked = tuple[Article, str, str | None, Sequence[str]]
# The same and the codes of its securities: as ``iter_articles_linked`` gives them.
Tagged = tuple[Article, str, str | None, Sequence[str], Sequence[str]]
Item = Union[Article, Linked, Tagged]


def article_record(article: Article, story: str | None = None, duplicate_of: str | None = None,
                   aliases: Sequence[str] = (), stocks: Sequence[str] = ()) -> dict[str, Any]:
    """The public fields of an article (the raw provenance copy is left out).

    ``story`` defaults to the article's own uid: a story of one.
    """
    return {
        "uid": article.uid,
        "title": article.title,
        "outlet": article.outlet,
        "outlet_slug": article.outlet_slug,
        "published_at": article.published_at.isoformat(),
        "url": article.url,
        "share_url": article.share_url,
        "file_id": article.file_id,
        "digest": article.digest,
        "body_html": article.body_html,
        "body_text": article.body_text,
        "content_hash": article.content_hash,
        "fetched_at": article.fetched_at.isoformat() if article.fetched_at else None,
        "extra": dict(article.extra),
        "story": story or article.uid,
        "duplicate_of": duplicate_of,
        "aliases": sorted(aliases),
        "stocks": sorted(stocks),
    }


def write_jsonl(articles: Iterable[Item], out: IO[str]) -> Iterator[Article]:
    """Write one line per article to ``out``; yields each article written.

    An item is an article, or an article with its links (:data:`Linked`), and
    perhaps its securities (:data:`Tagged`); a bare article is a story of one,
    with no original, no aliases and no securities.
    """
    for item in articles:
        if isinstance(item, Article):
            article, record = item, article_record(item)
        else:
            article, record = item[0], article_record(*item)
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        yield article


def write_jsonl_file(articles: Iterable[Item], path: Path) -> int:
    """Write the articles to ``path``, which appears whole at the end; returns how many.

    On an error (a full disk: :class:`~caixun.errors.PublishError`) ``path``
    is left as it was: no empty or half-written file.
    """
    with atomic_file(path, "w") as out:
        return sum(1 for _ in write_jsonl(articles, out))

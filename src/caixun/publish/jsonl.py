"""Write articles as JSON Lines: one object per article, for other tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from caixun.model import Article
from caixun.publish.atomic import atomic_file

__all__ = ["article_record", "write_jsonl", "write_jsonl_file"]


def article_record(article: Article) -> dict[str, Any]:
    """The public fields of an article (the raw provenance copy is left out)."""
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
    }


def write_jsonl(articles: Iterable[Article], out: IO[str]) -> Iterator[Article]:
    """Write one line per article to ``out``; yields each article written."""
    for article in articles:
        out.write(json.dumps(article_record(article), ensure_ascii=False) + "\n")
        yield article


def write_jsonl_file(articles: Iterable[Article], path: Path) -> int:
    """Write the articles to ``path``, which appears whole at the end; returns how many.

    On an error (a full disk: :class:`~caixun.errors.PublishError`) ``path``
    is left as it was: no empty or half-written file.
    """
    with atomic_file(path, "w") as out:
        return sum(1 for _ in write_jsonl(articles, out))

"""caixun (财讯): aggregate, archive and publish Chinese financial news."""

from __future__ import annotations

from caixun.errors import (
    ArchiveError,
    CaixunError,
    ConfigError,
    FetchError,
    PayloadError,
    PostFormatError,
    SourceError,
)
from caixun.model import Article, PostStyle

__version__ = "0.1.0"

__all__ = [
    "ArchiveError",
    "Article",
    "CaixunError",
    "ConfigError",
    "FetchError",
    "PayloadError",
    "PostFormatError",
    "PostStyle",
    "SourceError",
    "__version__",
]

"""caixun (财讯): aggregate, archive and publish Chinese financial news."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from caixun.errors import (
    ArchiveError,
    CaixunError,
    ConfigError,
    FetchError,
    PayloadError,
    PostFormatError,
    SourceError,
)

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    # The model is imported on first use: `caixun --version` needs only the version.
    if name in ("Article", "PostStyle"):
        from caixun import model

        return getattr(model, name)
    raise AttributeError(f"module 'caixun' has no attribute {name!r}")

"""The exceptions caixun raises.

The whole tree::

    CaixunError                 anything caixun itself reports
    ├── ConfigError             caixun.toml or a command-line setting is wrong
    ├── ArchiveError            the archive cannot be opened, migrated or written
    ├── PostFormatError         a Jekyll post file cannot be understood at all
    ├── PublishError            a page or an export file cannot be written
    ├── WorkerError             a worker process of a build or an import died
    └── SourceError             a news source failed
        ├── FetchError          the request failed (network, status, timeout)
        └── PayloadError        the response is not what the source promised

Library code raises these and never prints or exits; ``cli.py`` turns them into
one-line messages. Foreign exceptions (``sqlite3.Error``, ``UnicodeDecodeError``
…) are mapped at the boundary where they occur.
"""

from __future__ import annotations

__all__ = [
    "ArchiveError",
    "CaixunError",
    "ConfigError",
    "FetchError",
    "PayloadError",
    "PostFormatError",
    "PublishError",
    "SourceError",
    "WorkerError",
]


class CaixunError(Exception):
    """Base class of every error caixun reports."""


class ConfigError(CaixunError):
    """A setting is unknown, malformed or out of range."""


class ArchiveError(CaixunError):
    """The archive cannot be opened, upgraded or written."""


class PostFormatError(CaixunError):
    """A Jekyll post file cannot be understood at all (it is skipped)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class PublishError(CaixunError):
    """A file of the site or of an export cannot be written (full disk, read-only…)."""

    def __init__(self, path: str, problem: str) -> None:
        # Both in args, so the error survives pickling out of a build worker.
        super().__init__(path, problem)
        self.path = path
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"

    @classmethod
    def cannot(cls, action: str, path: object, exc: OSError) -> PublishError:
        """``site/x.html: cannot write: No space left on device``."""
        return cls(str(path), f"cannot {action}: {exc.strerror or exc}")


class WorkerError(CaixunError):
    """A worker process ended before its work was done (killed: out of memory, say)."""


class SourceError(CaixunError):
    """A news source failed; other sources are unaffected."""


class FetchError(SourceError):
    """A request failed: connection, timeout or an error status."""


class PayloadError(SourceError):
    """A response arrived but its payload is empty, truncated or of a changed shape."""

"""Atomic writes of export files: a reader sees the old file or the whole new one.

The site has its own writer (``site.SiteWriter``, temporary files in one
directory outside the published tree); exports write beside their target.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import IO, Any, Iterator

from caixun.errors import PublishError

__all__ = ["atomic_file", "write_atomic"]


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """A new file that replaces ``path`` when the block ends without an error.

    On any error the target is left as it was and the temporary file is
    removed, so a full disk leaves neither a 0-byte nor a half-written file.
    An ``OSError`` (full disk, read-only file system, no such directory)
    becomes a :class:`PublishError` naming ``path``.
    """
    tmp = path.with_name(f".tmp-{path.name}-{secrets.token_hex(4)}")
    encoding = None if "b" in mode else "utf-8"
    try:
        # "x": created anew with the usual permissions (umask), unlike mkstemp's 0600.
        with open(tmp, mode.replace("w", "x"), encoding=encoding) as handle:
            yield handle
        os.replace(tmp, path)
    except OSError as exc:
        raise PublishError.cannot("write", path, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as handle:
        handle.write(data)

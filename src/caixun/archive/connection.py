"""The part of a DB-API connection the archive's shared code uses, for either database."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Protocol, Sequence

__all__ = ["Connection", "Cursor"]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int = ...) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """``sqlite3.Connection``, or the PostgreSQL archive's wrapper of a psycopg connection.

    Statements use ``?`` placeholders.
    """

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...

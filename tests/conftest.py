"""Shared fixtures. The real corpus lives in ../shared (beside the repository)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from caixun.archive import SqliteArchive, open_archive

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CAIXUN_SHARED", REPO.parent / "shared"))
POSTS = SHARED / "corpus" / "finews-posts"

if not POSTS.is_dir():  # fail loudly: these tests are meaningless without the corpus
    raise RuntimeError(f"the real corpus is missing: {POSTS} (set CAIXUN_SHARED)")


@pytest.fixture
def corpus_posts() -> list[Path]:
    return sorted(POSTS.iterdir())


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server for the session: $CAIXUN_TEST_POSTGRES, or a throwaway cluster."""
    import pgserver

    url = os.environ.get(pgserver.ENV)
    if url:
        yield url
        return
    base = Path(tempfile.mkdtemp(prefix="caixun-pg-"))  # not under pytest's 0700 tmp: the
    try:                                                 # server runs as the postgres user
        yield pgserver.start(base)
    finally:
        pgserver.stop(base)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """The URL of a new, empty database on the test server; dropped afterwards."""
    import psycopg

    name = "caixun_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 STRATEGY FILE_COPY")
    yield pg_server.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def archive_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where an archive goes, for each backend: an SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "caixun.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def archive(archive_url: str) -> Iterator[SqliteArchive]:
    """A new, empty archive of each backend (every test using it runs on both)."""
    with open_archive(archive_url) as db:
        yield db


# CI runs derandomized so a red build is reproducible; locally, Hypothesis explores.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True, deadline=None)
_hypothesis_settings.register_profile("dev", deadline=None)
_hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_configure(config: pytest.Config) -> None:
    # Playwright's expect() waits 5 s by default, whatever a context's default
    # timeout: an in-browser search over the corpus on a loaded CI machine can
    # take longer. (A test that fails still fails, 30 s later.)
    try:
        from playwright.sync_api import expect
    except ImportError:  # not installed: no browser test can run
        return
    expect.set_options(timeout=30_000)

"""Shared fixtures. The real corpus lives in ../shared (beside the repository)."""

from __future__ import annotations

import os
from pathlib import Path

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


@pytest.fixture
def archive(tmp_path: Path) -> SqliteArchive:
    with open_archive(tmp_path / "caixun.db") as db:
        yield db  # type: ignore[misc]


# CI runs derandomized so a red build is reproducible; locally, Hypothesis explores.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True, deadline=None)
_hypothesis_settings.register_profile("dev", deadline=None)
_hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")

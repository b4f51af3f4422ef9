"""Search on the static site: the sharded index the build writes, read as search.js reads it.

``search_static`` is the Python twin of search.js (the browser test checks they
agree); here it runs against sites built from the real corpus and from
generated articles, on real SQLite archives.
"""

from __future__ import annotations

import html
import itertools
import random
import re
import shutil
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caixun.archive import SqliteArchive, open_archive
from caixun.importer import import_posts
from caixun.publish import static_search
from caixun.publish.site import SiteConfig, build_site
from caixun.publish.static_search import (
    HINT,
    decode_postings,
    encode_postings,
    search_static,
    static_terms,
)
from caixun.segment import _CJK, normalize
from conftest import POSTS
from site_helpers import make_article, tree

CONFIG = SiteConfig(title="财讯测试", url="https://news.example.com", per_page=10)
ALL = 10**9


@pytest.fixture(scope="module")
def corpus_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[int, str]]]:
    """The whole real corpus built into a site; (site dir, id → indexed text)."""
    tmp = tmp_path_factory.mktemp("static-search")
    with open_archive(tmp / "caixun.db") as archive:
        import_posts([POSTS], archive)
        build_site(archive, tmp / "site", CONFIG, jobs=1)
        texts = archive.index_texts(0, ALL)
    yield tmp / "site", texts


def _folded(text: str) -> str:
    return normalize(text).lower()


# -- terms ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, terms", [
    ("人民银行", ["人民", "民银", "银行"]),
    ("中", []),
    ("，。！", []),
    ("00700.HK", ["00700", "hk"]),
    ("A股市场", ["a", "a股", "股市", "市场"]),
    ("ＭＬＦ利率", ["mlf", "mlf利", "利率"]),
    ("看5G手机", ["看5g", "5g", "5g手", "手机"]),
    ("央行 央行", ["央行"]),
    ("降准0.5个百分点", ["降准", "准0", "0", "5", "5个", "个百", "百分", "分点"]),
])
def test_terms_follow_the_rules(text: str, terms: list[str]) -> None:
    assert static_terms(text) == terms


def test_postings_round_trip() -> None:
    rng = random.Random(7)
    for size in (1, 2, 50, 600, 4000):
        ids = sorted(rng.sample(range(4096), size))
        kind, data = encode_postings(ids)
        assert decode_postings(kind, data) == ids
        assert kind == (1 if size >= 600 else 0)  # dense lists become bitmaps


# -- the corpus --------------------------------------------------------------------------

def _contains(text: str, word: str) -> bool:
    """The archive search's notion of a match: substring, ASCII runs as whole words."""
    folded, word = _folded(text), _folded(word)
    edge = "(?<![a-z0-9])" if word[0].isascii() else ""
    tail = "(?![a-z0-9])" if word[-1].isascii() else ""
    return re.search(edge + re.escape(word) + tail, folded) is not None


def _sample_words(texts: dict[int, str], count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    cjk_pairs, ascii_words = set(), set()
    for text in texts.values():
        folded = _folded(text)
        cjk_pairs.update(m.group()[i:i + 2] for m in re.finditer(f"[{_CJK}]{{2,}}", folded)
                         for i in range(len(m.group()) - 1))
        ascii_words.update(re.findall("[a-z0-9]+", folded))
    return (rng.sample(sorted(cjk_pairs), count) + rng.sample(sorted(ascii_words), count // 4)
            + ["央行", "A股", "北向资金", "5G", "ＭＬＦ", "00700.HK", "人民银行"])


def test_every_article_containing_the_query_is_found(
        corpus_site: tuple[Path, dict[int, str]]) -> None:
    """Recall against a brute-force scan; exactly the articles having all the terms."""
    site, texts = corpus_site
    terms_of = {i: set(static_terms(t)) for i, t in texts.items()}
    checked = 0
    for word in _sample_words(texts, 400, seed=1):
        found = search_static(site, word, limit=ALL).ids
        assert found == sorted(found, reverse=True)
        containing = {i for i, text in texts.items() if _contains(text, word)}
        assert containing <= set(found), word
        wanted = set(static_terms(word))
        assert set(found) == {i for i, terms in terms_of.items() if wanted <= terms}, word
        checked += bool(containing)
    assert checked >= 400


def test_a_minus_word_excludes(corpus_site: tuple[Path, dict[int, str]]) -> None:
    site, texts = corpus_site
    with_a = set(search_static(site, "公司", limit=ALL).ids)
    with_both = set(search_static(site, "公司 市场", limit=ALL).ids)
    without = search_static(site, "公司 -市场", limit=ALL).ids
    assert with_both and with_a - with_both
    assert set(without) == with_a - with_both
    assert all("市场" not in _folded(texts[i]) for i in without)


def test_results_are_newest_first_and_paged(corpus_site: tuple[Path, dict[int, str]]) -> None:
    site, _ = corpus_site
    everything = search_static(site, "公司", limit=ALL).ids
    assert len(everything) > 20
    first = search_static(site, "公司")
    assert first.ids[:20] == everything[:20]
    assert set(first.docs) == set(first.ids[:20])
    for article_id, (title, path, outlet, day) in first.docs.items():
        page = html.unescape((site / path).read_text(encoding="utf-8"))
        assert title in page and outlet in page and re.fullmatch(r"\d{4}-\d\d-\d\d", day)


def test_bytes_read_are_the_files_read(corpus_site: tuple[Path, dict[int, str]]) -> None:
    site, _ = corpus_site
    for query in ("央行", "A股 -基金", "公司", "北向资金", "600519"):
        result = search_static(site, query)
        assert result.files[0][0] == "search/manifest.json"
        for path, size in result.files:
            assert (site / path).stat().st_size == size
        assert result.bytes_read == sum(size for _, size in result.files)
        assert result.bytes_read <= 200_000, query


def test_a_query_without_terms_gets_the_hint(corpus_site: tuple[Path, dict[int, str]]) -> None:
    site, _ = corpus_site
    for query in ("中", "  ", "，", "-央行"):
        result = search_static(site, query)
        assert result.hint == HINT and not result.ids and not result.files


def test_the_search_page_is_built(corpus_site: tuple[Path, dict[int, str]]) -> None:
    site, _ = corpus_site
    page = (site / "search/index.html").read_text(encoding="utf-8")
    assert 'type="search"' in page and "/assets/search.js" in page
    assert (site / "assets/search.js").is_file()
    assert 'href="/search/"' in (site / "index.html").read_text(encoding="utf-8")


# -- incremental builds ---------------------------------------------------------------

@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 8 ids, level-1 blocks of 32, tails of 4: a few dozen articles exercise
    every case."""
    monkeypatch.setattr(static_search, "LEVEL_SIZES", (8, 32))
    monkeypatch.setattr(static_search, "TAIL_SIZE", 4)
    monkeypatch.setattr(static_search, "SHARD_TARGET", 256)
    monkeypatch.setattr(static_search, "BIG_POSTING", 2)


def _add(archive: SqliteArchive, numbers: range) -> None:
    for n in numbers:
        archive.store(make_article(n, title=f"测试新闻{n} 第{n % 3}类"))


def _search_tree(site: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree(site).items() if k.startswith("search/")}


def _full_copy(archive: SqliteArchive, tmp_path: Path, name: str) -> dict[str, bytes]:
    out = tmp_path / name
    shutil.rmtree(out, ignore_errors=True)
    build_site(archive, out, CONFIG, full=True, jobs=2)
    return _search_tree(out)


@pytest.mark.usefixtures("small_blocks")
def test_new_articles_rewrite_only_the_last_block(archive: SqliteArchive, tmp_path: Path) -> None:
    site = tmp_path / "site"
    _add(archive, range(1, 21))  # ids 1…20: blocks 0-0, 0-1, 0-2; 20 is a cut: no tail
    build_site(archive, site, CONFIG, jobs=1)
    assert {p.split("/")[1] for p in _search_tree(site) if p.count("/") == 2} == \
        {"0-0", "0-1", "0-2"}
    _add(archive, range(21, 23))  # 21, 22: the tail
    report = build_site(archive, site, CONFIG, jobs=1, record_paths=True)
    written = {p for p in report.written_paths if p.startswith("search/")}
    assert written - {"search/manifest.json"}
    assert all(p.startswith("search/t-21/") for p in written - {"search/manifest.json"})
    assert search_static(site, "测试新闻22").ids == [22]
    assert _search_tree(site) == _full_copy(archive, tmp_path, "full")
    _add(archive, range(23, 26))  # 25 passes the cut at 24: 21…23 join 0-2, 24 starts 0-3
    report = build_site(archive, site, CONFIG, jobs=1, record_paths=True)
    assert {p.split("/")[1] for p in report.written_paths if p.count("/") == 2
            and p.startswith("search/")} == {"0-2", "0-3", "t-25"}
    assert not (site / "search/t-21").exists()
    assert search_static(site, "测试新闻22").ids == [22]
    assert _search_tree(site) == _full_copy(archive, tmp_path, "full")


@pytest.mark.usefixtures("small_blocks")
def test_a_block_is_rebuilt_only_when_its_ids_or_the_cut_past_them_changed(
        archive: SqliteArchive, tmp_path: Path) -> None:
    """What an incremental build plans to build, not only what it writes: a block
    rebuilt to the same bytes writes nothing, but costs its articles' reading and
    encoding (a level-0 block of 1,024 ids, 60 ms, at every new article)."""
    site = tmp_path / "site"

    def planned() -> tuple[object, ...]:
        return static_search.plan_index(archive, site, set()).todo

    _add(archive, range(1, 21))  # ids 1…20: 20 is a cut, no tail
    build_site(archive, site, CONFIG, jobs=1)
    assert planned() == ()
    for last in (21, 22, 23):  # the cut stays at 20: the tail alone, each time
        _add(archive, range(last, last + 1))
        assert planned() == (static_search.Tail(21),)
        build_site(archive, site, CONFIG, jobs=1)
    _add(archive, range(24, 26))  # the cut moves to 24: 21…23 join 0-2, 24 starts 0-3
    assert planned() == (static_search.Block(0, 2), static_search.Block(0, 3),
                         static_search.Tail(25))
    build_site(archive, site, CONFIG, jobs=1)
    assert planned() == (static_search.Tail(25),)
    archive.delete("test:25")  # the cut goes back to 20 (24 is the highest id left)
    archive.delete("test:24")
    archive.delete("test:23")
    assert planned() == (static_search.Block(0, 2), static_search.Tail(21))
    build_site(archive, site, CONFIG, jobs=1)
    assert planned() == (static_search.Tail(21),)
    assert search_static(site, "测试新闻22").ids == [22]
    assert _search_tree(site) == _full_copy(archive, tmp_path, "full")


@pytest.mark.usefixtures("small_blocks")
def test_one_new_article_rewrites_a_few_files(archive: SqliteArchive, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """At the real sizes: an article added to a site of 151 writes the tail, not the block."""
    monkeypatch.setattr(static_search, "LEVEL_SIZES", (1024, 16384, 262144))
    monkeypatch.setattr(static_search, "SHARD_TARGET", 1024)
    monkeypatch.setattr(static_search, "TAIL_SIZE", 16)
    import_posts([POSTS], archive)
    _add(archive, range(1, 35))  # 151 articles
    site = tmp_path / "site"
    build_site(archive, site, CONFIG, jobs=1)
    _add(archive, range(35, 36))
    report = build_site(archive, site, CONFIG, jobs=1, record_paths=True)
    search_files = [p for p in report.written_paths if p.startswith("search/")]
    assert len(report.written_paths) <= 30 and len(search_files) <= 8, report.written_paths
    assert _search_tree(site) == _full_copy(archive, tmp_path, "full")


@pytest.mark.usefixtures("small_blocks")
def test_updated_and_deleted_articles(archive: SqliteArchive, tmp_path: Path) -> None:
    site = tmp_path / "site"
    _add(archive, range(1, 21))
    build_site(archive, site, CONFIG, jobs=1)
    assert search_static(site, "猕猴桃").ids == []
    archive.store(make_article(3, title="猕猴桃价格上涨"))
    report = build_site(archive, site, CONFIG, jobs=1, record_paths=True)
    assert search_static(site, "猕猴桃").ids == [3]
    assert search_static(site, "测试新闻3").ids == []  # the old title is gone
    assert {p.split("/")[1] for p in report.written_paths if p.count("/") == 2
            and p.startswith("search/")} == {"0-0"}
    archive.delete("test:3")
    build_site(archive, site, CONFIG, jobs=1)
    assert search_static(site, "猕猴桃").ids == []
    for n in range(17, 21):  # empties block 0-2 (ids 16…20 but 16 is still there)
        archive.delete(f"test:{n}")
    archive.delete("test:16")
    build_site(archive, site, CONFIG, jobs=1)
    assert not (site / "search/0-2").exists()
    assert _search_tree(site) == _full_copy(archive, tmp_path, "full")


@pytest.mark.usefixtures("small_blocks")
def test_a_completed_level_one_range_replaces_its_small_blocks(
        archive: SqliteArchive, tmp_path: Path) -> None:
    site = tmp_path / "site"
    _add(archive, range(1, 31))  # ids 1…30: level-0 blocks 0-0 … 0-3, the tail 29, 30
    build_site(archive, site, CONFIG, jobs=1)
    assert sorted(p.name for p in (site / "search").iterdir() if p.is_dir()) == \
        ["0-0", "0-1", "0-2", "0-3", "t-29"]
    before = search_static(site, "第1类", limit=ALL).ids
    _add(archive, range(31, 36))  # id 32 exists: ids 0…31 become block 1-0
    build_site(archive, site, CONFIG, jobs=1)
    assert sorted(p.name for p in (site / "search").iterdir() if p.is_dir()) == \
        ["0-4", "1-0", "t-33"]
    after = search_static(site, "第1类", limit=ALL).ids
    assert after == sorted(set(before) | {31, 34}, reverse=True)
    assert _search_tree(site) == _full_copy(archive, tmp_path, "full")
    result = search_static(site, "第1类", limit=1)  # the newest block answers alone
    assert result.ids == [34]
    assert not any(path.startswith("search/1-0/") for path, _ in result.files)


def test_the_layout_covers_every_id_once_at_every_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(static_search, "LEVEL_SIZES", (4, 16, 64))
    assert static_search.layout(70) == [static_search.Block(2, 0), static_search.Block(0, 16),
                                        static_search.Block(0, 17)]
    for max_id in range(1, 300):
        blocks = static_search.layout(max_id)
        covered = [i for b in blocks for i in range(b.lo, b.hi + 1)]
        assert covered[:max_id + 1] == list(range(max_id + 1)), max_id
        assert len(covered) == len(set(covered))
        small = [b for b in blocks if b.level == 0]
        assert len(small) <= 4 * 4  # fewer than one level-1 range of level-0 blocks, plus one
        for article_id in range(1, max_id + 1):
            block = static_search.block_of(article_id, max_id)
            assert block in blocks and block.lo <= article_id <= block.hi


@pytest.mark.usefixtures("small_blocks")
def test_three_levels_grow_incrementally_as_a_full_build(archive: SqliteArchive,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(static_search, "LEVEL_SIZES", (4, 16, 64))
    site = tmp_path / "site"
    for first in range(1, 80, 9):
        _add(archive, range(first, first + 9))
        build_site(archive, site, CONFIG, jobs=1)
    levels = {p.name.split("-")[0] for p in (site / "search").iterdir() if p.is_dir()} - {"t"}
    assert levels == {"0", "2"} or levels == {"0", "1", "2"}
    assert search_static(site, "测试新闻5", limit=ALL).ids == [5]
    assert _search_tree(site) == _full_copy(archive, tmp_path, "full")


def test_terms_kept_at_write_time_build_the_index_a_recomputation_would(
        archive: SqliteArchive, tmp_path: Path) -> None:
    """The build reads the terms the archive kept; without them (an older archive, other
    term rules) it segments the articles itself: the same files either way."""
    import_posts([POSTS], archive)
    _add(archive, range(1, 30))
    kept = _full_copy(archive, tmp_path, "kept")
    stored = archive._db.execute("SELECT count(*) FROM static_terms").fetchone()[0]
    assert stored == archive.count()
    with archive.transaction():
        archive._db.execute("UPDATE static_terms SET version = version + 1 "
                            "WHERE article_id % 3 = 0")
        archive._db.execute("DELETE FROM static_terms WHERE article_id % 3 = 1")
    assert _full_copy(archive, tmp_path, "recomputed") == kept
    # An edited article's kept terms follow its text.
    article = archive.get("test:5")
    assert article is not None
    archive.store(article.evolve(title="猕猴桃价格上涨"))
    site = tmp_path / "kept"
    build_site(archive, site, CONFIG, jobs=1)
    assert search_static(site, "猕猴桃").ids != []


def test_a_block_built_in_runs_of_articles_equals_one_built_at_once(
        archive: SqliteArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A big block is read and encoded a run of articles at a time (memory stays flat):
    the same files as from one run, whichever run boundaries fall inside posting lists."""
    import_posts([POSTS], archive)
    _add(archive, range(1, 60))
    whole = _full_copy(archive, tmp_path, "whole")
    for run_size in (32, 64):
        monkeypatch.setattr(static_search, "RUN_SIZE", run_size)
        assert _full_copy(archive, tmp_path, f"runs{run_size}") == whole
    # Posting lists that stay varints and ones that become bitmaps both span runs.
    kinds = {tag & 1 for name, data in whole.items() if "/s" in name
             for tag in _tags(data)}
    assert kinds == {0, 1}


def _tags(shard: bytes) -> list[int]:
    tags, pos = [], 0
    while pos < len(shard):
        size, pos = static_search._read_varint(shard, pos)
        pos += size
        tag, pos = static_search._read_varint(shard, pos)
        tags.append(tag)
        if not tag & 2:
            pos += tag >> 2
    return tags


# -- the native loops (_postings.c) ------------------------------------------------------

def test_the_native_loops_are_built() -> None:
    """The install compiled _postings.c (a build without it is correct, only slower:
    this is what tells that CI's install lost its compiler)."""
    assert static_search.native() is not None


_TERMS = st.sampled_from(["a", "b", "hk", "00700", "人民", "民银", "银行", "股市", "a股", "",
                          "x" * 300])


@st.composite
def _docs(draw: st.DrawFn) -> list[static_search.Doc]:
    """Articles with ascending ids, dense (bitmaps) or sparse (varints past one byte),
    some with no terms, repeated or empty terms."""
    gaps = draw(st.lists(st.one_of(st.integers(1, 3), st.integers(100, 70_000)),
                         min_size=1, max_size=40))
    docs, at = [], draw(st.integers(0, 5))
    for gap in gaps:
        terms = draw(st.lists(_TERMS, max_size=12))
        source = "\n".join(terms).encode("utf-8")
        docs.append(static_search.Doc(at, segment_pack(source), []))
        at += gap
    return docs


def segment_pack(lines: bytes) -> bytes:
    """Terms as the archive packs them (zlib, as segment.pack_terms)."""
    import zlib

    return zlib.compress(lines, 1)


@settings(max_examples=300, deadline=None)
@given(docs=_docs(), lo=st.integers(0, 5))
def test_the_native_block_encoding_equals_the_python_one(docs: list[static_search.Doc],
                                                         lo: int) -> None:
    lo = min(lo, docs[0].id)
    native = static_search.native()
    assert native is not None
    expected = list(static_search._encoded_in_python(docs, lo))
    assert native.encode_block([doc.term_lines() for doc in docs],
                               [doc.id - lo for doc in docs]) == expected
    for term, kind, data in expected:  # and each list decodes to its articles
        ids = {doc.id - lo for doc in docs if term in doc.terms()}
        assert set(decode_postings(kind, data)) == ids


@settings(max_examples=200, deadline=None)
@given(docs=_docs(), cuts=st.lists(st.integers(1, 39), max_size=4))
def test_a_block_in_runs_is_encoded_natively_as_in_python(docs: list[static_search.Doc],
                                                          cuts: list[int]) -> None:
    """A block too big for one run gathers its lists run by run (_Postings)."""
    bounds = [0, *sorted({c for c in cuts if c < len(docs)}), len(docs)]
    runs = [docs[a:b] for a, b in itertools.pairwise(bounds)]
    native, python = static_search._Postings(), static_search._Postings()
    for run in runs:
        native.add(run, 0)
        python._add_in_python(run, 0)
    assert list(native.encoded()) == list(python.encoded()) == \
        list(static_search._encoded_in_python(docs, 0))


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(st.tuples(st.binary(max_size=40), st.integers(0, 2**40),
                                  st.binary(max_size=300)), max_size=60),
       shards=st.sampled_from([1, 2, 4, 64]))
def test_the_native_shards_equal_the_python_ones(entries: list[tuple[bytes, int, bytes]],
                                                 shards: int) -> None:
    native = static_search.native()
    assert native is not None
    assert native.shard_parts(entries, shards) == _python_shards(entries, shards)
    for term, _, _ in entries:
        assert native.fnv1a32(term) == static_search.fnv1a32_bytes(term)


def _python_shards(entries: list[tuple[bytes, int, bytes]], shards: int) -> list[bytes]:
    parts = [bytearray() for _ in range(shards)]
    for term, tag, data in entries:
        part = parts[static_search.fnv1a32_bytes(term) % shards]
        static_search._varint(len(term), part)
        part += term
        static_search._varint(tag, part)
        part += data
    return [bytes(part) for part in parts]


def test_a_site_built_without_the_native_loops_is_the_same(
        archive: SqliteArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no compiler built them, the Python loops write the same search files."""
    import_posts([POSTS], archive)
    _add(archive, range(1, 40))
    native = _full_copy(archive, tmp_path, "native")
    monkeypatch.setattr(static_search, "RUN_SIZE", 32)  # blocks gathered in runs
    assert _full_copy(archive, tmp_path, "native-runs") == native
    monkeypatch.setattr(static_search, "native", lambda: None)
    assert _full_copy(archive, tmp_path, "python-runs") == native
    monkeypatch.setattr(static_search, "RUN_SIZE", 4096)
    assert _full_copy(archive, tmp_path, "python") == native

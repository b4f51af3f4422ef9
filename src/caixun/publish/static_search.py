"""Search on the static site: a sharded index the browser reads piece by piece.

The build writes, under ``search/``, an index of every article (title, digest
and body, the text the archive's own search indexes) that ``assets/search.js``
queries with plain ``fetch`` — no server. A query downloads only the few small
files holding its terms, block by block from the newest articles, and stops
as soon as a page of results is found.

Terms (``static_terms``, and the identical ``staticTerms`` in search.js), on
text with full-width ASCII folded to half-width and case folded:

* every run of Chinese characters gives its overlapping bigrams (人民银行 →
  人民 民银 银行); a lone character gives nothing by itself;
* every run of ASCII letters and digits is a term (00700.HK → 00700, hk);
* an ASCII run directly followed by a Chinese character also gives run+char,
  and a Chinese character directly followed by an ASCII run char+run
  (A股市场 → a, a股, 股市, 市场).

A query's terms are the terms of its words; an article matches when it has
all of them, and ``-word`` drops the articles having all the terms of that
word. This is a superset of substring matching: an article containing the
query string (with its ASCII runs as whole words, as in the archive's search)
is always found (tested on the corpus), and so is an article that has every
bigram of it in different places. A query with no term (one Chinese
character, punctuation) gets a hint instead of results. A query's terms are
capped at ``MAX_QUERY_TERMS`` (the first ones), which only widens the results.

Layout (all integers little-endian; "varint" is LEB128, 7 bits a byte)::

    search/manifest.json      {"format", "terms", "levels", "tail", "cut",
                               "docs_per_chunk",
                               "blocks": [{"level", "k", "lo", "hi", "n",
                                           "shards", "v"}, …]}   newest first
    search/t-<lo>/…               the tail (level "t", k = lo), files as a block's
    search/<level>-<k>/s<i>.bin   shard i of the block's terms
    search/<level>-<k>/t<j>.bin   one large posting list
    search/<level>-<k>/d<c>.json  {"<id>": [title, path, outlet, "YYYY-MM-DD"]}
                                  for ids lo + c*docs_per_chunk …

A block holds the article ids ``[lo, hi]``: a block of level *L* covers
``LEVEL_SIZES[L]`` ids. A range of a level above 0 is one block once an
article id past its end exists (and no larger block covers it); the ids above
the last such range are in level-0 blocks. New articles land in the small
level-0 block at the end, so an incremental build re-segments at most 1,024
articles; a range of 16,384 or 262,144 is built once, when it is complete.

The newest ids, above ``cut`` (the highest multiple of ``TAIL_SIZE`` = 16
not above the highest id), are left out of their level-0 block and form the
*tail*, a block whose shards are made about ``TAIL_SHARD_TARGET`` bytes
(8 KB, not 1 KB): a new article rewrites the tail's few files, not the
hundred-odd shards of its level-0 block, which is rewritten once per 16 ids,
when the cut passes them. A block is a pure function of its articles and of
the cut, the cut of the highest id, so a build rewrites only the blocks
holding changed articles (and the one the cut moved through) and an
incremental build writes what a full build would; ``v`` (a hash of the
block's files) lets the browser cache the rest forever (``?v=``).

A term goes to shard ``fnv1a32(utf8(term)) % shards``; ``shards`` is the power
of two that makes the average shard about ``SHARD_TARGET`` bytes. A shard is a
sequence of entries, sorted by term bytes, up to the end of the file::

    varint len, term (UTF-8, len bytes), varint tag, payload

``tag & 3`` is the kind of posting list and ``tag >> 2`` a number: kind 0,
delta varints, and kind 1, bitmap, are inline with a payload of that many
bytes; kinds 2 (delta) and 3 (bitmap) are in the file ``t<number>.bin``
(payload empty), used when the list exceeds ``BIG_POSTING`` bytes. Posting
lists hold ids relative to ``lo``, ascending: delta varints (the first value,
then the differences) or a bitmap (bit ``r & 7`` of byte ``r >> 3`` for ``r``),
whichever is smaller.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import operator
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timezone, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Protocol, Sequence

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
from caixun.archive import ArticleRef, Archive
from caixun.publish import paths
from caixun.securities import canonical_code, from_native, name_forms, normalize_name
from caixun.segment import (STATIC_VERSION, normalize, static_terms, unpack_term_bytes,
                            unpack_term_lines)

__all__ = ["FORMAT", "STOCKS_JS", "STOCKS_JSON", "BuiltBlocks", "IndexPlan", "StaticResult",
           "StockHit", "finish_index", "plan_index", "resolve_stocks", "search_static", "static_terms",
           "stocks_json", "write_block", "write_index"]

FORMAT = 1
TERMS_VERSION = STATIC_VERSION  # the manifest says which terms the index holds
LEVEL_SIZES: tuple[int, ...] = (1024, 16384, 262144)  # ids per block of each level
SHARD_TARGET = 1024  # average bytes per shard: a rare word costs a shard per block
TAIL_SIZE = 16  # the newest ids, above the last multiple of this, are the tail
TAIL_SHARD_TARGET = 8192  # a tail of few, larger shards: a new article rewrites few files
BIG_POSTING = 1024  # posting lists past this go to their own file
DOCS_PER_CHUNK = 32
MAX_QUERY_TERMS = 12
HINT = "请至少输入两个汉字或一个英文/数字词"
# The securities the page finds by code or name. Not "stocks.json": in search/ a name
# starting with "s" reads as a shard (s<i>.bin) to tools globbing "/s".
STOCKS_JSON = f"{paths.SEARCH_DIR}/codes.json"
STOCKS_JS = "assets/search-stocks.js"  # the script reading it (only on a site with securities)
MAX_STOCK_HITS = 5



# -- terms ---------------------------------------------------------------------------

def fnv1a32(term: str) -> int:
    return fnv1a32_bytes(term.encode("utf-8"))


def fnv1a32_bytes(term: bytes) -> int:
    h = 0x811C9DC5
    for byte in term:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    include: list[str]
    exclude: list[list[str]]
    words: list[str]  # the (normalized) words to highlight

    @property
    def hint(self) -> str | None:
        return None if self.include else HINT


def parse_static_query(query: str) -> ParsedQuery:
    """Words AND-ed, ``-word`` excluded; quotes are ignored."""
    include: dict[str, None] = {}
    exclude: list[list[str]] = []
    words: list[str] = []
    for word in query.replace('"', " ").split():
        if word.startswith("-") and len(word) > 1:
            terms = static_terms(word[1:])
            if terms:
                exclude.append(terms[:MAX_QUERY_TERMS])
            continue
        terms = static_terms(word)
        if terms:
            words.append(normalize(word).lower())
        for term in terms:
            include[term] = None
    return ParsedQuery(list(include)[:MAX_QUERY_TERMS], exclude[:MAX_QUERY_TERMS], words)


# -- encoding ------------------------------------------------------------------------

def _varint(value: int, out: bytearray) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def encode_postings(relative: list[int]) -> tuple[int, bytes]:
    """(kind, bytes) of ascending relative ids: 0 delta varints, 1 bitmap."""
    deltas = list(map(operator.sub, relative, [0] + relative[:-1]))
    size = relative[-1] // 8 + 1
    if size < len(deltas):  # a bitmap is smaller than even one byte a delta
        return 1, _bitmap(relative, size)
    if max(deltas) < 0x80:
        return 0, bytes(deltas)
    delta = bytearray()
    for value in deltas:
        _varint(value, delta)
    if size < len(delta):
        return 1, _bitmap(relative, size)
    return 0, bytes(delta)


# Bytes of a bitmap made without numpy: a level-0 block's (or the tail's) at most.
SMALL_BITMAP = LEVEL_SIZES[0] // 8


def _bitmap(relative: Sequence[int] | NDArray[np.int64], size: int) -> bytes:
    """Bit ``i`` of byte ``i >> 3`` is ``i & 7`` (little-endian bit order), set for each id.

    A small one (an incremental build's, mostly) as a binary numeral read by int():
    as fast, and a build that makes only those needs no numpy (a tenth of its
    imports). A larger one in numpy: a common term's bitmap holds most of a
    block's thousands of ids.
    """
    if size <= SMALL_BITMAP:
        digits = bytearray(b"0") * (size * 8)  # digit i is bit i: the numeral reversed
        for r in relative:
            digits[r] = 0x31  # "1"
        digits.reverse()
        return int(digits, 2).to_bytes(size, "little")
    import numpy as np

    bits = np.zeros(size * 8, dtype=np.bool_)
    bits[relative] = True
    return np.packbits(bits, bitorder="little").tobytes()


def decode_postings(kind: int, data: bytes) -> list[int]:
    if kind & 1:
        return [i * 8 + bit for i, byte in enumerate(data) if byte
                for bit in range(8) if byte >> bit & 1]
    out: list[int] = []
    pos = value = 0
    while pos < len(data):
        step, pos = _read_varint(data, pos)
        value = value + step if out else step
        out.append(value)
    return out


# -- blocks ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, order=True)
class Block:
    level: int
    k: int

    @property
    def lo(self) -> int:
        return self.k * LEVEL_SIZES[self.level]

    @property
    def hi(self) -> int:
        return self.lo + LEVEL_SIZES[self.level] - 1

    @property
    def dir(self) -> str:
        return f"{paths.SEARCH_DIR}/{self.level}-{self.k}"


@dataclass(frozen=True, slots=True)
class Tail:
    """The newest ids, ``lo``… ``lo + tail_size() - 1``, in a block of a few shards.

    The ids above ``cut(max_id)`` (a multiple of the tail size) are left out
    of their level-0 block and form the tail: a new article rewrites the
    tail's few files, and the level-0 block only once per ``TAIL_SIZE`` ids,
    when the cut moves past them. Both are functions of the articles and of
    the highest id, so an incremental build gives the files a full build does.
    """

    lo: int

    level = "t"

    @property
    def k(self) -> int:
        return self.lo

    @property
    def hi(self) -> int:
        return self.lo + tail_size() - 1

    @property
    def dir(self) -> str:
        return f"{paths.SEARCH_DIR}/t-{self.lo}"


def tail_size() -> int:
    """Ids per tail: a power of two that divides the level-0 block size."""
    return min(TAIL_SIZE, LEVEL_SIZES[0])


def cut(max_id: int) -> int:
    """The highest id in the blocks; ids above it are in the tail."""
    return max_id - max_id % tail_size()


def layout(max_id: int) -> list[Block]:
    """Every block that may hold ids 1…max_id, oldest first."""
    if not max_id:
        return []
    blocks: list[Block] = []
    start = 0
    for level in range(len(LEVEL_SIZES) - 1, 0, -1):
        size = LEVEL_SIZES[level]
        end = max_id // size * size  # ranges of this level with an id past their end
        blocks += [Block(level, k) for k in range(start // size, end // size)]
        start = max(start, end)
    small = LEVEL_SIZES[0]
    return blocks + [Block(0, k) for k in range(start // small, max_id // small + 1)]


def block_of(article_id: int, max_id: int) -> Block:
    for level in range(len(LEVEL_SIZES) - 1, 0, -1):
        size = LEVEL_SIZES[level]
        if article_id < max_id // size * size:
            return Block(level, article_id // size)
    return Block(0, article_id // LEVEL_SIZES[0])


@dataclass(frozen=True, slots=True)
class Doc:
    id: int
    # The terms as the archive packed them (segment.pack_terms), or the text
    # to segment: a block's terms are unpacked one article at a time, as the
    # packed form is a third of the size.
    source: bytes | str
    meta: list[str]  # title, path, outlet, date

    def terms(self) -> list[bytes]:
        """The terms, UTF-8: a block sorts and writes them as bytes, and splitting
        the archive's packed terms into bytes costs half as much as into strings."""
        if isinstance(self.source, bytes):
            return unpack_term_bytes(self.source)
        return [term.encode("utf-8") for term in static_terms(self.source)]

    def term_lines(self) -> bytes:
        """:meth:`terms` joined by newlines (b"": none), as the native loops read them."""
        if isinstance(self.source, bytes):
            return unpack_term_lines(self.source)
        return "\n".join(static_terms(self.source)).encode("utf-8")


class _Postings:
    """Posting lists of a block, kept as they will be written: delta varints.

    A level-2 block holds 262,144 articles of some 450 terms each: as lists of
    ids that took 1.9 GB; as varints, one to three bytes an id.
    """

    def __init__(self) -> None:
        self._lists: dict[bytes, tuple[bytearray, list[int]]] = {}  # term → (varints, [last id])

    def add(self, docs: Sequence[Doc], lo: int) -> None:
        """Add the terms of ``docs`` (ids ascending, after every id added before)."""
        loops = native()
        if loops is None:
            self._add_in_python(docs, lo)
            return
        lists = self._lists
        for term, first, last_id, rest in loops.run_postings([doc.term_lines() for doc in docs],
                                                             [doc.id - lo for doc in docs]):
            entry = lists.get(term)
            if entry is None:
                entry = lists[term] = (bytearray(), [0])
            data, last = entry
            _varint(first - last[0], data)
            data += rest
            last[0] = last_id

    def _add_in_python(self, docs: Sequence[Doc], lo: int) -> None:
        chunk: dict[bytes, list[int]] = defaultdict(list)
        for doc in docs:
            relative = doc.id - lo
            for term in doc.terms():
                chunk[term].append(relative)
        for term, ids in chunk.items():
            entry = self._lists.get(term)
            if entry is None:
                entry = self._lists[term] = (bytearray(), [0])
            data, last = entry
            deltas = list(map(operator.sub, ids, [last[0], *ids[:-1]]))
            if max(deltas) < 0x80:
                data += bytes(deltas)
            else:
                for value in deltas:
                    _varint(value, data)
            last[0] = ids[-1]

    def encoded(self) -> Iterator[tuple[bytes, int, bytes]]:
        """(term, kind, bytes) in UTF-8 order, as :func:`encode_postings` encodes them."""
        import numpy as np

        for term in sorted(self._lists):
            data, last = self._lists[term]
            size = last[0] // 8 + 1
            if size >= len(data):
                yield term, 0, bytes(data)
                continue
            # A bitmap is smaller (encode_postings' rule). A term that common has
            # one-byte deltas: its ids are their running sum.
            deltas = np.frombuffer(data, dtype=np.uint8)
            ids = (np.cumsum(deltas, dtype=np.int64) if int(deltas.max()) < 0x80
                   else decode_postings(0, bytes(data)))
            yield term, 1, _bitmap(ids, size)


class NativeLoops(Protocol):
    """What ``_postings.c`` does, as the Python functions below do it."""

    def encode_block(self, texts: list[bytes], ids: list[int]) -> list[tuple[bytes, int, bytes]]:
        """:func:`_encoded_in_python` of articles' newline-separated terms and relative ids."""

    def run_postings(self, texts: list[bytes], ids: list[int]
                     ) -> list[tuple[bytes, int, int, bytes]]:
        """(term, first id, last id, the later delta varints) of a run (:class:`_Postings`)."""

    def shard_parts(self, entries: list[tuple[bytes, int, bytes]], shards: int) -> list[bytes]:
        """:func:`_shard_parts` in Python."""


@functools.cache
def native() -> NativeLoops | None:
    """The C loops (``_postings.c``), or None where they were not built (no compiler)."""
    try:
        from caixun.publish import _postings
    except ImportError:
        return None
    return _postings


def _encoded_at_once(docs: Sequence[Doc], lo: int) -> Iterable[tuple[bytes, int, bytes]]:
    """(term, kind, bytes) of one run of articles: :class:`_Postings` for a block that
    fits in one run, faster (lists of ids, encoded once)."""
    loops = native()
    if loops is not None:
        return loops.encode_block([doc.term_lines() for doc in docs],
                                  [doc.id - lo for doc in docs])
    return _encoded_in_python(docs, lo)


def _encoded_in_python(docs: Sequence[Doc], lo: int) -> Iterator[tuple[bytes, int, bytes]]:
    postings: dict[bytes, list[int]] = defaultdict(list)
    for doc in docs:
        relative = doc.id - lo
        for term in doc.terms():
            postings[term].append(relative)
    for term in sorted(postings):  # bytes: UTF-8 order
        yield (term, *encode_postings(postings[term]))


def build_block(block: Block | Tail, docs: Iterable[Sequence[Doc]]) -> tuple[dict[str, bytes], int]:
    """The files of one block (or the tail), name → bytes, and how many articles it holds.

    ``docs`` come in runs, ids ascending (see :func:`block_doc_runs`): a
    block's articles are never all in memory at once.
    """
    runs = iter(docs)
    first, second = next(runs, []), next(runs, None)
    files: dict[str, bytes] = {}
    count = 0
    postings = _Postings() if second is not None else None
    for run in itertools.chain([first], [second] if second is not None else [], runs):
        if postings is not None:
            postings.add(run, block.lo)
        count += len(run)
        chunks: dict[int, dict[str, list[str]]] = defaultdict(dict)
        for doc in run:
            chunks[(doc.id - block.lo) // DOCS_PER_CHUNK][str(doc.id)] = doc.meta
        for number, chunk in chunks.items():
            files[f"d{number}.json"] = json.dumps(chunk, ensure_ascii=False,
                                                  separators=(",", ":")).encode("utf-8")
    if not count:
        return {}, 0
    entries: list[tuple[bytes, int, bytes]] = []
    terms: dict[str, bytes] = {}
    encoded = postings.encoded() if postings is not None else _encoded_at_once(first, block.lo)
    for term, kind, data in encoded:
        if len(data) > BIG_POSTING:
            number = sum(1 for name in terms)
            terms[f"t{number}.bin"] = data
            entries.append((term, (number << 2) | (kind + 2), b""))
        else:
            entries.append((term, (len(data) << 2) | kind, data))
    total = sum(len(t) + len(d) + 4 for t, _, d in entries)
    target = TAIL_SHARD_TARGET if isinstance(block, Tail) else SHARD_TARGET
    shards = 1
    while total / shards > target:
        shards *= 2
    shard_files = {f"s{i}.bin": part for i, part in enumerate(_shard_parts(entries, shards))}
    return {**terms, **shard_files, **files}, count


def _shard_parts(entries: list[tuple[bytes, int, bytes]], shards: int) -> list[bytes]:
    """The shards' bytes: each entry, in order, in shard fnv1a32(term) % shards."""
    loops = native()
    if loops is not None:
        return loops.shard_parts(entries, shards)
    parts = [bytearray() for _ in range(shards)]
    for term_bytes, tag, data in entries:
        part = parts[fnv1a32_bytes(term_bytes) % shards]
        _varint(len(term_bytes), part)
        part += term_bytes
        _varint(tag, part)
        part += data
    return [bytes(part) for part in parts]


# -- reading the archive -------------------------------------------------------------

# Articles read from the archive at a time when a block is built (a multiple of
# DOCS_PER_CHUNK, so that each d-file is made from one run). A run's terms and
# ids are Python objects until they join the block's varints: runs of 16,384
# took a level-2 block at 300,000 articles to 426 MB, runs of 4,096 to 292 MB
# (2,048: 279 MB), in the same time (24-26 s); a level-1 block 162 → 106 MB.
RUN_SIZE = 4 * 1024


def block_doc_runs(archive: Archive, block: Block | Tail, tz: tzinfo,
                   upto: int | None = None) -> Iterator[list[Doc]]:
    """The articles of a block with ids up to ``upto`` (the cut; None: all), in runs of ids.

    Their terms are those the archive kept at write time; an article stored
    before it kept them (or under other term rules) is segmented here.
    """
    last = block.hi if upto is None else min(block.hi, upto)
    for first in range(block.lo, last + 1, RUN_SIZE):
        run = block_docs_between(archive, first, min(last, first + RUN_SIZE - 1), tz)
        if run:
            yield run


def block_docs(archive: Archive, block: Block | Tail, tz: tzinfo,
               upto: int | None = None) -> list[Doc]:
    """Every article of :func:`block_doc_runs` in one list."""
    return [doc for run in block_doc_runs(archive, block, tz, upto) for doc in run]


def block_docs_between(archive: Archive, first: int, last: int, tz: tzinfo) -> list[Doc]:
    """The articles with ids in [first, last], ascending, with their terms or text."""
    refs = sorted(archive.refs_in_id_range(first, last), key=lambda ref: ref.id)
    if not refs:
        return []
    sources: dict[int, bytes | str] = dict(archive.static_terms(first, last, STATIC_VERSION))
    missing = [ref.id for ref in refs if ref.id not in sources]
    if missing:
        texts = archive.index_texts(first, last, missing)
        sources.update((i, texts.get(i, "")) for i in missing)
    return [Doc(ref.id, sources[ref.id], _meta(ref, tz)) for ref in refs]


def _meta(ref: ArticleRef, tz: tzinfo) -> list[str]:
    day: date = datetime.fromtimestamp(ref.published_ts, timezone.utc).astimezone(tz).date()
    path = paths.article_path(ref.outlet_slug, ref.published_ts, ref.file_id)
    return [ref.title, path, ref.outlet, day.isoformat()]


# -- writing -----------------------------------------------------------------------------

class Writer(Protocol):
    root: Path

    def put(self, path: str, data: bytes) -> None: ...

    def remove(self, path: str) -> None: ...


def _manifest(blocks: Iterable[dict[str, object]], cut_id: int = 0) -> dict[str, object]:
    return {"format": FORMAT, "terms": TERMS_VERSION, "levels": list(LEVEL_SIZES),
            "tail": tail_size(), "cut": cut_id, "docs_per_chunk": DOCS_PER_CHUNK,
            "blocks": sorted(blocks, key=lambda b: -int(str(b["lo"])))}


def _old_entries(root: Path) -> tuple[dict[Block, dict[str, object]], int] | None:
    """The blocks the manifest on disk lists, and its cut; None when it is missing or corrupt.

    A block whose directory is gone is left out, so it is built again; the
    tail is always built again.
    """
    try:
        manifest = json.loads((root / paths.SEARCH_MANIFEST).read_bytes())
        fresh = _manifest(())
        if not isinstance(manifest, dict) or any(
                manifest.get(key) != fresh[key] for key in ("format", "terms", "levels",
                                                            "tail", "docs_per_chunk")):
            return None
        entries = {Block(int(b["level"]), int(b["k"])): b for b in manifest["blocks"]
                   if b["level"] != Tail.level}
        old_cut = int(manifest["cut"])
    except (OSError, ValueError, KeyError, TypeError, IndexError):  # corrupt: rebuild all
        return None
    return ({block: entry for block, entry in entries.items() if (root / block.dir).is_dir()},
            old_cut)


# Blocks built, each with its manifest entry (None: the block holds no article).
BuiltBlocks = dict[Block | Tail, dict[str, object] | None]


@dataclass(frozen=True, slots=True)
class IndexPlan:
    """What a build writes of the index: the blocks to build (``todo``, the tail
    last), the entries kept from the manifest on disk, and the cut."""

    todo: tuple[Block | Tail, ...]
    kept: dict[Block | Tail, dict[str, object]]
    top: int


def plan_index(archive: Archive, root: Path, changed_ids: set[int] | None = None) -> IndexPlan:
    """The blocks holding ``changed_ids`` (None: every block), and those new in the layout
    (a level-1 range that just became complete)."""
    max_id = archive.max_article_id()
    wanted, top = layout(max_id), cut(max_id)
    found = _old_entries(root) if changed_ids is not None else None
    old: dict[Block, dict[str, object]] = {}
    if found is None:
        dirty = set(wanted)
    else:
        old, old_top = found
        # The ids between the old cut and the new one left the tail for their
        # blocks (or, after deletions, the other way): none when the cut stayed,
        # as after most new articles, which then rebuild the tail alone.
        low, high = sorted((old_top, top))
        dirty = ({block_of(i, max_id) for i in changed_ids or () if i <= top}
                 | (set(wanted) - set(old))
                 | {b for b in wanted if low < high and b.lo <= high and b.hi > low})
    kept: dict[Block | Tail, dict[str, object]] = {
        block: old[block] for block in wanted if block not in dirty and block in old}
    todo: list[Block | Tail] = [block for block in wanted if block in dirty]
    if max_id > top:
        todo.append(Tail(top + 1))
    return IndexPlan(tuple(todo), kept, top)


def write_index(archive: Archive, writer: Writer, tz: tzinfo,
                changed_ids: set[int] | None = None) -> None:
    """Write the blocks holding ``changed_ids`` (None: every block), then the manifest.

    Blocks that are new in the layout are built too (a level-1 range that just
    became complete); blocks no longer in it, or left without articles, are
    removed last. (A full build has its workers build the blocks: see
    :func:`write_block`.)
    """
    plan = plan_index(archive, writer.root, changed_ids)
    entries: BuiltBlocks = {}
    stale: dict[str, None] = {}
    for block in plan.todo:
        files, count = _block_files(archive, block, tz, plan.top)
        entries[block] = _put_block(writer, block, files, count)
        stale.update(dict.fromkeys(_files_in(writer.root, block.dir, exclude=set(files))))
    for path in stale:
        writer.remove(path)
    finish_index(writer, plan, entries)


def write_block(archive: Archive, writer: Writer, block: Block | Tail, tz: tzinfo,
                top: int) -> dict[str, object] | None:
    """Build one block of a plan and put its files; its manifest entry (None: no article).

    A full build runs this in its page workers, beside the pages (see
    caixun.publish.site): its files are written where they are made.
    """
    return _put_block(writer, block, *_block_files(archive, block, tz, top))


def _block_files(archive: Archive, block: Block | Tail, tz: tzinfo,
                 top: int) -> tuple[dict[str, bytes], int]:
    """A block's files, from its articles up to the cut ``top`` (the tail's: all)."""
    return build_block(block, block_doc_runs(archive, block, tz,
                                             None if isinstance(block, Tail) else top))


def _put_block(writer: Writer, block: Block | Tail, files: dict[str, bytes],
               count: int) -> dict[str, object] | None:
    for name, data in files.items():
        writer.put(f"{block.dir}/{name}", data)
    return build_block_entry(block, files, count) if count else None


def finish_index(writer: Writer, plan: IndexPlan,
                 built: BuiltBlocks) -> None:
    """The manifest of the plan's kept and ``built`` blocks; the directories of blocks
    no longer listed are removed at the end of the build."""
    entries = {**plan.kept, **{b: e for b, e in built.items() if e is not None}}
    writer.put(paths.SEARCH_MANIFEST, _json(_manifest(entries.values(), plan.top)))
    keep = {block.dir for block in entries}
    stale: dict[str, None] = {}
    for directory in sorted((writer.root / paths.SEARCH_DIR).glob("*-*")):
        name = f"{paths.SEARCH_DIR}/{directory.name}"
        if directory.is_dir() and name not in keep:
            stale.update(dict.fromkeys(_files_in(writer.root, name, set())))
    for path in stale:
        writer.remove(path)  # at the end of the build, with the directories it empties


def build_block_entry(block: Block | Tail, files: dict[str, bytes],
                      count: int) -> dict[str, object]:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name])
    shards = sum(1 for name in files if name[0] == "s")
    return {"level": block.level, "k": block.k, "lo": block.lo, "hi": block.hi, "n": count,
            "shards": shards, "v": digest.hexdigest()[:12]}


def _files_in(root: Path, directory: str, exclude: set[str]) -> list[str]:
    try:
        names = sorted(p.name for p in (root / directory).iterdir() if p.is_file())
    except (FileNotFoundError, NotADirectoryError):  # a file in the way: put() says so
        return []
    return [f"{directory}/{name}" for name in names if name not in exclude]


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# -- securities by code or name (search/codes.json, search-stocks.js) ---------------

def stocks_json(stocks: Iterable[tuple[str, str, Sequence[str], str, int]]) -> bytes:
    """``search/codes.json`` of (code, current name, spellings, page URL, article count).

    ``{"format": 1, "stocks": [{"code", "name", "names", "url", "articles"}, …]}`` in
    code order; ``names`` are the other spellings (and their forms without ``*ST``
    or a class mark, see ``name_forms``), one per folded form, none folding to the
    current name.
    """
    out = []
    for code, name, spellings, url, count in sorted(stocks):
        seen = {normalize_name(name)} if name else set()
        others: list[str] = []
        for spelling in [name, *spellings]:
            for form in [spelling, *name_forms(spelling)] if spelling else []:
                folded = normalize_name(form)
                if folded and folded not in seen:
                    seen.add(folded)
                    others.append(form)
        out.append({"code": code, "name": name, "names": others, "url": url, "articles": count})
    return _json({"format": 1, "stocks": out})


@dataclass(frozen=True, slots=True)
class StockHit:
    code: str
    name: str
    url: str
    articles: int


def resolve_stocks(query: str, stocks: Sequence[dict[str, object]]) -> list[StockHit]:
    """The securities a query names (search-stocks.js ``resolve``, identically).

    A code as ``from_native`` reads it (600519, sh600519, 1.600519, 600519.SH,
    00700, hk00700) or a bare US ticker (AAPL), else a spelling equal after
    folding (NFKC, no spaces, upper case): at most ``MAX_STOCK_HITS``, in code order.
    """
    folded = normalize_name(query)
    if not folded:
        return []
    code = from_native(folded) or canonical_code(folded, "US")
    hits = [s for s in stocks if s["code"] == code] if code else []
    if not hits:
        hits = [s for s in stocks
                if any(normalize_name(str(n)) == folded
                       for n in [s["name"], *(s["names"] if isinstance(s["names"], list) else [])])]
    return [StockHit(str(s["code"]), str(s["name"]), str(s["url"]), int(str(s["articles"])))
            for s in hits[:MAX_STOCK_HITS]]


# -- the reference lookup (what search.js does) ------------------------------------

@dataclass(slots=True)
class StaticResult:
    """Article ids found, newest (highest id) first, and every file read for them."""

    ids: list[int] = field(default_factory=list)
    files: list[tuple[str, int]] = field(default_factory=list)  # (path, bytes), in order
    docs: dict[int, list[str]] = field(default_factory=dict)  # id → title, path, outlet, date
    hint: str | None = None
    stocks: list[StockHit] = field(default_factory=list)  # the securities the query names

    @property
    def bytes_read(self) -> int:
        return sum(size for _, size in self.files)


class _Reader:
    def __init__(self, root: Path, result: StaticResult) -> None:
        self.root, self.result = root, result

    def read(self, path: str) -> bytes:
        data = (self.root / path).read_bytes()
        self.result.files.append((path, len(data)))
        return data


def _parse_shard(data: bytes) -> dict[str, tuple[int, int, bytes]]:
    """term → (kind, number, inline payload)."""
    out: dict[str, tuple[int, int, bytes]] = {}
    pos = 0
    while pos < len(data):
        length, pos = _read_varint(data, pos)
        term = data[pos:pos + length].decode("utf-8")
        tag, pos = _read_varint(data, pos + length)
        kind, number = tag & 3, tag >> 2
        payload = data[pos:pos + number] if kind < 2 else b""
        pos += len(payload)
        out[term] = (kind, number, payload)
    return out


def _block_ids(reader: _Reader, block: dict[str, object], query: ParsedQuery) -> list[int]:
    """The ids of one block matching the query, ascending."""
    base = f"{paths.SEARCH_DIR}/{block['level']}-{block['k']}"
    shards = int(str(block["shards"]))
    every = query.include + [t for group in query.exclude for t in group]
    numbers = sorted({fnv1a32(t) % shards for t in every})
    found: dict[str, tuple[int, int, bytes]] = {}
    for number in numbers:
        entries = _parse_shard(reader.read(f"{base}/s{number}.bin"))
        found.update((t, e) for t, e in entries.items() if t in every)

    read: dict[str, set[int]] = {}

    def postings(term: str) -> set[int]:
        kind, number, payload = found[term]
        if kind < 2:
            return set(decode_postings(kind, payload))
        name = f"{base}/t{number}.bin"
        if name not in read:
            read[name] = set(decode_postings(kind, reader.read(name)))
        return read[name]

    def intersect(terms: list[str]) -> set[int]:
        sets = [postings(term) for term in terms]  # all read, as search.js fetches them
        return set.intersection(*sets)

    if any(term not in found for term in query.include):
        return []
    ids = intersect(query.include)
    groups = [g for g in query.exclude if ids and all(term in found for term in g)]
    for group in groups:
        ids = ids - intersect(group)
    lo = int(str(block["lo"]))
    return sorted(lo + r for r in ids)


def search_static(site_dir: Path, query: str, limit: int = 20) -> StaticResult:
    """Run ``query`` against the index in ``site_dir`` exactly as search.js (and, on a
    site with securities, search-stocks.js) does."""
    result = StaticResult()
    parsed = parse_static_query(query)
    if parsed.hint:
        result.hint = parsed.hint
        return result
    reader = _Reader(site_dir, result)
    manifest = json.loads(reader.read(paths.SEARCH_MANIFEST))
    for block in manifest["blocks"]:
        result.ids += reversed(_block_ids(reader, block, parsed))
        if len(result.ids) >= limit:
            break
    chunk_size = int(manifest["docs_per_chunk"])
    blocks = {int(b["lo"]): b for b in manifest["blocks"]}
    shown = result.ids[:limit]
    chunks: dict[str, None] = {}
    for article_id in shown:
        block = next(b for lo, b in blocks.items() if lo <= article_id <= int(b["hi"]))
        number = (article_id - int(block["lo"])) // chunk_size
        chunks[f"{paths.SEARCH_DIR}/{block['level']}-{block['k']}/d{number}.json"] = None
    for path in chunks:
        for key, meta in json.loads(reader.read(path)).items():
            if int(key) in shown:
                result.docs[int(key)] = meta
    if (site_dir / STOCKS_JSON).is_file():  # search-stocks.js reads it for the same queries
        result.stocks = resolve_stocks(query, json.loads(reader.read(STOCKS_JSON))["stocks"])
    return result

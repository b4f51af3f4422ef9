"""The fetcher's limits (issue 9, items 3, 4, 7, 8), against real servers on 127.0.0.1.

* A total deadline per request: a body trickled a byte at a time fails at the
  deadline, is retried like a timeout, and frees its host's slots.
* Size limits: the body as sent (declared or not) and once decompressed (gzip
  bombs generated here, memory measured with tracemalloc).
* Charsets: real corpus text encoded as GBK (or Big5, Shift JIS, UTF-16),
  labelled only in the HTTP header, labelled wrongly, or not at all.
* Redirects: hop cap, loops, schemes, and no way into loopback, private or
  link-local addresses from a public source. A "public" source is a name the
  test's resolver maps to a public address while its transport connects to the
  local server, exactly as DNS and the network would for a real one.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import ipaddress
import itertools
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import newsserver as ns
from caixun.archive import SqliteArchive, open_archive
from caixun.errors import FetchError
from caixun.fetch import (
    Fetcher,
    FetchSettings,
    Fetched,
    body_charset,
    decode_payload,
    fetch_round,
    internal_kind,
    system_resolver,
)
from caixun.sources.base import Request, Source, SourceConfig, load_source

FAST = FetchSettings(connect_timeout=1.0, read_timeout=0.5, retries=1, backoff=0.01,
                     max_backoff=0.02, per_host=2, min_gap=0.0)
DAY = ns.day_files()[0]


@pytest.fixture
def server() -> Iterator[ns.NewsServer]:
    with ns.NewsServer() as running:
        yield running
        assert not running.errors, running.errors


@pytest.fixture
def other() -> Iterator[ns.NewsServer]:
    """A second server: another port on the same machine."""
    with ns.NewsServer() as running:
        yield running


def _run(coro: Any, bound: float = 20.0) -> Any:
    """Run ``coro``; a test that would hang fails after ``bound`` seconds instead."""
    async def bounded() -> Any:
        try:
            return await asyncio.wait_for(coro, bound)
        except TimeoutError:
            pytest.fail(f"still running after {bound} s (hangs)")
    return asyncio.run(bounded())


async def _get(url: str, settings: FetchSettings = FAST, *, payload: str = "json",
               fetcher: Fetcher | None = None) -> tuple[Fetched, Any]:
    own = fetcher or Fetcher(settings)
    try:
        request = Request(url, payload=payload)  # type: ignore[arg-type]
        fetched = await own.get(request)
        return fetched, decode_payload(request, fetched) if payload != "raw" else None
    finally:
        await own.aclose()


def _feed_source(name: str, url: str) -> Source:
    return load_source(SourceConfig(name, "rss", 60, {"url": url}))


async def _round(sources: Sequence[Source], archive: SqliteArchive,
                 settings: FetchSettings = FAST) -> list[Any]:
    fetcher = Fetcher(settings)
    try:
        return await fetch_round(sources, fetcher, archive, due_only=False)
    finally:
        await fetcher.aclose()


def _records(n: int = 200) -> dict[str, Any]:
    return {"records": [{"id": str(i), "title": "央行开展逆回购操作"} for i in range(n)]}


# ======================================================================================
# 3. a total deadline per request
# ======================================================================================


@pytest.mark.parametrize("rate, deadline", [(20.0, 0.8), (5.0, 1.5), (200.0, 0.6)])
def test_a_trickling_body_fails_at_the_total_deadline(server: ns.NewsServer, rate: float,
                                                      deadline: float) -> None:
    # Every byte arrives well within read_timeout, so only a total deadline stops it
    # (the body would take minutes at these rates).
    server.route("/list", _records())
    server.fault("/list", ns.trickle(rate), ns.trickle(rate))
    settings = FetchSettings(connect_timeout=1.0, read_timeout=0.5, total_timeout=deadline,
                             retries=1, backoff=0.01, max_backoff=0.01, min_gap=0.0)
    started = time.monotonic()
    with pytest.raises(FetchError, match=rf"/list: took longer than {deadline:g} s in all "
                                         r"\(after 2 attempts\)"):
        _run(_get(server.url("/list"), settings))
    elapsed = time.monotonic() - started
    assert server.hits("/list") == 2  # retried like any other timeout
    assert 2 * deadline <= elapsed < 2 * deadline + 3


def test_a_trickling_source_frees_its_hosts_slots(server: ns.NewsServer,
                                                  archive: SqliteArchive) -> None:
    # Two trickling feeds take both of the host's slots; a third source on the same
    # host must still be polled, within about one deadline.
    feed = ns.rss_xml(DAY)
    for path in ("/slow-1.xml", "/slow-2.xml", "/feed.xml"):
        server.route(path, feed, content_type=ns.RSS_TYPE)
    server.fault("/slow-1.xml", ns.trickle(50))
    server.fault("/slow-2.xml", ns.trickle(50))
    settings = FetchSettings(connect_timeout=1.0, read_timeout=0.5, total_timeout=1.0,
                             retries=0, per_host=2, min_gap=0.0)
    slow = [_feed_source(f"slow-{i}", server.url(f"/slow-{i}.xml")) for i in (1, 2)]
    quick = _feed_source("quick", server.url("/feed.xml"))

    async def scenario() -> tuple[list[Any], Any, float]:
        fetcher = Fetcher(settings)
        try:
            stuck = asyncio.create_task(fetch_round(slow, fetcher, archive, due_only=False))
            while server.hits("/slow-1.xml") + server.hits("/slow-2.xml") < 2:
                await asyncio.sleep(0.01)  # both slots are taken now
            started = time.monotonic()
            [report] = await fetch_round([quick], fetcher, archive, due_only=False)
            return await stuck, report, time.monotonic() - started
        finally:
            await fetcher.aclose()

    stuck, report, waited = _run(scenario())
    assert all(r.error and "took longer than 1 s in all" in r.error for r in stuck), \
        [r.summary() for r in stuck]
    assert report.error is None and report.new > 0, report.summary()
    assert waited < 1.0 + 3


# ======================================================================================
# 4. size limits
# ======================================================================================

MIB = 1 << 20
WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "raw deflate": -zlib.MAX_WBITS}


@functools.lru_cache(maxsize=None)
def _zeros_compressed(size: int, coding: str) -> bytes:
    """``size`` zero bytes (a multiple of 1 MiB) compressed, a valid stream made in time
    proportional to its own length: after a full flush the compressor turns each
    further MiB of zeros into the same bytes, so that block is repeated; the trailer
    (gzip's CRC-32 and length, zlib's Adler-32) is computed for the whole."""
    zeros = bytes(MIB)
    packer = zlib.compressobj(9, zlib.DEFLATED, WBITS[coding])
    head = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    assert packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH) == block
    tail = packer.flush()  # the last (empty) block, then the trailer of 3 MiB
    if coding == "gzip":
        crc = 0
        for _ in range(size // MIB):
            crc = zlib.crc32(zeros, crc)
        tail = tail[:-8] + struct.pack("<II", crc, size & 0xFFFFFFFF)
    elif coding == "deflate":
        tail = tail[:-4] + struct.pack(">I", (size % 65521) << 16 | 1)  # Adler-32 of zeros
    return head + block * (size // MIB - 1) + tail


def test_the_generated_bombs_are_valid_streams() -> None:
    for coding, wbits in WBITS.items():
        assert zlib.decompress(_zeros_compressed(8 * MIB, coding), wbits) == bytes(8 * MIB)
    assert gzip.decompress(_zeros_compressed(3 * MIB, "gzip")) == bytes(3 * MIB)


def _chunks(data: bytes, size: int = 65536) -> Callable[[], Iterator[bytes]]:
    return lambda: (data[i:i + size] for i in range(0, len(data), size))


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw deflate"])
def test_a_compression_bomb_is_refused_in_bounded_memory(server: ns.NewsServer, coding: str,
                                                         framing: str) -> None:
    bomb = _zeros_compressed(4 << 30, coding)  # 4 GiB of zeros
    assert len(bomb) < 5_000_000  # "a 4 MB gzip bomb"
    probe = zlib.decompressobj(WBITS[coding])
    assert len(probe.decompress(bomb[:100_000], 80 * MIB)) == 80 * MIB  # it really inflates
    encoding = "deflate" if "deflate" in coding else "gzip"
    if framing == "chunked":
        server.route("/bomb", {})
        server.fault("/bomb", ns.streamed(_chunks(bomb), headers={"Content-Encoding": encoding}))
    else:
        server.route("/bomb", bomb, content_type=ns.JSON_TYPE,
                     headers={"Content-Encoding": encoding})
    tracemalloc.start()
    try:
        with pytest.raises(FetchError) as caught:
            _run(_get(server.url("/bomb")))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(caught.value) == (f"{server.url('/bomb')}: the body decompresses to more than "
                                 "50,000,000 bytes (fetch.max_decoded_bytes; "
                                 "a compression bomb?)")
    assert peak < 150 * MIB, f"peak {peak / MIB:.0f} MiB"
    assert server.hits("/bomb") == 1  # not retried


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw deflate", "identity"])
@pytest.mark.parametrize("extra", [0, 1])
def test_the_decoded_limit_is_exact(server: ns.NewsServer, coding: str, extra: int) -> None:
    limit = 300_000
    body = (b'{"records": [' + b'{"id": "1"}, ' * 30_000)[:limit + extra - 2] + b"]}"
    assert len(body) == limit + extra
    if coding == "identity":
        wire, headers = body, {}
    else:
        packer = zlib.compressobj(6, zlib.DEFLATED, WBITS[coding])
        wire = packer.compress(body) + packer.flush()
        headers = {"Content-Encoding": "deflate" if "deflate" in coding else "gzip"}
    server.route("/list", wire, content_type=ns.JSON_TYPE, headers=headers)
    settings = FetchSettings(read_timeout=2.0, retries=1, min_gap=0.0,
                             max_decoded_bytes=limit)
    if extra:
        with pytest.raises(FetchError, match=rf"more than {limit:,} bytes|larger than "
                                             rf"{limit:,} bytes \(fetch.max_decoded_bytes\)"):
            _run(_get(server.url("/list"), settings, payload="raw"))
        assert server.hits("/list") == 1
    else:
        fetched, _ = _run(_get(server.url("/list"), settings, payload="raw"))
        assert fetched.body == body


@pytest.mark.parametrize("framing", ["chunked", "true length"])
@pytest.mark.parametrize("size, fails", [(100_000, False), (100_001, True), (60_000_000, True)])
def test_a_body_over_max_bytes_fails_as_it_arrives(server: ns.NewsServer, framing: str,
                                                   size: int, fails: bool) -> None:
    # Made as it is sent: 60 MB is never held by the server, and must not be by us.
    def parts() -> Iterator[bytes]:
        whole, rest = divmod(size, 65536)
        yield from itertools.repeat(b" " * 65536, whole)
        yield b" " * rest
    server.route("/big", {})
    server.fault("/big", ns.streamed(parts, content_length=None if framing == "chunked"
                                     else size))
    settings = FetchSettings(read_timeout=2.0, retries=1, min_gap=0.0, max_bytes=100_000)
    tracemalloc.start()
    try:
        if fails:
            with pytest.raises(FetchError) as caught:
                _run(_get(server.url("/big"), settings, payload="raw"))
            message = str(caught.value)
        else:
            fetched, _ = _run(_get(server.url("/big"), settings, payload="raw"))
            assert len(fetched.body) == size
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if fails:
        declared = f"Content-Length {size:,}; " if framing == "true length" else ""
        assert message == (f"{server.url('/big')}: response larger than 100,000 bytes "
                           f"({declared}fetch.max_bytes)")
        assert server.hits("/big") == 1  # not retried
    assert peak < 20 * MIB, f"peak {peak / MIB:.0f} MiB"


def test_a_declared_length_over_the_limit_fails_before_reading(server: ns.NewsServer) -> None:
    # The server claims a terabyte, sends two bytes and waits: nothing is read, so
    # the request fails at once rather than after the read timeout.
    server.route("/huge", {})
    server.fault("/huge", ns.streamed(lambda: [b"{}"], content_length=10**12))
    settings = FetchSettings(read_timeout=5.0, retries=1, min_gap=0.0)
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"/huge: response larger than 20,000,000 bytes "
                                         r"\(Content-Length 1,000,000,000,000; "
                                         r"fetch.max_bytes\)"):
        _run(_get(server.url("/huge"), settings))
    assert time.monotonic() - started < 4.0  # the 5 s read timeout was never waited for
    assert server.hits("/huge") == 1


def test_an_encoding_we_did_not_ask_for_is_refused(server: ns.NewsServer) -> None:
    server.route("/list", b"\x1b\x00\x00", content_type=ns.JSON_TYPE,
                 headers={"Content-Encoding": "br"})
    with pytest.raises(FetchError, match=r"unsupported Content-Encoding 'br' "
                                         r"\(caixun asks for gzip, deflate\)"):
        _run(_get(server.url("/list")))
    assert server.seen("/list")[0].headers["accept-encoding"] == "gzip, deflate"


# ======================================================================================
# 7. charsets
# ======================================================================================

XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>'


def _corpus_feed(declaration: str) -> str:
    """A real day of the corpus as RSS text, with the given XML declaration."""
    text = ns.rss_xml(DAY).decode("utf-8")
    assert text.startswith(XML_DECLARATION)
    return declaration + text[len(XML_DECLARATION):]


def _corpus_titles() -> set[str]:
    day = json.loads(DAY.read_text(encoding="utf-8"))
    return {a["title"] for a in day["articles"]
            if re.search("[\u4e00-\u9fff]", a.get("title") or "") and "<" not in a["title"]
            and "&" not in a["title"] and a["title"] == " ".join(a["title"].split())}


def _stored(archive: SqliteArchive, source: str) -> dict[str, tuple[Any, ...]]:
    return {a.uid.split(":", 1)[1]: (a.title, a.digest, a.body_html, a.body_text, a.outlet)
            for a in archive.iter_articles() if a.uid.startswith(source + ":")}


@pytest.mark.parametrize("content_type, declaration, charset, note", [
    # the charset only in the HTTP header: feedparser alone read these as windows-1252
    ("text/xml; charset=gbk", '<?xml version="1.0"?>', "gbk", ""),
    ("application/rss+xml; charset=GB2312", '<?xml version="1.0"?>', "gbk", ""),
    ("text/xml; charset=gb18030", "", "gb18030", ""),
    # no label at all
    ("application/xml", '<?xml version="1.0"?>', "gbk", ""),
    ("application/rss+xml", "", "gb18030", ""),
    # labelled, wrongly
    ("application/rss+xml; charset=utf-8", '<?xml version="1.0"?>', "gbk",
     "labelled charset utf-8 (the Content-Type) but the body is GB18030; read as GB18030"),
    ("text/xml", XML_DECLARATION, "gbk",
     "labelled charset utf-8 (the XML declaration) but the body is GB18030; read as GB18030"),
    ("text/xml; charset=ISO-8859-1", '<?xml version="1.0"?>', "gbk",
     "labelled charset ISO-8859-1 (the Content-Type) but the body is GB18030; "
     "read as GB18030"),
    ("text/xml; charset=gbk", '<?xml version="1.0"?>', "utf-8",
     "labelled charset gbk (the Content-Type) but the body is UTF-8; read as UTF-8"),
    # the header wins over the declaration, as RFC 3023 says
    ("application/rss+xml; charset=gbk", XML_DECLARATION, "gbk", ""),
])
def test_a_feed_is_read_in_its_real_charset(server: ns.NewsServer, archive: SqliteArchive,
                                            tmp_path: Path, content_type: str, declaration: str, charset: str,
                                            note: str) -> None:
    text = _corpus_feed(declaration)
    # Characters GBK lacks (U+200C …) become character references, which the feed
    # parser turns back into the same characters.
    server.route("/feed.xml", text.encode(charset, errors="xmlcharrefreplace"),
                 content_type=content_type)
    server.route("/utf8.xml", _corpus_feed(XML_DECLARATION).encode("utf-8"),
                 content_type=ns.RSS_TYPE)
    sources = [_feed_source("feed", server.url("/feed.xml")),
               _feed_source("control", server.url("/utf8.xml"))]
    # Two archives: one would keep the second copy of each article as an alias only.
    with open_archive(tmp_path / "control.db") as control_archive:
        reports = _run(_round(sources[:1], archive)) + _run(_round(sources[1:],
                                                                    control_archive))
        control = _stored(control_archive, "control")
    assert all(r.error is None for r in reports), [r.summary() for r in reports]
    stored = _stored(archive, "feed")
    assert len(stored) > 50 and stored == control
    assert _corpus_titles() <= {title for title, *_ in stored.values()}
    feed_report = reports[0]
    if note:
        assert feed_report.notes == [f"{server.url('/feed.xml')}: {note}"]
        assert f"; note: {server.url('/feed.xml')}: {note}" in feed_report.summary()
    else:
        assert feed_report.notes == []


def _json_bytes(payload: Any, charset: str) -> bytes:
    """JSON in ``charset``; a character it lacks is written as a \\u escape."""
    text = json.dumps(payload, ensure_ascii=False)
    out = []
    for char in text:
        try:
            out.append(char.encode(charset))
        except UnicodeEncodeError:
            escaped = json.dumps(char)[1:-1]  # "\\ud83d\\ude00" for what is past the BMP
            out.append(escaped.encode(charset))
    return b"".join(out)


def _corpus_records(n: int = 30) -> dict[str, Any]:
    titles = sorted(_corpus_titles())[:n]
    return {"records": [{"id": str(i), "title": t} for i, t in enumerate(titles)]}


@pytest.mark.parametrize("content_type, charset, bom", [
    ("application/json; charset=big5", "big5", b""),
    ("application/json; charset=Shift_JIS", "shift_jis", b""),
    ("application/json; charset=euc-kr", "euc-kr", b""),
    ("application/json; charset=utf-16le", "utf-16-le", b""),
    ("application/json; charset=gbk", "gbk", b""),
    ("application/json", "utf-16-le", b"\xff\xfe"),
    ("application/json; charset=gbk", "utf-8", b"\xef\xbb\xbf"),
])
def test_json_honours_the_content_type_charset(server: ns.NewsServer, content_type: str,
                                               charset: str, bom: bytes) -> None:
    records = _corpus_records()
    server.route("/list", bom + _json_bytes(records, charset), content_type=content_type)
    fetched, payload = _run(_get(server.url("/list")))
    assert payload == records
    assert fetched.charset_note == ""


def test_mislabelled_json_is_read_and_noted(server: ns.NewsServer) -> None:
    records = _corpus_records()
    server.route("/list", _json_bytes(records, "gbk"), content_type=ns.JSON_TYPE)
    fetched, payload = _run(_get(server.url("/list")))
    assert payload == records
    assert fetched.charset_note == (f"{server.url('/list')}: labelled charset utf-8 (the "
                                    "Content-Type) but the body is GB18030; read as GB18030")


def _corpus_texts() -> list[str]:
    texts = []
    for path in ns.day_files()[:10]:
        for article in json.loads(path.read_text(encoding="utf-8"))["articles"]:
            for key in ("title", "summary"):
                value = article.get(key) or ""
                if re.search("[\u4e00-\u9fff]", value):
                    texts.append(value.encode("gbk", "ignore").decode("gbk"))
    return texts


CORPUS_TEXTS = _corpus_texts()


@st.composite
def corpus_slices(draw: st.DrawFn, min_cjk: int) -> str:
    """A slice of real corpus text holding at least ``min_cjk`` Chinese characters."""
    text = draw(st.sampled_from(CORPUS_TEXTS))
    start = draw(st.integers(0, max(0, len(text) - 1)))
    piece = text[start:start + draw(st.integers(1, 400))]
    assume(len(re.findall("[\u4e00-\u9fff]", piece)) >= min_cjk)
    return piece


@settings(max_examples=300, suppress_health_check=[HealthCheck.filter_too_much])
@given(corpus_slices(min_cjk=16), st.sampled_from(["gbk", "gb18030", "utf-8"]),
       st.sampled_from(["right", "none", "utf-8", "gbk", "iso-8859-1"]))
def test_real_text_is_read_whatever_the_label(text: str, charset: str, label: str) -> None:
    """16 Chinese characters or more (32 bytes past 0x7f in GBK, 48 in UTF-8): every
    label, right, missing or wrong, reads back the text, and a wrong one is noted."""
    body = text.encode(charset)
    named = {"right": charset, "none": ""}.get(label, label)
    content_type = f"application/json; charset={named}" if named else "application/json"
    codec, note = body_charset(body, content_type)
    assert body.decode(codec) == text
    wrong = named and named != charset and {named, charset} != {"gbk", "gb18030"}
    assert bool(note) == bool(wrong), note


def test_body_charset_edge_cases() -> None:
    text = "央行开展逆回购操作"
    assert body_charset(text.encode("gbk"), "text/plain; charset=x-gbk") == ("gb18030", "")
    assert body_charset(b"plain ascii", "text/plain; charset=gbk") == ("utf-8", "")
    assert body_charset(b"\xff\xfe\x00", "application/json")[0] == ""  # a broken BOM
    assert body_charset("隆".encode("gbk"), "text/plain; charset=gbk") == ("gb18030", "")
    codec, note = body_charset(b"\x80\xff\x80\xff", "text/plain; charset=utf-8")
    assert codec == "" and note == "body is neither UTF-8 nor GB18030"
    codec, note = body_charset(b"\x80\xff\x80\xff", "text/plain; charset=big5")
    assert codec == "" and note == "body is neither big5 (as declared), UTF-8 nor GB18030"
    # a name Python does not know is no label
    assert body_charset(text.encode("gbk"), "text/plain; charset=klingon") == ("gb18030", "")


# ======================================================================================
# 8. redirects
# ======================================================================================

PUBLIC = "93.184.215.14"  # a public address (example.com's); nothing connects to it


class PinnedTransport(httpx.AsyncBaseTransport):
    """Connects the listed host names to a local port: the request keeps its URL and
    ``Host`` header, only the socket goes to 127.0.0.1, as it would go to the address
    DNS gave for a real host."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        port = self.ports.get(request.url.host)
        if port is not None:  # a copy: the client's request (and response.url) keep the name
            request = httpx.Request(request.method, request.url.copy_with(
                host="127.0.0.1", port=port), headers=request.headers, stream=request.stream,
                extensions=request.extensions)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _public_fetcher(ports: dict[str, int], names: dict[str, list[str]],
                    settings: FetchSettings = FAST) -> Fetcher:
    """A fetcher for which each name of ``names`` resolves to the given addresses (other
    names as the system says) and each name of ``ports`` is served locally."""
    async def resolve(host: str, port: int) -> Sequence[str]:
        if host in names:
            return names[host]
        return await system_resolver(host, port)
    client = httpx.AsyncClient(transport=PinnedTransport(ports), timeout=httpx.Timeout(2.0))
    return Fetcher(settings, client=client, resolver=resolve)


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "::1", "10.0.0.5", "172.16.3.4", "192.168.1.1",
    "169.254.169.254", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456::1", "0.0.0.0",
    "::", "224.0.0.1", "239.255.255.250", "ff02::1", "240.0.0.1", "255.255.255.255",
    "100.64.0.1", "192.0.2.1", "::ffff:127.0.0.1", "::ffff:10.1.1.1",
])
def test_internal_addresses_are_named(address: str) -> None:
    assert internal_kind(address) is not None


@pytest.mark.parametrize("address", [PUBLIC, "8.8.8.8", "114.114.114.114", "223.5.5.5",
                                     "2400:3200::1", "2001:4860:4860::8888"])
def test_public_addresses_are_not_internal(address: str) -> None:
    assert internal_kind(address) is None


@given(st.sampled_from(["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                        "169.254.0.0/16", "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4",
                        "::1/128", "fe80::/10", "fc00::/7", "ff00::/8"]).flatmap(
    lambda net: st.ip_addresses(network=net)))
def test_every_address_of_an_internal_network_is_internal(
        address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert internal_kind(str(address)) is not None


def test_a_local_source_may_redirect_to_another_local_port(server: ns.NewsServer,
                                                           other: ns.NewsServer) -> None:
    other.route("/list", {"records": [{"id": "1"}]})
    server.route("/list", b"", status=302, headers={"Location": other.url("/list")})
    fetched, payload = _run(_get(f"http://localhost:{server.port}/list"))
    assert payload == {"records": [{"id": "1"}]} and fetched.url == other.url("/list")


@pytest.mark.parametrize("location, refusal", [
    ("http://127.0.0.1:{other}/secret", "127.0.0.1 is a loopback address"),
    ("http://[::1]:{other}/secret", "::1 is a loopback address"),
    ("http://localhost:{other}/secret", "localhost resolves to"),
    ("http://2130706433:{other}/secret", "2130706433 resolves to 127.0.0.1, a loopback address"),
    ("http://intranet.example/secret", "intranet.example resolves to 10.1.2.3, "
                                       "a private address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://0.0.0.0:{other}/secret", "0.0.0.0 is an unspecified address"),
    ("http://dual.example/secret", "dual.example resolves to 192.168.0.7, a private address"),
])
def test_a_public_source_cannot_redirect_inward(server: ns.NewsServer, other: ns.NewsServer,
                                                location: str, refusal: str) -> None:
    other.route("/secret", {"records": [{"id": "secret"}]})
    target = location.format(other=other.port)
    server.route("/list", b"", status=302, headers={"Location": target})
    fetcher = _public_fetcher({"news.example": server.port}, {
        "news.example": [PUBLIC], "intranet.example": ["10.1.2.3"],
        "dual.example": [PUBLIC, "192.168.0.7"]})
    with pytest.raises(FetchError) as caught:
        _run(_get("http://news.example/list", fetcher=fetcher))
    assert str(caught.value).startswith(
        f"http://news.example/list: redirect to {target} refused: {refusal}")
    assert "(only a source on such an address may redirect there)" in str(caught.value)
    assert other.hits("/secret") == 0 and server.hits("/list") == 1  # not retried


def test_a_redirect_to_a_name_that_does_not_resolve_is_retried(server: ns.NewsServer) -> None:
    server.route("/list", b"", status=302, headers={"Location": "http://nowhere.example/"})

    async def resolve(host: str, port: int) -> Sequence[str]:
        if host == "news.example":
            return [PUBLIC]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    client = httpx.AsyncClient(transport=PinnedTransport({"news.example": server.port}))
    fetcher = Fetcher(FAST, client=client, resolver=resolve)
    with pytest.raises(FetchError, match=r"news.example/list: connection failed \(cannot "
                                         r"resolve nowhere.example: .*\) \(after 2 attempts\)"):
        _run(_get("http://news.example/list", fetcher=fetcher))
    assert server.hits("/list") == 2


def test_a_public_source_may_redirect_to_public_hosts(server: ns.NewsServer,
                                                      other: ns.NewsServer) -> None:
    other.route("/list", {"records": [{"id": "moved"}]})
    server.route("/old", b"", status=301, headers={"Location": "/new"})
    server.route("/new", b"", status=307, headers={"Location": "http://mirror.example/list"})
    fetcher = _public_fetcher({"news.example": server.port, "mirror.example": other.port},
                              {"news.example": [PUBLIC], "mirror.example": ["8.8.4.4"]})
    fetched, payload = _run(_get("http://news.example/old", fetcher=fetcher))
    assert payload == {"records": [{"id": "moved"}]}
    assert fetched.url == "http://mirror.example/list"


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x",
                                      "gopher://127.0.0.1:70/", "javascript:alert(1)",
                                      "data:text/plain,hi"])
def test_only_http_and_https_redirects_are_followed(server: ns.NewsServer,
                                                    location: str) -> None:
    server.route("/list", b"", status=302, headers={"Location": location})
    with pytest.raises(FetchError, match=rf"/list: redirect (to {re.escape(repr(location))} |"
                                         r"from \S+ )?refused: (only http and https URLs "
                                         r"are followed|its Location is no http\(s\) URL)"):
        _run(_get(server.url("/list")))
    assert server.hits("/list") == 1


@pytest.mark.parametrize("cap", [0, 2, 5])
@pytest.mark.parametrize("over", [False, True])
def test_redirects_are_capped(server: ns.NewsServer, cap: int, over: bool) -> None:
    hops = cap + 1 if over else cap
    for i in range(hops):
        server.route(f"/r{i}", b"", status=302 if i % 2 else 308,
                     headers={"Location": f"/r{i + 1}"})
    server.route(f"/r{hops}", {"records": [{"id": "end"}]})
    settings = FetchSettings(read_timeout=2.0, retries=1, min_gap=0.0, max_redirects=cap)
    if over:
        with pytest.raises(FetchError, match=rf"/r0: redirected more than {cap} times "
                                             rf"\(fetch.max_redirects; last to "
                                             rf"{re.escape(server.url(f'/r{cap + 1}'))}\)"):
            _run(_get(server.url("/r0"), settings))
        assert server.hits(f"/r{hops}") == 0 and server.hits("/r0") == 1
    else:
        fetched, payload = _run(_get(server.url("/r0"), settings))
        assert payload == {"records": [{"id": "end"}]}
        assert fetched.url == server.url(f"/r{hops}")


def test_a_redirect_loop_is_named(server: ns.NewsServer) -> None:
    server.route("/a", b"", status=302, headers={"Location": "/b"})
    server.route("/b", b"", status=302, headers={"Location": "/a"})
    with pytest.raises(FetchError, match=r"/a: redirected more than 5 times "
                                         r"\(fetch.max_redirects, a loop; last to .*/a\)"):
        _run(_get(server.url("/a")))
    assert server.hits("/a") == 3 and server.hits("/b") == 3


def test_conditional_get_still_works_through_a_redirect(server: ns.NewsServer) -> None:
    server.route("/moved", b"", status=301, headers={"Location": "/list"})
    server.route("/list", _records(3), etag=True)

    async def twice() -> tuple[Fetched, Fetched]:
        fetcher = Fetcher(FAST)
        try:
            first = await fetcher.get(Request(server.url("/moved")))
            again = await fetcher.get(Request(server.url("/moved")),
                                      {"etag": first.etag or ""})
            return first, again
        finally:
            await fetcher.aclose()

    first, again = _run(twice())
    assert first.etag and again.not_modified


# ======================================================================================
# the real console script
# ======================================================================================


def test_caixun_fetch_reports_limits_and_charsets(tmp_path: Path,
                                                  server: ns.NewsServer) -> None:
    server.route("/big.xml", {})
    server.fault("/big.xml", ns.streamed(lambda: itertools.repeat(b" " * 65536, 16),
                                         content_type=ns.RSS_TYPE))  # 1 MiB, no length
    server.route("/gbk.xml", _corpus_feed('<?xml version="1.0"?>').encode(
        "gbk", errors="xmlcharrefreplace"), content_type="application/rss+xml; charset=utf-8")
    (tmp_path / "caixun.toml").write_text(f"""
[fetch]
retries = 0
min_gap = 0.0
max_bytes = 400000

[[sources]]
name = "big"
kind = "rss"
url = "{server.url('/big.xml')}"

[[sources]]
name = "gbk"
kind = "rss"
url = "{server.url('/gbk.xml')}"
""", encoding="utf-8")
    script = Path(sys.executable).with_name("caixun")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "caixun.cli"]
    try:
        done = subprocess.run([*command, "--archive", str(tmp_path / "caixun.db"), "fetch"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              env=dict(os.environ))
    except subprocess.TimeoutExpired:
        pytest.fail("caixun fetch still running after 60 s (hangs)")
    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stdout + done.stderr
    assert (f"big: FAILED: {server.url('/big.xml')}: response larger than 400,000 bytes "
            "(fetch.max_bytes)") in lines
    [gbk] = [line for line in lines if line.startswith("gbk: ")]
    assert re.match(r"gbk: \d+ new, 0 updated, 0 unchanged, 0 errors; note: "
                    + re.escape(f"{server.url('/gbk.xml')}: labelled charset utf-8 (the "
                                "Content-Type) but the body is GB18030; read as GB18030"),
                    gbk), gbk
    assert "Traceback" not in done.stderr

"""caixun.dedup: identity keys, fingerprints, LSH keys and story clustering.

The labelled set is ``tests/data/dedup_labels.json`` (identifiers into the shared
corpus, built by reading; its ``method`` says how). ``labelled_items`` and
``pair_scores`` are also used by ``benchmarks/dedup.py``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import struct
import subprocess
import sys
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import POSTS, SHARED
from caixun import dedup
from caixun.dedup import Candidate, Clusterer
from caixun.model import Article
from caixun.normalize import BEIJING
from caixun.sources.base import SourceConfig, load_source
from caixun.sources.jekyll import read_post
from newsserver import rss_xml

LABELS = Path(__file__).parent / "data" / "dedup_labels.json"
RSS_DAYS = SHARED / "corpus" / "rss-days"
FETCHED = datetime(2026, 9, 1, tzinfo=timezone.utc)
T0 = datetime(2021, 12, 8, 10, 0, tzinfo=BEIJING)

# What the method achieves on the labelled set (benchmarks/dedup.py prints it), minus
# a margin of one or two pairs: a change that loses more should be looked at.
# Measured at the defaults (shingles and the event model): stories 1.00 (14 of 14) /
# 0.200 of 70 pairs; near duplicates 0.933 (28 of 30) / 0.667 of 42; held out (6 runs
# of days labelled for issue 14, never fitted on) 1.00 (12 of 12; 0.923 before two
# digests under other headlines were kept apart) / 0.222 of 54 pairs, 28 of them
# cross-language.
MIN_STORY_PRECISION = 0.9
MIN_STORY_RECALL = 0.171  # 12 pairs
MIN_NEAR_PRECISION = 0.87  # 28 of 32
MIN_NEAR_RECALL = 0.619  # 26 pairs
MIN_HELD_OUT_PRECISION = 0.85  # 12 of 14
MIN_HELD_OUT_RECALL = 0.185  # 10 pairs
# more_stories (14 more feed days, labelled to fit on): 0.700 (7 of 10) / 0.241 of 29
# pairs, measured before anything was fitted on it; 0.778 (7 of 9) since the digests.
MIN_MORE_PRECISION = 0.7  # 7 of 10
MIN_MORE_RECALL = 0.172  # 5 pairs
# held_out_2 (the 9 feed days left, labelled on 2026-12-06, never fitted on): 0.500
# (2 of 4) / 0.077 of 26 pairs, 15 of them cross-language.
MIN_HELD_OUT_2_PRECISION = 0.33  # 2 of 6
MIN_HELD_OUT_2_RECALL = 0.038  # 1 pair


# -- the labelled set ------------------------------------------------------------------------

def labels() -> dict[str, Any]:
    return json.loads(LABELS.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@lru_cache(maxsize=None)
def _rss_day(name: str) -> tuple[Article, ...]:
    source = load_source(SourceConfig("news", "rss", options={"url": "https://example.org/f"}))
    [request] = source.list_requests()
    entries = source.parse_list(request, rss_xml(RSS_DAYS / name))
    # Each day's item is an item of its own (a re-fetch): the uid names the day.
    return tuple(source.to_article(e, None, FETCHED).evolve(uid=f"rss:{name}:{e.native_id}")
                 for e in entries)


@lru_cache(maxsize=None)
def _finews() -> tuple[tuple[str, Article], ...]:
    return tuple((f"finews-posts/{p.name}", read_post(p).article) for p in sorted(POSTS.iterdir()))


def labelled_items(part: str) -> dict[str, Article]:
    """Item id → article for a part of the labelled set ("stories" or "near_duplicates").

    Ids: ``finews-posts/<file>`` and ``rss-days/<day file>#<link>``.
    """
    corpus = labels()[part]["corpus"]
    items: dict[str, Article] = {}
    if "finews-posts" in corpus:
        items.update(_finews())
    days = corpus["rss-days"]
    names = sorted(p.name for p in RSS_DAYS.glob("*.json")) if days == "all files" else days
    for name in names:
        for article in _rss_day(name):
            items[f"rss-days/{name}#{article.url}"] = article
    return items


def unit(item: str) -> str:
    """A distinct item: a post file, or an rss link (all its days are one item)."""
    return item.split("#", 1)[1] if item.startswith("rss-days/") else item


def _ref_unit(ref: str) -> str:
    return ref[len("rss-days/"):] if ref.startswith("rss-days/") else ref


def _pairs(groups: Iterable[Iterable[str]]) -> set[frozenset[str]]:
    return {frozenset(p) for g in groups for p in itertools.combinations(sorted(set(g)), 2)}


@dataclass(frozen=True)
class Truth:
    same: set[frozenset[str]]  # same-story pairs of distinct items
    copy: set[frozenset[str]]  # the subset that is one text
    uncertain: set[frozenset[str]]


def truth(part: str) -> Truth:
    data = labels()[part]
    if "stories" in data:
        story: dict[str, int] = {}
        version: dict[str, tuple[int, int]] = {}
        for n, s in enumerate(data["stories"]):
            for m, members in enumerate(s["versions"]):
                for ref in members:
                    story[_ref_unit(ref)] = n
                    version[_ref_unit(ref)] = (n, m)
        groups: dict[int, list[str]] = defaultdict(list)
        for u, n in story.items():
            groups[n].append(u)
        same = _pairs(groups.values())
        copy = {p for p in same if len({version[u] for u in p}) == 1}
    else:
        parent: dict[str, str] = {}

        def root(u: str) -> str:
            parent.setdefault(u, u)
            while parent[u] != u:
                u = parent[u]
            return u

        tiers = {}
        for a, b, tier in data["same"]:
            parent[root(_ref_unit(a))] = root(_ref_unit(b))
            tiers[frozenset((_ref_unit(a), _ref_unit(b)))] = tier
        closure: dict[str, list[str]] = defaultdict(list)
        for u in list(parent):
            closure[root(u)].append(u)
        same = _pairs(closure.values())
        copy = {p for p, tier in tiers.items() if tier == "copy"}
    uncertain = {frozenset((_ref_unit(a), _ref_unit(b))) for a, b in data["uncertain"]}
    return Truth(same - uncertain, copy - uncertain, uncertain)


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    predicted: int
    true: int
    hits: int
    copy_recall: float
    false_pairs: list[tuple[str, str]]
    missed_pairs: list[tuple[str, str]]


def _pair(pair: frozenset[str]) -> tuple[str, str]:
    a, b = sorted(pair)
    return a, b


def predicted_pairs(items: Mapping[str, Article], stories: Mapping[str, str]
                    ) -> set[frozenset[str]]:
    """Pairs of distinct items in one story (an rss link counts once: its first day)."""
    first: dict[str, Article] = {}
    for item in sorted(items, key=lambda i: (items[i].published_at, i)):
        first.setdefault(unit(item), items[item])
    groups: dict[str, list[str]] = defaultdict(list)
    for u, article in first.items():
        groups[stories[article.uid]].append(u)
    return _pairs(groups.values())


def pair_scores(items: Mapping[str, Article], stories: Mapping[str, str], part: str) -> Scores:
    """Pairwise precision and recall of a clustering over distinct items."""
    t = truth(part)
    predicted = predicted_pairs(items, stories) - t.uncertain
    hits = predicted & t.same
    return Scores(
        precision=len(hits) / len(predicted) if predicted else 1.0,
        recall=len(hits) / len(t.same),
        predicted=len(predicted),
        true=len(t.same),
        hits=len(hits),
        copy_recall=len(hits & t.copy) / len(t.copy) if t.copy else 1.0,
        false_pairs=sorted(_pair(p) for p in predicted - t.same),
        missed_pairs=sorted(_pair(p) for p in t.same - predicted),
    )


# -- helpers ---------------------------------------------------------------------------------

def article(uid: str, title: str, body: str = "", *, hours: float = 0, url: str = "",
            digest: str = "") -> Article:
    return Article(uid=uid, outlet="测试", outlet_slug="ceshi", title=title,
                   published_at=T0 + timedelta(hours=hours), file_id=uid, body_text=body,
                   digest=digest, url=url)


@lru_cache(maxsize=None)
def posts() -> dict[str, Article]:
    return {name[-10:-3]: a for name, a in _finews()}


README_GROUPS = [  # corpus/README.md, "Same story under different ids"
    ("6672930", "6781916", "6799679", "6934582"),
    ("6748961", "6749391"),
    ("6965422", "6948984"),
    ("6703990", "6717618"),
    ("6885192", "6891293"),
    ("6859047", "6865340"),
    ("6735975", "6883363"),
    ("6736198", "6882385"),
    ("6761079", "6757673"),
    ("6747356", "6826055"),
]
# README pairs the fingerprint cannot link, and why. They count as misses in the
# recall below; a change that finds one of them shows up here.
README_MISSES = {
    # The offshore-yuan flash and two market columns that retell it in other words.
    frozenset(("6672930", "6799679")), frozenset(("6672930", "6934582")),
    frozenset(("6781916", "6799679")), frozenset(("6781916", "6934582")),
    frozenset(("6799679", "6934582")),
    frozenset(("6965422", "6948984")),  # 顾国平 verdict: court notice vs. commentary
    frozenset(("6703990", "6717618")),  # FF: figures "91" vs. "11" in the headlines
    frozenset(("6736198", "6882385")),  # one-line flash vs. article under another headline
    frozenset(("6761079", "6757673")),  # 6757673 is 11 tokens: only exact duplicates merge
    frozenset(("6747356", "6826055")),  # 13-token flash (+10%) vs. follow-up (+9%)
}


# -- text and fingerprints -------------------------------------------------------------------

def test_fingerprint_text_drops_boilerplate_and_punctuation() -> None:
    text = dedup.fingerprint_text(
        "港股黄金股走弱 潼关黄金跌近6%",
        "【港股黄金股走弱潼关黄金跌近6%】财联社10月3日电，截至发稿，潼关黄金(00340.HK)跌5.77%。\n"
        "（文章来源：财联社）")
    assert text == "港股黄金股走弱潼关黄金跌近6截至发稿潼关黄金340 hk跌5.77"
    assert dedup.fingerprint_text("T", "正文。（上海证券报）") == "t正文"
    assert dedup.fingerprint_text("", "作者｜张三\n编辑｜李四\n正文\n本文来自华尔街见闻，欢迎下载APP查看更多") \
        == "正文"
    assert dedup.fingerprint_text("Gold hits $4,000", "Gold hits $4,000 as rally runs.\nTyler Durden\n"
                                  "Mon, 10/06/2025 - 00:00") == "gold hits 4000 as rally runs"


def test_fingerprint_text_is_idempotent_and_ignores_spacing() -> None:
    a = dedup.fingerprint_text("触宝Q3营收5110万美元", "去年同期经调整净亏损为 2052 万美元，本季度持续扭亏。")
    b = dedup.fingerprint_text("触宝Q3营收5110万美元", "去年同期经调整净亏损为2052万美元，本季度持续扭亏")
    assert a == b
    assert dedup.fingerprint_text("", a) == a


def _plain_tokens(text: str) -> list[str]:
    """dedup.tokens without its shortcut."""
    text = dedup._THOUSANDS.sub("", unicodedata.normalize("NFKC", text).lower())
    return [t.lstrip("0") or "0" if t[0] == "0" and t.isdigit() else t
            for t in dedup._TOKEN.findall(text)]


_PIECES = st.sampled_from(["（", "）", "(", ")", "来源：", "来源:", "本文来自", "文章来源：", "新华社",
                           "第一财经", "澎湃新闻", "（完）", "每日经济新闻", " ", "\n", "\u3000", "，",
                           "。", "0", "007", "0.5", "a0", "1,000", "x.05", "Ｏ０１", "央行逆回购"])


@settings(max_examples=300)
@example(filler=10, text=" " * 90 + "（新华社）")  # spaces from before the tail: read it all
@example(filler=10, text="\n" + " " * 75 + "来源：新华社")
@given(filler=st.integers(0, 30),
       text=st.lists(_PIECES | st.text(max_size=2), max_size=60).map("".join))
def test_the_shortcuts_of_tokens_and_cleaning_change_nothing(filler: int, text: str) -> None:
    text = "央行开展逆回购操作。" * filler + text
    assert dedup.tokens(text) == _plain_tokens(text)
    for pattern in (dedup._END_SOURCE, dedup._END_OUTLET):
        assert dedup._strip_end(pattern, text) == pattern.sub("", text)


def test_the_shortcuts_change_nothing_on_the_corpus() -> None:
    for a in list(labelled_items("near_duplicates").values()) + list(posts().values()):
        for text in (a.title, a.digest, a.body_text):
            assert dedup.tokens(text) == _plain_tokens(text)
            body = "\n".join(line.strip() for line in text.splitlines() if line.strip())
            for pattern in (dedup._END_SOURCE, dedup._END_OUTLET):
                assert dedup._strip_end(pattern, body) == pattern.sub("", body)


def test_fingerprint_round_trip_and_errors() -> None:
    a = article("x:1", "北向资金净流入超40亿", "数据显示，截至目前，北向资金净流入超40亿元。")
    fp = dedup.fingerprint(a)
    parsed = dedup.read_fingerprint(fp)
    assert parsed.tokens == len(dedup.tokens(dedup.fingerprint_text(a.title, a.body_text)))
    assert len(parsed.minhash) == dedup.PERMUTATIONS
    assert parsed.numbers and parsed.title
    assert dedup.read_fingerprint(bytes.fromhex(fp.hex())) == parsed
    with pytest.raises(ValueError):
        dedup.read_fingerprint(fp[:-1])
    with pytest.raises(ValueError):
        dedup.read_fingerprint(b"\x09" + fp[1:])
    assert dedup.similarity(fp, fp) == 1.0
    empty = dedup.fingerprint("")
    assert dedup.similarity(empty, empty) == 0.0 and dedup.lsh_keys(empty) == []


FINGERPRINT_SCRIPT = """
import sys
from caixun import dedup
print(dedup.fingerprint(sys.argv[1]).hex())
print(dedup.lsh_keys(dedup.fingerprint(sys.argv[1]))[0])
"""


def test_fingerprints_are_the_same_in_every_process() -> None:
    text = "国家知识产权局：打击非正常专利申请和商标恶意抢注行为，2021年累计向地方通报4批次81.5万件"
    here = [dedup.fingerprint(text).hex(), dedup.lsh_keys(dedup.fingerprint(text))[0]]
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", FINGERPRINT_SCRIPT, text], env=env,
                             capture_output=True, text=True, check=True).stdout.split()
        assert out == here


# A slow pure-Python reference of the fingerprint scheme, written from its
# description in caixun/dedup.py (constants and all), not from the numpy code.
_M64 = (1 << 64) - 1


def _ref_h64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _ref_fmix64(v: int) -> int:
    v ^= v >> 33
    v = v * 0xFF51AFD7ED558CCD & _M64
    v ^= v >> 33
    v = v * 0xC4CEB9FE1A85EC53 & _M64
    return v ^ v >> 33


def _ref_shingles(parts: list[str]) -> list[int]:
    """One hash per run of two tokens (per the text when it has one token)."""
    runs = [parts[i:i + 2] for i in range(len(parts) - 1)] if len(parts) > 1 else (
        [parts] if parts else [])
    out = []
    for run in runs:
        v = _ref_h64(run[0].encode("utf-8"))
        for token in run[1:]:
            v = (v * 0x9E3779B97F4A7C15 + _ref_h64(token.encode("utf-8"))) & _M64
        out.append(_ref_fmix64(v))
    return out


_REF_A = [_ref_h64(b"caixun-minhash-a-%d" % i) | 1 for i in range(64)]
_REF_B = [_ref_h64(b"caixun-minhash-b-%d" % i) for i in range(64)]
_REF_TITLE = [_ref_h64(b"caixun-title-%d" % i) | 1 for i in range(8)]


def reference_fingerprint(title: str, text: str) -> bytes:
    head = dedup.tokens(title)
    parts = dedup._parts(head, text)
    lead = parts[:400]
    shingles = set(_ref_shingles(lead))
    if shingles:
        values = [min((a * x + b & _M64) >> 32 for x in shingles) for a, b in zip(_REF_A, _REF_B)]
    else:
        values = [0xFFFFFFFF] * 64
    grams = sorted({x >> 32 for x in _ref_shingles(head)})[:64]
    numbers = sorted({_ref_h64(t.encode("utf-8")) >> 32 for t in head
                      if re.fullmatch(r"\d+(?:\.\d+)*", t)})[:16]
    header = struct.pack("<BHHBB", 2, len(lead), min(len(shingles), 0xFFFF), len(grams),
                         len(numbers))
    return header + struct.pack(f"<{64 + len(grams) + len(numbers)}I", *values, *grams, *numbers)


def reference_lsh_keys(fp: bytes) -> list[str]:
    x = dedup.read_fingerprint(fp)
    if x.tokens < 20 or not x.shingles:
        return []
    raw = fp[7:7 + 256]  # after the header: version, tokens, shingles, titles, numbers
    keys = [f"{band}:{raw[8 * band:8 * band + 8].hex()}" for band in range(32)]
    if x.title:
        keys += [f"t{i}:{min((a * h + b & _M64) >> 32 for h in x.title):08x}"
                 for i, (a, b) in enumerate(zip(_REF_TITLE[0::2], _REF_TITLE[1::2]))]
    return keys


def test_fingerprints_are_the_reference_scheme_on_the_corpus() -> None:
    items = list(labelled_items("near_duplicates").values())[::25] + list(posts().values())
    for a in items:
        fp = dedup.fingerprint(a)
        assert fp == reference_fingerprint(a.title, a.body_text or a.digest), a.uid
        assert dedup.lsh_keys(fp) == reference_lsh_keys(fp), a.uid
        assert Candidate.of(a).fingerprint == fp
    text = posts()["6859047"].body_text
    assert dedup.fingerprint(text) == reference_fingerprint("", text)


_WORDS = st.sampled_from(["央行", "逆回购", "亿元", "北向资金", "净流入", "Fed", "rate", "cut",
                          "0", "09869", "6.8195", "40", "。", "，", " ", "\n", "（来源：新华社）"])


@settings(max_examples=150)
@given(title=st.lists(_WORDS, max_size=12).map("".join),
       body=st.lists(_WORDS | st.text(max_size=3), max_size=300).map("".join))
def test_fingerprints_are_the_reference_scheme(title: str, body: str) -> None:
    fp = dedup.fingerprint(article("h:1", title, body))
    assert fp == reference_fingerprint(title, body)
    assert dedup.lsh_keys(fp) == reference_lsh_keys(fp)
    assert dedup.fingerprint(body) == reference_fingerprint("", body)


GOLDEN_DIGEST = "b9bd9a6f35b4d4fb29a5d2ae0c11958d"  # blake2b-16 of reference_fingerprint(...)
GOLDEN_BAND = "0:2cc25b0c48d57903"


def test_fingerprints_are_the_same_on_every_machine() -> None:
    """Stored fingerprints stay valid: these bytes were made by the reference above."""
    a = article("x:1", "北向资金净流入超40亿", "数据显示，截至目前，北向资金净流入超40亿元。"
                "其中沪股通净流入22.5亿元，深股通净流入18.1亿元。")
    digest = hashlib.blake2b(dedup.fingerprint(a), digest_size=16).hexdigest()
    assert digest == GOLDEN_DIGEST
    assert dedup.lsh_keys(dedup.fingerprint(a))[0] == GOLDEN_BAND


def test_similarity_of_near_duplicates_and_of_other_news() -> None:
    p = posts()
    fp = {k: dedup.fingerprint(a) for k, a in p.items()}
    assert dedup.similarity(fp["6761079"], fp["6757673"]) >= dedup.THRESHOLD  # 40亿 twice
    assert dedup.similarity(fp["6859047"], fp["6865340"]) >= dedup.THRESHOLD  # flash ⊂ article
    # The same template with another figure is another story.
    assert dedup.similarity(fp["6761079"], fp["7020388"]) == 0.0  # 40亿 / 80亿
    assert dedup.similarity(fp["6742097"], fp["6757673"]) == 0.0  # 30亿 / 40亿
    assert dedup.similarity(fp["6748961"], fp["6781916"]) == 0.0  # 6.3565 / 6.3512
    assert dedup.similarity(fp["6704122"], fp["6885586"]) < 0.1


def test_lsh_keys_of_near_duplicates_collide() -> None:
    p = posts()
    for a, b in (("6748961", "6749391"), ("6885192", "6891293"), ("6859047", "6865340"),
                 ("6672930", "6781916"), ("6735975", "6883363")):
        ka = set(dedup.lsh_keys(dedup.fingerprint(p[a])))
        kb = set(dedup.lsh_keys(dedup.fingerprint(p[b])))
        assert ka & kb, (a, b)
    unrelated = set(dedup.lsh_keys(dedup.fingerprint(p["6704122"])))
    assert not unrelated & set(dedup.lsh_keys(dedup.fingerprint(p["7166310"])))
    assert len(unrelated) == dedup.PERMUTATIONS // dedup.LSH_ROWS + dedup.TITLE_KEYS


# -- exact duplicates and the clusterer ------------------------------------------------------

def test_exact_keys() -> None:
    a = article("a:1", "标题", "正文", url="HTTPS://Example.com/n/1/#top")
    keys = dedup.exact_keys(a)
    assert keys[0] == "url:example.com/n/1" and keys[1] == f"hash:{a.content_hash}"
    assert keys[2].startswith("text:")
    assert [k for k in dedup.exact_keys(a.evolve(url="")) if k.startswith("url:")] == []


def test_same_url_is_one_story_whatever_the_text_and_time() -> None:
    a = article("a:1", "Reeves vows to stop UK tech from drifting abroad", url="https://bbc.co.uk/x")
    b = article("b:9", "Mayors to gain more spending power under Reeves tax plans", hours=24 * 40,
                url="https://bbc.co.uk/x/")
    assert set(dedup.cluster([a, b]).values()) == {"a:1"}


def test_same_content_is_one_story() -> None:
    body = "据天眼查APP显示，近期，知乎关联公司智者四海（北京）技术有限公司申请注册的“B乎”商标状态变更为“驳回复审”。"
    a = article("a:1", "知乎申请“B乎”商标被驳回复审", body)
    b = article("b:2", "知乎申请“B乎”商标被驳回复审。", body + " ", hours=30 * 24)  # other id, later
    assert dedup.cluster([a, b]) == {"a:1": "a:1", "b:2": "a:1"}


def test_short_texts_are_merged_only_as_exact_duplicates_within_the_window() -> None:
    a = article("a:1", "恒生指数跌超1%")
    same = article("b:1", "恒生指数跌超1%。", hours=2)
    next_week = article("c:1", "恒生指数跌超1%", hours=24 * 7)
    similar = article("d:1", "恒生指数跌超2%", hours=1)
    stories = dedup.cluster([a, same, next_week, similar])
    assert stories == {"a:1": "a:1", "b:1": "a:1", "c:1": "c:1", "d:1": "d:1"}
    assert dedup.lsh_keys(dedup.fingerprint(a)) == []


def test_readme_same_story_pairs_are_clustered() -> None:
    stories = dedup.cluster(list(posts().values()))
    story = {k: stories[a.uid] for k, a in posts().items()}
    found: list[frozenset[str]] = []
    missed: list[frozenset[str]] = []
    for group in README_GROUPS:
        for a, b in itertools.combinations(group, 2):
            (found if story[a] == story[b] else missed).append(frozenset((a, b)))
    print(f"README pairs clustered: {len(found)} of {len(found) + len(missed)}")
    assert set(missed) <= README_MISSES, sorted(map(sorted, set(missed) - README_MISSES))
    assert len(found) >= 5


def test_clearly_different_stories_are_apart() -> None:
    p = posts()
    stories = dedup.cluster(list(p.values()))
    story = {k: stories[a.uid] for k, a in p.items()}
    for a, b in (("6742097", "6757673"), ("6761079", "7020388"),  # northbound 30 / 40 / 80
                 ("6736198", "7157132"),  # House vote / debt-ceiling deal
                 ("7063824", "7090389"),  # 中国铝业, two different answers
                 ("6779752", "6796814"),  # 欧菲光, two different announcements
                 ("6921532", "6924746"),  # two brokers' market views
                 ("6863017", "7085963")):  # Japan: GDP revision / pay-rise tax plan
        assert story[a] != story[b], (a, b)
    sizes: dict[str, int] = defaultdict(int)
    for s in story.values():
        sizes[s] += 1
    assert max(sizes.values()) <= 4  # the onshore and offshore yuan records (uncertain)


def test_time_window() -> None:
    body = ("国家知识产权局今年以来聚焦高质量发展，开展打击不以保护创新为目的的非正常专利申请和商标恶意"
            "抢注行为专项整治，2021年累计向地方通报4批次81.5万件非正常专利申请。")
    a = article("a:1", "国家知识产权局打击非正常专利申请", body)
    rewritten = body.replace("今年以来", "近日").replace("专项整治", "专项行动")
    near = article("b:1", "国家知识产权局：打击非正常专利申请", rewritten, hours=47)
    far = article("c:1", "国家知识产权局：打击非正常专利申请", rewritten + "。", hours=24 * 4)
    assert dedup.similarity(dedup.fingerprint(a), dedup.fingerprint(near)) >= dedup.THRESHOLD
    stories = dedup.cluster([a, near, far])
    assert stories["b:1"] == "a:1"
    assert stories["c:1"] == "a:1"  # 2 days after the rewrite, which is in the story
    alone = dedup.cluster([a, far])
    assert alone["c:1"] == "c:1"
    wide = dedup.cluster([a, far], Clusterer(window=timedelta(days=5)))
    assert wide["c:1"] == "a:1"


def test_assign_story_with_candidates_from_an_index() -> None:
    p = posts()
    old = Candidate.of(p["6672930"], story_id="offshore")  # 离岸人民币…最高水平
    other = Candidate.of(p["6748961"], story_id="onshore")  # 在岸人民币…现报6.3565
    new = Candidate.of(p["6781916"])  # 离岸人民币兑美元升至6.3512…
    assert dedup.assign_story(new, [other, old]) == "offshore"
    assert dedup.assign_story(new, [other]) is None
    assert dedup.assign_story(new, []) is None
    strict = Clusterer(threshold=1.01)
    assert strict.assign(new, [old]) is None


# -- the labelled set ------------------------------------------------------------------------

def test_labels_are_well_formed() -> None:
    data = labels()
    assert "judge" in data and len(data["method"]) > 500
    items = labelled_items("stories")
    units = {unit(i) for i in items}
    assert len([i for i in items if i.startswith("finews")]) == 117
    refs = [r for s in data["stories"]["stories"] for v in s["versions"] for r in v]
    refs += [r for pair in data["stories"]["uncertain"] for r in pair]
    assert {_ref_unit(r) for r in refs} <= units
    held_out = {unit(i) for i in labelled_items("held_out")}
    refs = [r for s in data["held_out"]["stories"] for v in s["versions"] for r in v]
    refs += [r for pair in data["held_out"]["uncertain"] for r in pair]
    assert {_ref_unit(r) for r in refs} <= held_out
    more = {unit(i) for i in labelled_items("more_stories")}
    refs = [r for s in data["more_stories"]["stories"] for v in s["versions"] for r in v]
    refs += [r for pair in data["more_stories"]["uncertain"] for r in pair]
    assert {_ref_unit(r) for r in refs} <= more
    later = {unit(i) for i in labelled_items("held_out_2")}
    refs = [r for s in data["held_out_2"]["stories"] for v in s["versions"] for r in v]
    refs += [r for pair in data["held_out_2"]["uncertain"] for r in pair]
    assert {_ref_unit(r) for r in refs} <= later
    for part in ("stories", "held_out", "more_stories", "held_out_2"):  # one story at most
        in_stories = [r for s in data[part]["stories"] for v in s["versions"] for r in v]
        assert len(in_stories) == len(set(in_stories)), part
    # Held out means apart: no day of it is in the parts the experiments fit on, and
    # no day is in two story-level parts.
    fit_days = [*data["stories"]["corpus"]["rss-days"], *data["more_stories"]["corpus"]["rss-days"]]
    assert not set(data["held_out"]["corpus"]["rss-days"]) & set(fit_days)
    story_days = [*fit_days, *data["held_out"]["corpus"]["rss-days"],
                  *data["held_out_2"]["corpus"]["rss-days"]]
    assert len(story_days) == len(set(story_days))
    near_units = {unit(i) for i in labelled_items("near_duplicates")}
    refs = [r for a, b, _ in data["near_duplicates"]["same"] for r in (a, b)]
    refs += [r for pair in data["near_duplicates"]["uncertain"] for r in pair]
    assert {_ref_unit(r) for r in refs} <= near_units
    assert not re.search(r"[\u4e00-\u9fff]", re.sub(r'"rss-days/[^"]*"', "", json.dumps(
        [data["stories"], data["held_out"], data["more_stories"], data["held_out_2"],
         data["near_duplicates"]],
        ensure_ascii=False)))
    counts = data["counts"]
    stories, near = truth("stories"), truth("near_duplicates")
    assert counts["stories"]["items"] == len(items)
    assert counts["stories"]["distinct_items"] == len(units)
    assert counts["stories"]["same_story_pairs_of_distinct_items"] == len(stories.same)
    assert counts["stories"]["of_them_copy_tier"] == len(stories.copy)
    assert counts["held_out"]["items"] == len(labelled_items("held_out"))
    assert counts["held_out"]["distinct_items"] == len(held_out)
    assert counts["held_out"]["same_story_pairs_of_distinct_items"] == len(truth("held_out").same)
    assert counts["held_out"]["of_them_copy_tier"] == len(truth("held_out").copy)
    for part, units_of_part in (("more_stories", more), ("held_out_2", later)):
        assert counts[part]["items"] == len(labelled_items(part))
        assert counts[part]["distinct_items"] == len(units_of_part)
        assert counts[part]["same_story_pairs_of_distinct_items"] == len(truth(part).same)
        assert counts[part]["of_them_copy_tier"] == len(truth(part).copy)
        assert counts[part]["uncertain_pairs"] == len(truth(part).uncertain)
    assert counts["near_duplicates"]["distinct_links"] == len(near_units)
    assert counts["near_duplicates"]["same_story_pairs"] == len(near.same)


@pytest.mark.parametrize("part, min_p, min_r", [
    ("stories", MIN_STORY_PRECISION, MIN_STORY_RECALL),
    ("near_duplicates", MIN_NEAR_PRECISION, MIN_NEAR_RECALL),
    ("held_out", MIN_HELD_OUT_PRECISION, MIN_HELD_OUT_RECALL),
    ("more_stories", MIN_MORE_PRECISION, MIN_MORE_RECALL),
    ("held_out_2", MIN_HELD_OUT_2_PRECISION, MIN_HELD_OUT_2_RECALL),
])
def test_precision_and_recall_on_the_labelled_set(part: str, min_p: float, min_r: float) -> None:
    items = labelled_items(part)
    stories = dedup.cluster(list(items.values()))
    first: dict[str, set[str]] = defaultdict(set)
    for item, art in items.items():  # a re-fetch (same link, later day) is in the same story
        first[unit(item)].add(stories[art.uid])
    assert all(len(s) == 1 for s in first.values())
    s = pair_scores(items, stories, part)
    print(f"\n{part}: precision {s.precision:.3f} ({s.hits}/{s.predicted}), "
          f"recall {s.recall:.3f} ({s.hits}/{s.true}), copy recall {s.copy_recall:.3f}")
    for a, b in s.false_pairs:
        print("  false:", a, "|", b)
    assert s.precision >= min_p
    assert s.recall >= min_r


# Characters around the fast path's list and its edges: full-width and
# compatibility forms, combining marks that compose with what precedes them,
# Hangul, accented Latin, and anything else.
_NFKC_CHARS = st.one_of(
    st.sampled_from(list("，（）：；！？…﹢①②℃™㎡　ＡＢａ１２％．‑") + ["\u0301", "\u0308", "\u3099",
                                                            "\uf9f7", "\u2f50", "\u1100",
                                                            "\u1161", "e", "A", "가", "¼"]),
    st.characters(min_codepoint=0x2000, max_codepoint=0x33ff),
    st.characters(min_codepoint=0xf900, max_codepoint=0xffef),
    st.characters(),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_NFKC_CHARS, max_size=30).map("".join))
@example("Ａ\u0301")  # composes after its full-width letter is mapped
@example("１，０００")  # thousands in full width: one number after NFKC
def test_the_fast_nfkc_equals_unicodedata(text: str) -> None:
    assert dedup._nfkc(text) == unicodedata.normalize("NFKC", text)


def test_the_fast_nfkc_equals_unicodedata_on_the_corpus() -> None:
    texts = [a.body_text or a.digest for a in labelled_items("near_duplicates").values()]
    assert texts and all(dedup._nfkc(t) == unicodedata.normalize("NFKC", t) for t in texts)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(list("ab09._. 中文，é-Ωß3.5x.y") + ["1.2.3", "a.5"]),
                          st.characters()), max_size=40).map("".join))
def test_token_runs_equal_one_match_per_token(text: str) -> None:
    text = text.lower()
    assert dedup._token_runs(text) == dedup._TOKEN.findall(text)


# -- the clusterer's shortcuts against the plain algorithm -----------------------------------

_OLD_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_OLD_ZERO_LED = re.compile(r"(?<![a-z0-9])0[0-9]*(?![a-z0-9]|\.[0-9])")


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(["1,000", ",", "0", "00", "a0", "0.5", "1,0000",
                                           "٣,٣٣٣", "a", "1", ".", " ", "中", "12,345,678"]),
                          st.characters()), max_size=40).map("".join))
@example("0")
@example(",000")
@example("1,000")
def test_the_literal_first_patterns_match_as_the_plain_ones(text: str) -> None:
    assert dedup._THOUSANDS.sub("", text) == _OLD_THOUSANDS.sub("", text)
    assert bool(dedup._ZERO_LED.search(text)) == bool(_OLD_ZERO_LED.search(text))


def _plain_assign(clusterer: Clusterer, new: Candidate, candidates: Iterable[Candidate],
                  exact: bool = True) -> str | None:
    """Clusterer.assign as first written: every candidate sorted and compared in turn."""
    ordered = sorted(candidates, key=lambda c: (c.published_at, c.story_id))
    mine = dedup.read_fingerprint(new.fingerprint)
    same = _plain_exact(clusterer, new, mine, ordered) if exact else None
    if same is not None:
        return same.story_id
    if mine.tokens < clusterer.min_tokens or not mine.shingles:
        return None
    best: tuple[float, str] | None = None
    for other in ordered:
        theirs = dedup.read_fingerprint(other.fingerprint)
        if (abs(new.published_at - other.published_at) > clusterer.window
                or theirs.tokens < clusterer.min_tokens or not theirs.shingles):
            continue
        score = dedup.similarity(mine, theirs)
        if score >= clusterer.threshold and (best is None or score > best[0]):
            best = (score, other.story_id)
    return best[1] if best else None


def _plain_exact(clusterer: Clusterer, new: Candidate, mine: dedup.Fingerprint,
                 ordered: list[Candidate]) -> Candidate | None:
    keys = set(new.exact_keys)
    content_hit = None
    for other in ordered:
        shared = keys.intersection(other.exact_keys)
        if any(k.startswith("url:") for k in shared):
            return other
        if content_hit is None and shared and (
                mine.tokens >= dedup.LONG_TOKENS
                or abs(new.published_at - other.published_at) <= clusterer.window):
            content_hit = other
    return content_hit


def _plain_title_jaccard(x: dedup.Fingerprint, y: dedup.Fingerprint) -> float:
    union = len(x.title | y.title)
    return len(x.title & y.title) / union if union else 0.0


# Look-alike texts: sentences drawn from one pool, so that texts share from
# nothing to everything and scores spread around the threshold; titles that
# agree or not, with figures that differ or not; ties (equal estimates) occur.
_SENTENCES = ["公司晚间公告，预计前三季度实现营业收入12亿元，同比增长8%。",
              "业绩增长主要系主营产品销量增加、降本增效措施持续推进所致。",
              "经营活动产生的现金流量净额同比改善，资产负债率有所下降。",
              "市场人士认为，公司基本面稳健，估值处于历史低位。",
              "央行开展逆回购操作，北向资金净流入超40亿元。",
              "Federal Reserve cut rates by 25 basis points.",
              "截至发稿，公司股价上涨3.5%，成交额放大至去年同期的两倍。",
              "分析师指出，行业景气度回升，龙头企业有望率先受益。"]
_TITLES = ["第1号公司前三季度净利润增长8%", "第2号公司前三季度净利润增长9%", "公司公告", "",
           "北向资金净流入超40亿", "北向资金净流入超80亿"]
_ZONES = [timezone.utc, BEIJING, timezone(timedelta(hours=-5))]


@st.composite
def _candidates(draw: st.DrawFn) -> tuple[Candidate, list[Candidate]]:
    def one(i: int) -> Candidate:
        title = draw(st.sampled_from(_TITLES))
        body = "".join(draw(st.lists(st.sampled_from(_SENTENCES), max_size=6)))
        hours = draw(st.sampled_from([0, 1, 71.5, 72, 72.0001, 100, -72, -73]))
        when = (T0 + timedelta(hours=hours)).astimezone(draw(st.sampled_from(_ZONES)))
        a = article(f"c:{i}", title, body, url=draw(st.sampled_from(["", "https://x.cn/1"])))
        made = Candidate.of(a.evolve(published_at=when))
        keys = made.exact_keys[:draw(st.integers(0, len(made.exact_keys)))]
        return Candidate(draw(st.sampled_from(["1", "2", "3", str(i + 10)])), when,
                         made.fingerprint, keys, i)

    return one(0), [one(i) for i in range(1, draw(st.integers(0, 16)))]


@settings(max_examples=500, deadline=None)
@given(_candidates(), st.booleans())
def test_the_clusterer_chooses_as_the_plain_algorithm(
        drawn: tuple[Candidate, list[Candidate]], exact: bool) -> None:
    new, candidates = drawn
    clusterer = Clusterer()
    assert clusterer.assign(new, candidates, exact) == _plain_assign(clusterer, new,
                                                                      candidates, exact)
    assert clusterer.assign(new, iter(candidates), exact) == _plain_assign(
        clusterer, new, candidates, exact)
    found = clusterer.exact_match(new, candidates)
    plain = _plain_exact(clusterer, new, dedup.read_fingerprint(new.fingerprint),
                         sorted(candidates, key=lambda c: (c.published_at, c.story_id)))
    assert found is plain
    for other in candidates:
        mine, theirs = (dedup.read_fingerprint(c.fingerprint) for c in (new, other))
        assert dedup._title_jaccard(mine, theirs) == _plain_title_jaccard(mine, theirs)
        if mine.shingles and theirs.shingles:  # the bound that skips never skips a score
            j = dedup.jaccard(mine, theirs)
            [bound] = dedup._score_bounds(mine, [(other, theirs)], [j])
            assert bound >= max(j, dedup._containment(mine, theirs, j)) >= \
                dedup._similarity(mine, theirs, j)
            assert bound - max(j, dedup._containment(mine, theirs, j)) < 1e-6


def test_the_clusterer_chooses_as_the_plain_algorithm_on_the_corpus() -> None:
    """Every article of the labelled set against all the others in its window."""
    items = sorted(labelled_items("near_duplicates").values(), key=lambda a: a.published_at)
    made = [Candidate.of(a, str(i)) for i, a in enumerate(items)]
    clusterer = Clusterer()
    chosen = 0
    for i, new in enumerate(made):
        others = [c for c in made[max(0, i - 150):i]]
        expected = _plain_assign(clusterer, new, others)
        assert clusterer.assign(new, others) == expected
        assert clusterer.assign(new, others, exact=False) == _plain_assign(
            clusterer, new, others, exact=False)
        chosen += expected is not None
    assert chosen >= 10


def _plain_candidate(a: Article) -> tuple[bytes, tuple[str, ...]]:
    """Candidate.of through a string per token (_parts), as first written."""
    head = dedup.tokens(a.title)
    parts = dedup._parts(head, a.body_text or a.digest)
    return dedup._pack(parts, len(head)), tuple(dedup._exact_keys(a, parts))


_TOKEN_PIECES = st.sampled_from(
    ["央行", "逆回购", "a", "A", "_", "a_b", "0", "007", "09869.hk", "1,000", "x.05", "1.2.3x",
     "Ｏ０１", "\ue000", "𠀀", "\U0001f600", "é", "ß", "٣", "²", "ǅ", "\u0301", "\ud800", " ", "\n",
     "。", "，", "（来源：新华社）", "【快讯】", "北向资金净流入超40亿", "Fed cut 25bp"])


@settings(max_examples=400, deadline=None)
@given(title=st.lists(_TOKEN_PIECES, max_size=8).map("".join),
       body=st.lists(_TOKEN_PIECES | st.text(max_size=3), max_size=120).map("".join),
       repeat=st.booleans())
@example(title="央行", body="央行", repeat=False)
@example(title="a", body="a b", repeat=False)
@example(title="", body="", repeat=False)
def test_candidates_are_made_as_through_a_string_per_token(title: str, body: str,
                                                           repeat: bool) -> None:
    title = title.replace("\ud800", "")  # a lone surrogate: no content hash
    body = title + body if repeat else body
    if "\ud800" not in body:
        a = article("p:1", title, body, url="https://x.cn/a")
        made = Candidate.of(a)
        assert (made.fingerprint, made.exact_keys) == _plain_candidate(a)
    teaser = article("p:2", title, digest=body)  # no body: the digest is fingerprinted
    made = Candidate.of(teaser)
    assert (made.fingerprint, made.exact_keys) == _plain_candidate(teaser)


def test_candidates_are_made_as_through_a_string_per_token_on_the_corpus() -> None:
    items = list(labelled_items("near_duplicates").values()) + list(posts().values())
    assert all((c.fingerprint, c.exact_keys) == _plain_candidate(a)
               for a in items for c in (Candidate.of(a),))

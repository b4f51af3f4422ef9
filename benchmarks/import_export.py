"""Benchmark: import N Jekyll posts into the archive, then export them back.

Run it by hand from the repository root::

    python benchmarks/import_export.py --sizes 1000 10000 100000
    python benchmarks/import_export.py --sizes 1000 --keep      # keep the files in /tmp

For each N it

1. generates N post files (timed separately, not part of the figures) in a
   temporary directory under /tmp, deleted afterwards unless ``--keep``. The
   posts are built from the real corpus (``../shared/corpus/finews-posts``, or
   ``$CAIXUN_SHARED/corpus/finews-posts``): its titles and sentences are
   recombined with a seeded ``random.Random`` into posts in exactly the format
   of the real ones (``YYYY-MM-DD-<18-digit id>.md``, ``date: ... +0800``,
   ``categories: <legacy slug>``, ``tags: <outlet>新闻``, share link, one-line
   footer). Outlets (``--outlets``, default 300) get names made of Chinese
   characters from the corpus and a Zipf-like share of the posts (``--zipf``).
   A share of the posts (``--html-share``) has an HTML body shaped like the
   media-column post ``2022-01-11-NW202201112243109259.md``; the rest a plain
   digest. Post ``i`` does not depend on N, so a smaller set is a prefix of a
   larger one.
   A hundred more posts of the stream (``N`` … ``N+99``) wait in a directory
   beside them.
2. runs a fresh child process (so peak RSS is per N) that times
   ``open_archive`` + ``import_posts`` (with ``--jobs``, default the
   importer's: one process per idle core) and then
   ``write_posts(iter_articles())``, checks that N articles are new and N
   files were written, and compares ``--check`` randomly chosen exported
   files with the generated ones byte for byte. Then it times two more
   imports of the directory, each with a fresh ``open_archive``: unchanged
   (every file must be left unread), and after the hundred more posts were
   moved in (100 new, N unread).
3. prints one row per N: seconds and articles/s for the first import, seconds
   for the two re-imports, seconds and articles/s for the export, the child's
   peak RSS (``ru_maxrss``; the import's worker processes, if any, are
   separate processes: their peak is in the notes) and the archive size
   (MB = 2**20 bytes).

Only the standard library and caixun are used. Files are freshly written, so
the import reads from a warm page cache.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import random
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from pathlib import Path
from typing import Any, Iterator

import caixun
from caixun.archive import SqliteArchive, open_archive
from caixun.importer import default_jobs, import_posts
from caixun.publish.jekyll import write_posts
from caixun.slugs import is_safe_slug, legacy_slug

MB = 1024 * 1024
BEIJING = timezone(timedelta(hours=8))
START = datetime(2021, 12, 8, tzinfo=BEIJING)  # the first day of the real posts
YEAR_SECONDS = 365 * 24 * 3600
SITE = "//finews.withounder.com"
SUFFIXES = ("", "报", "日报", "时报", "晚报", "证券报", "财经", "网", "新闻网", "周刊", "商报")

_TITLE_LINE = re.compile(r'^title: "(.*)"$', re.M)
_SENTENCE = re.compile(r"[^。！？!?；]*[。！？!?；]+[”’」』）)]?|[^。！？!?；]+$")
_TAG = re.compile(r"<[^>]*>")
_PARAGRAPH = re.compile(r"<p[^>]*>(.*?)</p>", re.S)
_UNSAFE = re.compile(r'[<>&\\"`\x00-\x1f]')  # kept out of generated text and titles
_CJK = re.compile(r"[\u4e00-\u9fff]")


# -- material from the real corpus ---------------------------------------------

@dataclass(frozen=True)
class Material:
    titles: list[str]
    sentences: list[str]
    chars: list[str]  # distinct CJK characters, sorted


@dataclass(frozen=True)
class Outlet:
    name: str
    slug: str

    @property
    def tag(self) -> str:
        return f"{self.name}新闻"


def corpus_dir() -> Path:
    shared = os.environ.get("CAIXUN_SHARED")
    base = Path(shared) if shared else Path(__file__).resolve().parents[1].parent / "shared"
    return base / "corpus" / "finews-posts"


def read_material(directory: Path) -> Material:
    titles: dict[str, None] = {}
    sentences: dict[str, None] = {}
    for path in sorted(directory.glob("*.md")):
        front, _, body = path.read_text(encoding="utf-8").partition("\n---\n")
        match = _TITLE_LINE.search(front)
        if match and match.group(1).strip() and not _UNSAFE.search(match.group(1)):
            titles[match.group(1)] = None
        for paragraph in _paragraphs(body):
            sentences.update(dict.fromkeys(_sentences(paragraph)))
    text = "".join(sentences) + "".join(titles)
    chars = sorted(set(_CJK.findall(text)))
    return Material(list(titles), list(sentences), chars)


def _paragraphs(body: str) -> Iterator[str]:
    for line in body.splitlines():
        line = line.strip()
        if "<p" in line:
            yield from (html.unescape(_TAG.sub("", p)) for p in _PARAGRAPH.findall(line))
        elif line and line[0] not in "<[":
            yield line.removeprefix("> ")


def _sentences(paragraph: str) -> Iterator[str]:
    for sentence in _SENTENCE.findall(paragraph):
        sentence = sentence.strip()
        if len(sentence) >= 6 and "文章来源" not in sentence and not _UNSAFE.search(sentence):
            yield sentence


def make_outlets(material: Material, count: int, seed: int) -> list[Outlet]:
    """``count`` outlets with distinct, URL-safe legacy slugs; rank 0 is the biggest."""
    rng = random.Random(f"{seed}:outlets")
    outlets = [Outlet("人民邮电报", legacy_slug("人民邮电报"))]
    names, slugs = {outlets[0].name}, {outlets[0].slug}
    while len(outlets) < count:
        name = "".join(rng.sample(material.chars, rng.choice((2, 2, 3, 3, 4))))
        name += rng.choice(SUFFIXES)
        slug = legacy_slug(name)
        if name in names or slug in slugs or not is_safe_slug(slug):
            continue
        names.add(name)
        slugs.add(slug)
        outlets.append(Outlet(name, slug))
    return outlets


# -- generating posts -------------------------------------------------------------

class PostMaker:
    """Post ``i`` of the stream; the stream does not depend on how many are made."""

    def __init__(self, material: Material, outlets: list[Outlet],
                 args: argparse.Namespace) -> None:
        self.material = material
        self.outlets = outlets
        self.cum_weights = list(accumulate(1.0 / k ** args.zipf for k in range(1, len(outlets) + 1)))
        self.html_share = args.html_share
        self.rng = random.Random(args.seed)

    def post(self, index: int) -> tuple[str, str]:
        """(file name, file text) of the next post, whose id is made from ``index``."""
        rng = self.rng
        outlet = rng.choices(self.outlets, cum_weights=self.cum_weights)[0]
        when = START + timedelta(seconds=rng.randrange(YEAR_SECONDS))
        day = when.strftime("%Y%m%d")
        file_id = f"{day}{2_200_000_000 + index * 1_000_003 % 1_000_000_000:010d}"
        is_html = rng.random() < self.html_share
        body = self._html_body(outlet) if is_html else self._text_body(outlet)
        front = (f'---\nlayout: post\ntitle: "{self._title()}"\n'
                 f"date: {when:%Y-%m-%d %H:%M:%S} +0800\n"
                 f"categories: {outlet.slug}\ntags: {outlet.tag}\n---\n")
        tail = (f"\n\n<http://finance.eastmoney.com/news/1344,{file_id}.html>\n\n"
                f"[返回{outlet.tag}]({SITE}/category/{outlet.slug}.html)｜[返回首页]({SITE}/)")
        lead = "" if is_html else "\n"  # the media-column post has no blank line there
        return f"{when:%Y-%m-%d}-{file_id}.md", front + lead + body + tail

    def _title(self) -> str:
        rng = self.rng
        if rng.random() < 0.5:
            return rng.choice(self.material.titles)
        title = rng.choice(self.material.sentences).rstrip("。！？!?；")
        return title[:40] or rng.choice(self.material.titles)

    def _sentences(self, low: int, high: int) -> str:
        return "".join(self.rng.sample(self.material.sentences, self.rng.randint(low, high)))

    def _text_body(self, outlet: Outlet) -> str:
        digest = self._sentences(1, 6)
        return digest + f"（{outlet.name}）" if self.rng.random() < 0.6 else digest

    def _html_body(self, outlet: Outlet) -> str:
        paragraphs = [f"<p>{self._sentences(2, 6)}</p>" for _ in range(self.rng.randint(2, 6))]
        paragraphs[-1] = paragraphs[-1][:-4] + f' </p><p class="em_media">（文章来源：{outlet.name}）</p>'
        return "\n ".join(paragraphs)


def generate_posts(maker: PostMaker, directory: Path, count: int, first: int = 0) -> int:
    """Write posts ``first`` … ``first + count - 1`` into ``directory``; returns the bytes written."""
    directory.mkdir(parents=True)
    total = 0
    for index in range(first, first + count):
        name, text = maker.post(index)
        data = text.encode("utf-8")
        (directory / name).write_bytes(data)
        total += len(data)
    return total


# -- the measured run (child process) ---------------------------------------------

def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024


def archive_mb(db_path: Path) -> float:
    files = [db_path, *(db_path.with_name(db_path.name + s) for s in ("-wal", "-shm"))]
    return sum(f.stat().st_size for f in files if f.exists()) / MB


EXTRA = 100  # posts added before the last re-import


def measure_import(posts: Path, db_path: Path, n: int,
                   jobs: int | None) -> tuple[SqliteArchive, float]:
    started = time.perf_counter()
    archive = open_archive(db_path)
    report = import_posts([posts], archive, jobs=jobs)
    seconds = time.perf_counter() - started
    if report.counts["new"] != n:
        raise SystemExit(f"import: expected {n} new articles, got {report.summary()}")
    return archive, seconds


def measure_reimport(posts: Path, db_path: Path, new: int, unread: int,
                     jobs: int | None) -> float:
    """Seconds to open the archive and import ``posts`` again."""
    started = time.perf_counter()
    with open_archive(db_path) as archive:
        report = import_posts([posts], archive, jobs=jobs)
    seconds = time.perf_counter() - started
    if (report.counts["new"], report.counts["unread"]) != (new, unread):
        raise SystemExit(f"re-import: expected {new} new and {unread} files not read, "
                         f"got {report.summary()}")
    return seconds


def measure_export(archive: SqliteArchive, out_dir: Path, n: int) -> float:
    started = time.perf_counter()
    written = sum(1 for _ in write_posts(archive.iter_articles(), out_dir))
    seconds = time.perf_counter() - started
    on_disk = sum(1 for e in os.scandir(out_dir) if e.name.endswith(".md"))
    if written != n or on_disk != n:
        raise SystemExit(f"export: expected {n} files, wrote {written}, found {on_disk}")
    return seconds


def spot_check(posts: Path, out_dir: Path, count: int, seed: int) -> int:
    names = sorted(os.listdir(posts))
    sample = random.Random(f"{seed}:check").sample(names, min(count, len(names)))
    for name in sample:
        if (posts / name).read_bytes() != (out_dir / name).read_bytes():
            raise SystemExit(f"export: {name} differs from the generated post")
    return len(sample)


def run_child(work: Path, n: int, check: int, seed: int, jobs: int | None) -> dict[str, Any]:
    posts, db_path, out_dir = work / "_posts", work / "archive.db", work / "export"
    rss_start = peak_rss_mb()
    archive, import_s = measure_import(posts, db_path, n, jobs)
    rss_import = peak_rss_mb()
    export_s = measure_export(archive, out_dir, n)
    rss_export = peak_rss_mb()
    archive.close()
    checked = spot_check(posts, out_dir, check, seed)
    reimport_s = measure_reimport(posts, db_path, 0, n, jobs)
    for extra in sorted((work / "extra").iterdir()):
        extra.rename(posts / extra.name)
    more_s = measure_reimport(posts, db_path, EXTRA, n, jobs)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"n": n, "import_s": import_s, "export_s": export_s, "reimport_s": reimport_s,
            "more_s": more_s, "rss_start": rss_start, "rss_import": rss_import,
            "rss_peak": peak_rss_mb(), "rss_export": rss_export,
            "rss_workers": workers / (MB if sys.platform == "darwin" else 1024),
            "db_mb": archive_mb(db_path), "checked": checked}


# -- the driver (parent process) ----------------------------------------------------

Outcome = tuple[dict[str, Any], float, int]  # child's figures, generation seconds, bytes


def run_size(maker: PostMaker, args: argparse.Namespace, root: Path, n: int) -> Outcome:
    work = root / f"n{n}"
    started = time.perf_counter()
    size = generate_posts(maker, work / "_posts", n)
    gen_s = time.perf_counter() - started
    generate_posts(maker, work / "extra", EXTRA, first=n)
    # The importer does not trust the time of a file modified in the last 2
    # seconds (caixun.importer.RECENT_NS): the re-import would digest it.
    time.sleep(2.5)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(work),
               "--sizes", str(n), "--check", str(args.check), "--seed", str(args.seed),
               "--jobs", str(args.jobs)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"N={n}: the measuring child failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1]), gen_s, size


def print_header(material: Material, outlets: list[Outlet], args: argparse.Namespace) -> None:
    print(f"Python {platform.python_version()} ({platform.python_implementation()}) "
          f"on {platform.system()} {platform.machine()}; CPU count: {os.cpu_count()}; "
          f"SQLite {sqlite3.sqlite_version}; caixun {caixun.__version__}")
    print(f"material: {corpus_dir()} ({len(material.titles)} titles, "
          f"{len(material.sentences)} sentences, {len(material.chars)} characters); "
          f"{len(outlets)} outlets, zipf {args.zipf}, html share {args.html_share}, "
          f"seed {args.seed}")
    jobs = args.jobs or f"the importer's default, one per idle core ({default_jobs()} now)"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"import processes: {jobs}; load average before: {load}", flush=True)


ROW = "{:>8} {:>9} {:>12} {:>11} {:>11} {:>9} {:>12} {:>12} {:>8}"


def print_row(r: dict[str, Any]) -> None:
    n = r["n"]
    print(ROW.format(n, f"{r['import_s']:.2f}", f"{n / r['import_s']:,.0f}",
                     f"{r['reimport_s']:.2f}", f"{r['more_s']:.2f}",
                     f"{r['export_s']:.2f}", f"{n / r['export_s']:,.0f}",
                     f"{r['rss_peak']:.1f}", f"{r['db_mb']:.1f}"), flush=True)


def print_notes(notes: list[Outcome]) -> None:
    print("\nnot part of the figures:")
    for r, gen_s, size in notes:
        print(f"  N={r['n']}: generated {size / MB:.1f} MB of posts in {gen_s:.2f} s; "
              f"RSS MB at start {r['rss_start']:.1f}, after import {r['rss_import']:.1f}, "
              f"after export {r['rss_export']:.1f}, after the re-imports {r['rss_peak']:.1f}; "
              f"import worker processes {r['rss_workers']:.1f} at most; {r['checked']} "
              "exported files byte-identical to the generated ones")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--outlets", type=int, default=300)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--html-share", type=float, default=0.1)
    parser.add_argument("--check", type=int, default=100,
                        help="exported files compared byte for byte (random sample)")
    parser.add_argument("--keep", action="store_true", help="keep the files under /tmp")
    parser.add_argument("--jobs", type=int, default=0,
                        help="import processes (default 0: the importer's default, one per core)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_child(args.child, args.sizes[0], args.check, args.seed,
                                   args.jobs or None)))
        return
    material = read_material(corpus_dir())
    outlets = make_outlets(material, args.outlets, args.seed)
    print_header(material, outlets, args)
    root = Path(tempfile.mkdtemp(prefix="caixun-bench-", dir="/tmp"))
    notes: list[Outcome] = []
    try:
        print(ROW.format("N", "import s", "import art/s", "re-import s", f"+{EXTRA} new s",
                         "export s", "export art/s", "peak RSS MB", "db MB"), flush=True)
        for n in args.sizes:
            notes.append(run_size(PostMaker(material, outlets, args), args, root, n))
            print_row(notes[-1][0])
            if not args.keep:
                shutil.rmtree(root / f"n{n}")
        print_notes(notes)
    finally:
        if args.keep:
            print(f"\nfiles kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

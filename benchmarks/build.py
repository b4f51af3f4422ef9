"""Benchmark: build the static site from an archive of N articles, then rebuild.

Run it by hand from the repository root::

    python benchmarks/build.py --sizes 10000 100000
    python benchmarks/build.py --sizes 1000 --keep          # keep archive and site in /tmp
    python benchmarks/build.py --sizes 10000 --profile      # cProfile, one process, jobs=1
    python benchmarks/build.py --from-posts /tmp/c           # a tree made by gen_corpus.py

For each N it

1. generates an archive of N articles (timed separately, not part of the
   figures) in a temporary directory under /tmp, deleted afterwards unless
   ``--keep``. The articles are the posts of the shared build-benchmark
   harness (``../shared/bench/gen_corpus.py``, or ``$CAIXUN_SHARED/bench``),
   which builds the same corpus with Jekyll and Hugo: that generator is
   imported (not copied), post ``i`` is made by its ``Gen.post(i)`` with the
   same knobs (``--seed``, ``--days``, ``--start``, ``--categories`` (2000
   outlets), ``--zipf`` (1.1), ``--min-bytes``/``--max-bytes``, ``--material``,
   default: the one real media-column post in ``../shared/corpus/finews-posts``,
   which is also the harness's default), parsed in memory with
   ``caixun.sources.jekyll.parse_post`` exactly as ``caixun import`` parses
   the file, and written with ``archive.store_many`` in batches of
   ``--batch``. So the archive holds the articles that importing the
   harness's ``_posts`` would give, without writing N files first.
   ``--from-posts DIR`` instead imports a directory of posts (for example
   ``python3 ../shared/bench/gen_corpus.py --out DIR --n N``) with
   ``caixun.importer.import_posts``; ``--sizes`` is then ignored.
   The ``--add`` (100) new articles are posts N, N+1, … of the generator's
   ``--append`` stream (dated after the base range, so the newest), with the
   outlet drawn from the same Zipf weights but only among outlets that
   already have articles.
2. runs a fresh child process (so peak memory is per N) that times
   ``build_site(full=True)`` into an empty directory (work split over
   ``--jobs`` forked processes, default: all cores), then stores the new
   articles (not timed) and times an incremental build, then times a build
   with no change. It checks the build modes, that the full build wrote every
   file it produced and that the new articles' pages exist.
3. prints one row per N: wall seconds and files written of the full build,
   its peak RSS, the incremental build's seconds and files written, the
   no-change build's seconds and the site size (MB = 2**20 bytes, apparent
   size, like ``du -sb``).

Peak RSS is ``max(ru_maxrss of the child, ru_maxrss of its reaped worker
processes)`` right after the full build, the figure ``/usr/bin/time -v``
gives for a single-process builder such as Hugo. As forked workers share
pages with the parent, the notes also give the peak of the sum of PSS
(proportional set size) over the child and its workers per phase, sampled
every 50 ms (``--sample-ms``; 0 turns it off) from /proc by the driver
process (Linux only). The driver calls ``sync`` before starting the child.
On a 2-core VM repeated runs of the same size varied by 10-20 %.

``--profile`` runs one size in this process with ``jobs=1`` under cProfile
(full build, then the incremental build) and prints the top entries by
cumulative time. Only the standard library and caixun are used.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import importlib.util
import json
import os
import platform
import pstats
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import caixun
from caixun.archive import SqliteArchive, StoreResult, open_archive
from caixun.importer import import_posts
from caixun.model import Article
from caixun.publish import paths
from caixun.publish.site import SiteConfig, build_site
from caixun.sources.jekyll import parse_post

MB = 1024 * 1024
DEFAULT_MATERIAL = "2022-01-11-NW202201112243109259.md"  # gen_corpus.py's default


# -- the shared harness's generator ----------------------------------------------

def shared_dir() -> Path:
    shared = os.environ.get("CAIXUN_SHARED")
    return Path(shared) if shared else Path(__file__).resolve().parents[1].parent / "shared"


def corpus_dir() -> Path:
    return shared_dir() / "corpus" / "finews-posts"


def load_gen_corpus() -> ModuleType:
    path = shared_dir() / "bench" / "gen_corpus.py"
    spec = importlib.util.spec_from_file_location("gen_corpus", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise SystemExit(f"cannot load the corpus generator {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Corpus:
    """gen_corpus.py's ``Gen`` with this run's knobs; post ``i`` as an article."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.module = load_gen_corpus()
        self.material = [str(p) for p in args.material] or [str(corpus_dir() / DEFAULT_MATERIAL)]
        self.sentences, titles, self.used = self.module.read_material(self.material,
                                                                      args.max_material)
        self.knobs = argparse.Namespace(
            n=0, seed=args.seed, days=args.days, start=args.start, categories=args.categories,
            zipf=args.zipf, min_bytes=args.min_bytes, max_bytes=args.max_bytes)
        self.gen = self.module.Gen(self.knobs, self.sentences, titles)

    def describe(self) -> str:
        digest = hashlib.sha256(  # gen_corpus.py's material_digest
            "\n".join(self.sentences).encode()).hexdigest()[:16]
        k = self.knobs
        return (f"corpus: {self.module.__file__} (Gen.post), material {', '.join(self.material)} "
                f"({len(self.used)} files, {len(self.sentences)} sentences, digest {digest}); "
                f"{k.categories} outlets, zipf {k.zipf}, {k.days} days from {k.start}, "
                f"bodies {k.min_bytes}-{k.max_bytes} B, seed {k.seed}")

    def post(self, index: int, n: int, appended: bool = False) -> tuple[str, str]:
        self.knobs.n = n  # appended posts are dated after the base range of n posts
        name, text, *_ = self.gen.post(index, appended)
        return name, text

    def new_posts(self, n: int, count: int, existing: set[str]) -> list[tuple[str, str]]:
        """Posts n…n+count-1, newest, Zipf-skewed over the outlets in ``existing``."""
        pick = self.gen.pick_cat

        def pick_existing(rng: Any) -> tuple[str, str]:
            while True:
                category: tuple[str, str] = pick(rng)
                if category[0] in existing:
                    return category

        self.gen.pick_cat = pick_existing
        try:
            return [self.post(i, n, appended=True) for i in range(n, n + count)]
        finally:
            del self.gen.pick_cat


def add_corpus_knobs(parser: argparse.ArgumentParser) -> None:
    """The generated corpus's options (gen_corpus.py's), shared by the benchmarks."""
    knobs = parser.add_argument_group("corpus (as gen_corpus.py)")
    knobs.add_argument("--seed", type=int, default=42)
    knobs.add_argument("--days", type=int, default=365)
    knobs.add_argument("--start", default="2022-01-01")
    knobs.add_argument("--categories", type=int, default=2000)
    knobs.add_argument("--zipf", type=float, default=1.1)
    knobs.add_argument("--min-bytes", type=int, default=1024)
    knobs.add_argument("--max-bytes", type=int, default=4096)
    knobs.add_argument("--material", type=Path, action="append", default=[],
                       help=f"text material (repeatable; default: corpus/finews-posts/"
                            f"{DEFAULT_MATERIAL}, as gen_corpus.py)")
    knobs.add_argument("--max-material", type=int, default=2000)


def store_posts(archive: SqliteArchive, posts: list[tuple[str, str]]) -> int:
    """Parse posts as ``caixun import`` does and store them in one transaction."""
    parsed = [parse_post(text, name) for name, text in posts]
    with archive.transaction():
        results = archive.store_many(p.article for p in parsed)
        for p in parsed:
            if p.slug_alias:
                archive.add_outlet_alias(p.slug_alias, p.article.outlet_slug)
    return results.count(StoreResult.NEW)


def generate_archive(corpus: Corpus, db_path: Path, n: int, batch: int) -> int:
    with open_archive(db_path) as archive:
        new = 0
        for start in range(0, n, batch):
            posts = [corpus.post(i, n) for i in range(start, min(n, start + batch))]
            new += store_posts(archive, posts)
        if new != n:
            raise SystemExit(f"generate: expected {n} new articles, got {new}")
        return new


def import_archive(posts: Path, db_path: Path) -> int:
    with open_archive(db_path) as archive:
        report = import_posts([posts], archive)
        if report.counts["skipped"]:
            raise SystemExit(f"import {posts}: {report.summary()}")
        return archive.count()


# -- memory ------------------------------------------------------------------------

def maxrss_mb(who: int) -> float:
    peak = resource.getrusage(who).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return pids


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeSampler(threading.Thread):
    """Peak summed PSS of a process and its descendants, per phase.

    The measured child names its current phase in the file ``phase_file``.
    """

    def __init__(self, pid: int, phase_file: Path, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.phase_file, self.interval = pid, phase_file, interval
        self.peaks: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        if not Path("/proc/self/smaps_rollup").exists():
            return
        while not self.stop.wait(self.interval):
            try:
                phase = self.phase_file.read_text().strip()
            except OSError:
                continue
            pss = sum(_pss_kb(p) for p in _tree(self.pid)) / 1024
            self.peaks[phase] = max(pss, self.peaks.get(phase, 0.0))


# -- the measured run (child process) ---------------------------------------------

def site_files(out: Path) -> tuple[int, int]:
    count = size = 0
    for directory, dirs, names in os.walk(out):
        dirs[:] = [d for d in dirs if d != paths.TMP_DIR]
        for name in names:
            count += 1
            size += os.stat(os.path.join(directory, name)).st_size
    return count, size


def timed_build(archive: SqliteArchive, out: Path, config: SiteConfig, full: bool,
                jobs: int | None, mode: str) -> tuple[float, int]:
    started = time.perf_counter()
    report = build_site(archive, out, config, full=full, jobs=jobs)
    seconds = time.perf_counter() - started
    if report.mode != mode:
        raise SystemExit(f"expected a {mode} build, got: {report.summary()}")
    return seconds, report.written


def run_child(work: Path, jobs: int | None) -> dict[str, Any]:
    db_path, out, phase = work / "archive.db", work / "site", work / "phase"
    config = SiteConfig()
    extra = [tuple(p) for p in json.loads((work / "extra.json").read_text(encoding="utf-8"))]
    rss_start = maxrss_mb(resource.RUSAGE_SELF)
    with open_archive(db_path) as archive:
        n = archive.count()
        phase.write_text("full")
        full_s, full_written = timed_build(archive, out, config, True, jobs, "full")
        rss_self = maxrss_mb(resource.RUSAGE_SELF)
        rss_children = maxrss_mb(resource.RUSAGE_CHILDREN)  # the reaped workers
        full_files, _ = site_files(out)
        if full_files != full_written:
            raise SystemExit(f"full build wrote {full_written} files, the site has {full_files}")
        phase.write_text("add")
        added = store_posts(archive, extra)
        new_articles = [parse_post(text, name).article for name, text in extra]
        phase.write_text("incremental")
        incr_s, incr_written = timed_build(archive, out, config, False, jobs, "incremental")
        missing = [a.uid for a in new_articles if not (out / _page(a)).is_file()]
        if added != len(extra) or missing:
            raise SystemExit(f"+{len(extra)}: {added} stored as new, pages missing: {missing[:5]}")
        phase.write_text("no-change")
        noop_s, _ = timed_build(archive, out, config, False, jobs, "unchanged")
        phase.write_text("done")
        files, size = site_files(out)
    return {"n": n, "full_s": full_s, "full_files": full_written,
            "rss_start": rss_start, "rss_self": rss_self, "rss_children": rss_children,
            "rss_peak": max(rss_self, rss_children), "add": len(extra),
            "incr_s": incr_s, "incr_files": incr_written, "noop_s": noop_s,
            "site_files": files, "site_mb": size / MB,
            "outlets_added_to": len({a.outlet_slug for a in new_articles})}


def _page(article: Article) -> str:
    return paths.article_path(article.outlet_slug, int(article.published_at.timestamp()),
                              article.file_id)


# -- the driver (parent process) ----------------------------------------------------

def prepare(corpus: Corpus, args: argparse.Namespace, work: Path,
            n: int | None) -> tuple[int, float]:
    """Archive + the new posts in ``work``; returns (N, seconds)."""
    work.mkdir(parents=True)
    db_path = work / "archive.db"
    started = time.perf_counter()
    if args.from_posts is not None:
        n = import_archive(args.from_posts, db_path)
    else:
        assert n is not None
        generate_archive(corpus, db_path, n, args.batch)
    with open_archive(db_path) as archive:
        existing = set(archive.outlet_counts())
    extra = corpus.new_posts(n, args.add, existing)
    (work / "extra.json").write_text(json.dumps(extra, ensure_ascii=False), encoding="utf-8")
    return n, time.perf_counter() - started


def run_size(corpus: Corpus, args: argparse.Namespace, root: Path,
             n: int | None) -> tuple[dict[str, Any], float, dict[str, float]]:
    work = root / f"n{n or 'posts'}"
    n, gen_s = prepare(corpus, args, work, n)
    os.sync()  # the archive's dirty pages are not written back during the builds
    time.sleep(1)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(work)]
    if args.jobs:
        command += ["--jobs", str(args.jobs)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    sampler = TreeSampler(child.pid, work / "phase", args.sample_ms / 1000)
    if args.sample_ms > 0:
        sampler.start()
    stdout, _ = child.communicate()
    sampler.stop.set()
    if sampler.is_alive():
        sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"N={n}: the measuring child failed (exit {child.returncode})")
    result = json.loads(stdout.strip().splitlines()[-1])
    if not args.keep:
        shutil.rmtree(work)
    return result, gen_s, sampler.peaks


def print_header(corpus: Corpus, args: argparse.Namespace) -> None:
    print(f"Python {platform.python_version()} ({platform.python_implementation()}) "
          f"on {platform.system()} {platform.machine()}; CPU count: {os.cpu_count()}; "
          f"SQLite {sqlite3.sqlite_version}; caixun {caixun.__version__}; "
          f"jobs {args.jobs or os.cpu_count()}")
    if args.from_posts is not None:
        print(f"corpus: posts imported from {args.from_posts} with caixun.importer.import_posts; "
              f"+{args.add} from {corpus.module.__file__} --append (existing outlets only)")
    else:
        print(corpus.describe())
        print(f"archive written with store_many in batches of {args.batch} (posts parsed in "
              f"memory with parse_post); +{args.add}: gen_corpus --append posts, existing "
              f"outlets only", flush=True)


ROW = "{:>8} {:>8} {:>10} {:>11} {:>10} {:>11} {:>8} {:>8}"


def print_row(r: dict[str, Any]) -> None:
    print(ROW.format(r["n"], f"{r['full_s']:.2f}", r["full_files"], f"{r['rss_peak']:.0f}",
                     f"{r['incr_s']:.2f}", r["incr_files"], f"{r['noop_s']:.3f}",
                     f"{r['site_mb']:.1f}"), flush=True)


def print_notes(notes: list[tuple[dict[str, Any], float, dict[str, float]]]) -> None:
    print("\nnot part of the figures:")
    for r, gen_s, pss in notes:
        peaks = ", ".join(f"{phase} {mb:.0f}" for phase, mb in pss.items() if phase != "done")
        print(f"  N={r['n']}: archive made in {gen_s:.1f} s; ru_maxrss MB: "
              f"child {r['rss_self']:.0f} (at start {r['rss_start']:.0f}), largest worker {r['rss_children']:.0f}; "
              f"peak summed PSS MB (child + workers) by phase: {peaks or 'n/a'}; "
              f"+{r['add']} went to {r['outlets_added_to']} outlets; "
              f"site: {r['site_files']} files")


def run_profile(corpus: Corpus, args: argparse.Namespace, root: Path) -> None:
    """Full and incremental build of the first size, in this process, jobs=1."""
    n, _ = prepare(corpus, args, root / "profile", args.sizes[0])
    work = root / "profile"
    extra = json.loads((work / "extra.json").read_text(encoding="utf-8"))
    config = SiteConfig()
    with open_archive(work / "archive.db") as archive:
        for label, full in (("full build", True), (f"+{args.add} incremental build", False)):
            if not full:
                store_posts(archive, [tuple(p) for p in extra])
            profiler = cProfile.Profile()
            started = time.perf_counter()
            report = profiler.runcall(build_site, archive, work / "site", config,
                                      full=full, jobs=1)
            print(f"\n== N={n}, {label}, jobs=1, under cProfile: {report.summary()} "
                  f"({time.perf_counter() - started:.1f} s wall)")
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(
                args.profile_top)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--add", type=int, default=100, help="articles added before the rebuild")
    parser.add_argument("--jobs", type=int, default=None, help="build processes (default: cores)")
    parser.add_argument("--from-posts", type=Path, default=None, metavar="DIR",
                        help="import these posts instead of generating (one run)")
    parser.add_argument("--sample-ms", type=float, default=50,
                        help="PSS sampling interval; 0: no sampling")
    parser.add_argument("--batch", type=int, default=1000, help="articles per store_many")
    parser.add_argument("--keep", action="store_true", help="keep the files under /tmp")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile a full and an incremental build of the first size")
    parser.add_argument("--profile-top", type=int, default=35)
    add_corpus_knobs(parser)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_child(args.child, args.jobs)))
        return
    corpus = Corpus(args)
    print_header(corpus, args)
    root = Path(tempfile.mkdtemp(prefix="caixun-build-bench-", dir="/tmp"))
    try:
        if args.profile:
            run_profile(corpus, args, root)
            return
        print(ROW.format("N", "full s", "full files", "peak RSS MB", f"+{args.add} s",
                         "incr files", "no-op s", "site MB"), flush=True)
        notes = []
        for n in [None] if args.from_posts is not None else args.sizes:
            notes.append(run_size(corpus, args, root, n))
            print_row(notes[-1][0])
        print_notes(notes)
    finally:
        if args.keep:
            print(f"\nfiles kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: caixun and Hugo on the same generated corpus, side by side, in one run.

Run it by hand from the repository root (Hugo from Debian: ``apt-get install hugo time``)::

    python benchmarks/versus_hugo.py --sizes 10000 100000
    MATERIAL=../shared/corpus/finews-posts/ python benchmarks/versus_hugo.py --sizes 10000

For each N it generates, with the shared harness's generator
(``../shared/bench/gen_corpus.py``, the knobs of ``run_baselines.sh``: seed 42,
365 days, 2,000 outlets, Zipf 1.1, ``$MATERIAL`` as the text material), N
posts and ``--add`` (100) newer ones, in the Jekyll layout for caixun and the
Hugo layout for Hugo (the same bytes), under a temporary directory (deleted
unless ``--keep``). Then, each command a fresh process timed from outside
(wall seconds; peak RSS from ``/usr/bin/time``), in this order:

* caixun: ``caixun import _posts/`` into a new archive (first import),
  ``caixun build`` (full), the same import again (no file changed), then the
  ``--add`` posts copied in and ``caixun import`` + ``caixun build``
  (incremental; the files it wrote, from its summary line), and the same
  step again as one command, ``caixun import --build``, from the same state,
  and once more picked up by a running ``caixun run`` (``import.paths``; the
  daemon in this process, the import that stores the posts and the build after
  it timed inside it: see ``daemon_step``), compared with the same round's Hugo
  rebuild;
* Hugo: ``hugo`` (full) into a new directory, then the ``--add`` posts copied
  in and ``hugo`` again (Hugo has no incremental build: a full one).

It prints one table per N with the ratios the speed issue aims at (full build
≤ 0.5 × Hugo's, +add re-import and rebuild ≤ 0.25 × Hugo's rebuild, first
import ≤ 1.0 × Hugo's full build, peak RSS ≤ 300 MB at 100,000).

``--repeat K`` times the full builds and the +add steps K times each, caixun's
and Hugo's in turn (A B A B …, the state before each caixun step restored
untimed: the site removed before a full build; the archive and the site as
they were before the +add posts came), and prints the medians, with each
ratio the median of the K pairs' ratios: on this VM Hugo's own time moves by
a third from run to run, so a ratio of one pair of runs says little.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CAIXUN_SHARED", REPO.parent / "shared"))
BENCH = SHARED / "bench"
CAIXUN = [sys.executable, "-m", "caixun.cli"]


@dataclass
class Timed:
    seconds: float
    peak_mb: float
    output: str


def timed(command: list[str], cwd: Path) -> Timed:
    """Run ``command`` once; wall seconds, peak RSS (MB) and what it printed."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as stats:
        start = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", stats.name, *command],
                              cwd=cwd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n"
                             f"{done.stdout}{done.stderr}")
        peak = float(stats.read().strip().splitlines()[-1]) / 1024
    return Timed(seconds, peak, done.stdout + done.stderr)


def generate(out: Path, n: int, layout: str, append: int = 0) -> None:
    command = [sys.executable, str(BENCH / "gen_corpus.py"), "--out", str(out), "--n", str(n),
               "--seed", "42", "--days", "365", "--categories", "2000", "--zipf", "1.1",
               "--layout", layout]
    if os.environ.get("MATERIAL"):
        command += ["--material", os.environ["MATERIAL"]]
    if append:
        command += ["--append", str(append)]
    subprocess.run(command, check=True, capture_output=True)


def copy_into(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        shutil.copy2(path, target / path.name)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


@dataclass
class Paired:
    """K timings of a caixun step and of the Hugo run it is compared with, in turn."""

    caixun: list[float]
    hugo: list[float]

    def ratio(self) -> float:
        return median([ours / theirs for ours, theirs in zip(self.caixun, self.hugo)])


def save_state(work: Path, names: list[str], to: Path) -> None:
    for name in names:
        if (work / name).is_dir():
            shutil.copytree(work / name, to / name, symlinks=True)
        elif (work / name).exists():
            shutil.copy2(work / name, to / name)


def restore_state(saved: Path, work: Path, names: list[str]) -> None:
    for name in names:
        if (work / name).is_dir():
            shutil.rmtree(work / name)
        else:
            (work / name).unlink(missing_ok=True)
        if (saved / name).is_dir():
            shutil.copytree(saved / name, work / name, symlinks=True)
        elif (saved / name).exists():
            shutil.copy2(saved / name, work / name)


def daemon_step(archive: Path, site: Path, posts: Path, added: Path) -> tuple[float, float]:
    """``added``'s posts copied into ``posts`` while ``caixun run`` (its daemon, in this
    process, not serving, ``import.paths`` = ``posts``, ``import.every`` 1 s) runs on
    ``archive``: the import that stored them and the build after it, timed inside the
    daemon (wall seconds of each call), once its first look and its first build are done."""
    import asyncio

    from caixun import run
    from caixun.fetch import FetchSettings
    from caixun.publish.site import SiteConfig

    calls: list[tuple[str, float, Any]] = []

    def timing(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = real(*args, **kwargs)
            calls.append((name, time.perf_counter() - start, result))
            return result
        return timed_call

    async def step() -> tuple[float, float]:
        options = run.RunOptions(archive_path=archive, out=site, site=SiteConfig(),
                                 fetch=FetchSettings(), serve=False, imports=(posts,),
                                 import_every=1.0)
        stop = asyncio.Event()
        daemon = asyncio.create_task(run.run_daemon(options, [], lambda line: None, stop))
        try:
            while not {"import", "build"} <= {name for name, _, _ in calls}:
                await asyncio.sleep(0.01)
            seen = len(calls)
            copy_into(added, posts)
            while True:
                later = calls[seen:]
                stored = [i for i, (name, _, result) in enumerate(later)
                          if name == "import" and result.counts["new"]]
                built = [s for name, s, _ in later[stored[0] + 1:] if name == "build"] \
                    if stored else []
                if built:
                    return later[stored[0]][1], built[0]
                await asyncio.sleep(0.01)
        finally:
            stop.set()
            await daemon

    real_import, real_build = run._import, run._build
    run._import = timing("import", real_import)
    run._build = timing("build", real_build)
    try:
        return asyncio.run(step())
    finally:
        run._import, run._build = real_import, real_build


def run_both(work: Path, add: int, repeat: int) -> tuple[dict[str, Timed | int], dict[str, Timed],
                                                         dict[str, Paired]]:
    """caixun's steps and Hugo's builds, the builds and the +add steps ``repeat`` times in turn."""
    posts = work / "jekyll" / "_posts"
    archive, site = work / "caixun.db", work / "site"
    base = [*CAIXUN, "--archive", str(archive)]
    source, out = work / "hugo-src", work / "hugo-out"
    shutil.copytree(BENCH / "hugo_site", source)
    shutil.copytree(work / "hugo" / "content", source / "content", dirs_exist_ok=True)
    hugo_build = ["hugo", "--quiet", "-s", str(source), "-d", str(out)]

    first = timed([*base, "-q", "import", str(posts)], work)
    full = Paired([], [])
    for _ in range(repeat):
        shutil.rmtree(site, ignore_errors=True)
        mine_full = timed([*base, "build", "--out", str(site)], work)
        shutil.rmtree(out, ignore_errors=True)
        hugo_full = timed(hugo_build, work)
        full.caixun.append(mine_full.seconds)
        full.hugo.append(hugo_full.seconds)
    again = timed([*base, "-q", "import", str(posts)], work)

    state = ["caixun.db", "caixun.db-wal", "caixun.db-shm", "site"]
    saved = work / "saved"
    saved.mkdir()
    save_state(work, state, saved)
    copy_into(work / "jekyll-extra" / "_posts", posts)
    shutil.copytree(work / "hugo-extra" / "content", source / "content", dirs_exist_ok=True)
    more, one = Paired([], []), Paired([], [])
    built_alone: list[float] = []
    for round_ in range(repeat):
        if round_:
            restore_state(saved, work, state)
        mine_more = timed([*base, "-q", "import", str(posts)], work)
        incremental = timed([*base, "build", "--out", str(site)], work)
        hugo_rebuild = timed(hugo_build, work)
        more.caixun.append(mine_more.seconds + incremental.seconds)
        more.hugo.append(hugo_rebuild.seconds)
        built_alone.append(incremental.seconds)
        restore_state(saved, work, state)  # the same step as one command
        one.caixun.append(timed([*base, "-q", "import", str(posts), "--build", "--out",
                                 str(site)], work).seconds)
        one.hugo.append(hugo_rebuild.seconds)
    daemon = Paired([], [])  # the same step picked up by a running caixun run
    extra = work / "jekyll-extra" / "_posts"
    for round_ in range(repeat):
        restore_state(saved, work, state)
        for post in extra.iterdir():
            (posts / post.name).unlink()
        stored, built = daemon_step(archive, site, posts, extra)
        daemon.caixun.append(stored + built)
        daemon.hugo.append(more.hugo[round_])
    written = re.search(r"incremental build: (\d+) files written", incremental.output)
    mine: dict[str, Timed | int] = {
        "first import": first, "full build": mine_full, "re-import, unchanged": again,
        f"+{add}: re-import": mine_more,
        f"+{add}: incremental build": Timed(median(built_alone), incremental.peak_mb, ""),
        "files written": int(written.group(1)) if written else -1}
    hugo = {"full build": Timed(median(full.hugo), hugo_full.peak_mb, ""),
            "rebuild": Timed(median(more.hugo), hugo_rebuild.peak_mb, "")}
    return mine, hugo, {"full build": full, "+add": more, "+add one": one, "+add run": daemon}


def report(n: int, add: int, repeat: int, mine: dict[str, Timed | int],
           hugo: dict[str, Timed], paired: dict[str, Paired]) -> None:
    def t(key: str) -> Timed:
        value = mine[key]
        assert isinstance(value, Timed)
        return value

    full, more, one, daemon = (paired["full build"], paired["+add"], paired["+add one"],
                               paired["+add run"])
    rows = [
        ("first import", t("first import").seconds, hugo["full build"].seconds,
         t("first import").seconds / hugo["full build"].seconds, "≤ 1.0"),
        ("full build", median(full.caixun), median(full.hugo), full.ratio(), "≤ 0.5"),
        ("re-import, no change", t("re-import, unchanged").seconds, None, None, "≤ 1 s"),
        (f"+{add}: re-import + build", median(more.caixun), median(more.hugo), more.ratio(),
         "≤ 0.25"),
        (f"+{add}: import --build", median(one.caixun), median(one.hugo), one.ratio(),
         "≤ 0.25"),
        (f"+{add}: in caixun run", median(daemon.caixun), median(daemon.hugo), daemon.ratio(),
         "≤ 0.25"),
        (f"+{add}: the build alone", t(f"+{add}: incremental build").seconds, None, None,
         "≤ 1 s at 100,000"),
    ]
    runs = f", medians of {repeat} runs in turn" if repeat > 1 else ""
    print(f"\nN = {n:,} posts ({os.environ.get('MATERIAL') or 'default material'}), "
          f"{os.cpu_count()} cores{runs}")
    print(f"  {'work':<28} {'caixun s':>9} {'Hugo s':>8} {'ratio':>6}  aim")
    for name, seconds, theirs, ratio, aim in rows:
        shown = f"{ratio:.2f}" if ratio is not None else ""
        other = f"{theirs:.2f}" if theirs else ""
        print(f"  {name:<28} {seconds:>9.2f} {other:>8} {shown:>6}  {aim}")
    if repeat > 1:
        for name, pair in (("full build", full), (f"+{add}", more),
                           (f"+{add} import --build", one), (f"+{add} in caixun run", daemon)):
            spread = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(pair.caixun, pair.hugo))
            print(f"  {name}, each pair (caixun/Hugo s): {spread}")
    peak = max(v.peak_mb for v in mine.values() if isinstance(v, Timed))
    print(f"  files written by the +{add} incremental build: {mine['files written']}")
    print(f"  peak RSS: caixun {peak:.0f} MB (largest process of any step), "
          f"Hugo {max(v.peak_mb for v in hugo.values()):.0f} MB")
    print(f"  first import: {n / t('first import').seconds:,.0f} posts/s")


def compile_caixun() -> None:
    """Byte-compile caixun's modules, as installing it does.

    With PYTHONDONTWRITEBYTECODE set (some containers set it) and an editable
    install, every command would compile caixun from source again: about
    50 ms a command that no installed caixun pays.
    """
    import caixun

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(caixun.__file__).parent)],
                   check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000])
    parser.add_argument("--add", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--repeat", type=int, default=1,
                        help="time the builds and the +add steps this many times, in turn")
    args = parser.parse_args()
    if shutil.which("hugo") is None or not Path("/usr/bin/time").exists():
        raise SystemExit("needs hugo and /usr/bin/time: apt-get install hugo time")
    compile_caixun()
    for n in args.sizes:
        work = Path(tempfile.mkdtemp(prefix=f"caixun-vs-hugo-{n}-"))
        try:
            for layout in ("jekyll", "hugo"):
                generate(work / layout, n, layout)
                generate(work / f"{layout}-extra", n, layout, append=args.add)
            mine, hugo, paired = run_both(work, args.add, max(1, args.repeat))
            report(n, args.add, max(1, args.repeat), mine, hugo, paired)
        finally:
            if args.keep:
                print(f"  kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

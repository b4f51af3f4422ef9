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
  (incremental; the files it wrote, from its summary line);
* Hugo: ``hugo`` (full) into a new directory, then the ``--add`` posts copied
  in and ``hugo`` again (Hugo has no incremental build: a full one).

It prints one table per N with the ratios the speed issue aims at (full build
≤ 0.5 × Hugo's, +add re-import and rebuild ≤ 0.25 × Hugo's rebuild, first
import ≤ 1.0 × Hugo's full build, peak RSS ≤ 300 MB at 100,000).
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


def run_caixun(work: Path, add: int) -> dict[str, Timed | int]:
    posts = work / "jekyll" / "_posts"
    archive, site = work / "caixun.db", work / "site"
    base = [*CAIXUN, "--archive", str(archive)]
    first = timed([*base, "-q", "import", str(posts)], work)
    full = timed([*base, "build", "--out", str(site)], work)
    again = timed([*base, "-q", "import", str(posts)], work)
    copy_into(work / "jekyll-extra" / "_posts", posts)
    more = timed([*base, "-q", "import", str(posts)], work)
    incremental = timed([*base, "build", "--out", str(site)], work)
    written = re.search(r"incremental build: (\d+) files written", incremental.output)
    return {"first import": first, "full build": full, "re-import, unchanged": again,
            f"+{add}: re-import": more, f"+{add}: incremental build": incremental,
            "files written": int(written.group(1)) if written else -1}


def run_hugo(work: Path) -> dict[str, Timed]:
    source, out = work / "hugo-src", work / "hugo-out"
    shutil.copytree(BENCH / "hugo_site", source)
    shutil.copytree(work / "hugo" / "content", source / "content", dirs_exist_ok=True)
    full = timed(["hugo", "--quiet", "-s", str(source), "-d", str(out)], work)
    shutil.copytree(work / "hugo-extra" / "content", source / "content", dirs_exist_ok=True)
    rebuild = timed(["hugo", "--quiet", "-s", str(source), "-d", str(out)], work)
    return {"full build": full, "rebuild": rebuild}


def report(n: int, add: int, mine: dict[str, Timed | int], hugo: dict[str, Timed]) -> None:
    def t(key: str) -> Timed:
        value = mine[key]
        assert isinstance(value, Timed)
        return value

    rebuild = t(f"+{add}: re-import").seconds + t(f"+{add}: incremental build").seconds
    rows = [
        ("first import", t("first import").seconds, hugo["full build"].seconds, "≤ 1.0"),
        ("full build", t("full build").seconds, hugo["full build"].seconds, "≤ 0.5"),
        ("re-import, no change", t("re-import, unchanged").seconds, None, "≤ 1 s"),
        (f"+{add}: re-import + build", rebuild, hugo["rebuild"].seconds, "≤ 0.25"),
        (f"+{add}: the build alone", t(f"+{add}: incremental build").seconds, None,
         "≤ 1 s at 100,000"),
    ]
    print(f"\nN = {n:,} posts ({os.environ.get('MATERIAL') or 'default material'}), "
          f"{os.cpu_count()} cores")
    print(f"  {'work':<28} {'caixun s':>9} {'Hugo s':>8} {'ratio':>6}  aim")
    for name, seconds, theirs, aim in rows:
        ratio = f"{seconds / theirs:.2f}" if theirs else ""
        other = f"{theirs:.2f}" if theirs else ""
        print(f"  {name:<28} {seconds:>9.2f} {other:>8} {ratio:>6}  {aim}")
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
            mine = run_caixun(work, args.add)
            hugo = run_hugo(work)
            report(n, args.add, mine, hugo)
        finally:
            if args.keep:
                print(f"  kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

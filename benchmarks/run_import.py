"""Benchmark: new posts picked up by a running ``caixun run`` (setting ``import.paths``).

Run it by hand from the repository root (``TMPDIR=/dev/shm`` for tmpfs)::

    python benchmarks/run_import.py                 # 10,000 posts, +100, 5 times
    python benchmarks/run_import.py --n 100000 --repeat 3

It generates N posts and ``--add`` (100) newer ones with the shared harness's
generator (the knobs of ``versus_hugo.py``), imports the N into an archive
and builds the site once, then imports them again (their times trusted from
then on, as an old tree's are; state saved). Then, ``--repeat`` times, from that
state: ``run_daemon`` (the daemon of ``caixun run``, in this process, not
serving, ``import.paths`` the posts' tree, ``import.every`` 1 s) starts, its
first look finds nothing new, the ``--add`` posts are copied into the tree,
and the import that stores them and the build after it are timed inside the
daemon (wall seconds of each call). Beside it, from the same state, ``caixun
import --build`` of the same posts as one command (a fresh process, timed
from outside), and, when ``hugo`` is installed, Hugo's rebuild of the N + add
posts (the same bytes, in its layout; Hugo has no incremental build). Medians,
minimum and maximum are printed, and each ratio to Hugo as the median of the
pairs' ratios.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from versus_hugo import (BENCH, CAIXUN, compile_caixun, copy_into, daemon_step,  # noqa: E402
                         generate, restore_state, save_state, timed)

STATE = ["caixun.db", "site"]


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--add", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    compile_caixun()
    with tempfile.TemporaryDirectory(prefix="caixun-run-import-") as tmp:
        root = Path(tmp)
        generate(root / "base", args.n, "jekyll")
        generate(root / "more", args.n, "jekyll", append=args.add)
        work, saved = root / "work", root / "saved"
        shutil.copytree(root / "base", work)
        saved.mkdir()
        timed([*CAIXUN, "-q", "import", "--build", "_posts"], work)
        # Again, now that the posts are old enough for their times to be trusted
        # (those written less than 2 s before an import are digested next time).
        timed([*CAIXUN, "-q", "import", "_posts"], work)
        save_state(work, STATE, saved)
        hugo = _hugo_rebuild(root, args.n, args.add)
        daemon_imports, daemon_builds, commands, hugos = [], [], [], []
        for _ in range(args.repeat):
            restore_state(saved, work, STATE)
            stored, built = daemon_step(work / "caixun.db", work / "site", work / "_posts",
                                        root / "more" / "_posts")
            daemon_imports.append(stored)
            daemon_builds.append(built)
            for post in (root / "more" / "_posts").iterdir():
                (work / "_posts" / post.name).unlink()
            restore_state(saved, work, STATE)
            copy_into(root / "more" / "_posts", work / "_posts")
            commands.append(timed([*CAIXUN, "-q", "import", "--build", "_posts"], work).seconds)
            for post in (root / "more" / "_posts").iterdir():
                (work / "_posts" / post.name).unlink()
            if hugo is not None:
                hugos.append(hugo())
    sums = [a + b for a, b in zip(daemon_imports, daemon_builds)]
    print(f"+{args.add} posts among {args.n:,}, {args.repeat} times:")
    print(f"  caixun run (import.paths): import {_spread(daemon_imports)}")
    print(f"                             build after it {_spread(daemon_builds)}")
    print(f"                             both {_spread(sums)}")
    print(f"  caixun import --build (one command, a fresh process): {_spread(commands)}")
    if hugos:
        print(f"  Hugo's rebuild: {_spread(hugos)}")
        for name, values in (("caixun run", sums), ("caixun import --build", commands)):
            ratio = statistics.median(ours / theirs for ours, theirs in zip(values, hugos))
            print(f"  {name} / Hugo: {ratio:.2f} x")


def _hugo_rebuild(root: Path, n: int, add: int) -> Callable[[], float] | None:
    """Hugo's full build of the n + add posts (its rebuild), timed; None without hugo."""
    if shutil.which("hugo") is None:
        print("  (hugo not installed: no Hugo figures)")
        return None
    generate(root / "hugo", n, "hugo")
    generate(root / "hugo-more", n, "hugo", append=add)
    source, out = root / "hugo-src", root / "hugo-out"
    shutil.copytree(BENCH / "hugo_site", source)
    for part in ("hugo", "hugo-more"):
        shutil.copytree(root / part / "content", source / "content", dirs_exist_ok=True)

    def rebuild() -> float:
        shutil.rmtree(out, ignore_errors=True)
        return timed(["hugo", "--quiet", "-s", str(source), "-d", str(out)], root).seconds
    rebuild()  # once untimed, as the site it rebuilds was built before
    return rebuild


if __name__ == "__main__":
    main()

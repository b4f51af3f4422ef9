"""Benchmark: ``caixun run`` for a long while, news arriving all the time: does its memory stay flat?

Run it by hand from the repository root::

    python benchmarks/soak.py                      # 10 minutes, 2 new items a second
    python benchmarks/soak.py --minutes 60 --rate 5
    python benchmarks/soak.py --role fetch         # a fetcher: poll and store only

It starts the tests' replay server (``tests/newsserver.py``) with an East Money
rolling list that grows by ``--rate`` items a second, a webhook receiver on
127.0.0.1, and ``caixun run`` (fetch, store, rebuild, notify and serve) in a
temporary directory, the source polled every ``--every`` seconds and one
watch matching most items. Each new item is made of two real rolling posts of
the corpus (the paragraphs of one, then of another, and a serial number), so
the stories see copies and near-copies all the time, the worst case. Every
``--sample`` seconds the benchmark asks the served site for its home page and
the first page it links to, then reads the daemon's resident memory, open files and
threads from ``/proc`` and the number of stored articles from the archive.

Printed: one line a sample (minutes, articles, archive MB, RSS MB, files,
threads), then for each slice of 2,000 articles stored the lowest sample (the
size between builds) and the highest (a sample taken during a build): a leak
shows as lowest samples that keep growing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import newsserver as ns  # type: ignore[import-not-found]  # noqa: E402
from fetch import LIST_PATH, TEXT_PATH  # noqa: E402  (beside this file)
from watch_latency import Receiver, run_config  # noqa: E402

BEIJING = dt.timezone(dt.timedelta(hours=8))
LISTED = 50  # items the rolling list shows, newest first


class Feed:
    """A rolling list that grows while the benchmark runs, and the texts of its items."""

    def __init__(self, seed: int) -> None:
        records = [r for r in ns.rolling_records()["records"] if r["title"]]
        texts = ns.news_texts(include_media=False)
        self.posts = [(r, texts[r["infoCode"]]["content"]) for r in records]
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.listed: list[dict[str, Any]] = []
        self.texts: dict[str, dict[str, str]] = {}
        self.serial = 0

    def add(self) -> None:
        (first, body), (_, more) = self.random.sample(self.posts, 2)
        self.serial += 1
        now = dt.datetime.now(BEIJING)
        item_id = now.strftime("%Y%m%d") + f"{9_000_000_000 + self.serial:010d}"
        record = {**first, "id": item_id, "infoCode": f"NW{item_id}",
                  "title": f"{first['title']}（{self.serial}）",
                  "showtime": now.strftime("%Y-%m-%d %H:%M:%S"),
                  "url_w": f"http://finance.eastmoney.com/a/{item_id}.html"}
        with self.lock:
            self.texts[record["infoCode"]] = {
                "content": f"{body}{more}<p>第 {self.serial} 条。</p>"}
            self.listed.insert(0, record)
            del self.listed[LISTED:]

    def rolling(self, seen: Any) -> dict[str, Any]:
        with self.lock:
            return {"records": list(self.listed)}

    def text(self, seen: Any) -> Any:
        with self.lock:
            reply = self.texts.get(seen.query.get("id", ""))
        return reply if reply is not None else ns.Reply("unknown id", status=404)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _proc(pid: int) -> tuple[float, int, int]:
    """Resident MB, open files and threads of process ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))


def _stored(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM articles").fetchone()[0])
    except sqlite3.Error:
        return 0


def _visit(port: int) -> None:
    """The home page and the first page its main part links to, as a reader would."""
    base = f"http://127.0.0.1:{port}/"
    try:
        home = urllib.request.urlopen(base, timeout=10).read().decode("utf-8")
        start = home.find('href="/', home.find("<main>"))
        if start > 0:
            path = home[start + 6:home.find('"', start + 6)]
            urllib.request.urlopen(base + path.lstrip("/"), timeout=10).read()
    except OSError as exc:
        print(f"  site not answering: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=2.0, help="new items a second")
    parser.add_argument("--every", type=float, default=1.0, help="the source's poll interval")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--role", choices=("all", "fetch"), default="all",
                        help="fetch: caixun run --role fetch (poll and store only; no site)")
    args = parser.parse_args()
    # Stopped with SIGTERM, stop the daemon too (the finally below), not leave it running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    feed = Feed(args.seed)
    for _ in range(LISTED):
        feed.add()
    port = _free_port()
    with ns.NewsServer() as server, tempfile.TemporaryDirectory() as tmp:
        server.route(LIST_PATH, feed.rolling)
        server.route(TEXT_PATH, feed.text)
        Path(tmp, "caixun.toml").write_text(run_config(server, args.every, Receiver().url),
                                            encoding="utf-8")
        log = Path(tmp, "run.log")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "caixun.cli", "run", "--role", args.role, "--port", str(port)],
            cwd=tmp,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
            stdout=subprocess.DEVNULL, stderr=log.open("w", encoding="utf-8"))
        db = Path(tmp, "caixun.db")
        samples: list[tuple[float, int, float, int, int]] = []
        start = time.monotonic()
        end = start + args.minutes * 60
        next_sample = start + args.sample
        added = 0.0
        print(" min  articles  archive MB  RSS MB  files  threads")
        try:
            while time.monotonic() < end and daemon.poll() is None:
                time.sleep(0.05)
                due = (time.monotonic() - start) * args.rate
                while added < due:
                    feed.add()
                    added += 1
                if time.monotonic() >= next_sample:
                    next_sample += args.sample
                    if args.role == "all":
                        _visit(port)
                    rss, files, threads = _proc(daemon.pid)
                    minutes = (time.monotonic() - start) / 60
                    samples.append((minutes, _stored(db), rss, files, threads))
                    size = sum(f.stat().st_size for f in Path(tmp).glob("caixun.db*")) / 2**20
                    print(f"{minutes:4.1f}  {samples[-1][1]:8d}  {size:10.1f}  {rss:6.1f}  {files:5d}  "
                          f"{threads:7d}", flush=True)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
        if daemon.returncode not in (0, -signal.SIGTERM):
            print(f"caixun run ended with {daemon.returncode}; its log:")
            print(log.read_text(encoding="utf-8")[-3000:])
        _summary(samples)


def _summary(samples: list[tuple[float, int, float, int, int]], every: int = 2000) -> None:
    """RSS by slices of ``every`` articles: the lowest sample (between builds) and the
    highest (a sample may fall in a build, which holds its pages and lists)."""
    if not samples:
        print("no sample: run longer")
        return
    slices: dict[int, list[float]] = {}
    for _, stored, rss, _, _ in samples:
        slices.setdefault(stored // every, []).append(rss)
    print(f"RSS by {every:,} articles stored: lowest / highest sample")
    for number, values in sorted(slices.items()):
        print(f"  {number * every:>7,}–{(number + 1) * every:<7,} {min(values):6.1f} / {max(values):6.1f} MB")
    first, last = samples[0], samples[-1]
    print(f"files {first[3]} → {last[3]}, threads {first[4]} → {last[4]}")

if __name__ == "__main__":
    main()

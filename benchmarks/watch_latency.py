"""Benchmark: from an item appearing at a source to its webhook call, under ``caixun run``.

Run it by hand from the repository root::

    python benchmarks/watch_latency.py            # 10 items
    python benchmarks/watch_latency.py --items 30 --every 1

It starts the tests' replay server (``tests/newsserver.py``: the East Money
rolling list, 94 items at first), a webhook receiver on 127.0.0.1 that records
when each POST arrives, and ``caixun run --no-serve`` in a temporary directory
with the rolling source polled every ``--every`` seconds and one watch that
matches every article (``stocks`` empty, ``query`` a character every item
holds). After the first notifications, ``--items`` held-back items are added
to the list one at a time, each once the previous one was notified; printed:
seconds from the item's appearance to its webhook call (min, median, p95, max)
and the whole run's log lines about notifications. The latency is bounded below
by the poll interval: an item waits up to ``every`` seconds to be seen.

Measured (2026-12-05, 2 cores, other work running): 10 items, polled every
1 s: min 0.37 s, median 1.00 s, p95 1.64 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import newsserver as ns  # type: ignore[import-not-found]  # noqa: E402
from fetch import CONFIG, LIST_PATH, TEXT_PATH  # noqa: E402  (beside this file)


class Receiver:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.arrived.setdefault(self.headers["Idempotency-Key"], time.monotonic())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def run_config(server: ns.NewsServer, every: float, notify: str) -> str:
    """caixun.toml: the replay server's rolling list polled every ``every`` seconds (as
    benchmarks/fetch.py has it), and one watch matching most items that notifies ``notify``."""
    return CONFIG.format(every=every, list_url=server.url(LIST_PATH),
                         text_url=server.url(TEXT_PATH)) + f"""
[[watch]]
name = "all"
query = "日 OR 月 OR 年 OR 公司 OR 股"
notify = "{notify}"
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=10)
    parser.add_argument("--every", type=float, default=1.0, help="the source's poll interval")
    args = parser.parse_args()
    records = ns.rolling_records()["records"]
    held, listed = records[:args.items], records[args.items:]
    lock = threading.Lock()
    receiver = Receiver()
    with ns.NewsServer() as server, tempfile.TemporaryDirectory() as tmp:
        def rolling(seen: ns.Seen) -> dict[str, object]:
            with lock:
                return {"records": list(listed)}

        server.route(LIST_PATH, rolling)
        server.route(TEXT_PATH, ns.by_query("id", ns.news_texts()))
        Path(tmp, "caixun.toml").write_text(run_config(server, args.every, receiver.url),
                                            encoding="utf-8")
        log = Path(tmp, "run.log")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "caixun.cli", "run", "--no-serve"], cwd=tmp,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
            stdout=subprocess.DEVNULL, stderr=log.open("w", encoding="utf-8"))
        latencies = []
        try:
            deadline = time.monotonic() + 120
            while not receiver.arrived and time.monotonic() < deadline:
                time.sleep(0.05)
            for record in reversed(held):  # oldest first, as news arrives
                key = f"all:em-rolling:{record['id']}"
                with lock:
                    listed.insert(0, record)
                appeared = time.monotonic()
                while key not in receiver.arrived and time.monotonic() < appeared + 60:
                    time.sleep(0.01)
                if key in receiver.arrived:
                    latencies.append(receiver.arrived[key] - appeared)
                else:
                    print(f"{key}: not notified within 60 s")
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
        latencies.sort()
        if latencies:
            p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
            print(f"{len(latencies)} items, source polled every {args.every:g} s: appearance "
                  f"to webhook min {latencies[0]:.2f} s, median "
                  f"{statistics.median(latencies):.2f} s, p95 {p95:.2f} s, "
                  f"max {latencies[-1]:.2f} s")
        lines = [line for line in log.read_text(encoding="utf-8").splitlines()
                 if "notifications" in line]
        print("\n".join(lines[-5:]))


if __name__ == "__main__":
    main()

"""A throwaway PostgreSQL server for the tests: Debian's binaries, a temporary cluster.

``CAIXUN_TEST_POSTGRES`` (a URL whose role may create databases) names a
server to use instead; `.ci/run` starts one with this module and sets it:

    python tests/pgserver.py start DIR   # prints the URL; the cluster lives in DIR
    python tests/pgserver.py stop DIR

The cluster is made by ``initdb`` in a temporary directory (as the ``postgres``
user when run as root, which initdb refuses to be), listens on 127.0.0.1 on a
free port, trusts local connections and skips fsync: it holds test data only.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ENV = "CAIXUN_TEST_POSTGRES"
ROLE = "caixun"


def _bin_dir() -> Path:
    for pattern in ("/usr/lib/postgresql/*/bin",):
        found = sorted(glob.glob(pattern), key=lambda p: int(Path(p).parent.name))
        if found:
            return Path(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL is not installed: `apt-get install postgresql` "
                       f"(or set {ENV} to a server's URL)")


def _as_owner(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(base: Path, durable: bool = False, settings: str = "") -> str:
    """Make and start a cluster in ``base`` (an empty or missing directory); its URL.

    ``durable``: fsync and synchronous commits on, as a server that keeps data
    runs (the benchmarks); the tests' cluster skips them. ``settings``: more
    ``-c name=value`` options.
    """
    bindir = _bin_dir()
    data = base / "data"
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    if not (data / "PG_VERSION").exists():  # else: a cluster kept from before, started again
        subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(data), "-U", ROLE,
                                  "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8",
                                  "--no-sync"]), check=True, stdout=subprocess.DEVNULL)
    port = _free_port()
    options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base} "
               "-c max_connections=200 " + settings)
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-o", options,
                              "-l", str(base / "server.log"), "-w", "start"]),
                   check=True, stdout=subprocess.DEVNULL)
    url = f"postgresql://{ROLE}@127.0.0.1:{port}/postgres"
    (base / "url").write_text(url)
    return url


def stop(base: Path) -> None:
    subprocess.run(_as_owner([str(_bin_dir() / "pg_ctl"), "-D", str(base / "data"),
                              "-m", "immediate", "stop"]), check=False,
                   stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    verb, where = sys.argv[1], Path(sys.argv[2])
    if verb == "start":
        print(start(where))
    else:
        stop(where)

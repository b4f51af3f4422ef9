"""Deploying: a systemd unit for ``caixun run``, a GitHub Actions workflow for Pages.

``caixun init --systemd`` and ``caixun init --github-pages`` write what these
functions return; the functions only make text (and check that what they are
given can be written into it), so the command line stays a thin layer.

The unit runs ``caixun run`` as a dedicated user in the working directory
``init`` was run in, naming the settings file and the archive with absolute
paths, restarts it when it fails and lets it stop cleanly on SIGTERM. Paths are
escaped as systemd reads them (systemd.syntax(7) "Quoting", systemd.service(5)
"Command lines"): specifiers (``%``) and variables (``$``) doubled, quotes and
backslashes escaped inside quoted words; what systemd cannot take (control
characters anywhere; quotes, backslashes or ``$`` in the program's path) is
refused with a ``ConfigError`` rather than written wrong.

The workflow does on GitHub what the old site's did (fetch on a schedule,
publish), but builds the site with caixun and deploys it to GitHub Pages; the
archive, which the old site did not have, is kept between runs in the Actions
cache.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from caixun.archive import is_server_url
from caixun.errors import ConfigError
from caixun.settings import Settings, load_settings

__all__ = ["DEFAULT_USER", "ENV_FILE", "PAGES_CRON", "UNIT_FILE", "WORKFLOW_FILE", "Pages",
           "Service", "archive_argument", "archive_location", "caixun_command", "check_user",
           "deploy_settings", "exec_line", "install_steps", "pages_for", "pages_notes",
           "pages_workflow", "runtime_paths", "service_for", "service_notes", "systemd_unit",
           "writable_dirs"]

UNIT_FILE = Path("caixun.service")
WORKFLOW_FILE = Path(".github", "workflows", "caixun.yml")
DEFAULT_USER = "caixun"
# Where the password of an archive URL goes: read by systemd (as root), never shown.
ENV_FILE = "/etc/caixun/caixun.env"
# Seconds. A stop waits for the build in progress (its worker processes keep
# running, see KillMode=mixed); only after this are they killed, which loses
# nothing committed but redoes that build at the next start.
STOP_TIMEOUT = 120
RESTART_DELAY = 10
# GitHub's cron is UTC. Off the hour: scheduled runs at :00 are the most
# delayed, or dropped, when GitHub is busy (the old site ran at 1, 6, 11 … too).
PAGES_CRON = "7,37 * * * *"

# The unit gets ProtectHome=yes unless caixun or its files live here.
_HOMES = (Path("/home"), Path("/root"), Path("/run/user"))
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# Words systemd reads as they are, quoted or not.
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_/.,:@+=-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Service:
    """What the unit runs, where, and as whom."""

    command: tuple[str, ...]  # what starts caixun: see caixun_command()
    workdir: Path  # absolute: the relative paths of the settings are relative to it
    config: Path | None  # the settings file (absolute), or None for none
    archive: str  # archive_location(): a path (relative to workdir) or a database URL
    out: str  # setting site.out
    user: str = DEFAULT_USER
    reads: tuple[Path, ...] = ()  # where caixun and its Python are installed

    @property
    def name(self) -> str:
        return UNIT_FILE.stem


@dataclass(frozen=True, slots=True)
class Pages:
    """What the workflow installs and where it keeps the archive (paths in the repository)."""

    version: str  # pip installs caixun==version
    python: str  # e.g. "3.11"
    archive: str  # archive_location(): a path (relative to the repository) or a database URL
    out: str  # setting site.out
    config: str | None = None  # the settings file when it is not ./caixun.toml
    cron: str = PAGES_CRON
    imports: tuple[str, ...] = ()  # setting import.paths: posts in the repository
    fetches: bool = True  # [[sources]] to fetch (a site fed by its posts alone has none)


def caixun_command() -> tuple[str, ...]:
    """The command that runs the caixun running now.

    Not ``sys.argv[0]``, which is the console script only when caixun was
    started as ``caixun`` (not under ``python -m``, a test runner or a pipx
    shim), nor ``shutil.which("caixun")``, which may find another install
    first on PATH: the interpreter that imported this caixun runs it again
    with ``-m``. Its path is kept as it is, not resolved: a virtualenv's python
    is a symlink out of the virtualenv, and resolving it would leave it.
    """
    if not sys.executable:
        raise ConfigError("cannot tell which Python runs caixun (sys.executable is empty)")
    return (os.path.abspath(sys.executable), "-m", "caixun.cli")


def runtime_paths() -> tuple[Path, ...]:
    """Where the running caixun and its Python live, which the service must be able to read."""
    import caixun

    python = Path(os.path.abspath(sys.executable or sys.prefix))
    found = [python, python.resolve(), Path(sys.prefix), Path(sys.base_prefix),
             Path(caixun.__file__).resolve().parent]
    return tuple(dict.fromkeys(found))


def archive_location(settings: Settings) -> str:
    """The archive the settings name: [archive] url (a database) if set, else the file."""
    return str(settings.values.get("archive.url") or settings["archive.path"])


def service_for(settings: Settings, config: Path, user: str = DEFAULT_USER) -> Service:
    """The service that runs the caixun running now, here, with the settings of ``config``.

    It reads the posts of ``import.paths`` too: in a home directory, they need
    ProtectHome=read-only as caixun's own files there do.
    """
    imports = tuple(Path.cwd() / path for path in settings["import.paths"])
    return Service(command=caixun_command(), workdir=Path.cwd(),
                   config=Path(os.path.abspath(config)), archive=archive_location(settings),
                   out=settings["site.out"], user=check_user(user),
                   reads=runtime_paths() + imports)


def pages_for(settings: Settings, config: Path) -> Pages:
    """The workflow for these settings (from ``config``), run from here: the repository's root."""
    from caixun import __version__

    relative = os.path.relpath(os.path.abspath(config))
    imports = tuple(settings["import.paths"])
    return Pages(version=__version__, python="{}.{}".format(*sys.version_info[:2]),
                 archive=archive_location(settings), out=settings["site.out"],
                 config=None if relative == "caixun.toml" else relative,
                 imports=imports, fetches=bool(settings.sources) or not imports)


def deploy_settings(config: Path, loaded: Settings, archive_given: bool) -> Settings:
    """The settings of the file a deployment uses: those loaded already when they came from
    it, else read from it; with ``archive_given`` (``--archive`` on the command line), the
    loaded settings' archive over them."""
    if loaded.source is not None and loaded.source.exists() and config.exists() \
            and os.path.samefile(loaded.source, config):
        return loaded
    settings = load_settings(config)
    if not archive_given:
        return settings
    archive = {key: value for key, value in loaded.values.items() if key.startswith("archive.")}
    return replace(settings, values={**settings.values, **archive})


# --- systemd ------------------------------------------------------------------------------


def systemd_unit(service: Service) -> str:
    """The unit file's text (systemd.service(5), systemd.exec(5))."""
    check_user(service.user)
    environment = _secret_free(service.archive) != service.archive
    lines = [
        f"# {service.name}.service: `caixun run` as a service (from `caixun init --systemd`).",
        "# Install: see the commands `caixun init --systemd` printed, or the README (Deploying).",
        "",
        "[Unit]",
        "Description=caixun (财讯): poll the news sources, archive, build and serve the site",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={service.user}",
        f"Group={service.user}",
        f"WorkingDirectory={_unit_path(service.workdir)}",
    ]
    if environment:  # the archive URL's password, as libpq reads it (PGPASSWORD=…)
        lines.append(f"EnvironmentFile={ENV_FILE}")
    lines += [
        f"ExecStart={exec_line(_run_argv(service))}",
        # Logged as caixun, not as the python that runs it.
        f"SyslogIdentifier={service.name}",
        "Restart=on-failure",
        f"RestartSec={RESTART_DELAY}",
        # SIGTERM to caixun alone: it stops between two writes and waits for the
        # build in progress, whose worker processes must live on until then.
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={STOP_TIMEOUT}",
        "",
        "# Hardening: the file system is read-only but for where caixun writes.",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=" + " ".join(_quoted_path(p) for p in writable_dirs(service)),
        f"ProtectHome={'read-only' if _home_paths(service) else 'yes'}",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def archive_argument(service: Service) -> str:
    """The archive as ``--archive`` names it: an absolute path, or the URL without its password."""
    if is_server_url(service.archive):
        return _secret_free(service.archive)
    return os.path.normpath(service.workdir / service.archive)


def writable_dirs(service: Service) -> list[Path]:
    """The working directory, and the archive's and the site's directories outside it."""
    found = [service.workdir]
    if not is_server_url(service.archive):  # SQLite writes its journal beside the file
        found.append(Path(archive_argument(service)).parent)
    found.append(Path(os.path.normpath(service.workdir / service.out)))
    kept: list[Path] = []
    for path in found:
        if not any(path == other or path.is_relative_to(other) for other in kept):
            kept.append(path)
    return kept


def exec_line(argv: tuple[str, ...] | list[str]) -> str:
    """``argv`` as an ExecStart= value that systemd splits back into exactly ``argv``."""
    if not argv or not os.path.isabs(argv[0]):
        raise ConfigError(f"the command to run must be an absolute path, not {argv[:1]}")
    return " ".join(_exec_word(word, first=index == 0) for index, word in enumerate(argv))


def install_steps(service: Service, unit_file: Path) -> list[str]:
    """The commands that install and start the unit, for the user to run."""
    user, name = service.user, f"{service.name}.service"
    steps = [f"sudo useradd --system --user-group --home-dir {_sh(service.workdir)} "
             f"--shell /usr/sbin/nologin {user}"]
    for path in writable_dirs(service):
        if path != service.workdir:
            steps.append(f"sudo mkdir -p {_sh(path)}")
        steps.append(f"sudo chown -R {user}:{user} {_sh(path)}")
    if _secret_free(service.archive) != service.archive:
        steps += [f"sudo install -d -m 700 {_sh(Path(ENV_FILE).parent)}",
                  f"sudo install -m 600 /dev/null {ENV_FILE}  # then write PGPASSWORD=… in it"]
    steps += [f"sudo cp {_sh(unit_file)} /etc/systemd/system/{name}",
              "sudo systemctl daemon-reload",
              f"sudo systemctl enable --now {name}",
              f"systemctl status {name}; journalctl -u {name} -f"]
    return steps


def service_notes(service: Service) -> list[str]:
    """What the user should know before installing the unit (warnings)."""
    notes = []
    if _secret_free(service.archive) != service.archive:
        notes.append("the archive URL's password is not written into the unit (unit files "
                     "and command lines are readable by every user): put PGPASSWORD=… in "
                     f"{ENV_FILE}, which the unit reads")
    homes = _home_paths(service)
    if homes:
        notes.append(f"in a home directory: {', '.join(map(str, homes))}; user {service.user} "
                     "must be able to read them (the unit gets ProtectHome=read-only); caixun "
                     "and its files are simpler elsewhere, e.g. in /opt/caixun and /srv/caixun")
    return notes


def _run_argv(service: Service) -> tuple[str, ...]:
    config = ("--config", str(service.config)) if service.config is not None else ()
    return (*service.command, *config, "--archive", archive_argument(service), "run")


def check_user(user: str) -> str:
    """``user`` if it can be the service's dedicated user, else a ``ConfigError``."""
    if not _USER_NAME.fullmatch(user):
        raise ConfigError(f"{user!r} is not a user name for the service (lower-case letters, "
                          "digits, '_' and '-', at most 32)")
    if user == "root":
        raise ConfigError("the service must not run as root: give it a dedicated user "
                          f"(--user, default {DEFAULT_USER})")
    return user


def _secret_free(archive: str) -> str:
    """An archive URL without its password (in the user part or a ``password=`` parameter)."""
    if not is_server_url(archive):
        return archive
    parts = urlsplit(archive)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}@{hostport}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(key, value) for key, value in query if key != "password"]
    if netloc == parts.netloc and len(kept) == len(query):
        return archive  # unchanged, byte for byte
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(kept)))


def _exec_word(word: str, first: bool) -> str:
    _refuse_control(word)
    # systemd refuses quotes and backslashes in the program's path, and would expand
    # variables in its argv[0] (from which Python finds its virtualenv).
    if first and any(c in word for c in "\"'\\$"):
        raise ConfigError(f"{word!r}: systemd runs no program whose path has a quote, a "
                          "backslash or a '$' in it; install caixun elsewhere")
    word = word.replace("%", "%%")  # specifiers are expanded inside quotes too
    word = word.replace("$", "$$")  # environment variables are expanded at the start
    if _PLAIN_WORD.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unit_path(path: Path) -> str:
    """A path for a setting that takes one path as it is (WorkingDirectory=): unquoted."""
    text = str(path)
    _refuse_control(text)
    if text != text.rstrip() or text.endswith("\\"):
        # systemd strips trailing spaces, and a trailing backslash continues the line.
        raise ConfigError(f"{text!r}: a path that ends in a space or a backslash cannot be "
                          "written into a systemd unit")
    return text.replace("%", "%%")


def _quoted_path(path: Path) -> str:
    """One path of a space-separated list (ReadWritePaths=): quoted, escapes as in C."""
    text = str(path)
    _refuse_control(text)
    return '"' + text.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"') + '"'


def _refuse_control(text: str) -> None:
    if _CONTROL.search(text):
        raise ConfigError(f"{text!r}: a path or argument with control characters (a newline, "
                          "a tab) cannot be written into a systemd unit")


def _home_paths(service: Service) -> list[Path]:
    """Which of the service's paths are in home directories (hidden by ProtectHome=yes)."""
    paths = [*writable_dirs(service), *service.reads]
    if service.config is not None:
        paths.append(service.config)
    return [p for p in dict.fromkeys(paths) if any(p.is_relative_to(home) for home in _HOMES)]


def _sh(path: Path | str) -> str:
    return shlex.quote(str(path))


# --- GitHub Pages -------------------------------------------------------------------------


def pages_workflow(pages: Pages) -> str:
    """The GitHub Actions workflow: fetch, build, keep the archive, publish to Pages."""
    url = is_server_url(pages.archive)  # a database server keeps it: nothing to cache
    env = {"CAIXUN": _yaml(f"caixun=={pages.version}"),
           # A database URL may hold a password: it comes from a secret, not this file.
           "CAIXUN_ARCHIVE": "${{ secrets.CAIXUN_ARCHIVE }}" if url else _yaml(pages.archive),
           "CAIXUN_SITE": _yaml(pages.out)}
    config = ""
    if pages.config is not None:
        env["CAIXUN_CONFIG"] = _yaml(pages.config)
        config = '--config "$CAIXUN_CONFIG" '
    cached = ["          path: |", "            ${{ env.CAIXUN_ARCHIVE }}",
              "            ${{ env.CAIXUN_SITE }}",
              "          key: caixun-${{ github.run_id }}-${{ github.run_attempt }}"]
    lines = [
        "# caixun on GitHub Pages. Written by `caixun init --github-pages`.",
        "# Every half hour: restore the archive the last run kept, fetch one round of",
        "# every source, build the site, keep the archive for the next run, publish.",
        "# Needs: Settings > Pages > Source: GitHub Actions; [site] url in caixun.toml set",
        "# to the Pages address. The Actions cache drops an entry unused for 7 days:",
        "# see caixun's README (Deploying) for what that means and the alternative.",
        "name: caixun",
        "",
        "on:",
        "  schedule:",
        "    # UTC, as every GitHub cron; the pages show [site] timezone whatever the",
        "    # runner's. GitHub may start scheduled runs late when it is busy.",
        f"    - cron: {_yaml(pages.cron)}",
        "  workflow_dispatch:",
        "",
        "permissions:",
        "  contents: read",
        "  pages: write  # publish to Pages",
        "  id-token: write  # which proves the deployment comes from this workflow",
        "",
        "# One run at a time: a run waits for the last to end, and restores what it kept.",
        "concurrency:",
        "  group: caixun",
        "  cancel-in-progress: false",
        "",
        "env:",
        *(f"  {key}: {value}" for key, value in env.items()),
        "",
        "jobs:",
        "  publish:",
        "    runs-on: ubuntu-latest",
        "    timeout-minutes: 30",
        "    environment:",
        "      name: github-pages",
        "      url: ${{ steps.deployment.outputs.page_url }}",
        "    steps:",
        "      - name: Check out caixun.toml (and a theme, if any)",
        "        uses: actions/checkout@v4",
        "      - uses: actions/setup-python@v5",
        "        with:",
        f"          python-version: {_yaml(pages.python)}",
        "      - name: Install caixun",
        '        run: python -m pip install "$CAIXUN"',
    ]
    if not url:
        lines += ["      - name: Restore the archive and the site of the last run",
                  "        uses: actions/cache/restore@v4",
                  "        with:", *cached,
                  "          restore-keys: caixun-"]
    if pages.imports:  # checked out with the repository: only new and changed ones are read
        paths = " ".join(shlex.quote(path) for path in pages.imports)
        lines += ["      - name: Import the posts of import.paths",
                  "        run: " + _yaml(f'caixun {config}--archive "$CAIXUN_ARCHIVE" '
                                          f"import {paths}")]
    if pages.fetches:
        lines += [
            "      - name: Fetch one round of every source",
            "        # A source that failed is reported; the others' news is stored and published.",
            "        continue-on-error: true",
            f'        run: caixun {config}--archive "$CAIXUN_ARCHIVE" fetch']
    lines += [
        "      - name: Build the site",
        f'        run: caixun {config}--archive "$CAIXUN_ARCHIVE" build --out "$CAIXUN_SITE"',
    ]
    if not url:
        # Before publishing, so a failed deployment loses no news; the site too, so
        # the next build is incremental.
        lines += ["      - name: Keep the archive and the site for the next run",
                  "        if: ${{ !cancelled() }}",
                  "        uses: actions/cache/save@v4",
                  "        with:", *cached]
    lines += [
        "      - uses: actions/configure-pages@v5",
        "      - uses: actions/upload-pages-artifact@v3",
        "        with:",
        "          path: ${{ env.CAIXUN_SITE }}",
        "      - id: deployment",
        "        uses: actions/deploy-pages@v4",
    ]
    return "\n".join(lines) + "\n"


def pages_notes(pages: Pages, site_url: str) -> list[str]:
    """What the user should know before committing the workflow (warnings)."""
    notes = []
    if urlsplit(site_url).hostname in ("127.0.0.1", "localhost", "::1"):
        notes.append(f"[site] url is {site_url}: set it in caixun.toml to the Pages address "
                     "(https://OWNER.github.io/REPOSITORY, or your own domain); links, feeds "
                     "and the sitemap use it")
    if pages.config is not None and pages.config.startswith(".."):
        notes.append(f"the settings file {pages.config} is outside this directory: the "
                     "workflow runs in the repository, so it must be in it")
    for key, path in (("archive.path", pages.archive), ("site.out", pages.out)):
        if os.path.isabs(path) and not is_server_url(path):
            notes.append(f"{key} is an absolute path ({path}): on GitHub's runner it must be "
                         "writable; a path relative to the repository is simpler")
    if is_server_url(pages.archive):
        notes.append("the archive is a database: add its URL as the repository secret "
                     "CAIXUN_ARCHIVE (Settings > Secrets and variables > Actions), which the "
                     "workflow reads; caixun.toml is committed, so keep the password out of it")
    return notes


def _yaml(value: str) -> str:
    """A YAML scalar: a JSON string is a valid YAML double-quoted one."""
    return json.dumps(value, ensure_ascii=False)

"""The ``caixun`` command line. The only module that prints or exits.

A command imports only what it uses: ``caixun --version`` and ``--help`` load
click and little else, ``search`` the archive but not the fetcher, the site
builder, the web server or rich. Heavy modules are imported inside the
commands (and under ``TYPE_CHECKING`` for the annotations);
``tests/test_startup.py`` keeps it so.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import (TYPE_CHECKING, Any, Callable, ContextManager, Iterable, Iterator, Sequence,
                    TypeVar)

import click

from caixun import __version__
from caixun.errors import CaixunError

if TYPE_CHECKING:
    from datetime import datetime

    from rich.console import Console
    from rich.progress import Progress, TaskID

    from caixun.archive import Archive
    from caixun.archive.securities import SecurityRow
    from caixun.fetch import FetchSettings
    from caixun.importer import FileOutcome
    from caixun.publish.site import SiteConfig
    from caixun.settings import Settings
    from caixun.sources.base import SourceConfig

T = TypeVar("T")

SERVER_SCHEMES = ("postgresql://", "postgres://")
BAR_DELAY = 1.0  # seconds: a build done sooner shows no progress bar


@dataclass
class AppContext:
    settings: Settings
    quiet: bool

    @cached_property
    def err(self) -> Console:
        """Standard error for rich's progress bars (made, and rich imported, on first use)."""
        from rich.console import Console

        return Console(stderr=True)

    @property
    def archive_location(self) -> str:
        """The archive: [archive] url (a PostgreSQL database) if set, else the SQLite file."""
        return str(self.settings["archive.url"] or self.settings["archive.path"])

    @property
    def archive_name(self) -> str:
        """The archive, for messages (a URL without its password)."""
        if self.settings["archive.url"]:
            from caixun.archive.postgres import describe

            return describe(self.settings["archive.url"])
        return str(self.settings["archive.path"])

    def archive_exists(self) -> bool:
        """Whether there is an archive to read (a server's is opened to find out)."""
        return bool(self.settings["archive.url"]) or Path(self.settings["archive.path"]).is_file()

    def open_archive(self, read_only: bool = False) -> Archive:
        """The archive; ``read_only`` for commands that only read (nothing is created)."""
        from caixun.archive import open_archive

        # An upgrade that rebuilds the index says so first, -q or not: it can take minutes.
        return open_archive(self.archive_location, read_only=read_only,
                            notice=lambda message: click.echo(message, err=True))

    def fetch_settings(self) -> FetchSettings:
        from caixun.fetch import DEFAULT_USER_AGENT, FetchSettings

        values = self.settings
        return FetchSettings(
            connect_timeout=values["fetch.connect_timeout"],
            read_timeout=values["fetch.read_timeout"], retries=values["fetch.retries"],
            per_host=values["fetch.per_host"], min_gap=values["fetch.min_gap"],
            user_agent=values["fetch.user_agent"] or DEFAULT_USER_AGENT,
            total_timeout=values["fetch.total_timeout"], max_bytes=values["fetch.max_bytes"],
            max_decoded_bytes=values["fetch.max_decoded_bytes"],
            max_redirects=values["fetch.max_redirects"], retag_step=values["fetch.retag_step"])

    def source_configs(self, names: Sequence[str] = (), *,
                       none_with_imports: bool = False) -> list[SourceConfig]:
        """The [[sources]] tables (those ``names``); none is an error, unless
        ``none_with_imports`` and import.paths feed the site instead."""
        configs = list(self.settings.sources)
        if not configs and none_with_imports and self.settings["import.paths"]:
            return []
        if not configs:
            raise click.ClickException(
                "no sources configured: add [[sources]] tables to caixun.toml "
                "(`caixun init` writes one with every built-in source)")
        unknown = set(names) - {c.name for c in configs}
        if unknown:
            raise click.ClickException(f"unknown source(s): {', '.join(sorted(unknown))} "
                                       f"(configured: {', '.join(c.name for c in configs)})")
        return [c for c in configs if not names or c.name in names]

    def site_config(self) -> SiteConfig:
        from caixun.publish.site import SiteConfig

        values = self.settings
        return SiteConfig(title=values["site.title"], url=values["site.url"],
                          language=values["site.language"], timezone=values["site.timezone"],
                          per_page=values["site.per_page"], refresh=values["site.refresh"],
                          theme=values["site.theme"], stories=values["site.stories"])

    @property
    def shows_progress(self) -> bool:
        return not self.quiet and _may_be_a_terminal() and self.err.is_terminal

    def progress(self, label: str, total: int | None) -> ContextManager[Progress | None]:
        """A live progress bar, or None (``-q``, or stderr is not a terminal)."""
        if not self.shows_progress:
            return nullcontext()
        return self.progress_bar(label)

    def progress_bar(self, label: str, auto_refresh: bool = True) -> Progress:
        """A progress bar on stderr, not yet started; ``label`` may name ``{task.description}``."""
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeRemainingColumn)

        return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=self.err, transient=True,
                        auto_refresh=auto_refresh)

    # Messages go through click (one unwrapped line each); while a progress
    # bar is live, rich redirects stderr so the bar and the lines don't mix.
    def info(self, message: str) -> None:
        if not self.quiet:
            click.echo(message, err=True)

    def warn(self, message: str) -> None:
        click.echo(f"warning: {message}", err=True)

    def error(self, message: str) -> None:
        click.echo(f"error: {message}", err=True)


class CaixunGroup(click.Group):
    """Turns caixun's errors into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CaixunError as exc:
            raise click.ClickException(str(exc)) from exc
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def archive_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--archive", "archive_path", metavar="PATH|URL",
                        help="Archive: an SQLite file, or a postgresql:// URL "
                             "(default: [archive] url or path, or caixun.db).")(func)


def _archive_overrides(location: str | None) -> dict[str, str | None]:
    """--archive: a URL selects PostgreSQL, a path an SQLite file (and no server)."""
    if location is None:
        return {}
    if location.startswith(SERVER_SCHEMES):  # caixun.archive.is_server_url, without its imports
        return {"archive.url": location}
    return {"archive.path": location, "archive.url": ""}


@click.group(cls=CaixunGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="caixun")
@archive_option
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Settings file (default: ./caixun.toml when it exists).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or summaries.")
@click.pass_context
def main(ctx: click.Context, archive_path: str | None, config_path: Path | None,
         quiet: bool) -> None:
    """caixun (财讯): aggregate, archive and publish Chinese financial news."""
    from caixun.settings import load_settings

    settings = load_settings(config_path, _archive_overrides(archive_path))
    ctx.obj = AppContext(settings, quiet)


@main.command("import")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--strict", is_flag=True,
              help="Exit with status 1 if any file was skipped or repaired.")
@click.option("--jobs", type=click.IntRange(1, 64),
              help="Processes to import with when 1,000 files or more are to be read: this "
                   "one stores, the others read and parse (default: one per idle core).")
@click.option("--build", "then_build", is_flag=True,
              help="Then build the site, as 'caixun build' does, in this process.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="With --build: the output directory (default: setting site.out, else site/).")
@click.pass_obj
def import_command(app: AppContext, paths: tuple[Path, ...], strict: bool,
                   jobs: int | None, then_build: bool, out_dir: Path | None) -> None:
    """Import Jekyll post files (files or directories, recursively).

    Broken but readable posts are repaired, with a warning naming the file;
    unreadable ones are reported and skipped. Importing the same files again
    changes nothing, and a file unchanged since it was imported (same size
    and modification time) is not even read.

    With --build the site is then rebuilt from the archive, as 'caixun build'
    would (skipped or repaired files do not stop it; --strict still exits 1).
    """
    from caixun.importer import import_posts
    from caixun.sources.jekyll import iter_post_paths

    if out_dir is not None and not then_build:
        raise click.UsageError("--out is the output directory of --build: give --build too")
    total = sum(1 for _ in iter_post_paths(paths)) if app.shows_progress else None
    with app.open_archive() as archive:
        with app.progress("importing", total) as bar:
            task = bar.add_task("import", total=total) if bar is not None else None

            def on_outcome(outcome: FileOutcome) -> None:
                _report_outcome(app, outcome)
                if bar is not None and task is not None:
                    bar.advance(task)

            report = import_posts(paths, archive, on_outcome, jobs=jobs)
        app.info(f"imported {report.summary()}")
        if then_build:
            # One process for both: a second command's start (its interpreter, its
            # modules, the archive opened again) was a seventh of a +100 import and build.
            _build_site(app, archive, out_dir, full=False)
    if strict and (report.counts["skipped"] or report.counts["repaired"]):
        raise click.ClickException("--strict: some files were skipped or repaired")


def _report_outcome(app: AppContext, outcome: FileOutcome) -> None:
    if outcome.problem is not None:
        app.error(f"{outcome.path}: {outcome.problem} (skipped)")
    for repair in outcome.repairs:
        app.warn(f"{outcome.path}: {repair}")


@main.group("archive")
def archive_group() -> None:
    """Work on whole archives: copy one into another (SQLite and PostgreSQL)."""


@archive_group.command("copy")
@click.argument("source", metavar="SOURCE")
@click.argument("target", metavar="TARGET")
@click.pass_obj
def archive_copy(app: AppContext, source: str, target: str) -> None:
    """Copy the archive SOURCE into the new, empty archive TARGET.

    Each is an SQLite file or a postgresql:// URL, either way round: every
    article, version, alias, story, tag, watch and the build state arrive
    with their ids, and TARGET builds its own search index. All or nothing.
    """
    from caixun.archive import open_archive
    from caixun.archive.copy import copy_archive, rows_to_copy

    def notice(message: str) -> None:
        click.echo(message, err=True)

    with open_archive(source, read_only=True) as src, \
            open_archive(target, notice=notice) as dst:
        with app.progress("copying", None) as bar:
            task = bar.add_task("copying", total=rows_to_copy(src)) if bar is not None else None
            copied = copy_archive(src, dst, None if bar is None or task is None
                                  else lambda n: bar.advance(task, n))
        app.info(f"copied {copied:,} rows ({dst.count():,} articles) from {src.path} "
                 f"to {dst.path}")


@main.group("export")
def export_group() -> None:
    """Write the archive out: Jekyll posts or JSON Lines."""


@export_group.command("jekyll")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--sanitize", is_flag=True,
              help="Write bodies sanitized, as the site shows them, not as they were read.")
@click.pass_obj
def export_jekyll(app: AppContext, directory: Path, sanitize: bool) -> None:
    """Write one Jekyll post per article into DIRECTORY, in the old site's format.

    Imported posts and legacy East Money items get their bodies as they were
    read (byte for byte) unless --sanitize.
    """
    from caixun.publish.jekyll import write_posts

    base_url = str(app.settings["jekyll.base_url"])
    with app.open_archive(read_only=True) as archive:
        _refuse_post_clashes(archive)
        articles = _with_progress(app, "exporting", archive.count(), archive.iter_articles())
        seen: dict[str, str] = {}
        for article, path in write_posts(articles, directory, base_url, sanitize=sanitize):
            if path.name in seen:
                app.warn(f"{path}: {article.uid} has the same file name as {seen[path.name]}; "
                         "the later one was kept")
            seen[path.name] = article.uid
    app.info(f"wrote {len(seen)} posts to {directory}")


@export_group.command("jsonl")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.pass_obj
def export_jsonl(app: AppContext, file: str) -> None:
    """Write one JSON object per article to FILE ('-' for standard output).

    Each carries its story, the original it copies, its other uids and the
    codes of the securities it is about (stocks).
    """
    from caixun.publish.jsonl import write_jsonl, write_jsonl_file

    with app.open_archive(read_only=True) as archive:
        articles = _with_progress(app, "exporting", archive.count(),
                                  archive.iter_articles_linked())
        if file == "-":
            written = 0
            for _ in write_jsonl(articles, sys.stdout):
                written += 1
        else:  # FILE appears whole at the end, or stays as it was (full disk…)
            written = write_jsonl_file(articles, Path(file))
    app.info(f"wrote {written} articles to {'standard output' if file == '-' else file}")


@main.command("build")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (default: setting site.out, else site/).")
@click.option("--full", is_flag=True, help="Rebuild every page (using all cores).")
@click.pass_obj
def build_command(app: AppContext, out_dir: Path | None, full: bool) -> None:
    """Render the archive to a static site, rebuilding only what changed.

    The first build of a directory, a change of settings or templates, and
    --full render every page; otherwise only the pages that the archive's
    changes since the last build affect. Files whose bytes are unchanged are
    not rewritten.

    A build that runs for more than a second shows a progress bar on a
    terminal (not with -q).
    """
    with app.open_archive() as archive:
        _build_site(app, archive, out_dir, full)


def _build_site(app: AppContext, archive: Archive, out_dir: Path | None, full: bool) -> None:
    """``caixun build`` of ``archive`` into ``out_dir`` (default: setting site.out)."""
    from caixun.publish.site import build_site

    out = out_dir or Path(app.settings["site.out"])
    with _build_progress(app) as progress:
        archive.use_watches(app.settings.watches)  # their feeds follow the settings
        report = build_site(archive, out, app.site_config(), full=full, progress=progress)
    app.info(f"{report.summary()} → {out}")


def _may_be_a_terminal() -> bool:
    """False when rich would surely not take stderr for a terminal: asked without
    importing rich (0.09 s of a build into a pipe or a log), by rich's own rules."""
    if os.environ.get("TTY_COMPATIBLE") in ("0", "1"):
        return os.environ["TTY_COMPATIBLE"] == "1"
    if os.environ.get("FORCE_COLOR") is not None:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stream, or a closed one
        return False


class _LateBar:
    """The build's progress callback: a bar on stderr once the build has run ``delay`` seconds.

    A short build shows nothing (and imports no rich). The bar is drawn when
    the build reports (a new phase at once, progress at most ten times a
    second), with no refresh thread of its own: the build forks worker
    processes, which must not inherit a thread that holds stderr's lock.
    """

    def __init__(self, app: AppContext, delay: float) -> None:
        self._app = app
        self._due = time.monotonic() + delay
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._off = False
        self._drawn = (0.0, "")  # when, and the phase then

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if self._bar is None:
            if self._off or now < self._due:
                return
            self._off = not self._app.shows_progress
            if self._off:
                return
            self._bar = self._app.progress_bar("building {task.description}", auto_refresh=False)
            self._task = self._bar.add_task(phase, total=total)
            self._bar.start()
        assert self._task is not None
        self._bar.update(self._task, description=phase, completed=done, total=total)
        if now - self._drawn[0] >= 0.1 or phase != self._drawn[1] or done >= total:
            self._bar.refresh()
            self._drawn = (now, phase)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextmanager
def _build_progress(app: AppContext) -> Iterator[Callable[[str, int, int], None] | None]:
    if app.quiet:
        yield None
        return
    bar = _LateBar(app, BAR_DELAY)
    try:
        yield bar
    finally:
        bar.close()


@main.command("serve")
@click.option("--dir", "site_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The built site to serve (default: setting site.out, else site/).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on.")
@click.pass_obj
def serve_command(app: AppContext, site_dir: Path | None, host: str, port: int) -> None:
    """Serve the built site over HTTP so you can look at it (Ctrl-C stops)."""
    from caixun.search_api import search_routes
    from caixun.serve import serve

    directory = site_dir or Path(app.settings["site.out"])
    routes = search_routes(app.archive_location, app.site_config().base_path)
    if not app.archive_exists():  # the API opens it read-only: nothing is created
        app.warn(f"no archive at {app.archive_name}: /api/search answers 503 until "
                 "`caixun import` or `caixun fetch` makes one")
    app.info(f"serving {directory} at http://{host}:{port}/ (search API: /api/search?q=…)")
    serve(directory, host, port, routes)


@main.command("fetch")
@click.option("--source", "names", multiple=True, metavar="NAME",
              help="Poll this source now, due or not (repeatable). Default: every due source.")
@click.pass_obj
def fetch_command(app: AppContext, names: tuple[str, ...]) -> None:
    """Poll the due (or named) sources once and store what they have.

    Prints a line per source: new, updated, unchanged, merged, errors. Exits 1 if a
    source failed (the others are still stored).
    """
    import asyncio

    from caixun.fetch import Fetcher, fetch_round
    from caixun.sources.base import load_source

    sources = [load_source(c) for c in app.source_configs(names)]
    delivered: list[Any] = []

    async def one_round() -> list[Any]:
        fetcher = Fetcher(app.fetch_settings())
        try:
            with app.open_archive() as archive:
                archive.use_watches(app.settings.watches)
                reports = await fetch_round(sources, fetcher, archive, due_only=not names,
                                            max_backoff=app.settings["fetch.max_backoff"])
                delivered.append(await _deliver_due(app, archive))
                return reports
        finally:
            await fetcher.aclose()

    reports = asyncio.run(one_round())
    if not reports:
        app.info("no source is due (use --source NAME to poll one now)")
    for report in reports:
        click.echo(report.summary())
        for problem in report.item_errors:
            app.warn(problem)
    if any(r.error for r in reports):
        raise click.ClickException("some sources failed; see above")


async def _deliver_due(app: AppContext, archive: Archive) -> Any:
    """Send the watches' notifications that are due; report the failures."""
    from caixun.watch import Deliverer, deliver_pending

    deliverer = Deliverer({w.name: w for w in app.settings.watches}, log=app.warn)
    report = await deliver_pending(archive, deliverer, limit=1000)
    if report.delivered or report.retrying or report.failed:
        app.info(report.summary())
    for error in report.errors:
        app.warn(error)
    return report


@main.command("watch")
@click.argument("name")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="From this day on (YYYY-MM-DD).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000),
              help="Matches to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def watch_command(app: AppContext, name: str, since: datetime | None, limit: int,
                  as_json: bool) -> None:
    """List a watch's matches over the whole archive, newest first.

    `caixun watch deliver` instead sends the watches' pending notifications
    (those due now) and exits; `caixun fetch` and `caixun run` do it too.
    """
    import asyncio
    import json
    from datetime import datetime

    from caixun.normalize import BEIJING

    if name == "deliver":
        with app.open_archive() as archive:
            archive.use_watches(app.settings.watches)
            report = asyncio.run(_deliver_due(app, archive))
            pending = archive.outbox_counts().get("pending", 0)
        app.info(f"{report.summary()}; {pending} pending")
        if report.failed:
            raise click.ClickException("some notifications failed for good; see above")
        return
    watch = next((w for w in app.settings.watches if w.name == name), None)
    if watch is None:
        known = ", ".join(w.name for w in app.settings.watches) or "none"
        raise click.ClickException(f"no watch named {name!r} in the settings "
                                   f"(configured: {known}); add a [[watch]] table")
    since_ts, _ = _day_bounds(since, None)
    with app.open_archive(read_only=True) as archive:
        refs = archive.watch_refs(watch, limit=limit, since_ts=since_ts)
        codes = archive.article_codes([r.id for r in refs])
    if as_json:
        click.echo(json.dumps([{"uid": r.uid, "title": r.title, "outlet": r.outlet,
                                "published_at": datetime.fromtimestamp(
                                    r.published_ts, BEIJING).isoformat(),
                                "stocks": list(codes.get(r.id, ()))} for r in refs],
                              ensure_ascii=False, indent=2))
        return
    for ref in refs:
        when = datetime.fromtimestamp(ref.published_ts, BEIJING).strftime("%Y-%m-%d %H:%M")
        tags = f"  [{' '.join(codes[ref.id])}]" if ref.id in codes else ""
        click.echo(f"{when}  {ref.outlet}  {ref.title}{tags}")
    app.info(f"{len(refs)} match(es) of watch {name}")


@main.command("sources")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def sources_command(app: AppContext, as_json: bool) -> None:
    """Show the configured sources and their health.

    A failing source says whether it ever worked: "never reached since <time>"
    (no success yet) or "failing since <time>" (the first failure of the
    current run; its last success is in its own column).
    """
    import json
    from datetime import datetime, timezone

    from rich.console import Console
    from rich.table import Table

    from caixun.archive import SourceHealth
    from caixun.fetch import failing_since, health_state
    from caixun.sources.base import load_source

    imports = app.settings["import.paths"]
    configs = app.source_configs(none_with_imports=True)
    for config in configs:  # an unknown kind or a bad option is an error, as in fetch
        load_source(config)
    if not app.archive_exists():  # nothing polled yet; don't create an archive to say so
        rows = [(c, SourceHealth(c.name)) for c in configs]
    else:
        with app.open_archive(read_only=True) as archive:
            rows = [(c, archive.source_health(c.name)) for c in configs]
    if as_json:
        click.echo(json.dumps([{
            "name": c.name, "kind": c.kind, "every": c.every, "state": health_state(h),
            "last_success": h.last_success, "last_attempt": h.last_attempt,
            "consecutive_failures": h.consecutive_failures,
            "failing_since": failing_since(h),
            "last_error": h.last_error,
            "next_poll": datetime.fromtimestamp(h.next_poll, timezone.utc).isoformat(
                timespec="seconds") if h.next_poll else None,
        } for c, h in rows], ensure_ascii=False, indent=2))
        return
    table = Table()
    for column in ("source", "kind", "every", "last success", "failures", "next poll"):
        table.add_column(column, no_wrap=True)
    table.add_column("state", overflow="fold")
    for config, health in rows:
        next_poll = datetime.fromtimestamp(health.next_poll).strftime("%m-%d %H:%M:%S") \
            if health.next_poll else "now"
        state = health_state(health)
        if health.consecutive_failures:
            state = (f"{state} since {failing_since(health)}: "
                     f"{health.last_error or 'unknown error'}")
        table.add_row(config.name, config.kind, f"{config.every:g}s",
                      health.last_success or "never", str(health.consecutive_failures),
                      next_poll, state)
    # Piped output is not squeezed to 80 columns: the names and errors matter.
    if configs:
        Console(width=None if sys.stdout.isatty() else 200).print(table)
    if imports:
        click.echo(f"caixun run also imports {', '.join(imports)} every "
                   f"{app.settings['import.every']:g} s (setting import.paths)")


@main.group("securities", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one array) instead of a table.")
@click.pass_context
def securities_group(ctx: click.Context, as_json: bool) -> None:
    """List the securities the archive knows, most articles first.

    Each with its code (600519.SH, 00700.HK…), current name, market, the other
    spellings it goes by and how many articles are tagged with it. Names are
    learned from the sources (quote links, their stock fields) and from your
    own lists (`caixun securities import`).
    """
    if ctx.invoked_subcommand is not None:
        return
    import json

    app: AppContext = ctx.obj
    rows: list[SecurityRow] = []
    if app.archive_exists():  # no archive: nothing known, and nothing to create
        with app.open_archive(read_only=True) as archive:
            rows = archive.securities()
    if as_json:
        click.echo(json.dumps([{
            "code": r.code, "name": r.name, "market": r.market, "other_names": list(r.names[1:]),
            "articles": r.articles, "pair": r.pair, "source": r.source,
            "learned_at": r.learned_at,
        } for r in rows], ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo(f"no securities in {app.archive_name} yet: `caixun fetch` learns them from "
                   "the sources, `caixun securities import FILE.csv` from your own list")
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    paired = any(r.pair for r in rows)
    table = Table()
    for column in ("code", "name", "market"):
        table.add_column(column, no_wrap=True)
    table.add_column("other names", overflow="fold")
    table.add_column("articles", justify="right", no_wrap=True)
    if paired:
        table.add_column("pair", no_wrap=True)
    for r in rows:  # Text: a name is shown as written, never read as rich markup
        cells = [Text(r.code), Text(r.name), Text(r.market), Text("、".join(r.names[1:])),
                 Text(str(r.articles))]
        table.add_row(*cells, *([Text(r.pair or "")] if paired else []))
    Console(width=None if sys.stdout.isatty() else 200).print(table)


@securities_group.command("import", short_help="Add your own list of securities (CSV).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Exit with status 1 if any row was skipped.")
@click.pass_obj
def securities_import(app: AppContext, file: Path, strict: bool) -> None:
    """Add your own list of securities from a CSV file, then re-tag the archive.

    The header line names the columns. Required: code (600519, sh600519,
    600519.SH, 00700…; or a bare code with a market column: SH, SZ, BJ, HK,
    US) and name. Optional: full_name, former_names (separated by ; or ｜) and
    pair (the code of the company's other listing, e.g. its H share). UTF-8,
    with or without a BOM, or GBK as Chinese Excel saves it.

    A bad row is reported with its line and skipped; the others are stored.
    Articles stored earlier are then tagged with the new names (a progress
    bar on a terminal).
    """
    from caixun.securities import SecurityName

    rows, pairs, problems = _read_securities_csv(file)
    for problem in problems:
        app.error(problem)
    with app.open_archive() as archive:
        new = archive.learn_securities(
            SecurityName(code, name, f"csv:{file.name}", kind) for code, name, kind in rows)
        for code, other in pairs:
            archive.pair_securities(code, other)
        securities = len({code for code, _, _ in rows})
        skipped = f", {len(problems)} bad row(s) skipped" if problems else ""
        app.info(f"{file}: {securities} securities, {len(new)} new name(s){skipped}")
        read = _retag(app, archive, everything=False)
    app.info(f"re-tagged: read {read} article(s)")
    if strict and problems:
        raise click.ClickException("--strict: some rows were skipped")


@securities_group.command("retag", short_help="Tag earlier articles with newer names.")
@click.option("--all", "everything", is_flag=True,
              help="Re-tag every article, not only those that names learned since they were "
                   "stored may concern.")
@click.pass_obj
def securities_retag(app: AppContext, everything: bool) -> None:
    """Tag again the articles stored before names were learned, to the end.

    `caixun run` does this a bounded step at a time; this command runs it
    until nothing is left, with a progress bar on a terminal. An interrupted
    re-tag goes on where it stopped. Prints how many articles were read.
    """
    if not app.archive_exists():
        raise click.ClickException(f"no archive at {app.archive_name}; run `caixun import` or "
                                   "`caixun fetch` first")
    with app.open_archive() as archive:
        read = _retag(app, archive, everything)
    app.info(f"re-tagged: read {read} article(s)")


def _retag(app: AppContext, archive: Archive, everything: bool) -> int:
    """Run the archive's re-tag until it is done; how many articles it read."""
    total = archive.count() if everything else None  # by name: not known beforehand
    read = 0
    with app.progress("re-tagging", total) as bar:
        task = bar.add_task("re-tag", total=total) if bar is not None else None
        step = archive.retag(everything=everything)
        while step:
            read += step
            if bar is not None and task is not None:
                bar.advance(task, step)
            step = archive.retag()
    return read


# The CSV columns of `securities import`, and the other headers taken for them
# (as Chinese exports name them).
_CSV_COLUMNS = {
    "code": ("code", "代码", "证券代码", "股票代码", "symbol", "ticker"),
    "market": ("market", "市场", "交易所", "exchange"),
    "name": ("name", "名称", "简称", "证券简称", "股票简称", "short_name"),
    "full_name": ("full_name", "全称", "公司全称", "公司名称"),
    "former_names": ("former_names", "former_name", "曾用名"),
    "pair": ("pair", "对应代码"),
}
_CSV_MARKETS = {
    "SH": ("SH", "SS", "SSE", "上海", "沪", "沪市", "上交所"),
    "SZ": ("SZ", "SZSE", "深圳", "深", "深市", "深交所"),
    "BJ": ("BJ", "BSE", "北京", "京", "北交所"),
    "HK": ("HK", "HKEX", "香港", "港", "港股", "港交所"),
    "US": ("US", "美国", "美", "美股", "NASDAQ", "NYSE", "AMEX"),
}
_NAME_SEPARATORS = "[;；|｜]"

_CsvRow = tuple[str, str, str]  # code, name, kind


def _read_securities_csv(path: Path) -> tuple[list[_CsvRow], list[tuple[str, str]], list[str]]:
    """The names (code, name, kind) and pairs of a user's CSV file, and a message per bad row.

    Raises ``click.ClickException`` for a file that cannot be read at all.
    """
    import csv
    import io

    text = _decode_csv(path)
    first = text.split("\n", 1)[0]
    delimiter = next((d for d in ("\t", ";") if d in first and "," not in first), ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns: dict[str, int] | None = None
    names: list[_CsvRow] = []
    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(f"{path}:{line}: not CSV ({exc}); the rest of the file was not read")
            break
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if columns is None:
            columns = _csv_header(f"{path}:{start}", row)
            continue
        try:
            found, pair = _csv_row(row, columns)
        except ValueError as exc:
            problems.append(f"{path}:{start}: {exc}; row skipped")
            continue
        names += found
        if pair:
            pairs.append((found[0][0], pair))
    if columns is None:
        raise click.ClickException(f"{path}: empty: no header line naming the columns "
                                   "(code,name,…)")
    return names, pairs, problems


def _decode_csv(path: Path) -> str:
    """The file's text: UTF-8 (a BOM or not), UTF-16 with a BOM, else GBK (GB 18030)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    encodings = ("utf-16",) if data.startswith((b"\xff\xfe", b"\xfe\xff")) \
        else ("utf-8-sig", "gb18030")
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise click.ClickException(f"{path}: neither UTF-8 nor GBK text: save it as CSV (UTF-8)")


def _csv_header(where: str, row: list[str]) -> dict[str, int]:
    headers = [cell.strip().lstrip("\ufeff").lower().replace(" ", "_") for cell in row]
    columns: dict[str, int] = {}
    for key, spellings in _CSV_COLUMNS.items():
        index = next((i for i, h in enumerate(headers) if h in spellings), None)
        if index is not None:
            columns[key] = index
    missing = [key for key in ("code", "name") if key not in columns]
    if missing:
        raise click.ClickException(
            f"{where}: the header line has no {' and no '.join(missing)} column (it has: "
            f"{', '.join(h for h in headers if h) or 'nothing'}); the columns are code, name "
            "and, if you like, market, full_name, former_names, pair")
    return columns


def _csv_row(row: list[str], columns: dict[str, int]) -> tuple[list[_CsvRow], str | None]:
    """One row's names, current name first, and the pair's code; ValueError says what is wrong."""
    import re

    from caixun.securities import from_native

    def cell(key: str) -> str:
        index = columns.get(key)
        return row[index].strip() if index is not None and index < len(row) else ""

    raw = cell("code")
    if not raw:
        raise ValueError("no code")
    code = _csv_code(raw, cell("market"))
    name = cell("name")
    if not name:
        raise ValueError(f"no name for {code}")
    pair = None
    if cell("pair"):
        pair = from_native(_unexcel(cell("pair")))
        if pair is None:
            raise ValueError(f"pair {cell('pair')!r} is not a security code")
        if pair == code:
            raise ValueError(f"pair {cell('pair')!r} is {code} itself")
    found = [(code, name, "short")]
    if cell("full_name"):
        found.append((code, cell("full_name"), "full"))
    found += [(code, former.strip(), "former")
              for former in re.split(_NAME_SEPARATORS, cell("former_names")) if former.strip()]
    return found, pair


def _unexcel(value: str) -> str:
    """A code as Excel keeps its leading zeros written plainly: ="000001", '000001 → 000001."""
    import unicodedata

    value = unicodedata.normalize("NFKC", value).strip()
    if value.startswith('="') and value.endswith('"'):
        value = value[2:-1]
    return value.lstrip("'").strip()


def _csv_code(raw: str, market: str) -> str:
    """The canonical code of a CSV row's code (and market column); ValueError if it has none."""
    from caixun.securities import canonical_code, from_native

    value = _unexcel(raw)
    if not market:
        code = from_native(value)
        if code is None:
            raise ValueError(f"code {raw!r} is not a security code (600519, sh600519, "
                             "600519.SH, 00700.HK; or give a market column)")
        return code
    wanted = market.upper()
    found = next((m for m, spellings in _CSV_MARKETS.items() if wanted in spellings), None)
    if found is None:
        raise ValueError(f"unknown market {market!r} (SH, SZ, BJ, HK or US)")
    if value.isdigit() and found in ("SH", "SZ", "BJ"):
        value = value.zfill(6)  # Excel drops leading zeros: 1 is 000001
    code = canonical_code(value, found)
    if code is None:
        native = from_native(value)
        code = native if native and native.endswith(f".{found}") else None
    if code is None:
        raise ValueError(f"code {raw!r} is not a security code of market {found}")
    return code


@main.command("run")
@click.option("--no-serve", is_flag=True, help="Only fetch and publish; do not serve the site.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Site directory (default: setting site.out, else site/).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to serve on.")
@click.option("--role", type=click.Choice(["all", "fetch", "publish"]), default="all",
              show_default=True,
              help="fetch: poll and store only (run several, on several machines); publish: "
                   "build, serve and notify only (one); all: both, in one process.")
@click.pass_obj
def run_command(app: AppContext, no_serve: bool, out_dir: Path | None, host: str,
                port: int, role: str) -> None:
    """The main job: poll every source on its schedule, store, rebuild, serve.

    Logs one line per source per round. Ctrl-C or SIGTERM stops it cleanly;
    unreachable sources are reported and retried with backoff while the site
    stays up. With --role, the work splits: fetchers share the sources (a
    lease per poll, so no source is polled by two at once) and each host's
    gap between requests; the publisher builds when they store news.
    """
    import asyncio

    from caixun.run import RunOptions, run_daemon

    options = RunOptions(
        archive_path=app.archive_location,
        out=out_dir or Path(app.settings["site.out"]), site=app.site_config(),
        fetch=app.fetch_settings(), max_backoff=app.settings["fetch.max_backoff"],
        serve=not no_serve, host=host, port=port, watches=app.settings.watches, role=role,
        lease=app.settings["fetch.lease"],
        imports=tuple(Path(path) for path in app.settings["import.paths"]),
        import_every=app.settings["import.every"])
    # A publisher polls none.
    configs = app.source_configs(none_with_imports=True) if role != "publish" else []
    asyncio.run(run_daemon(options, configs, lambda line: click.echo(line, err=True)))


@main.command("search")
@click.argument("query", required=False, default="")
@click.option("--stock", "stocks", multiple=True, metavar="CODE",
              help="Only articles about this security: a code in any spelling (600519, "
                   "sh600519, 600519.SH, 00700) or a name (贵州茅台). Repeatable: AND-ed.")
@click.option("--outlet", metavar="SLUG", help="Only this outlet (its slug, e.g. emnews).")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="From this day on (YYYY-MM-DD).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]),
              help="Up to and including this day (YYYY-MM-DD).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000),
              help="Results to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def search_command(app: AppContext, query: str, stocks: tuple[str, ...], outlet: str | None,
                   since: datetime | None, until: datetime | None, limit: int,
                   as_json: bool) -> None:
    """Search the archive: words AND-ed, "a phrase" as written, -word excluded.

    Chinese is matched as written (a two-character word such as 央行 finds every
    article containing it); codes (600519, 00700.HK) and English as words.
    Results: relevance (title hits first) blended with recency.

    With --stock, only the articles tagged with that security (every one
    given); QUERY may then be left out: the security's articles, newest first.
    """
    import html
    import json
    import re
    from datetime import datetime

    from caixun.normalize import BEIJING
    from caixun.search_api import UnknownStock, resolve_stocks, search_records
    from caixun.segment import QueryError

    if not query.strip() and not stocks:
        raise click.UsageError("give words to search for, or --stock CODE")
    since_ts, until_ts = _day_bounds(since, until)
    try:
        with app.open_archive(read_only=True) as archive:
            codes = resolve_stocks(archive, stocks)
            hits = archive.search(query, outlet=outlet, since_ts=since_ts, until_ts=until_ts,
                                  limit=limit, stocks=codes)
            records = search_records(archive, hits)
    except UnknownStock as exc:
        raise click.ClickException(f"--stock: {exc}") from exc
    except QueryError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(records, ensure_ascii=False, indent=2))
        return
    for hit, record in zip(hits, records):
        when = datetime.fromtimestamp(hit.ref.published_ts, BEIJING).strftime("%Y-%m-%d %H:%M")
        tags = f"  [{' '.join(record['stocks'])}]" if record["stocks"] else ""
        click.echo(f"{when}  {hit.ref.outlet}  {hit.ref.title}{tags}")
        click.echo(f"    {html.unescape(re.sub(r'</?mark>', '', hit.snippet))}")
    about = f" about {' and '.join(codes)}" if codes else ""
    app.info(f"{len(hits)} result(s){about}")


def _day_bounds(since: datetime | None, until: datetime | None) -> tuple[int | None, int | None]:
    """Beijing days → [start, end) Unix seconds; --until includes its whole day (as the API)."""
    from caixun.search_api import day_bounds

    return day_bounds(since, until)


@main.command("init")
@click.option("--force", is_flag=True,
              help="Overwrite an existing caixun.toml (with --systemd or --github-pages: the "
                   "unit or workflow; an existing caixun.toml is then kept).")
@click.option("--systemd", is_flag=True,
              help="Write caixun.service, a systemd unit that runs `caixun run`.")
@click.option("--github-pages", "github_pages", is_flag=True,
              help="Write .github/workflows/caixun.yml: fetch, build and publish to GitHub "
                   "Pages on a schedule.")
@click.option("--user", default="caixun", show_default=True, metavar="NAME",
              help="The dedicated user the systemd unit runs as.")
@click.option("--archive", "archive_location", metavar="PATH|URL",
              help="The archive to write into caixun.toml ([archive] path, or url for a "
                   "postgresql:// URL), made (or upgraded) now.")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), default="caixun.toml")
@click.pass_context
def init_command(ctx: click.Context, path: Path, force: bool, systemd: bool,
                 github_pages: bool, user: str, archive_location: str | None) -> None:
    """Write a commented caixun.toml with every setting and every built-in source.

    With --archive (here or before the command), caixun.toml names that
    archive, and the archive is made now: a PostgreSQL server that cannot be
    reached, or a role without rights, is told at once.

    With --systemd or --github-pages (or both), write the systemd unit or the
    GitHub Actions workflow instead, for the settings in PATH (or --config);
    PATH is then written only if it is missing.
    """
    from click.core import ParameterSource

    from caixun.config_template import config_template

    app: AppContext = ctx.obj
    explicit = {name for name in ("path", "user")
                if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT}
    archive = archive_location or ctx.find_root().params["archive_path"]
    chosen = {k: v for k, v in _archive_overrides(archive).items() if v}
    if not (systemd or github_pages):
        if "user" in explicit:
            raise click.UsageError("--user is for --systemd")
        if path.exists() and not force:
            raise click.ClickException(f"{path} exists; use --force to overwrite it")
        if archive is not None:
            from caixun.archive import open_archive

            open_archive(archive).close()  # made now: a bad URL fails before the file
        path.write_text(config_template(chosen), encoding="utf-8")
        app.info(f"wrote {path}: edit it, then run `caixun run`")
        return

    from caixun import deploy

    root = ctx.find_root().params
    if root["config_path"] is not None and "path" in explicit:
        raise click.UsageError("give the settings file as --config or as PATH, not both")
    config: Path = root["config_path"] or path
    targets = [p for p, wanted in ((deploy.UNIT_FILE, systemd),
                                   (deploy.WORKFLOW_FILE, github_pages)) if wanted]
    for target in targets:
        if target.exists() and not force:
            raise click.ClickException(f"{target} exists; use --force to overwrite it")
    if systemd:
        deploy.check_user(user)  # before anything is written
    if not config.exists():
        config.write_text(config_template(), encoding="utf-8")
        app.info(f"wrote {config}: edit it")
    settings = deploy.deploy_settings(config, app.settings, root["archive_path"] is not None)
    if systemd:
        service = deploy.service_for(settings, config, user)
        deploy.UNIT_FILE.write_text(deploy.systemd_unit(service), encoding="utf-8")
        steps = deploy.install_steps(service, deploy.UNIT_FILE)
        app.info(f"wrote {deploy.UNIT_FILE}, a systemd unit for `caixun run`; to install it:\n"
                 + "\n".join(f"  {step}" for step in steps))
        for note in deploy.service_notes(service):
            app.warn(note)
    if github_pages:
        pages = deploy.pages_for(settings, config)
        deploy.WORKFLOW_FILE.parent.mkdir(parents=True, exist_ok=True)
        deploy.WORKFLOW_FILE.write_text(deploy.pages_workflow(pages), encoding="utf-8")
        app.info(f"wrote {deploy.WORKFLOW_FILE}: commit it with {config}, then choose "
                 "Settings > Pages > Source: GitHub Actions in the repository")
        for note in deploy.pages_notes(pages, settings["site.url"]):
            app.warn(note)


def _refuse_post_clashes(archive: Archive) -> None:
    """Before writing anything: no two articles may have one post file."""
    clashes = [c for c in archive.output_clashes() if c[0].endswith(".md")]
    if clashes:
        name, first, second = clashes[0]
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise click.ClickException(
            f"{name}: {first} and {second} would both be written to this post file{more}; "
            "nothing was exported (a command that writes to the archive, e.g. "
            "`caixun build`, gives fetched articles file ids of their own)")


def _with_progress(app: AppContext, label: str, total: int, items: Iterable[T]) -> Iterator[T]:
    with app.progress(label, total) as bar:
        if bar is None:
            yield from items
            return
        task = bar.add_task(label, total=total)
        for item in items:
            yield item
            bar.advance(task)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

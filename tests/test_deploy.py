"""Deploying: `caixun init --systemd` writes a unit systemd accepts, with every path as
written; `caixun init --github-pages` a workflow that fetches, builds, keeps the archive
and publishes; plain `caixun init` is as it was.

The unit is checked by systemd itself (``systemd-analyze verify``, from Debian's
``systemd`` package), and read back from the dump systemd prints when it logs at
debug level: what ExecStart= and WorkingDirectory= became, after systemd's quoting.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from caixun import __version__
from caixun.cli import main
from caixun.config_template import config_template
from caixun.deploy import ENV_FILE, Pages, Service, pages_workflow, systemd_unit
from caixun.errors import ConfigError
from caixun.settings import SETTINGS

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
# A path with everything systemd treats specially: spaces, specifiers, variables,
# quotes, a backslash, a semicolon, a backquote, non-ASCII.
AWKWARD = "my site 100% $HOME \"q\" 'a' \\b ;c `d` 财讯"
# ... but for quotes, backslashes and '$', which the program's path cannot have.
AWKWARD_PROGRAM = "my site 100% ;c `d` 财讯"
PYTHON = os.path.abspath(sys.executable)
CLI = (PYTHON, "-m", "caixun.cli")


@pytest.fixture
def analyze() -> str:
    if SYSTEMD_ANALYZE is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing: install Debian's systemd package")
        pytest.skip("systemd-analyze is missing (Debian package: systemd)")
    return SYSTEMD_ANALYZE


def _init(cwd: Path, *args: str) -> Result:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, list(args))
    finally:
        os.chdir(old)


def _verify(analyze: str, unit: Path) -> list[str]:
    """What ``systemd-analyze verify`` says about ``unit`` (it must exit 0)."""
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          env={**os.environ, "SYSTEMD_LOG_LEVEL": "info"})
    lines = (proc.stdout + proc.stderr).splitlines()
    assert proc.returncode == 0, lines
    return [line for line in lines if unit.name in line]


def _as_systemd_reads_it(analyze: str, unit: Path) -> dict[str, Any]:
    """ExecStart's argv, WorkingDirectory= and ReadWritePaths= as systemd parsed them.

    systemd's debug log dumps the loaded unit, the command line quoted as for a
    shell; ``sh`` splits it. What is left is the expansion done at start: ``$$``
    is ``$``.
    """
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          env={**os.environ, "SYSTEMD_LOG_LEVEL": "debug"})
    dump = (proc.stdout + proc.stderr).split(f"-> Unit {unit.name}:", 1)[-1]
    fields: dict[str, Any] = {}
    for line in dump.splitlines():
        key, _, value = line.strip().partition(": ")
        fields.setdefault(key, value)
    assert "Command Line" in fields, f"no ExecStart in systemd's dump:\n{dump[:2000]}"
    words = subprocess.run(["sh", "-c", 'printf "%s\\0" ' + fields["Command Line"]],
                           capture_output=True, check=True).stdout.decode().split("\0")[:-1]
    fields["argv"] = [word.replace("$$", "$") for word in words]
    return fields


def _unit_settings(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


# --- plain init ---------------------------------------------------------------------------


def test_init_still_writes_just_caixun_toml(tmp_path: Path) -> None:
    result = _init(tmp_path, "init")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["caixun.toml"]
    assert (tmp_path / "caixun.toml").read_text(encoding="utf-8") == config_template()
    again = _init(tmp_path, "init")
    assert again.exit_code == 1 and "caixun.toml exists; use --force" in again.stderr
    (tmp_path / "caixun.toml").write_text("# mine\n", encoding="utf-8")
    assert _init(tmp_path, "init", "--force").exit_code == 0
    assert (tmp_path / "caixun.toml").read_text(encoding="utf-8") == config_template()
    assert _init(tmp_path, "init", "other.toml").exit_code == 0
    assert (tmp_path / "other.toml").read_text(encoding="utf-8") == config_template()
    wrong = _init(tmp_path, "init", "--user", "news")
    assert wrong.exit_code == 2 and "--user is for --systemd" in wrong.stderr


# --- systemd ------------------------------------------------------------------------------


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path, analyze: str) -> None:
    here = tmp_path / "news site"
    here.mkdir()
    result = _init(here, "--archive", "data dir/新闻.db", "init", "--systemd")
    assert result.exit_code == 0, result.output
    unit = here / "caixun.service"
    assert _verify(analyze, unit) == []
    parsed = _as_systemd_reads_it(analyze, unit)
    assert parsed["argv"] == [*CLI, "--config", str(here / "caixun.toml"),
                              "--archive", str(here / "data dir" / "新闻.db"), "run"]
    assert parsed["WorkingDirectory"] == str(here)
    assert parsed["ReadWritePaths"] == str(here)  # the archive's and the site's dirs are in it
    # caixun.toml was missing: written, as plain `caixun init` writes it.
    assert (here / "caixun.toml").read_text(encoding="utf-8") == config_template()

    settings = _unit_settings(unit.read_text(encoding="utf-8"))
    assert dict(settings["Unit"]) == {
        "Description": "caixun (财讯): poll the news sources, archive, build and serve the site",
        "After": "network-online.target", "Wants": "network-online.target"}
    service = settings["Service"]
    expected = {"Type": "simple", "User": "caixun", "Group": "caixun",
                "Restart": "on-failure", "KillSignal": "SIGTERM", "NoNewPrivileges": "yes",
                "ProtectSystem": "strict", "PrivateTmp": "yes"}
    assert {key: service[key] for key in expected} == expected
    assert int(service["RestartSec"]) > 0 and int(service["TimeoutStopSec"]) >= 60
    assert service["ProtectHome"] in ("yes", "read-only")
    assert settings["Install"]["WantedBy"] == "multi-user.target"

    out = result.stderr
    for step in ("sudo useradd --system", f"sudo chown -R caixun:caixun {shlex.quote(str(here))}",
                 "sudo cp caixun.service /etc/systemd/system/caixun.service",
                 "sudo systemctl daemon-reload", "sudo systemctl enable --now caixun.service"):
        assert step in out


def test_systemd_analyze_does_report_a_bad_unit(tmp_path: Path, analyze: str) -> None:
    """The check above means something: a unit whose program is missing fails it."""
    assert _init(tmp_path, "init", "--systemd").exit_code == 0
    unit = tmp_path / "caixun.service"
    text = unit.read_text(encoding="utf-8")
    unit.write_text(re.sub(r"^ExecStart=.*$", "ExecStart=/nonexistent/python run", text,
                           flags=re.MULTILINE), encoding="utf-8")
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert proc.returncode != 0 and "/nonexistent/python" in proc.stdout + proc.stderr
    unit.write_text(text.replace("Restart=", "Restrat="), encoding="utf-8")
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert "caixun.service" in proc.stdout + proc.stderr and "Restrat" in proc.stderr


def test_awkward_paths_survive_systemds_quoting(tmp_path: Path, analyze: str) -> None:
    bin_dir = tmp_path / f"bin {AWKWARD_PROGRAM}"
    bin_dir.mkdir()
    python = bin_dir / "py thon%i"
    python.symlink_to(PYTHON)  # systemd checks the program exists and is executable
    workdir = tmp_path / AWKWARD
    service = Service(command=(str(python), "-m", "caixun.cli"), workdir=workdir,
                      config=workdir / "caixun 100%.toml", archive=f"db {AWKWARD}/x$y.db",
                      out="site", user="news-bot")
    unit = tmp_path / "caixun.service"
    unit.write_text(systemd_unit(service), encoding="utf-8")
    assert _verify(analyze, unit) == []
    parsed = _as_systemd_reads_it(analyze, unit)
    assert parsed["argv"] == [str(python), "-m", "caixun.cli", "--config",
                              str(workdir / "caixun 100%.toml"), "--archive",
                              str(workdir / f"db {AWKWARD}" / "x$y.db"), "run"]
    assert parsed["WorkingDirectory"] == str(workdir)
    assert parsed["ReadWritePaths"] == str(workdir)
    assert parsed["User"] == "news-bot"


def test_the_sites_and_archives_directories_outside_are_writable(tmp_path: Path,
                                                                  analyze: str) -> None:
    service = Service(command=CLI, workdir=tmp_path / "work", config=None,
                      archive=str(tmp_path / "var lib" / "caixun.db"), out="/srv/www site",
                      user="caixun")
    unit = tmp_path / "caixun.service"
    unit.write_text(systemd_unit(service), encoding="utf-8")
    assert _verify(analyze, unit) == []
    text = unit.read_text(encoding="utf-8")
    assert f'ReadWritePaths="{tmp_path}/work" "{tmp_path}/var lib" "/srv/www site"\n' in text
    assert "--config" not in text


def test_the_posts_of_import_paths_in_a_home_directory_stay_readable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """caixun run reads them: in a home directory they get ProtectHome=read-only
    and a note, as caixun's own files there do (its runtime kept out of homes here)."""
    from caixun.deploy import service_for, service_notes
    from caixun.settings import load_settings

    monkeypatch.setattr("caixun.deploy.runtime_paths", lambda: (Path("/opt/caixun"),))
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "caixun.toml"
    for posts, protect in (("/srv/finews/_posts", "yes"),
                           ("/home/news/finews/_posts", "read-only")):
        config.write_text(f'[import]\npaths = ["{posts}"]\n', encoding="utf-8")
        service = service_for(load_settings(config), config)
        service = Service(**{**{f: getattr(service, f) for f in service.__dataclass_fields__},
                             "workdir": Path("/srv/caixun"), "config": None})
        assert f"ProtectHome={protect}\n" in systemd_unit(service)
        noted = [note for note in service_notes(service) if "home directory" in note]
        assert noted == ([f"in a home directory: {posts}; user caixun must be able to read "
                          "them (the unit gets ProtectHome=read-only); caixun and its files "
                          "are simpler elsewhere, e.g. in /opt/caixun and /srv/caixun"]
                         if protect == "read-only" else [])


@pytest.mark.parametrize("url, shown", [
    ("postgresql://news:s3cr%40t@db.example.com:5432/caixun?sslmode=require",
     "postgresql://news@db.example.com:5432/caixun?sslmode=require"),
    ("postgres://db.example.com/caixun?password=s3cr%40t&sslmode=require",
     "postgres://db.example.com/caixun?sslmode=require"),
])
def test_an_archive_urls_password_is_not_written(tmp_path: Path, analyze: str, url: str,
                                                 shown: str) -> None:
    service = Service(command=CLI, workdir=tmp_path, config=None, archive=url, out="site")
    unit = tmp_path / "caixun.service"
    unit.write_text(systemd_unit(service), encoding="utf-8")
    text = unit.read_text(encoding="utf-8")
    assert "s3cr" not in text
    assert f"EnvironmentFile={ENV_FILE}\n" in text
    assert _verify(analyze, unit) == []
    parsed = _as_systemd_reads_it(analyze, unit)
    assert parsed["argv"] == [*CLI, "--archive", shown, "run"]  # a URL, not made a path
    assert parsed["ReadWritePaths"] == str(tmp_path)


def test_an_archive_url_without_a_password_is_named_as_it_is(tmp_path: Path) -> None:
    url = "postgresql://news@db.example.com/caixun"
    text = systemd_unit(Service(command=CLI, workdir=tmp_path, config=None, archive=url,
                                out="site"))
    assert f" --archive {url} run\n" in text and "EnvironmentFile" not in text


def test_the_database_of_the_settings_is_named_without_its_password(tmp_path: Path,
                                                                    analyze: str) -> None:
    if "archive.url" not in {setting.key for setting in SETTINGS}:
        pytest.skip("no [archive] url setting in this caixun")
    (tmp_path / "caixun.toml").write_text(
        '[archive]\nurl = "postgresql://news:s3cret@db.example.com/caixun"\n', encoding="utf-8")
    result = _init(tmp_path, "init", "--systemd", "--github-pages")
    assert result.exit_code == 0, result.output
    assert f"put PGPASSWORD=… in {ENV_FILE}" in result.stderr
    unit = tmp_path / "caixun.service"
    assert "s3cret" not in unit.read_text(encoding="utf-8")
    assert _as_systemd_reads_it(analyze, unit)["argv"][-3:] == [
        "--archive", "postgresql://news@db.example.com/caixun", "run"]
    workflow = (tmp_path / ".github" / "workflows" / "caixun.yml").read_text(encoding="utf-8")
    assert "s3cret" not in workflow and "secrets.CAIXUN_ARCHIVE" in workflow
    assert "repository secret CAIXUN_ARCHIVE" in result.stderr
    # --archive on the command line still names the archive.
    result = _init(tmp_path, "--archive", "local.db", "init", "--systemd", "--force")
    assert result.exit_code == 0, result.output
    assert f" --archive {tmp_path / 'local.db'} run\n" in unit.read_text(encoding="utf-8")


@pytest.mark.parametrize("user, message", [
    ("root", "must not run as root"),
    ("Bad User", "is not a user name"),
])
def test_a_bad_user_is_refused_before_anything_is_written(tmp_path: Path, user: str,
                                                          message: str) -> None:
    result = _init(tmp_path, "init", "--systemd", "--user", user)
    assert result.exit_code == 1 and message in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_what_systemd_cannot_read_is_refused(tmp_path: Path) -> None:
    service = Service(command=CLI, workdir=tmp_path / "a\nb", config=None, archive="c.db",
                      out="site")
    with pytest.raises(ConfigError, match="control characters"):
        systemd_unit(service)
    for program in ('/opt/my "caixun"/bin/python', "/opt/caixun\\1/bin/python",
                    "/opt/$caixun/bin/python"):
        service = Service(command=(program, "-m", "caixun.cli"), workdir=tmp_path,
                          config=None, archive="c.db", out="site")
        with pytest.raises(ConfigError, match="no program whose path has a quote"):
            systemd_unit(service)


# --- GitHub Pages -------------------------------------------------------------------------


def _workflow(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _step_names(steps: list[dict[str, Any]]) -> list[str]:
    """Each step as the action it uses, "install", or the caixun command it runs."""
    names = []
    for step in steps:
        if "uses" in step:
            names.append(step["uses"].split("@")[0])
            continue
        words = shlex.split(step["run"])
        names.append("install" if words[:4] == ["python", "-m", "pip", "install"]
                     else next(word for word in words if word in main.commands))
    return names


def test_the_workflow_fetches_builds_keeps_the_archive_and_publishes(tmp_path: Path) -> None:
    (tmp_path / "caixun.toml").write_text(
        '[archive]\npath = "data/news.db"\n[site]\nout = "public"\n'
        'url = "https://me.github.io/news"\n', encoding="utf-8")
    result = _init(tmp_path, "init", "--github-pages")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr  # [site] url is set
    data = _workflow(tmp_path / ".github" / "workflows" / "caixun.yml")

    triggers = data[True]  # YAML 1.1 (PyYAML) reads the key `on` as true; GitHub as "on"
    assert triggers["schedule"] == [{"cron": "7,37 * * * *"}]
    assert "workflow_dispatch" in triggers
    assert data["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    assert data["concurrency"]["cancel-in-progress"] is False
    assert data["env"] == {"CAIXUN": f"caixun=={__version__}", "CAIXUN_ARCHIVE": "data/news.db",
                           "CAIXUN_SITE": "public"}

    [job] = data["jobs"].values()
    assert job["environment"]["name"] == "github-pages"
    steps = job["steps"]
    assert _step_names(steps) == [
        "actions/checkout", "actions/setup-python", "install", "actions/cache/restore",
        "fetch", "build", "actions/cache/save", "actions/configure-pages",
        "actions/upload-pages-artifact", "actions/deploy-pages"]
    assert steps[1]["with"]["python-version"] == "{}.{}".format(*sys.version_info[:2])
    restore, save = steps[3], steps[6]
    key = restore["with"]["key"]
    assert "${{ github.run_id }}" in key and key == save["with"]["key"]  # a new entry per run
    assert key.startswith(restore["with"]["restore-keys"])  # ... restoring the latest one
    assert restore["with"]["path"] == save["with"]["path"] == \
        "${{ env.CAIXUN_ARCHIVE }}\n${{ env.CAIXUN_SITE }}\n"
    assert save["if"] == "${{ !cancelled() }}"
    assert steps[4]["continue-on-error"] is True  # one failed source publishes the others
    assert steps[8]["with"]["path"] == "${{ env.CAIXUN_SITE }}"
    assert steps[9]["id"] == "deployment"
    assert job["environment"]["url"] == "${{ steps.deployment.outputs.page_url }}"


def test_the_workflows_commands_are_real(tmp_path: Path) -> None:
    """Every caixun command line in the workflow is one the command line accepts."""
    assert _init(tmp_path, "init", "--github-pages", "prod.toml").exit_code == 0
    data = _workflow(tmp_path / ".github" / "workflows" / "caixun.yml")
    assert data["env"]["CAIXUN_CONFIG"] == "prod.toml"
    env = data["env"]
    runs = [step["run"] for step in data["jobs"]["publish"]["steps"]
            if step.get("run", "").startswith("caixun ")]
    assert len(runs) == 2
    for run in runs:
        args = [env.get(word[1:], word) for word in shlex.split(run)[1:]]  # "$CAIXUN_…"
        assert args[:2] == ["--config", "prod.toml"]
        checked = _init(tmp_path, *args, "--help")
        assert checked.exit_code == 0, (run, checked.output)


def test_a_site_fed_by_its_posts_imports_them_instead_of_fetching(tmp_path: Path) -> None:
    """import.paths and no [[sources]]: the posts committed to the repository are
    imported (by a command line the CLI accepts), and nothing is fetched."""
    (tmp_path / "caixun.toml").write_text(
        '[site]\nurl = "https://me.github.io/news"\n'
        '[import]\npaths = ["_posts", "old posts/2021"]\n', encoding="utf-8")
    assert _init(tmp_path, "init", "--github-pages").exit_code == 0
    data = _workflow(tmp_path / ".github" / "workflows" / "caixun.yml")
    steps = data["jobs"]["publish"]["steps"]
    assert _step_names(steps)[3:6] == ["actions/cache/restore", "import", "build"]
    args = [data["env"].get(word[1:], word) for word in shlex.split(steps[4]["run"])[1:]]
    assert args == ["--archive", "caixun.db", "import", "_posts", "old posts/2021"]
    assert _init(tmp_path, *args[:-2], "--help").exit_code == 0
    with_sources = tmp_path / "more"
    with_sources.mkdir()
    (with_sources / "caixun.toml").write_text(
        '[import]\npaths = ["_posts"]\n\n[[sources]]\nname = "cls"\nkind = "cls"\n',
        encoding="utf-8")
    assert _init(with_sources, "init", "--github-pages").exit_code == 0
    names = _step_names(_workflow(with_sources / ".github" / "workflows" / "caixun.yml")
                        ["jobs"]["publish"]["steps"])
    assert names[3:7] == ["actions/cache/restore", "import", "fetch", "build"]


def test_a_database_archive_comes_from_a_secret_and_is_not_cached(tmp_path: Path) -> None:
    pages = Pages(version="1.0", python="3.12", archive="postgresql://news:pw@db/caixun",
                  out="site")
    text = pages_workflow(pages)
    assert "pw@" not in text and "actions/cache" not in text
    data = yaml.safe_load(text)
    assert data["env"]["CAIXUN_ARCHIVE"] == "${{ secrets.CAIXUN_ARCHIVE }}"


def test_the_default_site_url_is_warned_about(tmp_path: Path) -> None:
    result = _init(tmp_path, "init", "--github-pages")
    assert result.exit_code == 0
    assert "warning: [site] url is http://127.0.0.1:8000" in result.stderr


# --- overwriting --------------------------------------------------------------------------


@pytest.mark.parametrize("flag, written", [
    ("--systemd", "caixun.service"),
    ("--github-pages", ".github/workflows/caixun.yml"),
])
def test_nothing_is_overwritten_without_force(tmp_path: Path, flag: str, written: str) -> None:
    (tmp_path / "caixun.toml").write_text("# my settings\n", encoding="utf-8")
    assert _init(tmp_path, "init", flag).exit_code == 0
    target = tmp_path / written
    first = target.read_text(encoding="utf-8")
    target.write_text("edited\n", encoding="utf-8")
    again = _init(tmp_path, "init", flag)
    assert again.exit_code == 1 and f"{written} exists; use --force" in again.stderr
    assert target.read_text(encoding="utf-8") == "edited\n"
    assert _init(tmp_path, "init", flag, "--force").exit_code == 0
    assert target.read_text(encoding="utf-8") == first
    # caixun.toml is the user's: kept, --force or not.
    assert (tmp_path / "caixun.toml").read_text(encoding="utf-8") == "# my settings\n"


def test_a_refusal_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "caixun.yml").write_text("mine\n", encoding="utf-8")
    result = _init(tmp_path, "init", "--systemd", "--github-pages")
    assert result.exit_code == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".github"]


def test_the_settings_file_is_given_once(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("", encoding="utf-8")
    result = _init(tmp_path, "--config", "a.toml", "init", "--systemd", "b.toml")
    assert result.exit_code == 2 and "not both" in result.stderr
    assert _init(tmp_path, "--config", "a.toml", "init", "--systemd").exit_code == 0
    text = (tmp_path / "caixun.service").read_text(encoding="utf-8")
    assert f" --config {tmp_path / 'a.toml'} --archive {tmp_path / 'caixun.db'} run\n" in text
    assert not (tmp_path / "caixun.toml").exists()

"""Bad post files: each gets a clear message naming it; the good ones are imported."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from caixun.archive import open_archive
from caixun.cli import main
from caixun.errors import PostFormatError
from caixun.sources.jekyll import parse_post
from conftest import POSTS

GOOD = ["2021-12-08-202112082206672930.md", "2022-01-11-NW202201112243109259.md"]


@pytest.fixture
def messy_dir(tmp_path: Path) -> Path:
    posts = tmp_path / "posts"
    nested = posts / "nested"
    nested.mkdir(parents=True)
    shutil.copy(POSTS / GOOD[0], posts / GOOD[0])
    shutil.copy(POSTS / GOOD[1], nested / GOOD[1])
    (posts / "2021-12-09-unreadable.md").symlink_to(tmp_path / "gone.md")  # dangling
    (posts / "2021-12-09-binary.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    (posts / "2021-12-09-empty.md").write_bytes(b"")
    (posts / "2021-12-09-unclosed.md").write_text(
        "---\nlayout: post\ntitle: \"没有结束\"\ndate: 2021-12-09 10:00:00 +0800\n\n正文\n",
        encoding="utf-8")
    (posts / "2021-12-09-202112092206000001.md").write_text(
        '---\nlayout: post\ntitle: "他说"不"的时候"\ndate: 2021-12-09 10:00:00 +0800\n'
        "categories: emnews\ntags: 东财滚动新闻\n---\n\n引号没有转义。\n\n"
        "<http://finance.eastmoney.com/news/1344,202112092206000001.html>\n",
        encoding="utf-8")
    (posts / "notes.txt").write_text("not a post, not read", encoding="utf-8")
    return posts


def test_import_reports_each_bad_file_and_imports_the_rest(messy_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    result = CliRunner().invoke(main, ["--archive", str(db), "import", str(messy_dir)])
    assert result.exit_code == 0, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 4
    expect = {
        "2021-12-09-unreadable.md": "cannot read",
        "2021-12-09-binary.md": "not UTF-8 text (byte 0x89 at offset 0)",
        "2021-12-09-empty.md": "empty file",
        "2021-12-09-unclosed.md": "front matter is not closed",
    }
    for name, problem in expect.items():
        [line] = [ln for ln in errors if name in ln]
        assert problem in line and line.endswith("(skipped)")
    [warning] = [ln for ln in result.stderr.splitlines() if ln.startswith("warning:")]
    assert "2021-12-09-202112092206000001.md" in warning and "unescaped quotes" in warning
    assert result.stderr.splitlines()[-1] == (
        "imported 7 files: 3 new, 0 updated, 0 unchanged, 1 repaired, 4 skipped")
    with open_archive(db) as archive:
        assert archive.count() == 3
        repaired = archive.get("jekyll:202112092206000001")
        assert repaired is not None and repaired.title == '他说"不"的时候'


def test_strict_import_fails_when_files_were_skipped(messy_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--archive", str(tmp_path / "a.db"), "import", "--strict", str(messy_dir)])
    assert result.exit_code == 1
    assert "Error: --strict: some files were skipped or repaired" in result.stderr
    with open_archive(tmp_path / "a.db") as archive:
        assert archive.count() == 3  # strict reports; it does not throw the good ones away


def test_a_repaired_title_exports_as_valid_yaml(messy_dir: Path, tmp_path: Path) -> None:
    db, out = str(tmp_path / "a.db"), tmp_path / "out"
    CliRunner().invoke(main, ["--archive", db, "import", str(messy_dir)])
    result = CliRunner().invoke(main, ["--archive", db, "export", "jekyll", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "2021-12-09-202112092206000001.md").read_text(encoding="utf-8")
    assert 'title: "他说\\"不\\"的时候"\n' in text
    for name in GOOD:
        assert (out / name).read_bytes() == (POSTS / name).read_bytes()


@pytest.mark.parametrize("text, problem", [
    ("layout: post\n", "no front matter"),
    ("---\nlayout: post\n", "front matter is not closed"),
    ("---\n{not yaml at all\n---\nbody\n", "not 'key: value'"),
    ("---\ntitle: \"x\"\ndate: soon\n---\nbody\n", "no usable date"),
    ("\x00\x01\x02", "binary data"),
    ("   \n\n", "empty file"),
])
def test_unreadable_posts_raise_a_named_error(text: str, problem: str) -> None:
    with pytest.raises(PostFormatError, match=problem) as info:
        parse_post(text, "x.md", "posts/2021-12-09-x.md")
    assert str(info.value).startswith("posts/2021-12-09-x.md: ")


def test_a_bad_file_name_is_reported() -> None:
    with pytest.raises(PostFormatError, match="file name"):
        parse_post("---\ntitle: \"x\"\ndate: 2021-12-09\n---\nbody\n", "README")


def test_crlf_and_bom_are_repaired_not_fatal() -> None:
    text = "\ufeff---\r\nlayout: post\r\ntitle: \"标题\"\r\ndate: 2021-12-09 10:00:00 +0800\r\n" \
           "categories: emnews\r\ntags: 东财滚动新闻\r\n---\r\n\r\n正文\r\n"
    parsed = parse_post(text, "2021-12-09-1.md")
    assert parsed.article.title == "标题" and parsed.article.body_text == "正文"
    assert parsed.repairs == ("byte-order mark removed", "CRLF line endings converted to LF")


def test_unsafe_category_is_made_safe_and_remembered(tmp_path: Path) -> None:
    posts = tmp_path / "posts"
    posts.mkdir()
    for n, (category, outlet) in enumerate([
        ("21shijijingjibaodao  nancailicaitong", "21世纪经济报道  南财理财通"),
        ("anxinguojizhengquan(xianggang)", "安信国际证券(香港)"),
        ("Career In touxingPEVC", "Career In 投行PEVC"),
    ]):
        (posts / f"2022-01-1{n}-NW20220110000000000{n}.md").write_text(
            f'---\nlayout: post\ntitle: "t{n}"\ndate: 2022-01-1{n} 09:00:00 +0800\n'
            f"categories: {category}\ntags: {outlet}新闻\n---\n<p>x</p>\n\n<>\n",
            encoding="utf-8")
    db = tmp_path / "a.db"
    result = CliRunner().invoke(main, ["--archive", str(db), "import", str(posts)])
    assert result.exit_code == 0
    assert result.stderr.count("is not URL-safe") == 3
    with open_archive(db) as archive:
        assert archive.outlet_aliases() == {
            "21shijijingjibaodao  nancailicaitong": "21shijijingjibaodao-nancailicaitong",
            "Career In touxingPEVC": "career-in-touxingpevc",
            "anxinguojizhengquan(xianggang)": "anxinguojizhengquan-xianggang",
        }
        assert archive.outlets()["anxinguojizhengquan-xianggang"] == "安信国际证券(香港)"

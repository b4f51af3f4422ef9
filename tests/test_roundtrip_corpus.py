"""Import the whole real corpus, export it, and compare the files byte for byte."""

from __future__ import annotations

from pathlib import Path

from caixun.archive import SqliteArchive
from caixun.importer import FileOutcome, import_posts
from caixun.publish.jekyll import write_posts
from conftest import POSTS

BROKEN = "-202205262391921712.md"


def _import_and_export(archive: SqliteArchive, out: Path) -> list[FileOutcome]:
    outcomes: list[FileOutcome] = []
    import_posts([POSTS], archive, outcomes.append)
    list(write_posts(archive.iter_articles(), out))
    return outcomes


def test_every_valid_post_exports_byte_for_byte(archive: SqliteArchive, tmp_path: Path) -> None:
    outcomes = _import_and_export(archive, tmp_path / "out")
    invalid = {o.path.name for o in outcomes if o.repairs or o.problem}
    identical, different = [], []
    for source in sorted(POSTS.iterdir()):
        exported = tmp_path / "out" / source.name
        if exported.exists() and exported.read_bytes() == source.read_bytes():
            identical.append(source.name)
        else:
            different.append(source.name)
    print(f"\n{len(identical)} of {len(identical) + len(different)} corpus posts "
          f"exported byte for byte; differing: {different}")
    assert len(identical) + len(different) == 117
    assert set(different) <= invalid, "a post reported valid did not round-trip"
    assert different == [BROKEN]
    assert archive.count() == 117


def test_the_broken_post_is_repaired_as_explained(archive: SqliteArchive, tmp_path: Path) -> None:
    """The one invalid post differs only in the ways its warnings announce."""
    outcomes = _import_and_export(archive, tmp_path / "out")
    broken = next(o for o in outcomes if o.path.name == BROKEN)
    assert len(broken.repairs) == 4
    assert "file name has no date" in broken.repairs[0]
    assert "title is empty" in broken.repairs[1]
    assert "used 2022-05-26 from the id" in broken.repairs[2]
    assert "sanitized" in broken.repairs[3]

    # 1. The file gets a dated name: the date comes from the id.
    exported = tmp_path / "out" / "2022-05-26-202205262391921712.md"
    text = exported.read_text(encoding="utf-8")
    original = (POSTS / BROKEN).read_text(encoding="utf-8")
    # 2. The empty title is replaced by the digest's first sentence.
    assert 'title: "据霍尼韦尔官网消息，5月24日，霍尼韦尔宣布为蔚来旗下ET7新能源汽车提供' in text
    # 3. The empty date becomes midnight Beijing time of the id's day.
    assert "\ndate: 2022-05-26 00:00:00 +0800\n" in text
    # 4. The body comes back as it was read, byte for byte: a post is its
    #    owner's data (the site shows it sanitized) …
    body = original[original.index("\n<p style="):]
    assert text.endswith(body)
    # … and with sanitize=True sanitized: comments, styles and the invalid span
    #    href go; text and images stay; links get rel="nofollow noopener".
    list(write_posts(archive.iter_articles(), tmp_path / "clean", sanitize=True))
    text = (tmp_path / "clean" / exported.name).read_text(encoding="utf-8")
    assert "<!--" in original and "<!--" not in text
    assert 'style="' in original and 'style="' not in text
    assert 'web="1"' in original and 'web="1"' not in text
    assert text.count("<img") == original.count("<img") == 4
    assert 'rel="nofollow noopener"' in text
    assert "《&lt;蒙特利尔议定书&gt;基加利修正案》" in text
    # Everything else is as it was: quote digest, empty link, footer.
    assert text.endswith(original[original.index("\n\n<>"):])
    assert "\n> 据霍尼韦尔官网消息" in text

    article = archive.get("jekyll:202205262391921712")
    assert article is not None
    assert article.body_raw is not None and "EM_StockImg_Start" in article.body_raw
    assert "EM_StockImg_Start" not in article.body_html


def test_corpus_fields_are_read_correctly(archive: SqliteArchive) -> None:
    import_posts([POSTS], archive)
    media = archive.get("jekyll:NW202201112243109259")
    assert media is not None
    assert (media.outlet, media.outlet_slug) == ("人民邮电报", "renminyoudianbao")
    assert media.title == "工信部科技司：以更加精准务实举措抓好产业科技创新工作"
    assert media.published_at.isoformat() == "2022-01-11T09:53:30+08:00"
    assert media.url == "http://finews.zning.xyz/html_News/NewsShare.html?infoCode=NW202201112243109259"
    assert media.body_html.startswith("<p>2021年，工业和信息化部科技司")
    assert "<p" not in media.body_text and "（文章来源：人民邮电报）" in media.body_text

    rolling = archive.get("jekyll:202112082206796814")
    assert rolling is not None
    assert (rolling.outlet, rolling.outlet_slug) == ("东财滚动新闻", "emnews")
    assert "精度满足<1%" in rolling.body_text
    assert "精度满足&lt;1%" in rolling.body_html  # escaped when shown, verbatim in the post
    assert rolling.digest == rolling.body_text

    naive = archive.get("jekyll:202112082206965422")  # "date:" without an offset
    assert naive is not None and naive.published_at.isoformat() == "2021-12-08T13:16:19+08:00"
    assert naive.post_style is not None and naive.post_style.date_offset is None

    no_link = archive.get("jekyll:202112082206870651")  # "<>": an empty share link
    assert no_link is not None and no_link.url == ""

    assert archive.outlets() == {"emnews": "东财滚动新闻", "renminyoudianbao": "人民邮电报",
                                 "sitenews": "站长消息"}


def test_a_large_import_in_worker_processes_equals_a_sequential_one(tmp_path: Path) -> None:
    """Past 1,000 files the posts are parsed and segmented on every core."""
    from caixun.archive import open_archive
    from caixun.importer import PARALLEL_FROM

    posts = tmp_path / "posts"
    posts.mkdir()
    sources = sorted(POSTS.glob("2021-12-08-*.md"))
    for n in range(PARALLEL_FROM + 50):
        source = sources[n % len(sources)]
        # Each copy links an article of its own: posts of one article are one article.
        own_id = source.stem.rsplit("-", 1)[-1]
        (posts / f"2021-12-08-{n:018d}.md").write_text(
            source.read_text(encoding="utf-8").replace(own_id, f"{n:018d}"), encoding="utf-8")
    results = []
    for jobs in (1, 2):
        with open_archive(tmp_path / f"jobs{jobs}.db") as archive:
            report = import_posts([posts], archive, jobs=jobs)
            assert report.counts["new"] == PARALLEL_FROM + 50
            results.append([(a.uid, a.title, a.body_html) for a in archive.iter_articles()])
            assert len(archive.search("人民币", limit=5000)) > 0
    assert results[0] == results[1]

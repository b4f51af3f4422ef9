"""`caixun serve`: a built site over a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from caixun.errors import ConfigError
from caixun.serve import create_app, listen, serve, server_config

ARTICLE = "renminyoudianbao/2022/01/11/NW202201112243109259.html"
SECRET = b"TOP-SECRET-outside-the-site"
NOT_FOUND_PAGE = '<!doctype html><html lang="zh-CN"><title>找不到</title><p>这一页不在本站。</p></html>\n'

SITE_FILES: dict[str, str | bytes] = {
    "index.html": '<!doctype html><html lang="zh-CN"><title>财讯</title><p>首页</p></html>\n',
    ARTICLE: '<!doctype html><html lang="zh-CN"><title>工信部：5G基站已超142万个</title>'
    "<p>人民邮电报讯 截至2021年底，我国累计建成5G基站142.5万个。</p></html>\n",
    "2022/01/11/index.html": '<!doctype html><html lang="zh-CN"><title>2022年1月11日</title></html>\n',
    "feed.xml": '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"/>\n',
    "renminyoudianbao/feed.xml": '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"/>\n',
    "sitemap.xml": '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"/>\n',
    "assets/style.css": "body { font-family: sans-serif; }\n",
    "assets/search.js": "export const ready = true;\n",
    "search/index.json": '{"terms": ["央行", "茅台"]}\n',
    "404.html": NOT_FOUND_PAGE,
    "robots.txt": "User-agent: *\nAllow: /\n",
    "big.html": "<!doctype html><html lang=\"zh-CN\">"
    + "".join(f"<p>第{i}条 央行宣布降准0.5个百分点，释放长期资金约1.2万亿元。</p>" for i in range(400))
    + "</html>\n",
    ".caixun-tmp/secret.html": "<p>half-written page</p>\n",
    ".hidden.html": "<p>hidden</p>\n",
}


def _write_site(site: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        path.write_bytes(data)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A built site in tmp_path/site, with a secret file beside (not inside) it."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    _write_site(tmp_path / "site", SITE_FILES)
    return tmp_path / "site"


@contextmanager
def running(app: Starlette) -> Iterator[str]:
    """Run app on a real uvicorn server with ``caixun serve``'s settings, on a free port.

    Yields its base URL. Binding port 0 ourselves gives a free port without a race.
    """
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def client_for(site_dir: Path, extra_routes: Sequence[BaseRoute] = ()) -> Iterator[httpx.Client]:
    with running(create_app(site_dir, extra_routes)) as base_url:
        with httpx.Client(base_url=base_url, timeout=10) as client:
            yield client


@pytest.fixture
def client(site: Path) -> Iterator[httpx.Client]:
    with client_for(site) as client:
        yield client


def _raw_get(client: httpx.Client, target: str) -> httpx.Response:
    # httpx removes "/../" from URLs; the "target" extension puts the request
    # line on the wire exactly as a hostile client would.
    return client.get("/", extensions={"target": target.encode()})


# -- pages and content types -------------------------------------------------


def test_root_serves_index_html(client: httpx.Client, site: Path) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.content == (site / "index.html").read_bytes()


def test_nested_article_page_keeps_its_chinese_text(client: httpx.Client, site: Path) -> None:
    response = client.get("/" + ARTICLE)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.content == (site / ARTICLE).read_bytes()
    assert "我国累计建成5G基站142.5万个" in response.text


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/feed.xml", "application/atom+xml"),
        ("/renminyoudianbao/feed.xml", "application/atom+xml"),
        ("/sitemap.xml", "application/xml"),
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/search.js", "text/javascript; charset=utf-8"),
        ("/search/index.json", "application/json"),
        ("/robots.txt", "text/plain; charset=utf-8"),
    ],
)
def test_content_types(client: httpx.Client, site: Path, path: str, content_type: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.content == (site / path.lstrip("/")).read_bytes()


# -- directories ---------------------------------------------------------------


def test_directory_url_serves_its_index(client: httpx.Client, site: Path) -> None:
    response = client.get("/2022/01/11/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.content == (site / "2022/01/11/index.html").read_bytes()


def test_directory_url_without_slash_redirects_to_slash_form(client: httpx.Client) -> None:
    response = client.get("/2022/01/11")
    assert response.status_code in (301, 302, 307, 308)
    assert httpx.URL(response.headers["location"]).path == "/2022/01/11/"


def test_directory_without_index_is_404_not_a_listing(client: httpx.Client) -> None:
    for path in ("/assets/", "/renminyoudianbao/2022/01/11/"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.text == NOT_FOUND_PAGE
        assert "style.css" not in response.text and "NW2022" not in response.text


# -- not found -------------------------------------------------------------------


def test_missing_path_gets_the_sites_404_page(client: httpx.Client) -> None:
    response = client.get("/2022/01/12/nothing-here.html")
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == NOT_FOUND_PAGE


def test_site_without_404_page_gets_a_chinese_fallback(tmp_path: Path) -> None:
    _write_site(tmp_path, {"index.html": "<p>首页</p>"})
    with client_for(tmp_path) as client:
        response = client.get("/missing.html")
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "页面不存在" in response.text


@pytest.mark.parametrize(
    "path", ["/.caixun-tmp/secret.html", "/.caixun-tmp/", "/.caixun-tmp", "/.hidden.html"]
)
def test_dotfiles_and_dot_directories_are_404(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.text == NOT_FOUND_PAGE


def test_other_methods_are_refused(client: httpx.Client, site: Path) -> None:
    response = client.post("/index.html", content=b"x")
    assert response.status_code == 405
    assert (site / "index.html").read_bytes() == SITE_FILES["index.html"].encode()  # type: ignore[union-attr]


# -- traversal -------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/assets/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/..%2f..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
    ],
)
def test_traversal_never_leaves_the_site(client: httpx.Client, target: str) -> None:
    response = _raw_get(client, target)
    assert response.status_code == 404
    assert SECRET not in response.content


def test_absolute_path_is_looked_up_inside_the_site(client: httpx.Client, site: Path) -> None:
    secret = site.parent / "secret.txt"
    response = _raw_get(client, "/" + secret.as_posix())
    assert response.status_code == 404
    assert SECRET not in response.content


def test_symlink_pointing_out_of_the_site_is_404(client: httpx.Client, site: Path) -> None:
    (site / "leak.txt").symlink_to(site.parent / "secret.txt")
    response = client.get("/leak.txt")
    assert response.status_code == 404
    assert SECRET not in response.content


def test_dot_segments_that_stay_inside_the_site_still_resolve(client: httpx.Client, site: Path) -> None:
    # The guards must not break ordinary resolution: a ".." that stays inside
    # is collapsed before the dotfile rule sees the path.
    for target, name in [("/assets/%2e%2e/robots.txt", "robots.txt"), ("/assets/./style.css", "assets/style.css")]:
        response = _raw_get(client, target)
        assert response.status_code == 200
        assert response.content == (site / name).read_bytes()


# -- gzip, HEAD, conditional GET -----------------------------------------------------


def test_large_page_is_gzipped_when_the_client_accepts_it(client: httpx.Client, site: Path) -> None:
    original = (site / "big.html").read_bytes()
    assert len(original) > 10_000
    with client.stream("GET", "/big.html", headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "accept-encoding" in response.headers["vary"].lower()
    assert len(raw) < len(original) // 2
    assert gzip.decompress(raw) == original


def test_gzip_body_decodes_to_the_file_bytes(client: httpx.Client, site: Path) -> None:
    response = client.get("/big.html", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.content == (site / "big.html").read_bytes()


def test_no_gzip_when_the_client_does_not_accept_it(client: httpx.Client, site: Path) -> None:
    original = (site / "big.html").read_bytes()
    response = client.get("/big.html", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in response.headers
    assert response.headers["content-length"] == str(len(original))
    assert response.content == original


def test_small_files_are_not_gzipped(client: httpx.Client, site: Path) -> None:
    response = client.get("/robots.txt", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in response.headers
    assert response.content == (site / "robots.txt").read_bytes()


def test_head_gives_headers_without_body(client: httpx.Client, site: Path) -> None:
    size = (site / ARTICLE).stat().st_size
    response = client.head("/" + ARTICLE, headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-length"] == str(size)
    assert response.content == b""


def test_head_on_a_missing_path_is_404(client: httpx.Client) -> None:
    response = client.head("/nothing.html")
    assert response.status_code == 404
    assert response.content == b""


def test_unchanged_file_answers_304_to_a_conditional_get(client: httpx.Client) -> None:
    first = client.get("/feed.xml")
    again = client.get("/feed.xml", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


# -- extra routes ------------------------------------------------------------------


async def _ping(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "q": request.query_params.get("q", "")})


def test_extra_routes_come_before_the_site(site: Path) -> None:
    _write_site(site, {"api/ping": "a file that must not shadow the API"})
    with client_for(site, [Route("/api/ping", _ping)]) as client:
        api = client.get("/api/ping", params={"q": "央行"})
        page = client.get("/robots.txt")
    assert api.status_code == 200
    assert api.json() == {"ok": True, "q": "央行"}
    assert page.status_code == 200
    assert page.content == (site / "robots.txt").read_bytes()


# -- errors ------------------------------------------------------------------------


def test_missing_site_dir_raises_config_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "public"
    with pytest.raises(ConfigError) as excinfo:
        create_app(missing)
    assert str(missing) in str(excinfo.value)
    assert "caixun build" in str(excinfo.value)


def test_site_dir_that_is_a_file_raises_config_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "public"
    not_a_dir.write_text("oops")
    with pytest.raises(ConfigError, match="not a directory"):
        create_app(not_a_dir)


def test_serve_refuses_a_missing_site_dir_before_listening(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="caixun build"):
        serve(tmp_path / "public", port=0)


def test_serve_on_a_busy_port_raises_config_error(site: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            serve(site, port=port)


def test_a_file_replaced_after_it_was_looked_up_is_sent_whole(tmp_path: Path) -> None:
    """A rebuild renames a new page over the old one between StaticFiles' lookup
    (stat) and the sending: the length and the bytes are those of one file."""
    import asyncio
    import os

    from caixun.serve import SiteFiles

    page = tmp_path / "index.html"
    page.write_text("<p>旧</p>", encoding="utf-8")
    looked_up = os.stat(page)
    new = tmp_path / "new.html"
    new.write_bytes(("<p>" + "新" * 30_000 + "</p>").encode("utf-8"))  # larger than a chunk
    os.replace(new, page)
    files = SiteFiles(directory=tmp_path, html=True)
    scope = {"type": "http", "method": "GET", "headers": [], "path": "/"}
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        await asyncio.sleep(3600)  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    response = files.file_response(page, looked_up, scope)
    asyncio.run(response(scope, receive, send))  # type: ignore[arg-type]
    headers = dict(sent[0]["headers"])  # type: ignore[arg-type]
    body = b"".join(m.get("body", b"") for m in sent[1:])  # type: ignore[misc]
    assert body == page.read_bytes()
    assert int(headers[b"content-length"]) == len(body)
    assert not [fd for fd in os.listdir("/proc/self/fd")
                if os.path.realpath(f"/proc/self/fd/{fd}") == str(page)]  # closed

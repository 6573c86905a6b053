"""HttpSource: protocol cases over httpx.MockTransport, then a real loopback HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cowdns.errors import ConfigError, SourceError
from cowdns.store.sources.file import FileSource
from cowdns.store.sources.http import HttpSource
from cowdns.store.sources.urls import open_source
from tests.etcd_server import free_port

URL = "http://tables.example.com/cowdns/table.json"
TABLE = {"www.example.com": ["192.0.2.1"], "v6.example.com": {"ips": ["2001:db8::1"], "ttl": 60}}
BODY = json.dumps(TABLE).encode()

Handler = Callable[[httpx.Request], httpx.Response]


def mock_source(handler: Handler, url: str = URL) -> HttpSource:
    return HttpSource(url, httpx.AsyncClient(transport=httpx.MockTransport(handler)))


class EtagServer:
    """Serves BODY with ETag "v1" and honours If-None-Match; records what it was sent."""

    def __init__(self) -> None:
        self.body = BODY
        self.etag: str | None = '"v1"'
        self.seen: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.headers.get("If-None-Match"))
        headers = {"ETag": self.etag} if self.etag else {}
        if self.etag and request.headers.get("If-None-Match") == self.etag:
            return httpx.Response(304, headers=headers)
        return httpx.Response(200, content=self.body, headers=headers)


async def test_etag_makes_an_unchanged_table_one_304() -> None:
    server = EtagServer()
    source = mock_source(server)
    fetched = await source.fetch()
    assert fetched is not None
    assert fetched.entries == TABLE
    assert fetched.version == '"v1"'

    assert await source.fetch() is None
    assert server.seen == [None, '"v1"']

    server.body, server.etag = b'{"www.example.com": ["192.0.2.2"]}', '"v2"'
    changed = await source.fetch()
    assert changed is not None and changed.version == '"v2"'
    assert changed.entries == {"www.example.com": ["192.0.2.2"]}
    assert server.seen[-1] == '"v1"'

    source.forget_version()
    forced = await source.fetch()
    assert forced is not None and forced.entries == changed.entries
    assert server.seen[-1] is None
    await source.aclose()


async def test_without_etag_the_version_is_a_digest_of_the_body() -> None:
    server = EtagServer()
    server.etag = None
    source = mock_source(server)
    fetched = await source.fetch()
    assert fetched is not None
    assert fetched.version == "sha256:" + hashlib.sha256(BODY).hexdigest()[:16]
    assert await source.fetch() is None  # same body: nothing to rebuild
    assert server.seen == [None, None]
    server.body = b'{"www.example.com": ["192.0.2.9"]}'
    changed = await source.fetch()
    assert changed is not None and changed.version != fetched.version


async def test_a_server_ignoring_if_none_match_still_reads_as_unchanged() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=BODY, headers={"ETag": 'W/"same"'})

    source = mock_source(handler)
    assert await source.fetch() is not None
    assert await source.fetch() is None


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(500), "HTTP 500 Internal Server Error"),
        (httpx.Response(404), "HTTP 404 Not Found"),
        (httpx.Response(304), "HTTP 304"),  # a 304 we did not ask for
        (httpx.Response(200, content=b"<html>oops</html>"), "invalid JSON at line 1 column 1"),
        (httpx.Response(200, content=b'["192.0.2.1"]'), "expected one JSON object"),
        (httpx.Response(200, content=b'{"a": "\xc3\x28"}'), "not UTF-8"),
    ],
    ids=["500", "404", "unasked-304", "garbage", "not-an-object", "not-utf8"],
)
async def test_bad_answers_are_one_line_source_errors(
    response: httpx.Response, message: str
) -> None:
    source = mock_source(lambda request: response)
    with pytest.raises(SourceError) as caught:
        await source.fetch()
    text = str(caught.value)
    assert text.startswith(URL + ": ")
    assert message in text
    assert "\n" not in text


async def test_a_failed_fetch_keeps_nothing_of_the_bad_answer() -> None:
    answers = [
        httpx.Response(200, content=b"{broken", headers={"ETag": '"bad"'}),
        httpx.Response(200, content=BODY, headers={"ETag": '"good"'}),
    ]
    sent: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("If-None-Match"))
        return answers.pop(0)

    source = mock_source(handler)
    with pytest.raises(SourceError):
        await source.fetch()
    fetched = await source.fetch()
    assert fetched is not None and fetched.version == '"good"'
    assert sent == [None, None]  # the bad body's ETag was never sent back


async def test_connection_errors_are_translated_at_the_boundary() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    source = mock_source(handler)
    with pytest.raises(SourceError, match="Connection refused") as caught:
        await source.fetch()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_description_never_shows_credentials() -> None:
    source = mock_source(
        lambda request: httpx.Response(500),
        url="https://reader:s3cret@tables.example.com/table.json",
    )
    assert source.description == "https://tables.example.com/table.json"
    with pytest.raises(SourceError) as caught:
        await source.fetch()
    assert "s3cret" not in str(caught.value)


# -- a real HTTP server on loopback ---------------------------------------------------


class _TableHandler(http.server.BaseHTTPRequestHandler):
    """GET serves the file with an ETag from its content; If-None-Match → 304."""

    table_path: Path
    statuses: list[int]

    def do_GET(self) -> None:
        body = self.table_path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:12] + '"'
        if self.headers.get("If-None-Match") == etag:
            self.statuses.append(304)
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.statuses.append(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


class TableServer:
    def __init__(self, path: Path, statuses: list[int], url: str) -> None:
        self.path = path
        self.statuses = statuses
        self.url = url


@pytest.fixture
def table_server(tmp_path: Path) -> Iterator[TableServer]:
    path = tmp_path / "table.json"
    path.write_bytes(BODY)
    statuses: list[int] = []
    handler = type("Handler", (_TableHandler,), {"table_path": path, "statuses": statuses})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield TableServer(path, statuses, f"http://127.0.0.1:{server.server_port}/table.json")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_real_server_etag_round_trip(table_server: TableServer) -> None:
    source = HttpSource(table_server.url)
    try:
        fetched = await source.fetch()
        assert fetched is not None and fetched.entries == TABLE
        assert await source.fetch() is None
        table_server.path.write_text(json.dumps({"www.example.com": ["192.0.2.7"]}))
        changed = await source.fetch()
        assert changed is not None and changed.entries == {"www.example.com": ["192.0.2.7"]}
        assert changed.version != fetched.version
        assert table_server.statuses == [200, 304, 200]
    finally:
        await source.aclose()


async def test_real_server_down_is_a_source_error() -> None:
    source = HttpSource(f"http://127.0.0.1:{free_port()}/table.json")
    try:
        with pytest.raises(SourceError, match=r"^http://127\.0\.0\.1:\d+/table\.json: "):
            await source.fetch()
    finally:
        await source.aclose()


# -- URLs ---------------------------------------------------------------------------


def test_file_and_http_urls(tmp_path: Path) -> None:
    relative = open_source("file:tables/ip.json", tmp_path)
    assert isinstance(relative, FileSource) and relative.path == tmp_path / "tables/ip.json"
    absolute = open_source("file:/srv/ip.json", tmp_path)
    assert isinstance(absolute, FileSource) and absolute.path == Path("/srv/ip.json")
    url_form = open_source("file:///srv/ip%20table.json", tmp_path)
    assert isinstance(url_form, FileSource) and url_form.path == Path("/srv/ip table.json")
    http_source = open_source("https://tables.example.com/ip.json", tmp_path)
    assert isinstance(http_source, HttpSource)
    assert http_source.description == "https://tables.example.com/ip.json"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("tables/ip.json", "no scheme"),
        ("ftp://tables.example.com/ip.json", "unknown scheme 'ftp'"),
        ("file:", "names no file"),
        ("file://otherhost/ip.json", "another host"),
        ("http:///ip.json", "no host"),
    ],
    ids=["no-scheme", "unknown-scheme", "empty-file", "remote-file", "http-no-host"],
)
def test_bad_urls(url: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        open_source(url, tmp_path)
    assert caught.value.key == "store.url"

"""The media folder served at /media/{path} by a real `feedsvc serve`: types, validators, 304,
Range (206/416), every traversal refused with 404, large files sent without being read into
memory."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from feedsvc.serve.media import byte_range, request_segments
from tests.conftest import ServeProcess

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def _media_site(site: Path) -> Path:
    media = site / "media"
    media.mkdir()
    (media / "carte.png").write_bytes(PNG)
    (media / "notes.txt").write_text("é\n", encoding="utf-8")
    (media / "sub").mkdir()
    (media / "sub" / "deep.mp3").write_bytes(b"ID3" + b"\x00" * 100)
    (media / ".hidden").write_bytes(b"secret")
    (media / ".git").mkdir()
    (media / ".git" / "config").write_bytes(b"secret")
    (media / "passwd").symlink_to("/etc/passwd")
    (media / "inside-link.png").symlink_to("carte.png")
    (media / "outside").symlink_to(site)
    os.mkfifo(media / "pipe")
    return media


def _raw_get(server: ServeProcess, raw_path: str, headers: dict[str, str] | None = None,
             method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """A request whose path is sent exactly as written (no client-side normalization)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.config.server.port, timeout=10)
    try:
        connection.putrequest(method, raw_path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_a_media_file_is_served_with_its_type_and_validators(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    _media_site(site)
    server = serve(site / "config.toml")
    status, headers, body = server.get("/media/carte.png")
    assert status == 200 and body == PNG
    assert headers["Content-Type"] == "image/png"
    # Strong, a hash of the bytes: the same on every machine.
    assert headers["ETag"] == f'"{hashlib.blake2b(PNG, digest_size=16).hexdigest()}"'
    assert headers["Last-Modified"].endswith(" GMT")
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Cache-Control"] == "public, max-age=60"
    assert headers["Content-Length"] == str(len(PNG))
    status, head_headers, body = server.get("/media/carte.png", method="HEAD")
    assert (status, body, head_headers["ETag"]) == (200, b"", headers["ETag"])
    assert head_headers["Content-Length"] == str(len(PNG))
    assert server.get("/media/notes.txt")[1]["Content-Type"] == "text/plain; charset=utf-8"
    assert server.get("/media/sub/deep.mp3")[1]["Content-Type"] == "audio/mpeg"

    # 304: If-None-Match (a list, weak comparison), else If-Modified-Since.
    status, not_modified, body = server.get(
        "/media/carte.png", {"If-None-Match": f'"x", W/{headers["ETag"]}'})
    assert (status, body, not_modified["ETag"]) == (304, b"", headers["ETag"])
    status, _, body = server.get("/media/carte.png",
                                 {"If-Modified-Since": headers["Last-Modified"]})
    assert (status, body) == (304, b"")
    assert server.get("/media/carte.png", {"If-None-Match": '"other"'})[0] == 200

    # If-Match and If-Unmodified-Since (RFC 9110 §13.1.1, §13.1.4): 412 when they fail.
    assert server.get("/media/carte.png", {"If-Match": headers["ETag"]})[0] == 200
    assert server.get("/media/carte.png", {"If-Match": '"x", ' + headers["ETag"]})[0] == 200
    assert server.get("/media/carte.png", {"If-Match": "*"})[0] == 200
    assert server.get("/media/carte.png", {"If-Match": '"x"'})[0] == 412
    assert server.get("/media/carte.png", {"If-Match": f"W/{headers['ETag']}"})[0] == 412
    assert server.get("/media/carte.png",
                      {"If-Unmodified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"})[0] == 412
    assert server.get("/media/carte.png",
                      {"If-Unmodified-Since": headers["Last-Modified"]})[0] == 200
    assert server.get("/media/carte.png", {"If-Unmodified-Since": "garbage"})[0] == 200

    # A new version: a new ETag (the cache is keyed by the file's stat).
    (site / "media" / "carte.png").write_bytes(PNG + b"!")
    os.utime(site / "media" / "carte.png", (1_700_000_000, 1_700_000_000))
    status, changed, body = server.get("/media/carte.png",
                                       {"If-None-Match": headers["ETag"]})
    assert (status, body) == (200, PNG + b"!") and changed["ETag"] != headers["ETag"]
    assert changed["Last-Modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"


def test_ranges(site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    _media_site(site)
    server = serve(site / "config.toml")
    size = len(PNG)
    etag = server.get("/media/carte.png")[1]["ETag"]
    status, headers, body = server.get("/media/carte.png", {"Range": "bytes=0-9"})
    assert (status, body, headers["Content-Range"]) == (206, PNG[:10], f"bytes 0-9/{size}")
    assert headers["Content-Length"] == "10" and headers["ETag"] == etag
    status, headers, body = server.get("/media/carte.png", {"Range": "bytes=-5"})
    assert (status, body, headers["Content-Range"]) == \
        (206, PNG[-5:], f"bytes {size - 5}-{size - 1}/{size}")
    status, headers, body = server.get("/media/carte.png", {"Range": "bytes=1000-"})
    assert (status, body) == (206, PNG[1000:])
    status, headers, body = server.get("/media/carte.png", {"Range": "bytes=999999-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{size}"
    # If-Range naming this version: the range; another: the whole file (RFC 9110 §13.1.5).
    assert server.get("/media/carte.png", {"Range": "bytes=0-9", "If-Range": etag})[0] == 206
    status, _, body = server.get("/media/carte.png", {"Range": "bytes=0-9", "If-Range": '"x"'})
    assert (status, body) == (200, PNG)
    # Several ranges: the whole file (§14.2 allows ignoring Range); HEAD ignores Range.
    assert server.get("/media/carte.png", {"Range": "bytes=0-1,5-6"})[:3:2] == (200, PNG)
    assert server.get("/media/carte.png", {"Range": "bytes=0-9"}, method="HEAD")[0] == 200


TRAVERSALS = [
    "/media/../config.toml",
    "/media/%2e%2e/config.toml",
    "/media/%2E%2E%2Fconfig.toml",
    "/media/sub/..%2f..%2fconfig.toml",
    "/media/..%5cconfig.toml",
    "/media/.hidden",
    "/media/%2ehidden",
    "/media/.git/config",
    "/media/passwd",  # a symbolic link to /etc/passwd
    "/media/outside/config.toml",  # a link to a folder outside
    "/media/inside-link.png",  # links are never followed, even inside
    "/media/sub",  # a folder: no listings
    "/media/sub/",
    "/media//etc/passwd",
    "/media/%2fetc%2fpasswd",
    "/media/carte.png%00",
    "/media/carte.png%00.txt",
    "/media/pipe",  # a FIFO: never opened in a way that blocks
    "/media/missing.png",
    "/media/%ff.png",  # not UTF-8
    "/media/",
    "/media",
]


def test_every_traversal_is_404(site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    _media_site(site)
    server = serve(site / "config.toml")
    for raw in TRAVERSALS:
        status, _, body = _raw_get(server, raw)
        assert status == 404, raw
        assert b"secret" not in body and b"root:" not in body and b"[feed]" not in body
    assert _raw_get(server, "/media/carte.png")[0] == 200  # and the server is still fine
    assert "Traceback" not in server.log()


def test_a_missing_media_folder_is_404_not_an_error(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    server = serve(site / "config.toml")
    assert server.get("/media/carte.png")[0] == 404
    status, headers, body = server.get("/media/carte.png")
    # The site's 404 page, as for any other path (a link home, in the site's language).
    assert status == 404 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert body == server.get("/no/such/page")[2] and body.startswith(b"<!DOCTYPE html>")
    for path in ("/sitemaps/01.xml", "/media/", "/media/%2e%2e/config.toml"):
        assert server.get(path)[:3:2] == (404, body), path
    assert server.log().count("media folder") == 1  # said once
    (site / "media").mkdir()
    (site / "media" / "carte.png").write_bytes(PNG)
    assert server.get("/media/carte.png")[:3:2] == (200, PNG)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_large_file_is_not_read_into_memory(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    media = site / "media"
    media.mkdir()
    size = 50 * 1024 * 1024
    with (media / "big.mp3").open("wb") as f:
        for index in range(50):
            f.write(bytes([index]) * (1024 * 1024))
    server = serve(site / "config.toml")
    server.get("/media/carte.png")  # warm up the route
    before = _rss_kib(server.process.pid)
    connection = http.client.HTTPConnection("127.0.0.1", server.config.server.port, timeout=30)
    connection.request("GET", "/media/big.mp3")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Length") == str(size)
    received, digest = 0, hashlib.sha256()
    while piece := response.read(1 << 20):
        received += len(piece)
        digest.update(piece)
    connection.close()
    assert received == size
    assert digest.hexdigest() == hashlib.sha256((media / "big.mp3").read_bytes()).hexdigest()
    grown_mib = (_rss_kib(server.process.pid) - before) / 1024
    assert grown_mib < 20, f"the process grew by {grown_mib:.0f} MiB serving a 50 MiB file"


@pytest.mark.parametrize(("value", "size", "expected"), [
    (None, 100, None),
    ("bytes=0-9", 100, (0, 9)),
    ("bytes=90-", 100, (90, 99)),
    ("bytes=90-1000", 100, (90, 99)),
    ("bytes=-10", 100, (90, 99)),
    ("bytes=-1000", 100, (0, 99)),
    ("BYTES=0-0", 100, (0, 0)),
    ("bytes=100-", 100, False),  # first-pos at the length: unsatisfiable (416)
    ("bytes=999999-", 100, False),
    ("bytes=-0", 100, False),
    ("bytes=0-", 0, False),  # nothing in an empty file
    ("bytes=9-0", 100, None),  # invalid: ignored, 200
    ("bytes=0-1,5-6", 100, None),  # several: the whole file
    ("bytes=-", 100, None),
    ("items=0-9", 100, None),
    ("bytes=a-b", 100, None),
])
def test_byte_range(value: str | None, size: int, expected: object) -> None:
    assert byte_range(value, size) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("/media/a.png", ("a.png",)),
    ("/media/2026/carte%20IGN.png", ("2026", "carte IGN.png")),
    ("/media/caf%C3%A9.mp3", ("café.mp3",)),
    ("/media/%2e%2e/x", None),
    ("/media/a%2Fb", None),
    ("/media/a%5Cb", None),
    ("/media/a%00", None),
    ("/media/a\\b", None),
    ("/media/.env", None),
    ("/media/a/./b", None),
    ("/media/a//b", None),
    ("/media/%ff", None),
    ("/other/a.png", None),
])
def test_request_segments(raw: str, expected: tuple[str, ...] | None) -> None:
    assert request_segments(raw) == expected


def _loops() -> list[object]:
    loops: list[object] = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop  # a test dependency; feedsvc serve runs on it when installed
    except ImportError:  # pragma: no cover - the test extras install it
        loops.append(pytest.param(None, id="uvloop",
                                  marks=pytest.mark.skip(reason="uvloop not installed")))
    else:
        loops.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return loops


@pytest.mark.parametrize("new_loop", _loops())
def test_media_under_each_event_loop(site: Path, new_loop: Callable[[], object]) -> None:
    """uvloop has no loop.sendfile (it raises NotImplementedError after the headers went out:
    every media response was cut short); there the pieces are read on a thread and written."""
    from aiohttp import ClientSession, web

    from feedsvc.config import load_config
    from feedsvc.serve.app import make_app

    media = site / "media"
    media.mkdir()
    data = bytes(range(256)) * 9000  # 2.2 MiB: more than one piece
    (media / "episode.mp3").write_bytes(data)
    config = load_config(site / "config.toml")

    async def main() -> None:
        runner = web.AppRunner(make_app(config))
        await runner.setup()
        tcp = web.TCPSite(runner, "127.0.0.1", 0)
        await tcp.start()
        port = runner.addresses[0][1]
        try:
            async with ClientSession() as client:
                async with client.get(f"http://127.0.0.1:{port}/media/episode.mp3") as whole:
                    assert whole.status == 200
                    assert await whole.read() == data
                async with client.get(f"http://127.0.0.1:{port}/media/episode.mp3",
                                      headers={"Range": "bytes=1000000-1300000"}) as part:
                    assert part.status == 206
                    assert await part.read() == data[1000000:1300001]
        finally:
            await runner.cleanup()

    loop = new_loop()
    try:
        loop.run_until_complete(main())  # type: ignore[attr-defined]
    finally:
        loop.close()  # type: ignore[attr-defined]

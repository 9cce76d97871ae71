"""The per-request path of a document (issue 14, "speed"): headers made once per variant as a
read-only multidict (what aiohttp copies fastest), which pickles for the other workers; a large
body sent after its head instead of joined to it (no copy of the body per response), the same
bytes on the wire for GET, HEAD and 304 either way."""

from __future__ import annotations

import asyncio
import logging
import pickle
import re
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import ClassVar

import pytest
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy

from feedsvc.publish.snapshot import Headers, Live, make_document, make_snapshot
from feedsvc.serve.handlers import APART_MIN_BYTES, document_handler
from feedsvc.serve.keys import LIVE
from feedsvc.serve.memory import MMAP_THRESHOLD_BYTES
from feedsvc.serve.negotiation import choose_coding

T = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
ATOM = "application/atom+xml; charset=utf-8"


def _body(size: int) -> bytes:
    line = "<entry><title>« été » n°{}</title></entry>\n"
    text = "".join(line.format(i) for i in range(size // 40 + 1))
    return text.encode()[:size]


def test_variant_headers_are_read_only_multidicts_that_pickle() -> None:
    document = make_document("/feed.atom", ATOM, _body(5000), T, link="<http://h/>; rel=hub")
    for variant in document.variants.values():
        for headers in (variant.headers, variant.not_modified_headers):
            assert isinstance(headers, CIMultiDictProxy) and isinstance(headers, Headers)
            with pytest.raises(TypeError):
                headers["ETag"] = '"other"'  # type: ignore[index]
        assert variant.headers["etag"] == variant.etag  # case-insensitive, as HTTP's names
        assert list(variant.not_modified_headers) == [
            "ETag", "Last-Modified", "Cache-Control", "Vary", "Link"]
    # Snapshots go to the other workers pickled (serve/workers.py).
    variants = list(document.variants.values())
    again = pickle.loads(pickle.dumps(variants, protocol=pickle.HIGHEST_PROTOCOL))
    for variant, copy in zip(variants, again, strict=True):
        assert type(copy.headers) is Headers and type(copy.not_modified_headers) is Headers
        assert list(copy.headers.items()) == list(variant.headers.items())
        assert list(copy.not_modified_headers.items()) == \
            list(variant.not_modified_headers.items())


@pytest.mark.parametrize("size", [APART_MIN_BYTES - 1, APART_MIN_BYTES, 160_000])
async def test_a_body_goes_out_whole_after_its_head(size: int) -> None:
    body = _body(size)
    document = make_document("/feed.atom", ATOM, body, T)
    app = web.Application()
    app[LIVE] = live = Live(make_snapshot([document], 1, (), T))
    app.router.add_get("/feed.atom", document_handler(live))
    heads_apart: list[bool] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        heads_apart.append(response._send_headers_immediately)

    app.on_response_prepare.append(record)
    identity = document.variants["identity"]
    async with TestClient(TestServer(app)) as client:
        got = await client.get("/feed.atom", headers={"Accept-Encoding": "identity"})
        assert got.status == 200 and await got.read() == body
        assert got.headers["Content-Length"] == str(size)
        assert got.headers["ETag"] == identity.etag
        assert "Transfer-Encoding" not in got.headers
        head = await client.head("/feed.atom", headers={"Accept-Encoding": "identity"})
        assert head.status == 200 and head.headers["Content-Length"] == str(size)
        assert await head.read() == b""
        same = await client.get("/feed.atom", headers={"Accept-Encoding": "identity",
                                                       "If-None-Match": identity.etag})
        assert same.status == 304 and await same.read() == b""
        # Two more requests on the same connection: the stream is still in step.
        again = await client.get("/feed.atom", headers={"Accept-Encoding": "identity"})
        assert await again.read() == body
    large = size >= APART_MIN_BYTES
    assert heads_apart == [large, large, False, large]


def test_no_response_allocates_a_block_glibc_would_mmap() -> None:
    """A body written with its head is copied into one block (aiohttp joins them): it must
    stay under the fixed mmap threshold, or each response costs an mmap and a munmap."""
    assert APART_MIN_BYTES < MMAP_THRESHOLD_BYTES


async def _exchange(port: int, raw: bytes) -> bytes:
    """One request on its own connection; the whole response (the server closes after it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


#: Requests whose heads differ in what aiohttp adds (Content-Length, Connection, the status
#: line), each sent with `Connection: close` or as HTTP/1.0 so the response ends the stream.
RAW = [
    "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "GET {path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    "HEAD {path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br\r\nConnection: close\r\n\r\n",
    "GET {path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n",
    "HEAD {path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n",
    "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n",
    "GET {path} HTTP/1.0\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n",
]


@pytest.mark.parametrize("size", [5000, 160_000])
async def test_a_head_made_once_is_the_bytes_aiohttp_makes(size: int) -> None:
    """feedsvc's responses (Ready: the head serialized once per variant and second) against
    a plain web.Response of the same variant (aiohttp serializing every head): the same bytes,
    Date aside, for every kind of request, the first time and the next ones, in the same
    second and in the next."""
    body = _body(size)
    document = make_document("/feed.atom", ATOM, body, T)
    app = web.Application()
    app[LIVE] = live = Live(make_snapshot([document], 1, (), T))
    app.router.add_get("/feed.atom", document_handler(live))

    async def plain(request: web.Request) -> web.Response:
        coding = choose_coding(request.headers.get("Accept-Encoding"))
        assert coding is not None
        variant = document.variants[coding]
        if request.headers.get("If-None-Match") == variant.etag:
            return web.Response(status=304, headers=dict(variant.not_modified_headers))
        return web.Response(body=variant.body, headers=dict(variant.headers))

    app.router.add_get("/plain", plain)
    etag = document.variants["identity"].etag
    async with TestServer(app) as server:
        assert server.port is not None
        for round_ in range(3):
            if round_ == 2:  # the next second: its own heads
                await asyncio.sleep(1.01)
            for raw in RAW:
                before = int(time.time())
                ours = await _exchange(server.port, raw.format(path="/feed.atom",
                                                               etag=etag).encode())
                after = time.time()
                theirs = await _exchange(server.port, raw.format(path="/plain",
                                                                 etag=etag).encode())
                head, _, rest = ours.partition(b"\r\n\r\n")
                assert re.sub(rb"Date: [^\r]*", b"", head) == \
                    re.sub(rb"Date: [^\r]*", b"", theirs.partition(b"\r\n\r\n")[0]), raw
                assert rest == theirs.partition(b"\r\n\r\n")[2]
                date = re.search(rb"\r\nDate: ([^\r]*)", head)
                assert date is not None  # the second it was sent in, not a cached one
                assert before <= parsedate_to_datetime(date.group(1).decode()).timestamp() \
                    <= after
    heads = document.variants["identity"].headers.heads
    assert heads is not None and len(heads[1]) >= 2  # cached: GET 1.1 and 1.0, HEAD


def test_feedsvc_changes_no_header_in_a_response_prepare_signal() -> None:
    """Ready (serve/handlers.py) reuses a head when the headers aiohttp adds are the same: a
    signal changing a header's value in place would go unseen."""
    package = Path(__file__).resolve().parent.parent / "feedsvc"
    users = [path for path in package.rglob("*.py")
             if re.search(r"\.on_response_prepare\b", path.read_text())]
    assert users == []


class _Lengths(AbstractAccessLogger):
    """Records what aiohttp counted as written for each response (what /metrics adds up)."""

    written: ClassVar[list[int]] = []

    @property
    def enabled(self) -> bool:
        return True

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.written.append(response.body_length)


@pytest.mark.parametrize("size", [APART_MIN_BYTES, 160_000])
def test_on_uvloop_a_large_body_and_its_head_go_out_in_one_writelines(size: int) -> None:
    """uvloop's writelines sends head and body in one writev(), without the copy: the same
    bytes as ever, for GET, HEAD and 304 on one connection, with aiohttp's byte count."""
    uvloop = pytest.importorskip("uvloop")
    body = _body(size)
    document = make_document("/feed.atom", ATOM, body, T)
    identity = document.variants["identity"]
    _Lengths.written = []

    async def check() -> None:
        app = web.Application()
        app[LIVE] = live = Live(make_snapshot([document], 1, (), T))
        app.router.add_get("/feed.atom", document_handler(live))
        gathered: list[bool] = []

        async def record(request: web.Request, response: web.StreamResponse) -> None:
            assert request.transport is not None
            gathered.append(type(request.transport).__module__.startswith("uvloop"))

        app.on_response_prepare.append(record)
        server = TestServer(app)
        await server.start_server(access_log_class=_Lengths,
                                  access_log=logging.getLogger("test.lengths"))
        async with TestClient(server) as client:
            for _ in range(2):
                got = await client.get("/feed.atom", headers={"Accept-Encoding": "identity"})
                assert got.status == 200 and await got.read() == body
                assert got.headers["Content-Length"] == str(size)
                assert got.headers["ETag"] == identity.etag
                head = await client.head("/feed.atom", headers={"Accept-Encoding": "identity"})
                assert head.status == 200 and head.headers["Content-Length"] == str(size)
                assert await head.read() == b""
                same = await client.get("/feed.atom", headers={"If-None-Match": identity.etag})
                assert same.status == 304 and await same.read() == b""
        assert gathered and all(gathered)

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(check())
    finally:
        loop.close()
    assert len(_Lengths.written) == 6
    get, head_only, not_modified = _Lengths.written[:3]
    assert get > size and get - size == head_only  # head + body; the same head alone
    assert _Lengths.written[3:] == [get, head_only, not_modified]

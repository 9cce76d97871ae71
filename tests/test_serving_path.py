"""The per-request path of a document (issue 14, "speed"): headers made once per variant as a
read-only multidict (what aiohttp copies fastest), which pickles for the other workers; a large
body sent after its head instead of joined to it (no copy of the body per response), the same
bytes on the wire for GET, HEAD and 304 either way."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy

from feedsvc.publish.snapshot import Headers, Live, make_document, make_snapshot
from feedsvc.serve.handlers import APART_MIN_BYTES, document_handler
from feedsvc.serve.keys import LIVE
from feedsvc.serve.memory import MMAP_THRESHOLD_BYTES

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

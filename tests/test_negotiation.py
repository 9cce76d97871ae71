"""Content codings and conditional GET: pure decisions, data-driven; then a real server."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import aiohttp
import brotli
import pytest

from feedsvc.negotiation import choose_coding, etag_matches, not_modified
from feedsvc.server import make_app

from .conftest import copy_sample


@pytest.mark.parametrize(("accept", "expected"), [
    (None, "identity"),
    ("", "identity"),
    ("gzip", "gzip"),
    ("x-gzip", "gzip"),
    ("gzip, deflate, br", "br"),
    ("GZIP;Q=1, BR;q=0.5", "gzip"),
    ("br;q=0.1, gzip;q=0.2", "gzip"),
    ("br;q=0, gzip;q=0", "identity"),
    ("deflate", "identity"),
    ("*", "br"),
    ("*;q=0.5, gzip", "gzip"),
    ("identity;q=0, gzip;q=0.3", "gzip"),
    ("identity;q=0", None),
    ("*;q=0", None),
    ("*;q=0, identity", "identity"),
    ("br;q=0.5;foo=bar", "br"),
    ("br;q=nonsense, gzip;q=0.1", "gzip"),
    ("zstd, gzip;q=0.9", "gzip"),
    (" , ,gzip ,", "gzip"),
])
def test_choose_coding(accept: str | None, expected: str | None) -> None:
    assert choose_coding(accept) == expected


def test_an_etag_of_any_variant_matches() -> None:
    etags = {'"h"', '"h-gzip"', '"h-br"'}
    assert etag_matches(etags, '"h-gzip"')
    assert etag_matches(etags, 'W/"h-br", "other"')
    assert not etag_matches(etags, '"h-zstd"')
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    assert not_modified(etags, moment, '"h"', None)


@pytest.fixture
async def session_and_base(config, aiohttp_server):
    copy_sample(config.paths.seeds)
    server = await aiohttp_server(make_app(config))
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session, f"http://127.0.0.1:{server.port}"


async def get(session, url, **headers):
    async with session.get(url, headers=headers) as response:
        return response.status, response.headers, await response.read()


async def test_each_coding_is_served_precompressed_with_its_own_etag(session_and_base) -> None:
    session, base = session_and_base
    status, headers, identity = await get(session, base + "/feed.atom",
                                          **{"Accept-Encoding": "identity"})
    assert status == 200 and "Content-Encoding" not in headers
    assert headers["Vary"] == "Accept-Encoding"
    etag = headers["ETag"]
    seen = {etag}
    for coding, decode in (("gzip", gzip.decompress), ("br", brotli.decompress)):
        status, headers, body = await get(session, base + "/feed.atom",
                                          **{"Accept-Encoding": coding})
        assert status == 200 and headers["Content-Encoding"] == coding
        assert headers["Vary"] == "Accept-Encoding"
        assert int(headers["Content-Length"]) == len(body) < len(identity)
        assert decode(body) == identity
        assert headers["ETag"] == etag[:-1] + f'-{coding}"'
        seen.add(headers["ETag"])
        # Same bytes twice: compressed once, not per request.
        assert (await get(session, base + "/feed.atom", **{"Accept-Encoding": coding}))[2] == body
    assert len(seen) == 3


async def test_304_for_any_variant_names_the_one_the_request_would_get(session_and_base) -> None:
    session, base = session_and_base
    _, headers, _ = await get(session, base + "/feed.rss", **{"Accept-Encoding": "gzip"})
    gzip_etag = headers["ETag"]
    status, headers, body = await get(session, base + "/feed.rss",
                                      **{"Accept-Encoding": "br", "If-None-Match": gzip_etag})
    assert (status, body) == (304, b"")
    assert headers["ETag"] == gzip_etag.replace("-gzip", "-br")
    assert headers["Vary"] == "Accept-Encoding"
    assert "Content-Length" not in headers and "Content-Encoding" not in headers


async def test_no_acceptable_coding_is_406(session_and_base) -> None:
    session, base = session_and_base
    status, headers, _ = await get(session, base + "/feed.atom",
                                   **{"Accept-Encoding": "identity;q=0, zstd"})
    assert status == 406 and headers["Vary"] == "Accept-Encoding"

"""A change is served as soon as its documents are dated and hashed; their gzip and br variants
follow (`snapshot.make_documents(later=…)`, `Live.coding`). The variants are the same bytes and
headers as when made at once; a request for a coding waits for it, identity never does."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, wait
from datetime import UTC, datetime

import brotli
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from feedsvc.publish import snapshot
from feedsvc.publish.snapshot import Live, Rendered, make_documents, make_snapshot
from feedsvc.serve.handlers import serve_document
from feedsvc.serve.keys import LIVE

T = datetime(2026, 11, 24, 12, 0, 0, 250_000, tzinfo=UTC)
ATOM = "application/atom+xml; charset=utf-8"
HTML = "text/html; charset=utf-8"


def _body(n: int, word: str) -> bytes:
    return "".join(f"<entry><title>{word} n°{i} « été »</title></entry>\n"
                   for i in range(n)).encode()


#: Sets of rendered documents: one, several of all sizes, same-second and known digests.
CASES: list[list[Rendered]] = [
    [Rendered("/feed.atom", ATOM, _body(400, "un"), T)],
    [Rendered("/feed.atom", ATOM, _body(900, "deux"), T),
     Rendered("/feed.rss", ATOM, _body(800, "trois"), T, previous=T.replace(microsecond=0)),
     Rendered("/", HTML, _body(30, "index"), T),
     Rendered("/entries/a", HTML, b"", T),
     Rendered("/entries/b", HTML, b"x", T, digest="0" * 32)],
]


def test_no_documents_no_wait() -> None:
    later: list[Future[None]] = []
    assert make_documents([], 60, later) == []
    assert later[0].result(timeout=5) is None


def _view(document: snapshot.Document) -> tuple[object, ...]:
    return (document.path, document.content_type, document.body, document.etag,
            document.last_modified, document.etags, document.unchanged_since,
            [(k, v.coding, v.body, v.etag, dict(v.headers), dict(v.not_modified_headers))
             for k, v in document.variants.items()])


@pytest.mark.parametrize("rendered", CASES)
def test_later_variants_are_those_made_at_once(rendered: list[Rendered]) -> None:
    at_once = make_documents(rendered, 60)
    later: list[Future[None]] = []
    documents = make_documents(rendered, 60, later)
    assert len(later) == 1
    wait(later)
    later[0].result()
    assert [_view(d) for d in documents] == [_view(d) for d in at_once]


@pytest.fixture
def blocked_compressors() -> Iterator[threading.Event]:
    """Every compressor thread busy until the event is set: jobs submitted now wait."""
    with _blocking() as gate:
        yield gate


@contextlib.contextmanager
def _blocking() -> Iterator[threading.Event]:
    gate = threading.Event()
    started = threading.Barrier(snapshot._COMPRESSORS._max_workers + 1)

    def block() -> None:
        started.wait()
        gate.wait(30)

    blockers = [snapshot._COMPRESSORS.submit(block)
                for _ in range(snapshot._COMPRESSORS._max_workers)]
    started.wait(30)
    try:
        yield gate
    finally:
        gate.set()
        wait(blockers)


def test_before_its_compressions_a_document_has_identity_and_every_etag(
        blocked_compressors: threading.Event) -> None:
    later: list[Future[None]] = []
    [document] = make_documents(CASES[0], 60, later)
    assert list(document.variants) == ["identity"]
    assert document.variants["identity"].body == CASES[0][0].body
    digest = document.etag.strip('"')
    assert document.etags == {f'"{digest}"', f'"{digest}-gzip"', f'"{digest}-br"'}
    assert not later[0].done()
    blocked_compressors.set()
    later[0].result(timeout=30)
    assert list(document.variants) == ["identity", "gzip", "br"]


async def test_no_reader_waits_for_a_compression_to_see_a_change(
        blocked_compressors: threading.Event) -> None:
    """Until a change's gzip and br variants are made, a reader that accepts them gets the
    identity bytes at once (every feed reader accepts identity); once made, its coding. Only
    a client refusing identity waits for its coding."""
    body = CASES[0][0].body
    later: list[Future[None]] = []
    documents = make_documents(CASES[0], 60, later)
    live = Live(make_snapshot(documents, 1, (), T))
    live.coding = tuple(later)
    app = web.Application()
    app[LIVE] = live
    app.router.add_get("/feed.atom", serve_document)
    async with TestClient(TestServer(app)) as client:
        plain = await client.get("/feed.atom", headers={"Accept-Encoding": "identity"})
        assert plain.status == 200
        assert await plain.read() == body
        for accept in ("br", "gzip", "gzip, deflate, br", "br;q=1, gzip;q=0.5"):
            early = await asyncio.wait_for(client.get(
                "/feed.atom", headers={"Accept-Encoding": accept}, auto_decompress=False), 5)
            assert early.status == 200
            assert "Content-Encoding" not in early.headers
            assert early.headers["ETag"] == plain.headers["ETag"]
            assert await early.read() == body
            revalidated = await client.get("/feed.atom", headers={
                "Accept-Encoding": accept, "If-None-Match": early.headers["ETag"]})
            assert revalidated.status == 304
        strict = asyncio.create_task(client.get(
            "/feed.atom", headers={"Accept-Encoding": "gzip, identity;q=0"},
            auto_decompress=False))
        await asyncio.sleep(0.3)
        assert not strict.done()  # refuses identity: waits for gzip
        blocked_compressors.set()
        response = await asyncio.wait_for(strict, 30)
        assert response.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await response.read()) == body
        for coding, decode in (("br", brotli.decompress), ("gzip", gzip.decompress)):
            response = await client.get("/feed.atom", headers={"Accept-Encoding": coding},
                                        auto_decompress=False)
            assert response.status == 200
            assert response.headers["Content-Encoding"] == coding
            assert response.headers["ETag"] == f'{plain.headers["ETag"][:-1]}-{coding}"'
            assert decode(await response.read()) == body
        # A reader holding the identity bytes it got meanwhile revalidates them: 304, with
        # the ETag a 200 would carry now (RFC 9110 §15.4.5), of the same version.
        held = await client.get("/feed.atom", headers={
            "Accept-Encoding": "br", "If-None-Match": plain.headers["ETag"]})
        assert held.status == 304
        assert held.headers["ETag"] == f'{plain.headers["ETag"][:-1]}-br"'


def test_compressor_threads_run_at_a_lower_priority() -> None:
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    theirs = snapshot._COMPRESSORS.submit(
        lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
    assert theirs == min(19, own + snapshot.COMPRESSOR_NICENESS)


def test_an_archive_page_is_served_before_its_compressions(tmp_path) -> None:
    """An archive page rendered on request (a page an edit changed) is handed out with its
    identity variant; its gzip and br follow, the same bytes and headers as made at once."""
    from feedsvc.config import load_config
    from feedsvc.publish.archives import ArchivePages
    from feedsvc.publish.publisher import Publisher
    from feedsvc.publish.registry import format_of

    from .conftest import seed, write_config, write_seed

    write_config(tmp_path, max_entries=2, archive_page_entries=2)
    config = load_config(tmp_path / "config.toml")
    for i in range(6):
        write_seed(config.paths.seeds, f"s{i}.txt", seed(f"s{i}", f"Titre {i}", "Corps."),
                   mtime=1_700_000_000 + i)
    publisher = Publisher.open(config)
    pages, whole = ArchivePages(config), ArchivePages(config)
    try:
        span = publisher.scan().archive
        assert span is not None
        pages.start(publisher.info)
        whole.start(publisher.info)
        fmt = format_of("atom")
        assert fmt is not None
        with _blocking() as gate:
            soon = asyncio.run(pages.page(span, 1, fmt))
            assert soon is not None and set(soon.variants) == {"identity"}
            assert len(soon.etags) == 3  # every ETag known already
            gate.set()
        made = whole.render(span, 1, fmt)  # as `build` makes it: at once
        assert made is not None
        for _ in range(500):
            if len(soon.variants) == 3:
                break
            threading.Event().wait(0.01)
        assert _view(soon) == _view(made)
    finally:
        pages.close()
        whole.close()
        publisher.close()


async def test_a_client_refusing_identity_waits_for_the_documents_own_coding() -> None:
    """A document made whole a moment later than it was handed out (an archive page rendered
    on request: no change of the snapshot is pending) still gets its coding to a client that
    refuses identity, once made: no 503 meanwhile."""
    body = CASES[0][0].body
    with _blocking() as gate:
        document = snapshot.make_document_soon("/feed.atom", ATOM, body, T)
        app = web.Application()
        app[LIVE] = Live(make_snapshot([document], 1, (), T))  # nothing in Live.coding
        app.router.add_get("/feed.atom", serve_document)
        async with TestClient(TestServer(app)) as client:
            strict = asyncio.create_task(client.get(
                "/feed.atom", headers={"Accept-Encoding": "gzip, identity;q=0"},
                auto_decompress=False))
            await asyncio.sleep(0.3)
            assert not strict.done()
            gate.set()
            response = await asyncio.wait_for(strict, 30)
            assert response.status == 200
            assert response.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(await response.read()) == body

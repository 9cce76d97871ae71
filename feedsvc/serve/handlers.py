"""The request handlers: every body comes from the current snapshot.

Requests never render: the snapshot is swapped in whole after each change, so a response's body
always matches its ETag.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import NoReturn

from aiohttp import web
from aiohttp.hdrs import CONNECTION, CONTENT_LENGTH, DATE, SERVER
from aiohttp.http_writer import StreamWriter, _serialize_headers

from feedsvc.logtext import escape
from feedsvc.model import Document, Snapshot
from feedsvc.publish.pageblocks import FRONT
from feedsvc.publish.pages import (
    HTML_TYPE,
)
from feedsvc.publish.registry import TAGS, entry_path, format_of, formats
from feedsvc.publish.sitebuild import stylesheet_document
from feedsvc.publish.sitepages import page_number
from feedsvc.publish.snapshot import CODINGS, Headers, Live
from feedsvc.serve.health import DeliveryReport, HealthStatus, HubHealth
from feedsvc.serve.keys import ARCHIVE_PAGES, LIVE, PAGES, SETTINGS, SITE_PAGES, STATUS
from feedsvc.serve.negotiation import choose_coding, not_modified
from feedsvc.serve.websub.hub import HUB

log = logging.getLogger("feedsvc")


async def serve_document(request: web.Request) -> web.StreamResponse:
    """The hot path: look-ups in the current snapshot and in caches of parsed headers; no I/O,
    no rendering, no hashing, no compression. (The app's routes use `document_handler`, the
    same with the app's Live bound: three attribute look-ups fewer per request.)"""
    document = _document(request, request.app[LIVE])
    if len(document.variants) < len(CODINGS):  # made a moment ago: see _coded
        return await _coded(request, document)
    return respond(request, document)


def document_handler(live: Live) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """serve_document for an app whose Live is `live` (the app's, for its lifetime)."""

    async def serve(request: web.Request) -> web.StreamResponse:
        document = _document(request, live)
        if len(document.variants) < len(CODINGS):  # made a moment ago: see _coded
            return await _coded(request, document)
        return respond(request, document)

    return serve


def _document(request: web.Request, live: Live) -> Document:
    """The current snapshot's document at the request's path; else the HTTP error to raise."""
    snapshot = live.current  # read once: body and validators from one snapshot
    path = request.rel_url.path
    gone_at = snapshot.gone_at.get(path)
    if gone_at is not None and time.time() >= gone_at:
        # A tag that lost its last entry `tombstone_days` ago: gone for good, and known to
        # have existed (RFC 9110 §15.5.11), so readers can drop the subscription.
        raise gone(request)
    document = snapshot.documents.get(path)
    if document is None:
        _not_there(request, snapshot)
    return document


async def serve_entry(request: web.Request) -> web.StreamResponse:
    """An entry's page: from the snapshot for the entries the feeds show, else from the state
    (the long tail), off the event loop."""
    snapshot = request.app[LIVE].current
    document = snapshot.documents.get(request.rel_url.path)
    if document is None and snapshot.documents:
        document = await request.app[PAGES].page(request.match_info["slug"])
    if document is None:
        _not_there(request, snapshot)
    if len(document.variants) < len(CODINGS):  # made a moment ago: see _coded
        return await _coded(request, document)
    return respond(request, document)


async def serve_archive(request: web.Request) -> web.StreamResponse:
    """An RFC 5005 archive page, `{page size}/{n}.{extension}`: rendered from the state off the
    event loop (publish/archives.py), bounded by the snapshot's span. Pages of another size
    than the configured one are 404: their URLs are never reused for other bytes."""
    snapshot = request.app[LIVE].current
    number, _, extension = request.match_info["name"].partition(".")
    fmt = format_of(extension)
    span = snapshot.archive
    document = None
    # Digits only, no sign or leading zero: one URL per page.
    if (fmt is not None and span is not None and number.isascii() and number.isdigit()
            and not number.startswith("0") and len(number) < 10
            and request.match_info["size"] == str(span.page_entries)):
        document = await request.app[ARCHIVE_PAGES].page(span, int(number), fmt)
    if document is None:
        _not_there(request, snapshot)
    if len(document.variants) < len(CODINGS):  # made a moment ago: see _coded
        return await _coded(request, document)
    return respond(request, document)


async def serve_site_page(request: web.Request) -> web.StreamResponse:
    """The site's pages made from the state (publish/sitepages.py), off the event loop:
    `/page/{n}`, `/tags/`, `/tags/{tag}`, `/tags/{tag}/page/{n}`."""
    snapshot = request.app[LIVE].current
    site = request.app[SITE_PAGES]
    match = request.match_info
    document = None
    if snapshot.documents:
        # `/tags/{tag}` is its front page; `/page/{n}`, `/tags/{tag}/page/{n}`: n ≥ 1, the
        # oldest entries being page 1 (publish/pageblocks.py).
        number = page_number(match["number"]) if "number" in match else FRONT
        if number is None:
            pass
        elif "tag" in match:
            document = await site.tag_page(match["tag"], number)
        elif "number" in match:
            document = await site.index_page(number)
        else:
            document = await site.tags_index()
    if document is None:
        if "tag" in match and _tag_gone(snapshot, match["tag"]):
            raise gone(request)  # its feeds answer 410 (or will): so does its page
        _not_there(request, snapshot)
    return respond(request, document)


def _tag_gone(snapshot: Snapshot, tag: str) -> bool:
    """The tag lost its last entry: its feeds are in `gone_at` (tagdocs.py), from the day
    they emptied; the page, with nothing to list, is gone from that day."""
    return any(fmt.path(f"{TAGS}{tag}") in snapshot.gone_at for fmt in formats())


async def serve_neighbour(request: web.Request) -> web.StreamResponse:
    """`/entries/{slug}/newer` and `/older`: 303 See Other (RFC 9110 §15.4.4) to the entry
    just newer or older, or to the front page past either end. Entry pages link to these
    instead of to their neighbours, so a page's bytes never depend on other entries (a new
    entry re-renders no other page) and its dates stay its own."""
    snapshot = request.app[LIVE].current
    slug, direction = request.match_info["slug"], request.match_info["direction"]
    if not snapshot.documents or direction not in ("newer", "older"):
        _not_there(request, snapshot)
    site = request.app[SITE_PAGES]
    if (snapshot.documents.get(entry_path(slug)) is None
            and await request.app[PAGES].page(slug) is None):
        _not_there(request, snapshot)
    other = await site.neighbour(slug, direction == "newer")
    base = request.app[SETTINGS].current.feed.base_url
    target = f"{base}{entry_path(other)[1:]}" if other else base
    raise web.HTTPSeeOther(target, headers={"Cache-Control": "no-cache"})


def _not_there(request: web.Request, snapshot: Snapshot) -> NoReturn:
    if not snapshot.documents:
        # Nothing published since start (the seeds folder was missing): say "not yet",
        # not "gone", so readers and caches try again.
        raise web.HTTPServiceUnavailable(headers={"Retry-After": "5"})
    raise not_found(request)


def gone(request: web.Request) -> web.HTTPGone:
    """A 410 with the site's HTML page saying what was here is removed (RFC 9110 §15.5.11)."""
    error = web.HTTPGone(headers={"Content-Type": HTML_TYPE})
    error.body = request.app[PAGES].removed() or b""
    return error


def not_found(request: web.Request) -> web.HTTPNotFound:
    """A 404 with the site's HTML page (in its language, with a link home). Every 404 of the
    service is this one (test_structure: no bare HTTPNotFound), media and site files too."""
    body = request.app[PAGES].not_found()
    if body is None:
        return web.HTTPNotFound()
    error = web.HTTPNotFound(headers={"Content-Type": HTML_TYPE})
    error.body = body  # (the `body` argument of an HTTP exception is deprecated)
    return error


#: The site's stylesheet (publish/pages.py), made once: its URL carries its hash, so it is
#: cached for a year, `immutable` (RFC 8246).
_STYLESHEET = stylesheet_document()


async def serve_stylesheet(request: web.Request) -> web.StreamResponse:
    return respond(request, _STYLESHEET)


async def serve_not_found(request: web.Request) -> web.StreamResponse:
    """Every path no other route takes."""
    _not_there(request, request.app[LIVE].current)


#: Bodies larger than this are sent in pieces with back-pressure (LargeBody); smaller ones in
#: one write, with headers prepared once (the hot path: a 50-entry feed is ~160 KB, and
#: pieces cost it ~10% of its requests per second). What a stalled reader of a body up to this
#: size makes the process hold is bounded by it, and the connection cap bounds the readers.
STREAM_MIN_BYTES = 256 * 1024
#: One piece of a large body: what a stalled reader can make the process hold, beyond what
#: the transport buffers before it stops accepting more (its high-water mark).
PIECE_BYTES = 256 * 1024


#: How long a client refusing identity waits for a just-made document's coding, and how often
#: it looks.
CODED_WAIT_S = 10.0
CODED_POLL_S = 0.005


async def _coded(request: web.Request, document: Document) -> web.StreamResponse:
    """A change is swapped in before its gzip and br variants are made (`Live.coding`): until
    they are, a request gets the best coding it accepts among those made (identity, then
    gzip: a few milliseconds of larger bodies), so no reader waits for a compression to see a
    change. Only a client that refuses identity (`identity;q=0`) waits for its coding."""
    accept = request.headers.get("Accept-Encoding")
    if choose_coding(accept, tuple(document.variants)) is None and choose_coding(accept):
        # The document's own variants, whatever made it (a change of the snapshot, or an
        # archive page rendered on request): they arrive within milliseconds.
        deadline = asyncio.get_running_loop().time() + CODED_WAIT_S
        while (choose_coding(accept, tuple(document.variants)) is None
               and asyncio.get_running_loop().time() < deadline):
            await asyncio.sleep(CODED_POLL_S)
        if choose_coding(accept, tuple(document.variants)) is None:  # failed twice: logged
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "1"})
    return respond(request, document, tuple(document.variants))


def respond(request: web.Request, document: Document,
            available: tuple[str, ...] = CODINGS) -> web.StreamResponse:
    headers = request.headers
    accept = headers.get("Accept-Encoding")
    # (one argument: the cache's key is the header's value alone, no tuple to hash)
    coding = choose_coding(accept) if available is CODINGS else choose_coding(accept, available)
    if coding is None:
        raise web.HTTPNotAcceptable(headers={"Vary": "Accept-Encoding"})
    variant = document.variants[coding]
    if document.status != 200:
        # A deleted entry's 410 page: preconditions apply only to a response that would
        # otherwise be 2xx (RFC 9110 §13.2.2), so no 304.
        return Ready.of(variant.body, variant.headers, document.status)
    if not_modified(document.etags, document.unchanged_since or document.last_modified,
                    headers.get("If-None-Match"), headers.get("If-Modified-Since")):
        return Ready.of(None, variant.not_modified_headers, 304)
    body = variant.body
    if len(body) > STREAM_MIN_BYTES and request.method == "GET":
        send_timeout_s = request.app[SETTINGS].current.server.send_timeout_s  # (reloadable)
        return LargeBody(body, variant.headers, send_timeout_s, request.transport)
    return Ready.of(body, variant.headers)


#: A body at least this large is never joined to its head (see Apart). Below it the join is
#: kept: measured (CPU per request, one process), an 18 KB gzip body cost ~15 % more sent in
#: two write()s than joined, a 160 KB one ~3x less. Keep it below memory.MMAP_THRESHOLD_BYTES:
#: no response may allocate a block that large (see Apart).
APART_MIN_BYTES = 64 * 1024


#: The writer keeps a response's head until its body (or send_headers()) comes, in
#: `_headers_buf` (aiohttp 3.12 on): where it does not, Ready leaves heads to aiohttp.
_HEADS_BUFFERED = callable(getattr(StreamWriter, "send_headers", None))


class Ready(web.Response):
    """web.Response of a snapshot's variant, whose head is serialized once per second.

    aiohttp serializes a response's headers at every response, checking each character of each
    name and value (`_serialize_headers`, ~6 % of a 304's instructions). A variant's headers are
    the same for every response but for what aiohttp adds (web_response.py `_start`,
    `_prepare_headers`): Date (one value per second), Server, and when due Content-Length and
    Connection. The head is the same bytes for the same status line and values of these, so the
    bytes aiohttp's serializer made for them are kept on the variant's Headers (`heads`, for the
    current Date), and the next responses hand them to aiohttp's writer as it would have made
    them. Anything else (headers that are not a snapshot's, another writer, headers added by
    someone else) is serialized by aiohttp as usual. A signal that changed a header's value in
    place would not be seen: feedsvc's app has no `on_response_prepare` signal
    (tests/test_serving_path.py checks it)."""

    _source: Headers | None = None

    @classmethod
    def of(cls, body: bytes | None, headers: Mapping[str, str], status: int = 200) -> Ready:
        kind = Apart if body is not None and len(body) >= APART_MIN_BYTES else cls
        response = kind(body=body, headers=headers, status=status)
        if type(headers) is Headers:
            response._source = headers
        return response

    async def _write_headers(self) -> None:
        source, writer, headers = self._source, self._payload_writer, self._headers
        if (source is None or not _HEADS_BUFFERED or type(writer) is not StreamWriter
                or writer._on_headers_sent is not None):
            await super()._write_headers()
            return
        length, connection = headers.get(CONTENT_LENGTH), headers.get(CONNECTION)
        date, server = headers.get(DATE), headers.get(SERVER)
        if (date is None or server is None  # (always added: something else is going on)
                or len(headers) != len(source) + 2 + (length is not None)
                + (connection is not None)):
            await super()._write_headers()
            return
        version = self._req.version  # type: ignore[union-attr]
        key = (self._status, version, length, connection, server)
        heads = source.heads
        if heads is None or heads[0] != date:
            heads = source.heads = (date, {})  # a new second: the last one's heads go
        head = heads[1].get(key)
        if head is None:
            head = heads[1][key] = _serialize_headers(
                f"HTTP/{version[0]}.{version[1]} {self._status} {self._reason}", headers)
        # What StreamWriter.write_headers does, with the bytes it would make.
        writer._headers_written = False
        writer._headers_buf = head
        if self._send_headers_immediately:
            writer.send_headers()


def _gathers(transport: asyncio.BaseTransport | None) -> bool:
    """Whether this transport's writelines() sends its buffers in one writev(), uncopied:
    uvloop's does (asyncio's joins them into one bytes object before Python 3.12)."""
    return type(transport).__module__.partition(".")[0] == "uvloop"


class Apart(Ready):
    """web.Response of a large body, never copied into one buffer with its head.

    aiohttp's Response keeps the head until the body comes and writes both as one
    `b"".join((head, body))` (transport.writelines is skipped on Python < 3.12.9, CVE-2024-
    12254, which is about asyncio's own writelines): a copy of the whole body per response,
    160 KB for the feed in identity. With the mmap threshold fixed at 128 KiB (serve/memory.py),
    each such copy was also an mmap(), 40 page faults and a munmap(): 185 µs of CPU per
    response where the bytes take 60, a third of the requests per second.

    Here, on uvloop, head and body go to the transport's writelines() (one writev(), no copy:
    the system call and packets of the joined write, without the join), with the accounting
    of aiohttp's own write; elsewhere (asyncio's loop, or a writer that is not aiohttp's
    StreamWriter as this one knows it), the head is sent first (`_send_headers_immediately`,
    what aiohttp's StreamResponse does), then the snapshot's own bytes, in a second write()."""

    _send_headers_immediately = True

    async def _write_headers(self) -> None:
        writer = self._payload_writer
        if (_HEADS_BUFFERED and type(writer) is StreamWriter
                and _gathers(writer.transport)):
            self._send_headers_immediately = False  # sent with the body, by write_eof
        await super()._write_headers()

    async def write_eof(self, data: bytes = b"") -> None:
        writer, body = self._payload_writer, self._body
        if (self._send_headers_immediately or self._eof_sent or type(writer) is not StreamWriter
                or self._must_be_empty_body or type(body) is not bytes
                or not writer._headers_buf or writer._headers_written or writer.chunked
                or writer._compress is not None or writer._on_chunk_sent is not None
                or getattr(writer, "on_body_write", None) is not None):
            await super().write_eof(data)
            return
        transport = writer.transport
        if transport is None or transport.is_closing():
            await super().write_eof(data)  # (aiohttp raises for a closed connection)
            return
        # StreamWriter.write_eof(body), with writelines for its join.
        head = writer._headers_buf
        writer._headers_buf, writer._headers_written = None, True
        size = len(head) + len(body)
        writer.buffer_size += size
        writer.output_size += size
        transport.writelines((head, body))
        await writer.drain()
        await web.StreamResponse.write_eof(self)  # the end of it: nothing left to write


class LargeBody(web.StreamResponse):
    """A large body written in PIECE_BYTES slices of the snapshot's own bytes (memoryviews:
    never copied per connection), each write waiting for the transport to drain. A reader that
    accepts nothing for `send_timeout_s` between two writes is disconnected, like nginx's
    `send_timeout`: without both, each stalled reader made the process hold a whole copy of
    the body in its transport buffer, for as long as the reader kept the socket open."""

    def __init__(self, body: bytes, headers: Mapping[str, str], send_timeout_s: float,
                 transport: asyncio.BaseTransport | None) -> None:
        super().__init__(headers=headers)
        self.content_length = len(body)  # no chunked coding: same headers as the fast path
        self._large = body
        self._send_timeout = send_timeout_s
        self._transport = transport

    async def write_eof(self, data: bytes = b"") -> None:
        # Called by aiohttp once the headers are prepared, as web.Response writes its body.
        if not self.prepared or self._eof_sent:
            await super().write_eof(data)
            return
        view = memoryview(self._large)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(loop.time() + self._send_timeout) as deadline:
                for start in range(0, len(view), PIECE_BYTES):
                    await self.write(view[start:start + PIECE_BYTES])
                    deadline.reschedule(loop.time() + self._send_timeout)
                await super().write_eof()  # waits for the last piece to drain, too
        except TimeoutError:
            log.debug("a reader took nothing for %.0f s; connection dropped", self._send_timeout)
            if self._transport is not None:
                self._transport.abort()  # frees what is buffered for it now
            # aiohttp takes a ConnectionError here as the client going away: no traceback.
            raise ConnectionResetError("send timeout") from None


def delivery_health(report: DeliveryReport) -> dict[str, object]:
    """The built-in hub's deliveries since start (WebSub §7): counts, and the subscribers whose
    deliveries fail now (a bounded list; all are counted). A failing subscriber does not make
    the service "degraded": it is the subscriber's fault, and feeds are served."""
    return {"delivered": report.delivered, "failed_attempts": report.failed_attempts,
            "given_up": report.given_up, "ended_by_410": report.gone,
            "failing_subscribers": report.failing_count,
            "failing": [{"topic": f.topic, "callback": escape(f.callback), "since": f.since,
                         "error": escape(f.error)} for f in report.failing],
            "failing_truncated": report.failing_count > len(report.failing)}


#: Scheduled entries and rejected seeds listed by /healthz (all are counted).
HEALTH_SCHEDULED_MAX = 100
HEALTH_REJECTED_MAX = 100
HEALTH_WARNINGS_MAX = 100


def _hub_health(hub: HubHealth) -> dict[str, object]:
    return {
        "url": hub.url,
        "state": ("failing" if hub.failing_since is not None
                  else "ok" if hub.last_ok is not None else "not pinged yet"),
        "last_ok": hub.last_ok.isoformat() if hub.last_ok else None,
        "failing_since": hub.failing_since.isoformat() if hub.failing_since else None,
        "last_error": escape(hub.last_error) if hub.last_error is not None else None,
        "failures": hub.failures,
        "pending_topics": hub.pending,
        "dropped_topics": hub.dropped,
    }


async def serve_health(request: web.Request) -> web.Response:
    """200 while feeds are served; 503 when the watch is down and the last rescan failed too,
    so nothing on disk can reach readers."""
    snapshot: Snapshot = request.app[LIVE].current
    status: HealthStatus = request.app[STATUS].current  # read once, as the snapshot
    down = not status.watching and not status.rescan_ok
    # A hub refusing pings: readers lose push (they still poll): degraded, never down.
    healthy = (status.watching and snapshot.seeds_readable and not status.pending_writes
               and status.state_problem is None and status.batch_problem is None
               and all(hub.failing_since is None for hub in status.hubs))
    body = {
        # `warnings`: all is served, but a seed says something its author did not mean
        # (`tittle:`); listed below.
        "status": "down" if down else "degraded" if not healthy
        else "warnings" if snapshot.warnings else "ok",
        "watching": status.watching,
        "seeds_folder": "ok" if snapshot.seeds_readable else "missing",
        "state": status.state_problem or "ok",
        "unsaved_changes": status.pending_writes,
        "pipeline": status.batch_problem or "ok",
        "entries_published": snapshot.published_count,
        "seeds_rejected": len(snapshot.rejected),
        "drafts": snapshot.draft_count,
        "scheduled": [{"slug": slug, "at": moment.isoformat()}
                      for slug, moment in snapshot.scheduled[:HEALTH_SCHEDULED_MAX]],
        "scheduled_count": len(snapshot.scheduled),
        # The first ones only: 20,000 rejected seeds made a 3 MB body, built on the event
        # loop at every request. A slice of the snapshot's sorted tuple costs the same for any.
        # Escaped as in the log: a name or a link's target may hold bytes that are not UTF-8
        # (JSON could not encode them) or control characters and bidi overrides.
        "rejected": [{"path": escape(e.path), "line": e.line, "message": escape(e.message)}
                     for e in snapshot.rejected[:HEALTH_REJECTED_MAX]],
        "rejected_truncated": len(snapshot.rejected) > HEALTH_REJECTED_MAX,
        "warnings": [{"path": escape(w.path), "line": w.line, "message": escape(w.message)}
                     for w in snapshot.warnings[:HEALTH_WARNINGS_MAX]],
        "warnings_count": len(snapshot.warnings),
        "warnings_truncated": len(snapshot.warnings) > HEALTH_WARNINGS_MAX,
        "last_change": snapshot.changed_at.isoformat() if snapshot.changed_at else None,
        "renders": snapshot.generation,
        "pid": os.getpid(),  # which worker process answered
        "websub_hubs": [_hub_health(hub) for hub in status.hubs],
    }
    if HUB in request.app:  # the built-in WebSub hub: its subscriptions, from the state
        body["websub_hub"] = await request.app[HUB].health()
    if status.deliveries is not None:  # and its content distribution (the leader's)
        body["websub_deliveries"] = delivery_health(status.deliveries)
    return web.Response(text=json.dumps(body, ensure_ascii=False, indent=1),
                        status=503 if down else 200, content_type="application/json",
                        headers={"Cache-Control": "no-store"})



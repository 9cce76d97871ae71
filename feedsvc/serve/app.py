"""make_app(config): routes and conditional GET. The pipeline runs in a cleanup_ctx.

Requests never render: every body comes from the current snapshot, swapped in whole after each
change, so a response's body always matches its ETag.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any, NoReturn, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from feedsvc.config import Config
from feedsvc.errors import FeedsvcError
from feedsvc.ingest.source import DescriptorsExhausted
from feedsvc.ingest.watcher import Batch, watch_seeds
from feedsvc.logtext import escape
from feedsvc.model import Document, Snapshot
from feedsvc.publish.longtail import EntryPages
from feedsvc.publish.publisher import Publisher
from feedsvc.publish.registry import ENTRIES, INDEX, MAIN, TAGS, formats
from feedsvc.publish.snapshot import Live
from feedsvc.serve.connections import RateLimitedLog
from feedsvc.serve.negotiation import choose_coding, not_modified
from feedsvc.serve.workers import Followers, receive

log = logging.getLogger("feedsvc")

CONFIG = web.AppKey("config", Config)
LIVE = web.AppKey("live", Live)
STATUS = web.AppKey("status", "PipelineStatus")
PAGES = web.AppKey("pages", EntryPages)
FOLLOWERS = web.AppKey("followers", Followers)

T = TypeVar("T")


def make_app(config: Config, followers: Sequence[Connection] = ()) -> web.Application:
    """The application, with no side effects: the pipeline starts with the app's startup.
    Each snapshot is also sent to `followers`, the other worker processes on the port."""
    app = _base_app(config)
    app[FOLLOWERS] = Followers(followers)
    app.cleanup_ctx.append(run_pipeline)
    return app


def make_follower_app(config: Config, leader: Connection) -> web.Application:
    """A worker that serves the snapshots the leader's pipeline sends it; it watches nothing
    and writes nothing."""
    app = _base_app(config)
    app.cleanup_ctx.append(follow(leader))
    return app


def _base_app(config: Config) -> web.Application:
    app = web.Application()
    app[CONFIG] = config
    app[LIVE] = Live()
    app[STATUS] = PipelineStatus()
    app[PAGES] = EntryPages(config)
    app.router.add_get(INDEX, serve_document)
    for fmt in formats():  # the feed in every registered format
        app.router.add_get(fmt.path(MAIN), serve_document)
    app.router.add_get(f"/{ENTRIES}{{slug}}", serve_entry)
    # A tag's documents, every format: {tag}.{extension}, as the snapshot holds them.
    app.router.add_get(f"/{TAGS}{{name}}", serve_document)
    app.router.add_get("/healthz", serve_health)
    return app


class QuietBadRequests(logging.Filter):
    """aiohttp logs every request it cannot parse as an ERROR with a traceback: anyone who can
    reach the port could fill the journal with what looks like crashes. Such a request already
    got its 4xx; keep it to one debug line. Real errors (500s) still log in full."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg, record.args = "bad request refused: %s", (error,)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


# -- the pipeline ------------------------------------------------------------------------------

#: A scheduled entry is applied this long after its time, so the clock has surely passed it.
SCHEDULE_SLACK_S = 0.005
#: While changes are kept in memory (state not writable), how often writing is retried.
WRITE_RETRY_S = 5.0
#: Batches this large together may come from a burst big enough to overflow the kernel's event
#: queue, which watchfiles drops silently: a rescan a moment later makes sure nothing was missed.
BURST_PATHS = 256
BURST_RESCAN_S = 1.0
#: After a batch failed, its files are tried again this soon, then twice as late each time it
#: fails again, up to the cap: a lasting fault costs a line a minute, not a line a second.
FAILED_RETRY_S = 1.0
FAILED_RETRY_MAX_S = 60.0
#: Seeds that could not be opened for lack of file descriptors are read again this soon.
FD_RETRY_S = 0.5
#: Time a batch may spend reading and parsing seeds before it publishes what it has and
#: leaves the rest to the next batch, taken at once: seeds within every bound may still cost
#: about a second each, and a small one dropped with ten of them must not wait for all ten.
PARSE_BUDGET_S = 0.2


@dataclass
class PipelineStatus:
    """What /healthz reports beyond the snapshot: is the watch live, did the last rescan work,
    is anything waiting to be written to the state."""

    watching: bool = True
    rescan_ok: bool = True
    pending_writes: int = 0
    state_problem: str | None = None
    #: Why the last batch of changes could not be applied; None once one works again.
    batch_problem: str | None = None


async def run_pipeline(app: web.Application) -> AsyncIterator[None]:
    """Full scan at start, then apply the watcher's batches, periodic rescans and write retries
    until shutdown."""
    config, live, status, followers = app[CONFIG], app[LIVE], app[STATUS], app[FOLLOWERS]
    # One thread for all pipeline work: SQLite and feedgen's locale handling stay on it alone.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedsvc-pipeline")
    loop = asyncio.get_running_loop()

    def run(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return loop.run_in_executor(executor, fn, *args)

    try:
        publisher = await run(Publisher.open, config)
        app[PAGES].start(publisher.info)
        try:
            live.current = await run(publisher.scan)
        except Exception as e:
            # A start-up that meets a fault still starts: it serves what it has, says why on
            # /healthz, and tries again (systemd restarting it would meet the same fault).
            _batch_failed(status, e)
        _note(status, publisher, live.current)
        await followers.send(live.current, status, publisher.info)
        log.info("serving %d published entries from %s", live.current.published_count,
                 config.paths.seeds)
        stop = asyncio.Event()
        queue: asyncio.Queue[Batch | None] = asyncio.Queue()
        pump = asyncio.create_task(_pump(config, stop, queue))
        apply = asyncio.create_task(_apply(publisher, live, status, config, queue, run,
                                           followers))
        try:
            yield
        finally:
            stop.set()
            for task in (pump, apply):
                try:
                    await asyncio.wait_for(task, timeout=10)
                except TimeoutError:
                    log.warning("pipeline task did not stop in 10 s; cancelled")
            await run(publisher.close)
            followers.close()
    finally:
        app[PAGES].close()
        executor.shutdown(wait=True)


async def _pump(config: Config, stop: asyncio.Event, queue: asyncio.Queue[Batch | None]) -> None:
    try:
        async for batch in watch_seeds(config.paths.seeds, step_ms=config.watch.step_ms,
                                       debounce_ms=config.watch.debounce_ms, stop_event=stop):
            queue.put_nowait(batch)
    finally:
        queue.put_nowait(None)  # tells _apply to finish


async def _apply(publisher: Publisher, live: Live, status: PipelineStatus, config: Config,
                 queue: asyncio.Queue[Batch | None],
                 run: Callable[..., asyncio.Future[Any]], followers: Followers) -> None:
    """Apply batches one render at a time. Whatever queued up during a render is merged and
    applied by the next one, so a burst costs a few renders, not one per file."""
    loop = asyncio.get_running_loop()
    retry_s = FAILED_RETRY_S
    next_rescan = loop.time() + (retry_s if status.batch_problem else config.watch.rescan_s)
    fd_log = RateLimitedLog("cannot open seeds for lack of file descriptors; retrying")
    burst_paths, burst_last = 0, 0.0
    while True:
        # At least every WRITE_RETRY_S: to retry writing the state while it cannot be
        # written, and else to notice soon that its file was deleted or replaced (a stat).
        timeout = min(max(0.0, next_rescan - loop.time()), WRITE_RETRY_S)
        if publisher.catalog.deferred:  # out of descriptors a moment ago: not a rescan away
            timeout = min(timeout, FD_RETRY_S)
        if publisher.catalog.left_over:  # the last batch's budget ran out: go on at once
            timeout = 0.0
        if (due := publisher.next_due()) is not None:
            # A timer for the next scheduled entry: an empty batch then makes it appear.
            wait = (due - datetime.now(UTC)).total_seconds() + SCHEDULE_SLACK_S
            timeout = max(0.0, min(timeout, wait))
        try:
            batch = await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError:  # time for a rescan, a write retry, a scheduled entry, a check
            batch = Batch(rescan=loop.time() >= next_rescan, watching=status.watching)
            if (not batch.rescan and not publisher.needs_retry
                    and not publisher.catalog.left_over
                    and (due is None or due > datetime.now(UTC))):
                # Only the check that the state file is still the one open (a stat); a
                # deleted or replaced one is written back.
                try:
                    await run(publisher.store.retry)
                except Exception:
                    log.exception("checking the state file failed")
                _note(status, publisher, live.current)
                await followers.send(live.current, status, publisher.info)
                continue
        if batch is None:
            return
        stopping = False
        while not queue.empty():
            extra = queue.get_nowait()
            if extra is None:
                stopping = True
                break
            batch = batch.merge(extra)
        if publisher.catalog.deferred:  # with this batch, whatever else it holds
            deferred = frozenset(config.paths.seeds / name for name in publisher.catalog.deferred)
            batch = Batch(batch.paths | deferred, batch.rescan, batch.watching)
        # Files the last batch left unread are read by this one (Catalog.update takes them).
        status.watching = batch.watching
        try:
            if batch.rescan:
                next_rescan = loop.time() + config.watch.rescan_s
                live.current = await run(publisher.scan, PARSE_BUDGET_S)
                status.rescan_ok = live.current.seeds_readable
            else:
                live.current = await run(publisher.update, batch.paths, PARSE_BUDGET_S)
                # A burst arrives as several batches (one per `debounce_ms` at most): count
                # the paths of batches that follow each other closely.
                now = loop.time()
                if now - burst_last > BURST_RESCAN_S:
                    burst_paths = 0
                burst_paths, burst_last = burst_paths + len(batch.paths), now
                if burst_paths >= BURST_PATHS:
                    next_rescan = min(next_rescan, now + BURST_RESCAN_S)
            if status.batch_problem is not None:
                log.info("applying seed changes works again")
                status.batch_problem, retry_s = None, FAILED_RETRY_S
        except DescriptorsExhausted as e:
            # Not even the folder could be listed: try again shortly, quietly.
            fd_log.note(e)
            next_rescan = min(next_rescan, loop.time() + FD_RETRY_S)
        except Exception as e:
            # One bad batch must not stop publishing: keep serving the last snapshot, say so on
            # /healthz, and try its files again soon (the catalog hands them out again).
            _batch_failed(status, e, retry_s)
            status.rescan_ok = status.rescan_ok and not batch.rescan
            next_rescan = min(next_rescan, loop.time() + retry_s)
            retry_s = min(retry_s * 2, FAILED_RETRY_MAX_S)
        if publisher.catalog.deferred:
            fd_log.note(f"{len(publisher.catalog.deferred)} seeds waiting to be read")
        _note(status, publisher, live.current)
        await followers.send(live.current, status, publisher.info)
        if stopping:
            return


def _batch_failed(status: PipelineStatus, error: Exception, retry_s: float = FAILED_RETRY_S
                  ) -> None:
    problem = f"last batch failed: {type(error).__name__}: {escape(str(error))}"
    if problem != status.batch_problem:  # the traceback once, not once per retry
        log.exception("applying seed changes failed; still serving the previous snapshot, "
                      "trying again in %.0f s", retry_s)
    else:
        log.error("applying seed changes failed again (%s); trying again in %.0f s",
                  problem, retry_s)
    status.batch_problem = problem


def follow(leader: Connection) -> Callable[[web.Application], AsyncIterator[None]]:
    """cleanup_ctx of a follower: swap in every snapshot the leader sends; when the leader is
    gone, stop (systemd restarts the service as a whole)."""

    async def following(app: web.Application) -> AsyncIterator[None]:
        first = await receive(leader)
        if first is None:
            raise FeedsvcError("the leader process went away before the first snapshot")
        snapshot, status, info = first
        app[LIVE].current = snapshot
        _copy_status(app[STATUS], status)
        app[PAGES].start(info)

        async def keep_following() -> None:
            while (message := await receive(leader)) is not None:
                app[LIVE].current = message[0]
                _copy_status(app[STATUS], message[1])
            log.info("leader gone; this worker stops")
            signal.raise_signal(signal.SIGTERM)

        task = asyncio.create_task(keep_following())
        try:
            yield
        finally:
            task.cancel()
            app[PAGES].close()

    return following


def _copy_status(target: PipelineStatus, source: PipelineStatus) -> None:
    for name, value in vars(source).items():
        setattr(target, name, value)


def _note(status: PipelineStatus, publisher: Publisher, snapshot: Snapshot) -> None:
    status.pending_writes = publisher.pending_writes
    problem = publisher.store.problem
    status.state_problem = None if problem is None else str(problem)


# -- handlers ----------------------------------------------------------------------------------

async def serve_document(request: web.Request) -> web.StreamResponse:
    """The hot path: look-ups in the current snapshot and in caches of parsed headers; no I/O,
    no rendering, no hashing, no compression."""
    snapshot = request.app[LIVE].current  # read once: body and validators from one snapshot
    document = snapshot.documents.get(request.rel_url.path)
    if document is None:
        _not_there(snapshot)
    return respond(request, document)


async def serve_entry(request: web.Request) -> web.StreamResponse:
    """An entry's page: from the snapshot for the entries the feeds show, else from the state
    (the long tail), off the event loop."""
    snapshot = request.app[LIVE].current
    document = snapshot.documents.get(request.rel_url.path)
    if document is None and snapshot.documents:
        document = await request.app[PAGES].page(request.match_info["slug"])
    if document is None:
        _not_there(snapshot)
    return respond(request, document)


def _not_there(snapshot: Snapshot) -> NoReturn:
    if not snapshot.documents:
        # Nothing published since start (the seeds folder was missing): say "not yet",
        # not "gone", so readers and caches try again.
        raise web.HTTPServiceUnavailable(headers={"Retry-After": "5"})
    raise web.HTTPNotFound()


#: Bodies larger than this are sent in pieces with back-pressure (LargeBody); smaller ones in
#: one write, with headers prepared once (the hot path: a 50-entry feed is ~160 KB, and
#: pieces cost it ~10% of its requests per second). What a stalled reader of a body up to this
#: size makes the process hold is bounded by it, and the connection cap bounds the readers.
STREAM_MIN_BYTES = 256 * 1024
#: One piece of a large body: what a stalled reader can make the process hold, beyond what
#: the transport buffers before it stops accepting more (its high-water mark).
PIECE_BYTES = 256 * 1024


def respond(request: web.Request, document: Document) -> web.StreamResponse:
    headers = request.headers
    coding = choose_coding(headers.get("Accept-Encoding"))
    if coding is None:
        raise web.HTTPNotAcceptable(headers={"Vary": "Accept-Encoding"})
    variant = document.variants[coding]
    if not_modified(document.etags, document.unchanged_since or document.last_modified,
                    headers.get("If-None-Match"), headers.get("If-Modified-Since")):
        return web.Response(status=304, headers=variant.not_modified_headers)
    if len(variant.body) > STREAM_MIN_BYTES and request.method == "GET":
        return LargeBody(variant.body, variant.headers, request.app[CONFIG].server.send_timeout_s,
                         request.transport)
    return web.Response(body=variant.body, headers=variant.headers)


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


#: Scheduled entries and rejected seeds listed by /healthz (all are counted).
HEALTH_SCHEDULED_MAX = 100
HEALTH_REJECTED_MAX = 100


async def serve_health(request: web.Request) -> web.Response:
    """200 while feeds are served; 503 when the watch is down and the last rescan failed too,
    so nothing on disk can reach readers."""
    snapshot: Snapshot = request.app[LIVE].current
    pipeline: PipelineStatus = request.app[STATUS]
    down = not pipeline.watching and not pipeline.rescan_ok
    healthy = (pipeline.watching and snapshot.seeds_readable and not pipeline.pending_writes
               and pipeline.state_problem is None and pipeline.batch_problem is None)
    body = {
        "status": "down" if down else "ok" if healthy else "degraded",
        "watching": pipeline.watching,
        "seeds_folder": "ok" if snapshot.seeds_readable else "missing",
        "state": pipeline.state_problem or "ok",
        "unsaved_changes": pipeline.pending_writes,
        "pipeline": pipeline.batch_problem or "ok",
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
        "last_change": snapshot.changed_at.isoformat() if snapshot.changed_at else None,
        "renders": snapshot.generation,
        "pid": os.getpid(),  # which worker process answered
    }
    return web.Response(text=json.dumps(body, ensure_ascii=False, indent=1),
                        status=503 if down else 200, content_type="application/json",
                        headers={"Cache-Control": "no-store"})



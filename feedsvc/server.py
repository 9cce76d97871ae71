"""make_app(config): routes and conditional GET. The pipeline runs in a cleanup_ctx.

Requests never render: every body comes from the current snapshot, swapped in whole after each
change, so a response's body always matches its ETag.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, TypeVar

from aiohttp import web

from feedsvc.config import Config
from feedsvc.model import Document, Snapshot
from feedsvc.publisher import Publisher
from feedsvc.snapshot import Live
from feedsvc.watcher import watch_seeds

log = logging.getLogger("feedsvc")

CONFIG = web.AppKey("config", Config)
LIVE = web.AppKey("live", Live)

_ETAG_RE = re.compile(r'(?:W/)?"([^"]*)"')
T = TypeVar("T")


def make_app(config: Config) -> web.Application:
    """The application, with no side effects: the pipeline starts with the app's startup."""
    app = web.Application()
    app[CONFIG] = config
    app[LIVE] = Live()
    app.cleanup_ctx.append(run_pipeline)
    app.router.add_get("/", serve_document)
    app.router.add_get("/feed.atom", serve_document)
    app.router.add_get("/feed.rss", serve_document)
    app.router.add_get("/entries/{slug}", serve_document)
    app.router.add_get("/healthz", serve_health)
    return app


# -- the pipeline ------------------------------------------------------------------------------

async def run_pipeline(app: web.Application) -> AsyncIterator[None]:
    """Full scan at start, then apply the watcher's batches until shutdown."""
    config, live = app[CONFIG], app[LIVE]
    # One thread for all pipeline work: SQLite and feedgen's locale handling stay on it alone.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedsvc-pipeline")
    loop = asyncio.get_running_loop()

    def run(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return loop.run_in_executor(executor, fn, *args)

    try:
        publisher = await run(Publisher.open, config)
        live.current = await run(publisher.scan)
        log.info("serving %d published entries from %s", live.current.published,
                 config.paths.seeds)
        stop = asyncio.Event()
        watching = asyncio.create_task(_apply_changes(publisher, live, config, stop, run))
        try:
            yield
        finally:
            stop.set()
            try:
                await asyncio.wait_for(watching, timeout=5)
            except TimeoutError:
                log.warning("watcher did not stop in 5 s; cancelled")
            await run(publisher.close)
    finally:
        executor.shutdown(wait=True)


async def _apply_changes(publisher: Publisher, live: Live, config: Config, stop: asyncio.Event,
                         run: Callable[..., asyncio.Future[Any]]) -> None:
    async for batch in watch_seeds(config.paths.seeds, debounce_ms=config.watch.debounce_ms,
                                   stop_event=stop):
        try:
            if batch.rescan:
                live.current = await run(publisher.scan)
            else:
                live.current = await run(publisher.update, batch.paths)
        except Exception:
            # One bad batch must not stop publishing: keep serving the last snapshot.
            log.exception("applying seed changes failed; still serving the previous snapshot")


# -- handlers ----------------------------------------------------------------------------------

async def serve_document(request: web.Request) -> web.StreamResponse:
    snapshot = request.app[LIVE].current  # read once: body and validators from one snapshot
    document = snapshot.documents.get(request.rel_url.path)
    if document is None:
        if not snapshot.documents:
            # Nothing published since start (the seeds folder was missing): say "not yet",
            # not "gone", so readers and caches try again.
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "5"})
        raise web.HTTPNotFound()
    max_age = request.app[CONFIG].server.cache_max_age
    headers = {
        "ETag": document.etag,
        "Last-Modified": http_date(document.last_modified),
        "Cache-Control": f"public, max-age={max_age}",
    }
    if not_modified(document, request.headers.get("If-None-Match"),
                    request.headers.get("If-Modified-Since")):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = document.content_type
    return web.Response(body=document.body, headers=headers)


async def serve_health(request: web.Request) -> web.Response:
    snapshot: Snapshot = request.app[LIVE].current
    status = "ok" if snapshot.seeds_readable else "degraded"
    body = {
        "status": status,
        "seeds_folder": "ok" if snapshot.seeds_readable else "missing",
        "entries_published": snapshot.published,
        "seeds_rejected": len(snapshot.rejected),
        "rejected": [{"path": e.path, "line": e.line, "message": e.message}
                     for e in snapshot.rejected],
        "last_change": snapshot.changed_at.isoformat() if snapshot.changed_at else None,
    }
    return web.Response(text=json.dumps(body, ensure_ascii=False, indent=1),
                        content_type="application/json",
                        headers={"Cache-Control": "no-store"})


# -- conditional GET (RFC 9110 §13), pure -----------------------------------------------------

def not_modified(document: Document, if_none_match: str | None,
                 if_modified_since: str | None) -> bool:
    """Whether a GET/HEAD with these headers gets 304. If-None-Match, when present, decides
    alone (weak comparison; `*` matches); else If-Modified-Since. Garbage is ignored."""
    if if_none_match is not None:
        return etag_matches(document.etag, if_none_match)
    if if_modified_since is not None:
        since = parse_http_date(if_modified_since)
        return since is not None and document.last_modified <= since
    return False


def etag_matches(etag: str, if_none_match: str) -> bool:
    if if_none_match.strip() == "*":
        return True
    current = etag.removeprefix("W/")
    return any(f'"{tag}"' == current for tag in _ETAG_RE.findall(if_none_match))


def parse_http_date(value: str) -> datetime | None:
    with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
        moment = parsedate_to_datetime(value)
        if moment.tzinfo is not None:  # an HTTP-date is always GMT; a naive one is not valid
            return moment
    return None


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)

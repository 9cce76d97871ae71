"""`[build] on_change = true`: `serve` keeps `[paths] output` what `feedsvc build` would write,
change after change, so that nginx (or any static server) can serve the site from disk.

A snapshot listener (pipeline.SnapshotListener) notes what each batch changed and wakes a task;
the task writes on a thread of its own (never on the event loop, never on the pipeline's
thread: the site's files are made from the state through read connections of their own, as
`build` does), after the batch's gzip and br variants are made. Batches that arrive while a
write runs are merged into the next write. The first write, once the first snapshot is served,
renders everything and compares (the configuration may have changed while feedsvc was
stopped); the later ones render again only the snapshot's documents, the archive pages the
batches changed, the long tail's pages whose entry changed, the older and tag pages whose
version moved (a new entry: the newest one or two), the lists and the sitemap: see
publish/sitebuild.py. Each file appears whole (temporary file,
fsync, rename), dated with its Last-Modified; unchanged files are not touched.

A write that fails (disk full, permissions) is logged and tried again, whole, after
RETRY_S or with the next change; serving goes on from memory meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from feedsvc.errors import FeedsvcError
from feedsvc.model import FeedInfo, Snapshot
from feedsvc.publish.sitebuild import SiteBuilder
from feedsvc.publish.siteoutput import OutputCounts
from feedsvc.publish.snapshot import Live
from feedsvc.serve.keys import LIVE, PAGES, SETTINGS, SNAPSHOT_LISTENERS
from feedsvc.serve.service import LiveConfig
from feedsvc.serve.websub.topics import ChangedDocuments

log = logging.getLogger("feedsvc")

#: Seconds before a failed write is tried again (without waiting for a change).
RETRY_S = 30.0
#: How often the task looks whether the first snapshot is served (start-up only).
_FIRST_POLL_S = 0.05


class StaticSite:
    def __init__(self, settings: LiveConfig, live: Live) -> None:
        self._settings = settings  # the config in force: a SIGHUP may replace it
        self._config = settings.current  # its paths: a reload does not change them
        self._live = live
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedsvc-build")
        self._builder: SiteBuilder | None = None
        self._changed: set[str] = set()
        self._full = True  # the next write renders everything
        self._wake = asyncio.Event()
        self._stopping = False
        self.writes = 0  # writes done (tests, logs)

    def changed(self, change: ChangedDocuments) -> None:
        """The listener: note the batch, wake the task (returns at once)."""
        self._changed |= change.paths
        self._wake.set()

    async def keep_current(self, info_of: Callable[[], FeedInfo | None]) -> None:
        """Write once the first snapshot is served, then after every change, until `stop`
        (which writes the last change first)."""
        loop = asyncio.get_running_loop()
        # The pipeline starts after this: its info and first snapshot come a moment later.
        while (info := info_of()) is None or not self._live.current.documents:
            if self._stopping:
                return
            await asyncio.sleep(_FIRST_POLL_S)
        while True:
            if self._full or self._changed:
                await self._write_now(loop, info)
            if self._stopping:
                return
            await self._wake.wait()
            self._wake.clear()
            info = info_of() or info

    async def _write_now(self, loop: asyncio.AbstractEventLoop, info: FeedInfo) -> None:
        changed, self._changed = self._changed, set()
        full, self._full = self._full, False
        snapshot = self._live.current
        try:
            counts = await loop.run_in_executor(self._executor, self._write, info, snapshot,
                                                None if full else frozenset(changed))
        except Exception as e:  # FeedsvcError, or a fault of ours: serving goes on
            self._full = True
            log.error("static output %s not updated: %s; trying again in %.0f s",
                      self._config.paths.output, e, RETRY_S)
            if not self._stopping:
                loop.call_later(RETRY_S, self._wake.set)
            return
        self.writes += 1
        if counts.written or counts.removed or counts.touched:
            log.info("static output %s: %d files written, %d redated, %d removed",
                     self._config.paths.output, counts.written, counts.touched, counts.removed)

    def _write(self, info: FeedInfo, snapshot: Snapshot,
               changed: frozenset[str] | None) -> OutputCounts:
        """On the writer's thread: wait for the variants, then write."""
        coding = self._live.coding  # read after `current`: this snapshot's, or done
        if coding:
            concurrent.futures.wait(coding)
        builder = self._builder
        if builder is None or builder.info is not info:
            if builder is not None:
                builder.close()
            # A new publisher (a start, or a reload: SIGHUP's config makes a new info):
            # rendered with the config in force, and everything compared.
            builder = self._builder = SiteBuilder(self._settings.current)
            builder.start(info)
            changed = None
        if any(len(d.variants) < 3 for d in snapshot.documents.values()):
            raise FeedsvcError("compressed variants not ready")
        return builder.write(snapshot, changed)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def close(self) -> None:
        """After the task ended: the builder's connections, the thread."""
        def closing() -> None:
            if self._builder is not None:
                self._builder.close()
        self._executor.submit(closing).result()
        self._executor.shutdown(wait=True)


async def run_static_site(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx of the leader with `[build] on_change`, before the pipeline's: listens from
    the first batch on; writes once the first snapshot is served; torn down after the
    pipeline stopped (the last change written first)."""
    site = StaticSite(app[SETTINGS], app[LIVE])
    app[SNAPSHOT_LISTENERS].append(site.changed)

    task = asyncio.create_task(site.keep_current(lambda: app[PAGES].info))
    try:
        yield
    finally:
        await site.stop()
        try:
            await task
        finally:
            await asyncio.get_running_loop().run_in_executor(None, site.close)

"""The pipeline: seeds → Publisher → the live snapshot, /healthz's status and the followers.

One object owns the loop: the initial scan, the watcher's batches (whatever queued up during a
render is merged into the next one), rescans (periodic, after bursts, after failures with
backoff), the timer of the next scheduled entry, write retries and what is left over from the
parsing budget. When to wake up and rescan is decided by its `Timetable` (pure); this module
does the waiting and the work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from feedsvc.config import Config
from feedsvc.errors import FeedsvcError
from feedsvc.ingest.source import DescriptorsExhausted
from feedsvc.ingest.watcher import Batch
from feedsvc.logtext import escape
from feedsvc.model import FeedInfo, Snapshot
from feedsvc.publish.publisher import Publisher
from feedsvc.publish.snapshot import Live
from feedsvc.serve.connections import RateLimitedLog
from feedsvc.serve.health import LiveHealth
from feedsvc.serve.memory import give_back_memory
from feedsvc.serve.metrics import PipelineMetrics
from feedsvc.serve.timetable import FAILED_RETRY_S, Timetable, only_a_check
from feedsvc.serve.watching import SeedWatch
from feedsvc.serve.websub.topics import ChangedDocuments, changed_feed_documents
from feedsvc.serve.workers import Followers, SnapshotMessage

log = logging.getLogger("feedsvc")


class ReloadRefused(FeedsvcError):
    """A reload that cannot be applied now: the running config stays."""


class FolderUnreadable(FeedsvcError):
    """A reloaded publisher's scan found no seeds folder: nothing to publish yet."""


T = TypeVar("T")

#: Told, on the event loop, of every batch that changed feed documents (WebSub's pings and
#: deliveries). It must return at once: it queues work, it never waits for it.
SnapshotListener = Callable[[ChangedDocuments], None]

#: Time a batch may spend reading and parsing seeds before it publishes what it has and
#: leaves the rest to the next batch, taken at once: seeds within every bound may still cost
#: about a second each, and a small one dropped with ten of them must not wait for all ten.
PARSE_BUDGET_S = 0.2
#: How long stopping waits for each of the pipeline's tasks before cancelling it.
STOP_TIMEOUT_S = 10.0


class Pipeline:
    """Full scan at start, then the watcher's batches, periodic rescans and write retries
    until `stop`. Each snapshot goes to `live`, each status to `health`, both to `followers`."""

    def __init__(self, publisher: Publisher, executor: ThreadPoolExecutor, config: Config,
                 live: Live, health: LiveHealth, followers: Followers,
                 listeners: Sequence[SnapshotListener] = (),
                 on_report: Callable[[Snapshot], None] | None = None) -> None:
        self._publisher = publisher
        self._on_report = on_report
        # Held while a batch is applied and reported, and by a reload: one at a time.
        self._busy = asyncio.Lock()
        self._listeners = listeners
        self._executor = executor
        self._config = config
        self._live = live
        self._health = health
        self._followers = followers
        self._queue: asyncio.Queue[Batch | None] = asyncio.Queue()
        self._watch = SeedWatch(self._queue)
        self._tasks: list[asyncio.Task[None]] = []
        self._timetable = Timetable(config.watch.rescan_s, next_rescan=0.0)  # set by start
        self._fd_log = RateLimitedLog("cannot open seeds for lack of file descriptors; retrying")
        #: Told how long each batch took (`[server] metrics`); None: not measured.
        self.metrics: PipelineMetrics | None = None
        #: After a reload, until a full scan of the new publisher works: each batch is one.
        self._full_scan_needed = False

    @classmethod
    async def open(cls, config: Config, live: Live, health: LiveHealth,
                   followers: Followers, listeners: Sequence[SnapshotListener] = (),
                   on_report: Callable[[Snapshot], None] | None = None) -> Pipeline:
        """Open the state and the catalog, on the pipeline's thread."""
        # One thread for all pipeline work: SQLite and feedgen's locale handling stay on it alone.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedsvc-pipeline")
        try:
            publisher = await asyncio.get_running_loop().run_in_executor(
                executor, Publisher.open, config)
        except BaseException:
            executor.shutdown(wait=True)
            raise
        return cls(publisher, executor, config, live, health, followers, listeners, on_report)

    @property
    def info(self) -> FeedInfo:
        return self._publisher.info

    async def start(self) -> None:
        """The initial scan, then the loop runs until `stop`."""
        try:
            # Announced too: the seeds may have changed while feedsvc was stopped (the state
            # holds each document's digest: only documents whose bytes differ are re-dated).
            started = asyncio.get_running_loop().time()
            self._swap(*await self._run(self._published, self._publisher.scan))
            _measured(self.metrics, "scan", started, None)
        except Exception as e:
            # A start-up that meets a fault still starts: it serves what it has, says why on
            # /healthz, and tries again (systemd restarting it would meet the same fault).
            self._batch_failed(e, FAILED_RETRY_S)
        await self._report()
        log.info("serving %d published entries from %s", self._live.current.published_count,
                 self._config.paths.seeds)
        self._timetable = Timetable.starting(
            asyncio.get_running_loop().time(), self._config.watch.rescan_s,
            failed=self._health.current.batch_problem is not None)
        self._watch.start(self._config.paths.seeds, self._config.watch)
        self._tasks = [asyncio.create_task(self._loop())]

    async def stop(self) -> None:
        """Stop watching, finish the batch under way, close the state, the pipes, the thread."""
        try:
            for task in [self._watch.stop(), *self._tasks]:
                try:
                    await asyncio.wait_for(task, timeout=STOP_TIMEOUT_S)
                except TimeoutError:
                    log.warning("pipeline task did not stop in %.0f s; cancelled",
                                STOP_TIMEOUT_S)
            await self._run(self._publisher.close)
            self._followers.close()
        finally:
            self._executor.shutdown(wait=True)

    def _run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _loop(self) -> None:
        """Apply batches one render at a time. Whatever queued up during a render is merged
        and applied by the next one, so a burst costs a few renders, not one per file."""
        while (batch := await self._next_batch()) is not None:
            async with self._busy:
                batch, stopping = self._merge_queued(batch)
                seen, self._watch.first_seen = self._watch.first_seen, None
                await self._apply(batch, seen)
                await self._report()
            if stopping:
                return

    async def _next_batch(self) -> Batch | None:
        """The watcher's next batch, or one the timetable makes when it is time for a rescan,
        a write retry, a scheduled entry or the budget's left-over; None once the watch
        stopped. Wake-ups with nothing to apply only check the state file."""
        loop = asyncio.get_running_loop()
        while True:
            publisher = self._publisher  # (a reload replaces it)
            catalog = publisher.catalog
            due = publisher.next_due()
            due_in = None if due is None else (due - datetime.now(UTC)).total_seconds()
            timeout = self._timetable.timeout(loop.time(), deferred=bool(catalog.deferred),
                                              left_over=bool(catalog.left_over), due_in=due_in)
            try:
                return await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:  # time for a rescan, a write retry, a scheduled entry, a check
                batch = Batch(rescan=self._timetable.rescan_due(loop.time()),
                              watching=self._health.current.watching)
                if not only_a_check(rescan=batch.rescan, needs_retry=publisher.needs_retry,
                                    left_over=bool(catalog.left_over),
                                    due_passed=due is not None and due <= datetime.now(UTC)):
                    return batch
            # Only the check that the state file is still the one open (a stat); a deleted or
            # replaced one is written back.
            async with self._busy:
                try:
                    await self._run(self._publisher.store.retry)
                except Exception:
                    log.exception("checking the state file failed")
                await self._report()

    def _merge_queued(self, batch: Batch) -> tuple[Batch, bool]:
        """`batch` with the batches that queued up behind it, and whether the watch stopped."""
        stopping = False
        while not self._queue.empty():
            extra = self._queue.get_nowait()
            if extra is None:
                stopping = True
                break
            batch = batch.merge(extra)
        if deferred := self._publisher.catalog.deferred:  # with this batch, whatever it holds
            seeds = self._config.paths.seeds
            batch = Batch(batch.paths | frozenset(seeds / name for name in deferred),
                          batch.rescan, batch.watching)
        # Files the last batch left unread are read by this one (Catalog.update takes them).
        return batch, stopping

    async def _apply(self, batch: Batch, seen: float | None = None) -> None:
        """Apply `batch`; `seen`: when the watcher reported its oldest change (loop time)."""
        loop, publisher, timetable = asyncio.get_running_loop(), self._publisher, self._timetable
        self._set_health(watching=batch.watching)
        started = loop.time()
        try:
            if self._full_scan_needed:  # a reloaded publisher: the whole folder, no budget
                timetable.rescanning(loop.time())
                snapshot, paths = await self._run(self._published, publisher.scan)
                if not snapshot.seeds_readable:  # it would publish nothing
                    raise FolderUnreadable(f"seeds folder {self._config.paths.seeds} is "
                                           "missing or unreadable")
                self._full_scan_needed = False
                self._swap(snapshot, paths)
                _measured(self.metrics, "scan", started, seen)
                self._set_health(rescan_ok=True)
            elif batch.rescan:
                timetable.rescanning(loop.time())
                self._swap(*await self._run(self._published, publisher.scan, PARSE_BUDGET_S))
                _measured(self.metrics, "scan", started, seen)
                self._set_health(rescan_ok=self._live.current.seeds_readable)
            else:
                # Swapped in once dated, hashed and written to the state; their gzip and br
                # variants follow (until then a request gets identity: Live.coding). A fifth
                # of a 50-entry feed's compressions spent on 2 cores off the way to readers.
                coding: list[Future[None]] = []
                try:
                    snapshot, paths = await self._run(self._published, publisher.update,
                                                      batch.paths, PARSE_BUDGET_S, coding)
                    self._live.coding = tuple(coding)
                    self._swap(snapshot, paths)
                    _measured(self.metrics, "update", started, seen)
                    timetable.updated(loop.time(), len(batch.paths))
                    # Before the followers get the snapshot, and before the next batch.
                    try:
                        await self._live.coded()
                    except Exception:
                        # Compressed twice, failed twice (memory): the change is served all
                        # the same, in identity, until it changes again.
                        log.exception("compressing the changed documents failed")
                finally:
                    self._live.coding = ()
            if self._health.current.batch_problem is not None:
                log.info("applying seed changes works again")
                self._set_health(batch_problem=None)
                timetable.recovered()
        except DescriptorsExhausted as e:
            # Not even the folder could be listed: try again shortly, quietly.
            self._fd_log.note(e)
            timetable.descriptors_exhausted(loop.time())
        except Exception as e:
            # One bad batch must not stop publishing: keep serving the last snapshot, say so on
            # /healthz, and try its files again soon (the catalog hands them out again).
            self._batch_failed(e, timetable.failed(loop.time()))
            self._set_health(rescan_ok=self._health.current.rescan_ok and not batch.rescan)
        if publisher.catalog.deferred:
            self._fd_log.note(f"{len(publisher.catalog.deferred)} seeds waiting to be read")

    async def reload(self, config: Config) -> FeedInfo:
        """Publish with `config` from now on (SIGHUP; paths and the watcher's settings are the
        running ones, see service.applicable), as a restart would, without closing a socket:
        the publisher is opened again with it and scans the folder, rendering everything,
        while the current snapshot is still served; its snapshot goes to the followers with
        the config. The old publisher is closed and let go before the scan: two side by side
        cost ~50 MiB more at 100,000 seeds, and fragmented the heap for good.

        Refused (the old publisher kept, ReloadRefused) while changes wait to be written to
        the state (they would be lost with it) or when the state cannot be opened. A scan that
        fails (logged) is a failed batch: the last snapshot is still served, /healthz says why, and
        every batch is a full rescan until one works (an update of a few files on a publisher
        that has not seen the whole folder would publish only those)."""
        async with self._busy:
            old = self._publisher
            if old.pending_writes:
                raise ReloadRefused(f"{old.pending_writes} changes wait to be written to the "
                                    "state; reload once /healthz shows none pending")
            try:
                new = await self._run(Publisher.open, config)
            except Exception as e:
                raise ReloadRefused(f"cannot open the state with the new config: {e}") from e
            self._publisher, self._config, self._followers.config = new, config, config
            # The watcher's settings, then a full scan: what changed meanwhile is in it.
            self._timetable.rescan_s = config.watch.rescan_s
            await self._watch.restart(config.paths.seeds, config.watch)
            try:
                await self._run(old.close)
            except Exception:
                log.exception("closing the previous publisher failed")
            del old  # its catalog, timeline and texts: given back before the new scan
            await self._run(give_back_memory)
            self._full_scan_needed = True
            await self._apply(Batch(rescan=True, watching=self._health.current.watching))
            await self._report()
            if self._full_scan_needed:
                log.error("reload: the new config is in force, but publishing with it failed "
                          "(see /healthz); the previous snapshot is served until a rescan "
                          "works")
            return new.info

    def _published(self, apply: Callable[..., Snapshot], *args: Any
                   ) -> tuple[Snapshot, frozenset[str]]:
        """On the pipeline's thread: `apply(*args)`, and the feed documents whose bytes the
        publisher changed since the last batch (when `apply` fails half-way, what it re-dated
        stays with the publisher: the next batch announces it)."""
        snapshot = apply(*args)
        return snapshot, changed_feed_documents(snapshot, self._publisher.take_changed())

    def _swap(self, snapshot: Snapshot, paths: frozenset[str] = frozenset()) -> None:
        """Serve `snapshot` from now on, and tell the listeners which feed documents changed
        (also when the snapshot is the same object: an edit of an archived entry changes an
        archive page only)."""
        self._live.current = snapshot
        if not self._listeners or not paths:
            return
        changed = ChangedDocuments(snapshot, paths)
        for listener in self._listeners:
            try:
                listener(changed)
            except Exception:  # a listener's fault must not stop publishing
                log.exception("a listener of published changes failed")

    def _batch_failed(self, error: Exception, retry_s: float) -> None:
        problem = f"last batch failed: {type(error).__name__}: {escape(str(error))}"
        if problem != self._health.current.batch_problem:  # the traceback once, not per retry
            log.exception("applying seed changes failed; still serving the previous snapshot, "
                          "trying again in %.0f s", retry_s)
        else:
            log.error("applying seed changes failed again (%s); trying again in %.0f s",
                      problem, retry_s)
        self._set_health(batch_problem=problem)

    async def _report(self) -> None:
        """Note what is waiting to be written, and send the followers what is new."""
        publisher = self._publisher
        problem = publisher.store.problem
        self._set_health(pending_writes=publisher.pending_writes,
                         write_failures=publisher.store.write_failures,
                         state_problem=None if problem is None else str(problem))
        await self._followers.send(SnapshotMessage(self._live.current, self._health.current,
                                                   publisher.info, self._followers.config))
        if self._on_report is not None:
            self._on_report(self._live.current)

    def _set_health(self, **changes: Any) -> None:
        self._health.current = replace(self._health.current, **changes)


def _measured(metrics: PipelineMetrics | None, kind: str, started: float,
              seen: float | None) -> None:
    """The batch's render and the watcher's change → swap, to the metrics, if measured."""
    if metrics is not None:
        metrics.swapped(kind, started, seen, asyncio.get_running_loop().time())

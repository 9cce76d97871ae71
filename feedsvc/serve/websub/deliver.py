"""Content distribution of the built-in hub (W3C WebSub §7): when a batch changes a topic's
document, each of its active subscriptions gets a POST of the new document.

The pipeline calls `Deliverer.changed` on the event loop after each swap; it only records which
topics changed (the latest snapshot of each: a newer change supersedes one not yet sent) and
wakes the dispatcher, which looks the subscriptions up on the storage's own thread and gives
each subscription its pending notification. Each subscription with something to deliver has
one task of its own: a slow or hanging callback holds only its task (and, for at most
request_timeout_s, one place in a lane), never another subscriber, never publishing.

Failures are retried with exponential backoff and jitter (distribution.next_retry); after
give_up_after_s a notification is abandoned, but the subscription stays active until its lease
ends and a later change is tried again (§7: "The hub MUST keep the subscription active until
the end of the lease duration, and if a new update is published to the topic, MUST continue to
retry delivery to the previously-failing subscriber"). A 410 ends the subscription at once
(§7: the hub MAY). Notifications waiting in memory are lost on a restart: the next change of
the topic brings the subscriber up to date (each delivery is the whole document).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from feedsvc.config import Config
from feedsvc.errors import FeedsvcError
from feedsvc.logtext import escape
from feedsvc.model import Document, Snapshot
from feedsvc.publish.archives import ArchivePages
from feedsvc.publish.registry import ARCHIVES, format_of
from feedsvc.serve.health import LiveHealth
from feedsvc.serve.keys import ARCHIVE_PAGES, CONFIG, SERVICE, SETTINGS, SNAPSHOT_LISTENERS, STATUS
from feedsvc.serve.websub.callbacks import CallbackError, SafeResolver, check_callback
from feedsvc.serve.websub.distribution import (
    Outcome,
    link_header,
    next_retry,
    outcome,
    signature,
)
from feedsvc.serve.websub.hub import HUB
from feedsvc.serve.websub.ledger import DeliveryLedger
from feedsvc.serve.websub.topics import ChangedDocuments, hub_urls, topic_url
from feedsvc.state.subscriptions import Subscription, SubscriptionStorage

log = logging.getLogger("feedsvc")

T = TypeVar("T")

#: `call(fn, *args)`: `fn(*args)` on the storage's own thread (the hub's `Hub.call`).
StorageCall = Callable[..., Awaitable[Any]]

#: Requests under way at once to subscribers whose last attempt worked, and to those whose
#: last attempt failed: a crowd of dead callbacks, each holding its place until the timeout,
#: cannot take the places of the healthy ones.
HEALTHY_LANE = 16
FAILING_LANE = 16
#: How long a request to a healthy subscriber keeps its place (see Deliverer._place): on
#: loopback a delivery of a 160 KB feed takes well under it; one over the internet or to a
#: callback that hangs lets the next one start meanwhile.
HEALTHY_HOLD_S = 0.05
#: Bodies from this size are signed on the signing threads, smaller ones on the loop. An
#: HMAC-SHA256 of a 160 KB feed is 0.1 ms (SHA extensions); a hundred thread hops cost the
#: loop more than that saves it: on 2 cores, 100 signed deliveries of 160 KB took the hub
#: 21-29 ms of CPU signed on the loop and 32-34 ms on threads, and the median callback came
#: no later (bench/push_floor.py's sender, 2026-11-30). A body of megabytes still goes to a
#: thread: the loop then serves readers while it is hashed.
SIGN_OFF_LOOP_BYTES = 1024 * 1024
SIGNING_THREADS = 2
#: After the storage failed to say who subscribed, the lookup is tried again this much later.
STORAGE_RETRY_S = 1.0
USER_AGENT = "feedsvc-websub-hub"


@dataclass(slots=True, eq=False)
class _Slot:
    """One subscription's deliveries: its latest undelivered notification (at most one: a
    newer document of the topic supersedes it) and the task that sends it."""

    subscription: Subscription
    pending: Document | None = None
    #: Loop time at which the pending notification arrived: give_up_after_s counts from it.
    pending_since: float = 0.0
    failures: int = 0  # in a row
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def _now_us() -> int:
    return time.time_ns() // 1000


class Deliverer:
    """The snapshot listener that distributes content to the built-in hub's subscribers."""

    def __init__(self, config: Config, storage: SubscriptionStorage, call: StorageCall,
                 session: aiohttp.ClientSession, health: LiveHealth | None = None,
                 archive_pages: ArchivePages | None = None,
                 rng: random.Random | None = None,
                 lanes: tuple[int, int] = (HEALTHY_LANE, FAILING_LANE)) -> None:
        self._config = config
        self._storage = storage
        self._call = call  # runs a function on the storage's own thread
        self._session = session
        self._archive_pages = archive_pages
        self._rng = rng or random.Random()
        self._hubs = hub_urls(config)
        self._incoming: dict[str, Snapshot] = {}  # URL path → the latest snapshot changing it
        self._wake = asyncio.Event()
        self._slots: dict[tuple[str, str], _Slot] = {}
        self._healthy_lane = asyncio.Semaphore(lanes[0])
        self._failing_lane = asyncio.Semaphore(lanes[1])
        self._ledger = DeliveryLedger(health)
        self._dispatcher: asyncio.Task[None] | None = None
        self._signing = ThreadPoolExecutor(max_workers=SIGNING_THREADS,
                                           thread_name_prefix="websub-sign")

    # -- the listener (on the loop, returns at once) -------------------------------------------

    def changed(self, changed: ChangedDocuments) -> None:
        for path in changed.paths:
            self._incoming[path] = changed.snapshot
        self._wake.set()

    def reconfigure(self, config: Config) -> None:
        """`[websub]` as a reload sets it, from the next delivery on: the hubs named in the
        Link header, the timeout, the give-up time, the private-callback switch."""
        self._config, self._hubs = config, hub_urls(config)

    def start(self) -> None:
        self._dispatcher = asyncio.create_task(self._dispatch())

    async def stop(self) -> None:
        tasks = [slot.task for slot in self._slots.values() if slot.task is not None]
        if self._dispatcher is not None:
            tasks.append(self._dispatcher)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._signing.shutdown(wait=True)
        self._ledger.flush()  # the last counts

    @property
    def in_flight(self) -> int:
        """Subscriptions with a notification not yet delivered (tests, the bench)."""
        return sum(1 for slot in self._slots.values() if slot.pending is not None)

    # -- dispatch: changed topics → each subscription's slot -----------------------------------

    async def _dispatch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            incoming, self._incoming = self._incoming, {}
            try:
                await self._dispatch_batch(incoming)
            except FeedsvcError as e:
                log.error("WebSub: cannot read the subscriptions (%s); trying again in %.0f s",
                          e, STORAGE_RETRY_S)
                for path, snapshot in incoming.items():
                    self._incoming.setdefault(path, snapshot)  # newer ones win
                await asyncio.sleep(STORAGE_RETRY_S)
                self._wake.set()
            except Exception:  # a bug: these changes are not delivered, the next ones are
                log.exception("WebSub: distributing a change failed")

    async def _dispatch_batch(self, incoming: Mapping[str, Snapshot]) -> None:
        """Who subscribed comes first: a document is only looked at for a topic with
        subscribers. The snapshot's documents go out at once; an archive page (rendered from
        the state, milliseconds each) after them, and only when somebody subscribed to it: a
        drop that pushes an entry into the archive must not hold the feed's subscribers back
        while a page nobody follows is rendered."""
        paths = {topic_url(self._config, path): path for path in incoming}
        found = await self._on_storage(_lookup, list(paths), _now_us())
        archived: list[str] = []
        for topic, subscriptions in found.items():
            self._ledger.keep_only(topic, {s.callback for s in subscriptions})
            if not subscriptions:
                continue
            path = paths[topic]
            document = incoming[path].documents.get(path)
            if document is None:
                archived.append(topic)
                continue
            for subscription in subscriptions:
                self._enqueue(subscription, document)
        for topic in archived:
            path = paths[topic]
            document = await self._archive_page(incoming[path], path)
            if document is not None:
                for subscription in found[topic]:
                    self._enqueue(subscription, document)

    async def _archive_page(self, snapshot: Snapshot, path: str) -> Document | None:
        """An RFC 5005 archive page (not in the snapshot: rendered from the state)."""
        span, pages = snapshot.archive, self._archive_pages
        size, _, name = path.removeprefix(f"/{ARCHIVES}").partition("/")
        number, _, extension = name.partition(".")
        fmt = format_of(extension)
        if (span is None or pages is None or fmt is None or not path.startswith(f"/{ARCHIVES}")
                or size != str(span.page_entries) or not number.isdigit()):
            return None
        return await pages.page(span, int(number), fmt)

    def _enqueue(self, subscription: Subscription, document: Document) -> None:
        key = (subscription.topic, subscription.callback)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot(subscription)
        slot.subscription = subscription  # renewed: a new secret applies from now on
        if slot.pending is None or slot.pending.etag != document.etag:
            # A newer document supersedes the one not yet delivered; with it a new
            # notification, retried for give_up_after_s again (§7).
            slot.pending, slot.pending_since = document, asyncio.get_running_loop().time()
        if slot.task is None:
            slot.task = asyncio.create_task(self._run(key, slot))

    # -- one subscription's deliveries ---------------------------------------------------------

    async def _run(self, key: tuple[str, str], slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        give_up_s = self._config.websub.give_up_after_s
        try:
            while (document := slot.pending) is not None:
                subscription = slot.subscription
                # A subscriber known to fail (a given-up notification too) waits in the
                # failing lane: a hanging one never holds a place of the healthy ones again.
                result, error = await self._attempt(subscription, document,
                                                    bool(slot.failures)
                                                    or self._ledger.is_failing(key))
                if result is Outcome.DELIVERED:
                    if slot.pending is document:
                        slot.pending = None
                    slot.failures = 0
                    if (self._ledger.delivered(subscription)
                            or subscription.failing_since_us is not None):
                        await self._record_failing(subscription, None)
                        slot.subscription = replace(slot.subscription, failing_since_us=None)
                    continue
                if result is Outcome.GONE:
                    await self._gone(subscription)
                    return
                slot.failures += 1
                since_us = self._ledger.failed(subscription, error, _now_us())
                if since_us is not None and subscription.failing_since_us is None:
                    await self._record_failing(subscription, since_us)
                retry = next_retry(slot.failures, self._rng.random(),
                                   loop.time() - slot.pending_since, give_up_s)
                if retry.give_up:
                    log.warning("WebSub: gave up delivering %s to %s after %d attempts over "
                                "%d s; the subscription stays until its lease ends",
                                subscription.topic, escape(subscription.callback),
                                slot.failures, give_up_s)
                    self._ledger.gave_up()
                    slot.pending = None
                    return
                await asyncio.sleep(retry.delay_s)
                # Still subscribed (not unsubscribed, not expired), and with which secret?
                current = await self._current(subscription)
                if current is None:  # unsubscribed or expired: out of the report too
                    self._ledger.forget(key)
                    return
                slot.subscription = current
        except Exception:  # a bug: this notification is lost, the next change is delivered
            log.exception("WebSub: delivering %s to %s failed", slot.subscription.topic,
                          escape(slot.subscription.callback))
        finally:
            if self._slots.get(key) is slot:
                del self._slots[key]

    async def _attempt(self, subscription: Subscription, document: Document,
                       failing: bool) -> tuple[Outcome, str]:
        """One POST of `document` to the callback (§7), signed with the secret if any (§7.1)."""
        callback = subscription.callback
        async with self._place(failing):
            try:
                # The address again, at each delivery: DNS can change after the subscription.
                await check_callback(callback,
                                     allow_private=self._config.websub.allow_private_callbacks)
            except CallbackError as e:
                return Outcome.FAILED, f"not contacted: {e}"
            headers = {"Content-Type": document.content_type,
                       "Link": link_header(self._hubs, subscription.topic)}
            if subscription.secret is not None:
                headers["X-Hub-Signature"] = await self._sign(subscription.secret,
                                                              document.body)
            try:
                timeout = aiohttp.ClientTimeout(total=self._config.websub.request_timeout_s)
                async with self._session.post(callback, data=document.body, headers=headers,
                                              allow_redirects=False,
                                              timeout=timeout) as response:
                    status = response.status  # the body is ignored (§7)
            except TimeoutError:
                return Outcome.FAILED, "timed out"
            except (aiohttp.ClientError, OSError, ValueError) as e:
                return Outcome.FAILED, f"{type(e).__name__}: {e}"
        result = outcome(status)
        return result, "" if result is Outcome.DELIVERED else f"HTTP {status}"

    @contextlib.asynccontextmanager
    async def _place(self, failing: bool) -> AsyncIterator[None]:
        """A place in a lane for one request. A healthy one gives its place up after
        HEALTHY_HOLD_S even while it goes on waiting for the callback: the lane bounds the
        requests being prepared and sent (CPU: a few at a time finish first instead of all
        of them last), not the ones a slow network or a hanging callback keeps waiting. A
        failing one keeps its place to the end: dead callbacks get few requests at a time."""
        lane = self._failing_lane if failing else self._healthy_lane
        await lane.acquire()
        held = True

        def give_up_place() -> None:
            nonlocal held
            if held:
                held = False
                lane.release()

        timer = None if failing else asyncio.get_running_loop().call_later(HEALTHY_HOLD_S,
                                                                          give_up_place)
        try:
            yield
        finally:
            if timer is not None:
                timer.cancel()
            give_up_place()

    async def _sign(self, secret: bytes, body: bytes) -> str:
        """The signature; off the event loop for a body of SIGN_OFF_LOOP_BYTES or more
        (hashlib lets go of the GIL while it hashes: the loop goes on meanwhile)."""
        if len(body) < SIGN_OFF_LOOP_BYTES:
            return signature(secret, body)
        return await asyncio.get_running_loop().run_in_executor(self._signing, signature,
                                                                secret, body)

    async def _current(self, subscription: Subscription) -> Subscription | None:
        try:
            found = await self._on_storage(_lookup, [subscription.topic], _now_us())
        except FeedsvcError as e:
            log.error("WebSub: cannot read the subscriptions (%s)", e)
            return subscription
        return next((s for s in found.get(subscription.topic, ())
                     if s.callback == subscription.callback), None)

    # -- what is recorded, logged and reported -------------------------------------------------

    async def _gone(self, subscription: Subscription) -> None:
        self._ledger.gone(subscription)
        try:
            await self._on_storage(_unsubscribe, subscription.topic, subscription.callback)
        except FeedsvcError as e:
            log.error("WebSub: cannot remove the subscription (%s)", e)

    async def _record_failing(self, subscription: Subscription, since_us: int | None) -> None:
        try:
            await self._on_storage(_set_failing, subscription.topic, subscription.callback,
                                   since_us)
        except FeedsvcError as e:
            log.error("WebSub: cannot record a subscriber's failures (%s)", e)

    def _on_storage(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        return self._call(fn, self._storage, *args)


# -- on the storage's thread --------------------------------------------------------------------

def _lookup(storage: SubscriptionStorage, topics: list[str],
            now_us: int) -> Mapping[str, list[Subscription]]:
    return {topic: storage.active(topic, now_us) for topic in topics}


def _unsubscribe(storage: SubscriptionStorage, topic: str, callback: str) -> bool:
    return storage.unsubscribe(topic, callback)


def _set_failing(storage: SubscriptionStorage, topic: str, callback: str,
                 since_us: int | None) -> None:
    storage.failing(topic, callback, since_us)


@contextlib.asynccontextmanager
async def delivery_session(config: Config,
                           allow_private: Callable[[], bool] | None = None) -> Any:
    """The hub's HTTP client for deliveries: timeouts from the config, no redirects (callers
    say so), and, unless private callbacks are allowed (`allow_private`, when given, says
    whether they are now), a resolver that only ever hands out public addresses (the
    connection goes where the check looked)."""
    timeout = aiohttp.ClientTimeout(total=config.websub.request_timeout_s)
    allowed = config.websub.allow_private_callbacks
    resolver = SafeResolver(allow_private or (lambda: allowed))
    # No connection limit of its own: each subscription has at most one request under way,
    # and the subscriptions are bounded ([websub] max_subscriptions_per_topic, per_host).
    connector = aiohttp.TCPConnector(limit=0, resolver=resolver)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     headers={"User-Agent": USER_AGENT},
                                     cookie_jar=aiohttp.DummyCookieJar(),
                                     auto_decompress=False, trust_env=False) as session:
        yield session


async def run_delivery(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx of the leader with the built-in hub, between the hub's (its storage) and
    the pipeline's (which calls the listener): content distribution from the first batch on;
    torn down after the pipeline stopped, before the hub closes its storage."""
    config, hub = app[CONFIG], app[HUB]
    if not hub.ready:  # the hub said why; feeds are still served
        log.error("WebSub: no content distribution: the hub's storage is not open")
        yield
        return
    settings = app[SETTINGS]
    async with delivery_session(
            config, lambda: settings.current.websub.allow_private_callbacks) as session:
        deliverer = Deliverer(config, hub.storage, hub.call, session, app[STATUS],
                              app[ARCHIVE_PAGES])
        deliverer.start()
        app[SNAPSHOT_LISTENERS].append(deliverer.changed)
        app[SERVICE].configurables.append(deliverer.reconfigure)
        try:
            yield
        finally:
            await deliverer.stop()

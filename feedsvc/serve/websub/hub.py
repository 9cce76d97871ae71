"""The built-in WebSub hub, subscriber side (W3C WebSub §5): `POST {base_url}websub`.

A request is validated at once (requests.py: 400/413/415, 429 past the rate limit) and
answered 202 Accepted (§5.1.2); then, on a task of its own, the hub checks the callback's
address (callbacks.py), the bounds (subscriptions per topic and per callback host: a refusal
is a denial, §5.2), and verifies the subscriber's intent (§5.3, verify.py); only then is the
subscription added, renewed or removed (§5.1: "If verification fails, the subscription state
MUST be left unchanged").

Storage: `SQLiteSubscriptions` (state/subscriptions.py), used only on the hub's own thread
(`Hub.call`): never on the event loop, never on the pipeline's thread. The content
distribution (deliver.py) uses the same storage through `Hub.call`, and `check_callback`
before each delivery. Every worker process serves this route (they share the state file);
the rate limit is per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from feedsvc.config import Config
from feedsvc.errors import StoreError
from feedsvc.logtext import escape
from feedsvc.publish.registry import ARCHIVES, MAIN, formats
from feedsvc.publish.snapshot import Live
from feedsvc.serve.keys import SERVICE
from feedsvc.serve.websub.callbacks import (
    CallbackError,
    check_callback,
    client_session,
    close_later,
)
from feedsvc.serve.websub.requests import (
    MAX_REQUEST_BYTES,
    BadRequest,
    SubscriptionRequest,
    check_content_type,
    parse_request,
    refused_address,
)
from feedsvc.serve.websub.verify import deny, read_at_most, verify_intent
from feedsvc.state.subscriptions import SQLiteSubscriptions, Subscription

log = logging.getLogger("feedsvc")
T = TypeVar("T")

#: Verifications under way at most (each a task with one GET of at most request_timeout_s):
#: past it, requests get 503 and Retry-After.
MAX_PENDING = 1000
#: Client addresses whose request rate is remembered at most (the least recently seen go).
MAX_CLIENTS = 10_000
#: /healthz lists this many topics at most (the ones with most subscribers); all are counted.
HEALTH_TOPICS_MAX = 100
#: Expired subscriptions are deleted this often (active() ignores them before that).
SWEEP_S = 60.0


def now_us() -> int:
    return time.time_ns() // 1000


class RateLimit:
    """A token bucket per client address: `per_min` requests a minute, in bursts of up to
    `per_min`; memory bounded by MAX_CLIENTS addresses."""

    def __init__(self, per_min: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_min = per_min
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def allow(self, client: str) -> bool:
        now = self._clock()
        tokens, at = self._buckets.pop(client, (float(self.per_min), now))
        tokens = min(float(self.per_min), tokens + (now - at) * self.per_min / 60.0)
        allowed = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return allowed


class Hub:
    """`start` in the app's startup (run_hub), `close` at shutdown."""

    def __init__(self, config: Config, live: Live) -> None:
        self.config = config
        self.websub = config.websub
        self._live = live
        self.rate = RateLimit(config.websub.subscribe_rate_per_min)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="websub-hub")
        self._storage: SQLiteSubscriptions | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._retiring: set[asyncio.Task[None]] = set()  # replaced HTTP clients, closing
        #: The last request under way per (topic, callback): the next one waits for it.
        self._last: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._main_paths = frozenset(fmt.path(MAIN) for fmt in formats())

    # -- life -------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            self._storage = await self._on_thread(SQLiteSubscriptions.open,
                                                  self.config.paths.state)
        except StoreError as e:  # feeds are still served; the hub answers 503 (serve_hub)
            log.error("WebSub: the built-in hub cannot keep subscriptions: %s", e)
        self._session = self._new_session()
        self._sweeper = asyncio.create_task(self._sweep())

    def _new_session(self) -> aiohttp.ClientSession:
        return client_session(self.websub.request_timeout_s,
                              allow_private=lambda: self.websub.allow_private_callbacks)

    def reconfigure(self, config: Config) -> None:
        """`[websub]` as a reload sets it: leases, bounds, rate and the private-callback switch
        apply to the next request; a new timeout comes with a new HTTP client (the old one is
        closed once what runs on it has timed out)."""
        before = self.websub
        self.config, self.websub = config, config.websub
        self.rate.per_min = config.websub.subscribe_rate_per_min
        if self._session is not None and before.request_timeout_s != self.websub.request_timeout_s:
            old, self._session = self._session, self._new_session()
            task = asyncio.create_task(close_later(old, before.request_timeout_s + 1))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        tasks = [*self._pending, *self._retiring, *([self._sweeper] if self._sweeper else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._storage is not None:
            await self._on_thread(self._storage.close)
            self._storage = None
        self._executor.shutdown(wait=True)

    @property
    def ready(self) -> bool:
        return self._storage is not None and self._session is not None

    @property
    def storage(self) -> SQLiteSubscriptions:
        """The storage: use it only through `call` (its thread)."""
        if self._storage is None:
            raise StoreError("the WebSub hub's storage is not open")
        return self._storage

    @property
    def session(self) -> aiohttp.ClientSession:
        """The hub's HTTP client (safe addresses only, unless allow_private_callbacks)."""
        assert self._session is not None, "Hub.start first"
        return self._session

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the hub's storage thread, e.g. `await hub.call(hub.storage.active,
        topic, now_us())`."""
        return await self._on_thread(fn, *args)

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- a request --------------------------------------------------------------------------

    def topic_served(self, path: str) -> bool:
        """Whether the document at `path` is served now: the main feed in every format (even
        before the first scan), a tag's documents while the snapshot has them, archive pages
        that exist. A topic nobody can have discovered (§5.1: hub.topic "MUST be the 'self'
        URL found during the discovery step") is refused: it would only store rows."""
        snapshot = self._live.current
        if path in self._main_paths or path in snapshot.documents:
            return True
        span = snapshot.archive
        if span is None or not path.startswith(f"/{ARCHIVES}"):
            return False
        size, _, page = path[len(ARCHIVES) + 1:].partition("/")
        number = page.partition(".")[0]
        return (size == str(span.page_entries) and number.isdigit()
                and not number.startswith("0") and 1 <= int(number) <= span.pages)

    def accept(self, request: SubscriptionRequest) -> None:
        """Verify `request` on a task of its own (raises 503 when too many are under way)."""
        if len(self._pending) >= MAX_PENDING:
            raise web.HTTPServiceUnavailable(text="too many subscription requests are being "
                                                  "verified; try again later\n",
                                             headers={"Retry-After": "60"})
        key = (request.topic, request.callback)
        task = asyncio.create_task(self._carry_out(request, self._last.get(key)))
        self._pending.add(task)
        self._last[key] = task

        def done(task: asyncio.Task[None]) -> None:
            self._pending.discard(task)
            if self._last.get(key) is task:
                del self._last[key]

        task.add_done_callback(done)

    async def _carry_out(self, request: SubscriptionRequest,
                         after: asyncio.Task[None] | None) -> None:
        """Requests for one topic and callback are carried out in the order they came (a
        subscribe then an unsubscribe leave it unsubscribed, whichever verification answers
        first): §5.1 "each subsequent request … MUST override the previous subscription
        state"."""
        if after is not None:
            await asyncio.wait([after])  # its outcome is its own (logged there)
        try:
            await self._verify_and_apply(request)
        except StoreError as e:
            log.error("WebSub: %s of %s for %s not recorded: %s", request.mode,
                      escape(request.callback), escape(request.topic), e)
        except Exception:  # a bug: logged, the hub goes on
            log.exception("WebSub: %s of %s failed", request.mode, escape(request.callback))

    async def _verify_and_apply(self, request: SubscriptionRequest) -> None:
        allow_private = self.websub.allow_private_callbacks
        try:
            await check_callback(request.callback, allow_private=allow_private)
        except CallbackError as e:
            # Never contacted, not even to deny (§5.2's denial is a request too).
            log.warning("WebSub: %s of %s for %s refused: %s", request.mode,
                        escape(request.callback), escape(request.topic), e)
            return
        bounds = self.websub.max_subscriptions_per_topic, self.websub.max_subscriptions_per_host
        if request.mode == "subscribe" and (reason := await self.call(
                self.storage.over_bounds, request.topic, request.callback, now_us(), *bounds)):
            await self._deny(request, reason)
            return
        # §5.3: the lease is "measured from the time the verification request was made".
        asked_at = now_us()
        if not await verify_intent(self.session, mode=request.mode, topic=request.topic,
                                   callback=request.callback, lease_s=request.lease_s,
                                   allow_private=allow_private):
            return  # §5.1: "the subscription state MUST be left unchanged"
        if request.mode == "unsubscribe":
            await self.call(self.storage.unsubscribe, request.topic, request.callback)
            return
        subscription = Subscription(request.topic, request.callback, request.secret,
                                    asked_at + request.lease_s * 1_000_000)
        # Checked again as it is written: others may have subscribed meanwhile.
        if reason := await self.call(self.storage.subscribe_within, subscription, now_us(),
                                     *bounds):
            await self._deny(request, reason)  # §5.2: "MAY be denied … at any point"

    async def _deny(self, request: SubscriptionRequest, reason: str) -> None:
        log.warning("WebSub: subscription of %s for %s denied: %s",
                    escape(request.callback), escape(request.topic), reason)
        await deny(self.session, topic=request.topic, callback=request.callback,
                   reason=reason, allow_private=self.websub.allow_private_callbacks)

    # -- upkeep, health ---------------------------------------------------------------------

    async def _sweep(self) -> None:
        interval = min(SWEEP_S, float(self.websub.lease_min_s))
        while True:
            await asyncio.sleep(interval)
            try:
                if expired := await self.call(self.storage.expire, now_us()):
                    log.info("WebSub: %d subscription%s expired", expired,
                             "s" if expired > 1 else "")
            except StoreError as e:
                log.warning("WebSub: expired subscriptions not removed: %s", e)

    async def health(self) -> dict[str, object]:
        """What /healthz says of the hub: active subscriptions counted, per topic (the
        HEALTH_TOPICS_MAX topics with most), verifications under way."""
        try:
            total, topics = await self.call(self.storage.per_topic, now_us(),
                                            HEALTH_TOPICS_MAX + 1)
        except StoreError as e:
            return {"state": str(e), "verifications_pending": len(self._pending)}
        return {"state": "ok", "subscriptions": total,
                "topics": [{"topic": topic, "subscriptions": n}
                           for topic, n in topics[:HEALTH_TOPICS_MAX]],
                "topics_truncated": len(topics) > HEALTH_TOPICS_MAX,
                "verifications_pending": len(self._pending)}


HUB = web.AppKey("websub_hub", Hub)


async def serve_hub(request: web.Request) -> web.Response:
    """POST {base_url}websub: a subscription or unsubscription request (§5.1)."""
    hub = request.app[HUB]
    if not hub.ready:
        raise web.HTTPServiceUnavailable(text="the hub's subscriptions cannot be stored now\n",
                                         headers={"Retry-After": "60"})
    if not hub.rate.allow(request.remote or ""):
        return web.Response(status=429, text=f"over {hub.rate.per_min} subscription requests "
                                             "a minute from this address\n",
                            headers={"Retry-After": "60"})
    try:
        check_content_type(request.headers.get("Content-Type"))
        if (request.content_length or 0) > MAX_REQUEST_BYTES:
            raise BadRequest(413, f"the request body is over {MAX_REQUEST_BYTES} bytes")
        try:  # a body trickled in byte by byte holds the connection no longer than this
            async with asyncio.timeout(hub.websub.request_timeout_s):
                body = await read_at_most(request.content, MAX_REQUEST_BYTES)
        except TimeoutError:
            raise BadRequest(408, "the request body took too long to arrive") from None
        parsed = parse_request(hub.config, body)
        # An unsubscription is taken for any topic of ours: a tag's feed gone since must
        # still be left.
        if parsed.mode == "subscribe" and not hub.topic_served(parsed.path):
            raise BadRequest(400, f"hub.topic {parsed.topic} is not a feed document served "
                                  "now")
        if (not hub.websub.allow_private_callbacks
                and (reason := refused_address(parsed.callback)) is not None):
            raise BadRequest(400, f"hub.callback is a {reason} address: this hub does not "
                                  "send requests into its own network")
    except BadRequest as e:
        return web.Response(status=e.status, text=e.reason + "\n")
    hub.accept(parsed)
    # §5.1.2: 202 "to indicate that the request was received and will now be verified".
    return web.Response(status=202, text=f"{parsed.mode} request accepted; verification of "
                                         "intent follows\n")


async def run_hub(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the hub's storage, HTTP client and upkeep, from startup to shutdown."""
    hub = app[HUB]
    await hub.start()
    if SERVICE in app:  # the leader: its reloads (a follower's come with the leader's config)
        app[SERVICE].configurables.append(hub.reconfigure)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            await hub.close()

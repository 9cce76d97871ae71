"""Publishing to external hubs (W3C WebSub §6): after each batch that changed feed documents,
each configured hub gets one POST naming the changed topics.

§6: "The publisher MUST inform the hubs it previously designated when a topic has been
updated. The hub and the publisher can agree on any mechanism"; its note: "some existing
public hubs ask publishers to send a POST request with the keys hub.mode="publish" and
hub.url=(the URL of the resource that was updated)". What the hubs in use read: the Google
reference hub (pubsubhubbub.appspot.com) takes every `hub.url` of one POST
(`request.get_all('hub.url')`, answering 204); websubhub.com and the hubs tested by
websub.rocks read `hub.topic`. So a ping is form-encoded `hub.mode=publish`, then for each
changed topic the pair `hub.url={topic}&hub.topic={topic}`, at most MAX_TOPICS_PER_PING
topics per POST. Any 2xx is success.

Never in publishing's way: the pipeline's listener only adds topics to each hub's pending set
(coalesced: a topic changed twice before the ping is named once; bounded) and wakes the hub's
task. A ping that fails (connection, timeout, non-2xx) is retried with exponential backoff, the
topics that changed meanwhile joining it; a failing hub is logged when it starts failing and
when it recovers, not at every retry, and /healthz shows each hub's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from feedsvc.config import Config
from feedsvc.logtext import escape
from feedsvc.serve.health import HubHealth, LiveHealth
from feedsvc.serve.keys import CONFIG, SERVICE, SNAPSHOT_LISTENERS, STATUS
from feedsvc.serve.websub.topics import ChangedDocuments, topic_url

log = logging.getLogger("feedsvc")

#: Topics per POST: the reference hub took 100 pings a second per client; one change of a
#: configuration can re-date every archive page (thousands of topics).
MAX_TOPICS_PER_PING = 100
#: Topics waiting per hub; beyond it, new ones are dropped (counted and logged once) until
#: the hub accepts pings again. A hub down for days must not grow memory.
MAX_PENDING_TOPICS = 10_000
#: Backoff after a failed ping: 1 s, 2 s, 4 s … at most 5 minutes.
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 300.0
USER_AGENT = "feedsvc (WebSub publisher)"


class HubPings:
    """One hub: its pending topics, its task's loop and its state for /healthz."""

    def __init__(self, url: str, session: aiohttp.ClientSession,
                 on_change: Callable[[], None], retry_first_s: float = RETRY_FIRST_S,
                 retry_max_s: float = RETRY_MAX_S) -> None:
        self.url = url
        self._session = session
        self._on_change = on_change
        self._retry_first_s = retry_first_s
        self._retry_max_s = retry_max_s
        self.pending: set[str] = set()
        self._wake = asyncio.Event()
        self.health = HubHealth(url)
        self._dropped_logged = False
        #: Each ping's timeout ([websub] request_timeout_s, which a reload may change).
        self.timeout: aiohttp.ClientTimeout | None = None

    def add(self, topics: Iterable[str]) -> None:
        """On the event loop, from the pipeline's listener: queue, never wait."""
        before = len(self.pending)
        for topic in topics:
            if len(self.pending) >= MAX_PENDING_TOPICS and topic not in self.pending:
                self._drop(1)
                continue
            self.pending.add(topic)
        if len(self.pending) != before:
            self._wake.set()

    def _drop(self, count: int) -> None:
        self._set(dropped=self.health.dropped + count)
        if not self._dropped_logged:
            self._dropped_logged = True
            log.warning("WebSub hub %s: %d topics already wait for it; further ones are "
                        "dropped until it accepts pings", escape(self.url), MAX_PENDING_TOPICS)

    async def run(self, stop: asyncio.Event) -> None:
        """Ping whenever topics wait, until `stop`; after a failure, wait the backoff first."""
        delay = 0.0
        while not stop.is_set():
            if delay:
                await _wait(stop, delay)  # changes meanwhile join the pending set
            else:
                await _wait(stop, None, self._wake)
            if stop.is_set():
                return
            self._wake.clear()
            if not self.pending:
                continue
            if await self._send_pending():
                delay = 0.0
            else:
                delay = min(self._retry_max_s, max(self._retry_first_s, delay * 2))

    async def _send_pending(self) -> bool:
        """Send what waits, in chunks; whatever is not accepted waits again."""
        topics, self.pending = sorted(self.pending), set()
        for start in range(0, len(topics), MAX_TOPICS_PER_PING):
            chunk = topics[start:start + MAX_TOPICS_PER_PING]
            error = await self._post(chunk)
            if error is not None:
                self.pending.update(topics[start:])
                self._failed(error)
                return False
        self._succeeded()
        return True

    async def _post(self, topics: list[str]) -> str | None:
        """One ping; None when the hub accepted it, else why not."""
        pairs = [("hub.mode", "publish")]
        for topic in topics:
            pairs += [("hub.url", topic), ("hub.topic", topic)]
        try:
            async with self._session.post(
                    self.url, data=urlencode(pairs).encode("ascii"), allow_redirects=False,
                    timeout=self.timeout,
                    headers={"Content-Type": "application/x-www-form-urlencoded",
                             "User-Agent": USER_AGENT}) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__

    def _succeeded(self) -> None:
        if self.health.failing_since is not None:
            log.info("WebSub hub %s accepts pings again", escape(self.url))
        self._dropped_logged = False
        self._set(last_ok=_now(), failing_since=None, last_error=None,
                  pending=len(self.pending))

    def _failed(self, error: str) -> None:
        if self.health.failing_since is None:  # once when it starts failing, not per retry
            log.warning("WebSub hub %s refuses pings (%s); retrying with backoff",
                        escape(self.url), escape(error))
        self._set(failing_since=self.health.failing_since or _now(), last_error=error,
                  failures=self.health.failures + 1, pending=len(self.pending))

    def _set(self, **changes: object) -> None:
        self.health = replace(self.health, **changes)  # type: ignore[arg-type]
        self._on_change()


class Pinger:
    """Every configured hub's pings; `listener` is the pipeline's snapshot listener. A reload
    (`reconfigure`) adds and removes hubs and changes the timeout: the documents of that
    reload's publication advertise the new hubs, and its pings go to them."""

    def __init__(self, config: Config, session: aiohttp.ClientSession, health: LiveHealth,
                 retry_first_s: float = RETRY_FIRST_S) -> None:
        self._config = config
        self._session = session
        self._health = health
        self._retry_first_s = retry_first_s
        self.hubs: list[HubPings] = []
        self._stops: dict[str, asyncio.Event] = {}  # each hub's: a removed one stops alone
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._retired: list[asyncio.Task[None]] = []  # removed hubs' tasks, ending
        self._started = False
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """The hubs and the timeout of `config` from now on (a hub kept keeps its pending
        topics and its state)."""
        self._config = config
        timeout = aiohttp.ClientTimeout(total=config.websub.request_timeout_s)
        kept = {hub.url: hub for hub in self.hubs}
        self.hubs = [kept.get(url) or HubPings(url, self._session, self._report,
                                               self._retry_first_s)
                     for url in config.websub.hubs]
        for hub in self.hubs:
            hub.timeout = timeout
            if self._started and hub.url not in self._tasks:
                self._start(hub)
        for url in kept.keys() - set(config.websub.hubs):
            log.info("WebSub hub %s is no longer in the config: not pinged any more",
                     escape(url))
            if url in self._stops:
                self._stops.pop(url).set()  # its task ends; stop() still awaits it
                self._retired.append(self._tasks.pop(url))
        # (Those of earlier reloads that have ended are let go: reloads do not add up.)
        self._retired = [task for task in self._retired if not task.done()]
        self._report()

    def listener(self, changed: ChangedDocuments) -> None:
        topics = [topic_url(self._config, path) for path in sorted(changed.paths)]
        for hub in self.hubs:
            hub.add(topics)

    def start(self) -> None:
        self._started = True
        for hub in self.hubs:
            self._start(hub)

    def _start(self, hub: HubPings) -> None:
        stop = self._stops[hub.url] = asyncio.Event()
        self._tasks[hub.url] = asyncio.create_task(hub.run(stop))

    async def stop(self) -> None:
        for stop in self._stops.values():
            stop.set()
        for task in [*self._tasks.values(), *self._retired]:
            with contextlib.suppress(TimeoutError):  # cancelled: a ping waiting for its answer
                await asyncio.wait_for(task, timeout=5)

    def _report(self) -> None:
        """The hubs' state into /healthz (HealthStatus.hubs)."""
        self._health.current = replace(self._health.current,
                                       hubs=tuple(hub.health for hub in self.hubs))


async def run_pinger(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx, before the pipeline's: the HTTP client and the hubs' tasks; the listener
    joins the pipeline's, and a reload tells it the hubs (also when none were configured at
    start). Torn down after the pipeline stopped."""
    config = app[CONFIG]
    async with aiohttp.ClientSession() as session:
        pinger = Pinger(config, session, app[STATUS])
        app[SNAPSHOT_LISTENERS].append(pinger.listener)
        app[SERVICE].configurables.append(pinger.reconfigure)
        pinger.start()
        try:
            yield
        finally:
            await pinger.stop()


async def _wait(stop: asyncio.Event, timeout: float | None,
                wake: asyncio.Event | None = None) -> None:
    """Until `stop` (or `wake`) is set, or `timeout` seconds passed."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)

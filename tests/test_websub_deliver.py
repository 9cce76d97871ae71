"""The built-in hub's content distribution (W3C WebSub §7, §7.1): the delivery engine against
real subscriber servers (aiohttp on loopback), real HTTP, real documents, real threads.

The subscriptions come from `MemoryStorage`, a working in-memory implementation of the
SubscriptionStorage Protocol written here (the engine's own storage is the hub's SQLite one;
tests/test_websub_push.py runs the whole service with it)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import pytest
from aiohttp import web

from feedsvc.config import Config, WebSubConfig, load_config
from feedsvc.model import ArchiveSpan, Document, Snapshot
from feedsvc.publish.archives import ArchivePages
from feedsvc.publish.publisher import Publisher
from feedsvc.publish.registry import FeedFormat, format_of
from feedsvc.publish.snapshot import make_document
from feedsvc.serve.health import LiveHealth
from feedsvc.serve.websub import distribution
from feedsvc.serve.websub.deliver import Deliverer, delivery_session
from feedsvc.serve.websub.distribution import (
    Outcome,
    link_header,
    next_retry,
    outcome,
    retry_delay,
    signature,
)
from feedsvc.serve.websub.topics import ChangedDocuments, builtin_hub_url, topic_url
from feedsvc.state.subscriptions import Subscription
from tests.conftest import write_config, write_seed

FAR = 2**62  # a lease that does not end during a test
ATOM_FORMAT = format_of("atom")


class MemoryStorage:
    """SubscriptionStorage in memory (thread-safe: used from the engine's storage thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: dict[tuple[str, str], Subscription] = {}

    def subscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self.rows[subscription.topic, subscription.callback] = subscription

    def unsubscribe(self, topic: str, callback: str) -> bool:
        with self._lock:
            return self.rows.pop((topic, callback), None) is not None

    def active(self, topic: str, now_us: int) -> list[Subscription]:
        with self._lock:
            return [s for s in self.rows.values() if s.topic == topic and s.expires_us > now_us]

    def expire(self, now_us: int) -> int:
        with self._lock:
            gone = [k for k, s in self.rows.items() if s.expires_us <= now_us]
            for k in gone:
                del self.rows[k]
            return len(gone)

    def failing(self, topic: str, callback: str, since_us: int | None) -> None:
        with self._lock:
            if (topic, callback) in self.rows:
                self.rows[topic, callback] = replace(self.rows[topic, callback],
                                                     failing_since_us=since_us)


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes


@dataclass
class Subscriber:
    """A real subscriber endpoint: records every request per path, answers as told."""

    url: str = ""
    received: dict[str, list[Received]] = field(default_factory=dict)
    #: path → how to answer the n-th request (0-based): a status, or a coroutine to await first
    behaviour: dict[str, Callable[[int], Awaitable[int] | int]] = field(default_factory=dict)

    def callback(self, path: str) -> str:
        return f"{self.url}/{path}"

    def got(self, path: str) -> list[Received]:
        return self.received.get(path, [])

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        body = await request.read()
        calls = self.received.setdefault(path, [])
        calls.append(Received(time.monotonic(), dict(request.headers), body))
        answer = self.behaviour.get(path, lambda n: 200)(len(calls) - 1)
        status = await answer if not isinstance(answer, int) else answer
        return web.Response(status=status, text="ok")


@pytest.fixture
async def subscriber(unused_tcp_port_factory: Callable[[], int]) -> AsyncIterator[Subscriber]:
    sub = Subscriber()
    app = web.Application(client_max_size=8 * 1024 * 1024)  # a feed of megabytes too
    app.router.add_post("/{path:.*}", sub.handle)
    app.router.add_get("/{path:.*}", sub.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = unused_tcp_port_factory()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    sub.url = f"http://127.0.0.1:{port}"
    yield sub
    await runner.cleanup()


def hub_config(config: Config, **websub: object) -> Config:
    options = {"builtin_hub": True, "allow_private_callbacks": True, "request_timeout_s": 10,
               **websub}
    return replace(config, websub=WebSubConfig(**options))  # type: ignore[arg-type]


@dataclass
class Hub:
    config: Config
    storage: MemoryStorage
    deliverer: Deliverer
    health: LiveHealth

    def topic(self, path: str = "/feed.atom") -> str:
        return topic_url(self.config, path)

    def subscribe(self, callback: str, path: str = "/feed.atom", secret: bytes | None = None,
                  expires_us: int = FAR) -> None:
        self.storage.subscribe(Subscription(self.topic(path), callback, secret, expires_us))

    def publish(self, body: bytes, path: str = "/feed.atom") -> Document:
        document = make_document(path, "application/atom+xml; charset=utf-8", body,
                                 datetime(2026, 1, 1, tzinfo=UTC))
        snapshot = Snapshot(documents=MappingProxyType({path: document}))
        self.deliverer.changed(ChangedDocuments(snapshot, frozenset({path})))
        return document


@pytest.fixture
async def make_hub(config: Config) -> AsyncIterator[Callable[..., Awaitable[Hub]]]:
    stack: list[tuple[Deliverer, object, ThreadPoolExecutor]] = []

    async def make(lanes: tuple[int, int] | None = None, **websub: object) -> Hub:
        cfg = hub_config(config, **websub)
        storage = MemoryStorage()
        executor = ThreadPoolExecutor(max_workers=1)
        session_cm = delivery_session(cfg)
        session = await session_cm.__aenter__()
        health = LiveHealth()
        loop = asyncio.get_running_loop()

        def call(fn: Callable[..., object], *args: object) -> Awaitable[object]:
            return loop.run_in_executor(executor, fn, *args)

        deliverer = Deliverer(cfg, storage, call, session, health, rng=random.Random(1),
                              **({"lanes": lanes} if lanes else {}))
        deliverer.start()
        stack.append((deliverer, session_cm, executor))
        return Hub(cfg, storage, deliverer, health)

    yield make
    for deliverer, session_cm, executor in stack:
        await deliverer.stop()
        await session_cm.__aexit__(None, None, None)  # type: ignore[attr-defined]
        executor.shutdown(wait=True)


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)


# -- the pure rules --------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "expected"), [
    (200, Outcome.DELIVERED), (202, Outcome.DELIVERED), (204, Outcome.DELIVERED),
    (299, Outcome.DELIVERED), (410, Outcome.GONE), (301, Outcome.FAILED),
    (302, Outcome.FAILED), (307, Outcome.FAILED), (400, Outcome.FAILED), (404, Outcome.FAILED),
    (429, Outcome.FAILED), (500, Outcome.FAILED), (503, Outcome.FAILED), (100, Outcome.FAILED),
])
def test_outcome_of_a_status(status: int, expected: Outcome) -> None:
    assert outcome(status) is expected


def test_signature_is_hmac_sha256_hex() -> None:
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    assert signature(b"Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_link_header_hubs_then_self() -> None:
    assert link_header(["https://a/hub", "http://h/websub"], "http://h/feed.atom") == (
        '<https://a/hub>; rel="hub", <http://h/websub>; rel="hub", '
        '<http://h/feed.atom>; rel="self"')


@pytest.mark.parametrize(("failures", "share", "delay"), [
    (1, 0.0, 0.5), (1, 0.999999, 1.0), (2, 0.0, 1.0), (3, 0.0, 2.0), (4, 0.5, 6.0),
    (20, 0.0, distribution.RETRY_CAP_S / 2), (200, 0.999999, distribution.RETRY_CAP_S),
])
def test_retry_delay_doubles_with_jitter_and_cap(failures: int, share: float,
                                                 delay: float) -> None:
    assert retry_delay(failures, share) == pytest.approx(delay, rel=1e-5)


@pytest.mark.parametrize(("failures", "elapsed", "limit", "give_up"), [
    (1, 0.0, 10.0, False), (1, 9.4, 10.0, False), (1, 9.6, 10.0, True),
    (5, 0.0, 10.0, False), (5, 3.0, 10.0, True), (1, 0.0, 0.4, True),
])
def test_next_retry_gives_up_past_the_limit(failures: int, elapsed: float, limit: float,
                                            give_up: bool) -> None:
    assert next_retry(failures, 0.0, elapsed, limit).give_up is give_up


# -- distribution against real subscribers ---------------------------------------------------

async def test_signed_and_unsigned_deliveries(make_hub: Callable[..., Awaitable[Hub]],
                                              subscriber: Subscriber) -> None:
    hub = await make_hub()
    hub.subscribe(subscriber.callback("signed"), secret=b"s3cret")
    hub.subscribe(subscriber.callback("plain"))
    hub.subscribe(subscriber.callback("other-topic"), path="/feed.rss")
    document = hub.publish(b"<feed>one</feed>")
    await until(lambda: subscriber.got("signed") and subscriber.got("plain"))
    signed, plain = subscriber.got("signed")[0], subscriber.got("plain")[0]
    for got in (signed, plain):
        assert got.body == document.body
        assert got.headers["Content-Type"] == document.content_type
        assert got.headers["Link"] == (
            f'<{builtin_hub_url(hub.config)}>; rel="hub", <{hub.topic()}>; rel="self"')
        assert "Content-Encoding" not in got.headers
    method, _, digest = signed.headers["X-Hub-Signature"].partition("=")
    assert method == "sha256"
    assert hmac.compare_digest(digest, hmac.new(b"s3cret", signed.body,
                                                hashlib.sha256).hexdigest())
    assert "X-Hub-Signature" not in plain.headers
    await asyncio.sleep(0.2)
    assert not subscriber.got("other-topic")  # another topic's subscriber gets nothing
    assert hub.health.current.deliveries is not None
    assert hub.health.current.deliveries.delivered == 2


@pytest.mark.parametrize("size", [100, 160_000, 1024 * 1024 + 1])
async def test_signature_of_every_size_checks(make_hub: Callable[..., Awaitable[Hub]],
                                              subscriber: Subscriber, size: int) -> None:
    """Signed on the loop below SIGN_OFF_LOOP_BYTES, on a signing thread from it: the same
    HMAC-SHA256 of the bytes sent either way."""
    hub = await make_hub()
    hub.subscribe(subscriber.callback("s"), secret=b"k" * 199)
    body = (b"<feed>" + bytes(range(256)) * (size // 256 + 1))[:size]
    hub.publish(body)
    await until(lambda: subscriber.got("s"))
    got = subscriber.got("s")[0]
    assert got.body == body
    assert got.headers["X-Hub-Signature"] == "sha256=" + hmac.new(
        b"k" * 199, body, hashlib.sha256).hexdigest()


async def test_hanging_subscriber_delays_nobody(make_hub: Callable[..., Awaitable[Hub]],
                                                subscriber: Subscriber) -> None:
    hub = await make_hub(request_timeout_s=30)
    hang = asyncio.Event()

    async def hanging(n: int) -> int:
        await hang.wait()
        return 200

    subscriber.behaviour["hangs"] = hanging
    for i in range(3):
        hub.subscribe(subscriber.callback(f"hangs?{i}"))
    subscriber.behaviour.update({f"hangs?{i}": hanging for i in range(3)})
    hub.subscribe(subscriber.callback("hangs"))
    hub.subscribe(subscriber.callback("healthy"))
    started = time.monotonic()
    hub.publish(b"<feed>1</feed>")
    assert time.monotonic() - started < 0.01  # the listener only records
    await until(lambda: subscriber.got("healthy"))
    assert subscriber.got("healthy")[0].at - started < 1.0
    assert subscriber.got("hangs")  # the hanging one was reached, and still hangs
    # A second change while it still hangs: the healthy one gets it at once too.
    again = time.monotonic()
    hub.publish(b"<feed>2</feed>")
    await until(lambda: len(subscriber.got("healthy")) == 2)
    assert subscriber.got("healthy")[1].at - again < 1.0
    assert subscriber.got("healthy")[1].body == b"<feed>2</feed>"
    hang.set()


async def test_hanging_subscribers_hold_no_place_of_the_healthy_ones(
        make_hub: Callable[..., Awaitable[Hub]], subscriber: Subscriber) -> None:
    """More hanging callbacks than the healthy lane has places: each gives its place up after
    HEALTHY_HOLD_S, so the healthy subscriber's delivery goes out at once; once they failed
    they wait in the failing lane (also after their notification was given up)."""
    hub = await make_hub(lanes=(1, 1), request_timeout_s=1, give_up_after_s=1)
    hang = asyncio.Event()

    async def hanging(n: int) -> int:
        await hang.wait()
        return 200

    for i in range(2):
        subscriber.behaviour[f"hangs{i}"] = hanging
        hub.subscribe(subscriber.callback(f"hangs{i}"))
    hub.subscribe(subscriber.callback("healthy"))
    started = time.monotonic()
    hub.publish(b"<feed>1</feed>")
    await until(lambda: subscriber.got("healthy"))
    assert subscriber.got("healthy")[0].at - started < 0.5  # not after the 1 s timeout
    await until(lambda: hub.health.current.deliveries is not None
                and hub.health.current.deliveries.given_up == 2, timeout=10)
    for j in (2, 3):
        again = time.monotonic()
        hub.publish(f"<feed>{j}</feed>".encode())
        await until(lambda j=j: len(subscriber.got("healthy")) == j)
        assert subscriber.got("healthy")[-1].at - again < 0.5
    hang.set()


async def test_retried_with_backoff_until_delivered(make_hub: Callable[..., Awaitable[Hub]],
                                                    subscriber: Subscriber) -> None:
    hub = await make_hub()
    subscriber.behaviour["flaky"] = lambda n: 500 if n < 2 else 204
    hub.subscribe(subscriber.callback("flaky"))
    hub.publish(b"<feed>x</feed>")
    await until(lambda: len(subscriber.got("flaky")) >= 1)
    await until(lambda: hub.storage.rows[hub.topic(), subscriber.callback("flaky")]
                .failing_since_us is not None)
    report = hub.health.current.deliveries
    assert report is not None and report.failing_count == 1
    assert report.failing[0].error == "HTTP 500"
    await until(lambda: len(subscriber.got("flaky")) == 3, timeout=10)
    times = [r.at for r in subscriber.got("flaky")]
    # Backoff: about 0.5-1 s, then 1-2 s.
    assert 0.4 < times[1] - times[0] < 1.5
    assert 0.9 < times[2] - times[1] < 2.5
    assert all(r.body == b"<feed>x</feed>" for r in subscriber.got("flaky"))
    await until(lambda: hub.storage.rows[hub.topic(), subscriber.callback("flaky")]
                .failing_since_us is None)
    report = hub.health.current.deliveries
    assert report is not None
    assert (report.delivered, report.failed_attempts, report.failing_count) == (1, 2, 0)


async def test_given_up_notification_keeps_the_subscription(
        make_hub: Callable[..., Awaitable[Hub]], subscriber: Subscriber) -> None:
    hub = await make_hub(give_up_after_s=1)
    down = True
    subscriber.behaviour["down"] = lambda n: 503 if down else 200
    hub.subscribe(subscriber.callback("down"))
    hub.publish(b"<feed>a</feed>")
    await until(lambda: hub.health.current.deliveries is not None
                and hub.health.current.deliveries.given_up == 1, timeout=5)
    attempts = len(subscriber.got("down"))
    assert attempts >= 2
    await asyncio.sleep(2.5)
    assert len(subscriber.got("down")) == attempts  # that notification is abandoned
    # §7: the subscription stays active until its lease ends; a new update is tried again.
    key = (hub.topic(), subscriber.callback("down"))
    assert hub.storage.rows[key].failing_since_us is not None
    down = False
    hub.publish(b"<feed>b</feed>")
    await until(lambda: len(subscriber.got("down")) == attempts + 1)
    assert subscriber.got("down")[-1].body == b"<feed>b</feed>"
    await until(lambda: hub.storage.rows[key].failing_since_us is None)


async def test_gone_ends_the_subscription(make_hub: Callable[..., Awaitable[Hub]],
                                          subscriber: Subscriber) -> None:
    hub = await make_hub()
    subscriber.behaviour["left"] = lambda n: 410
    hub.subscribe(subscriber.callback("left"))
    hub.subscribe(subscriber.callback("stays"))
    hub.publish(b"<feed>1</feed>")
    await until(lambda: (hub.topic(), subscriber.callback("left")) not in hub.storage.rows)
    hub.publish(b"<feed>2</feed>")
    await until(lambda: len(subscriber.got("stays")) == 2)
    await asyncio.sleep(0.2)
    assert len(subscriber.got("left")) == 1
    report = hub.health.current.deliveries
    assert report is not None and report.gone == 1


async def test_unsubscribed_during_backoff_gets_nothing_more(
        make_hub: Callable[..., Awaitable[Hub]], subscriber: Subscriber) -> None:
    hub = await make_hub()
    subscriber.behaviour["bye"] = lambda n: 500
    hub.subscribe(subscriber.callback("bye"))
    hub.publish(b"<feed>1</feed>")
    await until(lambda: subscriber.got("bye"))
    await until(lambda: hub.health.current.deliveries is not None
                and hub.health.current.deliveries.failing_count == 1)
    report = hub.health.current.deliveries
    assert report is not None and report.failing_count == 1
    hub.storage.unsubscribe(hub.topic(), subscriber.callback("bye"))
    await asyncio.sleep(2.5)  # past the first retry
    await until(lambda: hub.deliverer.in_flight == 0)
    report = hub.health.current.deliveries
    assert report is not None and report.failing_count == 0  # it exists no more
    hub.publish(b"<feed>2</feed>")
    await asyncio.sleep(0.5)
    assert len(subscriber.got("bye")) == 1


async def test_expired_lease_gets_nothing(make_hub: Callable[..., Awaitable[Hub]],
                                          subscriber: Subscriber) -> None:
    hub = await make_hub()
    hub.subscribe(subscriber.callback("old"), expires_us=time.time_ns() // 1000 - 1)
    hub.subscribe(subscriber.callback("new"))
    hub.publish(b"<feed>1</feed>")
    await until(lambda: subscriber.got("new"))
    await asyncio.sleep(0.2)
    assert not subscriber.got("old")


async def test_newer_change_supersedes_an_undelivered_one(
        make_hub: Callable[..., Awaitable[Hub]], subscriber: Subscriber) -> None:
    hub = await make_hub()
    release = asyncio.Event()

    async def slow(n: int) -> int:
        if n == 0:
            await release.wait()
        return 200

    subscriber.behaviour["slow"] = slow
    hub.subscribe(subscriber.callback("slow"))
    hub.publish(b"<feed>1</feed>")
    await until(lambda: subscriber.got("slow"))
    hub.publish(b"<feed>2</feed>")
    await asyncio.sleep(0.05)
    hub.publish(b"<feed>3</feed>")
    await asyncio.sleep(0.05)
    release.set()
    await until(lambda: len(subscriber.got("slow")) == 2)
    await asyncio.sleep(0.2)
    assert [r.body for r in subscriber.got("slow")] == [b"<feed>1</feed>", b"<feed>3</feed>"]


async def test_redirect_is_a_failure_and_not_followed(
        make_hub: Callable[..., Awaitable[Hub]], subscriber: Subscriber) -> None:
    hub = await make_hub()

    async def moved(n: int) -> int:
        raise web.HTTPFound(subscriber.callback("target"))

    subscriber.behaviour["moved"] = moved
    hub.subscribe(subscriber.callback("moved"))
    hub.publish(b"<feed>1</feed>")
    await until(lambda: hub.health.current.deliveries is not None
                and hub.health.current.deliveries.failed_attempts >= 1)
    report = hub.health.current.deliveries
    assert report is not None and report.failing[0].error == "HTTP 302"
    assert not subscriber.got("target")


async def test_address_turned_unsafe_is_not_contacted(
        make_hub: Callable[..., Awaitable[Hub]], subscriber: Subscriber) -> None:
    """A subscription whose callback resolves to a loopback address at delivery time (it was
    accepted while its name pointed elsewhere: DNS changed) is never contacted."""
    hub = await make_hub(allow_private_callbacks=False)
    port = subscriber.url.rsplit(":", 1)[1]
    hub.subscribe(subscriber.callback("literal"))
    hub.subscribe(f"http://localhost:{port}/by-name")
    hub.publish(b"<feed>1</feed>")
    await until(lambda: hub.health.current.deliveries is not None
                and hub.health.current.deliveries.failing_count == 2)
    report = hub.health.current.deliveries
    assert report is not None
    assert all(f.error.startswith("not contacted") for f in report.failing)
    await asyncio.sleep(1.5)  # a retry too
    assert subscriber.received == {}


@contextlib.asynccontextmanager
async def archived_state(tmp_path: Path, port: int, pages: Callable[[Config], ArchivePages]
                         ) -> AsyncIterator[tuple[Config, Snapshot, ArchivePages, MemoryStorage,
                                                  Callable[..., Awaitable[object]]]]:
    """A real state a real Publisher wrote: 6 entries, 2 in the feed, archive pages of 2;
    the archive pages reader `pages(config)` started on it; an empty subscription storage
    and the storage's `call`."""
    write_config(tmp_path, port=port, max_entries=2, archive_page_entries=2)
    for i in range(6):
        write_seed(tmp_path / "seeds", f"{i}.txt",
                   f"---\ndate: 2026-01-{i + 1:02d} 08:00\n---\nentry-{i}\nTitre {i}\n\nCorps")
    config = hub_config(load_config(tmp_path / "config.toml"))
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1)
    publisher = await loop.run_in_executor(executor, Publisher.open, config)
    reader = pages(config)

    def call(fn: Callable[..., object], *args: object) -> Awaitable[object]:
        return loop.run_in_executor(executor, fn, *args)

    try:
        snapshot = await loop.run_in_executor(executor, publisher.scan)
        assert snapshot.archive is not None and snapshot.archive.pages >= 2
        reader.start(publisher.info)
        yield config, snapshot, reader, MemoryStorage(), call
    finally:
        reader.close()
        await loop.run_in_executor(executor, publisher.close)
        executor.shutdown(wait=True)


async def test_archive_pages_are_rendered_from_the_state_and_delivered(
        tmp_path: Path, subscriber: Subscriber,
        unused_tcp_port_factory: Callable[[], int]) -> None:
    """An RFC 5005 archive page is not in the snapshot: the deliverer renders it through
    ArchivePages (from the real state a real Publisher wrote) and sends those bytes."""
    async with archived_state(tmp_path, unused_tcp_port_factory(), ArchivePages) as (
            config, snapshot, pages, storage, call):
        assert snapshot.archive is not None
        path = "/archive/2/1.atom"
        storage.subscribe(Subscription(topic_url(config, path), subscriber.callback("a"), None,
                                       FAR))
        storage.subscribe(Subscription(topic_url(config, "/archive/2/9.atom"),
                                       subscriber.callback("none"), None, FAR))
        async with delivery_session(config) as session:
            deliverer = Deliverer(config, storage, call, session, archive_pages=pages)
            deliverer.start()
            try:
                deliverer.changed(ChangedDocuments(snapshot, frozenset({
                    path, "/archive/2/9.atom", "/archive/3/1.atom"})))
                await until(lambda: subscriber.got("a"))
                expected = await pages.page(snapshot.archive, 1, ATOM_FORMAT)
                assert expected is not None
                got = subscriber.got("a")[0]
                assert got.body == expected.body and b"entry-0" in got.body
                assert got.headers["Content-Type"] == expected.content_type
                await asyncio.sleep(0.2)
                assert not subscriber.got("none")  # no such page: nothing to deliver
            finally:
                await deliverer.stop()

class RenderedPages(ArchivePages):
    """The real ArchivePages, noting each page it renders (and holding each render a while,
    as a large page at 10,000 seeds takes milliseconds)."""

    def __init__(self, config: Config, hold_s: float) -> None:
        super().__init__(config)
        self.hold_s = hold_s
        self.rendered: list[tuple[int, float]] = []

    def render(self, span: ArchiveSpan, page: int, fmt: FeedFormat,
               soon: bool = False) -> Document | None:
        time.sleep(self.hold_s)
        self.rendered.append((page, time.monotonic()))
        return super().render(span, page, fmt, soon)


async def test_only_subscribed_archive_pages_are_rendered_and_after_the_feed(
        tmp_path: Path, subscriber: Subscriber,
        unused_tcp_port_factory: Callable[[], int]) -> None:
    """A drop that pushes an entry into the archive changes the feed and an archive page:
    the feed's subscribers get the feed without waiting for any page to render, and a page
    nobody subscribed to is never rendered."""
    async with archived_state(tmp_path, unused_tcp_port_factory(),
                              lambda config: RenderedPages(config, hold_s=0.3)) as (
            config, snapshot, pages, storage, call):
        assert isinstance(pages, RenderedPages)
        for path, name in (("/feed.atom", "feed"), ("/archive/2/2.atom", "page")):
            storage.subscribe(Subscription(topic_url(config, path), subscriber.callback(name),
                                           None, FAR))
        async with delivery_session(config) as session:
            deliverer = Deliverer(config, storage, call, session, archive_pages=pages)
            deliverer.start()
            try:
                deliverer.changed(ChangedDocuments(snapshot, frozenset({
                    "/feed.atom", "/archive/2/1.atom", "/archive/2/2.atom",
                    "/archive/2/1.rss"})))
                await until(lambda: subscriber.got("feed") and subscriber.got("page"))
                assert [page for page, _ in pages.rendered] == [2]  # only the subscribed one
                assert subscriber.got("feed")[0].at < pages.rendered[0][1]
                assert subscriber.got("feed")[0].body == snapshot.documents["/feed.atom"].body
            finally:
                await deliverer.stop()

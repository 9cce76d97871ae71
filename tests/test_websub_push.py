"""The built-in hub's content distribution end to end (W3C WebSub §7): a real `feedsvc serve`
with `[websub] builtin_hub`, real subscribers (aiohttp servers on loopback) subscribed through
the real hub endpoint and verified, real seeds dropped, edited and deleted."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import feedparser
import pytest
from aiohttp import web

from tests.conftest import (
    ServeProcess,
    run_cli,
    wait_until,
    write_seed,
)
from tests.test_websub_hub import active, hub_site
from tests.websub_subscriber import Received, Subscriber, post_form


class PushSubscriber(Subscriber):
    """A subscriber that verifies as told (`answer`) and answers deliveries (POST) with
    `post_status`, or never (`hang`)."""

    def __init__(self, answer: str = "echo", post_status: int = 204,
                 hang: bool = False) -> None:
        self.post_status = post_status
        self.hang = hang
        super().__init__(answer)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return await super()._handle(request)
        self.received.append(Received(request.method, request.path, dict(request.query),
                                      dict(request.headers), await request.read()))
        if self.hang:
            await asyncio.sleep(3600)
        return web.Response(status=self.post_status)

    def posts(self) -> list[Received]:
        return [r for r in list(self.received) if r.method == "POST"]


@pytest.fixture
def subscribers() -> Iterator[Callable[..., PushSubscriber]]:
    made: list[PushSubscriber] = []

    def make(answer: str = "echo", post_status: int = 204,
             hang: bool = False) -> PushSubscriber:
        made.append(PushSubscriber(answer, post_status, hang))
        return made[-1]

    yield make
    for subscriber in made:
        subscriber.close()


def set_websub(config_path: Path, **websub: object) -> None:
    text = config_path.read_text(encoding="utf-8")
    for key, value in websub.items():
        text = text.replace(f"{key} = {json.dumps(not value)}", f"{key} = {json.dumps(value)}")
    config_path.write_text(text, encoding="utf-8")


def subscribe(server: ServeProcess, subscriber: Subscriber, path: str = "/feed.atom",
              mode: str = "subscribe", wait: bool = True, **extra: str) -> None:
    topic = server.url + path
    callback = f"{subscriber.url}/cb{path}"
    status, text = post_form(server.url + "/websub", {
        "hub.mode": mode, "hub.topic": topic, "hub.callback": callback, **extra})
    assert status == 202, text
    if wait:
        want = mode == "subscribe"
        wait_until(lambda: any(s.callback == callback for s in active(server, topic)) == want)


def deliveries(server: ServeProcess) -> dict[str, object]:
    return json.loads(server.get("/healthz")[2])["websub_deliveries"]


def seed(slug: str, title: str, body: str = "Texte.", tags: str = "") -> str:
    tag_line = f"tags: {tags}\n" if tags else ""
    return f"---\ntitle: {title}\nslug: {slug}\n{tag_line}---\n\n{body}\n"


def test_drop_edit_delete_deliver_the_new_document_signed(
        tmp_path: Path, serve, subscribers) -> None:
    server = serve(hub_site(tmp_path))
    seeds = tmp_path / "seeds"
    signed, plain, json_feed, tag = subscribers(), subscribers(), subscribers(), subscribers()
    subscribe(server, signed, **{"hub.secret": "s3cret-ü"})
    subscribe(server, plain)
    subscribe(server, json_feed, "/feed.json")
    subscribe(server, tag, "/tags/alpha.atom")
    assert not signed.posts()  # subscribing delivers nothing by itself

    write_seed(seeds, "b.txt", seed("bravo", "Bravo"))
    wait_until(lambda: all(s.posts() and b"bravo" in s.posts()[-1].body
                           for s in (signed, plain, json_feed)))
    got = signed.posts()[-1]
    # The body is the new document, byte for byte, with its content type and the Link header.
    status, headers, body = server.get("/feed.atom")
    assert status == 200
    assert got.body == body
    assert got.headers["Content-Type"] == headers["Content-Type"]
    assert got.headers["Link"] == (f'<{server.url}/websub>; rel="hub", '
                                   f'<{server.url}/feed.atom>; rel="self"')
    method, _, digest = got.headers["X-Hub-Signature"].partition("=")
    assert method == "sha256"
    assert hmac.compare_digest(
        digest, hmac.new("s3cret-ü".encode(), got.body, hashlib.sha256).hexdigest())
    assert "X-Hub-Signature" not in plain.posts()[-1].headers
    assert plain.posts()[-1].body == body
    assert "Bravo" in [e.title for e in feedparser.parse(plain.posts()[-1].body).entries]
    assert json_feed.posts()[-1].headers["Content-Type"].startswith("application/feed+json")
    assert "Bravo" in [i["title"] for i in json.loads(json_feed.posts()[-1].body)["items"]]
    time.sleep(0.3)
    assert not tag.posts()  # its document did not change

    write_seed(seeds, "c.txt", seed("charlie", "Charlie", tags="Alpha"))
    wait_until(lambda: tag.posts() and b"charlie" in tag.posts()[-1].body)
    assert tag.posts()[-1].body == server.get("/tags/alpha.atom")[2]

    count = len(plain.posts())
    write_seed(seeds, "b.txt", seed("bravo", "Bravo, édité"))
    wait_until(lambda: len(plain.posts()) > count)
    assert "Bravo, édité".encode() in plain.posts()[-1].body

    count = len(plain.posts())
    (seeds / "b.txt").unlink()
    wait_until(lambda: len(plain.posts()) > count)
    assert b"<title>Bravo" not in plain.posts()[-1].body
    assert plain.posts()[-1].body == server.get("/feed.atom")[2]
    report = deliveries(server)
    assert report["delivered"] >= 8 and report["failing_subscribers"] == 0


def test_a_wrong_challenge_gets_nothing(tmp_path: Path, serve, subscribers) -> None:
    server = serve(hub_site(tmp_path))
    wrong, right = subscribers(answer="wrong"), subscribers()
    subscribe(server, wrong, wait=False)
    subscribe(server, right)
    wait_until(lambda: wrong.gets("subscribe"))
    write_seed(tmp_path / "seeds", "b.txt", seed("bravo", "Bravo"))
    wait_until(lambda: right.posts())
    time.sleep(0.3)
    assert not wrong.posts()


def test_unsubscribe_stops_deliveries(tmp_path: Path, serve, subscribers) -> None:
    server = serve(hub_site(tmp_path))
    leaving, staying = subscribers(), subscribers()
    subscribe(server, leaving)
    subscribe(server, staying)
    write_seed(tmp_path / "seeds", "b.txt", seed("bravo", "Bravo"))
    wait_until(lambda: leaving.posts() and staying.posts())
    subscribe(server, leaving, mode="unsubscribe")
    write_seed(tmp_path / "seeds", "c.txt", seed("charlie", "Charlie"))
    wait_until(lambda: len(staying.posts()) == 2)
    time.sleep(0.3)
    assert len(leaving.posts()) == 1


def test_deliveries_resume_after_a_restart(tmp_path: Path, serve, subscribers) -> None:
    config = hub_site(tmp_path)
    server = serve(config)
    subscriber = subscribers()
    subscribe(server, subscriber)
    server.stop()
    server = serve(config)
    write_seed(tmp_path / "seeds", "b.txt", seed("bravo", "Bravo"))
    wait_until(lambda: subscriber.posts())
    assert b"bravo" in subscriber.posts()[-1].body


def test_an_expired_lease_gets_nothing(tmp_path: Path, serve, subscribers) -> None:
    server = serve(hub_site(tmp_path, lease_min_s=1))
    short, long = subscribers(), subscribers()
    subscribe(server, short, **{"hub.lease_seconds": "1"})
    subscribe(server, long)
    time.sleep(1.2)
    write_seed(tmp_path / "seeds", "b.txt", seed("bravo", "Bravo"))
    wait_until(lambda: long.posts())
    time.sleep(0.3)
    assert not short.posts()


def test_a_hanging_subscriber_delays_nobody(tmp_path: Path, serve, subscribers) -> None:
    server = serve(hub_site(tmp_path, request_timeout_s=60))
    hanging = [subscribers(hang=True) for _ in range(3)]
    healthy = subscribers()
    for subscriber in hanging:
        subscribe(server, subscriber)
    subscribe(server, healthy)
    for j in range(3):
        dropped = time.monotonic()
        write_seed(tmp_path / "seeds", f"b{j}.txt", seed(f"bravo-{j}", f"Bravo {j}"))
        wait_until(lambda j=j: len(healthy.posts()) == j + 1)
        # Watcher debounce, render and one loopback POST: well under a second, whatever the
        # hanging ones do (they hold their connections for request_timeout_s = 60 s).
        assert healthy.posts()[-1].at - dropped < 1.0
        assert f"bravo-{j}".encode() in healthy.posts()[-1].body
    assert all(subscriber.posts() for subscriber in hanging)
    # Still publishing at once too.
    status, _, body = server.get("/feed.atom")
    assert status == 200 and b"bravo-2" in body


def test_failing_subscriber_retried_and_shown_on_healthz(
        tmp_path: Path, serve, subscribers) -> None:
    server = serve(hub_site(tmp_path))
    failing = subscribers(post_status=500)
    subscribe(server, failing)
    write_seed(tmp_path / "seeds", "b.txt", seed("bravo", "Bravo"))
    wait_until(lambda: len(failing.posts()) >= 2, timeout=10)  # retried after ~0.5-1 s
    report = deliveries(server)
    assert report["failing_subscribers"] == 1
    assert report["failing"][0]["error"] == "HTTP 500"
    assert report["failing"][0]["callback"] == f"{failing.url}/cb/feed.atom"
    assert report["failed_attempts"] >= 2
    # The failure is recorded in the state with the subscription, which stays (§7).
    [subscription] = active(server, server.url + "/feed.atom")
    assert subscription.failing_since_us is not None
    listed = run_cli("check", "--config", str(server.config.config_file), cwd=tmp_path).stdout
    assert f"<- {failing.url}/cb/feed.atom (until " in listed
    assert "failing since" in listed
    failing.post_status = 204
    wait_until(lambda: deliveries(server)["failing_subscribers"] == 0, timeout=10)
    assert deliveries(server)["delivered"] == 1
    wait_until(lambda: active(server, server.url + "/feed.atom")[0].failing_since_us is None)


def test_gone_ends_the_subscription(tmp_path: Path, serve, subscribers) -> None:
    server = serve(hub_site(tmp_path))
    gone = subscribers(post_status=410)
    subscribe(server, gone)
    write_seed(tmp_path / "seeds", "b.txt", seed("bravo", "Bravo"))
    wait_until(lambda: not active(server, server.url + "/feed.atom"))
    write_seed(tmp_path / "seeds", "c.txt", seed("charlie", "Charlie"))
    time.sleep(0.5)
    assert len(gone.posts()) == 1
    assert deliveries(server)["ended_by_410"] == 1


def test_callback_turned_private_is_never_contacted(tmp_path: Path, serve,
                                                    subscribers) -> None:
    """A subscription whose callback is (now) a loopback address is not delivered to once
    private callbacks are not allowed: the address is checked at each delivery, not only at
    subscription time."""
    config = hub_site(tmp_path)
    server = serve(config)
    subscriber = subscribers()
    subscribe(server, subscriber)
    server.stop()
    set_websub(config, allow_private_callbacks=False)
    server = serve(config)
    received = len(subscriber.received)
    write_seed(tmp_path / "seeds", "b.txt", seed("bravo", "Bravo"))
    wait_until(lambda: deliveries(server)["failing_subscribers"] == 1)
    assert deliveries(server)["failing"][0]["error"].startswith("not contacted")
    time.sleep(1.5)  # past a retry
    assert len(subscriber.received) == received


def test_loopback_subscriber_refused_by_default_gets_nothing(
        tmp_path: Path, serve, subscribers) -> None:
    config = hub_site(tmp_path)
    set_websub(config, allow_private_callbacks=False)
    server = serve(config)
    subscriber = subscribers()
    status, _ = post_form(server.url + "/websub", {
        "hub.mode": "subscribe", "hub.topic": server.url + "/feed.atom",
        "hub.callback": f"{subscriber.url}/cb"})
    assert 400 <= status < 500
    write_seed(tmp_path / "seeds", "b.txt", seed("bravo", "Bravo"))
    wait_until(lambda: b"bravo" in server.get("/feed.atom")[2])
    time.sleep(0.5)
    assert subscriber.received == []
    assert deliveries(server)["delivered"] == 0

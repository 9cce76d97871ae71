"""The built-in WebSub hub's subscriber side (W3C WebSub §5): a real `feedsvc serve` with
`[websub] builtin_hub`, real subscribers (aiohttp servers on loopback), the real state."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from feedsvc.serve.websub.callbacks import client_session
from feedsvc.state.subscriptions import SQLiteSubscriptions, Subscription
from tests.conftest import ServeProcess, free_port, run_cli, wait_until, write_config, write_seed
from tests.websub_subscriber import Subscriber, post_form


def hub_site(folder: Path, **websub: object) -> Path:
    """A site with the built-in hub on, loopback callbacks allowed unless told otherwise."""
    path = write_config(folder, port=free_port())
    settings = {"builtin_hub": True, "allow_private_callbacks": True, **websub}
    lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in settings.items())
    with path.open("a", encoding="utf-8") as f:
        f.write(f"\n[websub]\n{lines}\n")
    write_seed(folder / "seeds", "a.txt",
               "---\ntitle: Alpha\nslug: alpha\ntags: Alpha\n---\n\nTagged.\n")
    return path


@pytest.fixture
def subscribers() -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(answer: str = "echo", status: int = 200) -> Subscriber:
        made.append(Subscriber(answer, status))
        return made[-1]

    yield make
    for subscriber in made:
        subscriber.close()


def active(server: ServeProcess, topic: str) -> list[Subscription]:
    storage = SQLiteSubscriptions.open_for_reading(server.config.paths.state)
    try:
        return storage.active(topic, time.time_ns() // 1000)
    finally:
        storage.close()


def subscribe(server: ServeProcess, callback: str, topic: str | None = None,
              mode: str = "subscribe", **extra: str) -> tuple[int, str]:
    return post_form(server.url + "/websub", {
        "hub.mode": mode, "hub.topic": topic or server.url + "/feed.atom",
        "hub.callback": callback, **extra})


def health(server: ServeProcess) -> dict[str, object]:
    return json.loads(server.get("/healthz")[2])["websub_hub"]


def test_subscribe_is_verified_then_active(tmp_path: Path, serve, subscribers) -> None:
    server = serve(hub_site(tmp_path))
    sub = subscribers()
    topic = server.url + "/feed.atom"
    status, text = subscribe(server, sub.url + "/cb?id=7", **{"hub.secret": "s3cret",
                                                                "hub.lease_seconds": "3600"})
    assert status == 202, text
    subscription = wait_until(lambda: active(server, topic))[0]
    [get] = sub.gets("subscribe")
    # §5.3: mode, topic, challenge, lease; §5.1.1: the callback's own query kept first.
    assert get.path == "/cb" and get.query["id"] == "7"
    assert get.query["hub.topic"] == topic and get.query["hub.lease_seconds"] == "3600"
    assert len(get.query["hub.challenge"]) >= 32
    assert subscription.callback == sub.url + "/cb?id=7" and subscription.secret == b"s3cret"
    assert abs(subscription.expires_us / 1e6 - (time.time() + 3600)) < 30
    assert health(server)["subscriptions"] == 1
    assert health(server)["topics"] == [{"topic": topic, "subscriptions": 1}]


@pytest.mark.parametrize(("answer", "status"), [("wrong", 200), ("status", 404),
                                                ("status", 500), ("status", 302)])
def test_a_failed_verification_subscribes_nothing(tmp_path: Path, serve, subscribers,
                                                  answer: str, status: int) -> None:
    server = serve(hub_site(tmp_path))
    sub = subscribers(answer, status)
    assert subscribe(server, sub.url + "/cb")[0] == 202
    wait_until(lambda: sub.gets("subscribe"))
    time.sleep(0.5)
    assert active(server, server.url + "/feed.atom") == []
    assert health(server)["subscriptions"] == 0


def test_unsubscribe_removes_only_once_verified(tmp_path: Path, serve, subscribers) -> None:
    server = serve(hub_site(tmp_path))
    sub = subscribers()
    topic = server.url + "/feed.atom"
    assert subscribe(server, sub.url + "/cb")[0] == 202
    wait_until(lambda: active(server, topic))
    sub.answer = "wrong"  # the subscriber did not ask: §5.1 the state is left unchanged
    assert subscribe(server, sub.url + "/cb", mode="unsubscribe")[0] == 202
    wait_until(lambda: sub.gets("unsubscribe"))
    time.sleep(0.5)
    assert len(active(server, topic)) == 1
    sub.answer = "echo"
    assert subscribe(server, sub.url + "/cb", mode="unsubscribe")[0] == 202
    wait_until(lambda: not active(server, topic))
    assert "hub.lease_seconds" not in sub.gets("unsubscribe")[-1].query


def test_requests_for_one_subscription_apply_in_order(tmp_path: Path, serve,
                                                      subscribers) -> None:
    """Subscribe, then unsubscribe at once: the subscribe's verification answers last, yet
    the subscription ends removed (§5.1: each request overrides the previous state)."""
    server = serve(hub_site(tmp_path))
    sub = subscribers()
    sub.delays["subscribe"] = 1.0
    topic = server.url + "/feed.atom"
    assert subscribe(server, sub.url + "/cb")[0] == 202
    assert subscribe(server, sub.url + "/cb", mode="unsubscribe")[0] == 202
    wait_until(lambda: sub.gets("unsubscribe"))
    time.sleep(0.5)
    assert active(server, topic) == []
    assert [g.query["hub.mode"] for g in sub.gets()] == ["subscribe", "unsubscribe"]


def test_a_topic_gone_can_still_be_unsubscribed(tmp_path: Path, serve, subscribers) -> None:
    server = serve(hub_site(tmp_path))
    sub = subscribers()
    gone = server.url + "/tags/nosuch.atom"
    assert subscribe(server, sub.url + "/cb", topic=gone)[0] == 400
    assert subscribe(server, sub.url + "/cb", topic=gone, mode="unsubscribe")[0] == 202
    wait_until(lambda: sub.gets("unsubscribe"))


def test_subscriptions_survive_a_restart(tmp_path: Path, serve, subscribers) -> None:
    config = hub_site(tmp_path)
    server = serve(config)
    sub = subscribers()
    tag_topic = server.url + "/tags/alpha.rss"
    wait_until(lambda: server.get("/tags/alpha.rss")[0] == 200)
    assert subscribe(server, sub.url + "/cb", topic=tag_topic)[0] == 202
    wait_until(lambda: active(server, tag_topic))
    server.stop()
    again = serve(config)
    assert [s.callback for s in active(again, tag_topic)] == [sub.url + "/cb"]
    assert health(again)["subscriptions"] == 1


def test_leases_expire(tmp_path: Path, serve, subscribers) -> None:
    server = serve(hub_site(tmp_path, lease_min_s=1))
    sub = subscribers()
    topic = server.url + "/feed.json"
    assert subscribe(server, sub.url + "/cb", topic=topic, **{"hub.lease_seconds": "2"})[0] \
        == 202
    wait_until(lambda: active(server, topic))
    assert sub.gets("subscribe")[0].query["hub.lease_seconds"] == "2"
    wait_until(lambda: not active(server, topic), timeout=5)
    assert health(server)["subscriptions"] == 0
    # The upkeep deletes the row (every lease_min_s here): not only hidden, gone.
    storage = SQLiteSubscriptions.open_for_reading(server.config.paths.state)
    try:
        wait_until(lambda: not list(storage.all_active(0)), timeout=5)
    finally:
        storage.close()


def test_resubscribing_renews_the_lease(tmp_path: Path, serve, subscribers) -> None:
    server = serve(hub_site(tmp_path, lease_min_s=1))
    sub = subscribers()
    topic = server.url + "/feed.atom"
    assert subscribe(server, sub.url + "/cb", **{"hub.lease_seconds": "100"})[0] == 202
    first = wait_until(lambda: active(server, topic))[0]
    assert subscribe(server, sub.url + "/cb", **{"hub.lease_seconds": "5000"})[0] == 202
    renewed = wait_until(lambda: [s for s in active(server, topic)
                                  if s.expires_us > first.expires_us + 4_000_000_000])
    assert len(active(server, topic)) == 1 and renewed[0].secret is None


BAD = [
    # (what is wrong, form fields changed (None: removed), status)
    ("no mode", {"hub.mode": None}, 400),
    ("publish", {"hub.mode": "publish"}, 400),
    ("no topic", {"hub.topic": None}, 400),
    ("another site's topic", {"hub.topic": "http://example.org/feed.atom"}, 400),
    ("a page, not a feed", {"hub.topic": "{url}/entries/alpha"}, 400),
    ("a tag not served", {"hub.topic": "{url}/tags/nosuch.atom"}, 400),
    ("no callback", {"hub.callback": None}, 400),
    ("ftp callback", {"hub.callback": "ftp://127.0.0.1/cb"}, 400),
    ("relative callback", {"hub.callback": "/cb"}, 400),
    ("callback with a fragment", {"hub.callback": "{sub}/cb#x"}, 400),
    ("secret of 200 bytes", {"hub.secret": "s" * 200}, 400),
    ("lease not a number", {"hub.lease_seconds": "ten"}, 400),
    ("negative lease", {"hub.lease_seconds": "-5"}, 400),
    ("zero lease", {"hub.lease_seconds": "0"}, 400),
]


@pytest.mark.parametrize(("what", "fields", "status"), BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_4xx_and_nothing_is_contacted(
        tmp_path: Path, serve, subscribers, what: str, fields: dict[str, str | None],
        status: int) -> None:
    server = serve(hub_site(tmp_path))
    sub = subscribers()
    form = {"hub.mode": "subscribe", "hub.topic": server.url + "/feed.atom",
            "hub.callback": sub.url + "/cb"}
    for key, value in fields.items():
        if value is None:
            del form[key]
        else:
            form[key] = value.format(url=server.url, sub=sub.url)
    got, text = post_form(server.url + "/websub", form)
    assert got == status, text
    assert text.strip()  # §5.1.2: a plain-text description
    time.sleep(0.3)
    assert sub.received == []


def test_wrong_content_type_and_oversized_bodies(tmp_path: Path, serve, subscribers) -> None:
    server = serve(hub_site(tmp_path))
    sub = subscribers()
    form = {"hub.mode": "subscribe", "hub.topic": server.url + "/feed.atom",
            "hub.callback": sub.url + "/cb"}
    assert post_form(server.url + "/websub", form, content_type="application/json")[0] == 415
    assert post_form(server.url + "/websub", {}, body=b"hub.x=" + b"y" * 20_000)[0] == 413
    assert post_form(server.url + "/websub", {}, body=b"hub.mode=%FF")[0] == 400
    assert server.get("/websub")[0] == 405
    time.sleep(0.3)
    assert sub.received == []


def test_a_body_that_never_arrives_is_cut_off(tmp_path: Path, serve) -> None:
    server = serve(hub_site(tmp_path, request_timeout_s=1))
    with socket.create_connection(("127.0.0.1", server.config.server.port), timeout=10) as s:
        s.sendall(b"POST /websub HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n\r\nhub.mode=")
        started = time.monotonic()
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 5


def test_loopback_callbacks_are_refused_by_default(tmp_path: Path, serve,
                                                   subscribers) -> None:
    server = serve(hub_site(tmp_path, allow_private_callbacks=False))
    sub = subscribers()
    # An address: refused at once.
    status, text = subscribe(server, sub.url + "/cb")
    assert status == 400 and "loopback" in text
    # A name that resolves to loopback: accepted (resolving is not done before 202), then
    # never contacted, not even to deny.
    assert subscribe(server, f"http://localhost:{sub.port}/cb")[0] == 202
    assert subscribe(server, f"http://[::ffff:127.0.0.1]:{sub.port}/cb")[0] == 400
    wait_until(lambda: "localhost" in server.log() and "refused" in server.log())
    time.sleep(0.5)
    assert sub.received == []
    assert active(server, server.url + "/feed.atom") == []


def test_the_rate_limit_per_client(tmp_path: Path, serve, subscribers) -> None:
    server = serve(hub_site(tmp_path, subscribe_rate_per_min=3))
    sub = subscribers()
    statuses = [subscribe(server, sub.url + f"/cb{n}")[0] for n in range(5)]
    assert statuses == [202, 202, 202, 429, 429]
    wait_until(lambda: len(active(server, server.url + "/feed.atom")) == 3)


def test_bounds_per_topic_and_per_host_deny(tmp_path: Path, serve, subscribers) -> None:
    server = serve(hub_site(tmp_path, max_subscriptions_per_topic=1,
                            max_subscriptions_per_host=2))
    sub = subscribers()
    atom, rss, json_topic = (server.url + p for p in ("/feed.atom", "/feed.rss", "/feed.json"))
    assert subscribe(server, sub.url + "/one", topic=atom)[0] == 202
    wait_until(lambda: active(server, atom))
    # A second callback on the same topic: denied (§5.2), never verified.
    assert subscribe(server, sub.url + "/two", topic=atom)[0] == 202
    denial = wait_until(lambda: sub.gets("denied"))[0]
    assert denial.path == "/two" and denial.query["hub.topic"] == atom
    assert "maximum" in denial.query["hub.reason"]
    assert [g.path for g in sub.gets("subscribe")] == ["/one"]
    # The same callback renews: not a new subscription.
    assert subscribe(server, sub.url + "/one", topic=atom)[0] == 202
    wait_until(lambda: len(sub.gets("subscribe")) == 2)
    # Per host: two on 127.0.0.1 at most.
    assert subscribe(server, sub.url + "/three", topic=rss)[0] == 202
    wait_until(lambda: active(server, rss))
    assert subscribe(server, sub.url + "/four", topic=json_topic)[0] == 202
    wait_until(lambda: len(sub.gets("denied")) == 2)
    assert active(server, json_topic) == []


def test_bounds_hold_under_concurrent_requests(tmp_path: Path, serve, subscribers) -> None:
    """Six callbacks at once on a topic allowed two: all pass the first check (nothing is
    active yet), the verifications answer slowly; the bound is checked again as each is
    written, so two end active and four get a denial."""
    server = serve(hub_site(tmp_path, max_subscriptions_per_topic=2))
    sub = subscribers()
    sub.delays["subscribe"] = 0.5
    topic = server.url + "/feed.atom"
    for n in range(6):
        assert subscribe(server, f"{sub.url}/cb{n}")[0] == 202
    wait_until(lambda: len(sub.gets("denied")) == 4)
    assert len(active(server, topic)) == 2


def test_check_lists_subscriptions(tmp_path: Path, serve, subscribers) -> None:
    config = hub_site(tmp_path)
    server = serve(config)
    sub = subscribers()
    assert subscribe(server, sub.url + "/cb", **{"hub.secret": "x"})[0] == 202
    wait_until(lambda: active(server, server.url + "/feed.atom"))
    result = run_cli("check", "--config", str(config), cwd=tmp_path)
    assert f"{server.url}/feed.atom <- {sub.url}/cb" in result.stdout, result.stdout
    assert "signed" in result.stdout


def test_every_worker_process_takes_subscriptions(tmp_path: Path, serve, subscribers) -> None:
    config = hub_site(tmp_path)
    config.write_text(config.read_text().replace("[server]\n", "[server]\nworkers = 3\n"))
    server = serve(config)
    sub = subscribers()
    topic = server.url + "/feed.atom"
    pids: dict[int, int] = {}  # process → what its /healthz counts

    def answers() -> int:
        body = json.loads(server.get("/healthz")[2])
        pids[body["pid"]] = body["websub_hub"]["subscriptions"]
        return len(pids)

    wait_until(lambda: answers() == 3)  # the followers are up
    for n in range(12):  # new connections: the kernel spreads them over the processes
        assert subscribe(server, f"{sub.url}/cb{n}")[0] == 202
    wait_until(lambda: len(active(server, topic)) == 12)
    pids.clear()
    wait_until(lambda: answers() == 3)
    assert set(pids.values()) == {12}  # every process sees every subscription


def test_the_hub_client_never_connects_to_a_name_that_resolves_to_loopback(
        subscribers) -> None:
    """What was checked is what is connected to: the hub's HTTP client resolves names
    through SafeResolver, so even a request made without check_callback (or after DNS
    changed since it) cannot reach an unsafe address."""
    sub = subscribers()

    async def fetch(allow_private: bool) -> int | str:
        async with client_session(5, allow_private=allow_private) as session:
            try:
                async with session.get(f"http://localhost:{sub.port}/x",
                                       allow_redirects=False) as response:
                    return response.status
            except aiohttp.ClientConnectorError as e:
                return str(e)

    refused = asyncio.run(fetch(False))
    assert isinstance(refused, str) and "loopback" in refused
    assert sub.received == []
    assert asyncio.run(fetch(True)) == 200  # allow_private_callbacks: the same name works
    assert len(sub.received) == 1

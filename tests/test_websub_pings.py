"""Pings to external WebSub hubs (§6): a real `feedsvc serve` and a real hub endpoint (an
aiohttp server on loopback, in a thread of its own) that records every request. One POST per
change batch naming each changed topic (`hub.url` and `hub.topic`), retried with backoff while
the hub answers 500 or is down, its state in /healthz."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from aiohttp import web

from tests.conftest import ServeProcess, free_port, wait_until, write_seed
from tests.test_websub_discovery import websub_config

FORMATS = ("atom", "rss", "json")


@dataclass(frozen=True)
class Ping:
    at: float
    content_type: str
    pairs: tuple[tuple[str, str], ...]

    @property
    def topics(self) -> set[str]:
        return {value for key, value in self.pairs if key == "hub.topic"}


class Hub:
    """An external hub on loopback: records each POST, answers `statuses` in turn (then 204)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hub"
        self.pings: list[Ping] = []
        self.statuses: list[int] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._runner: web.AppRunner | None = None

    def start(self) -> Hub:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/hub", self._receive)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()

    async def _receive(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode("ascii")
        self.pings.append(Ping(time.monotonic(), request.content_type,
                               tuple(parse_qsl(body, strict_parsing=True))))
        status = self.statuses.pop(0) if self.statuses else 204
        return web.Response(status=status)

    def stop(self) -> None:
        async def cleanup() -> None:
            assert self._runner is not None
            await self._runner.cleanup()
        asyncio.run_coroutine_threadsafe(cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def take(self, count: int, timeout: float = 10.0) -> list[Ping]:
        wait_until(lambda: len(self.pings) >= count, timeout=timeout)
        taken, self.pings[:] = self.pings[:count], self.pings[count:]
        return taken


@pytest.fixture
def hub() -> Iterator[Hub]:
    hub = Hub().start()
    yield hub
    hub.stop()


def _seed(slug: str, tag: str, body: str = "Corps") -> str:
    return f"---\ntags: [{tag}]\n---\n{slug}\nTitre {slug}\n\n{body}.\n"


def _topics(server: ServeProcess, *stems: str) -> set[str]:
    return {f"{server.url}/{stem}.{ext}" for stem in stems for ext in FORMATS}


def _health(server: ServeProcess) -> dict[str, object]:
    return json.loads(server.get("/healthz")[2])


def test_one_ping_per_change_naming_each_changed_topic(
        tmp_path: Path, hub: Hub, serve: Callable[[Path], ServeProcess]) -> None:
    websub_config(tmp_path, free_port(), [hub.url])
    seeds = tmp_path / "seeds"
    write_seed(seeds, "a.txt", _seed("a", "ciel"), mtime=1_700_000_000)
    server = serve(tmp_path / "config.toml")
    # A fresh state: every document is new.
    (first,) = hub.take(1)
    assert first.content_type == "application/x-www-form-urlencoded"
    assert first.pairs[0] == ("hub.mode", "publish")
    assert first.topics == _topics(server, "feed", "tags/ciel")
    # Each topic as the pair hub.url, hub.topic (what the hubs in use read).
    assert [key for key, _ in first.pairs[1:]] == ["hub.url", "hub.topic"] * 6
    assert all(first.pairs[i][1] == first.pairs[i + 1][1] for i in range(1, 13, 2))

    def change(action: Callable[[], object], *stems: str) -> None:
        start = time.monotonic()
        action()
        (ping,) = hub.take(1)
        assert ping.topics == _topics(server, *stems)
        assert ping.at - start < 1.0  # within a second of the change
        time.sleep(0.3)
        assert hub.pings == []  # one ping per change batch

    change(lambda: write_seed(seeds, "b.txt", _seed("b", "mer")), "feed", "tags/mer")  # drop
    change(lambda: write_seed(seeds, "b.txt", _seed("b", "mer", "Revu")),
           "feed", "tags/mer")  # edit
    change(lambda: write_seed(seeds, "a.txt", _seed("a", "mer")),
           "feed", "tags/ciel", "tags/mer")  # a tag change
    change(lambda: os.unlink(seeds / "a.txt"), "feed", "tags/mer")  # delete
    health = _health(server)
    assert health["status"] == "ok"
    (state,) = health["websub_hubs"]  # type: ignore[misc]
    assert state["url"] == hub.url and state["state"] == "ok" and state["failures"] == 0


def test_a_restart_with_nothing_changed_pings_nothing(
        tmp_path: Path, hub: Hub, serve: Callable[[Path], ServeProcess]) -> None:
    websub_config(tmp_path, free_port(), [hub.url])
    write_seed(tmp_path / "seeds", "a.txt", _seed("a", "ciel"))
    server = serve(tmp_path / "config.toml")
    hub.take(1)
    server.stop()
    server = serve(tmp_path / "config.toml")
    time.sleep(1.0)
    assert hub.pings == []
    server.stop()
    write_seed(tmp_path / "seeds", "a.txt", _seed("a", "ciel", "Revu"))  # while stopped
    server = serve(tmp_path / "config.toml")
    (ping,) = hub.take(1)
    assert ping.topics == _topics(server, "feed", "tags/ciel")


def test_a_hub_answering_500_gets_the_ping_again_with_backoff(
        tmp_path: Path, hub: Hub, serve: Callable[[Path], ServeProcess]) -> None:
    websub_config(tmp_path, free_port(), [hub.url])
    seeds = tmp_path / "seeds"
    write_seed(seeds, "a.txt", _seed("a", "ciel"))
    server = serve(tmp_path / "config.toml")
    hub.take(1)
    hub.statuses = [500, 503]
    write_seed(seeds, "b.txt", _seed("b", "mer"))
    failed = hub.take(1)[0]
    health = _health(server)
    assert health["status"] == "degraded"  # readers lose push: still 200
    (state,) = health["websub_hubs"]  # type: ignore[misc]
    assert state["state"] == "failing" and state["last_error"] == "HTTP 500"
    # Changes while it fails join the retry.
    write_seed(seeds, "c.txt", _seed("c", "terre"))
    second, third = hub.take(2, timeout=15)
    assert second.at - failed.at >= 0.9 and third.at - second.at >= 1.9  # 1 s, then 2 s
    assert third.topics == _topics(server, "feed", "tags/mer", "tags/terre")
    wait_until(lambda: _health(server)["status"] == "ok")
    (state,) = _health(server)["websub_hubs"]  # type: ignore[misc]
    assert state["state"] == "ok" and state["failures"] == 2 and state["pending_topics"] == 0
    log = server.log()
    assert log.count("refuses pings") == 1 and log.count("accepts pings again") == 1


def test_a_hub_that_is_down_gets_the_ping_once_it_is_up(
        tmp_path: Path, serve: Callable[[Path], ServeProcess]) -> None:
    down = Hub()  # not started: nothing listens on its port
    websub_config(tmp_path, free_port(), [down.url])
    write_seed(tmp_path / "seeds", "a.txt", _seed("a", "ciel"))
    server = serve(tmp_path / "config.toml")
    assert server.get("/feed.atom")[0] == 200  # publishing never waits for a hub
    wait_until(lambda: _health(server)["status"] == "degraded")
    (state,) = _health(server)["websub_hubs"]  # type: ignore[misc]
    assert state["state"] == "failing" and "Connect" in state["last_error"]
    write_seed(tmp_path / "seeds", "b.txt", _seed("b", "mer"))
    down.start()
    try:
        (ping,) = down.take(1, timeout=20)
        assert ping.topics == _topics(server, "feed", "tags/ciel", "tags/mer")
        wait_until(lambda: _health(server)["status"] == "ok")
    finally:
        down.stop()


def test_a_scheduled_entry_appearing_is_pinged(
        tmp_path: Path, hub: Hub, serve: Callable[[Path], ServeProcess]) -> None:
    websub_config(tmp_path, free_port(), [hub.url])
    seeds = tmp_path / "seeds"
    write_seed(seeds, "a.txt", _seed("a", "ciel"))
    server = serve(tmp_path / "config.toml")
    hub.take(1)
    due = int(time.time()) + 3  # front matter dates have whole seconds
    moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(due))
    write_seed(seeds, "s.txt", f"---\ndate: {moment}\ntags: [plus-tard]\n---\ns\nPlus tard\n\n"
                               "Corps.\n")
    time.sleep(1.0)
    assert hub.pings == []  # scheduled: in no document yet, nothing changed
    (ping,) = hub.take(1, timeout=15)
    received = time.time() - (time.monotonic() - ping.at)  # wall-clock time of the ping
    assert received >= due - 0.05  # not before its time
    assert ping.topics == _topics(server, "feed", "tags/plus-tard")

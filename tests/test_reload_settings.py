# ruff: noqa: F811  (the fixtures imported from test_service are parameters here)
"""SIGHUP applies every key but those that need a restart (host, port, workers, paths, the
endpoints that exist from the start, `[build] on_change`): the external WebSub hubs, the
built-in hub's limits, the server's limits and deadlines, the access log, the log level, the
watcher's timing. A real `serve`, real signals, real sockets, a real hub on loopback."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import feedparser
import pytest

from .conftest import ServeProcess, seed, wait_until, write_seed
from .test_service import (  # noqa: F401  (fixtures)
    NotifySocket,
    _edit_config,
    _reload,
    _start,
    notify_socket,
    site,
    started,
)
from .test_websub_pings import Hub
from .websub_subscriber import post_form


@pytest.fixture
def hubs() -> list[Hub]:
    running: list[Hub] = []
    yield running
    for hub in running:
        hub.stop()


def _ready(site: Path, notify_socket: NotifySocket, started: list[ServeProcess]
           ) -> ServeProcess:
    server = _start(site, notify_socket)
    started.append(server)
    notify_socket.wait_for(b"READY=1")
    return server


def _advertised_hubs(server: ServeProcess) -> list[str]:
    feed = feedparser.parse(server.get("/feed.atom")[2])
    return [link.href for link in feed.feed.links if link.rel == "hub"]


def _health(server: ServeProcess) -> dict[str, object]:
    return json.loads(server.get("/healthz")[2])


def test_a_reload_adds_and_removes_external_hubs(
        site: Path, notify_socket: NotifySocket, started: list[ServeProcess],
        hubs: list[Hub]) -> None:
    """No hub at start; a reload adds one: the feeds advertise it (their bytes changed, so
    the reload's publication is pinged to it), and the next change is pinged too. Another
    reload replaces it: the old hub hears nothing more, the new one gets the pings."""
    first, second = Hub().start(), Hub().start()
    hubs += [first, second]
    server = _ready(site, notify_socket, started)
    assert _advertised_hubs(server) == []
    _edit_config(site, "[server]\n", f'[websub]\nhubs = ["{first.url}"]\n\n[server]\n')
    _reload(server, notify_socket)
    log = server.log()
    assert "reload: applied websub.hubs" in log and "needs a restart" not in log
    assert _advertised_hubs(server) == [first.url]
    feed = f"{server.url}/feed.atom"
    wait_until(lambda: any(feed in ping.topics for ping in first.pings))
    first.pings.clear()
    write_seed(site / "seeds", "e.txt", seed("echo", "Echo", "Nouveau."))
    wait_until(lambda: any(feed in ping.topics for ping in first.pings))
    assert [hub["url"] for hub in _health(server)["websub_hubs"]] == [first.url]  # type: ignore[index]

    _edit_config(site, f'hubs = ["{first.url}"]', f'hubs = ["{second.url}"]')
    _reload(server, notify_socket)
    assert _advertised_hubs(server) == [second.url]
    wait_until(lambda: any(feed in ping.topics for ping in second.pings))
    first.pings.clear()
    write_seed(site / "seeds", "f.txt", seed("foxtrot", "Foxtrot", "Encore."))
    wait_until(lambda: sum(feed in ping.topics for ping in second.pings) >= 2)
    time.sleep(0.5)
    assert first.pings == []
    assert [hub["url"] for hub in _health(server)["websub_hubs"]] == [second.url]  # type: ignore[index]
    assert "is no longer in the config: not pinged any more" in server.log()


def test_a_reload_changes_the_header_deadline_of_new_connections(
        site: Path, notify_socket: NotifySocket, started: list[ServeProcess]) -> None:
    """`[server] header_timeout_s` 10 → 1: a new connection that sends nothing is closed after
    about a second, not ten."""
    server = _ready(site, notify_socket, started)
    _edit_config(site, "[server]\n", "[server]\nheader_timeout_s = 1\n")
    _reload(server, notify_socket)
    assert "reload: applied server.header_timeout_s" in server.log()
    with socket.create_connection(("127.0.0.1", server.config.server.port), timeout=8) as silent:
        started_at = time.monotonic()
        assert silent.recv(1) == b""  # closed by the server, not by our timeout
        assert time.monotonic() - started_at < 5


def test_a_reload_caps_connections_from_the_next_one_on(
        site: Path, notify_socket: NotifySocket, started: list[ServeProcess]) -> None:
    """`[server] max_connections` lowered to 2: a third idle connection closes the oldest."""
    server = _ready(site, notify_socket, started)
    port = server.config.server.port
    _edit_config(site, "[server]\n", "[server]\nmax_connections = 2\n")
    _reload(server, notify_socket)
    connections = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        assert connections[0].recv(1) == b""  # the oldest idle one was closed
        assert "connection limit (2) reached" in server.log()
    finally:
        for connection in connections:
            connection.close()


def test_a_reload_switches_the_access_log_and_the_log_level(
        site: Path, notify_socket: NotifySocket, started: list[ServeProcess]) -> None:
    server = _ready(site, notify_socket, started)
    server.get("/feed.atom?before")
    assert "/feed.atom?before" not in server.log()
    _edit_config(site, "[server]\n", "[log]\nlevel = \"debug\"\n\n[server]\naccess_log = true\n")
    _reload(server, notify_socket)
    assert "reload: applied server.access_log, log.level" in server.log()
    server.get("/feed.atom?after")
    wait_until(lambda: "/feed.atom?after" in server.log())
    write_seed(site / "seeds", "e.txt", seed("echo", "Echo", "Nouveau."))
    # Each published entry is a debug line: shown now.
    wait_until(lambda: " DEBUG " in server.log())


def test_a_reload_restarts_the_watcher_with_its_new_timing(
        site: Path, notify_socket: NotifySocket, started: list[ServeProcess]) -> None:
    """`[watch] step_ms` and `debounce_ms` changed: applied (the watcher started again), and a
    seed dropped after the reload is published."""
    server = _ready(site, notify_socket, started)
    _edit_config(site, "debounce_ms = 20\n", "debounce_ms = 200\nstep_ms = 30\nrescan_s = 60\n")
    _reload(server, notify_socket)
    log = server.log()
    assert "reload: applied watch.step_ms, watch.debounce_ms, watch.rescan_s" in log
    assert "needs a restart" not in log
    write_seed(site / "seeds", "e.txt", seed("echo", "Echo", "Nouveau."))
    wait_until(lambda: "Echo" in {e.title for e in feedparser.parse(
        server.get("/feed.atom")[2]).entries}, timeout=10)


def test_the_builtin_hub_and_metrics_need_a_restart(
        site: Path, notify_socket: NotifySocket, started: list[ServeProcess]) -> None:
    """They add endpoints (and the hub's storage): logged as needing a restart, not served
    until then, the rest applied."""
    server = _ready(site, notify_socket, started)
    _edit_config(site, "[server]\n",
                 "[websub]\nbuiltin_hub = true\n\n[server]\nmetrics = true\n")
    _edit_config(site, 'title = "Titre avant"', 'title = "Titre après"')
    _reload(server, notify_socket)
    log = server.log()
    assert "server.metrics, websub.builtin_hub changed: needs a restart" in log
    assert server.get("/metrics")[0] == 404
    assert _advertised_hubs(server) == []
    assert feedparser.parse(server.get("/feed.atom")[2]).feed.title == "Titre après"


def test_a_reload_changes_the_builtin_hubs_rate_in_every_process(
        site: Path, notify_socket: NotifySocket, started: list[ServeProcess]) -> None:
    """`[websub] subscribe_rate_per_min` 60 → 1, with two processes: after the reload each
    client address gets one subscription request a minute, whichever process answers."""
    _edit_config(site, "[server]\n", "[websub]\nbuiltin_hub = true\nallow_private_callbacks"
                 " = true\n\n[server]\nworkers = 2\n")
    server = _ready(site, notify_socket, started)
    _edit_config(site, "allow_private_callbacks = true\n",
                 "allow_private_callbacks = true\nsubscribe_rate_per_min = 1\n")
    _reload(server, notify_socket)
    assert "reload: applied websub.subscribe_rate_per_min" in server.log()
    time.sleep(0.5)  # the follower gets the config with the leader's snapshot message
    params = {"hub.mode": "subscribe", "hub.topic": f"{server.url}/feed.atom",
              "hub.callback": "http://127.0.0.1:9/cb"}
    # Each request on a new connection: the kernel spreads them over both processes; each
    # grants at most one.
    statuses = [post_form(f"{server.url}/websub", params)[0] for _ in range(12)]
    assert statuses.count(429) >= 10, statuses

"""`feedsvc serve` as systemd runs it (Type=notify, WatchdogSec=, ExecReload=kill -HUP): a real
$NOTIFY_SOCKET datagram socket, a real process, real signals."""

from __future__ import annotations

import http.client
import itertools
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import feedparser
import pytest

from .conftest import ServeProcess, free_port, http_get, seed, wait_until, write_config, write_seed


class NotifySocket:
    """systemd's end: a datagram socket bound in a temp folder; every message it gets, with
    the time it came (monotonic), in order."""

    def __init__(self, folder: Path) -> None:
        self.path = str(folder / "notify.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.1)
        self.messages: list[tuple[float, bytes]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data))

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "NOTIFY_SOCKET": self.path, **extra}

    def received(self, predicate: Callable[[bytes], bool]) -> list[tuple[float, bytes]]:
        return [(when, data) for when, data in list(self.messages) if predicate(data)]

    def wait_for(self, data: bytes, after: int = 0, timeout: float = 30) -> int:
        """The index of the first message equal to `data` from index `after` on."""
        def found() -> int | None:
            for index, (_, got) in enumerate(list(self.messages)[after:], start=after):
                if got == data:
                    return index + 1  # (truthy)
            return None
        return int(wait_until(found, timeout=timeout)) - 1

    def close(self) -> None:
        self._closed = True
        self._thread.join()
        self._sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path)
    yield listener
    listener.close()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    write_config(tmp_path, port=free_port(), title="Titre avant")
    seeds = tmp_path / "seeds"
    write_seed(seeds, "a.txt", seed("alpha", "Alpha", "Premier."))
    write_seed(seeds, "b.txt", seed("beta", "Beta", "Second."))
    write_seed(seeds, "broken.txt", b"broken\nHeadline\n\nfine\n\xff")  # rejected
    write_seed(seeds, "c.md", "---\ntitle: Plus tard\ndate: 2099-01-01 08:00\n---\nPas encore.")
    write_seed(seeds, "d.md", "---\ntitle: Brouillon\ndraft: true\n---\nPas fini.")
    return tmp_path


def _start(site: Path, notify_socket: NotifySocket, **env: str) -> ServeProcess:
    """Started without ServeProcess's polling of /healthz: READY=1 must come on its own."""
    return _Unpolled(site / "config.toml", env=notify_socket.env(**env))


class _Unpolled(ServeProcess):
    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.log()}")
        return True


@pytest.fixture
def started() -> Iterator[list[ServeProcess]]:
    processes: list[ServeProcess] = []
    yield processes
    for process in processes:
        process.stop(signal.SIGKILL)


def _title(server: ServeProcess) -> str:
    return str(feedparser.parse(server.get("/feed.atom")[2]).feed.title)


def test_ready_once_the_feed_serves_the_seeds_with_the_status(
        site: Path, notify_socket: NotifySocket, started: list[ServeProcess]) -> None:
    server = _start(site, notify_socket)
    started.append(server)
    notify_socket.wait_for(b"READY=1")
    # The moment READY=1 came, the port answered with the seeds published: nothing polled
    # it before.
    status, _, body = server.get("/feed.atom")
    assert status == 200
    assert {e.title for e in feedparser.parse(body).entries} == {"Alpha", "Beta"}
    notify_socket.wait_for(b"STATUS=2 entries, 1 rejected, 1 scheduled, 1 draft")
    # READY=1 comes once, after the first scan: the log says it was published first.
    ready = notify_socket.received(lambda data: data == b"READY=1")
    assert len(ready) == 1
    assert "serving 2 published entries" in server.log()

    # A change of the counts: a new STATUS= after the batch (and only when it changes).
    write_seed(site / "seeds", "e.txt", seed("gamma", "Gamma", "Troisième."))
    notify_socket.wait_for(b"STATUS=3 entries, 1 rejected, 1 scheduled, 1 draft")
    time.sleep(0.5)
    statuses = [data for _, data in notify_socket.received(
        lambda data: data.startswith(b"STATUS="))]
    assert statuses == [b"STATUS=starting: publishing the seeds folder",
                        b"STATUS=2 entries, 1 rejected, 1 scheduled, 1 draft",
                        b"STATUS=3 entries, 1 rejected, 1 scheduled, 1 draft"]
    assert notify_socket.received(lambda data: data.startswith(b"WATCHDOG")) == []  # unasked


def test_watchdog_from_the_loop_at_half_the_period(
        site: Path, notify_socket: NotifySocket, started: list[ServeProcess]) -> None:
    server = _start(site, notify_socket, WATCHDOG_USEC="200000")
    started.append(server)
    notify_socket.wait_for(b"READY=1")
    time.sleep(2)
    beats = [when for when, _ in notify_socket.received(lambda data: data == b"WATCHDOG=1")]
    gaps = sorted(b - a for a, b in itertools.pairwise(beats))
    assert len(gaps) >= 10
    # Every 100 ms (WATCHDOG_USEC / 2), well within the 200 ms systemd acts at (the machine
    # is shared: a rare late beat is allowed here, not a habit).
    assert 0.08 <= gaps[len(gaps) // 2] <= 0.13, gaps
    assert gaps[len(gaps) * 9 // 10] < 0.15, gaps


def test_no_watchdog_for_another_process(site: Path, notify_socket: NotifySocket,
                                         started: list[ServeProcess]) -> None:
    server = _start(site, notify_socket, WATCHDOG_USEC="200000", WATCHDOG_PID="1")
    started.append(server)
    notify_socket.wait_for(b"READY=1")
    time.sleep(0.5)
    assert notify_socket.received(lambda data: data == b"WATCHDOG=1") == []


def test_sigterm_says_stopping(site: Path, notify_socket: NotifySocket,
                               started: list[ServeProcess]) -> None:
    server = _start(site, notify_socket)
    started.append(server)
    ready = notify_socket.wait_for(b"READY=1")
    assert server.stop(signal.SIGTERM) == 0
    notify_socket.wait_for(b"STOPPING=1", after=ready)


def _edit_config(site: Path, old: str, new: str) -> None:
    path = site / "config.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def _reload(server: ServeProcess, notify_socket: NotifySocket) -> bytes:
    """SIGHUP, then RELOADING=1 with MONOTONIC_USEC of now, then READY=1: the reload's message."""
    after = len(notify_socket.messages)
    before_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    server.process.send_signal(signal.SIGHUP)
    index = wait_until(lambda: next(
        (i + 1 for i, (_, data) in enumerate(list(notify_socket.messages)[after:], start=after)
         if data.startswith(b"RELOADING=1\n")), None))
    reloading = notify_socket.messages[index - 1][1]
    fields = dict(line.split(b"=", 1) for line in reloading.split(b"\n"))
    assert set(fields) == {b"RELOADING", b"MONOTONIC_USEC"}
    after_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before_us <= int(fields[b"MONOTONIC_USEC"]) <= after_us
    notify_socket.wait_for(b"READY=1", after=index)
    return reloading


def test_sighup_reloads_the_title_without_dropping_a_connection(
        site: Path, notify_socket: NotifySocket, started: list[ServeProcess]) -> None:
    server = _start(site, notify_socket)
    started.append(server)
    notify_socket.wait_for(b"READY=1")
    assert _title(server) == "Titre avant"
    port = server.config.server.port
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    kept.request("GET", "/feed.atom")
    first = kept.getresponse()
    assert first.status == 200 and b"Titre avant" in first.read()
    etag = first.getheader("ETag")
    sock = kept.sock

    _edit_config(site, 'title = "Titre avant"', 'title = "Titre après"')
    _reload(server, notify_socket)
    assert server.process.poll() is None
    assert "reload: applied feed.title" in server.log()

    # The connection opened before the reload still works, on the same socket.
    kept.request("GET", "/feed.atom")
    second = kept.getresponse()
    body = second.read()
    assert kept.sock is sock
    assert second.status == 200 and b"Titre apr\xc3\xa8s" in body
    assert second.getheader("ETag") != etag
    kept.close()
    # Every document made with the title: the feeds, the front page, an entry's page.
    assert _title(server) == "Titre après"
    assert "Titre après" in server.get("/feed.rss")[2].decode()
    assert "Titre après" in server.get("/")[2].decode()
    assert "Titre après" in server.get("/entries/alpha")[2].decode()
    # Still watching: a new seed is published with the new config.
    write_seed(site / "seeds", "e.txt", seed("gamma", "Gamma", "Troisième."))
    wait_until(lambda: "Gamma" in server.get("/feed.atom")[2].decode())


def test_a_broken_config_is_refused_and_the_running_one_kept(
        site: Path, notify_socket: NotifySocket, started: list[ServeProcess]) -> None:
    server = _start(site, notify_socket)
    started.append(server)
    notify_socket.wait_for(b"READY=1")
    _edit_config(site, 'title = "Titre avant"', 'title = "Titre après"\nmax_entries = "x"')
    _reload(server, notify_socket)
    assert server.process.poll() is None
    assert _title(server) == "Titre avant"
    log = server.log()
    assert "reload refused" in log and "feed.max_entries" in log
    assert "still running with the previous config" in log
    # Fixed: the next SIGHUP applies it.
    _edit_config(site, 'max_entries = "x"', "max_entries = 10")
    _reload(server, notify_socket)
    assert _title(server) == "Titre après"


def test_a_changed_port_needs_a_restart(site: Path, notify_socket: NotifySocket,
                                        started: list[ServeProcess]) -> None:
    server = _start(site, notify_socket)
    started.append(server)
    notify_socket.wait_for(b"READY=1")
    port = server.config.server.port
    other = free_port()
    _edit_config(site, f"port = {port}\n", f"port = {other}\n")
    _edit_config(site, 'title = "Titre avant"', 'title = "Titre après"')
    _reload(server, notify_socket)
    log = server.log()
    assert "server.port changed: needs a restart" in log
    # Still on the port it listens on; the rest applied.
    assert _title(server) == "Titre après"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", other), timeout=2).close()


def test_with_workers_the_leader_is_ready_and_every_process_reloads(
        site: Path, notify_socket: NotifySocket, started: list[ServeProcess]) -> None:
    _edit_config(site, "[server]\n", "[server]\nworkers = 2\n")
    server = _start(site, notify_socket)
    started.append(server)
    notify_socket.wait_for(b"READY=1")
    assert _title(server) == "Titre avant"
    _edit_config(site, 'title = "Titre avant"', 'title = "Titre après"')
    _reload(server, notify_socket)
    # Each request on a new connection: the kernel spreads them over both processes.
    def everywhere() -> bool:
        return all("Titre après" in http_get(f"{server.url}{path}")[2].decode()
                   for _ in range(10) for path in ("/feed.atom", "/entries/alpha"))
    wait_until(everywhere, timeout=10)
    assert len(notify_socket.received(lambda data: data == b"READY=1")) == 2  # start, reload


def test_a_hangup_during_start_up_is_not_fatal(
        site: Path, notify_socket: NotifySocket, started: list[ServeProcess]) -> None:
    """Before, SIGHUP's default action killed the process (exit by signal: Restart=on-failure
    does not restart it). Sent while the first scan runs (before the loop handles SIGHUP, or
    just after): not fatal, and applied once ready."""
    server = _start(site, notify_socket)
    started.append(server)
    wait_until(lambda: "serving" in server.log() or "published" in server.log())
    server.process.send_signal(signal.SIGHUP)
    notify_socket.wait_for(b"READY=1")
    time.sleep(0.5)
    assert server.process.poll() is None
    assert server.get("/feed.atom")[0] == 200


def test_a_reload_that_cannot_publish_keeps_serving_until_a_rescan_works(
        site: Path, notify_socket: NotifySocket, started: list[ServeProcess]) -> None:
    """The seeds folder is gone when the reload scans it: the last snapshot (old title, every
    entry) is still served and /healthz says why; once the folder is back, the new config
    publishes."""
    server = _start(site, notify_socket)
    started.append(server)
    notify_socket.wait_for(b"READY=1")
    seeds, aside = site / "seeds", site / "seeds.aside"
    seeds.rename(aside)
    wait_until(lambda: b'"rescan_ok": false' in server.get("/healthz")[2]
               or b"watching\": false" in server.get("/healthz")[2], timeout=20)
    _edit_config(site, 'title = "Titre avant"', 'title = "Titre après"')
    _reload(server, notify_socket)
    assert server.process.poll() is None
    assert "publishing with it failed" in server.log()
    feed = feedparser.parse(server.get("/feed.atom")[2])
    assert feed.feed.title == "Titre avant"
    assert {e.title for e in feed.entries} == {"Alpha", "Beta"}
    aside.rename(seeds)
    wait_until(lambda: _title(server) == "Titre après", timeout=30)
    assert {e.title for e in feedparser.parse(server.get("/feed.atom")[2]).entries} == {
        "Alpha", "Beta"}

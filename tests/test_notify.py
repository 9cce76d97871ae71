"""systemd's notification protocol (sd_notify(3)): the messages, the address, the watchdog's
period, and the sender on a real AF_UNIX datagram socket. The reload's pure parts: which keys
changed, which need a restart, what is applied."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from feedsvc.config import Config, load_config
from feedsvc.serve import notify
from feedsvc.serve.notify import Notifier, message, socket_address, watchdog_interval
from feedsvc.serve.service import LiveConfig, Service, applicable, changed_keys, needs_restart

from .conftest import wait_until, write_config


@pytest.mark.parametrize(("assignments", "expected"), [
    ((("READY", 1),), b"READY=1"),
    ((("RELOADING", 1), ("MONOTONIC_USEC", 123)), b"RELOADING=1\nMONOTONIC_USEC=123"),
    ((("STATUS", "3 entries, 1 rejected"),), b"STATUS=3 entries, 1 rejected"),
    # A value is one assignment: a newline would start another one (READY=1 from a title).
    ((("STATUS", "a\nREADY=1"),), b"STATUS=a READY=1"),
    ((("STATUS", "a\r\nb"),), b"STATUS=a  b"),
    ((("STATUS", "été"),), "STATUS=été".encode()),
])
def test_message(assignments: tuple[tuple[str, object], ...], expected: bytes) -> None:
    assert message(*assignments) == expected


@pytest.mark.parametrize("name", ["", "A=B", "A B", "ÉTAT", "A\nB"])
def test_message_refuses_a_bad_name(name: str) -> None:
    with pytest.raises(ValueError):
        message((name, 1))


def test_the_named_messages() -> None:
    assert notify.ready() == b"READY=1"
    assert notify.stopping() == b"STOPPING=1"
    assert notify.watchdog() == b"WATCHDOG=1"
    assert notify.status("x") == b"STATUS=x"
    assert notify.reloading(42) == b"RELOADING=1\nMONOTONIC_USEC=42"


def test_monotonic_usec_is_clock_monotonic_in_microseconds() -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    now = notify.monotonic_usec()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before <= now <= after


@pytest.mark.parametrize(("value", "address"), [
    (None, None),
    ("", None),
    ("/run/systemd/notify", "/run/systemd/notify"),
    ("@abstract/name", b"\0abstract/name"),
    ("relative/path", None),
    ("vsock:2:1234", None),
])
def test_socket_address(value: str | None, address: str | bytes | None) -> None:
    assert socket_address(value) == address


@pytest.mark.parametrize(("environ", "interval"), [
    ({}, None),
    ({"WATCHDOG_USEC": "200000"}, 0.1),
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "4242"}, 0.1),  # it is ours
    ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "4243"}, None),  # another process's
    ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "x"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "-5"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
])
def test_watchdog_interval(environ: dict[str, str], interval: float | None) -> None:
    assert watchdog_interval(environ, 4242) == interval


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket bound where systemd's would be."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def test_notifier_sends_one_datagram_per_message(receiver: tuple[str, socket.socket]) -> None:
    path, sock = receiver
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.send(notify.ready())
    assert notifier.send(notify.status("2 entries"))
    assert sock.recv(4096) == b"READY=1"
    assert sock.recv(4096) == b"STATUS=2 entries"
    notifier.close()


def test_notifier_on_an_abstract_socket() -> None:
    name = f"feedsvc-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.send(notify.stopping())
        assert sock.recv(4096) == b"STOPPING=1"
        notifier.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.send(notify.ready())


def test_a_failure_is_logged_once_and_never_raised(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.WARNING, logger="feedsvc"):
        assert not notifier.send(notify.ready())
        assert not notifier.send(notify.watchdog())
    lines = [r.getMessage() for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(lines) == 1


def test_a_full_queue_does_not_block(receiver: tuple[str, socket.socket]) -> None:
    """Nobody reads the socket: sending returns at once (False), never waits."""
    path, _ = receiver
    notifier = Notifier({"NOTIFY_SOCKET": path})
    started = time.monotonic()
    results = [notifier.send(b"WATCHDOG=1" + b" " * 1000) for _ in range(5000)]
    assert time.monotonic() - started < 5
    assert False in results  # the receiver's queue filled up
    notifier.close()


# -- the reload's pure parts ----------------------------------------------------------------

@pytest.fixture
def running(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, port=8080, base_url=""))  # the default


@pytest.mark.parametrize(("change", "keys", "restart"), [
    (lambda c: c, [], []),
    (lambda c: replace(c, feed=replace(c.feed, title="New")), ["feed.title"], []),
    (lambda c: replace(c, server=replace(c.server, port=9090, cache_max_age=5)),
     ["server.port", "server.cache_max_age"], ["server.port"]),
    (lambda c: replace(c, paths=replace(c.paths, seeds=Path("/elsewhere"))),
     ["paths.seeds"], ["paths.seeds"]),
    (lambda c: replace(c, server=replace(c.server, workers=4)),
     ["server.workers"], ["server.workers"]),
    (lambda c: replace(c, websub=replace(c.websub, hubs=("https://hub.example/",))),
     ["websub.hubs"], []),
    (lambda c: replace(c, websub=replace(c.websub, builtin_hub=True, lease_max_s=600)),
     ["websub.builtin_hub", "websub.lease_max_s"], ["websub.builtin_hub"]),
    (lambda c: replace(c, watch=replace(c.watch, max_seed_bytes=4096, debounce_ms=5)),
     ["watch.debounce_ms", "watch.max_seed_bytes"], []),
    (lambda c: replace(c, server=replace(c.server, max_connections=10, access_log=True,
                                         metrics=True)),
     ["server.access_log", "server.max_connections", "server.metrics"], ["server.metrics"]),
    (lambda c: replace(c, log=replace(c.log, level="debug"),
                       build=replace(c.build, on_change=True)),
     ["log.level", "build.on_change"], ["build.on_change"]),
    (lambda c: replace(c, feed=replace(c.feed, base_url="https://news.example/")),
     ["feed.base_url"], []),
    # The default base URL follows the port: it changes with it, at the restart.
    (lambda c: replace(c, feed=replace(c.feed, base_url="http://127.0.0.1:9090/"),
                       server=replace(c.server, port=9090)),
     ["feed.base_url", "server.port"], ["feed.base_url", "server.port"]),
    # Switching WebSub on waits for the restart; the base URL need not.
    (lambda c: replace(c, feed=replace(c.feed, base_url="https://news.example/"),
                       websub=replace(c.websub, builtin_hub=True)),
     ["feed.base_url", "websub.builtin_hub"], ["websub.builtin_hub"]),
])
def test_changed_keys_and_what_needs_a_restart(running: Config, change: object,
                                               keys: list[str], restart: list[str]) -> None:
    new = change(running)  # type: ignore[operator]
    changed = changed_keys(running, new)
    assert changed == keys
    assert [key for key in changed if needs_restart(key, running, new)] == restart
    # What is applied: the new values, except those a restart needs, which stay as running.
    effective = applicable(running, new)
    assert changed_keys(running, effective) == [key for key in keys if key not in restart]
    assert changed_keys(effective, new) == restart


def test_with_the_builtin_hub_the_base_url_waits_for_a_restart(running: Config) -> None:
    """The built-in hub's subscriptions name their topics by the base URL. External hubs are
    told the new topics by the reload's pings: applied."""
    before = replace(running, websub=replace(running.websub, builtin_hub=True))
    after = replace(before, feed=replace(before.feed, base_url="https://news.example/",
                                         title="New"))
    assert [key for key in changed_keys(before, after)
            if needs_restart(key, before, after)] == ["feed.base_url"]
    assert changed_keys(before, applicable(before, after)) == ["feed.title"]
    before = replace(running, websub=replace(running.websub, hubs=("https://hub.example/",)))
    after = replace(before, feed=replace(before.feed, base_url="https://news.example/"))
    assert [key for key in changed_keys(before, after)
            if needs_restart(key, before, after)] == []


async def test_a_blocked_loop_sends_no_watchdog(receiver: tuple[str, socket.socket],
                                                running: Config,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """WATCHDOG=1 comes from the event loop itself: while the loop is blocked none is sent, so
    systemd (WatchdogSec=) sees the hang."""
    path, sock = receiver
    beats: list[float] = []
    done = threading.Event()

    def receive() -> None:
        sock.settimeout(0.05)
        while not done.is_set():
            try:
                if sock.recv(4096) == b"WATCHDOG=1":
                    beats.append(time.monotonic())
            except TimeoutError:
                pass

    reader = threading.Thread(target=receive)
    reader.start()
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a beat every 50 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    service = Service(LiveConfig(running), Notifier({"NOTIFY_SOCKET": path}))
    before = signal.getsignal(signal.SIGHUP)
    try:
        service.start()
        await asyncio.sleep(0.3)
        blocked_at = time.monotonic()
        time.sleep(0.6)  # the loop is blocked: no beat
        await asyncio.sleep(0.3)
        await service.stop()
        assert signal.getsignal(signal.SIGHUP) == before  # stop gives SIGHUP back
    finally:
        signal.signal(signal.SIGHUP, before)
        done.set()
        reader.join()
    during = [t for t in beats if blocked_at + 0.1 < t < blocked_at + 0.59]  # (late arrivals)
    assert during == []
    assert len([t for t in beats if t < blocked_at]) >= 3
    assert len([t for t in beats if t > blocked_at + 0.6]) >= 3


def test_a_hangup_before_the_loop_is_remembered_not_fatal() -> None:
    """From the start of `serve`, before the event loop handles SIGHUP: its default action
    (death) is replaced by a note the service reads once it runs."""
    before = signal.getsignal(signal.SIGHUP)
    try:
        notify.catch_hangups()
        assert not notify.take_early_hangups()
        os.kill(os.getpid(), signal.SIGHUP)
        wait_until(lambda: notify._early_hangups)
        assert notify.take_early_hangups()
        assert not notify.take_early_hangups()  # forgotten once asked
    finally:
        signal.signal(signal.SIGHUP, before)

"""The leader as a systemd service: readiness, status, watchdog, stopping (sd_notify, see
`notify`), and SIGHUP, which reloads the config file without closing the listening socket.

- READY=1 once the first scan is published (the app's startup) and the socket listens
  (`announce_ready`, called by the runner once its site is started).
- STATUS= one line (entries, rejected, scheduled, drafts), after each batch when it changed.
- WATCHDOG=1 from the event loop every $WATCHDOG_USEC/2: a blocked loop sends none, and
  systemd (WatchdogSec=) restarts the service.
- STOPPING=1 as shutdown starts (app.on_shutdown: the sites are stopped, requests in flight
  are still being answered).
- SIGHUP: RELOADING=1 with MONOTONIC_USEC, the config file read and validated again, then
  READY=1 whether it was applied or refused. A bad file is logged (its key) and the running
  config kept; keys that only a restart can change are logged as such and the others applied:
  the pipeline opens the publisher again with the new config and publishes a fresh snapshot
  (a full scan, as at start, while the old snapshot is still served), the state readers
  (entry, archive, site pages; sitemaps) forget what they rendered, and the followers get the
  new snapshot and config with the next message.

A SIGHUP that arrives before the loop handles it (during start-up) is remembered by
`catch_hangups` and applied once ready: its default action would kill the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from feedsvc.config import Config, load_config
from feedsvc.errors import FeedsvcError
from feedsvc.logtext import setup_logging
from feedsvc.model import Snapshot
from feedsvc.publish.snapshot import Live
from feedsvc.publish.statereader import StateReader
from feedsvc.serve import notify
from feedsvc.serve.notify import Notifier

if TYPE_CHECKING:
    from feedsvc.serve.pipeline import Pipeline

log = logging.getLogger("feedsvc")

#: Keys a reload cannot apply: the listening socket and the processes, the endpoints that
#: exist or not from the start (`/metrics`, the built-in hub's), the watched, stored and
#: written folders, and whether `serve` writes the static site. A change is logged as needing
#: a restart and the running value kept; every other key is applied (see `Service._reload`).
RESTART_KEYS = frozenset({
    "server.host", "server.port", "server.workers", "server.metrics",
    "paths.seeds", "paths.state", "paths.output", "paths.media",
    "websub.builtin_hub", "build.on_change",
})
TABLES = ("feed", "paths", "server", "watch", "websub", "log", "build")


def changed_keys(old: Config, new: Config) -> list[str]:
    """"table.key" of every setting that differs, in the dataclasses' order."""
    changed = []
    for table in TABLES:
        before, after = getattr(old, table), getattr(new, table)
        for field in dataclasses.fields(before):
            if getattr(before, field.name) != getattr(after, field.name):
                changed.append(f"{table}.{field.name}")
    return changed


def needs_restart(key: str, running: Config, new: Config) -> bool:
    """Whether a change of `key` from `running` to `new` waits for a restart. `feed.base_url`
    does with the built-in hub (its subscriptions name their topics by it: see the README's
    runbook for a new domain), and when it is the default made from a host or port that
    changed (the port served is still the running one)."""
    if key in RESTART_KEYS:
        return True
    if key == "feed.base_url":
        return running.websub.builtin_hub or (
            running.feed.base_url == _default_base_url(running)
            and new.feed.base_url == _default_base_url(new))
    return False


def _default_base_url(config: Config) -> str:
    """As config.py makes it when `[feed] base_url` is not set."""
    host = config.server.host
    return f"http://{f'[{host}]' if ':' in host else host}:{config.server.port}/"


def applicable(old: Config, new: Config) -> Config:
    """`new`, with the running value of every key a reload cannot change."""
    if needs_restart("feed.base_url", old, new):
        new = dataclasses.replace(new, feed=dataclasses.replace(
            new.feed, base_url=old.feed.base_url))
    tables: dict[str, Any] = {}
    for table in TABLES:
        before, after = getattr(old, table), getattr(new, table)
        kept = {field.name: getattr(before, field.name) for field in dataclasses.fields(before)
                if f"{table}.{field.name}" in RESTART_KEYS}
        tables[table] = dataclasses.replace(after, **kept)
    return dataclasses.replace(new, **tables)


def status_text(snapshot: Snapshot) -> str:
    """STATUS=: what `systemctl status feedsvc` shows under the unit."""
    drafts = snapshot.draft_count
    return (f"{snapshot.published_count} entries, {len(snapshot.rejected)} rejected, "
            f"{len(snapshot.scheduled)} scheduled, {drafts} draft{'' if drafts == 1 else 's'}"
            + ("" if snapshot.seeds_readable else "; seeds folder unreadable"))


class LiveConfig:
    """The config in force: the one the process started with, or the last reload's.
    Replacing `current` is the atomic swap, as `Live` does for the snapshot; what requests
    read per request comes from here (app[SETTINGS])."""

    def __init__(self, config: Config) -> None:
        self.current = config


class Service:
    """The leader's side of systemd's protocol, and its reloads."""

    def __init__(self, config: LiveConfig, notifier: Notifier | None = None) -> None:
        self.notifier = notifier if notifier is not None else Notifier()
        self.config = config  # the app's: swapped on reload
        self.pipeline: Pipeline | None = None  # set once the pipeline is open
        self.live: Live | None = None
        self.readers: tuple[StateReader, ...] = ()  # told of a new config
        #: The parts that keep settings of their own (the WebSub pinger, hub and deliverer):
        #: called with the config about to be in force before the pipeline publishes with it
        #: (so the pings of that publication go to the new hubs), and with the running one
        #: again if the pipeline refuses it.
        self.configurables: list[Callable[[Config], None]] = []
        self._stop = asyncio.Event()
        self._ready = False
        self._status: str | None = None
        self._reload_wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._handling_hangups = False
        self._previous_hangup: Any = None

    # -- from the app ----------------------------------------------------------------------

    def start(self) -> None:
        """At startup, on the loop: SIGHUP is the loop's from now on; the watchdog runs."""
        # What `systemctl status` shows while the first scan runs (a minute for 100,000 cold
        # seeds: TimeoutStartSec= must allow it).
        self.notifier.send(notify.status("starting: publishing the seeds folder"))
        loop = asyncio.get_running_loop()
        self._previous_hangup = signal.getsignal(signal.SIGHUP)
        try:
            loop.add_signal_handler(signal.SIGHUP, self._reload_wanted.set)
            self._handling_hangups = True
        except (NotImplementedError, RuntimeError, ValueError) as e:  # not the main thread
            log.debug("SIGHUP cannot be handled here (%s): no reloads", e)
        if notify.take_early_hangups():
            self._reload_wanted.set()
        self._tasks.append(asyncio.create_task(self._reloads()))
        interval = notify.watchdog_interval(os.environ, os.getpid())
        if interval is not None and self.notifier.enabled:
            self._tasks.append(asyncio.create_task(self._watchdog(interval)))

    def listening(self) -> None:
        """The socket listens and the first snapshot is published: READY=1."""
        self._ready = True
        self.notifier.send(notify.ready())
        self._send_status(self._status)

    def batch_done(self, snapshot: Snapshot) -> None:
        """After each batch (the pipeline's report): STATUS= when it changed."""
        text = status_text(snapshot)
        if text != self._status:
            self._status = text
            if self._ready:
                self._send_status(text)

    async def stopping(self, app: object) -> None:
        """app.on_shutdown."""
        self.notifier.send(notify.stopping())

    async def stop(self) -> None:
        self._stop.set()
        self._reload_wanted.set()
        if self._handling_hangups:
            self._handling_hangups = False
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
                # As before start (`serve`: remembered, not the default action, death).
                signal.signal(signal.SIGHUP, self._previous_hangup or signal.SIG_DFL)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.notifier.close()

    # -- the loops -------------------------------------------------------------------------

    async def _watchdog(self, interval: float) -> None:
        """WATCHDOG=1 every `interval` seconds, from the loop itself."""
        while not self._stop.is_set():
            self.notifier.send(notify.watchdog())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)

    async def _reloads(self) -> None:
        """One reload at a time; SIGHUPs during one make one more after it."""
        while True:
            await self._reload_wanted.wait()
            if self._stop.is_set():
                return
            while not self._ready and not self._stop.is_set():  # a SIGHUP during start-up
                await asyncio.sleep(0.05)
            if self._stop.is_set():
                return
            self._reload_wanted.clear()
            try:
                await self.reload()
            except Exception:
                log.exception("reload failed; still running with the previous config")

    async def reload(self) -> None:
        self.notifier.send(notify.reloading(notify.monotonic_usec()))
        try:
            await self._reload()
        finally:
            self.notifier.send(notify.ready())
            self._send_status(self._status)

    async def _reload(self) -> None:
        assert self.pipeline is not None and self.live is not None
        running = self.config.current
        path = running.config_file
        if path is None:
            log.error("reload: this process has no config file to read again")
            return
        log.info("reload: reading %s", path)
        try:
            new = await asyncio.get_running_loop().run_in_executor(None, load_config, path)
        except FeedsvcError as e:  # ConfigError names the file and the key
            log.error("reload refused: %s; still running with the previous config", e)
            return
        if running.log.command_line:  # --log-level (or -v) wins over the file, as at start
            new = dataclasses.replace(new, log=running.log)
        changed = changed_keys(running, new)
        if later := [key for key in changed if needs_restart(key, running, new)]:
            log.warning("reload: %s changed: needs a restart to apply (systemctl restart "
                        "feedsvc); the running value%s kept", ", ".join(later),
                        " is" if len(later) == 1 else "s are")
        now = [key for key in changed if not needs_restart(key, running, new)]
        if not now:
            log.info("reload: nothing to apply")
            return
        config = applicable(running, new)
        self._configure(config)
        try:
            info = await self.pipeline.reload(config)
        except Exception as e:  # the parts told of the new config go back to the running one
            self._configure(running)
            if not isinstance(e, FeedsvcError):
                raise  # a bug: logged by _reloads
            log.error("reload refused: %s; still running with the previous config", e)
            return
        for reader in self.readers:
            await reader.reconfigure(config, info)
        # From here on, what is read per request or per connection (cache ages, the server's
        # limits and deadlines, the access log) is the new config's.
        self.config.current = config
        if config.log != running.log:
            setup_logging(config.log.level, config.log.format)
        log.info("reload: applied %s; serving %d published entries",
                 ", ".join(now), self.live.current.published_count)

    def _configure(self, config: Config) -> None:
        for configure in self.configurables:
            try:
                configure(config)
            except Exception:  # a bug in one part must not leave the others half-told
                log.exception("reload: a part could not take the new config")

    def _send_status(self, text: str | None) -> None:
        if text is not None:
            self.notifier.send(notify.status(text))

"""make_app(config): the application, with no side effects. The leader's pipeline runs in a
cleanup_ctx (`run_pipeline`), and so does a follower's reception of snapshots (`follow`).

The parts: `keys` (the app's state, named), `routes` (the route table, from the document
registry), `handlers` (requests), `pipeline` (seeds → snapshots), `workers` (the snapshot
message to the other processes), `connections` (the server's deadlines and caps).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from multiprocessing.connection import Connection

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from feedsvc.config import Config
from feedsvc.errors import FeedsvcError
from feedsvc.logtext import setup_logging
from feedsvc.publish.archives import ArchivePages
from feedsvc.publish.longtail import EntryPages
from feedsvc.publish.sitefiles import SiteFiles
from feedsvc.publish.sitepages import SitePages
from feedsvc.publish.snapshot import Live
from feedsvc.publish.statereader import StateReader
from feedsvc.serve.health import LiveHealth
from feedsvc.serve.keys import (
    ARCHIVE_PAGES,
    CONFIG,
    FOLLOWERS,
    LIVE,
    MEDIA,
    PAGES,
    SERVICE,
    SETTINGS,
    SITE_FILES,
    SITE_PAGES,
    SNAPSHOT_LISTENERS,
    STATUS,
)
from feedsvc.serve.mediafolder import MediaFolder
from feedsvc.serve.metrics import METRICS, Metrics, worker_number
from feedsvc.serve.pipeline import Pipeline
from feedsvc.serve.routes import setup_routes
from feedsvc.serve.service import LiveConfig, Service
from feedsvc.serve.staticsite import run_static_site
from feedsvc.serve.websub.deliver import run_delivery
from feedsvc.serve.websub.hub import HUB, Hub, run_hub
from feedsvc.serve.websub.pinger import run_pinger
from feedsvc.serve.workers import Followers, MessageError, receive

log = logging.getLogger("feedsvc")


def make_app(config: Config, followers: Sequence[Connection] = ()) -> web.Application:
    """The application, with no side effects: the pipeline starts with the app's startup.
    Each snapshot is also sent to `followers`, the other worker processes on the port."""
    app = _base_app(config)
    app[FOLLOWERS] = Followers(followers)
    app[SNAPSHOT_LISTENERS] = []
    # systemd's notifications and SIGHUP, from the first of the cleanup contexts on.
    app[SERVICE] = service = Service(app[SETTINGS])
    app.cleanup_ctx.insert(0, run_service)
    app.on_shutdown.append(service.stopping)
    # WebSub §6: ping the external hubs (before the pipeline starts); also with none yet, as
    # a reload may add some.
    app.cleanup_ctx.append(run_pinger)
    if config.websub.builtin_hub:
        app.cleanup_ctx.append(run_delivery)  # after the hub's, before the pipeline's
    if config.build.on_change:  # the static site kept current (before the pipeline's)
        app.cleanup_ctx.append(run_static_site)
    app.cleanup_ctx.append(run_pipeline)
    return app


def make_follower_app(config: Config, leader: Connection) -> web.Application:
    """A worker that serves the snapshots the leader's pipeline sends it; it watches nothing
    and writes nothing."""
    app = _base_app(config)
    app.cleanup_ctx.append(follow(leader))
    return app


def _base_app(config: Config) -> web.Application:
    app = web.Application()
    app[CONFIG] = config
    app[SETTINGS] = LiveConfig(config)
    app[LIVE] = Live()
    app[STATUS] = LiveHealth()
    app[PAGES] = EntryPages(config)
    app[ARCHIVE_PAGES] = ArchivePages(config)
    app[SITE_PAGES] = SitePages(config)
    app[SITE_FILES] = SiteFiles(config)
    app[MEDIA] = MediaFolder(config.paths.media)
    if config.server.metrics:
        app[METRICS] = Metrics(app[LIVE], app[STATUS], worker_number())
    if config.websub.builtin_hub:
        # Before the pipeline's cleanup_ctx (make_app appends it after): the content
        # distribution may use the hub's storage from the first batch on.
        app[HUB] = Hub(config, app[LIVE])
        app.cleanup_ctx.append(run_hub)
    setup_routes(app)
    return app


async def run_pipeline(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx of the leader: the pipeline runs from startup to shutdown."""
    service = app[SERVICE]
    pipeline = await Pipeline.open(app[CONFIG], app[LIVE], app[STATUS], app[FOLLOWERS],
                                   app[SNAPSHOT_LISTENERS], on_report=service.batch_done)
    service.pipeline, service.live, service.readers = pipeline, app[LIVE], _readers(app)
    if METRICS in app:
        pipeline.metrics = app[METRICS].pipeline
    try:
        app[PAGES].start(pipeline.info)
        app[ARCHIVE_PAGES].start(pipeline.info)
        app[SITE_PAGES].start(pipeline.info)
        app[SITE_FILES].start(pipeline.info)
        await pipeline.start()
        yield
    finally:
        await pipeline.stop()
        app[PAGES].close()
        app[ARCHIVE_PAGES].close()
        app[SITE_PAGES].close()
        app[SITE_FILES].close()


def follow(leader: Connection) -> Callable[[web.Application], AsyncIterator[None]]:
    """cleanup_ctx of a follower: swap in every snapshot the leader sends; when the leader is
    gone, stop (systemd restarts the service as a whole)."""

    async def following(app: web.Application) -> AsyncIterator[None]:
        first = await receive(leader)
        if first is None:
            raise FeedsvcError("the leader process went away before the first snapshot")
        app[LIVE].current = first.snapshot
        app[STATUS].current = first.status
        settings = app[SETTINGS]
        if first.config is not None and first.config != settings.current:
            # The leader's config in force: reloaded since this process was started.
            _configure_follower(app, first.config)
            for reader in _readers(app):
                reader.reconfigure_now(first.config, first.info)
        for reader in _readers(app):
            reader.start(first.info)

        async def keep_following() -> None:
            try:
                while (message := await receive(leader)) is not None:
                    if message.config is not None and message.config != settings.current:
                        # The leader reloaded its config (SIGHUP): the pages made from the
                        # state are made with it from now on, as the leader's.
                        for reader in _readers(app):
                            await reader.reconfigure(message.config, message.info)
                        _configure_follower(app, message.config)
                    app[LIVE].current = message.snapshot
                    app[STATUS].current = message.status
                log.info("leader gone; this worker stops")
            except MessageError as e:
                log.error("%s; this worker stops", e)
            signal.raise_signal(signal.SIGTERM)

        task = asyncio.create_task(keep_following())
        try:
            yield
        finally:
            task.cancel()
            app[PAGES].close()
            app[ARCHIVE_PAGES].close()
            app[SITE_PAGES].close()
            app[SITE_FILES].close()

    return following


def _configure_follower(app: web.Application, config: Config) -> None:
    """A follower takes the config the leader reloaded: what its requests and new connections
    read (app[SETTINGS]), its part of the built-in hub, its log lines."""
    before = app[SETTINGS].current
    if HUB in app:
        app[HUB].reconfigure(config)
    app[SETTINGS].current = config
    if config.log != before.log:
        setup_logging(config.log.level, config.log.format)


def announce_ready(app: web.Application) -> None:
    """Called by the runner once the app's site listens: the leader tells systemd."""
    service = app.get(SERVICE)
    if service is not None:
        service.listening()


async def run_service(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx of the leader, first of all: SIGHUP and the watchdog from startup on."""
    service = app[SERVICE]
    service.start()
    try:
        yield
    finally:
        await service.stop()


def _readers(app: web.Application) -> tuple[StateReader, ...]:
    return app[PAGES], app[ARCHIVE_PAGES], app[SITE_PAGES], app[SITE_FILES]


class QuietBadRequests(logging.Filter):
    """aiohttp logs every request it cannot parse as an ERROR with a traceback: anyone who can
    reach the port could fill the journal with what looks like crashes. Such a request already
    got its 4xx; keep it to one debug line. Real errors (500s) still log in full."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg, record.args = "bad request refused: %s", (error,)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True

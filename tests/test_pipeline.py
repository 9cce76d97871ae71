"""The pipeline object on its own (feedsvc.serve.pipeline): real seeds, a real state, a real
pipe to a follower; no server, no socket."""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.connection import Connection

from feedsvc.config import Config
from feedsvc.publish.snapshot import Live
from feedsvc.serve.health import HealthStatus, LiveHealth
from feedsvc.serve.pipeline import Pipeline
from feedsvc.serve.timetable import WRITE_RETRY_S
from feedsvc.serve.workers import Followers, SnapshotMessage, receive

from .conftest import seed, write_seed


async def _until_published(leader: Connection, count: int) -> SnapshotMessage:
    """The message that publishes `count` entries: sent with the batch that made it, well
    before the wake-up every WRITE_RETRY_S (which sends anything unsent too)."""
    while True:
        message = await asyncio.wait_for(receive(leader), timeout=WRITE_RETRY_S - 1)
        assert message is not None, "the pipeline closed the pipe"
        if message.snapshot.published_count == count:
            return message


async def test_the_pipeline_publishes_each_change_to_the_server_and_the_followers(
        config: Config) -> None:
    write_seed(config.paths.seeds, "un.txt", seed("un", "Le « premier »", "Corps."))
    receiving, sending = multiprocessing.Pipe(duplex=False)
    live, health = Live(), LiveHealth()
    pipeline = await Pipeline.open(config, live, health, Followers([sending]))
    try:
        assert pipeline.info.title == "Test feed"
        await pipeline.start()  # the initial scan is done when start returns
        assert live.current.published_count == 1 and live.current.generation >= 1
        assert health.current == HealthStatus()  # watching, nothing failed, nothing unsaved
        first = await _until_published(receiving, 1)
        assert first.status == health.current and first.info == pipeline.info
        assert first.snapshot.documents["/feed.atom"].body == \
            live.current.documents["/feed.atom"].body

        write_seed(config.paths.seeds, "deux.txt", seed("deux", "Le second", "Corps."))
        second = await _until_published(receiving, 2)
        assert live.current.published_count == 2
        assert "Le second" in second.snapshot.documents["/feed.atom"].body.decode()
    finally:
        await pipeline.stop()
    while await asyncio.wait_for(receive(receiving), timeout=15) is not None:
        pass  # what was sent before it stopped; then stopping closed the pipe
    receiving.close()

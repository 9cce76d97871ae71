"""The watcher's batches into the pipeline's queue (`SeedWatch`), started with `[watch]
step_ms` and `debounce_ms`, started again with new ones by a reload; `None` in the queue once
it stopped for good."""

from __future__ import annotations

import asyncio
from pathlib import Path

from feedsvc.config import WatchConfig
from feedsvc.ingest.watcher import Batch, watch_seeds


class SeedWatch:
    def __init__(self, queue: asyncio.Queue[Batch | None]) -> None:
        self.queue = queue
        #: The loop time the watcher reported the oldest change not taken yet (the pipeline
        #: takes it with the batch).
        self.first_seen: float | None = None
        self._settings: tuple[Path, int, int] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, seeds: Path, watch: WatchConfig) -> None:
        self._settings = (seeds, watch.step_ms, watch.debounce_ms)
        self._stop = stop = asyncio.Event()
        self._task = asyncio.create_task(self._pump(*self._settings, stop))

    async def restart(self, seeds: Path, watch: WatchConfig) -> None:
        """Watch with these settings from now on (a reload), if they changed. The new watcher
        starts before the old one stops, so no change falls between the two; one both see is
        applied twice, which changes nothing the second time."""
        if self._task is None or self._settings == (seeds, watch.step_ms, watch.debounce_ms):
            return
        old_stop, old_task = self._stop, self._task
        self.start(seeds, watch)
        old_stop.set()
        await old_task

    async def stop(self) -> None:
        """Stop for good: the queue gets None once the watcher's last batch is in."""
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _pump(self, seeds: Path, step_ms: int, debounce_ms: int,
                    stop: asyncio.Event) -> None:
        try:
            async for batch in watch_seeds(seeds, step_ms=step_ms, debounce_ms=debounce_ms,
                                           stop_event=stop):
                if self.first_seen is None:
                    self.first_seen = asyncio.get_running_loop().time()
                self.queue.put_nowait(batch)
        finally:
            if stop is self._stop:  # not replaced by a restart: the watch is over
                self.queue.put_nowait(None)

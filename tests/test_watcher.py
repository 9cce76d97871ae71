"""The watcher on a real temporary folder: live-rescan first, seed paths only, merged bursts,
a lost folder reported and recovered. Every wait is bounded."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from feedsvc.ingest.watcher import Batch, watch_seeds


class Watch:
    """Runs watch_seeds in a task and queues what it yields."""

    def __init__(self, folder: Path, step_ms: int = 10, debounce_ms: int = 50) -> None:
        self.stop = asyncio.Event()
        self.batches: asyncio.Queue[Batch] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(folder, step_ms, debounce_ms))

    async def _run(self, folder: Path, step_ms: int, debounce_ms: int) -> None:
        async for batch in watch_seeds(folder, step_ms=step_ms, debounce_ms=debounce_ms,
                                       stop_event=self.stop, retry_s=0.2):
            self.batches.put_nowait(batch)

    async def next(self, timeout: float = 10) -> Batch:
        return await asyncio.wait_for(self.batches.get(), timeout)

    async def paths_until(self, wanted: set[Path], timeout: float = 10) -> list[Batch]:
        """Batches until every wanted path was named."""
        seen: set[Path] = set()
        batches = []
        async with asyncio.timeout(timeout):
            while not wanted <= seen:
                batch = await self.next()
                batches.append(batch)
                seen |= batch.paths
        return batches

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def watch(tmp_path: Path) -> AsyncIterator[Watch]:
    (tmp_path / "seeds").mkdir()
    watcher = Watch(tmp_path / "seeds")
    try:
        first = await watcher.next()
        assert first == Batch(rescan=True)  # live: whatever happened before is rescanned
        yield watcher
    finally:
        await watcher.close()


def drop(folder: Path, name: str, text: str) -> Path:
    """Written as editors and the README say: a temporary file, then a rename."""
    tmp = folder / f".{name}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, folder / name)
    return folder / name


async def test_a_drop_is_one_batch_naming_the_seed_only(watch: Watch, tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    (seeds / "notes.md~").write_text("editor backup")
    path = drop(seeds, "a.txt", "a\nTitre\n\nCorps")
    batches = await watch.paths_until({path})
    assert all(batch.paths <= {path} and not batch.rescan for batch in batches)


async def test_edits_and_deletes_are_named_too(watch: Watch, tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    path = drop(seeds, "a.txt", "a\nTitre\n\nCorps")
    await watch.paths_until({path})
    drop(seeds, "a.txt", "a\nTitre\n\nCorps modifié")
    await watch.paths_until({path})
    path.unlink()
    await watch.paths_until({path})


async def test_a_burst_comes_in_few_batches_naming_every_file(watch: Watch,
                                                             tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    paths = {drop(seeds, f"s{i:03d}.txt", f"s{i}\nTitre {i}\n\nCorps") for i in range(300)}
    batches = await watch.paths_until(paths)
    # Closed by a quiet step or by debounce_ms while the burst keeps going: never one per file.
    assert len(batches) < len(paths) / 10, len(batches)


async def test_a_lost_folder_is_reported_and_watched_again(watch: Watch,
                                                          tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    shutil.rmtree(seeds)
    async with asyncio.timeout(10):
        while await watch.next() != Batch(rescan=True, watching=False):
            pass
    seeds.mkdir()
    async with asyncio.timeout(10):
        while await watch.next() != Batch(rescan=True):  # live again: rescan
            pass
    path = drop(seeds, "b.txt", "b\nTitre\n\nCorps")
    await watch.paths_until({path})

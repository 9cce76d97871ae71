"""Which feed documents a batch changed, as the pipeline's snapshot listeners hear it (WebSub:
what is pinged and delivered). Exactly the documents whose bytes changed: on the first scan
after a restart, those the seeds changed while feedsvc was stopped (the state keeps each
document's digest), nothing when nothing changed; archive pages a batch re-dated, in every
format; and, live, each drop, edit, delete."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from feedsvc.config import Config, load_config
from feedsvc.model import ArchiveSpan
from feedsvc.publish.archives import changed_documents
from feedsvc.publish.snapshot import Live
from feedsvc.serve.health import LiveHealth
from feedsvc.serve.pipeline import Pipeline
from feedsvc.serve.websub.topics import ChangedDocuments
from feedsvc.serve.workers import Followers
from tests.conftest import free_port, write_config, write_seed

FORMATS = ("atom", "rss", "json")
T0 = 1_700_000_000


def _all(*stems: str) -> set[str]:
    return {f"/{stem}.{ext}" for stem in stems for ext in FORMATS}


def _seed(i: int, tag: str, body: str = "Corps") -> str:
    return f"---\ntags: [{tag}]\n---\nentry-{i}\nTitre {i}\n\n{body} {i}.\n"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """7 entries, 3 shown: 4 archived in pages of 2 (/archive/2/1, /archive/2/2, and the
    empty newest /archive/2/3). Entries 0-3 are tagged "vieux", 4-6 "neuf"."""
    write_config(tmp_path, port=free_port(), max_entries=3, archive_page_entries=2)
    for i in range(7):
        write_seed(tmp_path / "seeds", f"{i:02d}.txt", _seed(i, "vieux" if i < 4 else "neuf"),
                   mtime=T0 + 60 * i)
    return load_config(tmp_path / "config.toml")


class Heard:
    def __init__(self) -> None:
        self.batches: list[frozenset[str]] = []
        self.event = asyncio.Event()

    def __call__(self, changed: ChangedDocuments) -> None:
        assert changed.paths  # never told of an empty change
        for path in changed.paths:  # each one is served by that snapshot (or an archive page)
            assert path in changed.snapshot.documents or path.startswith("/archive/")
        self.batches.append(changed.paths)
        self.event.set()

    async def next(self, timeout: float = 10) -> frozenset[str]:
        await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()
        paths = frozenset().union(*self.batches)
        self.batches.clear()
        return paths


class Runner:
    """Pipelines on the config, each with a listener; stopped by `stop_all` (and at the end)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pipelines: list[Pipeline] = []

    async def start(self) -> Heard:
        heard = Heard()
        pipeline = await Pipeline.open(self.config, Live(), LiveHealth(), Followers([]),
                                       [heard])
        self.pipelines.append(pipeline)
        await pipeline.start()  # the initial scan is done, and announced, when it returns
        return heard

    async def stop_all(self) -> None:
        while self.pipelines:
            await self.pipelines.pop().stop()


@pytest.fixture
async def runner(config: Config) -> AsyncIterator[Runner]:
    runner = Runner(config)
    yield runner
    await runner.stop_all()


async def test_a_fresh_state_announces_every_document(runner: Runner) -> None:
    heard = await runner.start()
    assert heard.batches == [frozenset(_all("feed", "tags/vieux", "tags/neuf", "archive/2/1",
                                            "archive/2/2", "archive/2/3"))]


async def test_a_restart_announces_what_changed_while_stopped_and_nothing_else(
        config: Config, runner: Runner) -> None:
    await runner.start()
    await runner.stop_all()
    heard = await runner.start()
    await asyncio.sleep(0.3)
    assert heard.batches == []  # same seeds, same state: same bytes, nothing to announce
    await runner.stop_all()
    # An edit of a shown entry while stopped: its documents, not the other tag's.
    write_seed(config.paths.seeds, "05.txt", _seed(5, "neuf", "Autre"), mtime=T0 + 9000)
    heard = await runner.start()
    assert heard.batches == [frozenset(_all("feed", "tags/neuf"))]
    await runner.stop_all()
    # An edit of the oldest entry while stopped: its archive page in every format (its tag's
    # feeds show the three newer ones).
    write_seed(config.paths.seeds, "00.txt", _seed(0, "vieux", "Autre"), mtime=T0 + 9100)
    heard = await runner.start()
    assert heard.batches == [frozenset(_all("archive/2/1"))]


async def test_live_changes_are_announced_precisely(config: Config, runner: Runner) -> None:
    heard = await runner.start()
    await heard.next()
    seeds = config.paths.seeds
    # A drop: the feeds, its tag's feeds; the entry it pushes out of the feeds is archived.
    write_seed(seeds, "07.txt", _seed(7, "neuf"), mtime=T0 + 60 * 7)
    assert await heard.next() == _all("feed", "tags/neuf", "archive/2/3")
    # An edit of an archived entry (entry-1, on page 1): that page in every format, and its
    # tag's feeds (which show it).
    write_seed(seeds, "01.txt", _seed(1, "vieux", "Revu"), mtime=T0 + 60)
    assert await heard.next() == _all("archive/2/1", "tags/vieux")
    # A delete of a shown entry: the feeds; an archived entry comes back into them.
    os.unlink(seeds / "07.txt")
    changed = await heard.next()
    assert _all("feed", "tags/neuf") <= changed
    assert changed <= _all("feed", "tags/neuf", "tags/vieux", "archive/2/3")
    # A tag change: the old tag's feeds and the new one's.
    write_seed(seeds, "06.txt", _seed(6, "autre"), mtime=T0 + 60 * 6)
    assert await heard.next() == _all("feed", "tags/neuf", "tags/autre")
    # A touch that changes no byte: nothing.
    os.utime(seeds / "06.txt", (T0 + 60 * 7, T0 + 60 * 7))
    await asyncio.sleep(0.5)
    assert heard.batches == []


@pytest.mark.parametrize(("redated", "span", "expected"), [
    ({"/feed.atom", "/tags/x.rss", "/entries/a", "/"}, None,
     {"/feed.atom", "/tags/x.rss", "/entries/a", "/"}),
    ({"/archive/2/1"}, ArchiveSpan(4, 1, "s", 2), {f"/archive/2/1.{e}" for e in FORMATS}),
    ({"/archive/2/9"}, ArchiveSpan(4, 1, "s", 2), set()),  # beyond the span: not served
    ({"/archive/3/1"}, ArchiveSpan(4, 1, "s", 2), set()),  # another page size: not served
    ({"/archive/after/1", "/archive/"}, ArchiveSpan(4, 1, "s", 2),
     {f"/archive/2/{n}.{e}" for n in (1, 2, 3) for e in FORMATS}),
    ({"/archive/after/1"}, None, set()),
])
def test_changed_documents(redated: set[str], span: ArchiveSpan | None,
                           expected: set[str]) -> None:
    assert changed_documents(redated, span) == expected

"""awatch on the seeds folder → batches of changed seed paths.

The watcher is a fast path. Whenever watching (re)starts — the first time, after an error, after
the folder came back — it first asks for a full rescan, since events may have been missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from watchfiles import Change, awatch

from feedsvc.ingest.source import is_seed_name

log = logging.getLogger("feedsvc")

#: How often, at most, a quiet watcher checks that the folder is still there.
FOLDER_CHECK_MS = 1_000
#: What watchfiles (its Rust side) raises for an event on a file name that is not UTF-8.
_UNDECODABLE = "Unable to decode path"


@dataclass(frozen=True, slots=True)
class Batch:
    """Seed paths that changed, or `rescan`: reconcile the whole folder with what is published.
    `watching` says whether the watch is live (False while it is down and being retried)."""

    paths: frozenset[Path] = frozenset()
    rescan: bool = False
    watching: bool = True

    def merge(self, other: Batch) -> Batch:
        """Two batches applied as one: what a burst needs to keep renders few."""
        return Batch(self.paths | other.paths, self.rescan or other.rescan, other.watching)


def _seed_filter(change: Change, path: str) -> bool:
    return is_seed_name(Path(path).name)


async def watch_seeds(folder: Path, *, step_ms: int, debounce_ms: int,
                      stop_event: asyncio.Event, retry_s: float = 1.0) -> AsyncIterator[Batch]:
    """Yield batches until `stop_event` is set. A batch is yielded one quiet `step_ms` after its
    first change, or after `debounce_ms` if changes keep coming (bursts are merged further
    downstream while a render runs). Never raises: a lost folder or a failing watch
    is logged and retried, with a rescan at each try (`watching=False`), and a rescan once
    watching works again."""
    folder_was_lost = False
    while not stop_event.is_set():
        if not folder.is_dir():
            if not folder_was_lost:
                log.error("seeds folder %s is missing; serving the last published set and "
                          "retrying every %.0f s", folder, retry_s)
                folder_was_lost = True
            yield Batch(rescan=True, watching=False)
            await _sleep_or_stop(stop_event, retry_s)
            continue
        if folder_was_lost:
            log.info("seeds folder %s is back", folder)
            folder_was_lost = False
        try:
            announced = False
            async for changes in awatch(
                folder,
                watch_filter=_seed_filter,
                # watchfiles looks at new events once per step and yields after one quiet
                # step: the drop-to-served latency is one to two steps.
                step=step_ms,
                debounce=max(debounce_ms, step_ms),
                stop_event=stop_event,
                rust_timeout=FOLDER_CHECK_MS,
                yield_on_timeout=True,
                recursive=False,
            ):
                if not announced:
                    # The watch is live now: whatever happened before it is caught by a rescan.
                    announced = True
                    yield Batch(rescan=True)
                paths = frozenset(folder / Path(path).name for _, path in changes)
                if paths:
                    yield Batch(paths=paths)
                if not folder.is_dir():
                    break  # inotify goes quiet on a deleted folder; start over and wait for it
        except Exception as e:  # watchfiles raises plain OSError/RuntimeError; never fatal here
            if _undecodable(e):
                # watchfiles cannot hand out a name that is not UTF-8 and gives up on the whole
                # batch. Not a fault of the watch: a rescan (which lists such names and
                # rejects them) covers that batch, and watching starts over at once.
                log.debug("watching %s: %s; rescanning", folder, e)
                yield Batch(rescan=True)
                continue
            log.error("watching %s failed (%s); retrying in %.0f s", folder, e, retry_s)
            yield Batch(rescan=True, watching=False)
            await _sleep_or_stop(stop_event, retry_s)


def _undecodable(error: BaseException) -> bool:
    """Whether watchfiles failed on a name that is not UTF-8 (awatch wraps the error of its
    thread in an exception group)."""
    if _UNDECODABLE in str(error):
        return True
    if isinstance(error, BaseExceptionGroup):
        return any(_undecodable(inner) for inner in error.exceptions)
    return error.__cause__ is not None and _undecodable(error.__cause__)


async def _sleep_or_stop(stop_event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop_event.wait(), timeout=seconds)

"""Documents made from the state on request (the long tail's entry pages, the archive pages):
a read-only connection of their own, opened when first needed and used only on a thread of
their own, never on the event loop nor on the pipeline's thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from feedsvc.config import Config
from feedsvc.model import FeedInfo
from feedsvc.publish.ids import parse_options
from feedsvc.state.store import Store

T = TypeVar("T")


class StateReader:
    """`start` once the feed's info is known; `close` at shutdown (or after a synchronous
    use, as `build` makes). A failed read closes the connection (`_close_store`): the next
    request opens it again, following a state file written back or repaired meanwhile."""

    def __init__(self, config: Config, thread_name: str) -> None:
        self.config = config
        self.options = parse_options(config)
        self.info: FeedInfo | None = None
        self._thread_name = thread_name
        self._executor: ThreadPoolExecutor | None = None
        self._store: Store | None = None

    def start(self, info: FeedInfo) -> None:
        self.info = info
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._thread_name)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.submit(self._close_store).result()
            self._executor.shutdown(wait=True)
            self._executor = None
        else:
            self._close_store()

    async def reconfigure(self, config: Config, info: FeedInfo) -> None:
        """A reloaded config (SIGHUP) and the feed's info made with it: applied on the
        reader's thread, between two renders, so no page is made of both and none made with
        the old one stays cached."""
        if self._executor is None:
            self.reconfigure_now(config, info)
        else:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, self.reconfigure_now, config, info)

    def reconfigure_now(self, config: Config, info: FeedInfo) -> None:
        """`reconfigure`, on the reader's thread or before `start`. The state's path is the
        same (a reload never changes paths): the connection stays."""
        self.config = config
        self.options = parse_options(config)
        self.info = info
        self._forget()

    def _forget(self) -> None:
        """Drop whatever was rendered with the previous config (subclasses' caches)."""

    async def _on_thread(self, fn: Callable[..., T | None], *args: object) -> T | None:
        """`fn(*args)` on the reader's thread; None before `start` or after `close`."""
        if self._executor is None:
            return None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _state(self) -> Store:
        """The read-only connection, opened now if it is not (raises StoreError)."""
        if self._store is None:
            self._store = Store.open_for_reading(self.config.paths.state)
        return self._store

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

"""`[server] workers = N`: N processes serve one port (SO_REUSEPORT), one pipeline.

The first process (the leader) watches the seeds, writes the state and renders; after each
change it sends the new snapshot, already rendered and compressed, to the N-1 followers over a
pipe. Followers only serve: no watcher, no writer, no rendering of feeds. Pages of old entries
(the long tail) each process reads from the state itself, read-only.
"""

from __future__ import annotations

import asyncio
import copyreg
import logging
import pickle
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import MappingProxyType
from typing import Any

from feedsvc.config import Config
from feedsvc.errors import FeedsvcError
from feedsvc.model import FeedInfo, Snapshot
from feedsvc.serve.health import HealthStatus

log = logging.getLogger("feedsvc")


def read_only(mapping: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(mapping)


# Snapshots are immutable through read-only mappings; ship them as plain dicts.
copyreg.pickle(MappingProxyType, lambda proxy: (read_only, (dict(proxy),)))


@dataclass(frozen=True, slots=True)
class SnapshotMessage:
    """What the leader sends its followers after each change: all a follower serves."""

    snapshot: Snapshot
    status: HealthStatus
    info: FeedInfo  # for the long tail's pages, which each process reads itself
    #: The leader's config in force: changed by a reload (SIGHUP); None from a test's leader.
    config: Config | None = None


class MessageError(FeedsvcError):
    """What came from the leader is not a SnapshotMessage."""


class Followers:
    """The leader's side: sends each new snapshot (once, whatever the number of followers)."""

    def __init__(self, connections: Sequence[Connection]) -> None:
        self._connections = list(connections)
        self._executor = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedsvc-send")
                          if self._connections else None)
        self._last: tuple[Snapshot, HealthStatus, Config | None] | None = None
        #: Sent with each message: set once a reload changed it (None: the one they started
        #: with, which they have).
        self.config: Config | None = None

    async def send(self, message: SnapshotMessage) -> None:
        if self._executor is None:
            return
        # The info and config change only with a reload, which makes a new snapshot too.
        fingerprint = (message.snapshot, message.status, message.config)
        if fingerprint == self._last:
            return  # nothing new for them
        self._last = fingerprint
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._send_all, data)

    def _send_all(self, message: bytes) -> None:
        for connection in list(self._connections):
            try:
                connection.send_bytes(message)
            except OSError as e:
                log.error("a worker process is gone (%s); %d left", e, len(self._connections) - 1)
                self._connections.remove(connection)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        for connection in self._connections:
            connection.close()


async def receive(leader: Connection) -> SnapshotMessage | None:
    """The follower's side: the next message, or None when the leader is gone. The read runs
    in a thread: a large snapshot never blocks the event loop."""
    loop = asyncio.get_running_loop()
    try:
        data = await loop.run_in_executor(None, leader.recv_bytes)
    except (EOFError, OSError):
        return None
    return unpack(data)


def unpack(data: bytes) -> SnapshotMessage:
    """A message as the leader pickled it; anything else is a MessageError now, not an
    AttributeError at the first request that reads it."""
    try:
        message = pickle.loads(data)
    except Exception as e:
        raise MessageError(f"unreadable message from the leader: {type(e).__name__}: {e}"
                           ) from e
    if not isinstance(message, SnapshotMessage):
        raise MessageError(f"the leader sent a {type(message).__name__}, "
                           "not a SnapshotMessage")
    return message

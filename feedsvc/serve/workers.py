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
from multiprocessing.connection import Connection
from types import MappingProxyType
from typing import Any

log = logging.getLogger("feedsvc")

def read_only(mapping: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(mapping)


# Snapshots are immutable through read-only mappings; ship them as plain dicts.
copyreg.pickle(MappingProxyType, lambda proxy: (read_only, (dict(proxy),)))


class Followers:
    """The leader's side: sends each new snapshot (once, whatever the number of followers)."""

    def __init__(self, connections: Sequence[Connection]) -> None:
        self._connections = list(connections)
        self._executor = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedsvc-send")
                          if self._connections else None)
        self._last: tuple[object, ...] | None = None

    async def send(self, snapshot: object, status: object, info: object) -> None:
        if self._executor is None:
            return
        fingerprint = (snapshot, *vars(status).values())
        if fingerprint == self._last:
            return  # nothing new for them
        self._last = fingerprint
        message = pickle.dumps((snapshot, status, info), protocol=pickle.HIGHEST_PROTOCOL)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._send_all, message)

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


async def receive(leader: Connection) -> tuple[Any, Any, Any] | None:
    """The follower's side: the next (snapshot, status, info), or None when the leader is
    gone. The read runs in a thread: a large snapshot never blocks the event loop."""
    loop = asyncio.get_running_loop()
    try:
        message = await loop.run_in_executor(None, leader.recv_bytes)
    except (EOFError, OSError):
        return None
    return pickle.loads(message)

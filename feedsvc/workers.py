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
import multiprocessing
import pickle
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from types import MappingProxyType
from typing import Any

from feedsvc.config import Config

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


def serve_with_workers(config: Config, serve_app: Any) -> None:
    """Start the followers, then serve as the leader until stopped; then stop them."""
    from feedsvc.server import make_app

    context = multiprocessing.get_context("spawn")  # no fork of a running event loop
    processes, pipes = [], []
    for number in range(1, config.server.workers):
        receiving, sending = context.Pipe(duplex=False)
        process = context.Process(target=_follower_main, args=(config, receiving, number),
                                  name=f"feedsvc-worker-{number}", daemon=True)
        process.start()
        receiving.close()
        processes.append(process)
        pipes.append(sending)
    try:
        serve_app(make_app(config, followers=pipes), reuse_port=True)
    finally:
        for pipe in pipes:
            pipe.close()  # followers see EOF and stop
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)


def _follower_main(config: Config, leader: Connection, number: int) -> None:
    from feedsvc.cli import new_event_loop, setup_logging
    from feedsvc.connections import run_app
    from feedsvc.server import make_follower_app

    setup_logging(verbose=False)
    access_log = logging.getLogger("aiohttp.access") if config.server.access_log else None
    run_app(make_follower_app(config, leader), config.server, loop=new_event_loop(),
            reuse_port=True, access_log=access_log)

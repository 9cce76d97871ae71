"""Connections bounded by what the process can hold: a cap below the file descriptor limit that
sheds idle connections first, a time limit on request heads (slowloris), accept errors logged
quietly, and the runner that serves an app with all three.

Every connection costs a descriptor, and so does every seed read and the state. Without a cap,
a thousand idle sockets take the last descriptor: accept() then fails in a tight loop, seeds
cannot be opened, SQLite cannot open its journal. The cap keeps a reserve for them; reaching it
closes the connections that are costing only a descriptor (idle keep-alive, or a request head
not complete yet), oldest first, then those whose reader has taken nothing of its response
for a second or more, longest-stalled first, so readers who send a request get in.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import select
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_runner import GracefulExit
from aiohttp.web_server import Server

from feedsvc.config import ServerConfig
from feedsvc.serve.activation import listen_backlog
from feedsvc.serve.metrics import METRICS

log = logging.getLogger("feedsvc")

#: Queue of connections the kernel completes before we accept them (listen backlog); asyncio
#: also accepts up to this many at each turn of the loop.
BACKLOG = 64
#: Descriptors kept out of the connections' reach: seeds being read, SQLite (database, WAL,
#: shared memory, the long tail's readers), the watcher, thread and worker pipes, the listening
#: socket, logs (a process at rest holds ~15). Under a flood, connections go over the cap for a
#: moment by up to three loop turns of accepts: those accepted but not counted yet, and those
#: shed but not closed yet (asyncio closes a socket a turn or two after close()).
RESERVE_FDS = 64 + 3 * BACKLOG
#: The fewest connections a cap allows, whatever the limit.
MIN_CONNECTIONS = 8
#: The descriptor limit serve raises its soft limit to, when the hard limit allows.
WANTED_FDS = 65536
#: aiohttp's default, kept: how long an idle keep-alive connection stays open.
KEEPALIVE_TIMEOUT_S = 75.0
#: How long a connection's reader must have taken nothing of its response (the kernel sent it
#: nothing) before a full server may shed it: a reader on a slow link that waits a moment is not
#: cut for a blip, but a thousand readers that stopped reading lock no one out.
STALL_GRACE_S = 1.0
#: On stop, how long connections accepted just before have to send their request (a
#: client's request follows its connection by one round trip: a fraction of this on any
#: network a reader is on).
STOP_GRACE_S = 0.25
#: At most one log line per this many seconds for each kind of connection trouble.
LOG_EVERY_S = 5.0

#: struct linger {l_onoff = 1, l_linger = 0}: close() resets the connection.
_ZERO_LINGER = struct.pack("ii", 1, 0)
#: accept() failures that mean "out of resources", not a bug.
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def raise_fd_limit(wanted: int = WANTED_FDS) -> int:
    """Raise the soft descriptor limit towards `wanted` (never above the hard limit); return
    the soft limit in force. A unit's LimitNOFILE sets both; a shell's `ulimit -n` often
    leaves the soft one at 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return WANTED_FDS * 16 if soft == resource.RLIM_INFINITY else soft


def connection_cap(configured: int, fd_limit: int) -> int:
    """The most connections this process holds: `[server] max_connections` when set (0: no),
    never more than the descriptor limit less the reserve."""
    reserve = max(RESERVE_FDS, fd_limit // 8)
    allowed = max(MIN_CONNECTIONS, fd_limit - reserve)
    return allowed if configured == 0 else min(configured, allowed)


class RateLimitedLog:
    """One warning per `every` seconds at most, saying how many events it stands for."""

    def __init__(self, message: str, every: float = LOG_EVERY_S) -> None:
        self.message = message
        self.every = every
        self._count = 0
        self._last = -every

    def note(self, detail: object = "") -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._last >= self.every:
            log.warning("%s%s (%d time%s since the last such line)", self.message,
                        f": {detail}" if detail else "", self._count,
                        "" if self._count == 1 else "s")
            self._count, self._last = 0, now


@dataclass(frozen=True)
class Limits:
    max_connections: int
    header_timeout_s: float
    send_timeout_s: float


class GuardedHandler(RequestHandler):
    """aiohttp's connection protocol, plus two deadlines it lacks.

    - A request head: from the connection's start, and from the first byte of each later
      request, a complete head must arrive within `header_timeout_s` (else a client sending a
      byte a second holds the connection for the whole keep-alive time).
    - Sending: while the transport's buffer is full (writing paused), the reader must make
      room within `send_timeout_s` (nginx's `send_timeout`). Whatever the size of the body:
      a reader that stops reading would otherwise hold a busy connection, which the cap never
      sheds, for as long as it likes."""

    __slots__ = ("_head_timeout", "_head_timer", "_partial", "_paused_at", "_send_timeout",
                 "_send_timer")

    def __init__(self, manager: Server, *, header_timeout_s: float, send_timeout_s: float,
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = header_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None
        self._partial = False  # part of a request head is here, not all of it
        self._send_timeout = send_timeout_s
        self._send_timer: asyncio.TimerHandle | None = None
        self._paused_at: float | None = None  # loop time writing was paused, while it is

    @property
    def shed_rank(self) -> int | None:
        """Which connections a full server closes first: 0, idle (keep-alive, or connected
        and silent); 1, a request head on its way; 2, a response still on its way to its
        reader, closed only once that reader has stopped taking it (see stalled_since); None
        (never), a request being handled. A connection whose handler is done is not idle while
        the end of its response waits in the transport's buffer (up to 64 KiB that never
        paused writing): close() would wait for a stalled reader for ever, holding the
        descriptor after the cap has stopped counting it."""
        transport = self.transport
        if transport is not None and transport.get_write_buffer_size():
            return 2
        if self._request_in_progress or self._messages:
            return None
        return 1 if self._partial else 0

    def stalled_since(self, now: float) -> float | None:
        """Since when this connection's reader has taken nothing (loop time), when that is at
        least STALL_GRACE_S before `now`; else None.

        Paused is not stalled: writing resumes only once the transport's buffer is down to its
        low-water mark, so a reader draining a 256 KiB piece over a slow link stays paused for
        seconds while it makes progress. The kernel knows when it last sent the reader new
        data (it sends only as the reader makes room): asked here, when a full server looks
        for a connection to shed, so nothing is paid per request."""
        transport = self.transport
        if transport is None or not transport.get_write_buffer_size():
            return None  # nothing waits on the reader
        quiet = _seconds_since_data_sent(transport)
        if quiet is None:  # not known here (not Linux TCP): paused for that long will do
            paused_at = self._paused_at
            return paused_at if paused_at is not None and now - paused_at >= STALL_GRACE_S \
                else None
        return now - quiet if quiet >= STALL_GRACE_S else None

    def force_close(self) -> None:
        # aiohttp closes with transport.close(), which waits until the reader has taken what
        # is buffered: a reader that stopped reading would hold the descriptor for ever (the
        # keep-alive timeout, an error, shutdown all come here). Such a reader is reset.
        transport = self.transport
        if transport is not None and transport.get_write_buffer_size():
            self.shed_stalled()
        super().force_close()

    def shed_stalled(self) -> None:
        """Drop a connection whose reader takes nothing: abort(), not close(), which would wait
        for the reader to take what is buffered (the writer waiting on it gets a
        ConnectionResetError, which aiohttp takes as the client going away). With a zero
        linger the kernel resets the connection and frees what it still holds for the reader,
        instead of keeping it for minutes for a reader who stopped reading."""
        self._stop_send_timer()
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, ValueError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ZERO_LINGER)
        self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Bytes already waiting in the socket: a reader who sent a request at once. Its
        # bytes are only read a loop turn later; meanwhile a flood of silent connections
        # must not make it look idle.
        self._partial = _readable(transport)
        super().connection_made(transport)
        if self.transport is not None:  # the cap may have closed it at once
            self._arm()

    def data_received(self, data: bytes) -> None:
        RequestHandler.data_received(self, data)  # (not super(): once per request)
        if self._messages:  # a whole head arrived
            self._partial = False
            if self._head_timer is not None:  # (most requests: none armed, no call)
                self._disarm()
        else:
            self._partial = True
            if (self._head_timer is None and not self._request_in_progress
                    and not self._force_close):
                self._arm()  # first bytes of a new head on a kept-alive connection

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._stop_send_timer()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._paused_at = self._loop.time()
        if self._send_timer is None:
            self._send_timer = self._loop.call_later(self._send_timeout, self._send_expired)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._paused_at = None
        self._stop_send_timer()

    def _stop_send_timer(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_expired(self) -> None:
        self._send_timer = None
        if self.writing_paused and self.transport is not None:
            log.debug("a reader made no room for %.0f s; connection dropped", self._send_timeout)
            self.shed_stalled()  # reset, as the cap drops a stalled reader

    def _arm(self) -> None:
        self._head_timer = self._loop.call_later(self._head_timeout, self._head_expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.shed_rank in (0, 1) and self.transport is not None:  # no request handled
            log.debug("request head not complete after %.0f s; connection closed",
                      self._head_timeout)
            self.force_close()


class GuardedServer(Server):
    """aiohttp's protocol factory, holding at most `max_connections` connections: one more
    closes the oldest idle one, else the oldest whose request head is still arriving, else the
    one whose reader has taken nothing for longest (at least STALL_GRACE_S); the newcomer
    itself only when every other connection is making progress."""

    def __init__(self, handler: Any, *, limits: Limits,
                 settings: ServerSettings | None = None, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.limits = limits
        self._settings = settings
        # Open connections in arrival order (dicts keep it): oldest first when shedding.
        self._open: dict[GuardedHandler, None] = {}
        self._shed_log = self._shed_log_for(limits)

    @staticmethod
    def _shed_log_for(limits: Limits) -> RateLimitedLog:
        return RateLimitedLog(f"connection limit ({limits.max_connections}) reached; "
                              "closing idle or stalled connections")

    def __call__(self) -> RequestHandler:
        if self._settings is not None and self._settings.changed():
            # A reload changed the limits or the access log: from this connection on.
            self.limits = self._settings.limits
            self._shed_log = self._shed_log_for(self.limits)
            self._kwargs.update(self._settings.logging)
        return GuardedHandler(self, loop=self._loop,
                              header_timeout_s=self.limits.header_timeout_s,
                              send_timeout_s=self.limits.send_timeout_s, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        assert isinstance(handler, GuardedHandler)
        self._open[handler] = None
        if len(self._open) > self.limits.max_connections:
            self._shed(len(self._open) - self.limits.max_connections, handler)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self._open.pop(handler, None)  # type: ignore[call-overload]
        super().connection_lost(handler, exc)

    def _shed(self, count: int, newcomer: GuardedHandler) -> None:
        closed = 0
        for rank in (0, 1):  # idle ones first, then heads still arriving; oldest first
            for handler in list(self._open):
                if closed == count:
                    break
                if handler is newcomer:
                    continue  # the last resort, below
                if handler._force_close:  # closing already (a timeout): its slot frees itself
                    del self._open[handler]
                    closed += 1
                elif handler.shed_rank == rank:
                    del self._open[handler]
                    handler.force_close()
                    closed += 1
        if closed < count:
            closed += self._shed_stalled(count - closed)
        if closed < count and newcomer in self._open:
            # Every other connection is making progress: the newcomer is the one refused. On
            # the next loop turn: its start() must begin before its connection is lost
            # (aiohttp asserts it), and then ends at once.
            del self._open[newcomer]
            self._loop.call_soon(newcomer.force_close)
            closed += 1
        if closed:
            self._shed_log.note()

    def _shed_stalled(self, count: int) -> int:
        """Shed up to `count` connections whose response has waited on its reader for at
        least STALL_GRACE_S, longest-stalled first: without this, readers that ask for a body
        larger than the socket buffers and never read held every slot until send_timeout_s,
        and every other request was refused. Only runs when the cap is reached and nothing
        idle is left, so the hot path pays nothing."""
        now = self._loop.time()
        stalled = sorted((since, n, handler) for n, handler in enumerate(self._open)
                         if handler.shed_rank == 2
                         and (since := handler.stalled_since(now)) is not None)
        for _, _, handler in stalled[:count]:
            del self._open[handler]
            handler.shed_stalled()
        return min(count, len(stalled))


def _readable(transport: asyncio.BaseTransport) -> bool:
    """Whether the connection's socket has bytes waiting (poll, not select: descriptors may
    be above 1024)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    poller = select.poll()
    try:
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return False


#: struct tcp_info (linux/tcp.h): 8 one-byte fields, 9 u32s (tcpi_rto … tcpi_fackets), then
#: tcpi_last_data_sent, the milliseconds since the kernel last sent new data on the connection.
_TCP_INFO_BYTES = 104
_LAST_DATA_SENT_OFFSET = 44


def _seconds_since_data_sent(transport: asyncio.BaseTransport) -> float | None:
    """How long ago the kernel last sent new data on this TCP connection (a reader with a
    closed window gets none), or None where TCP_INFO cannot tell."""
    sock = transport.get_extra_info("socket")
    if sock is None or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    except (OSError, ValueError):
        return None
    if len(info) < _LAST_DATA_SENT_OFFSET + 4:
        return None
    return int.from_bytes(info[_LAST_DATA_SENT_OFFSET:_LAST_DATA_SENT_OFFSET + 4],
                          sys.byteorder) / 1000


class ServerSettings:
    """The server's limits and request logging as the config in force says (`[server]
    max_connections`, `header_timeout_s`, `send_timeout_s`, `access_log`): a reload changes
    them for the connections that follow. Asked at each new connection; worked out again only
    when the config was replaced."""

    def __init__(self, app: web.Application, config: Callable[[], ServerConfig],
                 fd_limit: int) -> None:
        self._app, self._config, self._fd_limit = app, config, fd_limit
        self._seen = config()
        self.limits, self.logging = self._work_out(self._seen)

    def changed(self) -> bool:
        """Whether the config changed the limits or the logging since last asked."""
        server = self._config()
        if server is self._seen:
            return False
        self._seen = server
        self.limits, self.logging = self._work_out(server)
        return True

    def _work_out(self, server: ServerConfig) -> tuple[Limits, dict[str, Any]]:
        access_log = logging.getLogger("aiohttp.access") if server.access_log else None
        return (Limits(connection_cap(server.max_connections, self._fd_limit),
                       server.header_timeout_s, server.send_timeout_s),
                request_logging(self._app, access_log))


class GuardedRunner(web.AppRunner):
    """web.AppRunner whose server is a GuardedServer."""

    def __init__(self, app: web.Application, limits: Limits,
                 settings: ServerSettings | None = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits
        self._settings = settings

    async def cleanup(self) -> None:
        """Stop accepting, then give the connections accepted just before a moment for their
        request to arrive: aiohttp yields once before closing the connections that have no
        request under way, and one whose request was still on its way was closed unanswered
        (its client saw it reset: 1 of ~20,000 requests across a restart on the socket unit's
        socket). Requests under way are then finished, as aiohttp does."""
        for site in list(self.sites):
            await site.stop()
        if self.server is not None:
            await asyncio.sleep(STOP_GRACE_S)
        await super().cleanup()

    async def _make_server(self) -> Server:
        plain = await super()._make_server()  # runs the app's startup
        return GuardedServer(plain.request_handler, limits=self._limits,
                             settings=self._settings,
                             request_factory=plain.request_factory,
                             handler_cancellation=plain.handler_cancellation,
                             loop=asyncio.get_running_loop(), **plain._kwargs)


class AcceptErrors:
    """The loop's exception handler: "out of descriptors" on accept() is one rate-limited
    warning with a count, not a traceback per attempt (asyncio retries accept every second;
    the journal must not fill up)."""

    def __init__(self) -> None:
        self._log = RateLimitedLog("cannot accept connections: out of file descriptors or "
                                   "memory; retrying")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, OSError) and error.errno in _RESOURCE_ERRNOS:
            self._log.note(error.strerror)
            return
        loop.default_exception_handler(context)


def run_app(app: web.Application, server: Callable[[], ServerConfig], *,
            loop: asyncio.AbstractEventLoop, reuse_port: bool = False,
            on_listening: Callable[[Limits], None] | None = None,
            sockets: Sequence[socket.socket] = ()) -> None:
    """Serve `app` on `server().host`:`server().port` until SIGTERM or SIGINT, as web.run_app
    does, with connections bounded (GuardedRunner) and accept errors rate-limited; on
    `sockets` instead when given (listening already: socket activation, see activation.py).
    OSError when the port cannot be bound; whatever the app's startup raises. `server` gives
    the `[server]` settings in force: a reload changes the limits and the access log of the
    connections that follow."""
    settings = ServerSettings(app, server, raise_fd_limit())
    limits = settings.limits

    async def main() -> None:
        runner = GuardedRunner(app, limits, settings, handle_signals=True,
                               keepalive_timeout=KEEPALIVE_TIMEOUT_S, **settings.logging)
        await runner.setup()
        try:
            if sockets:
                await _start_on(runner, sockets)
            else:
                site = web.TCPSite(runner, server().host, server().port,
                                   reuse_port=reuse_port, backlog=BACKLOG)
                await site.start()
            if on_listening is not None:
                on_listening(limits)
            while True:
                await asyncio.sleep(3600)
        finally:
            await runner.cleanup()

    asyncio.set_event_loop(loop)
    loop.set_exception_handler(AcceptErrors())
    task = loop.create_task(main())
    try:
        loop.run_until_complete(task)
    except (GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not task.done():  # stopped by a signal: let the cleanup (the pipeline) run
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(task)
        finally:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


def request_logging(app: web.Application, access_log: logging.Logger | None
                    ) -> dict[str, Any]:
    """The runner's access-log arguments: with `[server] metrics`, a logger that counts each
    request (serve/metrics.py) and logs it too when `access_log` is given."""
    metrics = app.get(METRICS)
    return {"access_log": access_log} if metrics is None else metrics.access_logger(access_log)


async def _start_on(runner: web.AppRunner, sockets: Sequence[socket.socket]) -> None:
    """Serve on sockets that listen already. The loop listens on each again with BACKLOG
    (also how many it accepts per turn); each then gets its own backlog back (the socket unit's
    Backlog=), which holds the connections that arrive while no process accepts."""
    for sock in sockets:
        backlog = listen_backlog(sock, BACKLOG)
        await web.SockSite(runner, sock, backlog=BACKLOG).start()
        if backlog != BACKLOG:
            sock.listen(backlog)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

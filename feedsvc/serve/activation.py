"""Socket activation: the listening sockets systemd (or any supervisor speaking its protocol)
hands over, instead of sockets `serve` binds itself.

The protocol (sd_listen_fds(3)): the sockets are file descriptors 3, 4, … (SD_LISTEN_FDS_START),
`$LISTEN_FDS` says how many, and `$LISTEN_PID` must be our own pid, else they were meant for
another process (a parent that did not unset them) and are not ours. The variables are unset
once read, so no child (a worker, a hook) takes them for its own. With a socket unit the socket
outlives the service: during `systemctl restart feedsvc` the kernel queues new connections on
it (up to its backlog) and the next process accepts them, so none is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys

from feedsvc.errors import FeedsvcError

#: The first inherited descriptor (sd-daemon.h SD_LISTEN_FDS_START).
SD_LISTEN_FDS_START = 3
#: The variables of the protocol, unset once read.
_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
#: A sanity bound: systemd passes a handful (one per ListenStream=).
_MAX_FDS = 64
#: struct tcp_info (linux/tcp.h): for a listening socket, tcpi_sacked is the backlog it was
#: given (sk_max_ack_backlog, see tcp_get_info in net/ipv4/tcp.c); a u32 after 8 one-byte
#: fields and 5 u32s.
_TCPI_SACKED_OFFSET = 28


class ActivationError(FeedsvcError):
    """$LISTEN_FDS / $LISTEN_PID are set for us but do not describe listening stream sockets."""


def inherited_sockets(environ: dict[str, str] | None = None) -> list[socket.socket]:
    """The listening sockets passed to this process (sd_listen_fds(3) with unset_environment
    true), in order; [] when none were passed to this process. ActivationError when they were
    but are not usable: a bad count, a descriptor that is not a listening stream socket."""
    env: dict[str, str] | os._Environ[str] = os.environ if environ is None else environ
    pid, count = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
    for name in _VARIABLES:
        env.pop(name, None)
    if not pid or not count:
        return []
    try:
        meant_for = int(pid)
    except ValueError:
        raise ActivationError(f"LISTEN_PID={pid!r} is not a process id") from None
    if meant_for != os.getpid():
        return []  # another process's sockets, leaked to us through the environment
    try:
        fds = int(count)
    except ValueError:
        raise ActivationError(f"LISTEN_FDS={count!r} is not a number") from None
    if not 0 <= fds <= _MAX_FDS:
        raise ActivationError(f"LISTEN_FDS={fds}: expected 0 to {_MAX_FDS} sockets")
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + fds):
        sockets.append(_listening_socket(fd))
    return sockets


def _listening_socket(fd: int) -> socket.socket:
    try:
        # sd_listen_fds sets FD_CLOEXEC on them: our children get them only when handed over.
        flags = fcntl.fcntl(fd, fcntl.F_GETFD)
        fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
        sock = socket.socket(fileno=fd)  # family and type read from the descriptor
    except OSError as e:
        raise ActivationError(f"inherited descriptor {fd} is not a socket: "
                              f"{e.strerror or e}") from e
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        listening = 0
    if sock.type != socket.SOCK_STREAM or not listening:
        sock.detach()  # not ours to close
        raise ActivationError(f"inherited descriptor {fd} is not a listening stream socket "
                              "(the socket unit needs ListenStream=)")
    return sock


def listen_backlog(sock: socket.socket, default: int) -> int:
    """The backlog `sock` listens with, when the kernel tells (Linux TCP), else `default`.

    asyncio and uvloop call listen() again on a socket they are given, with their own backlog:
    the caller restores this one afterwards, so the socket unit's Backlog= stays in force for
    the connections that queue while no process accepts (a restart)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not sys.platform.startswith(
            "linux"):
        return default
    with contextlib.suppress(OSError):
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        if len(info) >= _TCPI_SACKED_OFFSET + 4:
            backlog = int.from_bytes(info[_TCPI_SACKED_OFFSET:_TCPI_SACKED_OFFSET + 4],
                                     sys.byteorder)
            if backlog > 0:
                return backlog
    return default


def describe(sock: socket.socket) -> str:
    """The socket's address as a URL-ish string for the log."""
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{address or '(unnamed)'}"
    host, port = address[0], address[1]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

"""systemd's notification protocol (sd_notify(3)): what `Type=notify` services tell the
service manager, as one datagram per message to the AF_UNIX socket named by $NOTIFY_SOCKET.

The message is newline-separated VAR=value assignments (READY=1, STATUS=…, WATCHDOG=1,
RELOADING=1 with MONOTONIC_USEC=…, STOPPING=1). $NOTIFY_SOCKET is a file system path, or an
abstract socket when it starts with "@" (the "@" stands for the leading NUL byte). Without
$NOTIFY_SOCKET nothing is sent at all (not started by systemd, or not as Type=notify).

Sending never raises and never blocks: the socket is non-blocking, and a failure is logged
once (systemd gone, a full queue, a bad address), then the next messages are tried quietly.

The watchdog: systemd sets $WATCHDOG_USEC (and $WATCHDOG_PID, the process it means) when the
unit has WatchdogSec=; the service must send WATCHDOG=1 more often than that, and sd_watchdog_
enabled(3) advises every half of it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Mapping

from feedsvc.logtext import escape

log = logging.getLogger("feedsvc")

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


def message(*assignments: tuple[str, object]) -> bytes:
    """The datagram for `(name, value)` pairs, in order: "READY=1\\nSTATUS=…". A value is one
    line: newlines (which would start another assignment) become spaces."""
    lines = []
    for name, value in assignments:
        if not name or not name.isascii() or "=" in name or not name.replace("_", "").isalnum():
            raise ValueError(f"not a notification variable name: {name!r}")
        text = str(value).replace("\r", " ").replace("\n", " ")
        lines.append(f"{name}={text}")
    return "\n".join(lines).encode("utf-8")


def ready() -> bytes:
    return message(("READY", 1))


def stopping() -> bytes:
    return message(("STOPPING", 1))


def watchdog() -> bytes:
    return message(("WATCHDOG", 1))


def reloading(monotonic_usec: int) -> bytes:
    """RELOADING=1 with the CLOCK_MONOTONIC time the reload started (systemd ≥ 253 requires
    MONOTONIC_USEC with it for Type=notify-reload; earlier ones ignore it)."""
    return message(("RELOADING", 1), ("MONOTONIC_USEC", monotonic_usec))


def status(text: str) -> bytes:
    """STATUS=: the free-form line `systemctl status` shows."""
    return message(("STATUS", text))


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def socket_address(value: str | None) -> str | bytes | None:
    """The address $NOTIFY_SOCKET names: a path (absolute, as systemd sets it), an abstract
    name ("@name": NUL + name), or None when unset, empty or not one of those (a vsock
    address "vsock:…", which only a VM manager sets, is not supported)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode("utf-8", "surrogateescape")
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between two WATCHDOG=1: half of $WATCHDOG_USEC (sd_watchdog_enabled(3)), when
    it is set, positive, and $WATCHDOG_PID is unset or `pid`; else None."""
    usec_text = environ.get(WATCHDOG_USEC, "")
    if not usec_text.isdigit() or int(usec_text) <= 0:
        return None
    pid_text = environ.get(WATCHDOG_PID)
    if pid_text is not None and (not pid_text.isdigit() or int(pid_text) != pid):
        return None
    return int(usec_text) / 2 / 1_000_000


class Notifier:
    """Sends messages to the service manager; does nothing when $NOTIFY_SOCKET is unset."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        raw = environ.get(NOTIFY_SOCKET)
        self.address = socket_address(raw)
        self._socket: socket.socket | None = None
        self._failed = False  # logged once
        if raw and self.address is None:
            log.warning("$%s=%s is not a socket path nor an abstract name; systemd is not "
                        "told of readiness", NOTIFY_SOCKET, escape(raw))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, data: bytes) -> bool:
        """One datagram; False when it could not be sent (logged the first time)."""
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX,
                                             socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)  # a full queue must not block the loop
            self._socket.sendto(data, self.address)
        except OSError as e:
            if not self._failed:
                self._failed = True
                log.warning("cannot notify systemd through $%s (%s); later failures are not "
                            "logged", NOTIFY_SOCKET, e.strerror or e)
            self.close()  # a fresh socket for the next message
            return False
        return True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


_early_hangups: list[int] = []


def catch_hangups() -> None:
    """From the start of `serve`, before the slow imports: a SIGHUP is remembered until the
    event loop handles it (`take_early_hangups`), instead of its default action, death."""
    signal.signal(signal.SIGHUP, lambda signum, frame: _early_hangups.append(signum))


def take_early_hangups() -> bool:
    """Whether a SIGHUP came before the loop handled them (forgotten once asked)."""
    came = bool(_early_hangups)
    _early_hangups.clear()
    return came


def ignore_hangups() -> None:
    """The followers: only the leader reloads (systemd sends the signal to the main process;
    `systemctl kill` or a terminal's hang-up sends it to them all)."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

"""Which callbacks the built-in hub may contact: no request into the operator's own network.

A subscriber chooses the callback URL; without a check, anyone could make the hub send GETs
(verification, denial) and POSTs (deliveries) to loopback, private, link-local, … addresses:
server-side request forgery. So a callback is refused when its host is, or resolves to, any
address that is not public (every address it resolves to: one bad one is enough), unless
`[websub] allow_private_callbacks`. DNS can change between two requests, so:

- `check_callback(url, allow_private=…)` is called before EVERY request to a callback
  (verification, denial, delivery); it raises CallbackError (UnsafeCallback, or
  CallbackUnresolvable) and returns nothing.
- the hub's HTTP client connects through `SafeResolver`, which refuses a name that resolves
  to an unsafe address at connection time: what was checked is what is connected to (no
  time-of-check/time-of-use gap for names). aiohttp does not ask the resolver about an IP
  literal: for those `check_callback` is the check, and it cannot change.
- redirects are never followed (pass allow_redirects=False): a redirect could point anywhere.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from feedsvc.errors import FeedsvcError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: How long a callback's name may take to resolve.
RESOLVE_TIMEOUT_S = 10.0

#: RFC 6052's well-known NAT64 prefix: its addresses are IPv4 ones in disguise.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class CallbackError(FeedsvcError):
    """A callback the hub will not contact."""


class UnsafeCallback(CallbackError):
    """Its host is, or resolves to, an address that is not public."""


class CallbackUnresolvable(CallbackError):
    """Its host name does not resolve (now)."""


def unsafe_reason(address: IPAddress) -> str | None:
    """Why the hub must not connect to `address` ("loopback", "private", …), or None for a
    public address. IPv6 addresses that carry an IPv4 one (IPv4-mapped ::ffff:a.b.c.d, NAT64
    64:ff9b::a.b.c.d, 6to4 2002:AABB:CCDD::) are judged by it as well."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
        if embedded is not None and (reason := unsafe_reason(embedded)) is not None:
            return f"{reason} (in {address})"
        if address.teredo is not None:
            return "Teredo tunnel"
        address = address.ipv4_mapped or address
    for reason, flag in (("unspecified", address.is_unspecified),
                         ("loopback", address.is_loopback),
                         ("link-local", address.is_link_local),
                         ("multicast", address.is_multicast),
                         ("reserved", address.is_reserved),
                         ("private", address.is_private)):
        if flag:
            return reason
    if not address.is_global:  # shared address space (100.64/10), documentation, …
        return "not public"
    return None


def parse_address(text: str) -> IPAddress | None:
    """The IP address `text` is (IPv6 zone dropped), or None if it is a name."""
    try:
        return ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None


def _refuse(host: str, address: IPAddress, reason: str) -> UnsafeCallback:
    shown = host if str(address) == host else f"{host} ({address})"
    return UnsafeCallback(f"callback host {shown} is a {reason} address; set [websub] "
                          "allow_private_callbacks = true to allow such callbacks")


async def check_callback(callback: str, *, allow_private: bool = False) -> None:
    """Raise CallbackError unless the hub may send a request to `callback` now: its host is,
    or resolves only to, public addresses (any address at all with `allow_private`)."""
    try:
        parts = urlsplit(callback)
        host, port = parts.hostname, parts.port
    except ValueError as e:
        raise CallbackError(f"callback {callback!r} is not a URL: {e}") from e
    if parts.scheme not in ("http", "https") or not host:
        raise CallbackError(f"callback {callback!r} is not an http or https URL")
    if allow_private:
        return
    literal = parse_address(host)
    if literal is not None:
        if (reason := unsafe_reason(literal)) is not None:
            raise _refuse(host, literal, reason)
        return
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError) as e:
        raise CallbackUnresolvable(f"callback host {host} does not resolve: "
                                   f"{getattr(e, 'strerror', None) or e or 'timeout'}") from e
    if not infos:
        raise CallbackUnresolvable(f"callback host {host} has no address")
    for info in infos:
        address = parse_address(str(info[4][0]))
        if address is None:
            raise UnsafeCallback(f"callback host {host} resolves to {info[4][0]!r}")
        if (reason := unsafe_reason(address)) is not None:
            raise _refuse(host, address, reason)


class SafeResolver(AbstractResolver):
    """aiohttp's threaded resolver (getaddrinfo), refusing a name any of whose addresses is
    not public: the connection can only go to an address that passed the check."""

    def __init__(self, allow_private: Callable[[], bool] = lambda: False) -> None:
        self._resolver = ThreadedResolver()
        #: `[websub] allow_private_callbacks` in force (a reload may change it): then any
        #: address will do.
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        if self._allow_private():
            return results
        for result in results:
            address = parse_address(result["host"])
            reason = "not an IP address" if address is None else unsafe_reason(address)
            if reason is not None:
                # An OSError: aiohttp reports it as a connection error (ClientConnectorError,
                # with the strerror).
                raise OSError(errno.EACCES, f"callback host {host} resolves to {result['host']}, "
                              f"a {reason} address")
        return results

    async def close(self) -> None:
        await self._resolver.close()


def client_session(timeout_s: float, *,
                   allow_private: bool | Callable[[], bool]) -> aiohttp.ClientSession:
    """An HTTP client for callbacks: connects only to safe addresses (unless `allow_private`,
    or while it says so), each request bounded by `timeout_s`, no proxy from the environment,
    no cookies kept. Requests must pass allow_redirects=False."""
    allowed = allow_private if callable(allow_private) else (lambda: allow_private)
    connector = aiohttp.TCPConnector(resolver=SafeResolver(allowed), limit=100)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s),
        cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
        headers={"User-Agent": "feedsvc-websub-hub"})


async def close_later(session: aiohttp.ClientSession, delay_s: float) -> None:
    """Close a session a reload replaced, once no request on it can still be running (its
    timeout later); at once if the task is cancelled (shutdown)."""
    try:
        await asyncio.sleep(delay_s)
    finally:
        await session.close()

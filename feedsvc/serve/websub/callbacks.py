"""Whether a subscriber's callback may be contacted: no request into the operator's own network
(loopback, private, link-local, multicast, reserved, unspecified addresses) unless
`[websub] allow_private_callbacks` says so.

MINIMAL VERSION written by DELIVER so that content distribution can re-check a callback before
each delivery; HUB owns this module and its full version (subscribe-time checks) replaces it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from feedsvc.errors import FeedsvcError


class CallbackError(FeedsvcError):
    """A callback the hub will not contact."""


class UnsafeCallback(CallbackError):
    """A callback whose host is, or resolves to, an address that is not public."""


def is_public(address: str) -> bool:
    """Whether `address` (an IP literal) is a public unicast address. IPv4-mapped IPv6 is judged
    by the IPv4 address it carries (::ffff:127.0.0.1 is loopback)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified
                                 or ip.is_loopback or ip.is_link_local or ip.is_private)


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


async def check_callback(url: str, *, allow_private: bool) -> None:
    """Raise UnsafeCallback unless every address `url`'s host resolves to is public (or
    `allow_private`). Called before every delivery: DNS can change after the subscription."""
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise UnsafeCallback(f"callback {url!r} has no host")
    if _literal(host):
        addresses = [host]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, parts.port or (443 if parts.scheme == "https" else 80),
                type=socket.SOCK_STREAM)
        except OSError as e:
            raise UnsafeCallback(f"callback host {host!r} does not resolve: {e}") from None
        addresses = [str(info[4][0]) for info in infos]
    bad = [a for a in addresses if not is_public(a)]
    if bad or not addresses:
        raise UnsafeCallback(f"callback host {host!r} is not a public address ({', '.join(bad)})")


class SafeResolver(AbstractResolver):
    """The resolver of the hub's HTTP client: it drops every address that is not public, so
    the connection goes to an address that was checked (no window between check and connect
    for DNS to change in)."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[dict[str, Any]]:
        infos = [info for info in await self._resolver.resolve(host, port, family)
                 if is_public(info["host"])]
        if not infos:
            raise OSError(f"{host} resolves to no public address")
        return infos

    async def close(self) -> None:
        await self._resolver.close()
